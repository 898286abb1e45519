//! The key derivations of JWE key agreement: the Concat KDF of `ECDH-ES` (RFC 7518 §4.6.2)
//! and the KMAC256 KDF of `ML-KEM-768+A192KW` (draft-ietf-jose-pqc-kem, as trustee uses it).

use zeroize::Zeroizing;

use crate::JweError;

/// Concat KDF (NIST SP 800-56A, RFC 7518 §4.6.2) with SHA-256, one-pass key agreement:
/// OtherInfo = len‖AlgorithmID ‖ len‖PartyUInfo ‖ len‖PartyVInfo ‖ keydatalen in bits.
pub(crate) fn concat_kdf_sha256(
    shared_secret: &[u8],
    algorithm_id: &str,
    apu: &[u8],
    apv: &[u8],
    out: &mut [u8],
) -> Result<(), JweError> {
    let mut other_info = Vec::with_capacity(16 + algorithm_id.len() + apu.len() + apv.len());
    for field in [algorithm_id.as_bytes(), apu, apv] {
        let len = u32::try_from(field.len()).map_err(|_| JweError::KeyUnwrap)?;
        other_info.extend_from_slice(&len.to_be_bytes());
        other_info.extend_from_slice(field);
    }
    let bits = u32::try_from(out.len() * 8).map_err(|_| JweError::KeyUnwrap)?;
    other_info.extend_from_slice(&bits.to_be_bytes());
    concat_kdf::derive_key_into::<sha2::Sha256>(shared_secret, &other_info, out)
        .map_err(|_| JweError::KeyUnwrap)
}

/// Rate of cSHAKE256 (and so the `bytepad` width of KMAC256), in bytes.
#[cfg(feature = "ml-kem")]
const KMAC256_RATE: usize = 136;

/// NIST SP 800-185 `left_encode` / `right_encode` of `value`: the big-endian bytes without
/// leading zeros (at least one), preceded (left) or followed (right) by their count.
#[cfg(feature = "ml-kem")]
fn sp800_185_encode(value: u64, left: bool) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let digits = &bytes[skip..];
    let count = digits.len() as u8;
    let mut out = Vec::with_capacity(digits.len() + 1);
    if left {
        out.push(count);
    }
    out.extend_from_slice(digits);
    if !left {
        out.push(count);
    }
    out
}

/// KMAC256 (NIST SP 800-185 §4.3) with an output of `out.len()` bytes:
/// `cSHAKE256(bytepad(encode_string(key), 136) || data || right_encode(L), L, "KMAC", customization)`.
#[cfg(feature = "ml-kem")]
pub(crate) fn kmac256(key: &[u8], data: &[u8], customization: &[u8], out: &mut [u8]) {
    use sha3::digest::core_api::CoreWrapper;
    use sha3::digest::{ExtendableOutput, Update, XofReader};
    let mut prefix = Zeroizing::new(sp800_185_encode(KMAC256_RATE as u64, true));
    prefix.extend_from_slice(&sp800_185_encode(
        (key.len() as u64).saturating_mul(8),
        true,
    ));
    prefix.extend_from_slice(key);
    let padded = prefix.len().div_ceil(KMAC256_RATE) * KMAC256_RATE;
    prefix.resize(padded, 0);
    let mut cshake = CoreWrapper::from_core(sha3::CShake256Core::new_with_function_name(
        b"KMAC",
        customization,
    ));
    cshake.update(&prefix);
    cshake.update(data);
    cshake.update(&sp800_185_encode(
        (out.len() as u64).saturating_mul(8),
        false,
    ));
    cshake.finalize_xof().read(out);
}

/// The KDF of `ML-KEM-768+A192KW` as trustee and upstream compute it:
/// `KMAC256(K = shared secret, X = AlgorithmID || SuppPubInfo, L = 8·len(out), S = "")`,
/// AlgorithmID = 32-bit big-endian length of `algorithm_id` then its bytes, SuppPubInfo =
/// the output length in bits, 32-bit big-endian.
#[cfg(feature = "ml-kem")]
pub(crate) fn kmac256_kdf(
    shared_secret: &[u8],
    algorithm_id: &str,
    out: &mut [u8],
) -> Result<(), JweError> {
    let id_len = u32::try_from(algorithm_id.len()).map_err(|_| JweError::KeyUnwrap)?;
    let bits = u32::try_from(out.len() * 8).map_err(|_| JweError::KeyUnwrap)?;
    let mut fixed_info = Vec::with_capacity(8 + algorithm_id.len());
    fixed_info.extend_from_slice(&id_len.to_be_bytes());
    fixed_info.extend_from_slice(algorithm_id.as_bytes());
    fixed_info.extend_from_slice(&bits.to_be_bytes());
    kmac256(shared_secret, &fixed_info, b"", out);
    Ok(())
}

/// A fresh key of `len` bytes from the KDF, wiped on drop.
pub(crate) fn concat_kdf_key(
    shared_secret: &[u8],
    algorithm_id: &str,
    apu: &[u8],
    apv: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let mut out = Zeroizing::new(vec![0u8; len]);
    concat_kdf_sha256(shared_secret, algorithm_id, apu, apv, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use p256::elliptic_curve::sec1::FromEncodedPoint;

    /// RFC 7518 Appendix C: Z from the example keys, A128GCM, apu "Alice", apv "Bob".
    #[test]
    fn concat_kdf_matches_rfc7518_appendix_c() {
        let bob_d = URL_SAFE_NO_PAD
            .decode("VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw")
            .unwrap();
        let bob = p256::SecretKey::from_slice(&bob_d).unwrap();
        let mut point = vec![0x04];
        point.extend(
            URL_SAFE_NO_PAD
                .decode("gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0")
                .unwrap(),
        );
        point.extend(
            URL_SAFE_NO_PAD
                .decode("SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps")
                .unwrap(),
        );
        let point = p256::EncodedPoint::from_bytes(point).unwrap();
        let alice = p256::PublicKey::from_encoded_point(&point).unwrap();
        let z = p256::ecdh::diffie_hellman(bob.to_nonzero_scalar(), alice.as_affine());
        let mut derived = [0u8; 16];
        concat_kdf_sha256(
            z.raw_secret_bytes(),
            "A128GCM",
            b"Alice",
            b"Bob",
            &mut derived,
        )
        .unwrap();
        assert_eq!(URL_SAFE_NO_PAD.encode(derived), "VqqN6vgjbSBcIijNcacQGg");
    }

    /// NIST SP 800-185 KMAC samples #4 and #5 (KMAC256), as OpenSSL computes them too.
    #[cfg(feature = "ml-kem")]
    #[test]
    fn kmac256_matches_the_nist_samples_and_openssl() {
        let key: Vec<u8> = (0x40..=0x5f).collect();
        let mut out = [0u8; 64];
        kmac256(&key, &[0, 1, 2, 3], b"My Tagged Application", &mut out);
        assert_eq!(
            hex::encode(out),
            "20c570c31346f703c9ac36c61c03cb64c3970d0cfc787e9b79599d273a68d2f7f69d4cc3de9d104a351689f27cf6f5951f0103f33f4f24871024d9c27773a8dd"
        );
        let data: Vec<u8> = (0x00..=0xc7).collect();
        kmac256(&key, &data, b"", &mut out);
        assert_eq!(
            hex::encode(out),
            "75358cf39e41494e949707927cee0af20a3ff553904c86b08f21cc414bcfd691589d27cf5e15369cbbff8b9a4c2eb17800855d0235ff635da82533ec6b759b69"
        );
        // `openssl mac -macopt hexkey:4041…5f -macopt size:24 KMAC256` of 00010203
        let mut short = [0u8; 24];
        kmac256(&key, &[0, 1, 2, 3], b"", &mut short);
        assert_eq!(
            hex::encode(short),
            "e2f127733e21716ac9a2464342d37078a5356034bafa4951"
        );
        // the 24-byte KDF output of ML-KEM-768+A192KW for an all-zero secret (OpenSSL:
        // `openssl mac -macopt hexkey:00…00 -macopt size:24 KMAC256` over the fixed info)
        let mut kek = [0u8; 24];
        kmac256_kdf(&[0u8; 32], "ML-KEM-768+A192KW", &mut kek).unwrap();
        assert_eq!(
            hex::encode(kek),
            "5a532aa1c71c5bfe8ef4f3c32d4e6146992d6bd53fd0ccca"
        );
        assert_eq!(sp800_185_encode(0, true), [1, 0]);
        assert_eq!(sp800_185_encode(136, true), [1, 136]);
        assert_eq!(sp800_185_encode(192, false), [192, 1]);
        assert_eq!(sp800_185_encode(256, true), [2, 1, 0]);
    }
}
