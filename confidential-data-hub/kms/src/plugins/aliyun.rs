//! Provider `aliyun` (feature `aliyun`): Alibaba Cloud KMS with upstream's three kinds of
//! credentials, chosen by `provider_settings.client_type`.
//!
//! | `client_type` | settings | credential files | serves |
//! |---|---|---|---|
//! | `client_key` (also when absent) | `client_key_id`, `kms_instance_id` | `clientKey_<client_key_id>.json`, `password_<client_key_id>.json`, `PrivateKmsCA_<kms_instance_id>.pem` | KMS instance `Encrypt`, `Decrypt`, `GetSecretValue` |
//! | `ecs_ram_role` | – | `ecsRamRole.json`: `{"ecs_ram_role_name", "region_id"}` | `GetSecretValue` with the role's STS credentials from the ECS metadata server |
//! | `sts_token` | `token_path`, `region_id` | the file `token_path` names: `<AccessKeyId>:<AccessKeySecret>:<SecurityToken>` | `GetSecretValue` |
//!
//! Credential files live in the directory `ALIYUN_IN_GUEST_KEY_PATH` names, else in
//! `<kms credential dir>/aliyun` (`/run/confidential-containers/cdh/kbs/kms-credential/aliyun`).
//! Unlike upstream, `token_path` must lie inside that directory (a sealed secret names it,
//! and must not make the hub read other files); a relative `token_path` is taken from it.
//!
//! - A KMS instance is reached at `https://<kms_instance_id>.cryptoservice.kms.aliyuncs.com`
//!   and trusted through its private CA (`PrivateKmsCA_…pem`) only.
//! - The STS clients call `https://kms.<region_id>.aliyuncs.com` (public web PKI).
//! - Decrypt annotations: `{"iv": "<base64>"}` (what `Encrypt` returned); secret
//!   annotations: `{"version_stage": …, "version_id": …}` (optional).
//! - A `binary` secret (`SecretDataType`) is returned decoded from its base64.
//!
//! Error codes of the services map to [`KmsError`]: signature, time, access-key and token
//! errors to [`KmsError::AccessDenied`], missing keys and secrets to
//! [`KmsError::NotFound`], everything else to [`KmsError::Service`], each with the
//! service's code, message, HTTP status and request id.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use async_trait::async_trait;
use base64::{engine::general_purpose::STANDARD, Engine as _};
use prost::Message as _;
use rand_core::{OsRng, RngCore as _};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::{
    aliyun::{self, dkms, RequestSigner},
    plugins::http,
    provider::Operation,
    Annotations, Decrypter, Encrypter, Getter, KmsError, ProviderSettings, ALIYUN_PROVIDER,
};

/// The variable naming the credential directory instead of `<kms credential dir>/aliyun`.
pub const KEY_PATH_ENV: &str = "ALIYUN_IN_GUEST_KEY_PATH";
/// The ECS instance metadata server.
pub(crate) const DEFAULT_METADATA_URL: &str = "http://100.100.100.200";
/// The ECS RAM role file.
pub(crate) const ECS_RAM_ROLE_FILE: &str = "ecsRamRole.json";
/// `AES_GCM`, the algorithm of upstream's envelopes.
const ALGORITHM: &str = "AES_GCM";

/// Where the provider connects, set by the program (tests, private networks), never by a
/// sealed secret.
#[derive(Debug, Clone, Default)]
pub struct AliyunNetwork {
    /// Connect to this address for every Alibaba Cloud API host name (the TLS name checked
    /// stays the real host name).
    pub resolve: Option<SocketAddr>,
    /// PEM certificates trusted for the regional endpoints besides the web PKI.
    pub extra_root_pems: Vec<String>,
    /// The ECS metadata server instead of [`DEFAULT_METADATA_URL`].
    pub metadata_url: Option<String>,
}

impl AliyunNetwork {
    /// The URL of `host` and the client's resolve entry.
    fn url(&self, host: &str, query: &str) -> (String, Option<(String, SocketAddr)>) {
        match self.resolve {
            // reqwest ignores the port of a resolve entry: the URL carries it
            Some(addr) => (
                format!("https://{host}:{}/{query}", addr.port()),
                Some((host.to_string(), addr)),
            ),
            None => (format!("https://{host}/{query}"), None),
        }
    }
}

fn invalid(reason: impl Into<String>) -> KmsError {
    KmsError::InvalidRequest {
        provider: ALIYUN_PROVIDER.into(),
        reason: reason.into(),
    }
}

fn credential_err(path: &Path, reason: impl Into<String>) -> KmsError {
    KmsError::Credential {
        provider: ALIYUN_PROVIDER.into(),
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn service(operation: Operation, reason: impl Into<String>) -> KmsError {
    KmsError::Service {
        provider: ALIYUN_PROVIDER.into(),
        operation,
        reason: reason.into(),
    }
}

/// A string member of the settings: required, or `None` when absent.
fn setting<'a>(settings: &'a ProviderSettings, key: &str) -> Result<Option<&'a str>, KmsError> {
    match settings.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("provider_settings.{key} must be a string"))),
    }
}

fn required<'a>(settings: &'a ProviderSettings, key: &str) -> Result<&'a str, KmsError> {
    setting(settings, key)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(format!("provider_settings needs \"{key}\"")))
}

/// An id that becomes part of a file or host name.
fn checked_name<'a>(key: &str, value: &'a str) -> Result<&'a str, KmsError> {
    if http::is_safe_name(value, 128) {
        Ok(value)
    } else {
        Err(invalid(format!(
            "provider_settings.{key} `{}` is not a valid id ([A-Za-z0-9._-], at most 128)",
            value.chars().take(64).collect::<String>()
        )))
    }
}

/// A region id: it becomes part of a host name.
fn region(value: &str) -> Result<&str, KmsError> {
    if !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(value)
    } else {
        Err(invalid(format!(
            "region_id `{}` is not an Alibaba Cloud region id",
            value.chars().take(64).collect::<String>()
        )))
    }
}

/// One request's failure as the service reported it.
struct ServiceFailure {
    status: u16,
    code: String,
    message: String,
    request_id: String,
}

impl ServiceFailure {
    fn into_error(self, operation: Operation, what: &'static str, name: &str) -> KmsError {
        let reason = format!(
            "{}: {} (HTTP {}, request id {})",
            self.code,
            self.message.chars().take(300).collect::<String>(),
            self.status,
            if self.request_id.is_empty() {
                "none"
            } else {
                &self.request_id
            }
        );
        let code = self.code.as_str();
        if code.contains("NotFound") && !code.starts_with("InvalidAccessKeyId") {
            return KmsError::NotFound {
                provider: ALIYUN_PROVIDER.into(),
                what,
                name: name.chars().take(200).collect(),
            };
        }
        let denied = matches!(
            code,
            "SignatureNotMatch"
                | "SignatureDoesNotMatch"
                | "RequestTimeTooSkewed"
                | "IncompleteSignature"
                | "SignatureNonceUsed"
                | "MissingSecurityToken"
                | "Forbidden.NoPermission"
                | "Forbidden.RAM"
                | "Forbidden"
                | "Rejected.Unauthorized"
        ) || code.starts_with("InvalidAccessKeyId")
            || code.starts_with("InvalidSecurityToken")
            || code.starts_with("InvalidTimeStamp")
            || self.status == 401
            || self.status == 403;
        if denied {
            KmsError::AccessDenied {
                provider: ALIYUN_PROVIDER.into(),
                reason,
            }
        } else {
            service(operation, reason)
        }
    }
}

/// The provider, built for one sealed secret's `provider_settings`.
#[derive(Debug)]
pub(crate) struct AliyunKms {
    client: Kind,
}

#[derive(Debug)]
enum Kind {
    ClientKey(ClientKeyClient),
    Sts(StsClient),
    EcsRamRole(EcsRamRoleClient),
}

impl AliyunKms {
    /// The client `settings` describe, with credentials from `key_dir`.
    pub(crate) async fn from_settings(
        settings: &ProviderSettings,
        key_dir: &Path,
        network: &AliyunNetwork,
    ) -> Result<Self, KmsError> {
        let client_type = setting(settings, "client_type")?.unwrap_or("client_key");
        let client = match client_type {
            "client_key" => {
                Kind::ClientKey(ClientKeyClient::from_settings(settings, key_dir, network).await?)
            }
            "sts_token" => Kind::Sts(StsClient::from_settings(settings, key_dir, network).await?),
            "ecs_ram_role" => Kind::EcsRamRole(EcsRamRoleClient::from_dir(key_dir, network).await?),
            other => {
                return Err(invalid(format!(
                "provider_settings.client_type `{}` is not client_key, ecs_ram_role or sts_token",
                other.chars().take(64).collect::<String>()
            )))
            }
        };
        Ok(Self { client })
    }

    fn client_key(&self, operation: Operation) -> Result<&ClientKeyClient, KmsError> {
        match &self.client {
            Kind::ClientKey(client) => Ok(client),
            _ => Err(invalid(format!(
                "cannot {operation} with client_type ecs_ram_role or sts_token (they serve \
                 vault secrets only); use client_type client_key"
            ))),
        }
    }
}

/// Secret annotations: optional version stage and id.
fn secret_annotations(annotations: &Annotations) -> Result<(String, String), KmsError> {
    let get = |key: &str| match annotations.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(invalid(format!("annotation `{key}` must be a string"))),
    };
    Ok((get("version_stage")?, get("version_id")?))
}

/// A secret's bytes: `binary` secrets travel base64-encoded.
fn secret_bytes(data: String, data_type: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let data = Zeroizing::new(data);
    if data_type.eq_ignore_ascii_case("binary") {
        STANDARD
            .decode(data.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| service(Operation::GetSecret, "a binary secret is not base64"))
    } else {
        Ok(Zeroizing::new(data.as_bytes().to_vec()))
    }
}

#[async_trait]
impl Encrypter for AliyunKms {
    async fn encrypt(
        &self,
        plaintext: &[u8],
        key_id: &str,
    ) -> Result<(Vec<u8>, Annotations), KmsError> {
        let client = self.client_key(Operation::Encrypt)?;
        let request = dkms::EncryptRequest {
            key_id: key_id.into(),
            plaintext: plaintext.to_vec(),
            algorithm: ALGORITHM.into(),
            ..Default::default()
        };
        let mut body = Zeroizing::new(Vec::new());
        request
            .encode(&mut *body)
            .map_err(|e| service(Operation::Encrypt, e.to_string()))?;
        drop(Zeroizing::new(request.plaintext));
        let answer = client
            .call("Encrypt", &body)
            .await
            .map_err(|f| f.into_error(Operation::Encrypt, "key", key_id))?;
        let answer = dkms::EncryptResponse::decode(answer.as_slice())
            .map_err(|e| service(Operation::Encrypt, format!("undecodable answer: {e}")))?;
        let mut annotations = Annotations::new();
        annotations.insert("iv".into(), Value::String(STANDARD.encode(&answer.iv)));
        Ok((answer.ciphertext_blob, annotations))
    }
}

#[async_trait]
impl Decrypter for AliyunKms {
    async fn decrypt(
        &self,
        ciphertext: &[u8],
        key_id: &str,
        annotations: &Annotations,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let client = self.client_key(Operation::Decrypt)?;
        let iv = match annotations.get("iv") {
            Some(Value::String(iv)) => STANDARD
                .decode(iv)
                .map_err(|_| invalid("annotation `iv` is not base64"))?,
            Some(_) => return Err(invalid("annotation `iv` must be a string")),
            None => return Err(invalid("annotations need the \"iv\" Encrypt returned")),
        };
        let request = dkms::DecryptRequest {
            ciphertext_blob: ciphertext.to_vec(),
            key_id: key_id.into(),
            algorithm: ALGORITHM.into(),
            iv,
            ..Default::default()
        };
        let answer = client
            .call("Decrypt", &request.encode_to_vec())
            .await
            .map_err(|f| f.into_error(Operation::Decrypt, "key", key_id))?;
        let answer = dkms::DecryptResponse::decode(answer.as_slice())
            .map_err(|e| service(Operation::Decrypt, format!("undecodable answer: {e}")))?;
        Ok(Zeroizing::new(answer.plaintext))
    }
}

#[async_trait]
impl Getter for AliyunKms {
    async fn get_secret(
        &self,
        name: &str,
        annotations: &Annotations,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let (version_stage, version_id) = secret_annotations(annotations)?;
        match &self.client {
            Kind::ClientKey(client) => {
                let request = dkms::GetSecretValueRequest {
                    secret_name: name.into(),
                    version_stage,
                    version_id,
                    fetch_extended_config: false,
                };
                let answer = Zeroizing::new(
                    client
                        .call("GetSecretValue", &request.encode_to_vec())
                        .await
                        .map_err(|f| f.into_error(Operation::GetSecret, "secret", name))?,
                );
                let answer =
                    dkms::GetSecretValueResponse::decode(answer.as_slice()).map_err(|e| {
                        service(Operation::GetSecret, format!("undecodable answer: {e}"))
                    })?;
                secret_bytes(answer.secret_data, &answer.secret_data_type)
            }
            Kind::Sts(client) => client.get_secret(name, &version_stage, &version_id).await,
            Kind::EcsRamRole(client) => {
                client
                    .sts()
                    .await?
                    .get_secret(name, &version_stage, &version_id)
                    .await
            }
        }
    }
}

/// A dedicated KMS instance with a client key.
#[derive(Debug)]
struct ClientKeyClient {
    signer: Arc<RequestSigner>,
    host: String,
    url: String,
    http: reqwest::Client,
}

impl ClientKeyClient {
    async fn from_settings(
        settings: &ProviderSettings,
        key_dir: &Path,
        network: &AliyunNetwork,
    ) -> Result<Self, KmsError> {
        let client_key_id = checked_name("client_key_id", required(settings, "client_key_id")?)?;
        let instance = checked_name("kms_instance_id", required(settings, "kms_instance_id")?)?;
        let key_path = key_dir.join(format!("clientKey_{client_key_id}.json"));
        let password_path = key_dir.join(format!("password_{client_key_id}.json"));
        let ca_path = key_dir.join(format!("PrivateKmsCA_{instance}.pem"));
        let key_file = http::read_credential_file(&key_path)
            .await
            .map_err(|e| credential_err(&key_path, e))?;
        let password = http::read_credential_file(&password_path)
            .await
            .map_err(|e| credential_err(&password_path, e))?;
        let password = Zeroizing::new(
            String::from_utf8(password.to_vec())
                .map_err(|_| credential_err(&password_path, "not UTF-8"))?,
        );
        let ca = http::read_credential_file(&ca_path)
            .await
            .map_err(|e| credential_err(&ca_path, e))?;
        let ca = std::str::from_utf8(&ca).map_err(|_| credential_err(&ca_path, "not PEM"))?;
        // PKCS#12 key derivation is slow on purpose: keep it off the async workers
        let signer = tokio::task::spawn_blocking(move || {
            RequestSigner::from_client_key_file(&key_file, &password)
        })
        .await
        .map_err(|e| credential_err(&key_path, e.to_string()))?
        .map_err(|e| credential_err(&key_path, e.to_string()))?;
        if signer.client_key_id() != client_key_id {
            return Err(credential_err(
                &key_path,
                format!(
                    "holds client key `{}`, not `{client_key_id}`",
                    signer.client_key_id().chars().take(128).collect::<String>()
                ),
            ));
        }
        let host = format!("{instance}.cryptoservice.kms.aliyuncs.com");
        let (url, resolve) = network.url(&host, "");
        let http = http::client(
            http::Roots::Only,
            &[ca],
            resolve.as_ref().map(|(h, a)| (h.as_str(), *a)),
        )
        .map_err(|e| credential_err(&ca_path, e))?;
        Ok(Self {
            signer: Arc::new(signer),
            host,
            url,
            http,
        })
    }

    /// One signed call of `api_name`; the answer's body, or the service's error.
    async fn call(&self, api_name: &str, body: &[u8]) -> Result<Vec<u8>, ServiceFailure> {
        let date = aliyun::http_date(SystemTime::now());
        let mut request = self.http.post(&self.url).body(body.to_vec());
        for (name, value) in self.signer.headers(&self.host, api_name, body, &date) {
            // reqwest sets these from the URL and the body
            if name != "host" && name != "content-length" {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.map_err(|e| transport(&e))?;
        let status = response.status();
        let body = http::read_body(response).await.map_err(transport_text)?;
        if status.is_success() {
            return Ok(body);
        }
        Err(match dkms::Error::decode(body.as_slice()) {
            Ok(error) if !error.error_code.is_empty() => ServiceFailure {
                status: status.as_u16(),
                code: error.error_code,
                message: error.error_message,
                request_id: error.request_id,
            },
            _ => ServiceFailure {
                status: status.as_u16(),
                code: "HttpError".into(),
                message: format!("HTTP {status} without a KMS error body"),
                request_id: String::new(),
            },
        })
    }
}

fn transport(e: &reqwest::Error) -> ServiceFailure {
    transport_text(http_client::error_chain(e))
}

fn transport_text(message: String) -> ServiceFailure {
    ServiceFailure {
        status: 0,
        code: "Transport".into(),
        message,
        request_id: String::new(),
    }
}

/// STS credentials for the KMS OpenAPI.
struct StsClient {
    access_key_id: String,
    access_key_secret: Zeroizing<String>,
    security_token: Zeroizing<String>,
    region: String,
    host: String,
    url: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for StsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StsClient")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// `token_path`, confined to the credential directory.
async fn token_file(key_dir: &Path, token_path: &str) -> Result<PathBuf, KmsError> {
    if token_path.contains('\0') {
        return Err(invalid("provider_settings.token_path is not a path"));
    }
    let path = key_dir.join(token_path);
    let outside = || {
        invalid(format!(
            "provider_settings.token_path `{}` is not a file in the aliyun credential directory {}",
            token_path.chars().take(128).collect::<String>(),
            key_dir.display()
        ))
    };
    let dir = tokio::fs::canonicalize(key_dir)
        .await
        .map_err(|e| credential_err(key_dir, e.to_string()))?;
    let resolved = tokio::fs::canonicalize(&path)
        .await
        .map_err(|e| credential_err(&path, e.to_string()))?;
    if resolved.starts_with(&dir) && resolved != dir {
        Ok(resolved)
    } else {
        Err(outside())
    }
}

/// `<AccessKeyId>:<AccessKeySecret>:<SecurityToken>`.
fn parse_sts_token(text: &[u8], path: &Path) -> Result<(String, String, String), KmsError> {
    let text = std::str::from_utf8(text).map_err(|_| credential_err(path, "not UTF-8"))?;
    let fields: Vec<&str> = text.trim().split(':').collect();
    match fields.as_slice() {
        [ak, sk, token] if !ak.is_empty() && !sk.is_empty() && !token.is_empty() => {
            Ok((ak.to_string(), sk.to_string(), token.to_string()))
        }
        _ => Err(credential_err(
            path,
            "not <AccessKeyId>:<AccessKeySecret>:<SecurityToken>",
        )),
    }
}

impl StsClient {
    async fn from_settings(
        settings: &ProviderSettings,
        key_dir: &Path,
        network: &AliyunNetwork,
    ) -> Result<Self, KmsError> {
        let token_path = required(settings, "token_path")?;
        let region = region(required(settings, "region_id")?)?.to_string();
        let path = token_file(key_dir, token_path).await?;
        let text = http::read_credential_file(&path)
            .await
            .map_err(|e| credential_err(&path, e))?;
        let (ak, sk, token) = parse_sts_token(&text, &path)?;
        Self::new(
            ak,
            Zeroizing::new(sk),
            Zeroizing::new(token),
            region,
            network,
        )
    }

    fn new(
        access_key_id: String,
        access_key_secret: Zeroizing<String>,
        security_token: Zeroizing<String>,
        region: String,
        network: &AliyunNetwork,
    ) -> Result<Self, KmsError> {
        let host = format!("kms.{region}.aliyuncs.com");
        let (url, resolve) = network.url(&host, "");
        let pems: Vec<&str> = network.extra_root_pems.iter().map(String::as_str).collect();
        let http = http::client(
            http::Roots::WebPkiAnd,
            &pems,
            resolve.as_ref().map(|(h, a)| (h.as_str(), *a)),
        )
        .map_err(|e| service(Operation::GetSecret, e))?;
        Ok(Self {
            access_key_id,
            access_key_secret,
            security_token,
            region,
            host,
            url,
            http,
        })
    }

    /// The signed parameters of one OpenAPI call.
    fn params(&self, action: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        let mut params: BTreeMap<String, String> = [
            ("Action", action),
            ("Version", aliyun::RPC_API_VERSION),
            ("Format", "JSON"),
            ("RegionId", &self.region),
            ("AccessKeyId", &self.access_key_id),
            ("SecurityToken", &self.security_token),
            ("SignatureMethod", aliyun::RPC_SIGNATURE_METHOD),
            ("SignatureVersion", "1.0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        params.insert("SignatureNonce".into(), hex::encode(nonce));
        params.insert("Timestamp".into(), aliyun::iso8601(SystemTime::now()));
        for (k, v) in extra {
            if !v.is_empty() {
                params.insert(k.to_string(), v.to_string());
            }
        }
        let signature = aliyun::rpc_signature(&params, &self.access_key_secret);
        params.insert("Signature".into(), signature);
        params
    }

    async fn get_secret(
        &self,
        name: &str,
        version_stage: &str,
        version_id: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let params = self.params(
            "GetSecretValue",
            &[
                ("SecretName", name),
                ("VersionStage", version_stage),
                ("VersionId", version_id),
            ],
        );
        let query = params
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    aliyun::percent_encode(k),
                    aliyun::percent_encode(v)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let url = Zeroizing::new(format!("{}?{query}", self.url));
        let failure = |f: ServiceFailure| f.into_error(Operation::GetSecret, "secret", name);
        let response = self
            .http
            .post(url.as_str())
            .header("x-acs-action", "GetSecretValue")
            .header("x-acs-version", aliyun::RPC_API_VERSION)
            .send()
            .await
            .map_err(|e| failure(transport(&e)))?;
        let status = response.status();
        let body = Zeroizing::new(
            http::read_body(response)
                .await
                .map_err(|e| failure(transport_text(e)))?,
        );
        let answer: Value = serde_json::from_slice(&body).map_err(|_| {
            failure(ServiceFailure {
                status: status.as_u16(),
                code: "HttpError".into(),
                message: format!("HTTP {status}, the answer is not JSON"),
                request_id: String::new(),
            })
        })?;
        let text = |key: &str| {
            answer
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        if !status.is_success() {
            return Err(failure(ServiceFailure {
                status: status.as_u16(),
                code: Some(text("Code"))
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "HttpError".into()),
                message: text("Message"),
                request_id: text("RequestId"),
            }));
        }
        let Some(Value::String(data)) = answer.get("SecretData") else {
            return Err(service(
                Operation::GetSecret,
                format!("the answer for `{}` has no SecretData", self.host),
            ));
        };
        secret_bytes(data.clone(), &text("SecretDataType"))
    }
}

/// The role file (`ecsRamRole.json`).
#[derive(Deserialize)]
struct EcsRamRoleFile {
    ecs_ram_role_name: String,
    region_id: String,
}

/// An ECS RAM role: STS credentials from the instance metadata server.
#[derive(Debug)]
struct EcsRamRoleClient {
    role: String,
    region: String,
    metadata_url: String,
    network: AliyunNetwork,
}

/// The metadata server's answer for a role.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredential {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
}

impl EcsRamRoleClient {
    async fn from_dir(key_dir: &Path, network: &AliyunNetwork) -> Result<Self, KmsError> {
        let path = key_dir.join(ECS_RAM_ROLE_FILE);
        let text = http::read_credential_file(&path)
            .await
            .map_err(|e| credential_err(&path, e))?;
        if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(credential_err(&path, "not a JSON object"));
        }
        let file: EcsRamRoleFile = serde_json::from_slice(&text).map_err(|e| {
            credential_err(
                &path,
                format!(
                    "not {{\"ecs_ram_role_name\",\"region_id\"}} JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        if !http::is_safe_name(&file.ecs_ram_role_name, 64) {
            return Err(credential_err(
                &path,
                "ecs_ram_role_name is not a RAM role name ([A-Za-z0-9._-], at most 64)",
            ));
        }
        let region = region(&file.region_id)
            .map_err(|e| credential_err(&path, e.to_string()))?
            .to_string();
        Ok(Self {
            role: file.ecs_ram_role_name,
            region,
            metadata_url: network
                .metadata_url
                .clone()
                .unwrap_or_else(|| DEFAULT_METADATA_URL.to_string()),
            network: network.clone(),
        })
    }

    /// An STS client with the role's current credentials.
    async fn sts(&self) -> Result<StsClient, KmsError> {
        let url = format!(
            "{}/latest/meta-data/ram/security-credentials/{}",
            self.metadata_url.trim_end_matches('/'),
            self.role
        );
        let denied = |reason: String| KmsError::AccessDenied {
            provider: ALIYUN_PROVIDER.into(),
            reason: format!("ECS RAM role `{}`: {reason}", self.role),
        };
        let client = http::plain_client().map_err(|e| service(Operation::GetSecret, e))?;
        let response = client.get(&url).send().await.map_err(|e| {
            service(
                Operation::GetSecret,
                format!(
                    "the ECS metadata server {} is unreachable: {}",
                    self.metadata_url,
                    http_client::error_chain(&e)
                ),
            )
        })?;
        let status = response.status();
        let body = Zeroizing::new(
            http::read_body(response)
                .await
                .map_err(|e| service(Operation::GetSecret, e))?,
        );
        if !status.is_success() {
            return Err(denied(format!(
                "the metadata server answered HTTP {status} (is the role attached to this instance?)"
            )));
        }
        let credential: RoleCredential = serde_json::from_slice(&body)
            .map_err(|_| denied("the metadata server's answer has no STS credentials".into()))?;
        let RoleCredential {
            access_key_id,
            access_key_secret,
            security_token,
        } = credential;
        StsClient::new(
            access_key_id,
            Zeroizing::new(access_key_secret),
            Zeroizing::new(security_token),
            self.region.clone(),
            &self.network,
        )
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

    #[tokio::test]
    async fn settings_are_checked_before_any_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let network = AliyunNetwork::default();
        for bad in [
            serde_json::json!({"client_type": "other"}),
            serde_json::json!({"client_type": 5}),
            serde_json::json!({"client_type": "client_key"}),
            serde_json::json!({"client_key_id": "KAAP.1", "kms_instance_id": "../kst"}),
            serde_json::json!({"client_key_id": "../../etc/passwd", "kms_instance_id": "kst-1"}),
            serde_json::json!({"client_key_id": "KAAP.1", "kms_instance_id": 3}),
            serde_json::json!({"client_type": "sts_token", "token_path": "t"}),
            serde_json::json!({"client_type": "sts_token", "token_path": "t", "region_id": "x.evil.com/"}),
        ] {
            let err = AliyunKms::from_settings(&settings(bad.clone()), dir.path(), &network)
                .await
                .unwrap_err();
            assert!(err.is_invalid_request(), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn token_paths_stay_in_the_credential_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("aliyun");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("sts"), "ak:sk:token").unwrap();
        std::fs::write(root.path().join("outside"), "ak:sk:token").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside"), dir.join("link")).unwrap();
        assert_eq!(
            token_file(&dir, "sts").await.unwrap(),
            std::fs::canonicalize(dir.join("sts")).unwrap()
        );
        let absolute = dir.join("sts");
        assert!(token_file(&dir, absolute.to_str().unwrap()).await.is_ok());
        for hostile in ["../outside", "link", "/etc/passwd", ".", "", "a\0b"] {
            let err = token_file(&dir, hostile).await.unwrap_err();
            assert!(
                err.is_invalid_request() || matches!(err, KmsError::Credential { .. }),
                "{hostile:?}: {err}"
            );
        }
    }

    #[test]
    fn sts_token_files_are_three_fields() {
        let path = Path::new("/t");
        let (ak, sk, token) = parse_sts_token(b"STS.ak:secret:tok/en+=\n", path).unwrap();
        assert_eq!(
            (ak.as_str(), sk.as_str(), token.as_str()),
            ("STS.ak", "secret", "tok/en+=")
        );
        for bad in [
            &b""[..],
            b"ak:sk",
            b"ak:sk:token:extra",
            b"ak::token",
            b"\xff:\xfe:\xfd",
            b"{\"AccessKeyId\":\"a\"}",
        ] {
            let err = parse_sts_token(bad, path).unwrap_err();
            assert!(matches!(err, KmsError::Credential { .. }), "{err}");
        }
    }

    #[tokio::test]
    async fn ecs_ram_role_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let network = AliyunNetwork::default();
        let path = dir.path().join(ECS_RAM_ROLE_FILE);
        assert!(EcsRamRoleClient::from_dir(dir.path(), &network)
            .await
            .is_err());
        std::fs::write(
            &path,
            r#"{"ecs_ram_role_name":"cdh-role","region_id":"cn-hangzhou"}"#,
        )
        .unwrap();
        let client = EcsRamRoleClient::from_dir(dir.path(), &network)
            .await
            .unwrap();
        assert_eq!(client.role, "cdh-role");
        assert_eq!(client.metadata_url, DEFAULT_METADATA_URL);
        for bad in [
            r#"{"ecs_ram_role_name":"cdh-role"}"#,
            r#"["cdh-role","cn-hangzhou"]"#,
            r#"{"ecs_ram_role_name":"../../latest/user-data","region_id":"cn-hangzhou"}"#,
            r#"{"ecs_ram_role_name":"r","region_id":"evil.example.com/x"}"#,
            r#"{"ecs_ram_role_name":5,"region_id":"cn-hangzhou"}"#,
            r#"{"ecs_ram_role_name":"r","region_id":"cn-hangzhou""#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = EcsRamRoleClient::from_dir(dir.path(), &network)
                .await
                .unwrap_err();
            assert!(matches!(err, KmsError::Credential { .. }), "{bad}: {err}");
        }
        std::fs::write(&path, vec![b' '; 70_000]).unwrap();
        assert!(EcsRamRoleClient::from_dir(dir.path(), &network)
            .await
            .is_err());
    }

    #[test]
    fn service_errors_map_to_kinds() {
        let failure = |status, code: &str| ServiceFailure {
            status,
            code: code.into(),
            message: "m".into(),
            request_id: "r-1".into(),
        };
        for (status, code) in [
            (401, "SignatureNotMatch"),
            (400, "RequestTimeTooSkewed"),
            (400, "SignatureDoesNotMatch"),
            (400, "InvalidSecurityToken.Expired"),
            (404, "InvalidAccessKeyId.NotFound"),
            (400, "InvalidTimeStamp.Expired"),
        ] {
            let err = failure(status, code).into_error(Operation::Decrypt, "key", "k");
            assert!(err.is_denied(), "{code}: {err}");
            assert!(err.to_string().contains(code), "{err}");
            assert!(err.to_string().contains("request id r-1"), "{err}");
        }
        for code in ["Forbidden.KeyNotFound", "Forbidden.ResourceNotFound"] {
            assert!(failure(404, code)
                .into_error(Operation::GetSecret, "secret", "s")
                .is_not_found());
        }
        let err = failure(400, "InvalidParameter").into_error(Operation::Decrypt, "key", "k");
        assert!(matches!(err, KmsError::Service { .. }), "{err}");
    }
}
