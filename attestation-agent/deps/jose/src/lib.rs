//! The JOSE of the guest components, in one place: JWE (KBS resource replies, the `jwe`
//! layer-key wrapper, the test KBS's encrypting side) and JWS with ES256 (sealed secrets).
//!
//! RSA private-key operations run in AWS-LC (constant-time decryption; see [`rsa`]).
#![forbid(unsafe_code)]

pub mod jwe;
pub mod jws;
pub mod kdf;
pub mod rsa;

pub use jwe::{
    encrypt, DecryptionKey, Flattened, Jwe, JweError, JweOptions, KeyAlgorithm, RecipientKey,
};
pub use rsa::{OaepHash, RsaError, RsaPrivateKey, RsaPublicKey};

#[cfg(feature = "ml-kem")]
pub use ml_kem;
pub use {p256, p384, p521};
