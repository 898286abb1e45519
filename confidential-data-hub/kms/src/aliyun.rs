//! Alibaba Cloud KMS wire formats (feature `aliyun`): the request signing of both APIs the
//! `aliyun` provider ([`crate::plugins::aliyun`]) calls, the client-key credential and the
//! protobuf messages of a dedicated KMS instance.
//!
//! **KMS instance API** (`https://<kms instance id>.cryptoservice.kms.aliyuncs.com/`, client
//! key credentials): every request is a `POST` of a protobuf body; `Authorization: Bearer
//! <signature>` signs
//!
//! ```text
//! POST\n<SHA-256 of the body, upper-case hex>\napplication/x-protobuf\n<Date>\n
//! <each x-kms-* header, lower-case name sorted, as "name:value\n">/
//! ```
//!
//! with RSASSA-PKCS1-v1_5 over SHA-256 under the client key, base64-encoded. The access-key
//! header is spelled `x-kms-acccesskeyid` (three c's) on the wire, as the service expects.
//!
//! **KMS OpenAPI, RPC style** (`https://kms.<region>.aliyuncs.com/`, STS credentials of an
//! ECS RAM role or an STS token): the parameters travel in the query; `Signature` is the
//! base64 HMAC-SHA1 under `<AccessKeySecret>&` of
//! `POST&%2F&<percent-encoded "k=v&…" of every other parameter, sorted by name>`.

use std::{collections::BTreeMap, time::SystemTime};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use hmac::{Hmac, Mac as _};
use rsa::{
    pkcs1v15::SigningKey,
    pkcs8::DecodePrivateKey,
    signature::{SignatureEncoding as _, Signer as _},
    RsaPrivateKey,
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// `x-kms-apiversion`
pub(crate) const API_VERSION: &str = "dkms-gcs-0.2";
/// `x-kms-signaturemethod`
pub(crate) const SIGNATURE_METHOD: &str = "RSA_PKCS1_SHA_256";
/// The body type of every request and answer.
pub(crate) const CONTENT_TYPE: &str = "application/x-protobuf";
/// The access-key header, with the service's spelling.
pub(crate) const ACCESS_KEY_ID_HEADER: &str = "x-kms-acccesskeyid";
/// `Version` of the KMS OpenAPI.
pub(crate) const RPC_API_VERSION: &str = "2016-01-20";
/// `SignatureMethod` of the KMS OpenAPI.
pub(crate) const RPC_SIGNATURE_METHOD: &str = "HMAC-SHA1";

/// Why a credential or signer could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AliyunError {
    /// The client key is not a PKCS#8 RSA private key.
    #[error("aliyun client key is not a PKCS#8 RSA private key: {0}")]
    ClientKey(String),
    /// The client-key file is not `{"KeyId": …, "PrivateKeyData": …}`.
    #[error("aliyun client key file: {0}")]
    ClientKeyFile(String),
}

/// SHA-256 of `body`, upper-case hex (the `content-sha256` header).
pub(crate) fn content_sha256(body: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(body))
}

/// The string the signature covers; `kms_headers` are the `x-kms-*` headers (names are
/// lower-cased and sorted, values trimmed).
pub(crate) fn string_to_sign(
    content_sha256: &str,
    date: &str,
    kms_headers: &BTreeMap<String, String>,
) -> String {
    let canonical: BTreeMap<String, &str> = kms_headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
        .filter(|(name, _)| name.starts_with("x-kms-"))
        .collect();
    let mut text = format!("POST\n{content_sha256}\n{CONTENT_TYPE}\n{date}\n");
    for (name, value) in canonical {
        text.push_str(&name);
        text.push(':');
        text.push_str(value);
        text.push('\n');
    }
    text.push('/');
    text
}

/// UTC calendar fields of `time`: (year, month, day, hour, minute, second, weekday with
/// 0 = Thursday).
fn civil(time: SystemTime) -> (i64, i64, i64, u64, u64, u64, usize) {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil-from-days (Howard Hinnant), proleptic Gregorian
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        days.rem_euclid(7) as usize,
    )
}

/// An HTTP date (RFC 7231 IMF-fixdate, e.g. `Tue, 05 Mar 2024 09:08:07 GMT`).
pub(crate) fn http_date(time: SystemTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day, h, m, s, weekday) = civil(time);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[weekday],
        day,
        MONTHS[(month - 1) as usize],
        year,
        h,
        m,
        s
    )
}

/// An ISO 8601 UTC timestamp (`2024-03-05T09:08:07Z`, the OpenAPI's `Timestamp`).
pub(crate) fn iso8601(time: SystemTime) -> String {
    let (year, month, day, h, m, s, _) = civil(time);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

/// Percent-encoding of the OpenAPI: RFC 3986 unreserved characters stay, every other byte
/// becomes `%XX` (so a space is `%20`, `*` is `%2A` and `~` stays).
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The OpenAPI's string to sign for a `POST` with `params` (without `Signature`).
pub(crate) fn rpc_string_to_sign(params: &BTreeMap<String, String>) -> String {
    let canonical = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    format!("POST&%2F&{}", percent_encode(&canonical))
}

/// The OpenAPI's `Signature` of `params` under `access_key_secret`.
pub(crate) fn rpc_signature(params: &BTreeMap<String, String>, access_key_secret: &str) -> String {
    let key = Zeroizing::new(format!("{access_key_secret}&"));
    // HMAC takes keys of any length
    let mut mac = match Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts every key length"),
    };
    mac.update(rpc_string_to_sign(params).as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// One DER element of `buf`: (tag, whole element length, content range).
fn der_element(buf: &[u8]) -> Option<(u8, usize, std::ops::Range<usize>)> {
    let tag = *buf.first()?;
    let first = *buf.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in buf.get(2..2 + count)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + count)
    };
    let end = header.checked_add(len)?;
    (end <= buf.len()).then_some((tag, end, header..end))
}

fn der_encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The PFX with its MacData's `iterations` written out: Alibaba Cloud's client keys
/// leave the DEFAULT 1 out, which the PKCS#12 parser requires. `None` if the outer layout
/// is not `SEQUENCE { INTEGER, SEQUENCE, [SEQUENCE { DigestInfo, salt[, iterations] }] }`.
fn with_mac_iterations(der: &[u8]) -> Option<Vec<u8>> {
    let (tag, end, content) = der_element(der)?;
    if tag != 0x30 || end != der.len() {
        return None;
    }
    let mut elements = Vec::new();
    let mut rest = &der[content];
    while !rest.is_empty() {
        let (tag, end, content) = der_element(rest)?;
        elements.push((tag, &rest[..end], &rest[content]));
        rest = &rest[end..];
    }
    match elements.as_slice() {
        [(0x02, version, _), (0x30, auth_safe, _), (0x30, _, mac_content)] => {
            let mut count = 0;
            let mut inner = *mac_content;
            while !inner.is_empty() {
                let (_, end, _) = der_element(inner)?;
                inner = &inner[end..];
                count += 1;
            }
            let mut mac = mac_content.to_vec();
            match count {
                2 => mac.extend_from_slice(&[0x02, 0x01, 0x01]),
                3 => {}
                _ => return None,
            }
            let mut body = version.to_vec();
            body.extend_from_slice(auth_safe);
            body.extend(der_encode(0x30, &mac));
            Some(der_encode(0x30, &body))
        }
        [(0x02, _, _), (0x30, _, _)] => Some(der.to_vec()),
        _ => None,
    }
}

/// Signs KMS instance requests with a client key.
pub(crate) struct RequestSigner {
    client_key_id: String,
    key: SigningKey<Sha256>,
}

impl std::fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSigner")
            .field("client_key_id", &self.client_key_id)
            .finish_non_exhaustive()
    }
}

/// The client-key file Alibaba Cloud hands out (`clientKey_<id>.json`).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ClientKeyFile {
    key_id: String,
    private_key_data: String,
}

impl RequestSigner {
    /// A signer from a client-key file (`{"KeyId", "PrivateKeyData": <base64 PKCS#12>}`)
    /// and its password (trailing whitespace and newlines ignored, as upstream).
    pub(crate) fn from_client_key_file(json: &[u8], password: &str) -> Result<Self, AliyunError> {
        if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(AliyunError::ClientKeyFile("not a JSON object".into()));
        }
        let file: ClientKeyFile = serde_json::from_slice(json).map_err(|e| {
            AliyunError::ClientKeyFile(format!(
                "not {{\"KeyId\",\"PrivateKeyData\"}} JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let pkcs12 = Zeroizing::new(
            STANDARD
                .decode(file.private_key_data.trim())
                .map_err(|_| AliyunError::ClientKeyFile("PrivateKeyData is not base64".into()))?,
        );
        let not_pkcs12 = || AliyunError::ClientKeyFile("PrivateKeyData is not PKCS#12".into());
        let pkcs12 = Zeroizing::new(with_mac_iterations(&pkcs12).ok_or_else(not_pkcs12)?);
        let pfx = p12::PFX::parse(&pkcs12).map_err(|_| not_pkcs12())?;
        let password = password.trim_end();
        if !pfx.verify_mac(password) {
            return Err(AliyunError::ClientKeyFile(
                "the password does not open the PKCS#12 client key".into(),
            ));
        }
        let keys = pfx.key_bags(password).map_err(|_| {
            AliyunError::ClientKeyFile("the PKCS#12 client key cannot be decrypted".into())
        })?;
        let der = Zeroizing::new(keys.into_iter().next().ok_or_else(|| {
            AliyunError::ClientKeyFile("the PKCS#12 file holds no private key".into())
        })?);
        if file.key_id.is_empty() {
            return Err(AliyunError::ClientKeyFile("KeyId is empty".into()));
        }
        Self::from_pkcs8_der(&file.key_id, &der)
    }

    /// A signer for client key `client_key_id` with its PKCS#8 DER private key.
    pub(crate) fn from_pkcs8_der(client_key_id: &str, der: &[u8]) -> Result<Self, AliyunError> {
        let key = RsaPrivateKey::from_pkcs8_der(der)
            .map_err(|e| AliyunError::ClientKey(e.to_string()))?;
        Ok(Self {
            client_key_id: client_key_id.to_string(),
            key: SigningKey::new(key),
        })
    }

    /// The client key id (`KAAP.…`).
    pub(crate) fn client_key_id(&self) -> &str {
        &self.client_key_id
    }

    /// The base64 RSASSA-PKCS1-v1_5 SHA-256 signature of `string_to_sign`.
    pub(crate) fn sign(&self, string_to_sign: &str) -> String {
        STANDARD.encode(self.key.sign(string_to_sign.as_bytes()).to_bytes())
    }

    /// Every header of a request of `api_name` (`Decrypt`, `Encrypt`, `GetSecretValue`)
    /// with `body` to `endpoint` at `date`, `Authorization` included.
    pub(crate) fn headers(
        &self,
        endpoint: &str,
        api_name: &str,
        body: &[u8],
        date: &str,
    ) -> Vec<(String, String)> {
        let sha256 = content_sha256(body);
        let kms_headers: BTreeMap<String, String> = [
            ("x-kms-apiversion", API_VERSION),
            ("x-kms-apiname", api_name),
            ("x-kms-signaturemethod", SIGNATURE_METHOD),
            (ACCESS_KEY_ID_HEADER, self.client_key_id.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let signature = self.sign(&string_to_sign(&sha256, date, &kms_headers));
        let mut headers: Vec<(String, String)> = vec![
            ("accept".into(), CONTENT_TYPE.into()),
            ("host".into(), endpoint.into()),
            ("date".into(), date.into()),
            ("content-type".into(), CONTENT_TYPE.into()),
            ("content-length".into(), body.len().to_string()),
            ("content-sha256".into(), sha256),
        ];
        headers.extend(kms_headers);
        headers.push(("authorization".into(), format!("Bearer {signature}")));
        headers
    }
}

/// The KMS instance API's protobuf messages (`dkms_api`), field numbers as the service's.
pub(crate) mod dkms {
    /// `Encrypt`
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct EncryptRequest {
        /// key id or alias
        #[prost(string, tag = "1")]
        pub(crate) key_id: String,
        /// data
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) plaintext: Vec<u8>,
        /// `AES_GCM`
        #[prost(string, tag = "3")]
        pub(crate) algorithm: String,
        /// additional authenticated data
        #[prost(bytes = "vec", tag = "4")]
        pub(crate) aad: Vec<u8>,
        /// IV (empty: the service picks one)
        #[prost(bytes = "vec", tag = "5")]
        pub(crate) iv: Vec<u8>,
        /// padding of block modes
        #[prost(string, tag = "6")]
        pub(crate) padding_mode: String,
    }

    /// `Encrypt` answer
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct EncryptResponse {
        /// key id
        #[prost(string, tag = "1")]
        pub(crate) key_id: String,
        /// ciphertext
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) ciphertext_blob: Vec<u8>,
        /// the IV used
        #[prost(bytes = "vec", tag = "3")]
        pub(crate) iv: Vec<u8>,
        /// request id
        #[prost(string, tag = "4")]
        pub(crate) request_id: String,
        /// algorithm
        #[prost(string, tag = "5")]
        pub(crate) algorithm: String,
        /// padding
        #[prost(string, tag = "6")]
        pub(crate) padding_mode: String,
    }

    /// `Decrypt`
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct DecryptRequest {
        /// ciphertext
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) ciphertext_blob: Vec<u8>,
        /// key id or alias
        #[prost(string, tag = "2")]
        pub(crate) key_id: String,
        /// `AES_GCM`
        #[prost(string, tag = "3")]
        pub(crate) algorithm: String,
        /// additional authenticated data
        #[prost(bytes = "vec", tag = "4")]
        pub(crate) aad: Vec<u8>,
        /// the IV of the encryption
        #[prost(bytes = "vec", tag = "5")]
        pub(crate) iv: Vec<u8>,
        /// padding of block modes
        #[prost(string, tag = "6")]
        pub(crate) padding_mode: String,
    }

    /// `Decrypt` answer
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct DecryptResponse {
        /// key id
        #[prost(string, tag = "1")]
        pub(crate) key_id: String,
        /// data
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) plaintext: Vec<u8>,
        /// request id
        #[prost(string, tag = "3")]
        pub(crate) request_id: String,
        /// algorithm
        #[prost(string, tag = "4")]
        pub(crate) algorithm: String,
        /// padding
        #[prost(string, tag = "5")]
        pub(crate) padding_mode: String,
    }

    /// `GetSecretValue`
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct GetSecretValueRequest {
        /// secret name
        #[prost(string, tag = "1")]
        pub(crate) secret_name: String,
        /// e.g. `ACSCurrent`
        #[prost(string, tag = "2")]
        pub(crate) version_stage: String,
        /// version id
        #[prost(string, tag = "3")]
        pub(crate) version_id: String,
        /// whether to return the extended config
        #[prost(bool, tag = "4")]
        pub(crate) fetch_extended_config: bool,
    }

    /// `GetSecretValue` answer (the fields the provider reads)
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct GetSecretValueResponse {
        /// secret name
        #[prost(string, tag = "1")]
        pub(crate) secret_name: String,
        /// secret type
        #[prost(string, tag = "2")]
        pub(crate) secret_type: String,
        /// the secret
        #[prost(string, tag = "3")]
        pub(crate) secret_data: String,
        /// `text` or `binary` (base64 in `secret_data`)
        #[prost(string, tag = "4")]
        pub(crate) secret_data_type: String,
        /// stages of the version
        #[prost(string, repeated, tag = "5")]
        pub(crate) version_stages: Vec<String>,
        /// version id
        #[prost(string, tag = "6")]
        pub(crate) version_id: String,
        /// request id
        #[prost(string, tag = "8")]
        pub(crate) request_id: String,
    }

    /// The body of every failed request.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Error {
        /// HTTP status
        #[prost(int32, tag = "1")]
        pub(crate) status_code: i32,
        /// e.g. `SignatureNotMatch`
        #[prost(string, tag = "2")]
        pub(crate) error_code: String,
        /// text
        #[prost(string, tag = "3")]
        pub(crate) error_message: String,
        /// request id
        #[prost(string, tag = "4")]
        pub(crate) request_id: String,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::{pkcs1v15::VerifyingKey, pkcs8::EncodePrivateKey as _, signature::Verifier as _};
    use std::time::Duration;

    // A throwaway key and the signature `openssl dgst -sha256 -sign client-key.pem
    // string-to-sign.txt | base64 -w0` gave for the string below (tests/data/aliyun).
    const KEY_PEM: &str = include_str!("../tests/data/aliyun/client-key.pem");
    const BODY: &[u8] = include_bytes!("../tests/data/aliyun/body.bin");
    const STRING_TO_SIGN: &str = include_str!("../tests/data/aliyun/string-to-sign.txt");
    const SIGNATURE: &str = include_str!("../tests/data/aliyun/signature.b64");
    const DATE: &str = "Tue, 05 Mar 2024 09:08:07 GMT";
    // Upstream's PKCS#12 client-key test vector (an Alibaba Cloud client key's format:
    // 3DES-shrouded key bag, RC2-40 certificate bag, SHA-1 MAC) and its password.
    const UPSTREAM_P12: &str = include_str!("../tests/data/aliyun/upstream-client-key.p12.b64");
    const UPSTREAM_PASSWORD: &str = "c383f5528f54394676ca89b8e47096e7";

    fn signer() -> RequestSigner {
        let key = RsaPrivateKey::from_pkcs8_pem(KEY_PEM).unwrap();
        RequestSigner::from_pkcs8_der(
            "KAAP.example-client-key",
            key.to_pkcs8_der().unwrap().as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn the_string_to_sign_is_the_published_layout() {
        let sha = content_sha256(BODY);
        assert_eq!(
            sha,
            "83C223B5048E0C71934C19F98380FBE16AC9B9D831935BE39D5688A8923A9D9D"
        );
        let headers: BTreeMap<String, String> = [
            ("X-KMS-SignatureMethod", " RSA_PKCS1_SHA_256 "),
            ("x-kms-apiname", "Decrypt"),
            ("x-kms-acccesskeyid", "KAAP.example-client-key"),
            ("x-kms-apiversion", "dkms-gcs-0.2"),
            ("user-agent", "not signed"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(string_to_sign(&sha, DATE, &headers), STRING_TO_SIGN);
    }

    #[test]
    fn signatures_match_openssl() {
        let signer = signer();
        assert_eq!(signer.sign(STRING_TO_SIGN), SIGNATURE.trim());

        let headers = signer.headers(
            "kst-example.cryptoservice.kms.aliyuncs.com",
            "Decrypt",
            BODY,
            DATE,
        );
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap()
        };
        assert_eq!(get("authorization"), format!("Bearer {}", SIGNATURE.trim()));
        assert_eq!(get("x-kms-acccesskeyid"), "KAAP.example-client-key");
        assert_eq!(get("content-sha256"), content_sha256(BODY));
        assert_eq!(get("content-length"), BODY.len().to_string());
        assert_eq!(get("host"), "kst-example.cryptoservice.kms.aliyuncs.com");

        // and it verifies with the public key
        let key = RsaPrivateKey::from_pkcs8_pem(KEY_PEM).unwrap();
        let verifier = VerifyingKey::<Sha256>::new(key.to_public_key());
        let raw = STANDARD.decode(SIGNATURE.trim()).unwrap();
        let signature = rsa::pkcs1v15::Signature::try_from(raw.as_slice()).unwrap();
        verifier
            .verify(STRING_TO_SIGN.as_bytes(), &signature)
            .unwrap();
        assert!(verifier
            .verify(
                STRING_TO_SIGN.replace("Decrypt", "Encrypt").as_bytes(),
                &signature
            )
            .is_err());
    }

    #[test]
    fn upstreams_pkcs12_client_key_opens_with_its_password() {
        let file = format!(
            r#"{{"KeyId":"KAAP.upstream","PrivateKeyData":"{}"}}"#,
            UPSTREAM_P12.trim()
        );
        // the password file may end in a newline
        let signer =
            RequestSigner::from_client_key_file(file.as_bytes(), &format!("{UPSTREAM_PASSWORD}\n"))
                .unwrap();
        assert_eq!(signer.client_key_id(), "KAAP.upstream");
        assert_eq!(
            STANDARD
                .decode(signer.sign("example content"))
                .unwrap()
                .len(),
            256
        );

        let err = RequestSigner::from_client_key_file(file.as_bytes(), "wrong").unwrap_err();
        assert!(err.to_string().contains("password"), "{err}");
    }

    #[test]
    fn bad_client_key_files_are_refused_without_echoing_them() {
        let key = RsaPrivateKey::from_pkcs8_pem(KEY_PEM).unwrap();
        let good_der = key.to_pkcs8_der().unwrap();
        let truncated = STANDARD.encode(&STANDARD.decode(UPSTREAM_P12.trim()).unwrap()[..900]);
        for bad in [
            String::new(),
            "[]".into(),
            r#"{"KeyId":"KAAP.x"}"#.into(),
            r#"{"KeyId":"KAAP.x","PrivateKeyData":5}"#.into(),
            r#"{"KeyId":"KAAP.x","PrivateKeyData":"@@not base64 s3cr3t"}"#.into(),
            format!(
                r#"{{"KeyId":"KAAP.x","PrivateKeyData":"{}"}}"#,
                STANDARD.encode(b"s3cr3t")
            ),
            format!(r#"{{"KeyId":"KAAP.x","PrivateKeyData":"{truncated}"}}"#),
            format!(
                r#"{{"KeyId":"","PrivateKeyData":"{}"}}"#,
                UPSTREAM_P12.trim()
            ),
            format!(
                r#"{{"KeyId":"KAAP.x","PrivateKeyData":"{}""#,
                UPSTREAM_P12.trim()
            ),
        ] {
            let err =
                RequestSigner::from_client_key_file(bad.as_bytes(), UPSTREAM_PASSWORD).unwrap_err();
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
            assert!(!err.to_string().contains("MIIJ"), "{err}");
        }
        assert!(matches!(
            RequestSigner::from_pkcs8_der("k", &[0x30, 0x03, 0x02, 0x01, 0x00]),
            Err(AliyunError::ClientKey(_))
        ));
        assert!(RequestSigner::from_pkcs8_der("k", good_der.as_bytes()).is_ok());
    }

    #[test]
    fn pfx_layouts_are_checked() {
        let der = STANDARD.decode(UPSTREAM_P12.trim()).unwrap();
        let fixed = with_mac_iterations(&der).unwrap();
        // the three bytes of `INTEGER 1`
        assert_eq!(fixed.len(), der.len() + 3);
        assert!(p12::PFX::parse(&fixed).is_ok());
        // already complete: unchanged
        assert_eq!(with_mac_iterations(&fixed).unwrap(), fixed);
        for bad in [
            &der[..der.len() - 1],
            &der[..4],
            &[][..],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..],
            &[0x30, 0x03, 0x02, 0x01, 0x03][..],
            &[0x04, 0x00][..],
        ] {
            assert!(with_mac_iterations(bad).is_none(), "{bad:02x?}");
        }
    }

    #[test]
    fn http_dates_match_date_utility() {
        // `date -u -d @<secs> '+%a, %d %b %Y %H:%M:%S GMT'` and `+%Y-%m-%dT%H:%M:%SZ`
        for (secs, expected, iso) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT", "1970-01-01T00:00:00Z"),
            (
                1_709_629_687,
                "Tue, 05 Mar 2024 09:08:07 GMT",
                "2024-03-05T09:08:07Z",
            ),
            (
                951_782_400,
                "Tue, 29 Feb 2000 00:00:00 GMT",
                "2000-02-29T00:00:00Z",
            ),
            (
                4_102_444_799,
                "Thu, 31 Dec 2099 23:59:59 GMT",
                "2099-12-31T23:59:59Z",
            ),
        ] {
            let time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(http_date(time), expected);
            assert_eq!(iso8601(time), iso);
        }
    }

    /// The parameters of the OpenAPI signature example in Alibaba Cloud's documentation
    /// (`DescribeRegions` with AccessKeySecret `testsecret`), signed for POST.
    #[test]
    fn rpc_signatures_match_the_published_example() {
        let params: BTreeMap<String, String> = [
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            rpc_string_to_sign(&params),
            "POST&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML\
             %26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf\
             %26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
        );
        assert_eq!(percent_encode("a b*c~d/é"), "a%20b%2Ac~d%2F%C3%A9");
        // `printf %s "$string_to_sign" | openssl dgst -sha1 -hmac 'testsecret&' -binary |
        // base64` (the same for GET gives the documentation's OLeaidS1JvxuMvnyHOwuJ+uX5qY=)
        assert_eq!(
            rpc_signature(&params, "testsecret"),
            "MxbnVAM4w6sft9xjVpe/GCKueuk="
        );
        assert_ne!(
            rpc_signature(&params, "othersecret"),
            "MxbnVAM4w6sft9xjVpe/GCKueuk="
        );
    }
}
