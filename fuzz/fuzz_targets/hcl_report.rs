//! The Azure vTPM's HCL report (NV index 0x01400001) and the bincode TPM quote of
//! az-cvm-vtpm evidence.
#![no_main]

use attester::{az_tpm_quote_from_bincode, HclReport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = HclReport::parse(data.to_vec()) {
        let _ = report.report_type();
        let _ = report.hw_report();
        let _ = report.var_data();
        let _ = report.user_data();
        assert_eq!(report.as_bytes(), data);
    }
    let _ = az_tpm_quote_from_bincode(data);
});
