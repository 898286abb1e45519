//! Provider `ehsm` (feature `ehsm`): Intel eHSM-KMS over its REST API
//! (`POST <endpoint>/ehsm?Action=<action>`, JSON).
//!
//! - `provider_settings`: `{"app_id": "<enrolled APPID>", "endpoint": "https://host:port"}`.
//! - Credentials: `credential_<app_id>.json` (`{"AppId": …, "ApiKey": …}`, as upstream;
//!   upstream's README spelling `credential.<app_id>.json` is read too) in the directory
//!   `EHSM_IN_GUEST_KEY_PATH` names, else in `<kms credential dir>/ehsm`.
//! - TLS: the server's certificate must chain to the web PKI or to `ca.pem` in that
//!   directory (eHSM deployments usually have their own CA). Upstream's client skips
//!   certificate checks altogether; this one never does, and takes `https` only.
//! - Every request body is `{"appid", "nonce", "timestamp", "payload", "sign"}`; `sign` is
//!   the base64 HMAC-SHA256 under the API key of `k=v&…` over the non-empty members sorted
//!   by name, `payload` flattened the same way (`payload=k=v&…`), exactly as eHSM's server
//!   recomputes it. `timestamp` is milliseconds (13 digits; the server accepts 10 minutes of
//!   skew) and `nonce` makes each request unique.
//! - `Encrypt`/`Decrypt` carry base64 data; as upstream, the ciphertext a sealed secret
//!   holds is eHSM's base64 ciphertext text. Vault secrets come from `GetSecretValue`
//!   (`secretName`, optional annotation `version_id`).
//! - Answers are `{"code", "message", "result"}`; signature, time and app errors map to
//!   [`KmsError::AccessDenied`], unknown keys and secrets to [`KmsError::NotFound`].

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use async_trait::async_trait;
use base64::{engine::general_purpose::STANDARD, Engine as _};
use hmac::{Hmac, Mac as _};
use rand_core::{OsRng, RngCore as _};
use serde::Deserialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::{
    plugins::http, provider::Operation, Annotations, Decrypter, Encrypter, Getter, KmsError,
    ProviderSettings, EHSM_PROVIDER,
};

/// The current time in milliseconds since the epoch.
fn now_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The variable naming the credential directory instead of `<kms credential dir>/ehsm`.
pub const KEY_PATH_ENV: &str = "EHSM_IN_GUEST_KEY_PATH";
/// Optional CA certificates of the eHSM server, in the credential directory.
pub(crate) const CA_FILE: &str = "ca.pem";

fn invalid(reason: impl Into<String>) -> KmsError {
    KmsError::InvalidRequest {
        provider: EHSM_PROVIDER.into(),
        reason: reason.into(),
    }
}

fn credential_err(path: &Path, reason: impl Into<String>) -> KmsError {
    KmsError::Credential {
        provider: EHSM_PROVIDER.into(),
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn service(operation: Operation, reason: impl Into<String>) -> KmsError {
    KmsError::Service {
        provider: EHSM_PROVIDER.into(),
        operation,
        reason: reason.into(),
    }
}

/// The credential file.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialFile {
    #[serde(default)]
    app_id: Option<String>,
    api_key: String,
}

/// Reads and checks `credential_<app_id>.json` (or upstream README's
/// `credential.<app_id>.json`).
async fn read_api_key(key_dir: &Path, app_id: &str) -> Result<Zeroizing<String>, KmsError> {
    let primary = key_dir.join(format!("credential_{app_id}.json"));
    let alternative = key_dir.join(format!("credential.{app_id}.json"));
    let (path, text) = match http::read_credential_file(&primary).await {
        Ok(text) => (primary, text),
        Err(first) => match http::read_credential_file(&alternative).await {
            Ok(text) => (alternative, text),
            Err(_) => return Err(credential_err(&primary, first)),
        },
    };
    parse_credential(&text, app_id, &path)
}

fn parse_credential(text: &[u8], app_id: &str, path: &Path) -> Result<Zeroizing<String>, KmsError> {
    if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(credential_err(path, "not a JSON object"));
    }
    let file: CredentialFile = serde_json::from_slice(text).map_err(|e| {
        credential_err(
            path,
            format!(
                "not {{\"AppId\",\"ApiKey\"}} JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let api_key = Zeroizing::new(file.api_key);
    if api_key.is_empty() {
        return Err(credential_err(path, "ApiKey is empty"));
    }
    match file.app_id.as_deref() {
        Some(id) if id != app_id => Err(credential_err(
            path,
            format!(
                "is for AppId `{}`, not `{app_id}`",
                id.chars().take(64).collect::<String>()
            ),
        )),
        _ => Ok(api_key),
    }
}

/// The endpoint of `provider_settings`: an `https` URL without path, query or user.
fn endpoint(value: &str) -> Result<String, KmsError> {
    let url = reqwest::Url::parse(value)
        .map_err(|_| invalid("provider_settings.endpoint is not a URL"))?;
    if url.scheme() != "https" {
        return Err(invalid(
            "provider_settings.endpoint must be https (eHSM requests carry keys and secrets)",
        ));
    }
    if url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || !matches!(url.path(), "" | "/")
    {
        return Err(invalid(
            "provider_settings.endpoint must be https://host[:port] and nothing else",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// `k=v&…` of the non-empty members, sorted by name, objects flattened the same way (the
/// string eHSM's server signs).
pub(crate) fn sign_string(params: &Map<String, Value>) -> String {
    let sorted: BTreeMap<&String, &Value> = params.iter().collect();
    let mut parts = Vec::new();
    for (key, value) in sorted {
        let text = match value {
            Value::Null => continue,
            Value::String(s) if s.is_empty() => continue,
            Value::String(s) => s.clone(),
            Value::Object(inner) => sign_string(inner),
            other => other.to_string(),
        };
        parts.push(format!("{key}={text}"));
    }
    parts.join("&")
}

/// The base64 HMAC-SHA256 of `text` under `api_key`.
pub(crate) fn sign(text: &str, api_key: &str) -> String {
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(api_key.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts every key length"),
    };
    mac.update(text.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// An eHSM-KMS client for one app.
pub(crate) struct EhsmKms {
    app_id: String,
    api_key: Zeroizing<String>,
    endpoint: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for EhsmKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EhsmKms")
            .field("app_id", &self.app_id)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl EhsmKms {
    /// The client `settings` describe, with credentials from `key_dir`.
    pub(crate) async fn from_settings(
        settings: &ProviderSettings,
        key_dir: &Path,
    ) -> Result<Self, KmsError> {
        let get = |key: &str| match settings.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
            Some(Value::String(_)) | None => {
                Err(invalid(format!("provider_settings needs \"{key}\"")))
            }
            Some(_) => Err(invalid(format!("provider_settings.{key} must be a string"))),
        };
        let app_id = get("app_id")?;
        if !http::is_safe_name(app_id, 64) {
            return Err(invalid(format!(
                "provider_settings.app_id `{}` is not an eHSM APPID",
                app_id.chars().take(64).collect::<String>()
            )));
        }
        let endpoint = endpoint(get("endpoint")?)?;
        let api_key = read_api_key(key_dir, app_id).await?;
        let ca_path: PathBuf = key_dir.join(CA_FILE);
        let ca = match tokio::fs::try_exists(&ca_path).await {
            Ok(true) => Some(
                http::read_credential_file(&ca_path)
                    .await
                    .map_err(|e| credential_err(&ca_path, e))?,
            ),
            _ => None,
        };
        let ca_text = match &ca {
            Some(bytes) => {
                vec![std::str::from_utf8(bytes).map_err(|_| credential_err(&ca_path, "not PEM"))?]
            }
            None => Vec::new(),
        };
        let http = http::client(http::Roots::WebPkiAnd, &ca_text, None)
            .map_err(|e| credential_err(&ca_path, e))?;
        Ok(Self {
            app_id: app_id.to_string(),
            api_key,
            endpoint,
            http,
        })
    }

    /// The signed body of a request with `payload`.
    fn body(&self, payload: Map<String, Value>) -> Zeroizing<String> {
        let mut params = Map::new();
        params.insert("appid".into(), Value::String(self.app_id.clone()));
        params.insert("nonce".into(), Value::String(OsRng.next_u64().to_string()));
        params.insert("payload".into(), Value::Object(payload));
        // 13 digits until the year 2286
        params.insert("timestamp".into(), Value::String(now_millis().to_string()));
        let signature = sign(&sign_string(&params), &self.api_key);
        params.insert("sign".into(), Value::String(signature));
        Zeroizing::new(Value::Object(params).to_string())
    }

    /// One call of `action`; the answer's `result`.
    async fn call(
        &self,
        action: &str,
        payload: Map<String, Value>,
        operation: Operation,
        what: &'static str,
        name: &str,
    ) -> Result<Map<String, Value>, KmsError> {
        let body = self.body(payload);
        let url = format!("{}/ehsm?Action={action}", self.endpoint);
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .send()
            .await
            .map_err(|e| service(operation, http_client::error_chain(&e)))?;
        let status = response.status();
        let answer = Zeroizing::new(
            http::read_body(response)
                .await
                .map_err(|e| service(operation, e))?,
        );
        let answer: Value = serde_json::from_slice(&answer).map_err(|_| {
            service(
                operation,
                format!("HTTP {status}: the answer is not eHSM's JSON"),
            )
        })?;
        let code = answer.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message = answer
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect::<String>();
        if code == 200 && status.is_success() {
            return match answer.get("result") {
                Some(Value::Object(result)) => Ok(result.clone()),
                _ => Err(service(operation, "the answer has no result")),
            };
        }
        Err(map_failure(code, &message, operation, what, name))
    }
}

/// eHSM's failure messages to kinds (its codes are 400/500 for almost everything).
fn map_failure(
    code: i64,
    message: &str,
    operation: Operation,
    what: &'static str,
    name: &str,
) -> KmsError {
    let lower = message.to_ascii_lowercase();
    if lower.contains("sign error")
        || lower.contains("timestamp")
        || lower.contains("appid")
        || lower.contains("nonce")
        || lower.contains("disabled")
    {
        return KmsError::AccessDenied {
            provider: EHSM_PROVIDER.into(),
            reason: format!("{code}: {message}"),
        };
    }
    if lower.contains("keyid error")
        || lower.contains("can't find")
        || lower.contains("not found")
        || lower.contains("not find")
    {
        return KmsError::NotFound {
            provider: EHSM_PROVIDER.into(),
            what,
            name: name.chars().take(200).collect(),
        };
    }
    service(operation, format!("{code}: {message}"))
}

fn result_string(
    result: &Map<String, Value>,
    key: &str,
    operation: Operation,
) -> Result<Zeroizing<String>, KmsError> {
    match result.get(key) {
        Some(Value::String(s)) => Ok(Zeroizing::new(s.clone())),
        _ => Err(service(operation, format!("the answer has no {key}"))),
    }
}

#[async_trait]
impl Encrypter for EhsmKms {
    async fn encrypt(
        &self,
        plaintext: &[u8],
        key_id: &str,
    ) -> Result<(Vec<u8>, Annotations), KmsError> {
        let mut payload = Map::new();
        payload.insert("keyid".into(), Value::String(key_id.into()));
        payload.insert(
            "plaintext".into(),
            Value::String(STANDARD.encode(plaintext)),
        );
        let result = self
            .call("Encrypt", payload, Operation::Encrypt, "key", key_id)
            .await?;
        let ciphertext = result_string(&result, "ciphertext", Operation::Encrypt)?;
        Ok((ciphertext.as_bytes().to_vec(), Annotations::new()))
    }
}

#[async_trait]
impl Decrypter for EhsmKms {
    async fn decrypt(
        &self,
        ciphertext: &[u8],
        key_id: &str,
        _annotations: &Annotations,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let ciphertext = std::str::from_utf8(ciphertext)
            .ok()
            .filter(|c| STANDARD.decode(c).is_ok())
            .ok_or_else(|| invalid("an eHSM ciphertext is base64 text"))?;
        let mut payload = Map::new();
        payload.insert("keyid".into(), Value::String(key_id.into()));
        payload.insert("ciphertext".into(), Value::String(ciphertext.into()));
        let result = self
            .call("Decrypt", payload, Operation::Decrypt, "key", key_id)
            .await?;
        let plaintext = result_string(&result, "plaintext", Operation::Decrypt)?;
        STANDARD
            .decode(plaintext.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| service(Operation::Decrypt, "the plaintext is not base64"))
    }
}

#[async_trait]
impl Getter for EhsmKms {
    async fn get_secret(
        &self,
        name: &str,
        annotations: &Annotations,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let mut payload = Map::new();
        payload.insert("secretName".into(), Value::String(name.into()));
        match annotations.get("version_id") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v > 0) => {
                payload.insert("versionId".into(), Value::Number(n.clone()));
            }
            Some(_) => return Err(invalid("annotation `version_id` must be a number above 0")),
        }
        let result = self
            .call(
                "GetSecretValue",
                payload,
                Operation::GetSecret,
                "secret",
                name,
            )
            .await?;
        // eHSM answers an empty result for a secret without that version
        let data = result_string(&result, "secretData", Operation::GetSecret).map_err(|_| {
            KmsError::NotFound {
                provider: EHSM_PROVIDER.into(),
                what: "secret",
                name: name.chars().take(200).collect(),
            }
        })?;
        Ok(Zeroizing::new(data.as_bytes().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    /// The string eHSM's `params_sort_str` builds for the same members, and the HMAC
    /// `crypto.createHmac('sha256', key).update(s).digest('base64')` gives for it.
    #[test]
    fn the_sign_string_is_the_servers() {
        let params = object(json!({
            "timestamp": "1700000000000",
            "appid": "86f0e9fe-7f05-4110-9f65-a224ddee1233",
            "nonce": "42",
            "payload": {"plaintext": "aGVsbG8=", "keyid": "k-1", "aad": ""},
            "empty": "",
            "gone": null,
        }));
        let text = sign_string(&params);
        assert_eq!(
            text,
            "appid=86f0e9fe-7f05-4110-9f65-a224ddee1233&nonce=42&payload=keyid=k-1&plaintext=aGVsbG8=&timestamp=1700000000000"
        );
        // printf %s "$text" | openssl dgst -sha256 -hmac api-key-1 -binary | base64
        assert_eq!(
            sign(&text, "api-key-1"),
            "5K1AdLav5rB4Ib+DoqfNvaKY9ynN9SfJOrLIsxwyzx0="
        );
    }

    #[test]
    fn endpoints_are_https_origins() {
        assert_eq!(
            endpoint("https://10.0.0.1:9000").unwrap(),
            "https://10.0.0.1:9000"
        );
        assert_eq!(
            endpoint("https://ehsm.example/").unwrap(),
            "https://ehsm.example"
        );
        for bad in [
            "http://10.0.0.1:9000",
            "ftp://x",
            "https://u:p@x",
            "https://x/ehsm",
            "https://x?Action=Enroll",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert!(endpoint(bad).unwrap_err().is_invalid_request(), "{bad}");
        }
    }

    #[test]
    fn credential_files_are_checked_without_echoing_them() {
        let path = Path::new("/c");
        let key = parse_credential(br#"{"AppId":"app","ApiKey":"s3cr3t"}"#, "app", path).unwrap();
        assert_eq!(key.as_str(), "s3cr3t");
        assert!(parse_credential(br#"{"ApiKey":"s3cr3t"}"#, "app", path).is_ok());
        for bad in [
            &br#"{"AppId":"other","ApiKey":"s3cr3t"}"#[..],
            br#"{"AppId":"app"}"#,
            br#"{"AppId":"app","ApiKey":""}"#,
            br#"{"AppId":"app","ApiKey":5}"#,
            br#"["app","s3cr3t"]"#,
            br#"{"AppId":"app","ApiKey":"s3cr3t""#,
            b"\xff\xfe",
            b"",
        ] {
            let err = parse_credential(bad, "app", path).unwrap_err();
            assert!(matches!(err, KmsError::Credential { .. }), "{err}");
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
        }
    }

    #[tokio::test]
    async fn settings_are_checked_before_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            json!({}),
            json!({"app_id": "a"}),
            json!({"app_id": "../../etc/passwd", "endpoint": "https://x"}),
            json!({"app_id": 5, "endpoint": "https://x"}),
            json!({"app_id": "a", "endpoint": "http://x"}),
        ] {
            let err = EhsmKms::from_settings(&object(bad.clone()), dir.path())
                .await
                .unwrap_err();
            assert!(err.is_invalid_request(), "{bad}: {err}");
        }
        let err = EhsmKms::from_settings(
            &object(json!({"app_id": "a", "endpoint": "https://x"})),
            dir.path(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, KmsError::Credential { .. }), "{err}");
        assert!(err.to_string().contains("credential_a.json"), "{err}");
    }

    #[test]
    fn failures_map_to_kinds() {
        for message in [
            "sign error",
            "Timestamp error",
            "appid error",
            "keyid is disabled",
        ] {
            assert!(map_failure(400, message, Operation::Decrypt, "key", "k").is_denied());
        }
        assert!(map_failure(400, "keyid error", Operation::Decrypt, "key", "k").is_not_found());
        assert!(map_failure(
            400,
            "Can't find the s's value.",
            Operation::GetSecret,
            "secret",
            "s"
        )
        .is_not_found());
        assert!(matches!(
            map_failure(500, "Server internal error", Operation::Decrypt, "key", "k"),
            KmsError::Service { .. }
        ));
    }
}
