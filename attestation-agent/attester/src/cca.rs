//! Arm CCA realms: the attestation token from configfs-tsm with provider `arm_cca_guest`,
//! the 64-byte challenge in `inblob`. Evidence: `{"token": [u8, ...]}` (a JSON array of
//! numbers, as trustee's CCA verifier reads it).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    support::{blocking, pad_report_data},
    tsm::{self, TsmEntry},
    Attester, AttesterError, Env, Platform, Tee,
};

/// The configfs-tsm provider of CCA.
pub(crate) const TSM_PROVIDER: &str = "arm_cca_guest";
/// Bytes of challenge a realm token binds.
pub(crate) const CHALLENGE_SIZE: usize = 64;

const TEE: Tee = Tee::Cca;

/// CCA evidence as trustee's CCA verifier reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CcaEvidence {
    /// The CBOR CCA attestation token.
    pub token: Vec<u8>,
}

/// The CCA attester.
#[derive(Debug, Clone)]
pub(crate) struct CcaAttester {
    platform: Platform,
}

impl CcaAttester {
    /// The attester of `platform`'s configfs-tsm.
    pub(crate) fn new(platform: Platform) -> Self {
        Self { platform }
    }
}

/// Looks for a CCA realm: configfs-tsm reports from `arm_cca_guest`.
pub(crate) fn probe(
    platform: &Platform,
    _env: &Env,
) -> Result<Option<Box<dyn Attester>>, AttesterError> {
    let found = tsm::provider_present(platform, TEE, TSM_PROVIDER);
    Ok(found.then(|| Box::new(CcaAttester::new(platform.clone())) as Box<dyn Attester>))
}

#[async_trait]
impl Attester for CcaAttester {
    fn tee(&self) -> Tee {
        TEE
    }

    async fn get_evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, AttesterError> {
        let challenge = pad_report_data::<CHALLENGE_SIZE>(TEE, report_data)?;
        let platform = self.platform.clone();
        let token = blocking(TEE, move || {
            TsmEntry::open(&platform, TEE, TSM_PROVIDER)?
                .require(TEE, TSM_PROVIDER)?
                .generate(&challenge)
        })
        .await?;
        Ok(serde_json::json!(CcaEvidence { token }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tsm::emulator::{Answer, TsmEmulator};

    const TOKEN: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/evidence/cca/cca-example-token.cbor"
    );

    fn cca_tree(root: &std::path::Path) -> (Platform, std::sync::Arc<TsmEmulator>) {
        TsmEmulator::install(
            root,
            Answer {
                provider: TSM_PROVIDER.into(),
                outblob: std::fs::read(TOKEN).expect("recorded CCA token"),
                echo_at: None,
                auxblob: None,
                extra_writers: 0,
            },
        )
    }

    #[tokio::test]
    async fn the_token_is_a_number_array_and_the_challenge_is_padded() {
        let dir = tempfile::tempdir().unwrap();
        let (platform, emulator) = cca_tree(dir.path());
        let attester = probe(&platform, &Env::default()).unwrap().unwrap();
        assert_eq!(attester.tee(), Tee::Cca);
        let evidence = attester.get_evidence(&[9; 32]).await.unwrap();
        let token = std::fs::read(TOKEN).unwrap();
        assert_eq!(evidence, json!({ "token": token }));
        assert!(evidence["token"].as_array().unwrap()[0].is_number());
        let mut challenge = vec![9u8; 32];
        challenge.resize(64, 0);
        assert_eq!(*emulator.inblobs.lock().unwrap(), vec![challenge]);
        let err = attester.get_evidence(&[0; 65]).await.unwrap_err();
        assert!(
            matches!(err, AttesterError::ReportDataTooLong { .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn other_providers_are_not_cca() {
        let dir = tempfile::tempdir().unwrap();
        assert!(probe(&Platform::new(dir.path()), &Env::default())
            .unwrap()
            .is_none());
        let (platform, _) = TsmEmulator::install(
            dir.path(),
            Answer {
                provider: "tdx_guest".into(),
                outblob: vec![1],
                echo_at: None,
                auxblob: None,
                extra_writers: 0,
            },
        );
        assert!(probe(&platform, &Env::default()).unwrap().is_none());
        let err = CcaAttester::new(platform)
            .get_evidence(b"x")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("`tdx_guest`, not `arm_cca_guest`"),
            "{err}"
        );
    }
}
