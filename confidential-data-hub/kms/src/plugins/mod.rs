//! The provider implementations behind [`crate::KmsProviders`].

#[cfg(feature = "aliyun")]
pub mod aliyun;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "ehsm")]
pub mod ehsm;
#[cfg(any(feature = "aliyun", feature = "ehsm"))]
pub(crate) mod http;
pub mod kbs;
pub mod offline_fs;
