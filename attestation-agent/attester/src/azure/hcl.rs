//! The HCL report the Azure paravisor keeps in vTPM NV index 0x01400001: a header, the
//! hardware report (SNP attestation report or TDX TDREPORT), and JSON "variable data"
//! (the vTPM AK, the user data) whose SHA-256 is the hardware report's report data.

use std::ops::Range;

/// Bytes before the hardware report ("HCLA" signature, version, sizes, status).
const HEADER_SIZE: usize = 32;
/// The hardware report area (sized for the larger SNP report).
const HW_REPORT_AREA: usize = 1184;
/// Offset of the IGVM request data that follows the hardware report.
const IGVM: usize = HEADER_SIZE + HW_REPORT_AREA;
/// IGVM request data header: size, version, report type, hash type, variable data size.
const IGVM_HEADER: usize = 20;
/// Where the variable data starts.
const VAR_DATA: usize = IGVM + IGVM_HEADER;
/// Report types of the IGVM request data.
const REPORT_TYPE_SNP: u32 = 2;
const REPORT_TYPE_TDX: u32 = 4;
/// Sizes of the hardware reports.
const SNP_REPORT_SIZE: usize = 1184;
const TD_REPORT_SIZE: usize = 1024;

/// The hardware behind the HCL report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HclReportType {
    /// AMD SEV-SNP.
    Snp,
    /// Intel TDX.
    Tdx,
}

/// Why bytes are not an HCL report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HclError {
    /// Too short, or the variable data runs past the end.
    #[error("the HCL report is truncated ({0} bytes)")]
    Truncated(usize),
    /// Wrong signature.
    #[error("the HCL report does not start with \"HCLA\"")]
    Signature,
    /// Neither SNP nor TDX.
    #[error("the HCL report holds an unknown hardware report type {0}")]
    ReportType(u32),
}

/// A parsed HCL report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HclReport {
    bytes: Vec<u8>,
    report_type: HclReportType,
    var_data: Range<usize>,
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

impl HclReport {
    /// Parses the report (trailing NV padding is kept but ignored).
    pub fn parse(bytes: Vec<u8>) -> Result<Self, HclError> {
        let truncated = HclError::Truncated(bytes.len());
        if bytes.len() < VAR_DATA {
            return Err(truncated);
        }
        if &bytes[..4] != b"HCLA" {
            return Err(HclError::Signature);
        }
        let report_type = match le_u32(&bytes, IGVM + 8).ok_or(truncated.clone())? {
            REPORT_TYPE_SNP => HclReportType::Snp,
            REPORT_TYPE_TDX => HclReportType::Tdx,
            other => return Err(HclError::ReportType(other)),
        };
        let var_size = le_u32(&bytes, IGVM + 16).ok_or(truncated.clone())? as usize;
        let end = VAR_DATA.checked_add(var_size).ok_or(truncated.clone())?;
        if end > bytes.len() {
            return Err(truncated);
        }
        Ok(Self {
            bytes,
            report_type,
            var_data: VAR_DATA..end,
        })
    }

    /// The hardware behind the report.
    pub fn report_type(&self) -> HclReportType {
        self.report_type
    }

    /// The hardware report: the SNP attestation report or the TDREPORT.
    pub fn hw_report(&self) -> &[u8] {
        let size = match self.report_type {
            HclReportType::Snp => SNP_REPORT_SIZE,
            HclReportType::Tdx => TD_REPORT_SIZE,
        };
        &self.bytes[HEADER_SIZE..HEADER_SIZE + size]
    }

    /// The JSON variable data.
    pub fn var_data(&self) -> &[u8] {
        &self.bytes[self.var_data.clone()]
    }

    /// The `user-data` of the variable data (hex, as the paravisor wrote it), if any.
    pub fn user_data(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(self.var_data()).ok()?;
        value
            .get("user-data")
            .and_then(|u| u.as_str())
            .map(str::to_string)
    }

    /// The whole report as read from NV.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Builds a report (tests: swtpm NV holds at most 2048 bytes, less than a real one).
    #[cfg(test)]
    pub(crate) fn build(report_type: HclReportType, hw_report: &[u8], var_data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; VAR_DATA];
        bytes[..4].copy_from_slice(b"HCLA");
        bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
        bytes[HEADER_SIZE..HEADER_SIZE + hw_report.len()].copy_from_slice(hw_report);
        let kind = match report_type {
            HclReportType::Snp => REPORT_TYPE_SNP,
            HclReportType::Tdx => REPORT_TYPE_TDX,
        };
        bytes[IGVM..IGVM + 4]
            .copy_from_slice(&((IGVM_HEADER + var_data.len()) as u32).to_le_bytes());
        bytes[IGVM + 4..IGVM + 8].copy_from_slice(&1u32.to_le_bytes());
        bytes[IGVM + 8..IGVM + 12].copy_from_slice(&kind.to_le_bytes());
        bytes[IGVM + 12..IGVM + 16].copy_from_slice(&1u32.to_le_bytes());
        bytes[IGVM + 16..IGVM + 20].copy_from_slice(&(var_data.len() as u32).to_le_bytes());
        bytes.extend_from_slice(var_data);
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/evidence");

    #[test]
    fn recorded_hcl_reports_parse() {
        for (name, kind) in [
            ("az-snp-vtpm/hcl-report.bin", HclReportType::Snp),
            ("az-tdx-vtpm/hcl-report.bin", HclReportType::Tdx),
        ] {
            let bytes = std::fs::read(format!("{DIR}/{name}")).unwrap();
            let report = HclReport::parse(bytes.clone()).unwrap();
            assert_eq!(report.report_type(), kind, "{name}");
            assert_eq!(report.as_bytes(), &bytes[..]);
            let var: serde_json::Value = serde_json::from_slice(report.var_data()).unwrap();
            assert_eq!(var["keys"][0]["kid"], "HCLAkPub", "{name}");
            match kind {
                HclReportType::Tdx => {
                    assert_eq!(report.hw_report().len(), 1024);
                    assert_eq!(report.hw_report()[0], 0x81, "TDREPORT type");
                }
                HclReportType::Snp => assert_eq!(report.hw_report().len(), 1184),
            }
        }
    }

    #[test]
    fn built_reports_round_trip_and_carry_user_data() {
        let var = br#"{"keys":[],"user-data":"00ff"}"#;
        let bytes = HclReport::build(HclReportType::Tdx, &[0x81; 1024], var);
        let report = HclReport::parse(bytes).unwrap();
        assert_eq!(report.report_type(), HclReportType::Tdx);
        assert_eq!(report.var_data(), var);
        assert_eq!(report.user_data().as_deref(), Some("00ff"));
        let no_user = HclReport::build(HclReportType::Snp, &[1; 1184], b"{}");
        assert_eq!(HclReport::parse(no_user).unwrap().user_data(), None);
    }

    #[test]
    fn bad_reports_are_refused() {
        assert_eq!(HclReport::parse(vec![]), Err(HclError::Truncated(0)));
        let good = HclReport::build(HclReportType::Snp, &[1; 1184], b"{}");
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(HclReport::parse(bad), Err(HclError::Signature));
        let mut bad = good.clone();
        bad[IGVM + 8] = 9;
        assert_eq!(HclReport::parse(bad), Err(HclError::ReportType(9)));
        let mut bad = good.clone();
        bad[IGVM + 16..IGVM + 20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(HclReport::parse(bad), Err(HclError::Truncated(_))));
        assert!(matches!(
            HclReport::parse(good[..good.len() - 1].to_vec()),
            Err(HclError::Truncated(_))
        ));
    }
}
