# Scenario `tpm`: the `tpm` attester on a real kernel's TPM driver, under OVMF with QEMU's
# tpm-tis backed by the host's swtpm (the AK provisioned on the host, persistent at the
# attester's default handle). Loads tpm_tis and tpm_crb, runs evidence-getter (built with
# the tpm attester, shipped with its libraries under /vmtest/input/tpm/) for the report data
# $VMTEST_TPM_REPORT_DATA (hex), and hands the kernel's event log to the host.
# Reports: tpm_dev <nodes>, tpm_version <major>, evidence <rc>, files evidence,
# evidence.err, eventlog (binary_bios_measurements), tpm_ms <ms of the evidence call>.

modprobe tpm_tis 2>>/run/vmtest/modprobe.log || report modprobe_failed tpm_tis
modprobe tpm_crb 2>>/run/vmtest/modprobe.log || report modprobe_failed tpm_crb
i=0
while [ ! -e /dev/tpmrm0 ] && [ $i -lt 300 ]; do
	usleep 10000
	i=$((i + 1))
done
report tpm_dev "$(ls /dev | grep '^tpm' | tr '\n' ' ')"
report tpm_version "$(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null)"
chmod 0755 /vmtest/input/tpm/evidence-getter
t0=$(now_ms)
env -i PATH="$PATH" LD_LIBRARY_PATH=/vmtest/input/tpm/lib RUST_LOG=info \
	/vmtest/input/tpm/evidence-getter --report-data "$VMTEST_TPM_REPORT_DATA" \
	>/run/vmtest/evidence 2>/run/vmtest/evidence.err
report evidence "$?"
report tpm_ms "$(($(now_ms) - t0))"
report_file evidence /run/vmtest/evidence
report_file evidence.err /run/vmtest/evidence.err
cp /sys/kernel/security/tpm0/binary_bios_measurements /run/vmtest/eventlog 2>/run/vmtest/eventlog.err
report_file eventlog /run/vmtest/eventlog
report_file eventlog.err /run/vmtest/eventlog.err
