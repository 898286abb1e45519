//! NV indexes (the Azure vTPM's HCL report and its report-data input).

use tss_esapi::{
    abstraction::nv,
    attributes::NvIndexAttributesBuilder,
    handles::{NvIndexHandle, NvIndexTpmHandle},
    interface_types::{
        algorithm::HashingAlgorithm,
        resource_handles::{NvAuth, Provision},
        session_handles::AuthSession,
    },
    structures::{MaxNvBuffer, NvPublicBuilder},
};

use super::Tpm;
use crate::AttesterError;

impl Tpm {
    /// The contents of NV index `index`, `None` when it is not defined.
    pub(crate) fn nv_read(&self, index: u32) -> Result<Option<Vec<u8>>, AttesterError> {
        self.exclusive(|context| {
            if !self.handle_exists(context, index)? {
                return Ok(None);
            }
            let handle = NvIndexTpmHandle::new(index)
                .map_err(self.failed(format!("using NV index {index:#x}")))?;
            context.set_sessions((Some(AuthSession::Password), None, None));
            let data = nv::read_full(context, NvAuth::Owner, handle)
                .map_err(self.failed(format!("reading NV index {index:#x}")))?;
            context.clear_sessions();
            Ok(Some(data))
        })
    }

    /// Writes `data` to NV index `index`, defining it (owner read/write, exactly
    /// `data.len()` bytes) when it is missing or of another size.
    pub(crate) fn nv_write(&self, index: u32, data: &[u8]) -> Result<(), AttesterError> {
        self.exclusive(|context| {
            let tpm_handle = NvIndexTpmHandle::new(index)
                .map_err(self.failed(format!("using NV index {index:#x}")))?;
            let buffer = MaxNvBuffer::try_from(data.to_vec())
                .map_err(self.failed("preparing the NV data"))?;
            let mut existing: Option<NvIndexHandle> = None;
            let defined = self.handle_exists(context, index)?;
            context.set_sessions((Some(AuthSession::Password), None, None));
            if defined {
                let handle: NvIndexHandle = context
                    .execute_without_session(|ctx| ctx.tr_from_tpm_public(tpm_handle.into()))
                    .map_err(self.failed(format!("opening NV index {index:#x}")))?
                    .into();
                let (public, _) = context
                    .execute_without_session(|ctx| ctx.nv_read_public(handle))
                    .map_err(self.failed(format!("reading NV index {index:#x} attributes")))?;
                if public.data_size() == data.len() {
                    existing = Some(handle);
                } else {
                    context
                        .nv_undefine_space(Provision::Owner, handle)
                        .map_err(self.failed(format!("removing NV index {index:#x}")))?;
                }
            }
            let handle = match existing {
                Some(handle) => handle,
                None => {
                    let attributes = NvIndexAttributesBuilder::new()
                        .with_owner_write(true)
                        .with_owner_read(true)
                        .build()
                        .map_err(self.failed("building NV attributes"))?;
                    let public = NvPublicBuilder::new()
                        .with_nv_index(tpm_handle)
                        .with_index_name_algorithm(HashingAlgorithm::Sha256)
                        .with_index_attributes(attributes)
                        .with_data_area_size(data.len())
                        .build()
                        .map_err(self.failed("building the NV index"))?;
                    context
                        .nv_define_space(Provision::Owner, None, public)
                        .map_err(self.failed(format!("defining NV index {index:#x}")))?
                }
            };
            context
                .nv_write(NvAuth::Owner, handle, buffer, 0)
                .map_err(self.failed(format!("writing NV index {index:#x}")))?;
            context.clear_sessions();
            Ok(())
        })
    }
}
