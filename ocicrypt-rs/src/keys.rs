//! Asymmetric keys for the JWE and PKCS#7 wrappers: RSA and EC P-256/384/521, read from
//! PEM, DER (SPKI, PKCS#1, PKCS#8, SEC1), password-protected PKCS#8 and JWK.

use base64::Engine;
use der::asn1::UintRef;
use der::{Decode, Encode};
use jose::{RsaPrivateKey, RsaPublicKey};
use pkcs8::{DecodePrivateKey, DecodePublicKey};
use zeroize::Zeroizing;

/// Upper bound for a key file; real ones are a few KiB.
const MAX_KEY_FILE: usize = 1024 * 1024;

/// Why a key could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Nothing was given.
    #[error("the key data is empty")]
    Empty,
    /// The file is too large to be a key.
    #[error("key data of {0} bytes is too large to be a key")]
    TooLarge(usize),
    /// None of the supported formats matched.
    #[error("not a supported {what} key: expected PEM, DER (SPKI, PKCS#1, PKCS#8, SEC1) or JWK with RSA or EC P-256/P-384/P-521")]
    Unrecognised {
        /// "public" or "private"
        what: &'static str,
    },
    /// A PEM block is malformed.
    #[error("malformed PEM: {0}")]
    Pem(String),
    /// An encrypted private key was given without a password.
    #[error("the private key is password-protected; give its password")]
    PasswordRequired,
    /// The password does not decrypt the key.
    #[error("the private key could not be decrypted with the given password")]
    WrongPassword,
    /// Traditional OpenSSL PEM encryption (`Proc-Type: 4,ENCRYPTED`).
    #[error("PEM with `Proc-Type: 4,ENCRYPTED` is not supported; convert the key with `openssl pkcs8 -topk8 -v2 aes256`")]
    LegacyEncryptedPem,
    /// A JWK is malformed.
    #[error("malformed JWK: {0}")]
    Jwk(String),
    /// The RSA key is inconsistent or of an unsupported size.
    #[error("RSA key rejected: {0}")]
    Rsa(String),
}

/// A public key of a JWE recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA (2048 to 8192 bits)
    Rsa(Box<RsaPublicKey>),
    /// EC P-256
    P256(p256::PublicKey),
    /// EC P-384
    P384(p384::PublicKey),
    /// EC P-521
    P521(p521::PublicKey),
}

/// A private key; wiped from memory on drop.
#[derive(Clone)]
pub enum PrivateKey {
    /// RSA
    Rsa(Box<RsaPrivateKey>),
    /// EC P-256
    P256(p256::SecretKey),
    /// EC P-384
    P384(p384::SecretKey),
    /// EC P-521
    P521(p521::SecretKey),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            PrivateKey::Rsa(k) => format!("RSA-{}", k.bits()),
            PrivateKey::P256(_) => "P-256".into(),
            PrivateKey::P384(_) => "P-384".into(),
            PrivateKey::P521(_) => "P-521".into(),
        };
        write!(f, "PrivateKey({kind}, <redacted>)")
    }
}

impl PrivateKey {
    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::Rsa(k) => PublicKey::Rsa(Box::new(k.public_key())),
            PrivateKey::P256(k) => PublicKey::P256(k.public_key()),
            PrivateKey::P384(k) => PublicKey::P384(k.public_key()),
            PrivateKey::P521(k) => PublicKey::P521(k.public_key()),
        }
    }
}

/// One `-----BEGIN <label>-----` block.
struct PemBlock {
    label: String,
    der: Zeroizing<Vec<u8>>,
}

fn looks_like_pem(data: &[u8]) -> bool {
    data.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Splits a (possibly multi-block) PEM file into its blocks.
fn pem_blocks(data: &[u8]) -> Result<Vec<PemBlock>, KeyError> {
    let text = std::str::from_utf8(data).map_err(|_| KeyError::Pem("not UTF-8 text".into()))?;
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let label_end = after
            .find("-----")
            .ok_or_else(|| KeyError::Pem("unterminated BEGIN line".into()))?;
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let end = rest[start..]
            .find(&end_marker)
            .ok_or_else(|| KeyError::Pem(format!("no END line for {label}")))?;
        let block = &rest[start..start + end + end_marker.len()];
        if block.contains("Proc-Type:") {
            return Err(KeyError::LegacyEncryptedPem);
        }
        let mut der = Zeroizing::new(Vec::new());
        let (decoded_label, bytes) = pem_rfc7468::decode_vec(block.as_bytes())
            .map_err(|e| KeyError::Pem(format!("{label}: {e}")))?;
        *der = bytes;
        blocks.push(PemBlock {
            label: decoded_label.to_string(),
            der,
        });
        rest = &rest[start + end + end_marker.len()..];
    }
    if blocks.is_empty() {
        return Err(KeyError::Pem("no PEM block".into()));
    }
    Ok(blocks)
}

fn check_size(data: &[u8]) -> Result<(), KeyError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(KeyError::Empty);
    }
    if data.len() > MAX_KEY_FILE {
        return Err(KeyError::TooLarge(data.len()));
    }
    Ok(())
}

fn looks_like_json(data: &[u8]) -> bool {
    data.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// Reads a public key: PEM (`PUBLIC KEY`, `RSA PUBLIC KEY`), DER (SPKI or PKCS#1) or JWK.
pub fn parse_public_key(data: &[u8]) -> Result<PublicKey, KeyError> {
    check_size(data)?;
    if looks_like_json(data) {
        return public_key_from_jwk(&parse_jwk(data)?);
    }
    if looks_like_pem(data) {
        for block in pem_blocks(data)? {
            match block.label.as_str() {
                "PUBLIC KEY" => return public_key_from_spki(&block.der),
                "RSA PUBLIC KEY" => return rsa_public_from_pkcs1(&block.der),
                _ => {}
            }
        }
        return Err(KeyError::Unrecognised { what: "public" });
    }
    public_key_from_spki(data).or_else(|_| {
        rsa_public_from_pkcs1(data).map_err(|_| KeyError::Unrecognised { what: "public" })
    })
}

fn rsa_key_error(e: jose::RsaError) -> KeyError {
    KeyError::Rsa(e.to_string())
}

fn rsa_public(n: &[u8], e: &[u8]) -> Result<PublicKey, KeyError> {
    RsaPublicKey::from_components(n, e)
        .map(|k| PublicKey::Rsa(Box::new(k)))
        .map_err(rsa_key_error)
}

fn rsa_public_from_pkcs1(der: &[u8]) -> Result<PublicKey, KeyError> {
    let key = pkcs1::RsaPublicKey::from_der(der).map_err(|e| KeyError::Rsa(e.to_string()))?;
    rsa_public(key.modulus.as_bytes(), key.public_exponent.as_bytes())
}

fn public_key_from_spki(der: &[u8]) -> Result<PublicKey, KeyError> {
    if let Ok(info) = spki::SubjectPublicKeyInfoRef::from_der(der) {
        if info.algorithm.oid == pkcs1::ALGORITHM_OID {
            return RsaPublicKey::from_spki_der(der)
                .map(|k| PublicKey::Rsa(Box::new(k)))
                .map_err(rsa_key_error);
        }
    }
    if let Ok(k) = p256::PublicKey::from_public_key_der(der) {
        return Ok(PublicKey::P256(k));
    }
    if let Ok(k) = p384::PublicKey::from_public_key_der(der) {
        return Ok(PublicKey::P384(k));
    }
    if let Ok(k) = p521::PublicKey::from_public_key_der(der) {
        return Ok(PublicKey::P521(k));
    }
    Err(KeyError::Unrecognised { what: "public" })
}

/// Reads a private key: PEM (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`, `RSA PRIVATE KEY`,
/// `EC PRIVATE KEY`), DER (PKCS#8, encrypted PKCS#8, PKCS#1, SEC1) or JWK. `password`
/// decrypts an encrypted PKCS#8 key.
pub fn parse_private_key(data: &[u8], password: Option<&[u8]>) -> Result<PrivateKey, KeyError> {
    check_size(data)?;
    if looks_like_json(data) {
        return private_key_from_jwk(&parse_jwk(data)?);
    }
    if looks_like_pem(data) {
        for block in pem_blocks(data)? {
            match block.label.as_str() {
                "PRIVATE KEY" => return private_key_from_pkcs8(&block.der),
                "ENCRYPTED PRIVATE KEY" => return private_key_from_encrypted(&block.der, password),
                "RSA PRIVATE KEY" => return rsa_from_pkcs1(&block.der),
                "EC PRIVATE KEY" => return ec_from_sec1(&block.der),
                _ => {}
            }
        }
        return Err(KeyError::Unrecognised { what: "private" });
    }
    if let Ok(k) = private_key_from_pkcs8(data) {
        return Ok(k);
    }
    if pkcs8::EncryptedPrivateKeyInfo::try_from(data).is_ok() {
        return private_key_from_encrypted(data, password);
    }
    rsa_from_pkcs1(data)
        .or_else(|_| ec_from_sec1(data))
        .map_err(|_| KeyError::Unrecognised { what: "private" })
}

fn private_key_from_encrypted(der: &[u8], password: Option<&[u8]>) -> Result<PrivateKey, KeyError> {
    let password = password.ok_or(KeyError::PasswordRequired)?;
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der)
        .map_err(|e| KeyError::Pem(format!("encrypted PKCS#8: {e}")))?;
    let doc = info
        .decrypt(password)
        .map_err(|_| KeyError::WrongPassword)?;
    private_key_from_pkcs8(doc.as_bytes())
}

fn private_key_from_pkcs8(der: &[u8]) -> Result<PrivateKey, KeyError> {
    if let Ok(info) = pkcs8::PrivateKeyInfo::from_der(der) {
        if info.algorithm.oid == pkcs1::ALGORITHM_OID {
            return RsaPrivateKey::from_pkcs8_der(der)
                .map(|k| PrivateKey::Rsa(Box::new(k)))
                .map_err(rsa_key_error);
        }
    }
    if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
        return Ok(PrivateKey::P256(k));
    }
    if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
        return Ok(PrivateKey::P384(k));
    }
    if let Ok(k) = p521::SecretKey::from_pkcs8_der(der) {
        return Ok(PrivateKey::P521(k));
    }
    Err(KeyError::Unrecognised { what: "private" })
}

/// AWS-LC checks the key's consistency when it reads it.
fn rsa_from_pkcs1(der: &[u8]) -> Result<PrivateKey, KeyError> {
    RsaPrivateKey::from_pkcs1_der(der)
        .map(|k| PrivateKey::Rsa(Box::new(k)))
        .map_err(rsa_key_error)
}

fn ec_from_sec1(der: &[u8]) -> Result<PrivateKey, KeyError> {
    if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
        return Ok(PrivateKey::P256(k));
    }
    if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
        return Ok(PrivateKey::P384(k));
    }
    if let Ok(k) = p521::SecretKey::from_sec1_der(der) {
        return Ok(PrivateKey::P521(k));
    }
    Err(KeyError::Unrecognised { what: "private" })
}

/// A JWK as JSON, kept as text for the curve crates' own JWK readers.
struct Jwk {
    json: Zeroizing<String>,
    value: serde_json::Map<String, serde_json::Value>,
}

impl Drop for Jwk {
    fn drop(&mut self) {
        // The map holds private components as strings: wipe them.
        for (_, v) in self.value.iter_mut() {
            if let serde_json::Value::String(s) = v {
                zeroize::Zeroize::zeroize(s);
            }
        }
    }
}

fn parse_jwk(data: &[u8]) -> Result<Jwk, KeyError> {
    let json = Zeroizing::new(
        std::str::from_utf8(data)
            .map_err(|_| KeyError::Jwk("not UTF-8".into()))?
            .to_string(),
    );
    let value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&json).map_err(|e| KeyError::Jwk(e.to_string()))?;
    Ok(Jwk { json, value })
}

impl Jwk {
    fn str(&self, name: &str) -> Option<&str> {
        self.value.get(name).and_then(serde_json::Value::as_str)
    }

    fn uint(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let text = self
            .str(name)
            .ok_or_else(|| KeyError::Jwk(format!("missing `{name}`")))?;
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|_| KeyError::Jwk(format!("`{name}` is not base64url")))?,
        );
        Ok(bytes)
    }

    fn kty(&self) -> Result<&str, KeyError> {
        self.str("kty")
            .ok_or_else(|| KeyError::Jwk("missing `kty`".into()))
    }
}

fn public_key_from_jwk(jwk: &Jwk) -> Result<PublicKey, KeyError> {
    match jwk.kty()? {
        "RSA" => rsa_public(&jwk.uint("n")?, &jwk.uint("e")?),
        "EC" => {
            let bad = |e: elliptic_curve::Error| KeyError::Jwk(format!("EC key: {e}"));
            match jwk.str("crv") {
                Some("P-256") => p256::PublicKey::from_jwk_str(&jwk.json)
                    .map(PublicKey::P256)
                    .map_err(bad),
                Some("P-384") => p384::PublicKey::from_jwk_str(&jwk.json)
                    .map(PublicKey::P384)
                    .map_err(bad),
                Some("P-521") => p521::PublicKey::from_jwk_str(&jwk.json)
                    .map(PublicKey::P521)
                    .map_err(bad),
                other => Err(KeyError::Jwk(format!("unsupported curve {other:?}"))),
            }
        }
        other => Err(KeyError::Jwk(format!("unsupported kty `{other}`"))),
    }
}

fn private_key_from_jwk(jwk: &Jwk) -> Result<PrivateKey, KeyError> {
    match jwk.kty()? {
        "RSA" => rsa_private_from_jwk(jwk),
        "EC" => {
            if jwk.str("d").is_none() {
                return Err(KeyError::Jwk("EC JWK has no private `d`".into()));
            }
            let bad = |e: elliptic_curve::Error| KeyError::Jwk(format!("EC key: {e}"));
            match jwk.str("crv") {
                Some("P-256") => p256::SecretKey::from_jwk_str(&jwk.json)
                    .map(PrivateKey::P256)
                    .map_err(bad),
                Some("P-384") => p384::SecretKey::from_jwk_str(&jwk.json)
                    .map(PrivateKey::P384)
                    .map_err(bad),
                Some("P-521") => p521::SecretKey::from_jwk_str(&jwk.json)
                    .map(PrivateKey::P521)
                    .map_err(bad),
                other => Err(KeyError::Jwk(format!("unsupported curve {other:?}"))),
            }
        }
        other => Err(KeyError::Jwk(format!("unsupported kty `{other}`"))),
    }
}

/// An RSA private JWK with all its CRT members (RFC 7518 §6.3.2 requires them all once
/// any is present), as PKCS#1 for AWS-LC.
fn rsa_private_from_jwk(jwk: &Jwk) -> Result<PrivateKey, KeyError> {
    let members = ["n", "e", "d", "p", "q", "dp", "dq", "qi"]
        .iter()
        .map(|name| jwk.uint(name))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            KeyError::Jwk(format!(
                "RSA private JWK needs n, e, d, p, q, dp, dq and qi: {e}"
            ))
        })?;
    let uint = |i: usize| UintRef::new(&members[i]).map_err(|e| KeyError::Rsa(e.to_string()));
    let der = Zeroizing::new(
        pkcs1::RsaPrivateKey {
            modulus: uint(0)?,
            public_exponent: uint(1)?,
            private_exponent: uint(2)?,
            prime1: uint(3)?,
            prime2: uint(4)?,
            exponent1: uint(5)?,
            exponent2: uint(6)?,
            coefficient: uint(7)?,
            other_prime_infos: None,
        }
        .to_der()
        .map_err(|e| KeyError::Rsa(e.to_string()))?,
    );
    rsa_from_pkcs1(&der)
}

/// The JWK `alg` member of a key file, if it is a JWK that names one.
#[cfg(feature = "keywrap-jwe")]
pub(crate) fn jwk_algorithm(data: &[u8]) -> Option<String> {
    if !looks_like_json(data) {
        return None;
    }
    parse_jwk(data).ok()?.str("alg").map(str::to_string)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bad_key_data_is_a_typed_error() {
        assert!(matches!(parse_public_key(b""), Err(KeyError::Empty)));
        assert!(matches!(
            parse_private_key(b"  \n", None),
            Err(KeyError::Empty)
        ));
        assert!(matches!(
            parse_public_key(b"\x30\x03\x02\x01\x00"),
            Err(KeyError::Unrecognised { .. })
        ));
        assert!(matches!(
            parse_private_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n", None),
            Err(KeyError::Pem(_))
        ));
        assert!(matches!(
            parse_private_key(
                b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                None
            ),
            Err(KeyError::LegacyEncryptedPem)
        ));
        assert!(matches!(
            parse_public_key(br#"{"kty":"oct"}"#),
            Err(KeyError::Jwk(_))
        ));
        assert!(matches!(
            parse_public_key(br#"{"kty":"RSA","n":"!!"}"#),
            Err(KeyError::Jwk(_))
        ));
        assert!(matches!(
            parse_private_key(br#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#, None),
            Err(KeyError::Jwk(_))
        ));
        assert!(matches!(
            parse_public_key(br#"{"kty":"EC""#),
            Err(KeyError::Jwk(_))
        ));
        assert!(matches!(
            parse_public_key(&vec![b'{'; MAX_KEY_FILE + 1]),
            Err(KeyError::TooLarge(_))
        ));
    }

    #[test]
    fn rsa_keys_read_from_pkcs1_pkcs8_and_jwk() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        let key = RsaPrivateKey::generate_2048().unwrap();
        let public = PublicKey::Rsa(Box::new(key.public_key()));
        let pkcs1 = key.to_pkcs1_der().unwrap();
        let pkcs8 = key.to_pkcs8_der().unwrap();
        for der in [pkcs1.as_slice(), pkcs8.as_slice()] {
            assert_eq!(parse_private_key(der, None).unwrap().public_key(), public);
        }
        let pem =
            pem_rfc7468::encode_string("RSA PRIVATE KEY", Default::default(), &pkcs1).unwrap();
        assert_eq!(
            parse_private_key(pem.as_bytes(), None)
                .unwrap()
                .public_key(),
            public
        );
        // a JWK from the PKCS#1 members
        let k = pkcs1::RsaPrivateKey::from_der(&pkcs1).unwrap();
        let members = [
            ("n", k.modulus),
            ("e", k.public_exponent),
            ("d", k.private_exponent),
            ("p", k.prime1),
            ("q", k.prime2),
            ("dp", k.exponent1),
            ("dq", k.exponent2),
            ("qi", k.coefficient),
        ];
        let mut jwk = serde_json::Map::new();
        jwk.insert("kty".into(), "RSA".into());
        for (name, value) in members {
            jwk.insert(name.into(), B64.encode(value.as_bytes()).into());
        }
        let text = serde_json::to_string(&jwk).unwrap();
        assert_eq!(
            parse_private_key(text.as_bytes(), None)
                .unwrap()
                .public_key(),
            public
        );
        assert_eq!(parse_public_key(text.as_bytes()).unwrap(), public);
        // without its CRT members, or with a wrong one, it is refused
        let mut no_crt = jwk.clone();
        no_crt.remove("dp");
        assert!(matches!(
            parse_private_key(serde_json::to_string(&no_crt).unwrap().as_bytes(), None),
            Err(KeyError::Jwk(_))
        ));
        let mut wrong = jwk.clone();
        wrong.insert("qi".into(), B64.encode([3u8; 128]).into());
        assert!(matches!(
            parse_private_key(serde_json::to_string(&wrong).unwrap().as_bytes(), None),
            Err(KeyError::Rsa(_))
        ));
        // too small for AWS-LC
        assert!(matches!(
            parse_public_key(
                br#"{"kty":"RSA","n":"xcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcXFxcU","e":"AQAB"}"#
            ),
            Err(KeyError::Rsa(_))
        ));
    }

    #[test]
    fn ec_keys_round_trip_through_formats() {
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
        let secret = p256::SecretKey::random(&mut rand_core::OsRng);
        let pkcs8_pem = secret.to_pkcs8_pem(Default::default()).unwrap();
        let sec1_pem = secret.to_sec1_pem(Default::default()).unwrap();
        let jwk = secret.to_jwk_string();
        for data in [pkcs8_pem.as_bytes(), sec1_pem.as_bytes(), jwk.as_bytes()] {
            let parsed = parse_private_key(data, None).unwrap();
            assert_eq!(parsed.public_key(), PublicKey::P256(secret.public_key()));
        }
        let pub_pem = secret
            .public_key()
            .to_public_key_pem(Default::default())
            .unwrap();
        assert_eq!(
            parse_public_key(pub_pem.as_bytes()).unwrap(),
            PublicKey::P256(secret.public_key())
        );
        let pub_jwk = secret.public_key().to_jwk_string();
        assert_eq!(
            parse_public_key(pub_jwk.as_bytes()).unwrap(),
            PublicKey::P256(secret.public_key())
        );
        // Encrypted PKCS#8 needs its password.
        let enc = secret
            .to_pkcs8_der()
            .unwrap()
            .decode_msg::<pkcs8::PrivateKeyInfo<'_>>()
            .unwrap()
            // PBKDF2 with few iterations: the default scrypt is slow in debug builds.
            .encrypt_with_params(
                pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(
                    1000, &[7u8; 16], &[9u8; 16],
                )
                .unwrap(),
                b"hunter2",
            )
            .unwrap();
        let enc_pem = enc
            .to_pem("ENCRYPTED PRIVATE KEY", Default::default())
            .unwrap();
        assert!(matches!(
            parse_private_key(enc_pem.as_bytes(), None),
            Err(KeyError::PasswordRequired)
        ));
        assert!(matches!(
            parse_private_key(enc_pem.as_bytes(), Some(b"wrong")),
            Err(KeyError::WrongPassword)
        ));
        assert_eq!(
            parse_private_key(enc_pem.as_bytes(), Some(b"hunter2"))
                .unwrap()
                .public_key(),
            PublicKey::P256(secret.public_key())
        );
        assert_eq!(
            parse_private_key(enc.as_bytes(), Some(b"hunter2"))
                .unwrap()
                .public_key(),
            PublicKey::P256(secret.public_key())
        );
    }
}
