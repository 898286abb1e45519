//! OpenPGP "simple signing" verification with rPGP: trusted keyrings (binary or armored,
//! as `gpg --export` writes them), signing keys (primary keys and signing subkeys whose
//! binding, back-signature, expiry and revocation are checked), and the signature
//! message itself (optionally compressed, one-pass signed literal data, exactly one
//! signature, as gpgme requires in containers/image).

use std::io::Read;
use std::time::{Duration, SystemTime};

use pgp::composed::{Deserializable, Message, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{self, KeyFlags, Signature, SignatureType};
use pgp::types::{KeyDetails, Tag, VerifyingKey};

/// Largest payload accepted inside a signature (containers/image's signature body limit).
pub(crate) const MAX_SIGNED_PAYLOAD: u64 = 4 << 20;

/// A set of trusted OpenPGP public keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct Keyring {
    keys: Vec<SignedPublicKey>,
}

/// A key that may have made a signature, with its hex fingerprint for messages.
enum SigningKey<'a> {
    Primary(&'a packet::PublicKey),
    Subkey(&'a packet::PublicSubkey),
}

impl SigningKey<'_> {
    fn details(&self) -> &dyn VerifyingKey {
        match self {
            SigningKey::Primary(k) => *k,
            SigningKey::Subkey(k) => *k,
        }
    }

    fn fingerprint_hex(&self) -> String {
        hex::encode_upper(self.details().fingerprint().as_bytes())
    }

    fn matches_issuer(&self, signature: &Signature) -> bool {
        let key = self.details();
        let fingerprints = signature.issuer_fingerprint();
        let key_ids = signature.issuer_key_id();
        if fingerprints.is_empty() && key_ids.is_empty() {
            return true;
        }
        let fingerprint = key.fingerprint();
        let key_id = key.legacy_key_id();
        fingerprints.iter().any(|f| **f == fingerprint) || key_ids.iter().any(|k| **k == key_id)
    }
}

fn to_system_time(seconds: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(seconds))
}

fn created(signature: &Signature) -> SystemTime {
    signature
        .created()
        .map_or(SystemTime::UNIX_EPOCH, |t| to_system_time(t.as_secs()))
}

/// Whether a key created at `key_created` with the expiration of `binding` has expired.
fn expired(key_created: u32, binding: &Signature, now: SystemTime) -> bool {
    match binding.key_expiration_time() {
        Some(validity) if validity.as_secs() > 0 => {
            to_system_time(key_created) + Duration::from_secs(u64::from(validity.as_secs())) <= now
        }
        _ => false,
    }
}

/// Whether key flags (when present at all) allow signing data.
fn may_sign(flags: &KeyFlags) -> bool {
    *flags == KeyFlags::default() || flags.sign()
}

fn weak_hash(hash: HashAlgorithm) -> bool {
    matches!(
        hash,
        HashAlgorithm::None | HashAlgorithm::Md5 | HashAlgorithm::Sha1 | HashAlgorithm::Ripemd160
    )
}

fn is_certification(typ: Option<SignatureType>) -> bool {
    matches!(
        typ,
        Some(SignatureType::CertGeneric)
            | Some(SignatureType::CertPersona)
            | Some(SignatureType::CertCasual)
            | Some(SignatureType::CertPositive)
    )
}

/// The usable signing keys of one certificate at `now`, or why it has none.
fn signing_keys(cert: &SignedPublicKey, now: SystemTime) -> Result<Vec<SigningKey<'_>>, String> {
    let primary = &cert.primary_key;
    let fpr = hex::encode_upper(primary.fingerprint().as_bytes());
    if cert.details.revocation_signatures.iter().any(|sig| {
        sig.typ() == Some(SignatureType::KeyRevocation) && sig.verify_key(primary).is_ok()
    }) {
        return Err(format!("key {fpr} is revoked"));
    }
    // The newest valid self-signature carries the primary key's expiry and flags.
    let certifications = cert.details.users.iter().flat_map(|user| {
        user.signatures.iter().filter(move |sig| {
            is_certification(sig.typ())
                && sig
                    .verify_certification(primary, Tag::UserId, &user.id)
                    .is_ok()
        })
    });
    let direct = cert
        .details
        .direct_signatures
        .iter()
        .filter(|sig| sig.typ() == Some(SignatureType::Key) && sig.verify_key(primary).is_ok());
    let Some(self_signature) = certifications.chain(direct).max_by_key(|sig| created(sig)) else {
        return Err(format!("key {fpr} has no valid self-signature"));
    };
    if expired(primary.created_at().as_secs(), self_signature, now) {
        return Err(format!("key {fpr} has expired"));
    }
    let mut keys = Vec::new();
    if may_sign(&self_signature.key_flags()) {
        keys.push(SigningKey::Primary(primary));
    }
    for subkey in &cert.public_subkeys {
        let revoked = subkey.signatures.iter().any(|sig| {
            sig.typ() == Some(SignatureType::SubkeyRevocation)
                && sig.verify_subkey_binding(primary, &subkey.key).is_ok()
        });
        if revoked {
            continue;
        }
        let binding = subkey
            .signatures
            .iter()
            .filter(|sig| {
                sig.typ() == Some(SignatureType::SubkeyBinding)
                    && sig.verify_subkey_binding(primary, &subkey.key).is_ok()
            })
            .max_by_key(|sig| created(sig));
        let Some(binding) = binding else { continue };
        if !binding.key_flags().sign() || expired(subkey.key.created_at().as_secs(), binding, now) {
            continue;
        }
        // A signing subkey must sign back the primary key, or anyone could bind our
        // primary key to their own subkey.
        let back_signed = binding.embedded_signature().is_some_and(|back| {
            back.verify_primary_key_binding(&subkey.key, primary)
                .is_ok()
        });
        if back_signed {
            keys.push(SigningKey::Subkey(&subkey.key));
        }
    }
    if keys.is_empty() {
        return Err(format!("key {fpr} has no valid signing key"));
    }
    Ok(keys)
}

fn looks_armored(data: &[u8]) -> bool {
    let start = data
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(data.len());
    data[start..].starts_with(b"-----BEGIN PGP")
}

/// A verified signature's content and who made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifiedPayload {
    /// the signed bytes (the simple-signing JSON)
    pub(crate) payload: Vec<u8>,
    /// fingerprint of the key that made the signature (uppercase hex)
    pub(crate) signer: String,
}

impl Keyring {
    /// Parses a keyring (`gpg --export`, binary or ASCII-armored, one or more keys).
    pub(crate) fn parse(data: &[u8]) -> Result<Self, String> {
        if data.is_empty() {
            return Err("empty key data".into());
        }
        let keys: Vec<SignedPublicKey> = if looks_armored(data) {
            let (keys, _) = SignedPublicKey::from_armor_many(data)
                .map_err(|e| format!("not an ASCII-armored OpenPGP public key: {e}"))?;
            keys.collect::<Result<_, _>>()
                .map_err(|e| format!("invalid OpenPGP public key: {e}"))?
        } else {
            SignedPublicKey::from_bytes_many(data)
                .map_err(|e| format!("not an OpenPGP public key: {e}"))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("invalid OpenPGP public key: {e}"))?
        };
        if keys.is_empty() {
            return Err("no OpenPGP public key found (use `gpg --export`)".into());
        }
        Ok(Self { keys })
    }

    /// Adds the keys of `other`.
    pub(crate) fn extend(&mut self, other: &Keyring) {
        self.keys.extend(other.keys.iter().cloned());
    }

    /// Primary-key fingerprints (uppercase hex), for messages.
    pub(crate) fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| hex::encode_upper(k.primary_key.fingerprint().as_bytes()))
            .collect()
    }

    /// Verifies a simple-signing signature blob made by one of the keys at `now` and
    /// returns what it signs.
    pub(crate) fn verify(&self, blob: &[u8], now: SystemTime) -> Result<VerifiedPayload, String> {
        let message = if looks_armored(blob) {
            Message::from_armor(blob).map(|(m, _)| m)
        } else {
            Message::from_bytes(blob)
        }
        .map_err(|e| format!("not an OpenPGP message: {e}"))?;
        let message = if message.is_compressed() {
            message
                .decompress()
                .map_err(|e| format!("cannot decompress the OpenPGP message: {e}"))?
        } else {
            message
        };
        if !message.is_signed() {
            return Err("the OpenPGP message is not signed".into());
        }
        // Signed data may itself be compressed.
        let mut message = message
            .decompress()
            .map_err(|e| format!("cannot decompress the signed data: {e}"))?;
        let mut payload = Vec::new();
        (&mut message)
            .take(MAX_SIGNED_PAYLOAD + 1)
            .read_to_end(&mut payload)
            .map_err(|e| format!("malformed OpenPGP message: {e}"))?;
        if payload.len() as u64 > MAX_SIGNED_PAYLOAD {
            return Err(format!(
                "signed payload larger than {MAX_SIGNED_PAYLOAD} bytes"
            ));
        }
        let Message::Signed { reader, .. } = &message else {
            return Err("the OpenPGP message is not signed".into());
        };
        if reader.num_signatures() != 1 {
            return Err(format!(
                "the OpenPGP message has {} signatures, exactly one is accepted",
                reader.num_signatures()
            ));
        }
        let signature = reader
            .signature(0)
            .ok_or_else(|| "the OpenPGP message has no final signature packet".to_string())?;
        if !matches!(
            signature.typ(),
            Some(SignatureType::Binary) | Some(SignatureType::Text)
        ) {
            return Err(format!(
                "unexpected OpenPGP signature type {:?}",
                signature.typ()
            ));
        }
        match signature.hash_alg() {
            Some(hash) if !weak_hash(hash) => {}
            other => {
                return Err(format!(
                    "signature hash algorithm {other:?} is not accepted"
                ))
            }
        }
        let made = created(signature);
        if let Some(validity) = signature.signature_expiration_time() {
            if validity.as_secs() > 0
                && made + Duration::from_secs(u64::from(validity.as_secs())) <= now
            {
                return Err("the signature has expired".into());
            }
        }

        let mut reasons = Vec::new();
        let mut candidates = 0;
        for cert in &self.keys {
            let keys = match signing_keys(cert, now) {
                Ok(keys) => keys,
                Err(why) => {
                    reasons.push(why);
                    continue;
                }
            };
            for key in keys.iter().filter(|k| k.matches_issuer(signature)) {
                candidates += 1;
                if message.verify(key.details()).is_ok() {
                    return Ok(VerifiedPayload {
                        payload,
                        signer: key.fingerprint_hex(),
                    });
                }
            }
        }
        let issuer: Vec<String> = signature
            .issuer_fingerprint()
            .iter()
            .map(|f| hex::encode_upper(f.as_bytes()))
            .chain(
                signature
                    .issuer_key_id()
                    .iter()
                    .map(|k| hex::encode_upper(k.as_ref())),
            )
            .collect();
        let mut message = if candidates == 0 {
            format!(
                "signed by key {} which is not trusted (trusted: {})",
                issuer.first().map_or("(unnamed)", String::as_str),
                self.fingerprints().join(", ")
            )
        } else {
            "invalid signature (cryptographic verification failed)".to_string()
        };
        if !reasons.is_empty() {
            message.push_str(&format!(" [{}]", reasons.join("; ")));
        }
        Err(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_keys_and_messages_are_refused() {
        for bad in [
            &b""[..],
            b"garbage",
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64\n",
            b"\x99\x00\x05\x04",
        ] {
            assert!(Keyring::parse(bad).is_err(), "{bad:?}");
        }
        let ring = Keyring::default();
        for bad in [
            &b""[..],
            b"garbage",
            b"\xa3\x01",
            b"-----BEGIN PGP MESSAGE-----\n\n=AAAA\n",
        ] {
            let err = ring.verify(bad, SystemTime::now()).unwrap_err();
            assert!(!err.is_empty());
        }
    }
}
