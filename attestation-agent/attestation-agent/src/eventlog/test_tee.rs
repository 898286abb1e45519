//! A test-only attester with in-memory registers, mapped like TDX (PCR → CC MR index).

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Mutex,
    },
};

use async_trait::async_trait;
use attester::{
    Attester, AttesterError, ExtendedRegister, HashAlgorithm, RegisterValue, RuntimeMeasurement,
    Tee,
};

use super::tcg2;

/// Registers by CC MR index, all zero at start.
#[derive(Debug)]
pub(crate) struct MemoryTee {
    pub algorithm: HashAlgorithm,
    pub registers: Mutex<BTreeMap<u64, Vec<u8>>>,
    /// Whether `read_register` answers.
    pub readable: AtomicBool,
    /// Whether `extend_runtime_measurement` fails (without extending).
    pub failing: AtomicBool,
    /// Extends done.
    pub extends: AtomicUsize,
    /// Digest length reported (a buggy attester), when set.
    pub bad_digest_len: Option<usize>,
    /// What `default_runtime_pcr` answers.
    pub default_pcr: u64,
}

impl MemoryTee {
    pub(crate) fn new(algorithm: HashAlgorithm, readable: bool) -> Self {
        Self {
            algorithm,
            registers: Mutex::new(BTreeMap::new()),
            readable: AtomicBool::new(readable),
            failing: AtomicBool::new(false),
            extends: AtomicUsize::new(0),
            bad_digest_len: None,
            default_pcr: attester::DEFAULT_RUNTIME_PCR,
        }
    }

    /// TDX's mapping: PCR 1,7 → 1; 2-6 → 2; 8-15 → 3; else 4.
    pub(crate) fn map(pcr: u64) -> u64 {
        match pcr {
            1 | 7 => 1,
            2..=6 => 2,
            8..=15 => 3,
            _ => 4,
        }
    }

    pub(crate) fn value(&self, index: u64) -> Vec<u8> {
        self.registers
            .lock()
            .unwrap()
            .get(&index)
            .cloned()
            .unwrap_or_else(|| vec![0; tcg2::digest_len(self.algorithm)])
    }

    /// Extends a register directly, as another process would.
    pub(crate) fn foreign_extend(&self, index: u64, digest: &[u8]) {
        let value = tcg2::extended_value(self.algorithm, &self.value(index), digest);
        self.registers.lock().unwrap().insert(index, value);
    }
}

#[async_trait]
impl Attester for MemoryTee {
    fn default_runtime_pcr(&self) -> u64 {
        self.default_pcr
    }

    fn tee(&self) -> Tee {
        Tee::Tdx
    }

    async fn get_evidence(&self, _: &[u8]) -> Result<serde_json::Value, AttesterError> {
        Ok(serde_json::json!({}))
    }

    async fn extend_runtime_measurement(
        &self,
        event: &[u8],
        pcr: u64,
    ) -> Result<RuntimeMeasurement, AttesterError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(AttesterError::InvalidEnvFlag {
                name: "TEST_EXTEND",
                value: "failing".into(),
            });
        }
        let index = Self::map(pcr);
        let mut digest = tcg2::digest(self.algorithm, event);
        self.foreign_extend(index, &digest);
        self.extends.fetch_add(1, Ordering::SeqCst);
        if let Some(len) = self.bad_digest_len {
            digest.resize(len, 0);
        }
        Ok(RuntimeMeasurement::Extended(ExtendedRegister {
            register_index: index,
            algorithm: self.algorithm,
            digest,
        }))
    }

    async fn read_register(&self, pcr: u64) -> Result<Option<RegisterValue>, AttesterError> {
        if !self.readable.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let index = Self::map(pcr);
        Ok(Some(RegisterValue {
            register_index: index,
            algorithm: self.algorithm,
            value: self.value(index),
        }))
    }
}

/// A [`MemoryTee`] that a test keeps a handle on after handing it to an agent.
#[derive(Debug, Clone)]
pub(crate) struct SharedTee(pub std::sync::Arc<MemoryTee>);

#[async_trait]
impl Attester for SharedTee {
    fn tee(&self) -> Tee {
        self.0.tee()
    }

    fn default_runtime_pcr(&self) -> u64 {
        self.0.default_runtime_pcr()
    }

    async fn get_evidence(&self, data: &[u8]) -> Result<serde_json::Value, AttesterError> {
        self.0.get_evidence(data).await
    }

    async fn extend_runtime_measurement(
        &self,
        event: &[u8],
        pcr: u64,
    ) -> Result<RuntimeMeasurement, AttesterError> {
        self.0.extend_runtime_measurement(event, pcr).await
    }

    async fn read_register(&self, pcr: u64) -> Result<Option<RegisterValue>, AttesterError> {
        self.0.read_register(pcr).await
    }
}
