//! Alibaba Cloud KMS on 127.0.0.1, from the public API references:
//!
//! - **KMS instance API** (host `<instance>.cryptoservice.kms.aliyuncs.com`): protobuf
//!   `Encrypt` (AES_GCM), `Decrypt`, `GetSecretValue`, each request signed with a client
//!   key (`Authorization: Bearer <RSASSA-PKCS1-v1_5 SHA-256>` over
//!   `POST\n<Content-Sha256>\n<Content-Type>\n<Date>\n<x-kms-* headers>/`). Refusals:
//!   `InvalidApiVersion`, `InvalidApiName`, `InvalidParam` (Date, signature method),
//!   `MissingParameter` (access key), `RequestTimeTooSkewed` (more than 15 minutes off),
//!   `InvalidAccessKeyId.NotFound`, 401 `SignatureNotMatch`, 404 `Forbidden.KeyNotFound`,
//!   404 `Forbidden.ResourceNotFound`, 400 `InvalidParameter`, each as the protobuf `Error`.
//! - **KMS OpenAPI** (host `kms.<region>.aliyuncs.com`): RPC-style `GetSecretValue` with
//!   STS credentials (`Signature` = HMAC-SHA1 under `<secret>&` of
//!   `POST&%2F&<encoded sorted parameters>`). Refusals as JSON
//!   `{"HttpStatus","RequestId","HostId","Code","Message"}`: `InvalidTimeStamp.Format`,
//!   `InvalidTimeStamp.Expired`, `InvalidAccessKeyId.NotFound`, `SignatureDoesNotMatch`,
//!   `SignatureNonceUsed`, `MissingSecurityToken`, `InvalidSecurityToken.Mismatch`,
//!   `InvalidSecurityToken.Expired`, 404 `Forbidden.ResourceNotFound`.
//! - **ECS metadata server** (plain HTTP, its own port):
//!   `GET /latest/meta-data/ram/security-credentials/<role>`.
//!
//! One HTTPS port serves both APIs (told apart by the `Host` header); its certificate
//! names `*.cryptoservice.kms.aliyuncs.com` and the regional hosts of [`REGIONS`], issued
//! by a throw-away CA ([`AliyunKms::ca_pem`], the instance's `PrivateKmsCA_….pem`).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use aes_gcm::{aead::Aead as _, aead::Payload, Aes256Gcm, KeyInit as _, Nonce};

/// A 96-bit GCM nonce from 12 bytes.
fn nonce(iv: &[u8]) -> Option<Nonce<aes_gcm::aead::consts::U12>> {
    <[u8; 12]>::try_from(iv).ok().map(Nonce::from)
}
use base64::{engine::general_purpose::STANDARD, Engine as _};
use hmac::{Hmac, Mac};
use prost::Message as _;
use rand_core::{OsRng, RngCore as _};
use rsa::{
    pkcs1v15::{Signature, VerifyingKey},
    pkcs8::EncodePrivateKey as _,
    signature::Verifier as _,
    RsaPrivateKey, RsaPublicKey,
};
use sha2::{Digest as _, Sha256};
use tokio::task::JoinHandle;

use super::{lock, now_secs, parse_iso8601, percent_decode, random_hex, Incoming, Reply};

/// Regions whose OpenAPI host the server's certificate names.
pub const REGIONS: &[&str] = &["cn-hangzhou", "cn-shanghai", "cn-beijing"];
/// Largest clock difference either API accepts (15 minutes).
const MAX_SKEW_SECS: i64 = 15 * 60;

/// The instance API's messages (`dkms_api`).
mod dkms {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct EncryptRequest {
        #[prost(string, tag = "1")]
        pub key_id: String,
        #[prost(bytes = "vec", tag = "2")]
        pub plaintext: Vec<u8>,
        #[prost(string, tag = "3")]
        pub algorithm: String,
        #[prost(bytes = "vec", tag = "4")]
        pub aad: Vec<u8>,
        #[prost(bytes = "vec", tag = "5")]
        pub iv: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct EncryptResponse {
        #[prost(string, tag = "1")]
        pub key_id: String,
        #[prost(bytes = "vec", tag = "2")]
        pub ciphertext_blob: Vec<u8>,
        #[prost(bytes = "vec", tag = "3")]
        pub iv: Vec<u8>,
        #[prost(string, tag = "4")]
        pub request_id: String,
        #[prost(string, tag = "5")]
        pub algorithm: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct DecryptRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub ciphertext_blob: Vec<u8>,
        #[prost(string, tag = "2")]
        pub key_id: String,
        #[prost(string, tag = "3")]
        pub algorithm: String,
        #[prost(bytes = "vec", tag = "4")]
        pub aad: Vec<u8>,
        #[prost(bytes = "vec", tag = "5")]
        pub iv: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct DecryptResponse {
        #[prost(string, tag = "1")]
        pub key_id: String,
        #[prost(bytes = "vec", tag = "2")]
        pub plaintext: Vec<u8>,
        #[prost(string, tag = "3")]
        pub request_id: String,
        #[prost(string, tag = "4")]
        pub algorithm: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct GetSecretValueRequest {
        #[prost(string, tag = "1")]
        pub secret_name: String,
        #[prost(string, tag = "2")]
        pub version_stage: String,
        #[prost(string, tag = "3")]
        pub version_id: String,
        #[prost(bool, tag = "4")]
        pub fetch_extended_config: bool,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct GetSecretValueResponse {
        #[prost(string, tag = "1")]
        pub secret_name: String,
        #[prost(string, tag = "2")]
        pub secret_type: String,
        #[prost(string, tag = "3")]
        pub secret_data: String,
        #[prost(string, tag = "4")]
        pub secret_data_type: String,
        #[prost(string, repeated, tag = "5")]
        pub version_stages: Vec<String>,
        #[prost(string, tag = "6")]
        pub version_id: String,
        #[prost(string, tag = "8")]
        pub request_id: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Error {
        #[prost(int32, tag = "1")]
        pub status_code: i32,
        #[prost(string, tag = "2")]
        pub error_code: String,
        #[prost(string, tag = "3")]
        pub error_message: String,
        #[prost(string, tag = "4")]
        pub request_id: String,
    }
}

/// A client key as Alibaba Cloud hands it out.
#[derive(Debug, Clone)]
pub struct ClientKey {
    /// `KAAP.…`
    pub id: String,
    /// The `clientKey_<id>.json` file.
    pub json: String,
    /// The `password_<id>.json` file.
    pub password: String,
}

#[derive(Debug, Clone)]
struct SecretVersion {
    version_id: String,
    stages: Vec<String>,
    data: String,
    data_type: &'static str,
}

#[derive(Debug, Clone)]
struct AccessKey {
    secret: String,
    /// STS credentials: the token and its expiry (seconds since the epoch)
    token: Option<(String, i64)>,
}

#[derive(Debug, Default)]
struct State {
    client_keys: HashMap<String, RsaPublicKey>,
    keys: HashMap<String, [u8; 32]>,
    secrets: HashMap<String, Vec<SecretVersion>>,
    access_keys: HashMap<String, AccessKey>,
    roles: HashMap<String, String>,
    nonces: HashSet<String>,
    skew: i64,
    calls: Vec<String>,
}

/// The server; stops when dropped.
#[derive(Debug)]
pub struct AliyunKms {
    addr: SocketAddr,
    metadata_addr: SocketAddr,
    ca_pem: String,
    state: Arc<Mutex<State>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for AliyunKms {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl AliyunKms {
    /// Starts the APIs and the metadata server on 127.0.0.1.
    pub async fn start() -> std::io::Result<Self> {
        let mut names = vec!["*.cryptoservice.kms.aliyuncs.com".to_string()];
        names.extend(REGIONS.iter().map(|r| format!("kms.{r}.aliyuncs.com")));
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (ca_pem, tls) =
            super::tls(&names, "testkit Alibaba Cloud KMS CA").map_err(std::io::Error::other)?;
        let state = Arc::new(Mutex::new(State::default()));
        let api_state = state.clone();
        let (addr, api) =
            super::spawn(Some(tls), Arc::new(move |req| handle_api(&api_state, req))).await?;
        let metadata_state = state.clone();
        let (metadata_addr, metadata) = super::spawn(
            None,
            Arc::new(move |req| handle_metadata(&metadata_state, &req)),
        )
        .await?;
        Ok(Self {
            addr,
            metadata_addr,
            ca_pem,
            state,
            tasks: vec![api, metadata],
        })
    }

    /// Where the APIs listen (every Alibaba Cloud host name should resolve here).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA of the server's certificate: the instance's `PrivateKmsCA_<instance>.pem`,
    /// and the extra trust anchor for the regional hosts.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The metadata server's base URL (instead of `http://100.100.100.200`).
    pub fn metadata_url(&self) -> String {
        format!("http://{}", self.metadata_addr)
    }

    /// A new client key of the instance (2048-bit RSA in a password-protected PKCS#12,
    /// as the console hands it out).
    pub fn new_client_key(&self) -> ClientKey {
        let key = match RsaPrivateKey::new(&mut OsRng, 2048) {
            Ok(key) => key,
            Err(e) => panic!("generating an RSA key: {e}"),
        };
        let id = format!("KAAP.{}", random_hex(8));
        let password = random_hex(16);
        let der = match key.to_pkcs8_der() {
            Ok(der) => der.as_bytes().to_vec(),
            Err(e) => panic!("encoding the RSA key: {e}"),
        };
        let cert = client_key_certificate(&der, &id);
        let pfx = p12::PFX::new(&cert, &der, None, &password, &id)
            .unwrap_or_else(|| panic!("building the PKCS#12 client key"));
        let json = serde_json::json!({
            "KeyId": id,
            "PrivateKeyData": STANDARD.encode(pfx.to_der()),
        })
        .to_string();
        lock(&self.state)
            .client_keys
            .insert(id.clone(), key.to_public_key());
        ClientKey { id, json, password }
    }

    /// A new AES-256 key called `key_id`.
    pub fn add_key(&self, key_id: &str) {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        lock(&self.state).keys.insert(key_id.to_string(), key);
    }

    /// A new current (`ACSCurrent`) text version `version_id` of secret `name`; the
    /// former current version becomes `ACSPrevious`.
    pub fn put_secret(&self, name: &str, version_id: &str, data: &str) {
        self.put_secret_typed(name, version_id, data, "text");
    }

    /// As [`Self::put_secret`] for a binary secret (`data` is its base64).
    pub fn put_binary_secret(&self, name: &str, version_id: &str, data: &[u8]) {
        self.put_secret_typed(name, version_id, &STANDARD.encode(data), "binary");
    }

    fn put_secret_typed(&self, name: &str, version_id: &str, data: &str, data_type: &'static str) {
        let mut state = lock(&self.state);
        let versions = state.secrets.entry(name.to_string()).or_default();
        for version in versions.iter_mut() {
            version.stages.retain(|s| s == "ACSCurrent");
            if !version.stages.is_empty() {
                version.stages = vec!["ACSPrevious".into()];
            }
        }
        versions.push(SecretVersion {
            version_id: version_id.to_string(),
            stages: vec!["ACSCurrent".into()],
            data: data.to_string(),
            data_type,
        });
    }

    /// STS credentials valid for `valid_secs` (negative: already expired); returns
    /// `(AccessKeyId, AccessKeySecret, SecurityToken)`.
    pub fn new_sts_credentials(&self, valid_secs: i64) -> (String, String, String) {
        let ak = format!("STS.{}", random_hex(10));
        let sk = random_hex(16);
        let token = STANDARD.encode(random_hex(48));
        lock(&self.state).access_keys.insert(
            ak.clone(),
            AccessKey {
                secret: sk.clone(),
                token: Some((token.clone(), now_secs(0) + valid_secs)),
            },
        );
        (ak, sk, token)
    }

    /// Attaches RAM role `role` to "this instance": the metadata server hands out fresh
    /// STS credentials valid for `valid_secs`.
    pub fn attach_ram_role(&self, role: &str, valid_secs: i64) {
        let (ak, _, _) = self.new_sts_credentials(valid_secs);
        lock(&self.state).roles.insert(role.to_string(), ak);
    }

    /// Moves the server's clock by `secs`.
    pub fn set_clock_skew(&self, secs: i64) {
        lock(&self.state).skew = secs;
    }

    /// The API names the server executed (after every check passed), in order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state).calls.clone()
    }
}

/// A self-signed certificate for the client key's PKCS#12 certificate bag.
fn client_key_certificate(pkcs8: &[u8], id: &str) -> Vec<u8> {
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(pkcs8.to_vec());
    let cert = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&key, &rcgen::PKCS_RSA_SHA256)
        .and_then(|pair| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, id);
            params.self_signed(&pair)
        });
    match cert {
        Ok(cert) => cert.der().to_vec(),
        Err(e) => panic!("signing the client key's certificate: {e}"),
    }
}

fn request_id() -> String {
    let id = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &id[..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    )
}

fn dkms_error(status: u16, code: &str, message: &str) -> Reply {
    let error = dkms::Error {
        status_code: i32::from(status),
        error_code: code.into(),
        error_message: message.into(),
        request_id: request_id(),
    };
    (status, "application/x-protobuf", error.encode_to_vec())
}

fn rpc_error(status: u16, host: &str, code: &str, message: &str) -> Reply {
    let body = serde_json::json!({
        "HttpStatus": status,
        "RequestId": request_id(),
        "HostId": host,
        "Code": code,
        "Message": message,
    });
    (
        status,
        "application/json;charset=utf-8",
        body.to_string().into_bytes(),
    )
}

fn handle_api(state: &Mutex<State>, req: Incoming) -> Reply {
    let host = req
        .header("host")
        .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_string())
        .unwrap_or_default();
    if host.ends_with(".cryptoservice.kms.aliyuncs.com") {
        handle_instance(state, &req)
    } else if host.starts_with("kms.") && host.ends_with(".aliyuncs.com") {
        handle_openapi(state, &req, &host)
    } else {
        (404, "text/plain", b"unknown host".to_vec())
    }
}

/// The KMS instance API.
fn handle_instance(state: &Mutex<State>, req: &Incoming) -> Reply {
    if req.method != hyper::Method::POST || req.uri.path() != "/" {
        return dkms_error(404, "NotFound", "The requested resource does not exist.");
    }
    let api_version = req.header("x-kms-apiversion").unwrap_or_default();
    if api_version.trim() != "dkms-gcs-0.2" {
        return dkms_error(
            400,
            "InvalidApiVersion",
            &format!("The ApiVersion \"{api_version}\" is invalid."),
        );
    }
    let api_name = req
        .header("x-kms-apiname")
        .unwrap_or_default()
        .trim()
        .to_string();
    if !matches!(api_name.as_str(), "Encrypt" | "Decrypt" | "GetSecretValue") {
        return dkms_error(
            400,
            "InvalidApiName",
            &format!("The ApiName \"{api_name}\" is invalid."),
        );
    }
    match req.header("x-kms-signaturemethod").map(str::trim) {
        None => {
            return dkms_error(
                400,
                "InvalidParam",
                "The Param x-kms-signaturemethod is invalid.",
            )
        }
        Some("RSA_PKCS1_SHA_256") => {}
        Some(other) => {
            return dkms_error(
                400,
                "InvalidParam",
                &format!("The Param x-kms-signaturemethod is invalid. message:\"{other}\"."),
            )
        }
    }
    let Some(date) = req.header("date") else {
        return dkms_error(400, "InvalidParam", "The Param Date is invalid.");
    };
    let Ok(sent) = httpdate::parse_http_date(date) else {
        return dkms_error(400, "InvalidParam", "The Param Date is invalid.");
    };
    let sent = sent
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let skew = lock(state).skew;
    if (now_secs(skew) - sent).abs() > MAX_SKEW_SECS {
        return dkms_error(
            400,
            "RequestTimeTooSkewed",
            "Request time exceeds server time more than 15 minutes.",
        );
    }
    let Some(access_key) = req.header("x-kms-acccesskeyid").map(str::trim) else {
        return dkms_error(
            400,
            "MissingParameter",
            "Parameter x-kms-acccesskeyid does not exist in http header or body.",
        );
    };
    let Some(public_key) = lock(state).client_keys.get(access_key).cloned() else {
        return dkms_error(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        );
    };
    // the signature covers Content-Sha256, which must be the body's
    let sha256 = hex::encode_upper(Sha256::digest(&req.body));
    let content_type = req.header("content-type").unwrap_or_default();
    let mut kms_headers = BTreeMap::new();
    for (name, value) in &req.headers {
        let name = name.as_str().to_ascii_lowercase();
        if name.starts_with("x-kms-") {
            let value = value.to_str().unwrap_or_default().trim().to_string();
            kms_headers.insert(name, value);
        }
    }
    let mut to_sign = format!(
        "POST\n{}\n{content_type}\n{date}\n",
        req.header("content-sha256").unwrap_or_default()
    );
    for (name, value) in &kms_headers {
        to_sign.push_str(&format!("{name}:{value}\n"));
    }
    to_sign.push('/');
    let signature = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|s| STANDARD.decode(s.trim()).ok())
        .and_then(|raw| Signature::try_from(raw.as_slice()).ok());
    let verified = signature.is_some_and(|signature| {
        VerifyingKey::<Sha256>::new(public_key)
            .verify(to_sign.as_bytes(), &signature)
            .is_ok()
    });
    if !verified || req.header("content-sha256") != Some(sha256.as_str()) {
        return dkms_error(401, "SignatureNotMatch", "Signature is not matched.");
    }
    let invalid = || {
        dkms_error(
            400,
            "InvalidParameter",
            "The specified parameter is not valid.",
        )
    };
    let key_not_found = || {
        dkms_error(
            404,
            "Forbidden.KeyNotFound",
            "The specified Key is not found.",
        )
    };
    let mut state = lock(state);
    state.calls.push(api_name.clone());
    match api_name.as_str() {
        "Encrypt" => {
            let Ok(request) = dkms::EncryptRequest::decode(req.body.as_slice()) else {
                return invalid();
            };
            let Some(key) = state.keys.get(&request.key_id) else {
                return key_not_found();
            };
            if !request.algorithm.is_empty() && request.algorithm != "AES_GCM" {
                return invalid();
            }
            let iv = if request.iv.is_empty() {
                let mut iv = [0u8; 12];
                OsRng.fill_bytes(&mut iv);
                iv.to_vec()
            } else if request.iv.len() == 12 {
                request.iv.clone()
            } else {
                return invalid();
            };
            let Ok(cipher) = Aes256Gcm::new_from_slice(key) else {
                return invalid();
            };
            let Some(iv_nonce) = nonce(&iv) else {
                return invalid();
            };
            let Ok(ciphertext) = cipher.encrypt(
                &iv_nonce,
                Payload {
                    msg: &request.plaintext,
                    aad: &request.aad,
                },
            ) else {
                return invalid();
            };
            let answer = dkms::EncryptResponse {
                key_id: request.key_id,
                ciphertext_blob: ciphertext,
                iv,
                request_id: request_id(),
                algorithm: "AES_GCM".into(),
            };
            (200, "application/x-protobuf", answer.encode_to_vec())
        }
        "Decrypt" => {
            let Ok(request) = dkms::DecryptRequest::decode(req.body.as_slice()) else {
                return invalid();
            };
            let Some(key) = state.keys.get(&request.key_id) else {
                return key_not_found();
            };
            let Some(iv_nonce) = nonce(&request.iv) else {
                return invalid();
            };
            let plaintext = Aes256Gcm::new_from_slice(key).ok().and_then(|cipher| {
                cipher
                    .decrypt(
                        &iv_nonce,
                        Payload {
                            msg: &request.ciphertext_blob,
                            aad: &request.aad,
                        },
                    )
                    .ok()
            });
            let Some(plaintext) = plaintext else {
                return invalid();
            };
            let answer = dkms::DecryptResponse {
                key_id: request.key_id,
                plaintext,
                request_id: request_id(),
                algorithm: "AES_GCM".into(),
            };
            (200, "application/x-protobuf", answer.encode_to_vec())
        }
        _ => {
            let Ok(request) = dkms::GetSecretValueRequest::decode(req.body.as_slice()) else {
                return invalid();
            };
            match find_secret(
                &state,
                &request.secret_name,
                &request.version_stage,
                &request.version_id,
            ) {
                Some(version) => {
                    let answer = dkms::GetSecretValueResponse {
                        secret_name: request.secret_name,
                        secret_type: "Generic".into(),
                        secret_data: version.data,
                        secret_data_type: version.data_type.into(),
                        version_stages: version.stages,
                        version_id: version.version_id,
                        request_id: request_id(),
                    };
                    (200, "application/x-protobuf", answer.encode_to_vec())
                }
                None => dkms_error(404, "Forbidden.ResourceNotFound", "The resource not found."),
            }
        }
    }
}

fn find_secret(state: &State, name: &str, stage: &str, version_id: &str) -> Option<SecretVersion> {
    let versions = state.secrets.get(name)?;
    let stage = if stage.is_empty() {
        "ACSCurrent"
    } else {
        stage
    };
    versions
        .iter()
        .find(|v| {
            if version_id.is_empty() {
                v.stages.iter().any(|s| s == stage)
            } else {
                v.version_id == version_id
            }
        })
        .cloned()
}

/// The regional OpenAPI (RPC style); only `GetSecretValue`.
fn handle_openapi(state: &Mutex<State>, req: &Incoming, host: &str) -> Reply {
    let err = |status, code: &str, message: &str| rpc_error(status, host, code, message);
    let mut params = BTreeMap::new();
    for pair in req
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (percent_decode(k), percent_decode(v)) {
            (Some(k), Some(v)) => {
                params.insert(k, v);
            }
            _ => {
                return err(
                    400,
                    "InvalidParameter",
                    "The specified parameter is not valid.",
                )
            }
        }
    }
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    for required in [
        "AccessKeyId",
        "Signature",
        "SignatureNonce",
        "Action",
        "Version",
    ] {
        if param(required).is_empty() {
            return err(
                400,
                "MissingParameter",
                &format!("The input parameter \"{required}\" that is mandatory for processing this request is not supplied."),
            );
        }
    }
    if param("Version") != "2016-01-20" {
        return err(
            400,
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        );
    }
    if param("SignatureMethod") != "HMAC-SHA1" {
        return err(
            400,
            "InvalidSignatureMethod",
            "Specified signature method is not valid.",
        );
    }
    if param("SignatureVersion") != "1.0" {
        return err(
            400,
            "InvalidSignatureVersion",
            "Specified signature version is not valid.",
        );
    }
    let Some(sent) = parse_iso8601(param("Timestamp")) else {
        return err(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        );
    };
    let mut state = lock(state);
    if (now_secs(state.skew) - sent).abs() > MAX_SKEW_SECS {
        return err(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        );
    }
    let Some(access_key) = state.access_keys.get(param("AccessKeyId")).cloned() else {
        return err(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        );
    };
    let mut signed = params.clone();
    signed.remove("Signature");
    let canonical = signed
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let to_sign = format!("POST&%2F&{}", encode(&canonical));
    let expected =
        <Hmac<sha1::Sha1> as Mac>::new_from_slice(format!("{}&", access_key.secret).as_bytes())
            .map(|mut mac| {
                mac.update(to_sign.as_bytes());
                STANDARD.encode(mac.finalize().into_bytes())
            })
            .unwrap_or_default();
    if req.method != hyper::Method::POST || expected != param("Signature") {
        return err(
            400,
            "SignatureDoesNotMatch",
            &format!("Specified signature is not matched with our calculation. server string to sign is:{to_sign}"),
        );
    }
    if !state.nonces.insert(param("SignatureNonce").to_string()) {
        return err(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        );
    }
    if let Some((token, expires)) = &access_key.token {
        match params.get("SecurityToken") {
            None => {
                return err(
                    400,
                    "MissingSecurityToken",
                    "SecurityToken is mandatory for this action.",
                )
            }
            Some(sent) if sent != token => {
                return err(
                    400,
                    "InvalidSecurityToken.Mismatch",
                    "Specified SecurityToken mismatch with the AccessKey.",
                )
            }
            Some(_) if now_secs(state.skew) > *expires => {
                return err(
                    400,
                    "InvalidSecurityToken.Expired",
                    "Specified SecurityToken is expired.",
                )
            }
            Some(_) => {}
        }
    }
    if param("Action") != "GetSecretValue" {
        return err(
            404,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        );
    }
    state.calls.push("GetSecretValue".into());
    match find_secret(
        &state,
        param("SecretName"),
        param("VersionStage"),
        param("VersionId"),
    ) {
        Some(version) => {
            let body = serde_json::json!({
                "RequestId": request_id(),
                "SecretName": param("SecretName"),
                "SecretType": "Generic",
                "SecretData": version.data,
                "SecretDataType": version.data_type,
                "VersionId": version.version_id,
                "VersionStages": {"VersionStage": version.stages},
                "CreateTime": "2024-01-01T00:00:00Z",
            });
            (
                200,
                "application/json;charset=utf-8",
                body.to_string().into_bytes(),
            )
        }
        None => err(404, "Forbidden.ResourceNotFound", "The resource not found."),
    }
}

/// RFC 3986 percent-encoding of the OpenAPI (the service's own canonicalization).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The ECS metadata server.
fn handle_metadata(state: &Mutex<State>, req: &Incoming) -> Reply {
    let state = lock(state);
    let role = req
        .uri
        .path()
        .strip_prefix("/latest/meta-data/ram/security-credentials/");
    let credentials = role
        .and_then(|role| state.roles.get(role))
        .and_then(|ak| state.access_keys.get(ak).map(|key| (ak, key)));
    match (req.method == hyper::Method::GET, credentials) {
        (true, Some((ak, key))) => {
            let (token, expires) = key.token.clone().unwrap_or_default();
            let body = serde_json::json!({
                "AccessKeyId": ak,
                "AccessKeySecret": key.secret,
                "SecurityToken": token,
                "Expiration": expires.to_string(),
                "LastUpdated": "2024-01-01T00:00:00Z",
                "Code": "Success",
            });
            (200, "text/plain", body.to_string().into_bytes())
        }
        _ => (
            404,
            "text/html",
            b"<html><body>404 Not Found</body></html>".to_vec(),
        ),
    }
}
