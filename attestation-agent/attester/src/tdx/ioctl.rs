//! The `/dev/tdx_guest` TDREPORT ioctl. The only place of the TDX attester with `unsafe`.

#![allow(unsafe_code)]

use std::{io, os::fd::AsRawFd, path::PathBuf};

use super::{report::TDREPORT_SIZE, TdxGuestDevice};
use crate::support::open_device;

/// `struct tdx_report_req` of `<uapi/linux/tdx-guest.h>`.
#[repr(C)]
struct TdxReportReq {
    reportdata: [u8; 64],
    tdreport: [u8; TDREPORT_SIZE],
}

// TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req)
nix::ioctl_readwrite!(tdx_cmd_get_report0, b'T', 1, TdxReportReq);

/// The kernel's `/dev/tdx_guest` device.
#[derive(Debug, Clone)]
pub(crate) struct TdxGuestIoctl {
    path: PathBuf,
}

impl TdxGuestIoctl {
    /// The device at `path` (normally `/dev/tdx_guest` under the platform root).
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl TdxGuestDevice for TdxGuestIoctl {
    fn get_report(&self, report_data: &[u8; 64]) -> io::Result<Vec<u8>> {
        let device = open_device(&self.path)?;
        let mut request = TdxReportReq {
            reportdata: *report_data,
            tdreport: [0; TDREPORT_SIZE],
        };
        // SAFETY: `device` is an open file descriptor for the duration of the call, and
        // `request` is a live, exclusively borrowed `struct tdx_report_req` whose size the
        // ioctl number encodes; the kernel reads `reportdata` and writes `tdreport` only.
        unsafe { tdx_cmd_get_report0(device.as_raw_fd(), &mut request) }
            .map_err(io::Error::from)?;
        Ok(request.tdreport.to_vec())
    }
}
