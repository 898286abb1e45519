//! The Hygon `/dev/csv-guest` attestation-report ioctl. The only place of the CSV attester
//! with `unsafe`.

#![allow(unsafe_code)]

use std::{io, os::fd::AsRawFd, path::PathBuf};

use super::{CsvGuestDevice, PAGE_SIZE, REQUEST_SIZE};
use crate::support::open_device;

/// `struct csv_guest_mem` of Hygon's guest driver.
#[repr(C)]
struct CsvGuestMem {
    va: u64,
    size: i32,
}

// GET_ATTESTATION_REPORT = _IOWR('D', 1, struct csv_guest_mem)
nix::ioctl_readwrite!(csv_get_attestation_report, b'D', 1, CsvGuestMem);

/// The kernel's `/dev/csv-guest`.
#[derive(Debug, Clone)]
pub(crate) struct CsvGuestIoctl {
    path: PathBuf,
}

impl CsvGuestIoctl {
    /// The device at `path` (normally `/dev/csv-guest` under the platform root).
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl CsvGuestDevice for CsvGuestIoctl {
    fn attestation_report(&self, request: &[u8; REQUEST_SIZE]) -> io::Result<Vec<u8>> {
        let device = open_device(&self.path)?;
        let mut page = vec![0u8; PAGE_SIZE];
        page[..REQUEST_SIZE].copy_from_slice(request);
        let mut mem = CsvGuestMem {
            va: page.as_mut_ptr() as u64,
            size: PAGE_SIZE as i32,
        };
        // SAFETY: the descriptor is open for the call; `mem` points at `page`, a live,
        // exclusively borrowed buffer of exactly `size` bytes, which the driver reads the
        // request from and writes the report into.
        unsafe { csv_get_attestation_report(device.as_raw_fd(), &mut mem) }
            .map_err(io::Error::from)?;
        Ok(page)
    }
}
