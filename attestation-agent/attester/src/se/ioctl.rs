//! The s390x Ultravisor attestation ioctl on `/dev/uv`. The only place of the SE attester
//! with `unsafe`.

#![allow(unsafe_code)]

use std::{io, os::fd::AsRawFd, path::PathBuf};

use super::{UvAttestation, UvAttestationRequest, UvDevice};
use crate::support::open_device;

/// `struct uvio_attest` of `<asm/uvdevice.h>`.
#[repr(C)]
struct UvioAttest {
    arcb_addr: u64,
    meas_addr: u64,
    add_data_addr: u64,
    user_data: [u8; 0x100],
    config_uid: [u8; 0x10],
    arcb_len: u32,
    meas_len: u32,
    add_data_len: u32,
    user_data_len: u16,
    reserved136: u16,
}

/// `struct uvio_ioctl_cb`.
#[repr(C)]
struct UvioIoctlCb {
    flags: u32,
    uv_rc: u16,
    uv_rrc: u16,
    argument_addr: u64,
    argument_len: u32,
    reserved14: [u8; 0x40 - 0x14],
}

// UVIO_IOCTL_ATT = _IOWR('u', 1, struct uvio_ioctl_cb)
nix::ioctl_readwrite!(uvio_ioctl_att, b'u', 1, UvioIoctlCb);

/// The Ultravisor's "executed" return code.
const UVC_RC_EXECUTED: u16 = 0x0001;

/// The kernel's `/dev/uv`.
#[derive(Debug, Clone)]
pub(crate) struct UvIoctl {
    path: PathBuf,
}

impl UvIoctl {
    /// The device at `path` (normally `/dev/uv` under the platform root).
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

fn too_long(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{what} is too long"))
}

impl UvDevice for UvIoctl {
    fn attest(&self, request: &UvAttestationRequest) -> io::Result<UvAttestation> {
        let device = open_device(&self.path)?;
        let mut user_data = [0u8; 0x100];
        user_data
            .get_mut(..request.user_data.len())
            .ok_or_else(|| too_long("user data"))?
            .copy_from_slice(&request.user_data);
        let mut measurement = vec![0u8; request.measurement_size as usize];
        let mut additional = vec![0u8; request.additional_size as usize];
        let mut attest = UvioAttest {
            arcb_addr: request.arcb.as_ptr() as u64,
            meas_addr: measurement.as_mut_ptr() as u64,
            add_data_addr: additional.as_mut_ptr() as u64,
            user_data,
            config_uid: [0; 0x10],
            arcb_len: u32::try_from(request.arcb.len()).map_err(|_| too_long("request blob"))?,
            meas_len: request.measurement_size,
            add_data_len: request.additional_size,
            user_data_len: u16::try_from(request.user_data.len())
                .map_err(|_| too_long("user data"))?,
            reserved136: 0,
        };
        let mut control = UvioIoctlCb {
            flags: 0,
            uv_rc: 0,
            uv_rrc: 0,
            argument_addr: &mut attest as *mut UvioAttest as u64,
            argument_len: std::mem::size_of::<UvioAttest>() as u32,
            reserved14: [0; 0x40 - 0x14],
        };
        // SAFETY: the descriptor is open for the call; `control` points at `attest`, whose
        // addresses point at `request.arcb` (read only), `measurement` and `additional`,
        // each live for the call and exactly as long as the lengths given with them; the
        // kernel writes only into `attest`, `measurement`, `additional` and `control`.
        unsafe { uvio_ioctl_att(device.as_raw_fd(), &mut control) }.map_err(io::Error::from)?;
        if control.uv_rc != UVC_RC_EXECUTED {
            return Err(io::Error::other(format!(
                "the Ultravisor refused the attestation request (rc {:#06x}, rrc {:#06x})",
                control.uv_rc, control.uv_rrc
            )));
        }
        additional.truncate((attest.add_data_len as usize).min(additional.len()));
        Ok(UvAttestation {
            measurement,
            additional_data: additional,
            config_uid: attest.config_uid,
        })
    }
}
