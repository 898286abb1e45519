//! The provider implementations behind [`crate::KmsProviders`].

#[cfg(feature = "aliyun")]
pub(crate) mod aliyun;
#[cfg(feature = "aws")]
pub(crate) mod aws;
#[cfg(feature = "ehsm")]
pub(crate) mod ehsm;
#[cfg(any(feature = "aliyun", feature = "ehsm"))]
pub(crate) mod http;
pub(crate) mod kbs;
pub(crate) mod offline_fs;
