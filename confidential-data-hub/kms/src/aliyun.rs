//! Alibaba Cloud KMS (feature `aliyun`): the request signing of the dedicated KMS instance
//! API with client-key credentials (spec 5.8, `RSA_PKCS1_SHA_256`).
//!
//! Every request to `https://<instance>.cryptoservice.kms.aliyuncs.com/` is a `POST` of a
//! protobuf body with these headers; `Authorization: Bearer <signature>` signs
//!
//! ```text
//! POST\n<SHA-256 of the body, upper-case hex>\napplication/x-protobuf\n<Date>\n
//! <each x-kms-* header, lower-case name sorted, as "name:value\n">/
//! ```
//!
//! with RSASSA-PKCS1-v1_5 over SHA-256 under the client key, base64-encoded. The access-key
//! header is spelled `x-kms-acccesskeyid` (three c's) on the wire, as the service expects.
//!
//! Only the signing is implemented: the Alibaba client itself (protobuf bodies, the
//! password-protected PKCS#12 client-key file, the instance CA) is not, so the provider
//! registry does not offer `aliyun`.

use std::{collections::BTreeMap, time::SystemTime};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use rsa::{
    pkcs1v15::SigningKey,
    pkcs8::DecodePrivateKey,
    signature::{SignatureEncoding as _, Signer as _},
    RsaPrivateKey,
};
use sha2::{Digest as _, Sha256};

/// `x-kms-apiversion`
pub const API_VERSION: &str = "dkms-gcs-0.2";
/// `x-kms-signaturemethod`
pub const SIGNATURE_METHOD: &str = "RSA_PKCS1_SHA_256";
/// The body type of every request and answer.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// The access-key header, with the service's spelling.
pub const ACCESS_KEY_ID_HEADER: &str = "x-kms-acccesskeyid";

/// Why a signer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AliyunError {
    /// The client key is not a PKCS#8 RSA private key.
    #[error("aliyun client key is not a PKCS#8 RSA private key: {0}")]
    ClientKey(String),
}

/// SHA-256 of `body`, upper-case hex (the `content-sha256` header).
pub fn content_sha256(body: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(body))
}

/// The string the signature covers; `kms_headers` are the `x-kms-*` headers (names are
/// lower-cased and sorted, values trimmed).
pub fn string_to_sign(
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

/// An HTTP date (RFC 7231 IMF-fixdate, e.g. `Tue, 05 Mar 2024 09:08:07 GMT`).
pub fn http_date(time: SystemTime) -> String {
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
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Signs requests with a client key.
pub struct RequestSigner {
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

impl RequestSigner {
    /// A signer for client key `client_key_id` with its PKCS#8 PEM private key.
    pub fn from_pkcs8_pem(client_key_id: &str, pem: &str) -> Result<Self, AliyunError> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .map_err(|e| AliyunError::ClientKey(e.to_string()))?;
        Ok(Self::new(client_key_id, key))
    }

    /// A signer for client key `client_key_id` with its PKCS#8 DER private key.
    pub fn from_pkcs8_der(client_key_id: &str, der: &[u8]) -> Result<Self, AliyunError> {
        let key = RsaPrivateKey::from_pkcs8_der(der)
            .map_err(|e| AliyunError::ClientKey(e.to_string()))?;
        Ok(Self::new(client_key_id, key))
    }

    fn new(client_key_id: &str, key: RsaPrivateKey) -> Self {
        Self {
            client_key_id: client_key_id.to_string(),
            key: SigningKey::new(key),
        }
    }

    /// The base64 RSASSA-PKCS1-v1_5 SHA-256 signature of `string_to_sign`.
    pub fn sign(&self, string_to_sign: &str) -> String {
        STANDARD.encode(self.key.sign(string_to_sign.as_bytes()).to_bytes())
    }

    /// Every header of a request of `api_name` (`Decrypt`, `Encrypt`, `GetSecretValue`)
    /// with `body` to `endpoint` at `date`, `Authorization` included.
    pub fn headers(
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

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::{pkcs1v15::VerifyingKey, signature::Verifier as _};
    use std::time::Duration;

    // A throwaway key and the signature `openssl dgst -sha256 -sign client-key.pem
    // string-to-sign.txt | base64 -w0` gave for the string below (tests/data/aliyun).
    const KEY_PEM: &str = include_str!("../tests/data/aliyun/client-key.pem");
    const BODY: &[u8] = include_bytes!("../tests/data/aliyun/body.bin");
    const STRING_TO_SIGN: &str = include_str!("../tests/data/aliyun/string-to-sign.txt");
    const SIGNATURE: &str = include_str!("../tests/data/aliyun/signature.b64");
    const DATE: &str = "Tue, 05 Mar 2024 09:08:07 GMT";

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
        let signer = RequestSigner::from_pkcs8_pem("KAAP.example-client-key", KEY_PEM).unwrap();
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
    fn bad_client_keys_are_refused() {
        for bad in [
            "",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(matches!(
                RequestSigner::from_pkcs8_pem("k", bad),
                Err(AliyunError::ClientKey(_))
            ));
        }
        assert!(RequestSigner::from_pkcs8_der("k", &[0x30, 0x03, 0x02, 0x01, 0x00]).is_err());
    }

    #[test]
    fn http_dates_match_date_utility() {
        // `date -u -d @<secs> '+%a, %d %b %Y %H:%M:%S GMT'`
        for (secs, expected) in [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (1_709_629_687, "Tue, 05 Mar 2024 09:08:07 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
        ] {
            assert_eq!(
                http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
                expected
            );
        }
    }
}
