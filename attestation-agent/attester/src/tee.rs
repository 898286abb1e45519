//! TEE names as they appear on the wire (`GetTeeType`, the KBS `tee` field, the keys of
//! additional evidence). The strings are those of `kbs_types::Tee` 0.18.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A trusted execution environment, primary (the VM itself) or additional (a device).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Tee {
    /// Azure confidential VM on SEV-SNP, attested through its vTPM.
    #[serde(rename = "az-snp-vtpm")]
    AzSnpVtpm,
    /// Azure confidential VM on TDX, attested through its vTPM.
    #[serde(rename = "az-tdx-vtpm")]
    AzTdxVtpm,
    /// NVIDIA GPU (device).
    #[serde(rename = "nvidia")]
    Nvidia,
    /// Intel SGX enclave (Occlum, Gramine).
    #[serde(rename = "sgx")]
    Sgx,
    /// AMD SEV-SNP.
    #[serde(rename = "snp")]
    Snp,
    /// Intel TDX.
    #[serde(rename = "tdx")]
    Tdx,
    /// Arm CCA realm.
    #[serde(rename = "cca")]
    Cca,
    /// Hygon CSV.
    #[serde(rename = "csv")]
    Csv,
    /// IBM Secure Execution (s390x).
    #[serde(rename = "se")]
    Se,
    /// Hygon DCU (device).
    #[serde(rename = "hygondcu")]
    HygonDcu,
    /// NVIDIA BlueField DPU (device).
    #[serde(rename = "nvidia-dpu", alias = "nvidiadpu")]
    NvidiaDpu,
    /// A TPM 2.0.
    #[serde(rename = "tpm")]
    Tpm,
    /// The sample attester: no hardware, for tests and demos only.
    #[serde(rename = "sample")]
    Sample,
    /// The sample device attester: no hardware, for tests and demos only.
    #[serde(rename = "sampledevice")]
    SampleDevice,
}

impl Tee {
    /// Every TEE, in declaration order.
    pub(crate) const ALL: [Tee; 14] = [
        Tee::AzSnpVtpm,
        Tee::AzTdxVtpm,
        Tee::Nvidia,
        Tee::Sgx,
        Tee::Snp,
        Tee::Tdx,
        Tee::Cca,
        Tee::Csv,
        Tee::Se,
        Tee::HygonDcu,
        Tee::NvidiaDpu,
        Tee::Tpm,
        Tee::Sample,
        Tee::SampleDevice,
    ];

    /// The wire name, e.g. `az-snp-vtpm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tee::AzSnpVtpm => "az-snp-vtpm",
            Tee::AzTdxVtpm => "az-tdx-vtpm",
            Tee::Nvidia => "nvidia",
            Tee::Sgx => "sgx",
            Tee::Snp => "snp",
            Tee::Tdx => "tdx",
            Tee::Cca => "cca",
            Tee::Csv => "csv",
            Tee::Se => "se",
            Tee::HygonDcu => "hygondcu",
            Tee::NvidiaDpu => "nvidia-dpu",
            Tee::Tpm => "tpm",
            Tee::Sample => "sample",
            Tee::SampleDevice => "sampledevice",
        }
    }
}

impl fmt::Display for Tee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A TEE name that is not one of the kbs-types 0.18 names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown TEE `{0}`; expected one of az-snp-vtpm, az-tdx-vtpm, nvidia, sgx, snp, tdx, cca, csv, se, hygondcu, nvidia-dpu, tpm, sample, sampledevice")]
pub struct UnknownTee(pub String);

impl FromStr for Tee {
    type Err = UnknownTee;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // kbs-types accepts `nvidiadpu` as an alias when deserializing; so do we.
        if s == "nvidiadpu" {
            return Ok(Tee::NvidiaDpu);
        }
        Tee::ALL
            .into_iter()
            .find(|tee| tee.as_str() == s)
            .ok_or_else(|| UnknownTee(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED: [(Tee, &str); 14] = [
        (Tee::AzSnpVtpm, "az-snp-vtpm"),
        (Tee::AzTdxVtpm, "az-tdx-vtpm"),
        (Tee::Nvidia, "nvidia"),
        (Tee::Sgx, "sgx"),
        (Tee::Snp, "snp"),
        (Tee::Tdx, "tdx"),
        (Tee::Cca, "cca"),
        (Tee::Csv, "csv"),
        (Tee::Se, "se"),
        (Tee::HygonDcu, "hygondcu"),
        (Tee::NvidiaDpu, "nvidia-dpu"),
        (Tee::Tpm, "tpm"),
        (Tee::Sample, "sample"),
        (Tee::SampleDevice, "sampledevice"),
    ];

    #[test]
    fn wire_names_are_pinned() {
        assert_eq!(Tee::ALL.len(), PINNED.len());
        for (tee, name) in PINNED {
            assert_eq!(tee.to_string(), name);
            assert_eq!(name.parse::<Tee>().unwrap(), tee);
            assert_eq!(serde_json::to_string(&tee).unwrap(), format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<Tee>(&format!("\"{name}\"")).unwrap(),
                tee
            );
        }
    }

    #[test]
    fn nvidia_dpu_alias() {
        assert_eq!("nvidiadpu".parse::<Tee>().unwrap(), Tee::NvidiaDpu);
        assert_eq!(
            serde_json::from_str::<Tee>("\"nvidiadpu\"").unwrap(),
            Tee::NvidiaDpu
        );
    }

    #[test]
    fn unknown_names_are_refused() {
        for bad in [
            "",
            "TDX",
            "Tdx",
            " tdx",
            "tdx ",
            "sample-device",
            "azsnpvtpm",
            "tdx\0",
        ] {
            assert_eq!(
                bad.parse::<Tee>(),
                Err(UnknownTee(bad.to_string())),
                "{bad:?}"
            );
        }
        assert!(serde_json::from_str::<Tee>("\"TDX\"").is_err());
        assert!(serde_json::from_str::<Tee>("3").is_err());
    }
}
