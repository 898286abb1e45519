//! IBM Secure Execution (s390x).
//!
//! Unlike the other TEEs, the report data is not a digest but the KBS challenge itself: an
//! `SeAttestationRequest` JSON (an encrypted attestation request control block and what the
//! verifier needs back), with `runtime_data_digest` (SHA-512 of the runtime data) added by
//! the KBS client. The Ultravisor (`/dev/uv`) computes the measurement over the request and
//! the digest as user data. Evidence: `{"measurement", "additional_data", "user_data",
//! "cuid", "encr_measurement_key", "encr_request_nonce", "image_hdr_tags"}`, all base64.

mod ioctl;

use std::{fmt, io, sync::Arc};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub(crate) use ioctl::UvIoctl;

use crate::{
    support::{blocking, io_error, pad_report_data},
    Attester, AttesterError, Env, Platform, Tee,
};

/// The Ultravisor device.
pub(crate) const DEVICE_PATH: &str = "/dev/uv";
/// Reads `1` inside a Secure Execution guest.
pub(crate) const PROT_VIRT_GUEST: &str = "/sys/firmware/uv/prot_virt_guest";
/// Bytes of user data (the runtime data digest, zero-padded).
pub(crate) const USER_DATA_SIZE: usize = 64;
/// Size of the SE image header tags (three 64-byte digests and a 16-byte tag).
pub(crate) const IMAGE_HDR_TAGS_SIZE: usize = 208;
/// Kernel limits of the attestation request.
const MAX_ARCB: usize = 0x10_0000;
const MAX_MEASUREMENT: u32 = 0x8000;
const MAX_ADDITIONAL: u32 = 0x8000;

const TEE: Tee = Tee::Se;

mod b64 {
    use base64::{engine::general_purpose::STANDARD, Engine};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        STANDARD
            .decode(String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }

    pub(super) mod option {
        use super::*;

        pub(in super::super) fn serialize<S: Serializer>(
            bytes: &Option<Vec<u8>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match bytes {
                Some(bytes) => super::serialize(bytes, s),
                None => s.serialize_none(),
            }
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| STANDARD.decode(text).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// The KBS challenge of Secure Execution (the report data of this attester).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SeAttestationRequest {
    /// The encrypted attestation request control block.
    #[serde(with = "b64")]
    pub(crate) request_blob: Vec<u8>,
    /// Bytes of measurement to produce.
    pub(crate) measurement_size: u32,
    /// Bytes of additional data to produce.
    pub(crate) additional_size: u32,
    /// Returned to the verifier as is.
    #[serde(with = "b64")]
    pub(crate) encr_measurement_key: Vec<u8>,
    /// Returned to the verifier as is.
    #[serde(with = "b64")]
    pub(crate) encr_request_nonce: Vec<u8>,
    /// The SE image header tags, returned as is.
    #[serde(with = "b64")]
    pub(crate) image_hdr_tags: Vec<u8>,
    /// SHA-512 of the runtime data, added by the KBS client.
    #[serde(default, with = "b64::option", skip_serializing_if = "Option::is_none")]
    pub(crate) runtime_data_digest: Option<Vec<u8>>,
}

/// SE evidence as trustee's SE verifier reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SeEvidence {
    /// The Ultravisor's measurement (an HMAC over the request and user data).
    #[serde(with = "b64")]
    pub(crate) measurement: Vec<u8>,
    /// Additional data the request asked for.
    #[serde(with = "b64")]
    pub(crate) additional_data: Vec<u8>,
    /// The user data measured (the padded runtime data digest).
    #[serde(with = "b64")]
    pub(crate) user_data: Vec<u8>,
    /// The configuration unique ID of the guest.
    #[serde(with = "b64")]
    pub(crate) cuid: Vec<u8>,
    /// From the request.
    #[serde(with = "b64")]
    pub(crate) encr_measurement_key: Vec<u8>,
    /// From the request.
    #[serde(with = "b64")]
    pub(crate) encr_request_nonce: Vec<u8>,
    /// From the request.
    #[serde(with = "b64")]
    pub(crate) image_hdr_tags: Vec<u8>,
}

/// What the Ultravisor is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UvAttestationRequest {
    /// The attestation request control block.
    pub(crate) arcb: Vec<u8>,
    /// User data measured along (at most 256 bytes).
    pub(crate) user_data: Vec<u8>,
    /// Bytes of measurement.
    pub(crate) measurement_size: u32,
    /// Bytes of additional data.
    pub(crate) additional_size: u32,
}

/// What the Ultravisor answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UvAttestation {
    /// The measurement.
    pub(crate) measurement: Vec<u8>,
    /// The additional data.
    pub(crate) additional_data: Vec<u8>,
    /// The configuration unique ID.
    pub(crate) config_uid: [u8; 16],
}

/// The Ultravisor attestation call (`/dev/uv` on s390x, recorded replies in tests).
pub(crate) trait UvDevice: Send + Sync + fmt::Debug {
    /// Performs the attestation request.
    fn attest(&self, request: &UvAttestationRequest) -> io::Result<UvAttestation>;
}

/// The Secure Execution attester.
#[derive(Debug, Clone)]
pub(crate) struct SeAttester {
    device: Arc<dyn UvDevice>,
}

impl SeAttester {
    /// The attester using `device`.
    pub(crate) fn new(device: Arc<dyn UvDevice>) -> Self {
        Self { device }
    }
}

fn invalid(message: impl Into<String>) -> AttesterError {
    AttesterError::Platform {
        tee: TEE,
        message: message.into(),
    }
}

/// Parses and checks the challenge.
fn parse_request(report_data: &[u8]) -> Result<SeAttestationRequest, AttesterError> {
    let request: SeAttestationRequest = serde_json::from_slice(report_data).map_err(|e| {
        invalid(format!(
            "the report data must be the KBS's SeAttestationRequest JSON: {e}"
        ))
    })?;
    if request.request_blob.is_empty() || request.request_blob.len() > MAX_ARCB {
        return Err(invalid(format!(
            "the request blob is {} bytes (1 to {MAX_ARCB} allowed)",
            request.request_blob.len()
        )));
    }
    if request.measurement_size == 0 || request.measurement_size > MAX_MEASUREMENT {
        return Err(invalid(format!(
            "measurement_size {} is not within 1..={MAX_MEASUREMENT}",
            request.measurement_size
        )));
    }
    if request.additional_size > MAX_ADDITIONAL {
        return Err(invalid(format!(
            "additional_size {} exceeds {MAX_ADDITIONAL}",
            request.additional_size
        )));
    }
    if request.image_hdr_tags.len() != IMAGE_HDR_TAGS_SIZE {
        return Err(invalid(format!(
            "image_hdr_tags is {} bytes, not {IMAGE_HDR_TAGS_SIZE}",
            request.image_hdr_tags.len()
        )));
    }
    Ok(request)
}

/// Looks for a Secure Execution guest (`/sys/firmware/uv/prot_virt_guest` is `1`).
pub(crate) fn probe(
    platform: &Platform,
    _env: &Env,
) -> Result<Option<Box<dyn Attester>>, AttesterError> {
    Ok(
        match std::fs::read_to_string(platform.path(PROT_VIRT_GUEST)) {
            Ok(flag) if flag.trim() == "1" => {
                let device = Arc::new(UvIoctl::new(platform.path(DEVICE_PATH)));
                Some(Box::new(SeAttester::new(device)))
            }
            _ => None,
        },
    )
}

#[async_trait]
impl Attester for SeAttester {
    fn tee(&self) -> Tee {
        TEE
    }

    async fn get_evidence(&self, report_data: &[u8]) -> Result<serde_json::Value, AttesterError> {
        let request = parse_request(report_data)?;
        let digest = request.runtime_data_digest.as_deref().ok_or_else(|| {
            invalid("the SeAttestationRequest has no runtime_data_digest to bind")
        })?;
        let user_data = pad_report_data::<USER_DATA_SIZE>(TEE, digest)?.to_vec();
        let uv_request = UvAttestationRequest {
            arcb: request.request_blob.clone(),
            user_data: user_data.clone(),
            measurement_size: request.measurement_size,
            additional_size: request.additional_size,
        };
        let device = self.device.clone();
        let answer = blocking(TEE, move || {
            device
                .attest(&uv_request)
                .map_err(|e| io_error(TEE, "attest through", std::path::Path::new(DEVICE_PATH), e))
        })
        .await?;
        let evidence = SeEvidence {
            measurement: answer.measurement,
            additional_data: answer.additional_data,
            user_data,
            cuid: answer.config_uid.to_vec(),
            encr_measurement_key: request.encr_measurement_key,
            encr_request_nonce: request.encr_request_nonce,
            image_hdr_tags: request.image_hdr_tags,
        };
        Ok(serde_json::json!(evidence))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use base64::{engine::general_purpose::STANDARD, Engine};
    use serde_json::json;

    use super::*;

    #[derive(Debug)]
    struct RecordedUv {
        requests: Mutex<Vec<UvAttestationRequest>>,
    }

    impl UvDevice for RecordedUv {
        fn attest(&self, request: &UvAttestationRequest) -> io::Result<UvAttestation> {
            self.requests.lock().unwrap().push(request.clone());
            Ok(UvAttestation {
                measurement: vec![0x4D; request.measurement_size as usize],
                additional_data: vec![0xAD; request.additional_size as usize],
                config_uid: [0xC0; 16],
            })
        }
    }

    fn request(digest: Option<Vec<u8>>) -> SeAttestationRequest {
        SeAttestationRequest {
            request_blob: vec![0xA5; 512],
            measurement_size: 64,
            additional_size: 32,
            encr_measurement_key: vec![1; 96],
            encr_request_nonce: vec![2; 32],
            image_hdr_tags: vec![3; IMAGE_HDR_TAGS_SIZE],
            runtime_data_digest: digest,
        }
    }

    #[tokio::test]
    async fn evidence_binds_the_runtime_digest_as_user_data() {
        let uv = Arc::new(RecordedUv {
            requests: Mutex::new(Vec::new()),
        });
        let attester = SeAttester::new(uv.clone());
        let challenge = serde_json::to_vec(&request(Some(vec![0xBB; 48]))).unwrap();
        let evidence = attester.get_evidence(&challenge).await.unwrap();
        let mut user_data = vec![0xBB; 48];
        user_data.resize(64, 0);
        assert_eq!(
            evidence,
            json!({
                "measurement": STANDARD.encode([0x4D; 64]),
                "additional_data": STANDARD.encode([0xAD; 32]),
                "user_data": STANDARD.encode(&user_data),
                "cuid": STANDARD.encode([0xC0; 16]),
                "encr_measurement_key": STANDARD.encode([1; 96]),
                "encr_request_nonce": STANDARD.encode([2; 32]),
                "image_hdr_tags": STANDARD.encode([3; IMAGE_HDR_TAGS_SIZE]),
            })
        );
        let sent = uv.requests.lock().unwrap()[0].clone();
        assert_eq!(sent.arcb, vec![0xA5; 512]);
        assert_eq!(sent.user_data, user_data);
        assert_eq!((sent.measurement_size, sent.additional_size), (64, 32));
        let parsed: SeEvidence = serde_json::from_value(evidence).unwrap();
        assert_eq!(parsed.cuid, vec![0xC0; 16]);
    }

    #[tokio::test]
    async fn malformed_challenges_are_refused() {
        let attester = SeAttester::new(Arc::new(RecordedUv {
            requests: Mutex::new(Vec::new()),
        }));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"digest".to_vec(), "SeAttestationRequest JSON"),
            (serde_json::to_vec(&request(None)).unwrap(), "no runtime_data_digest"),
            (
                serde_json::to_vec(&request(Some(vec![0; 65]))).unwrap(),
                "at most 64",
            ),
            (
                serde_json::to_vec(&SeAttestationRequest {
                    measurement_size: 0x10_0000,
                    ..request(Some(vec![1]))
                })
                .unwrap(),
                "measurement_size",
            ),
            (
                serde_json::to_vec(&SeAttestationRequest {
                    additional_size: 0x10_0000,
                    ..request(Some(vec![1]))
                })
                .unwrap(),
                "additional_size",
            ),
            (
                serde_json::to_vec(&SeAttestationRequest {
                    image_hdr_tags: vec![0; 3],
                    ..request(Some(vec![1]))
                })
                .unwrap(),
                "image_hdr_tags",
            ),
            (
                serde_json::to_vec(&SeAttestationRequest {
                    request_blob: vec![],
                    ..request(Some(vec![1]))
                })
                .unwrap(),
                "request blob",
            ),
            (
                br#"{"request_blob":"!!","measurement_size":1,"additional_size":0,"encr_measurement_key":"","encr_request_nonce":"","image_hdr_tags":""}"#.to_vec(),
                "JSON",
            ),
        ];
        for (challenge, expected) in cases {
            let err = attester.get_evidence(&challenge).await.unwrap_err();
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn detection_reads_the_protected_virtualization_flag() {
        let dir = tempfile::tempdir().unwrap();
        let platform = Platform::new(dir.path());
        assert!(probe(&platform, &Env::default()).unwrap().is_none());
        let flag = platform.path(PROT_VIRT_GUEST);
        std::fs::create_dir_all(flag.parent().unwrap()).unwrap();
        std::fs::write(&flag, "0\n").unwrap();
        assert!(probe(&platform, &Env::default()).unwrap().is_none());
        std::fs::write(&flag, "1\n").unwrap();
        assert_eq!(
            probe(&platform, &Env::default()).unwrap().unwrap().tee(),
            Tee::Se
        );
    }

    #[test]
    fn the_request_json_shape_is_the_kbs_one() {
        let value = serde_json::to_value(request(None)).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "additional_size",
                "encr_measurement_key",
                "encr_request_nonce",
                "image_hdr_tags",
                "measurement_size",
                "request_blob"
            ]
        );
        let with = serde_json::to_value(request(Some(vec![7; 64]))).unwrap();
        assert_eq!(with["runtime_data_digest"], STANDARD.encode([7; 64]));
    }
}
