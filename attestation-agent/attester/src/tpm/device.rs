//! TPM operations over tss-esapi, one ESYS context per operation.

use std::{
    str::FromStr,
    sync::{Arc, Mutex},
};

use rsa::{pkcs8::EncodePublicKey, BigUint, RsaPublicKey};
use sha2::{Digest as _, Sha256};
use tracing::{debug, info};
use tss_esapi::{
    abstraction::pcr,
    attributes::ObjectAttributesBuilder,
    constants::{response_code::Tss2ResponseCodeKind, CapabilityType},
    handles::{KeyHandle, PcrHandle, TpmHandle},
    interface_types::{
        algorithm::{HashingAlgorithm, PublicAlgorithm, RsaSchemeAlgorithm},
        key_bits::RsaKeyBits,
        resource_handles::Hierarchy,
        session_handles::AuthSession,
    },
    structures::{
        AttestInfo, CapabilityData, Data, DigestValues, HashScheme, PcrSelectionList,
        PcrSelectionListBuilder, PcrSlot, Public, PublicBuilder, PublicKeyRsa,
        PublicRsaParametersBuilder, RsaExponent, RsaScheme, Signature, SignatureScheme,
    },
    tcti_ldr::TctiNameConf,
    traits::Marshall,
    Context,
};

use super::{TpmLocation, PCR_COUNT};
use crate::{AttesterError, Tee};

/// How often a quote is retried when a PCR changed between the quote and the PCR read.
const QUOTE_ATTEMPTS: usize = 3;

const PCR_HANDLES: [PcrHandle; PCR_COUNT] = [
    PcrHandle::Pcr0,
    PcrHandle::Pcr1,
    PcrHandle::Pcr2,
    PcrHandle::Pcr3,
    PcrHandle::Pcr4,
    PcrHandle::Pcr5,
    PcrHandle::Pcr6,
    PcrHandle::Pcr7,
    PcrHandle::Pcr8,
    PcrHandle::Pcr9,
    PcrHandle::Pcr10,
    PcrHandle::Pcr11,
    PcrHandle::Pcr12,
    PcrHandle::Pcr13,
    PcrHandle::Pcr14,
    PcrHandle::Pcr15,
    PcrHandle::Pcr16,
    PcrHandle::Pcr17,
    PcrHandle::Pcr18,
    PcrHandle::Pcr19,
    PcrHandle::Pcr20,
    PcrHandle::Pcr21,
    PcrHandle::Pcr22,
    PcrHandle::Pcr23,
];

/// Which attestation key signs a quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AkSource {
    /// A key at this persistent handle; an error when it is absent (the Azure vTPM AK).
    #[cfg(feature = "azure")]
    Persistent(u32),
    /// The key at this persistent handle, or a transient AK created for the quote in the
    /// endorsement hierarchy (a primary key: the same TPM gives the same AK every time).
    #[cfg(feature = "tpm-attester")]
    PersistentOrCreated(u32),
}

/// What a quote produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuoteParts {
    /// Marshalled TPMS_ATTEST.
    pub(crate) message: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE.
    pub(crate) signature: Vec<u8>,
    /// The bare RSA signature.
    pub(crate) rsa_signature: Vec<u8>,
    /// SHA-256 PCRs 0-23 as quoted.
    pub(crate) pcrs: Vec<[u8; 32]>,
    /// The AK public key as DER SubjectPublicKeyInfo.
    pub(crate) ak_public_der: Vec<u8>,
}

/// A TPM reached through a TCTI; operations are serialized.
#[derive(Debug, Clone)]
pub(crate) struct Tpm {
    location: TpmLocation,
    tee: Tee,
    lock: Arc<Mutex<()>>,
}

fn pcr_selection() -> Result<PcrSelectionList, tss_esapi::Error> {
    let slots = (0..PCR_COUNT)
        .map(|i| PcrSlot::try_from(1u32 << i))
        .collect::<Result<Vec<_>, _>>()?;
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
}

/// The template of the AK created when no persistent one exists: RSA-2048 restricted
/// signing key, RSASSA-SHA256, fixedTPM/fixedParent (what `tpm2_createak` makes).
fn ak_template() -> Result<Public, tss_esapi::Error> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_sign_encrypt(true)
        .build()?;
    let parameters = PublicRsaParametersBuilder::new()
        .with_scheme(RsaScheme::create(
            RsaSchemeAlgorithm::RsaSsa,
            Some(HashingAlgorithm::Sha256),
        )?)
        .with_key_bits(RsaKeyBits::Rsa2048)
        .with_exponent(RsaExponent::default())
        .with_is_signing_key(true)
        .with_is_decryption_key(false)
        .with_restricted(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Rsa)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_rsa_parameters(parameters)
        .with_rsa_unique_identifier(PublicKeyRsa::default())
        .build()
}

/// DER SubjectPublicKeyInfo of an RSA TPM public area, and whether the key fixes its own
/// signing scheme.
fn rsa_public(public: &Public) -> Result<(Vec<u8>, bool), String> {
    let Public::Rsa {
        parameters, unique, ..
    } = public
    else {
        return Err("the attestation key is not an RSA key".to_string());
    };
    let exponent = match parameters.exponent().value() {
        0 => 65537,
        e => e,
    };
    let key = RsaPublicKey::new(
        BigUint::from_bytes_be(unique.value()),
        BigUint::from(exponent),
    )
    .map_err(|e| format!("the attestation key is not a usable RSA key: {e}"))?;
    let der = key
        .to_public_key_der()
        .map_err(|e| format!("cannot encode the attestation key: {e}"))?;
    let has_scheme = parameters.rsa_scheme() != RsaScheme::Null;
    Ok((der.as_bytes().to_vec(), has_scheme))
}

impl Tpm {
    pub(crate) fn new(location: TpmLocation, tee: Tee) -> Self {
        Self {
            location,
            tee,
            lock: Arc::new(Mutex::new(())),
        }
    }

    fn failed(
        &self,
        operation: impl Into<String>,
    ) -> impl FnOnce(tss_esapi::Error) -> AttesterError {
        let tee = self.tee;
        let operation = operation.into();
        move |source| AttesterError::Backend {
            tee,
            operation,
            source: Box::new(source),
        }
    }

    fn platform_error(&self, message: String) -> AttesterError {
        AttesterError::Platform {
            tee: self.tee,
            message,
        }
    }

    fn context(&self) -> Result<Context, AttesterError> {
        let tcti = TctiNameConf::from_str(self.location.tcti()).map_err(self.failed(format!(
            "parsing the TCTI configuration {:?}",
            self.location.tcti()
        )))?;
        Context::new(tcti)
            .map_err(self.failed(format!("opening the TPM at {}", self.location.tcti())))
    }

    /// Runs `work` with exclusive use of the TPM (within this process).
    fn exclusive<T>(
        &self,
        work: impl FnOnce(&mut Context) -> Result<T, AttesterError>,
    ) -> Result<T, AttesterError> {
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut context = self.context()?;
        work(&mut context)
    }

    fn handle_exists(&self, context: &mut Context, handle: u32) -> Result<bool, AttesterError> {
        let (data, _) = context
            .get_capability(CapabilityType::Handles, handle, 1)
            .map_err(self.failed("listing TPM handles"))?;
        Ok(match data {
            CapabilityData::Handles(list) => list.iter().any(|h| u32::from(*h) == handle),
            _ => false,
        })
    }

    fn read_pcrs_with(&self, context: &mut Context) -> Result<Vec<[u8; 32]>, AttesterError> {
        let selection = pcr_selection().map_err(self.failed("selecting PCRs"))?;
        let data = pcr::read_all(context, selection).map_err(self.failed("reading PCRs"))?;
        let bank = data
            .pcr_bank(HashingAlgorithm::Sha256)
            .ok_or_else(|| self.platform_error("the TPM has no SHA-256 PCR bank".into()))?;
        (0..PCR_COUNT)
            .map(|i| {
                let slot = PcrSlot::try_from(1u32 << i).map_err(self.failed("selecting a PCR"))?;
                let digest = bank
                    .get_digest(slot)
                    .ok_or_else(|| self.platform_error(format!("PCR {i} was not returned")))?;
                <[u8; 32]>::try_from(digest.value()).map_err(|_| {
                    self.platform_error(format!("PCR {i} is {} bytes, not 32", digest.len()))
                })
            })
            .collect()
    }

    /// SHA-256 PCRs 0-23.
    pub(crate) fn read_pcrs(&self) -> Result<Vec<[u8; 32]>, AttesterError> {
        self.exclusive(|context| self.read_pcrs_with(context))
    }

    /// Extends SHA-256 PCR `index` with `digest`.
    pub(crate) fn extend_pcr(&self, index: usize, digest: &[u8; 32]) -> Result<(), AttesterError> {
        let handle = *PCR_HANDLES
            .get(index)
            .ok_or(AttesterError::InvalidRegister {
                tee: self.tee,
                index: index as u64,
                valid: "PCR 0-23",
            })?;
        self.exclusive(|context| {
            let mut values = DigestValues::new();
            values.set(
                HashingAlgorithm::Sha256,
                tss_esapi::structures::Digest::try_from(digest.to_vec())
                    .map_err(self.failed("preparing the PCR digest"))?,
            );
            context
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.pcr_extend(handle, values)
                })
                .map_err(|e| match e {
                    tss_esapi::Error::Tss2Error(code)
                        if code.kind() == Some(Tss2ResponseCodeKind::Locality) =>
                    {
                        self.platform_error(format!(
                            "PCR {index} cannot be extended from the operating system's \
                             locality (PCRs 17-22 belong to a dynamic launch); measure into \
                             another PCR, e.g. 23"
                        ))
                    }
                    other => self.failed(format!("extending PCR {index}"))(other),
                })
        })
    }

    /// Loads the AK; `true` when it is a transient key that must be flushed.
    fn load_ak(
        &self,
        context: &mut Context,
        ak: AkSource,
    ) -> Result<(KeyHandle, bool), AttesterError> {
        let (handle, may_create) = match ak {
            #[cfg(feature = "azure")]
            AkSource::Persistent(handle) => (handle, false),
            #[cfg(feature = "tpm-attester")]
            AkSource::PersistentOrCreated(handle) => (handle, true),
        };
        if self.handle_exists(context, handle)? {
            let tpm_handle = TpmHandle::try_from(handle)
                .map_err(self.failed(format!("using AK handle {handle:#x}")))?;
            let object = context
                .execute_without_session(|ctx| ctx.tr_from_tpm_public(tpm_handle))
                .map_err(self.failed(format!("loading the AK at {handle:#x}")))?;
            return Ok((object.into(), false));
        }
        if !may_create {
            return Err(self.platform_error(format!(
                "there is no attestation key at persistent handle {handle:#x}"
            )));
        }
        info!(
            handle = format!("{handle:#x}"),
            "no persistent AK: using a primary AK of the endorsement hierarchy"
        );
        let template = ak_template().map_err(self.failed("building the AK template"))?;
        let created = context
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
            })
            .map_err(self.failed("creating an attestation key"))?;
        Ok((created.key_handle, true))
    }

    fn quote_with(
        &self,
        context: &mut Context,
        key: KeyHandle,
        qualifying_data: &[u8],
    ) -> Result<QuoteParts, AttesterError> {
        let (public, _, _) = context
            .read_public(key)
            .map_err(self.failed("reading the AK public key"))?;
        let (ak_public_der, has_scheme) =
            rsa_public(&public).map_err(|m| self.platform_error(m))?;
        let scheme = if has_scheme {
            SignatureScheme::Null
        } else {
            SignatureScheme::RsaSsa {
                hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
            }
        };
        let data = Data::try_from(qualifying_data.to_vec())
            .map_err(self.failed("preparing the qualifying data"))?;
        let selection = pcr_selection().map_err(self.failed("selecting PCRs"))?;
        for attempt in 1..=QUOTE_ATTEMPTS {
            let (attest, signature) = context
                .execute_with_session(Some(AuthSession::Password), |ctx| {
                    ctx.quote(key, data.clone(), scheme, selection.clone())
                })
                .map_err(self.failed("quoting PCRs"))?;
            let AttestInfo::Quote { info } = attest.attested() else {
                return Err(self
                    .platform_error("the TPM returned an attestation that is not a quote".into()));
            };
            let Signature::RsaSsa(rsa_signature) = &signature else {
                return Err(self.platform_error("the quote is not signed with RSASSA".into()));
            };
            let pcrs = self.read_pcrs_with(context)?;
            let mut hasher = Sha256::new();
            for value in &pcrs {
                hasher.update(value);
            }
            if hasher.finalize()[..] != *info.pcr_digest().value() {
                debug!(
                    attempt,
                    "a PCR changed between the quote and the PCR read; quoting again"
                );
                continue;
            }
            return Ok(QuoteParts {
                message: attest
                    .marshall()
                    .map_err(self.failed("encoding the quote"))?,
                signature: signature
                    .marshall()
                    .map_err(self.failed("encoding the signature"))?,
                rsa_signature: rsa_signature.signature().value().to_vec(),
                pcrs,
                ak_public_der,
            });
        }
        Err(self.platform_error(format!(
            "PCRs kept changing during {QUOTE_ATTEMPTS} quotes; retry"
        )))
    }

    /// A quote over SHA-256 PCRs 0-23 with `qualifying_data` (at most 64 bytes).
    pub(crate) fn quote(
        &self,
        ak: AkSource,
        qualifying_data: &[u8],
    ) -> Result<QuoteParts, AttesterError> {
        self.exclusive(|context| {
            let (key, transient) = self.load_ak(context, ak)?;
            let quoted = self.quote_with(context, key, qualifying_data);
            if transient {
                context
                    .flush_context(key.into())
                    .map_err(self.failed("flushing the transient AK"))?;
            }
            quoted
        })
    }
}

#[cfg(feature = "azure")]
mod nv;
