//! The `/dev/sev-guest` extended-report ioctl (`SNP_GET_EXT_REPORT`). The only place of the
//! SNP attester with `unsafe`.

#![allow(unsafe_code)]

use std::{io, os::fd::AsRawFd, path::PathBuf};

use super::{SevGuestDevice, REPORT_SIZE};
use crate::support::open_device;

/// `struct snp_report_req` of `<uapi/linux/sev-guest.h>`.
#[repr(C)]
struct SnpReportReq {
    user_data: [u8; 64],
    vmpl: u32,
    rsvd: [u8; 28],
}

/// `struct snp_ext_report_req`.
#[repr(C)]
struct SnpExtReportReq {
    data: SnpReportReq,
    certs_address: u64,
    certs_len: u32,
}

/// `struct snp_report_resp`: the firmware's MSG_REPORT_RSP.
#[repr(C)]
struct SnpReportResp {
    data: [u8; 4000],
}

/// `struct snp_guest_request_ioctl`.
#[repr(C)]
struct SnpGuestRequestIoctl {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
}

// SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl)
nix::ioctl_readwrite!(snp_get_ext_report, b'S', 0x2, SnpGuestRequestIoctl);

/// `exitinfo2` VMM error: the certificate buffer is too small (`certs_len` says how big).
const VMM_ERR_INVALID_LEN: u64 = 1;
/// Certificate buffers are whole pages.
const PAGE: usize = 4096;
/// First guess for the certificate table; grown once if the host asks for more.
const INITIAL_CERTS_PAGES: usize = 4;
/// The host cannot make us allocate more than this.
const MAX_CERTS_LEN: usize = 1 << 20;
/// MSG_REPORT_RSP header: status, report size, reserved.
const RESP_HEADER: usize = 32;

/// The kernel's `/dev/sev-guest` device.
#[derive(Debug, Clone)]
pub(crate) struct SevGuestIoctl {
    path: PathBuf,
}

impl SevGuestIoctl {
    /// The device at `path` (normally `/dev/sev-guest` under the platform root).
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl SevGuestDevice for SevGuestIoctl {
    fn get_ext_report(
        &self,
        report_data: &[u8; 64],
        vmpl: u32,
    ) -> io::Result<(Vec<u8>, Option<Vec<u8>>)> {
        let device = open_device(&self.path)?;
        let mut certs = vec![0u8; INITIAL_CERTS_PAGES * PAGE];
        for _ in 0..2 {
            let mut request = SnpExtReportReq {
                data: SnpReportReq {
                    user_data: *report_data,
                    vmpl,
                    rsvd: [0; 28],
                },
                certs_address: certs.as_mut_ptr() as u64,
                certs_len: u32::try_from(certs.len())
                    .map_err(|_| invalid("certificate buffer too large".into()))?,
            };
            let mut response = SnpReportResp { data: [0; 4000] };
            let mut guest_request = SnpGuestRequestIoctl {
                msg_version: 1,
                req_data: &mut request as *mut SnpExtReportReq as u64,
                resp_data: &mut response as *mut SnpReportResp as u64,
                exitinfo2: 0,
            };
            // SAFETY: the descriptor is open for the call; `guest_request` points at
            // `request` and `response`, and `request.certs_address` at `certs`, all live,
            // exclusively borrowed and at least as large as their declared lengths (the
            // structs are the uapi layouts; `certs_len` is the length of `certs`). The
            // kernel writes only within those buffers.
            let outcome = unsafe { snp_get_ext_report(device.as_raw_fd(), &mut guest_request) };
            match outcome {
                Ok(_) => {
                    let status = u32::from_le_bytes([
                        response.data[0],
                        response.data[1],
                        response.data[2],
                        response.data[3],
                    ]);
                    if status != 0 {
                        return Err(invalid(format!(
                            "the firmware refused the report request (status {status:#x})"
                        )));
                    }
                    let report = response
                        .data
                        .get(RESP_HEADER..RESP_HEADER + REPORT_SIZE)
                        .ok_or_else(|| invalid("short report response".into()))?
                        .to_vec();
                    let certs_len = request.certs_len as usize;
                    let certs = (certs_len > 0 && certs.iter().any(|b| *b != 0))
                        .then(|| certs[..certs_len.min(certs.len())].to_vec());
                    return Ok((report, certs));
                }
                Err(_) if guest_request.exitinfo2 >> 32 == VMM_ERR_INVALID_LEN => {
                    let wanted = request.certs_len as usize;
                    if wanted == 0 || wanted > MAX_CERTS_LEN {
                        return Err(invalid(format!(
                            "the host asks for a {wanted}-byte certificate buffer"
                        )));
                    }
                    certs = vec![0u8; wanted.div_ceil(PAGE) * PAGE];
                }
                Err(errno) => {
                    return Err(io::Error::other(format!(
                        "SNP_GET_EXT_REPORT failed: {errno} (firmware/VMM error {:#x})",
                        guest_request.exitinfo2
                    )))
                }
            }
        }
        Err(invalid(
            "the host changed the certificate table size between two requests".into(),
        ))
    }
}
