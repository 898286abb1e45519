//! Occlum's DCAP quote ioctls on `/dev/sgx` (inside an Occlum enclave). The only place of
//! the SGX attester with `unsafe`.

#![allow(unsafe_code)]

use std::{io, os::fd::AsRawFd, path::PathBuf};

use super::OcclumDcap;
use crate::support::open_device;

/// `sgxioc_gen_dcap_quote_arg_t` of Occlum's `occlum_dcap.h`.
#[repr(C)]
struct GenDcapQuoteArg {
    report_data: *const [u8; 64],
    quote_len: *mut u32,
    quote_buf: *mut u8,
}

// SGXIOC_GET_DCAP_QUOTE_SIZE = _IOR('s', 7, uint32_t)
nix::ioctl_read!(sgxioc_get_dcap_quote_size, b's', 7, u32);
// SGXIOC_GEN_DCAP_QUOTE = _IOWR('s', 8, sgxioc_gen_dcap_quote_arg_t)
nix::ioctl_readwrite!(sgxioc_gen_dcap_quote, b's', 8, GenDcapQuoteArg);

/// A DCAP quote is a few KiB; Occlum cannot make us allocate more than this.
const MAX_QUOTE: u32 = 1 << 20;

/// Occlum's `/dev/sgx`.
#[derive(Debug, Clone)]
pub(crate) struct OcclumSgxIoctl {
    path: PathBuf,
}

impl OcclumSgxIoctl {
    /// The device at `path` (normally `/dev/sgx` inside the enclave).
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl OcclumDcap for OcclumSgxIoctl {
    fn quote(&self, report_data: &[u8; 64]) -> io::Result<Vec<u8>> {
        let device = open_device(&self.path)?;
        let mut size: u32 = 0;
        // SAFETY: the descriptor is open for the call and `size` is a live u32 the kernel
        // (Occlum's LibOS) writes the quote size into.
        unsafe { sgxioc_get_dcap_quote_size(device.as_raw_fd(), &mut size) }
            .map_err(io::Error::from)?;
        if size == 0 || size > MAX_QUOTE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("Occlum reports a {size}-byte DCAP quote"),
            ));
        }
        let mut quote = vec![0u8; size as usize];
        let mut quote_len = size;
        let mut arg = GenDcapQuoteArg {
            report_data,
            quote_len: &mut quote_len,
            quote_buf: quote.as_mut_ptr(),
        };
        // SAFETY: `arg` points at the caller's 64-byte report data (read only), at
        // `quote_len` holding the capacity of `quote`, and at `quote` itself; all stay alive
        // and unaliased for the call, and the LibOS writes at most `quote_len` bytes.
        unsafe { sgxioc_gen_dcap_quote(device.as_raw_fd(), &mut arg) }.map_err(io::Error::from)?;
        quote.truncate((quote_len as usize).min(quote.len()));
        Ok(quote)
    }
}
