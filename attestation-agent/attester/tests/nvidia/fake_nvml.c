/*
 * A stand-in for the driver's libnvidia-ml: the NVML functions the nvidia attester calls,
 * with the signatures and struct layouts of nvml.h, serving recorded evidence of real GPUs.
 *
 * Built by tests/nvidia_evidence.rs with -DFAKE_DIR="<dir>"; each test bakes its own
 * directory in, so tests running in parallel in one process never share a configuration.
 * The directory holds:
 *   gpus               number of GPUs (absent: 0)
 *   gpuN.report        raw attestation report of GPU N (served whatever nonce is asked for,
 *                      like a replay: the nonce it carries is the one it was recorded with)
 *   gpuN.certs         PEM attestation certificate chain of GPU N
 *   gpuN.arch          NVML architecture number of GPU N (9 Hopper, 10 Blackwell)
 *   gpuN.uuid          UUID of GPU N
 *   init_rc            return code of nvmlInit_v2 (absent: 0)
 *   cc_feature         1 on, 0 off (absent: 1)
 *   report_size        attestationReportSize to claim instead of the file's size
 * and receives gpuN.nonce, the 32 bytes the caller put in the request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_UNKNOWN 999

typedef struct {
    unsigned int environment;
    unsigned int ccFeature;
    unsigned int devToolsMode;
} nvmlConfComputeSystemState_t;

typedef struct {
    unsigned int isCecAttestationReportPresent;
    unsigned int attestationReportSize;
    unsigned int cecAttestationReportSize;
    unsigned char nonce[0x20];
    unsigned char attestationReport[0x2000];
    unsigned char cecAttestationReport[0x1000];
} nvmlConfComputeGpuAttestationReport_t;

typedef struct {
    unsigned int certChainSize;
    unsigned int attestationCertChainSize;
    unsigned char certChain[0x1000];
    unsigned char attestationCertChain[0x1400];
} nvmlConfComputeGpuCertificate_t;

/* a device handle is the GPU index + 1, never NULL */
typedef void *nvmlDevice_t;

static int path_of(char *out, size_t size, const char *name) {
    int n = snprintf(out, size, "%s/%s", FAKE_DIR, name);
    return n > 0 && (size_t)n < size;
}

/* reads a whole file; returns its size or -1 */
static long read_file(const char *name, unsigned char *buf, size_t cap) {
    char path[4096];
    if (!path_of(path, sizeof(path), name))
        return -1;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap, f);
    int more = fgetc(f) != EOF;
    fclose(f);
    return more ? -1 : (long)n;
}

static long read_number(const char *name, long fallback) {
    unsigned char buf[32];
    long n = read_file(name, buf, sizeof(buf) - 1);
    if (n <= 0)
        return fallback;
    buf[n] = 0;
    return strtol((const char *)buf, NULL, 10);
}

static long gpu_index(nvmlDevice_t device) {
    long index = (long)(size_t)device - 1;
    return index >= 0 && index < read_number("gpus", 0) ? index : -1;
}

int nvmlInit_v2(void) { return (int)read_number("init_rc", 0); }

int nvmlShutdown(void) { return NVML_SUCCESS; }

const char *nvmlErrorString(int code) {
    switch (code) {
    case 0: return "Success";
    case 3: return "Not Supported";
    case 9: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

int nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *count = (unsigned int)read_number("gpus", 0);
    return NVML_SUCCESS;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!device)
        return NVML_ERROR_INVALID_ARGUMENT;
    if ((long)index >= read_number("gpus", 0))
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = (nvmlDevice_t)(size_t)(index + 1);
    return NVML_SUCCESS;
}

int nvmlSystemGetConfComputeState(nvmlConfComputeSystemState_t *state) {
    if (!state)
        return NVML_ERROR_INVALID_ARGUMENT;
    state->environment = 2; /* production */
    state->ccFeature = (unsigned int)read_number("cc_feature", 1);
    state->devToolsMode = 0;
    return NVML_SUCCESS;
}

int nvmlDeviceGetArchitecture(nvmlDevice_t device, unsigned int *arch) {
    char name[64];
    long index = gpu_index(device);
    if (index < 0 || !arch)
        return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(name, sizeof(name), "gpu%ld.arch", index);
    *arch = (unsigned int)read_number(name, 0);
    return NVML_SUCCESS;
}

int nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    char name[64];
    long index = gpu_index(device);
    if (index < 0 || !uuid || length == 0)
        return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(name, sizeof(name), "gpu%ld.uuid", index);
    long n = read_file(name, (unsigned char *)uuid, length - 1);
    if (n < 0)
        return NVML_ERROR_NOT_FOUND;
    uuid[n] = 0;
    return NVML_SUCCESS;
}

int nvmlDeviceGetConfComputeGpuAttestationReport(nvmlDevice_t device,
                                                 nvmlConfComputeGpuAttestationReport_t *report) {
    char name[64], path[4096];
    long index = gpu_index(device);
    if (index < 0 || !report)
        return NVML_ERROR_INVALID_ARGUMENT;
    /* record the nonce the caller asked for */
    snprintf(name, sizeof(name), "gpu%ld.nonce", index);
    if (!path_of(path, sizeof(path), name))
        return NVML_ERROR_UNKNOWN;
    FILE *f = fopen(path, "wb");
    if (!f)
        return NVML_ERROR_UNKNOWN;
    fwrite(report->nonce, 1, sizeof(report->nonce), f);
    fclose(f);

    snprintf(name, sizeof(name), "gpu%ld.report", index);
    long n = read_file(name, report->attestationReport, sizeof(report->attestationReport));
    if (n < 0)
        return NVML_ERROR_NOT_FOUND;
    report->attestationReportSize = (unsigned int)read_number("report_size", n);
    report->isCecAttestationReportPresent = 0;
    report->cecAttestationReportSize = 0;
    return NVML_SUCCESS;
}

int nvmlDeviceGetConfComputeGpuCertificate(nvmlDevice_t device,
                                           nvmlConfComputeGpuCertificate_t *cert) {
    char name[64];
    long index = gpu_index(device);
    if (index < 0 || !cert)
        return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(name, sizeof(name), "gpu%ld.certs", index);
    long n = read_file(name, cert->attestationCertChain, sizeof(cert->attestationCertChain));
    if (n < 0)
        return NVML_ERROR_NOT_FOUND;
    cert->attestationCertChainSize = (unsigned int)n;
    cert->certChainSize = 0;
    return NVML_SUCCESS;
}
