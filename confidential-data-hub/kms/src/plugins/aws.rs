//! Provider `aws` (feature `aws`): AWS KMS `Decrypt`/`Encrypt` and Secrets Manager
//! `GetSecretValue` through the official AWS SDK, over a rustls (aws-lc-rs) HTTPS client.
//!
//! - `provider_settings`: `{"region": "<aws region>"}` (required).
//! - Credentials: `credential.json` in the directory `AWS_IN_GUEST_KEY_PATH` names, else in
//!   `<kms credential dir>/aws` (`/run/confidential-containers/cdh/kbs/kms-credential/aws/`,
//!   where `[[credentials]]` or `cdh.kbs_resources` can provision it), as upstream:
//!   `{"access_key_id": "…", "secret_access_key": "…", "session_token": "…"|null}` (static
//!   IAM or STS credentials, provisioned into encrypted guest memory). The SDK's own
//!   sources (`AWS_ACCESS_KEY_ID`, `~/.aws`, instance metadata) are never consulted.
//! - Decrypt annotations: `{"encryption_context": {"<key>": "<value>", …}}` (optional; must
//!   match what the data key was encrypted with).
//! - Secret annotations: `{"version_id": "…", "version_stage": "…"}` (optional).
//!
//! The endpoint can be overridden by the program ([`crate::KmsProviders::with_aws_endpoint_url`])
//! for a VPC endpoint or a local emulator; a sealed secret cannot choose it.

use std::{collections::HashMap, path::Path, sync::OnceLock, time::Duration};

use async_trait::async_trait;
use aws_sdk_kms::{
    config::{BehaviorVersion, Credentials, Region, SharedHttpClient},
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    primitives::Blob,
};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncReadExt as _;
use zeroize::{Zeroize, Zeroizing};

use crate::{
    provider::Operation, Annotations, Decrypter, Encrypter, Getter, KmsError, ProviderSettings,
    AWS_PROVIDER,
};

/// The credential file in the provider's directory.
pub(crate) const CREDENTIAL_FILE: &str = "credential.json";
/// Largest credential file accepted.
const MAX_CREDENTIAL_LEN: u64 = 64 * 1024;
/// Limit for one AWS operation, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit for connecting to AWS.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Static AWS credentials (the credential file).
#[derive(Deserialize)]
pub(crate) struct AwsCredential {
    /// `AKIA…` / `ASIA…`
    pub(crate) access_key_id: String,
    /// the secret key
    pub(crate) secret_access_key: String,
    /// STS session token for temporary credentials
    #[serde(default)]
    pub(crate) session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredential")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Drop for AwsCredential {
    fn drop(&mut self) {
        self.secret_access_key.zeroize();
        if let Some(token) = &mut self.session_token {
            token.zeroize();
        }
    }
}

fn invalid(reason: String) -> KmsError {
    KmsError::InvalidRequest {
        provider: AWS_PROVIDER.into(),
        reason,
    }
}

/// The region of `provider_settings`: letters, digits and dashes only, since it becomes
/// part of a host name.
fn region_of(settings: &ProviderSettings) -> Result<String, KmsError> {
    match settings.get("region") {
        Some(Value::String(region))
            if !region.is_empty()
                && region.len() <= 64
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            Ok(region.clone())
        }
        Some(Value::String(region)) => Err(invalid(format!(
            "provider_settings.region `{}` is not an AWS region name",
            region.chars().take(64).collect::<String>()
        ))),
        Some(_) => Err(invalid("provider_settings.region must be a string".into())),
        None => Err(invalid(
            "provider_settings needs a \"region\" (e.g. {\"region\":\"us-east-1\"})".into(),
        )),
    }
}

/// Reads the credential file (at most 64 KiB); the error never shows its contents.
async fn read_credential(path: &Path) -> Result<AwsCredential, KmsError> {
    let credential_err = |reason: String| KmsError::Credential {
        provider: AWS_PROVIDER.into(),
        path: path.to_path_buf(),
        reason,
    };
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| credential_err(e.to_string()))?;
    let mut contents = Zeroizing::new(Vec::new());
    file.take(MAX_CREDENTIAL_LEN + 1)
        .read_to_end(&mut contents)
        .await
        .map_err(|e| credential_err(e.to_string()))?;
    if contents.len() as u64 > MAX_CREDENTIAL_LEN {
        return Err(credential_err(format!(
            "larger than {MAX_CREDENTIAL_LEN} bytes"
        )));
    }
    // serde would also take a JSON array for the struct
    if contents.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(credential_err("not a JSON object".into()));
    }
    let credential: AwsCredential = serde_json::from_slice(&contents).map_err(|e| {
        // serde's message may quote the input; keep only its position
        credential_err(format!(
            "not {{\"access_key_id\",\"secret_access_key\",\"session_token\"?}} JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if credential.access_key_id.is_empty() || credential.secret_access_key.is_empty() {
        return Err(credential_err(
            "access_key_id and secret_access_key must not be empty".into(),
        ));
    }
    Ok(credential)
}

/// One HTTPS client (and connection pool) for every AWS client of the process.
fn http_client() -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
                .build_https()
        })
        .clone()
}

/// An AWS KMS and Secrets Manager client for one region.
#[derive(Debug, Clone)]
pub(crate) struct AwsKms {
    kms: aws_sdk_kms::Client,
    secrets: aws_sdk_secretsmanager::Client,
}

impl AwsKms {
    /// The client for `provider_settings`, with the credentials in `credential_file`.
    pub(crate) async fn from_settings(
        settings: &ProviderSettings,
        credential_file: &Path,
        endpoint_url: Option<&str>,
    ) -> Result<Self, KmsError> {
        let region = region_of(settings)?;
        let credential = read_credential(credential_file).await?;
        Ok(Self::new(&region, &credential, endpoint_url))
    }

    /// The client for `region` with `credential`.
    pub(crate) fn new(
        region: &str,
        credential: &AwsCredential,
        endpoint_url: Option<&str>,
    ) -> Self {
        let credentials = Credentials::new(
            credential.access_key_id.clone(),
            credential.secret_access_key.clone(),
            credential.session_token.clone(),
            None,
            "cdh-kms-credential-file",
        );
        let timeouts = aws_sdk_kms::config::timeout::TimeoutConfig::builder()
            .operation_timeout(OPERATION_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build();
        let mut kms = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .credentials_provider(credentials.clone())
            .http_client(http_client())
            .timeout_config(timeouts.clone());
        let mut secrets = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .credentials_provider(credentials)
            .http_client(http_client())
            .timeout_config(timeouts);
        if let Some(url) = endpoint_url {
            kms = kms.endpoint_url(url);
            secrets = secrets.endpoint_url(url);
        }
        Self {
            kms: aws_sdk_kms::Client::from_conf(kms.build()),
            secrets: aws_sdk_secretsmanager::Client::from_conf(secrets.build()),
        }
    }
}

/// Maps an SDK failure: AWS's "not found" and "access denied" codes to their own errors,
/// everything else (service errors, transport, timeouts) to [`KmsError::Service`].
fn sdk_error<E, R>(
    error: SdkError<E, R>,
    operation: Operation,
    what: &'static str,
    name: &str,
) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = error.code().unwrap_or_default().to_string();
    match code.as_str() {
        "NotFoundException" | "ResourceNotFoundException" => KmsError::NotFound {
            provider: AWS_PROVIDER.into(),
            what,
            name: name.chars().take(200).collect(),
        },
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignature"
        | "ExpiredTokenException"
        | "KMSInvalidStateException"
        | "DisabledException" => KmsError::AccessDenied {
            provider: AWS_PROVIDER.into(),
            reason: format!("{code}: {}", error.message().unwrap_or("no message")),
        },
        _ => KmsError::Service {
            provider: AWS_PROVIDER.into(),
            operation,
            reason: match error.message() {
                Some(message) if !code.is_empty() => format!("{code}: {message}"),
                _ => DisplayErrorContext(&error).to_string(),
            },
        },
    }
}

/// The string-valued member `key` of the annotations, if present.
fn string_annotation(annotations: &Annotations, key: &str) -> Result<Option<String>, KmsError> {
    match annotations.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!("annotation `{key}` must be a string"))),
    }
}

/// `encryption_context` of the annotations: an object of strings.
fn encryption_context(annotations: &Annotations) -> Result<HashMap<String, String>, KmsError> {
    match annotations.get("encryption_context") {
        None | Some(Value::Null) => Ok(HashMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(invalid(format!(
                    "encryption_context value of `{k}` must be a string"
                ))),
            })
            .collect(),
        Some(_) => Err(invalid(
            "annotation `encryption_context` must be an object of strings".into(),
        )),
    }
}

#[async_trait]
impl Decrypter for AwsKms {
    async fn decrypt(
        &self,
        ciphertext: &[u8],
        key_id: &str,
        annotations: &Annotations,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let context = encryption_context(annotations)?;
        let mut request = self
            .kms
            .decrypt()
            .ciphertext_blob(Blob::new(ciphertext.to_vec()));
        if !key_id.is_empty() {
            request = request.key_id(key_id);
        }
        if !context.is_empty() {
            request = request.set_encryption_context(Some(context));
        }
        let answer = request
            .send()
            .await
            .map_err(|e| sdk_error(e, Operation::Decrypt, "key", key_id))?;
        let plaintext = answer.plaintext.ok_or_else(|| KmsError::Service {
            provider: AWS_PROVIDER.into(),
            operation: Operation::Decrypt,
            reason: "the answer has no plaintext".into(),
        })?;
        Ok(Zeroizing::new(plaintext.into_inner()))
    }
}

#[async_trait]
impl Encrypter for AwsKms {
    async fn encrypt(
        &self,
        plaintext: &[u8],
        key_id: &str,
    ) -> Result<(Vec<u8>, Annotations), KmsError> {
        let answer = self
            .kms
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(plaintext.to_vec()))
            .send()
            .await
            .map_err(|e| sdk_error(e, Operation::Encrypt, "key", key_id))?;
        let ciphertext = answer.ciphertext_blob.ok_or_else(|| KmsError::Service {
            provider: AWS_PROVIDER.into(),
            operation: Operation::Encrypt,
            reason: "the answer has no ciphertext".into(),
        })?;
        // the IV is inside AWS's ciphertext blob: nothing to pass back
        Ok((ciphertext.into_inner(), Annotations::new()))
    }
}

#[async_trait]
impl Getter for AwsKms {
    async fn get_secret(
        &self,
        name: &str,
        annotations: &Annotations,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let mut request = self.secrets.get_secret_value().secret_id(name);
        if let Some(version_id) = string_annotation(annotations, "version_id")? {
            request = request.version_id(version_id);
        }
        if let Some(version_stage) = string_annotation(annotations, "version_stage")? {
            request = request.version_stage(version_stage);
        }
        let mut answer = request
            .send()
            .await
            .map_err(|e| sdk_error(e, Operation::GetSecret, "secret", name))?;
        if let Some(text) = answer.secret_string.take() {
            return Ok(Zeroizing::new(text.into_bytes()));
        }
        if let Some(binary) = answer.secret_binary.take() {
            return Ok(Zeroizing::new(binary.into_inner()));
        }
        Err(KmsError::Service {
            provider: AWS_PROVIDER.into(),
            operation: Operation::GetSecret,
            reason: format!("secret `{name}` has neither a string nor a binary value"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(value: Value) -> ProviderSettings {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn the_region_is_required_and_checked() {
        assert_eq!(
            region_of(&settings(serde_json::json!({"region": "eu-west-1"}))).unwrap(),
            "eu-west-1"
        );
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"region": ""}),
            serde_json::json!({"region": 5}),
            serde_json::json!({"region": "evil.example/"}),
            serde_json::json!({"region": "EU-WEST-1"}),
        ] {
            let err = region_of(&settings(bad.clone())).unwrap_err();
            assert!(
                matches!(err, KmsError::InvalidRequest { .. }),
                "{bad}: {err}"
            );
            assert!(err.is_invalid_request());
        }
    }

    #[tokio::test]
    async fn credential_files_are_checked_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CREDENTIAL_FILE);
        let err = read_credential(&path).await.unwrap_err();
        assert!(matches!(err, KmsError::Credential { .. }), "{err}");

        std::fs::write(
            &path,
            r#"{"access_key_id":"AKIA1","secret_access_key":"s3cr3t-value"}"#,
        )
        .unwrap();
        let credential = read_credential(&path).await.unwrap();
        assert_eq!(credential.access_key_id, "AKIA1");
        assert!(credential.session_token.is_none());
        assert!(!format!("{credential:?}").contains("s3cr3t"));

        for bad in [
            r#"{"access_key_id":"AKIA1"}"#,
            r#"{"access_key_id":"","secret_access_key":"s3cr3t-value"}"#,
            r#"["AKIA1","s3cr3t-value"]"#,
            r#"{"access_key_id":"AKIA1","secret_access_key":"s3cr3t-value""#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = read_credential(&path).await.unwrap_err();
            assert!(matches!(err, KmsError::Credential { .. }), "{bad}: {err}");
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
        }
        std::fs::write(&path, vec![b' '; MAX_CREDENTIAL_LEN as usize + 1]).unwrap();
        assert!(read_credential(&path)
            .await
            .unwrap_err()
            .to_string()
            .contains("larger than"));
    }

    #[test]
    fn annotations_are_typed() {
        let ok = settings(serde_json::json!({"encryption_context": {"purpose": "cdh"}}));
        assert_eq!(encryption_context(&ok).unwrap()["purpose"], "cdh");
        assert!(encryption_context(&Annotations::new()).unwrap().is_empty());
        for bad in [
            serde_json::json!({"encryption_context": "purpose=cdh"}),
            serde_json::json!({"encryption_context": {"n": 1}}),
        ] {
            assert!(encryption_context(&settings(bad)).is_err());
        }
        let versions =
            settings(serde_json::json!({"version_stage": "AWSPREVIOUS", "version_id": ""}));
        assert_eq!(
            string_annotation(&versions, "version_stage")
                .unwrap()
                .as_deref(),
            Some("AWSPREVIOUS")
        );
        assert_eq!(string_annotation(&versions, "version_id").unwrap(), None);
        assert!(string_annotation(
            &settings(serde_json::json!({"version_id": 3})),
            "version_id"
        )
        .is_err());
    }
}
