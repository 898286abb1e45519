//! The TDREPORT (`TDREPORT_STRUCT`, 1024 bytes) returned by `TDG.MR.REPORT` through the
//! `/dev/tdx_guest` `TDX_CMD_GET_REPORT0` ioctl.

/// Size of a TDREPORT.
pub(crate) const TDREPORT_SIZE: usize = 1024;
/// Size of one TDX measurement register.
pub(crate) const MR_SIZE: usize = 48;

/// Offsets inside the TDREPORT (REPORTMACSTRUCT at 0, TEE_TCB_INFO at 256, TDINFO at 512).
const REPORT_TYPE: usize = 0;
const REPORT_DATA: usize = 128;
const TDINFO: usize = 512;
const MRTD: usize = TDINFO + 16;
const MRCONFIGID: usize = MRTD + MR_SIZE;
const MROWNER: usize = MRCONFIGID + MR_SIZE;
const MROWNERCONFIG: usize = MROWNER + MR_SIZE;
const RTMR0: usize = MROWNERCONFIG + MR_SIZE;

/// TDREPORT type byte of a TDX report.
const TYPE_TDX: u8 = 0x81;

/// Why bytes are not a TDREPORT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdReportError {
    /// Wrong length.
    #[error("a TDREPORT is {TDREPORT_SIZE} bytes, got {0}")]
    Size(usize),
    /// Not a TDX report.
    #[error("the report type is {0:#04x}, not TDX (0x81)")]
    Type(u8),
}

/// A parsed TDREPORT (the fields the agent uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    bytes: Vec<u8>,
}

impl TdReport {
    /// Checks the size and the report type.
    pub fn parse(bytes: &[u8]) -> Result<Self, TdReportError> {
        if bytes.len() != TDREPORT_SIZE {
            return Err(TdReportError::Size(bytes.len()));
        }
        if bytes[REPORT_TYPE] != TYPE_TDX {
            return Err(TdReportError::Type(bytes[REPORT_TYPE]));
        }
        Ok(Self {
            bytes: bytes.to_vec(),
        })
    }

    fn field<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[at..at + N]);
        out
    }

    /// The 64 bytes of report data the report binds.
    pub fn report_data(&self) -> [u8; 64] {
        self.field(REPORT_DATA)
    }

    /// MRTD: the build-time measurement.
    pub fn mrtd(&self) -> [u8; MR_SIZE] {
        self.field(MRTD)
    }

    /// MRCONFIGID: set by the host at launch (CoCo puts the initdata digest there).
    pub fn mrconfigid(&self) -> [u8; MR_SIZE] {
        self.field(MRCONFIGID)
    }

    /// MROWNER.
    pub fn mrowner(&self) -> [u8; MR_SIZE] {
        self.field(MROWNER)
    }

    /// MROWNERCONFIG.
    pub fn mrownerconfig(&self) -> [u8; MR_SIZE] {
        self.field(MROWNERCONFIG)
    }

    /// RTMR `index` (0..=3), `None` for other indexes.
    pub fn rtmr(&self, index: usize) -> Option<[u8; MR_SIZE]> {
        (index < 4).then(|| self.field(RTMR0 + index * MR_SIZE))
    }

    /// The raw 1024 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/evidence/tdx_report_1.bin"
    );

    #[test]
    fn recorded_tdreport_fields() {
        let bytes = std::fs::read(VECTOR).expect("recorded TDREPORT");
        let report = TdReport::parse(&bytes).unwrap();
        assert_eq!(report.as_bytes(), &bytes[..]);
        // RTMR values pinned by upstream's test of the same report
        assert_eq!(
            hex::encode(report.rtmr(0).unwrap()),
            "f4ec1a04670fe7926cd5de4aef9aaa7689ab4ceaa132d7c5242b47f67dfaaea64c372a17ad68fef9a6ac99aabbddabdc"
        );
        assert_eq!(
            hex::encode(report.rtmr(1).unwrap()),
            "4e5f8826653198ab4bc5156fbe4bc99db054c0b8239a16c4b59249fb427f4acc50eed1b46a85c7d526c4e1e47621b14c"
        );
        assert_eq!(report.rtmr(2).unwrap(), [0; MR_SIZE]);
        assert_eq!(report.rtmr(3).unwrap(), [0; MR_SIZE]);
        assert_eq!(report.rtmr(4), None);
        assert_eq!(report.mrconfigid(), [0; MR_SIZE]);
        assert_eq!(hex::encode(&report.mrtd()[..8]), "98bbc39e3e27b4cb");
        assert_eq!(report.report_data(), [0; 64]);
    }

    #[test]
    fn bad_reports_are_refused() {
        assert_eq!(TdReport::parse(&[]), Err(TdReportError::Size(0)));
        assert_eq!(
            TdReport::parse(&[0x81; 1025]),
            Err(TdReportError::Size(1025))
        );
        let mut sgx = vec![0u8; TDREPORT_SIZE];
        sgx[0] = 0x00;
        assert_eq!(TdReport::parse(&sgx), Err(TdReportError::Type(0)));
    }
}
