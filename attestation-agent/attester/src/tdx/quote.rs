//! Just enough of the Intel DCAP TD quote (versions 4 and 5) to check what it binds.

/// Quote header size.
const HEADER: usize = 48;
/// TD report body of TDX 1.0 (quote v4, and v5 body type 2).
const BODY_TDX10: usize = 584;
/// TD report body of TDX 1.5 (v5 body type 3): TDX 1.0 plus TEE_TCB_SVN2 and MRSERVICETD.
const BODY_TDX15: usize = 648;
/// TEE type of TDX in the quote header.
const TEE_TYPE_TDX: u32 = 0x81;

/// Offsets inside the TD report body.
const MR_TD: usize = 136;
const MR_CONFIG_ID: usize = 184;
const RTMR0: usize = 328;
const REPORT_DATA: usize = 520;

/// Why bytes are not a TD quote this module reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// Too short for its header and body.
    #[error("the quote is {0} bytes, too short for its header and TD report body")]
    Truncated(usize),
    /// A quote version this module does not know.
    #[error("quote version {0} is not 4 or 5")]
    UnknownVersion(u16),
    /// Not a TDX quote.
    #[error("the quote's TEE type is {0:#x}, not TDX (0x81)")]
    NotTdx(u32),
    /// A v5 body type that is not a TD report.
    #[error("quote v5 body type {0} is not a TD report (2 or 3)")]
    BodyType(u16),
}

/// A TD quote (header plus TD report body; the signature data is not read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdQuote<'a> {
    version: u16,
    body: &'a [u8],
}

fn le_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

impl<'a> TdQuote<'a> {
    /// Parses the header and locates the TD report body.
    pub fn parse(quote: &'a [u8]) -> Result<Self, QuoteError> {
        let truncated = QuoteError::Truncated(quote.len());
        let version = le_u16(quote, 0).ok_or(truncated.clone())?;
        let tee_type = le_u32(quote, 4).ok_or(truncated.clone())?;
        let (start, size) = match version {
            4 => (HEADER, BODY_TDX10),
            5 => {
                let body_type = le_u16(quote, HEADER).ok_or(truncated.clone())?;
                let size = match body_type {
                    2 => BODY_TDX10,
                    3 => BODY_TDX15,
                    other => return Err(QuoteError::BodyType(other)),
                };
                (HEADER + 6, size)
            }
            other => return Err(QuoteError::UnknownVersion(other)),
        };
        if tee_type != TEE_TYPE_TDX {
            return Err(QuoteError::NotTdx(tee_type));
        }
        let body = quote.get(start..start + size).ok_or(truncated)?;
        Ok(Self { version, body })
    }

    /// The quote version (4 or 5).
    pub fn version(&self) -> u16 {
        self.version
    }

    fn field(&self, at: usize, len: usize) -> &'a [u8] {
        &self.body[at..at + len]
    }

    /// The 64 bytes of report data.
    pub fn report_data(&self) -> &'a [u8] {
        self.field(REPORT_DATA, 64)
    }

    /// MRTD.
    pub fn mr_td(&self) -> &'a [u8] {
        self.field(MR_TD, 48)
    }

    /// MRCONFIGID.
    pub fn mr_config_id(&self) -> &'a [u8] {
        self.field(MR_CONFIG_ID, 48)
    }

    /// RTMR `index` (0..=3).
    pub fn rtmr(&self, index: usize) -> Option<&'a [u8]> {
        (index < 4).then(|| self.field(RTMR0 + 48 * index, 48))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/evidence");

    #[test]
    fn recorded_quotes_match_the_verifier_claims() {
        let quote = std::fs::read(format!("{DIR}/tdx_quote_4.dat")).unwrap();
        let claims = std::fs::read(format!("{DIR}/parse_tdx_claims_expected.json")).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
        let body = &claims["quote"]["body"];
        let parsed = TdQuote::parse(&quote).unwrap();
        assert_eq!(parsed.version(), 4);
        assert_eq!(hex::encode(parsed.report_data()), body["report_data"]);
        assert_eq!(hex::encode(parsed.mr_td()), body["mr_td"]);
        assert_eq!(hex::encode(parsed.mr_config_id()), body["mr_config_id"]);
        for i in 0..4 {
            assert_eq!(
                hex::encode(parsed.rtmr(i).unwrap()),
                body[format!("rtmr_{i}")]
            );
        }
        assert_eq!(parsed.rtmr(4), None);

        for name in [
            "tdx_quote_5.dat",
            "tdx_quote_6.dat",
            "az-tdx-vtpm/td-quote.bin",
        ] {
            let bytes = std::fs::read(format!("{DIR}/{name}")).unwrap();
            let parsed = TdQuote::parse(&bytes).unwrap();
            assert!(matches!(parsed.version(), 4 | 5), "{name}");
        }
    }

    #[test]
    fn bad_quotes_are_refused() {
        assert_eq!(TdQuote::parse(&[]), Err(QuoteError::Truncated(0)));
        let mut v4 = vec![0u8; HEADER + BODY_TDX10];
        v4[0] = 4;
        v4[4] = 0x81;
        assert!(TdQuote::parse(&v4).is_ok());
        assert_eq!(
            TdQuote::parse(&v4[..HEADER + 10]),
            Err(QuoteError::Truncated(HEADER + 10))
        );
        let mut sgx = v4.clone();
        sgx[4] = 0;
        assert_eq!(TdQuote::parse(&sgx), Err(QuoteError::NotTdx(0)));
        let mut v3 = v4.clone();
        v3[0] = 3;
        assert_eq!(TdQuote::parse(&v3), Err(QuoteError::UnknownVersion(3)));
        let mut v5 = v4.clone();
        v5[0] = 5;
        v5[HEADER] = 9;
        assert_eq!(TdQuote::parse(&v5), Err(QuoteError::BodyType(9)));
    }
}
