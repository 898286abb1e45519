//! The `pkcs7` key wrapper: the private layer options as a PKCS#7 / CMS EnvelopedData
//! for X.509 recipient certificates, RSA key transport (PKCS#1 v1.5), as containers/ocicrypt
//! writes it through go.mozilla.org/pkcs7.
//!
//! That library's output is not plain DER: the AES-GCM parameters are wrapped in a
//! *primitive* tag 16 around the real `GCMParameters` SEQUENCE, whose nonce is tagged `[4]`
//! rather than OCTET STRING, and it reads them back only in that shape; the encrypted content is a constructed `[0]` holding an OCTET STRING.
//! Standard parsers (OpenSSL, the `cms` crate) reject the former, so this module has its
//! own small, bounded DER reader that takes both that shape and the standard one, and
//! writes the shape skopeo reads.

use aes_gcm::aead::Aead;
use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit};
use jose::RsaPublicKey;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::keys::PrivateKey;

/// Upper bound for a PKCS#7 packet or certificate.
pub const MAX_PKCS7_LEN: usize = 1024 * 1024;
const MAX_RECIPIENTS: usize = 256;

const OID_ENVELOPED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x03];
const OID_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01];
const OID_RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
const OID_AES128_GCM: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x06];
const OID_AES256_GCM: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2E];
const OID_AES128_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x02];
const OID_AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2A];

const TAG_INTEGER: u8 = 0x02;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_CONTEXT_0_CONS: u8 = 0xA0;
const TAG_CONTEXT_0_PRIM: u8 = 0x80;
/// `[4]`, the tag go.mozilla.org/pkcs7 gives the GCM nonce.
const TAG_CONTEXT_4_PRIM: u8 = 0x84;
/// The primitive tag 16 go.mozilla.org/pkcs7 wraps the GCM parameters in.
const TAG_PRIMITIVE_SEQUENCE: u8 = 0x10;

/// Why a PKCS#7 packet or certificate could not be made or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs7Error {
    /// The DER is malformed or not an EnvelopedData.
    #[error("malformed PKCS#7: {0}")]
    Malformed(String),
    /// A certificate is malformed or has no RSA key.
    #[error("unusable X.509 certificate: {0}")]
    Certificate(String),
    /// An algorithm this implementation does not handle.
    #[error("PKCS#7 algorithm not supported: {0}")]
    Unsupported(String),
    /// No configured key opened any recipient.
    #[error("no private key opened the PKCS#7 packet ({0})")]
    NoMatchingKey(String),
    /// Decryption was asked for without any RSA private key.
    #[error("no RSA private key is configured for PKCS#7")]
    NoPrivateKeys,
    /// The AES-GCM tag (or CBC padding) did not verify.
    #[error("PKCS#7 content failed authentication: the packet was altered or the key is wrong")]
    ContentAuthentication,
    /// Encryption failed.
    #[error("PKCS#7 encryption failed: {0}")]
    Encrypt(String),
}

fn malformed(what: &str) -> Pkcs7Error {
    Pkcs7Error::Malformed(what.to_string())
}

/// A bounded DER reader over a byte slice.
#[derive(Clone, Copy)]
struct Der<'a> {
    rest: &'a [u8],
}

/// One TLV: its tag, its content and the whole encoding.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(data: &'a [u8]) -> Self {
        Der { rest: data }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn any(&mut self) -> Result<Tlv<'a>, Pkcs7Error> {
        let data = self.rest;
        let (&tag, after_tag) = data
            .split_first()
            .ok_or_else(|| malformed("truncated: missing tag"))?;
        if tag & 0x1F == 0x1F {
            return Err(malformed("multi-byte tags are not used by PKCS#7"));
        }
        let (&first, mut after_len) = after_tag
            .split_first()
            .ok_or_else(|| malformed("truncated: missing length"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7F);
            if n == 0 {
                return Err(malformed("indefinite length is not DER"));
            }
            if n > 4 || after_len.len() < n {
                return Err(malformed("bad length"));
            }
            let mut len = 0usize;
            for &b in &after_len[..n] {
                len = (len << 8) | usize::from(b);
            }
            after_len = &after_len[n..];
            len
        };
        if len > after_len.len() {
            return Err(malformed("truncated: content shorter than its length"));
        }
        let header = data.len() - after_len.len();
        let (content, rest) = after_len.split_at(len);
        self.rest = rest;
        Ok(Tlv {
            tag,
            content,
            raw: &data[..header + len],
        })
    }

    fn expect(&mut self, tag: u8, what: &str) -> Result<Tlv<'a>, Pkcs7Error> {
        let tlv = self.any()?;
        if tlv.tag != tag {
            return Err(Pkcs7Error::Malformed(format!(
                "{what}: tag {:#04x}, expected {tag:#04x}",
                tlv.tag
            )));
        }
        Ok(tlv)
    }

    fn seq(&mut self, what: &str) -> Result<Der<'a>, Pkcs7Error> {
        Ok(Der::new(self.expect(TAG_SEQUENCE, what)?.content))
    }
}

fn encode_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    encode_len(len, &mut out);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

fn oid(content: &[u8]) -> Vec<u8> {
    tlv(TAG_OID, &[content])
}

fn integer_eq(a: &[u8], b: &[u8]) -> bool {
    let strip = |x: &[u8]| -> Vec<u8> { x.iter().skip_while(|b| **b == 0).copied().collect() };
    strip(a) == strip(b)
}

/// An X.509 recipient certificate: what PKCS#7 needs of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    issuer: Vec<u8>,
    serial: Vec<u8>,
    public_key: RsaPublicKey,
}

impl Certificate {
    /// Reads a PEM (`CERTIFICATE`) or DER certificate with an RSA key.
    pub fn parse(data: &[u8]) -> Result<Self, Pkcs7Error> {
        if data.len() > MAX_PKCS7_LEN {
            return Err(Pkcs7Error::Certificate("too large".into()));
        }
        let der = if data.windows(11).any(|w| w == b"-----BEGIN ") {
            let text = std::str::from_utf8(data)
                .map_err(|_| Pkcs7Error::Certificate("PEM is not UTF-8".into()))?;
            let start = text
                .find("-----BEGIN CERTIFICATE-----")
                .ok_or_else(|| Pkcs7Error::Certificate("no CERTIFICATE PEM block".into()))?;
            const END: &str = "-----END CERTIFICATE-----";
            let end = text[start..]
                .find(END)
                .ok_or_else(|| Pkcs7Error::Certificate("no END CERTIFICATE line".into()))?;
            let block = &text.as_bytes()[start..start + end + END.len()];
            let (_, der) = pem_rfc7468::decode_vec(block)
                .map_err(|e| Pkcs7Error::Certificate(format!("PEM: {e}")))?;
            der
        } else {
            data.to_vec()
        };
        let bad = |e: Pkcs7Error| Pkcs7Error::Certificate(e.to_string());
        let mut cert = Der::new(&der).seq("certificate").map_err(bad)?;
        let mut tbs = cert.seq("tbsCertificate").map_err(bad)?;
        if tbs.peek_tag() == Some(TAG_CONTEXT_0_CONS) {
            tbs.any().map_err(bad)?; // version
        }
        let serial = tbs
            .expect(TAG_INTEGER, "serialNumber")
            .map_err(bad)?
            .content
            .to_vec();
        tbs.seq("signature").map_err(bad)?;
        let issuer = tbs
            .expect(TAG_SEQUENCE, "issuer")
            .map_err(bad)?
            .raw
            .to_vec();
        tbs.seq("validity").map_err(bad)?;
        tbs.expect(TAG_SEQUENCE, "subject").map_err(bad)?;
        let spki = tbs
            .expect(TAG_SEQUENCE, "subjectPublicKeyInfo")
            .map_err(bad)?
            .raw;
        let public_key = RsaPublicKey::from_spki_der(spki).map_err(|e| {
            Pkcs7Error::Certificate(format!(
                "not an RSA key (PKCS#7 here is RSA key transport): {e}"
            ))
        })?;
        Ok(Certificate {
            issuer,
            serial,
            public_key,
        })
    }
}

/// Encrypts `plaintext` for `recipients` as go.mozilla.org/pkcs7 does for
/// containers/ocicrypt: AES-128-GCM content, RSA PKCS#1 v1.5 key transport.
pub fn encrypt(plaintext: &[u8], recipients: &[Certificate]) -> Result<Vec<u8>, Pkcs7Error> {
    if recipients.is_empty() {
        return Err(Pkcs7Error::Encrypt("no recipient certificate".into()));
    }
    let mut key = Zeroizing::new([0u8; 16]);
    OsRng.fill_bytes(key.as_mut_slice());
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let sealed = Aes128Gcm::new(key.as_ref().into())
        .encrypt(&nonce.into(), plaintext)
        .map_err(|_| Pkcs7Error::Encrypt("AES-128-GCM".into()))?;
    let mut infos = Vec::new();
    for cert in recipients {
        let encrypted_key = cert
            .public_key
            .encrypt_pkcs1v15(key.as_slice())
            .map_err(|e| Pkcs7Error::Encrypt(e.to_string()))?;
        infos.push(tlv(
            TAG_SEQUENCE,
            &[
                &[TAG_INTEGER, 1, 0],
                &tlv(
                    TAG_SEQUENCE,
                    &[&cert.issuer, &tlv(TAG_INTEGER, &[&cert.serial])],
                ),
                &tlv(TAG_SEQUENCE, &[&oid(OID_RSA_ENCRYPTION)]),
                &tlv(TAG_OCTET_STRING, &[&encrypted_key]),
            ],
        ));
    }
    let gcm_params = tlv(
        TAG_SEQUENCE,
        &[&tlv(TAG_CONTEXT_4_PRIM, &[&nonce]), &[TAG_INTEGER, 1, 16]],
    );
    let info_refs: Vec<&[u8]> = infos.iter().map(Vec::as_slice).collect();
    let enveloped = tlv(
        TAG_SEQUENCE,
        &[
            &[TAG_INTEGER, 1, 0],
            &tlv(TAG_SET, &info_refs),
            &tlv(
                TAG_SEQUENCE,
                &[
                    &oid(OID_DATA),
                    &tlv(
                        TAG_SEQUENCE,
                        &[
                            &oid(OID_AES128_GCM),
                            &tlv(TAG_PRIMITIVE_SEQUENCE, &[&gcm_params]),
                        ],
                    ),
                    &tlv(TAG_CONTEXT_0_CONS, &[&tlv(TAG_OCTET_STRING, &[&sealed])]),
                ],
            ),
        ],
    );
    Ok(tlv(
        TAG_SEQUENCE,
        &[
            &oid(OID_ENVELOPED_DATA),
            &tlv(TAG_CONTEXT_0_CONS, &[&enveloped]),
        ],
    ))
}

/// One key-transport recipient of an EnvelopedData.
struct Recipient<'a> {
    issuer: &'a [u8],
    serial: &'a [u8],
    encrypted_key: &'a [u8],
}

/// A parsed EnvelopedData.
pub struct EnvelopedData<'a> {
    recipients: Vec<Recipient<'a>>,
    content_alg: &'a [u8],
    params: Tlv<'a>,
    ciphertext: Vec<u8>,
}

impl std::fmt::Debug for EnvelopedData<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopedData")
            .field("recipients", &self.recipients.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Parses a ContentInfo holding an EnvelopedData.
pub fn parse(data: &[u8]) -> Result<EnvelopedData<'_>, Pkcs7Error> {
    if data.len() > MAX_PKCS7_LEN {
        return Err(malformed("larger than 1 MiB"));
    }
    let mut outer = Der::new(data);
    let mut ci = outer.seq("ContentInfo")?;
    if !outer.is_empty() {
        return Err(malformed("trailing data after ContentInfo"));
    }
    if ci.expect(TAG_OID, "contentType")?.content != OID_ENVELOPED_DATA {
        return Err(Pkcs7Error::Unsupported(
            "content type is not envelopedData".into(),
        ));
    }
    let mut explicit = Der::new(ci.expect(TAG_CONTEXT_0_CONS, "content")?.content);
    let mut env = explicit.seq("EnvelopedData")?;
    env.expect(TAG_INTEGER, "version")?;
    if env.peek_tag() == Some(TAG_CONTEXT_0_CONS) {
        env.any()?; // originatorInfo
    }
    let mut set = Der::new(env.expect(TAG_SET, "recipientInfos")?.content);
    let mut recipients = Vec::new();
    while !set.is_empty() {
        if recipients.len() >= MAX_RECIPIENTS {
            return Err(malformed("too many recipients"));
        }
        let info = set.any()?;
        if info.tag != TAG_SEQUENCE {
            continue; // kari, kekri, pwri: not key transport
        }
        let mut ktri = Der::new(info.content);
        ktri.expect(TAG_INTEGER, "recipient version")?;
        if ktri.peek_tag() != Some(TAG_SEQUENCE) {
            continue; // subjectKeyIdentifier form: no issuer/serial to match, skipped
        }
        let mut ias = ktri.seq("issuerAndSerialNumber")?;
        let issuer = ias.expect(TAG_SEQUENCE, "issuer")?.raw;
        let serial = ias.expect(TAG_INTEGER, "serialNumber")?.content;
        let mut alg = ktri.seq("keyEncryptionAlgorithm")?;
        if alg.expect(TAG_OID, "keyEncryptionAlgorithm")?.content != OID_RSA_ENCRYPTION {
            continue;
        }
        let encrypted_key = ktri.expect(TAG_OCTET_STRING, "encryptedKey")?.content;
        recipients.push(Recipient {
            issuer,
            serial,
            encrypted_key,
        });
    }
    let mut eci = env.seq("EncryptedContentInfo")?;
    eci.expect(TAG_OID, "contentType")?;
    let mut alg = eci.seq("contentEncryptionAlgorithm")?;
    let content_alg = alg.expect(TAG_OID, "contentEncryptionAlgorithm")?.content;
    let params = alg.any()?;
    let content = eci.any()?;
    let ciphertext = match content.tag {
        TAG_CONTEXT_0_PRIM => content.content.to_vec(),
        TAG_CONTEXT_0_CONS => {
            let mut parts = Der::new(content.content);
            let mut out = Vec::with_capacity(content.content.len());
            while !parts.is_empty() {
                out.extend_from_slice(
                    parts
                        .expect(TAG_OCTET_STRING, "encryptedContent part")?
                        .content,
                );
            }
            out
        }
        _ => return Err(malformed("encryptedContent is not [0]")),
    };
    Ok(EnvelopedData {
        recipients,
        content_alg,
        params,
        ciphertext,
    })
}

impl EnvelopedData<'_> {
    /// Opens the packet with the first key that works; with `certs`, only the recipients
    /// those certificates name are tried (as containers/ocicrypt requires).
    pub fn decrypt(
        &self,
        keys: &[PrivateKey],
        certs: &[Certificate],
    ) -> Result<Zeroizing<Vec<u8>>, Pkcs7Error> {
        let rsa_keys: Vec<_> = keys
            .iter()
            .filter_map(|k| match k {
                PrivateKey::Rsa(k) => Some(k),
                _ => None,
            })
            .collect();
        if rsa_keys.is_empty() {
            return Err(Pkcs7Error::NoPrivateKeys);
        }
        let key_len = match self.content_alg {
            OID_AES128_GCM | OID_AES128_CBC => 16,
            OID_AES256_GCM | OID_AES256_CBC => 32,
            _ => {
                return Err(Pkcs7Error::Unsupported(
                    "content encryption other than AES-128/256 GCM/CBC".into(),
                ))
            }
        };
        let mut reasons = Vec::new();
        let mut content_rejected = false;
        for (index, r) in self.recipients.iter().enumerate() {
            let named = certs.is_empty()
                || certs
                    .iter()
                    .any(|c| c.issuer == r.issuer && integer_eq(&c.serial, r.serial));
            if !named {
                reasons.push(format!(
                    "recipient {index}: not one of the given certificates"
                ));
                continue;
            }
            for key in &rsa_keys {
                // Constant-time RSA with implicit rejection: a bad key transport gives a
                // random key, so it fails like altered content and is no padding oracle.
                let cek = key.decrypt_pkcs1v15_key(r.encrypted_key, key_len);
                match self.decrypt_content(&cek) {
                    Ok(plain) => return Ok(plain),
                    Err(Pkcs7Error::ContentAuthentication) => content_rejected = true,
                    Err(e) => return Err(e),
                }
            }
        }
        if content_rejected {
            return Err(Pkcs7Error::ContentAuthentication);
        }
        if reasons.is_empty() {
            reasons.push("no RSA key-transport recipient".into());
        }
        Err(Pkcs7Error::NoMatchingKey(reasons.join("; ")))
    }

    fn decrypt_content(&self, cek: &[u8]) -> Result<Zeroizing<Vec<u8>>, Pkcs7Error> {
        match self.content_alg {
            OID_AES128_GCM | OID_AES256_GCM => {
                // go.mozilla.org/pkcs7 wraps the SEQUENCE in a primitive tag 16.
                let seq = match self.params.tag {
                    TAG_PRIMITIVE_SEQUENCE => Der::new(self.params.content).seq("GCMParameters")?,
                    TAG_SEQUENCE => Der::new(self.params.content),
                    _ => return Err(malformed("GCM parameters are not a SEQUENCE")),
                };
                let mut seq = seq;
                // RFC 5084 says OCTET STRING; go.mozilla.org/pkcs7 writes and reads [4].
                let nonce = seq.any()?;
                if nonce.tag != TAG_OCTET_STRING && nonce.tag != TAG_CONTEXT_4_PRIM {
                    return Err(malformed("GCM nonce is not an OCTET STRING"));
                }
                let nonce = nonce.content;
                if !seq.is_empty() {
                    let icv = seq.expect(TAG_INTEGER, "GCM ICV length")?.content;
                    if icv != [16] {
                        return Err(Pkcs7Error::Unsupported(
                            "GCM tag length other than 16".into(),
                        ));
                    }
                }
                let nonce: [u8; 12] = nonce.try_into().map_err(|_| {
                    Pkcs7Error::Unsupported(format!("GCM nonce of {} bytes", nonce.len()))
                })?;
                let plain = if cek.len() == 16 {
                    Aes128Gcm::new_from_slice(cek)
                        .map(|c| c.decrypt(&nonce.into(), self.ciphertext.as_slice()))
                } else {
                    Aes256Gcm::new_from_slice(cek)
                        .map(|c| c.decrypt(&nonce.into(), self.ciphertext.as_slice()))
                };
                match plain {
                    Ok(Ok(p)) => Ok(Zeroizing::new(p)),
                    _ => Err(Pkcs7Error::ContentAuthentication),
                }
            }
            _ => {
                use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
                if self.params.tag != TAG_OCTET_STRING || self.params.content.len() != 16 {
                    return Err(malformed("CBC parameters are not a 16-byte IV"));
                }
                let iv = self.params.content;
                let plain = if cek.len() == 16 {
                    cbc::Decryptor::<aes::Aes128>::new_from_slices(cek, iv)
                        .map(|d| d.decrypt_padded_vec_mut::<Pkcs7>(&self.ciphertext))
                } else {
                    cbc::Decryptor::<aes::Aes256>::new_from_slices(cek, iv)
                        .map(|d| d.decrypt_padded_vec_mut::<Pkcs7>(&self.ciphertext))
                };
                match plain {
                    Ok(Ok(p)) => Ok(Zeroizing::new(p)),
                    _ => Err(Pkcs7Error::ContentAuthentication),
                }
            }
        }
    }
}

/// The PKCS#7 key wrapper: annotation `org.opencontainers.image.enc.keys.pkcs7`.
#[derive(Debug, Default, Clone)]
pub struct Pkcs7KeyWrapper {
    recipients: Vec<Certificate>,
    private_keys: Vec<PrivateKey>,
    certificates: Vec<Certificate>,
}

impl Pkcs7KeyWrapper {
    /// A wrapper with no keys yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a recipient certificate (wrap side).
    pub fn add_recipient(&mut self, cert: Certificate) {
        self.recipients.push(cert);
    }

    /// Adds an RSA private key (unwrap side).
    pub fn add_private_key(&mut self, key: PrivateKey) {
        self.private_keys.push(key);
    }

    /// Adds a certificate naming which recipient the private keys are (unwrap side;
    /// optional here, required by containers/ocicrypt).
    pub fn add_certificate(&mut self, cert: Certificate) {
        self.certificates.push(cert);
    }

    /// Wraps `opts_data` for every recipient certificate.
    pub fn wrap(&self, opts_data: &[u8]) -> Result<Vec<u8>, Pkcs7Error> {
        encrypt(opts_data, &self.recipients)
    }

    /// Unwraps a packet with the configured keys.
    pub fn unwrap(&self, packet: &[u8]) -> Result<Zeroizing<Vec<u8>>, Pkcs7Error> {
        parse(packet)?.decrypt(&self.private_keys, &self.certificates)
    }
}

#[async_trait::async_trait]
impl super::KeyWrapper for Pkcs7KeyWrapper {
    fn scheme(&self) -> &str {
        "pkcs7"
    }

    fn can_wrap(&self) -> bool {
        !self.recipients.is_empty()
    }

    fn can_unwrap(&self) -> bool {
        self.private_keys
            .iter()
            .any(|k| matches!(k, PrivateKey::Rsa(_)))
    }

    async fn wrap_keys(&self, opts_data: &[u8]) -> crate::Result<Vec<u8>> {
        Ok(self.wrap(opts_data)?)
    }

    async fn unwrap_key(&self, packet: &[u8]) -> crate::Result<Zeroizing<Vec<u8>>> {
        Ok(self.unwrap(packet)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn der_reader_rejects_hostile_input() {
        for bad in [
            &b""[..],
            &[0x30],
            &[0x30, 0x05, 0x00],
            &[0x30, 0x80, 0x00, 0x00],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x1f, 0x01, 0x00],
            &[0x30, 0x00, 0x00],
            &[0x30, 0x03, 0x06, 0x01, 0x00],
        ] {
            assert!(
                matches!(
                    parse(bad),
                    Err(Pkcs7Error::Malformed(_) | Pkcs7Error::Unsupported(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse(&vec![0u8; MAX_PKCS7_LEN + 1]),
            Err(Pkcs7Error::Malformed(_))
        ));
        assert!(matches!(
            Certificate::parse(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"),
            Err(Pkcs7Error::Certificate(_))
        ));
        assert!(matches!(
            Certificate::parse(&[0x30, 0x00]),
            Err(Pkcs7Error::Certificate(_))
        ));
    }

    #[test]
    fn lengths_encode_in_der_form() {
        let mut out = Vec::new();
        encode_len(0x7f, &mut out);
        encode_len(0x80, &mut out);
        encode_len(0x1234, &mut out);
        assert_eq!(out, [0x7f, 0x81, 0x80, 0x82, 0x12, 0x34]);
    }
}
