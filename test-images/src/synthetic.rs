//! A large deterministic image for benchmarks.
//!
//! The content is neither all zeros (which any inflater decodes at memory speed) nor all
//! random (stored blocks, no inflating at all): 4 KiB blocks are, in turn, text-like
//! (words from a small vocabulary), structured binary (records with counters) and random,
//! which gzips to roughly 40% of its size, like the binaries and text of real images.

use crate::layout::{Compression, ConfigSpec, ImageSpec, LayerSpec};
use crate::tarball::Entry;

const BLOCK: usize = 4096;
const WORDS: &[&str] = &[
    "the",
    "container",
    "image",
    "layer",
    "registry",
    "confidential",
    "guest",
    "kernel",
    "attestation",
    "manifest",
    "digest",
    "config",
    "runtime",
    "mount",
    "overlay",
    "snapshot",
    "return",
    "struct",
    "impl",
    "fn",
    "let",
    "match",
    "error",
    "result",
    "value",
    "buffer",
    "stream",
    "async",
    "await",
    "tokio",
    "thread",
    "memory",
    "page",
    "cache",
    "file",
    "directory",
    "symlink",
    "hardlink",
    "whiteout",
    "opaque",
    "unpack",
    "decompress",
    "encrypt",
    "decrypt",
    "verify",
    "signature",
    "policy",
    "key",
    "secret",
    "resource",
];

/// Deterministic pseudo-random content (xorshift64*), reproducible from its seed and
/// independent of how the stream is cut into reads.
#[derive(Debug, Clone)]
pub struct ContentGenerator {
    state: u64,
    block: Vec<u8>,
    used: usize,
    counter: u64,
}

impl ContentGenerator {
    /// A generator; equal seeds give equal streams.
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            block: vec![0; BLOCK],
            used: BLOCK,
            counter: 0,
        }
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut pos = 0;
        while pos < buf.len() {
            if self.used == BLOCK {
                self.next_block();
            }
            let n = (BLOCK - self.used).min(buf.len() - pos);
            buf[pos..pos + n].copy_from_slice(&self.block[self.used..self.used + n]);
            self.used += n;
            pos += n;
        }
    }

    fn next_block(&mut self) {
        let mut block = std::mem::take(&mut self.block);
        match self.next_u64() % 8 {
            0..=3 => self.text(&mut block),
            4..=5 => self.records(&mut block),
            _ => self.random(&mut block),
        }
        self.block = block;
        self.used = 0;
    }

    fn text(&mut self, out: &mut [u8]) {
        let mut i = 0;
        while i < out.len() {
            let r = self.next_u64();
            let word = WORDS[(r % WORDS.len() as u64) as usize].as_bytes();
            let separator = if (r >> 32).is_multiple_of(12) {
                b'\n'
            } else {
                b' '
            };
            for &b in word.iter().chain(std::iter::once(&separator)) {
                if i == out.len() {
                    break;
                }
                out[i] = b;
                i += 1;
            }
        }
    }

    fn records(&mut self, out: &mut [u8]) {
        for record in out.chunks_mut(16) {
            self.counter += 1;
            let noise = self.next_u64() as u8;
            record[..8].copy_from_slice(&self.counter.to_le_bytes());
            record[8..12].copy_from_slice(&0x7f45_4c46u32.to_be_bytes());
            record[12] = noise;
            record[13..].fill(0);
        }
    }

    fn random(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
    }
}

/// An image of about `total_bytes` of file content spread over `layers` layers of
/// `compression`: per layer, a directory of large generated files (256 KiB to 4 MiB) and
/// a directory of small ones (1 to 16 KiB).
pub(crate) fn large_image(total_bytes: u64, layers: usize, compression: Compression) -> ImageSpec {
    let layers = layers.max(1);
    let per_layer = total_bytes / layers as u64;
    let mut rng = ContentGenerator::new(0x5EED);
    let mut specs = Vec::with_capacity(layers);
    for layer in 0..layers {
        let mut entries = vec![
            Entry::dir(&format!("data{layer}/")),
            Entry::dir(&format!("data{layer}/small/")),
        ];
        let mut used = 0u64;
        let small_budget = per_layer / 32;
        let mut index = 0u64;
        while used < small_budget {
            let size = 1024 + rng.next_u64() % (15 * 1024);
            entries.push(Entry::generated(
                &format!("data{layer}/small/f{index:05}"),
                size,
                (layer as u64) << 32 | index,
            ));
            used += size;
            index += 1;
        }
        while used < per_layer {
            let size = (256 * 1024 + rng.next_u64() % (3840 * 1024)).min(per_layer - used);
            entries.push(Entry::generated(
                &format!("data{layer}/blob{index:05}.bin"),
                size,
                (layer as u64) << 32 | index,
            ));
            used += size;
            index += 1;
        }
        specs.push(LayerSpec::new(compression, entries));
    }
    ImageSpec::new(specs).config(ConfigSpec {
        cmd: vec!["/bin/true".into()],
        ..ConfigSpec::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_independent_of_buffer_sizes() {
        let mut a = ContentGenerator::new(7);
        let mut whole = vec![0u8; 20_000];
        a.fill(&mut whole);
        let mut b = ContentGenerator::new(7);
        let mut pieces = vec![0u8; 20_000];
        for chunk in pieces.chunks_mut(333) {
            b.fill(chunk);
        }
        assert_eq!(whole, pieces);
        let mut c = ContentGenerator::new(8);
        let mut other = vec![0u8; 20_000];
        c.fill(&mut other);
        assert_ne!(whole, other);
    }

    #[test]
    fn content_compresses_like_real_images() {
        use std::io::Write;
        let mut g = ContentGenerator::new(1);
        let mut data = vec![0u8; 4 << 20];
        g.fill(&mut data);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&data).unwrap();
        let ratio = enc.finish().unwrap().len() as f64 / data.len() as f64;
        assert!((0.25..0.65).contains(&ratio), "compression ratio {ratio}");
    }

    #[test]
    fn large_image_has_the_requested_size_and_layer_count() {
        let image = large_image(64 << 20, 4, Compression::Gzip);
        assert_eq!(image.layers.len(), 4);
        let total: u64 = image
            .layers
            .iter()
            .flat_map(|l| l.entries().iter())
            .map(Entry::data_len)
            .sum();
        assert!(
            (64 << 20..(64 << 20) + (4 << 20)).contains(&total),
            "{total}"
        );
    }
}
