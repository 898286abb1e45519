//! The few NVML calls the GPU attester needs, loaded from `libnvidia-ml` at run time. The
//! only place of the NVIDIA attester with `unsafe`: the library is the driver's own C API,
//! reached through `dlopen`, so a guest without the driver still starts.
//!
//! Struct layouts and constants are those of `nvml.h` (driver 535 and later, the first with
//! the confidential-computing calls). Every size the library reports is checked against the
//! buffer it describes before the buffer is read.

#![allow(unsafe_code)]

use std::{
    ffi::{c_char, c_uint, c_void, CStr, OsStr, OsString},
    fmt,
};

use libloading::Library;

/// `NVML_CC_GPU_CEC_NONCE_SIZE`: the SPDM nonce of the attestation report.
pub(crate) const NONCE_SIZE: usize = 32;
/// `NVML_CC_GPU_ATTESTATION_REPORT_SIZE`.
const REPORT_SIZE: usize = 0x2000;
/// `NVML_CC_GPU_CEC_ATTESTATION_REPORT_SIZE`.
const CEC_REPORT_SIZE: usize = 0x1000;
/// `NVML_GPU_CERT_CHAIN_SIZE`.
const CERT_CHAIN_SIZE: usize = 0x1000;
/// `NVML_GPU_ATTESTATION_CERT_CHAIN_SIZE`.
const ATTESTATION_CERT_CHAIN_SIZE: usize = 0x1400;
/// `NVML_DEVICE_UUID_V2_BUFFER_SIZE`.
const UUID_BUFFER_SIZE: usize = 96;
/// `NVML_CC_SYSTEM_FEATURE_ENABLED`.
const CC_FEATURE_ENABLED: c_uint = 1;
/// `NVML_ERROR_NOT_SUPPORTED`.
pub(crate) const ERROR_NOT_SUPPORTED: c_uint = 3;

/// `nvmlDevice_t`: an opaque handle owned by the library.
type DeviceHandle = *mut c_void;

/// `nvmlConfComputeSystemState_t`.
#[repr(C)]
#[derive(Default)]
struct SystemState {
    environment: c_uint,
    cc_feature: c_uint,
    dev_tools_mode: c_uint,
}

/// `nvmlConfComputeGpuAttestationReport_t`; the caller fills `nonce`.
#[repr(C)]
#[allow(dead_code)] // the CEC fields exist for the layout; the library fills them
struct AttestationReport {
    is_cec_attestation_report_present: c_uint,
    attestation_report_size: c_uint,
    cec_attestation_report_size: c_uint,
    nonce: [u8; NONCE_SIZE],
    attestation_report: [u8; REPORT_SIZE],
    cec_attestation_report: [u8; CEC_REPORT_SIZE],
}

/// `nvmlConfComputeGpuCertificate_t`.
#[repr(C)]
#[allow(dead_code)] // the device-identity chain exists for the layout; the library fills it
struct GpuCertificate {
    cert_chain_size: c_uint,
    attestation_cert_chain_size: c_uint,
    cert_chain: [u8; CERT_CHAIN_SIZE],
    attestation_cert_chain: [u8; ATTESTATION_CERT_CHAIN_SIZE],
}

type NoArgs = unsafe extern "C" fn() -> c_uint;
type ErrorString = unsafe extern "C" fn(c_uint) -> *const c_char;
type GetCount = unsafe extern "C" fn(*mut c_uint) -> c_uint;
type GetHandle = unsafe extern "C" fn(c_uint, *mut DeviceHandle) -> c_uint;
type GetArch = unsafe extern "C" fn(DeviceHandle, *mut c_uint) -> c_uint;
type GetUuid = unsafe extern "C" fn(DeviceHandle, *mut c_char, c_uint) -> c_uint;
type GetCcState = unsafe extern "C" fn(*mut SystemState) -> c_uint;
type GetReport = unsafe extern "C" fn(DeviceHandle, *mut AttestationReport) -> c_uint;
type GetCertificate = unsafe extern "C" fn(DeviceHandle, *mut GpuCertificate) -> c_uint;

/// Why an NVML call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NvmlError {
    /// The library could not be loaded (no driver in this guest).
    #[error("cannot load {}: {source}", path.to_string_lossy())]
    Load {
        /// the file name or path given to the loader
        path: OsString,
        /// the loader's error
        #[source]
        source: libloading::Error,
    },
    /// The library lacks a function (a driver older than 535 has no confidential computing).
    #[error(
        "{} has no {symbol} (a driver without confidential computing; 535 or later is \
         needed): {source}",
        path.to_string_lossy()
    )]
    Symbol {
        /// the library
        path: OsString,
        /// the missing function
        symbol: &'static str,
        /// the loader's error
        #[source]
        source: libloading::Error,
    },
    /// A function returned an NVML error code.
    #[error("{function} failed with NVML error {code} ({text})")]
    Call {
        /// the function
        function: &'static str,
        /// its `nvmlReturn_t`
        code: c_uint,
        /// `nvmlErrorString` of the code
        text: String,
    },
    /// The library reported a size larger than the buffer it filled.
    #[error("{function} reported {size} bytes of {what}, more than its {max}-byte buffer")]
    Oversized {
        /// the function
        function: &'static str,
        /// the field
        what: &'static str,
        /// the size reported
        size: usize,
        /// the buffer size
        max: usize,
    },
}

impl NvmlError {
    /// The `nvmlReturn_t` of a failed call.
    pub(crate) fn code(&self) -> Option<c_uint> {
        match self {
            NvmlError::Call { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The confidential-computing state of the system (`nvmlSystemGetConfComputeState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CcState {
    /// `NVML_CC_SYSTEM_ENVIRONMENT_*` (2 = production).
    pub(crate) environment: u32,
    /// Whether confidential computing is on.
    pub(crate) enabled: bool,
    /// Whether the GPUs are in devtools mode (evidence says so; the verifier decides).
    pub(crate) dev_tools: bool,
}

/// The loaded library and its functions. The function pointers are valid while `_lib` is.
pub(crate) struct Nvml {
    path: OsString,
    init: NoArgs,
    shutdown: NoArgs,
    error_string: ErrorString,
    device_count: GetCount,
    device_handle: GetHandle,
    architecture: GetArch,
    uuid: GetUuid,
    cc_state: GetCcState,
    report: GetReport,
    certificate: GetCertificate,
    _lib: Library,
}

impl fmt::Debug for Nvml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nvml").field("path", &self.path).finish()
    }
}

/// Copies one function pointer out of `lib`.
///
/// # Safety
/// `T` must be the C signature of `symbol` as `nvml.h` declares it.
unsafe fn symbol<T: Copy>(
    lib: &Library,
    path: &OsStr,
    symbol: &'static str,
) -> Result<T, NvmlError> {
    let mut name = Vec::with_capacity(symbol.len() + 1);
    name.extend_from_slice(symbol.as_bytes());
    name.push(0);
    // SAFETY: the caller guarantees `T` is the symbol's type; the pointer is only used
    // while the `Library` it came from is alive (both live in the same `Nvml`).
    unsafe { lib.get::<T>(&name) }
        .map(|sym| *sym)
        .map_err(|source| NvmlError::Symbol {
            path: path.to_owned(),
            symbol,
            source,
        })
}

impl Nvml {
    /// Loads the library (`path` as `dlopen` takes it: a file name searched the usual way,
    /// or a path) and resolves every function the attester calls.
    pub(crate) fn load(path: &OsStr) -> Result<Self, NvmlError> {
        // SAFETY: loading runs the library's initialisers; libnvidia-ml has none with
        // preconditions on the caller, and the path is the operator's choice of driver.
        let lib = unsafe { Library::new(path) }.map_err(|source| NvmlError::Load {
            path: path.to_owned(),
            source,
        })?;
        // SAFETY (all the `symbol` calls below): each type alias is the `nvml.h` prototype
        // of the function named next to it.
        unsafe {
            Ok(Self {
                path: path.to_owned(),
                init: symbol(&lib, path, "nvmlInit_v2")?,
                shutdown: symbol(&lib, path, "nvmlShutdown")?,
                error_string: symbol(&lib, path, "nvmlErrorString")?,
                device_count: symbol(&lib, path, "nvmlDeviceGetCount_v2")?,
                device_handle: symbol(&lib, path, "nvmlDeviceGetHandleByIndex_v2")?,
                architecture: symbol(&lib, path, "nvmlDeviceGetArchitecture")?,
                uuid: symbol(&lib, path, "nvmlDeviceGetUUID")?,
                cc_state: symbol(&lib, path, "nvmlSystemGetConfComputeState")?,
                report: symbol(&lib, path, "nvmlDeviceGetConfComputeGpuAttestationReport")?,
                certificate: symbol(&lib, path, "nvmlDeviceGetConfComputeGpuCertificate")?,
                _lib: lib,
            })
        }
    }

    /// The library as it was loaded.
    pub(crate) fn path(&self) -> &OsStr {
        &self.path
    }

    fn check(&self, function: &'static str, code: c_uint) -> Result<(), NvmlError> {
        if code == 0 {
            return Ok(());
        }
        // SAFETY: `nvmlErrorString` takes any code and returns NULL or a pointer to a
        // static NUL-terminated string owned by the library.
        let text = unsafe {
            let text = (self.error_string)(code);
            if text.is_null() {
                String::new()
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            }
        };
        Err(NvmlError::Call {
            function,
            code,
            text,
        })
    }

    /// Initialises NVML; the session shuts it down when dropped (NVML counts the calls).
    pub(crate) fn session(&self) -> Result<Session<'_>, NvmlError> {
        // SAFETY: `nvmlInit_v2` takes no arguments and may be called from any thread.
        let code = unsafe { (self.init)() };
        self.check("nvmlInit_v2", code)?;
        Ok(Session { nvml: self })
    }
}

/// An initialised NVML.
pub(crate) struct Session<'a> {
    nvml: &'a Nvml,
}

impl fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("nvml", self.nvml).finish()
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // SAFETY: paired with the successful `nvmlInit_v2` that created this session.
        let code = unsafe { (self.nvml.shutdown)() };
        if let Err(e) = self.nvml.check("nvmlShutdown", code) {
            tracing::debug!(error = %e, "NVML shutdown");
        }
    }
}

/// A GPU of the session, by index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Device {
    handle: DeviceHandle,
}

impl Session<'_> {
    /// Number of GPUs NVML lists.
    pub(crate) fn device_count(&self) -> Result<u32, NvmlError> {
        let mut count: c_uint = 0;
        // SAFETY: NVML is initialised; `count` is a valid out-pointer.
        let code = unsafe { (self.nvml.device_count)(&mut count) };
        self.nvml.check("nvmlDeviceGetCount_v2", code)?;
        Ok(count)
    }

    /// The GPU at `index` (below [`Session::device_count`]).
    pub(crate) fn device(&self, index: u32) -> Result<Device, NvmlError> {
        let mut handle: DeviceHandle = std::ptr::null_mut();
        // SAFETY: NVML is initialised; `handle` is a valid out-pointer.
        let code = unsafe { (self.nvml.device_handle)(index, &mut handle) };
        self.nvml.check("nvmlDeviceGetHandleByIndex_v2", code)?;
        Ok(Device { handle })
    }

    /// The system's confidential-computing state.
    pub(crate) fn cc_state(&self) -> Result<CcState, NvmlError> {
        let mut state = SystemState::default();
        // SAFETY: NVML is initialised; `state` is a valid `nvmlConfComputeSystemState_t`.
        let code = unsafe { (self.nvml.cc_state)(&mut state) };
        self.nvml.check("nvmlSystemGetConfComputeState", code)?;
        Ok(CcState {
            environment: state.environment,
            enabled: state.cc_feature == CC_FEATURE_ENABLED,
            dev_tools: state.dev_tools_mode != 0,
        })
    }

    /// `NVML_DEVICE_ARCH_*` of `device`.
    pub(crate) fn architecture(&self, device: Device) -> Result<u32, NvmlError> {
        let mut arch: c_uint = 0;
        // SAFETY: `device` came from this session; `arch` is a valid out-pointer.
        let code = unsafe { (self.nvml.architecture)(device.handle, &mut arch) };
        self.nvml.check("nvmlDeviceGetArchitecture", code)?;
        Ok(arch)
    }

    /// The UUID of `device` (`GPU-...`).
    pub(crate) fn uuid(&self, device: Device) -> Result<String, NvmlError> {
        let mut buffer = [0 as c_char; UUID_BUFFER_SIZE];
        // SAFETY: `device` came from this session; the buffer holds `UUID_BUFFER_SIZE`
        // chars, the length passed.
        let code = unsafe {
            (self.nvml.uuid)(
                device.handle,
                buffer.as_mut_ptr(),
                UUID_BUFFER_SIZE as c_uint,
            )
        };
        self.nvml.check("nvmlDeviceGetUUID", code)?;
        // the library NUL-terminates within the length given; read no further than it
        let bytes: Vec<u8> = buffer
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The SPDM attestation report of `device` over `nonce`.
    pub(crate) fn attestation_report(
        &self,
        device: Device,
        nonce: &[u8; NONCE_SIZE],
    ) -> Result<Vec<u8>, NvmlError> {
        const FUNCTION: &str = "nvmlDeviceGetConfComputeGpuAttestationReport";
        let mut report = Box::new(AttestationReport {
            is_cec_attestation_report_present: 0,
            attestation_report_size: 0,
            cec_attestation_report_size: 0,
            nonce: *nonce,
            attestation_report: [0; REPORT_SIZE],
            cec_attestation_report: [0; CEC_REPORT_SIZE],
        });
        // SAFETY: `device` came from this session; `report` is a valid, fully initialised
        // `nvmlConfComputeGpuAttestationReport_t` the library fills in place.
        let code = unsafe { (self.nvml.report)(device.handle, &mut *report) };
        self.nvml.check(FUNCTION, code)?;
        let size = report.attestation_report_size as usize;
        report
            .attestation_report
            .get(..size)
            .map(<[u8]>::to_vec)
            .ok_or(NvmlError::Oversized {
                function: FUNCTION,
                what: "attestation report",
                size,
                max: REPORT_SIZE,
            })
    }

    /// The attestation certificate chain of `device` (PEM, leaf first).
    pub(crate) fn attestation_cert_chain(&self, device: Device) -> Result<Vec<u8>, NvmlError> {
        const FUNCTION: &str = "nvmlDeviceGetConfComputeGpuCertificate";
        let mut certificate = Box::new(GpuCertificate {
            cert_chain_size: 0,
            attestation_cert_chain_size: 0,
            cert_chain: [0; CERT_CHAIN_SIZE],
            attestation_cert_chain: [0; ATTESTATION_CERT_CHAIN_SIZE],
        });
        // SAFETY: `device` came from this session; `certificate` is a valid, fully
        // initialised `nvmlConfComputeGpuCertificate_t` the library fills in place.
        let code = unsafe { (self.nvml.certificate)(device.handle, &mut *certificate) };
        self.nvml.check(FUNCTION, code)?;
        let size = certificate.attestation_cert_chain_size as usize;
        certificate
            .attestation_cert_chain
            .get(..size)
            .map(<[u8]>::to_vec)
            .ok_or(NvmlError::Oversized {
                function: FUNCTION,
                what: "attestation certificate chain",
                size,
                max: ATTESTATION_CERT_CHAIN_SIZE,
            })
    }
}
