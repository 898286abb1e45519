//! Test peers and fixtures for the suite's tests (a dev-dependency only): launchers for the
//! real daemons and peers, and a protocol-faithful KBS.

#![forbid(unsafe_code)]

pub mod kata;
pub mod kbs;
pub mod kms;
pub mod loopdev;
pub mod process;
pub mod registry_faults;
pub mod suite;
pub mod vm;
