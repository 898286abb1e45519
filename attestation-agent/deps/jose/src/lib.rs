//! The JOSE of the guest components, in one place: JWE (KBS resource replies, the `jwe`
//! layer-key wrapper, the test KBS's encrypting side) and JWS with ES256 (sealed secrets).
//!
//! The JWE side is at the crate root ([`Jwe`], [`encrypt`], the key types and the
//! algorithm names); the JWS side and its JWK helpers are in [`jws`]. RSA private-key
//! operations run in AWS-LC (constant-time decryption; see [`RsaPrivateKey`]).
#![forbid(unsafe_code)]

mod jwe;
/// A namespace of its own: its key, JWK and error names only read right qualified
/// (`jws::JwsError`, `jws::generate_key_pair`), beside the JWE names at the root.
pub mod jws;
mod kdf;
mod rsa;

pub use jwe::{
    encrypt, DecryptionKey, Flattened, Jwe, JweError, JweOptions, KeyAlgorithm, RecipientKey,
    ALG_ECDH_ES_A256KW, ALG_ML_KEM_768_A192KW, ALG_RSA_OAEP_256, ENC_A256GCM, MAX_JWE_LEN,
    MAX_RECIPIENTS,
};
pub use rsa::{RsaError, RsaPrivateKey, RsaPublicKey};
