//! KBS client of the attestation agent and the confidential data hub.

#![forbid(unsafe_code)]

pub mod resource_uri;
