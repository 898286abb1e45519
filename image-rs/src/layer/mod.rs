//! The per-layer pipeline, one stream with bounded buffers:
//!
//! ```text
//! registry ──(async task: HTTP chunks, 1 MiB budget)──► decoding thread:
//!     compressed digest + size ─► [decrypt, HMAC at EOF] ─► gunzip/zstd/none
//!     ─► diff_id hash + size limit ──(4 × 256 KiB buffers)──► unpacking thread:
//!     tar unpack into the staging directory
//! ```
//!
//! The decoding thread only sees the end of the blob after its size and digest were
//! checked, and the decrypting reader only reports the end after the HMAC matched; the
//! decoder then compares the diff_id, and only then does the unpacking thread see the end
//! of its stream. The caller renames the staging directory into the store after that; on
//! any failure the unpacking thread removes it. When something fails, the rest of a small
//! blob is still hashed so that a corrupt download is reported as such rather than as the
//! decompression or tar error it caused. Two threads per layer let one layer use two
//! cores (inflating and hashing on one, file writes on the other).

mod format;
pub(crate) mod unpack;

use std::io::{self, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::decrypt::DecryptError;
use crate::registry::{BlobStream, RegistryError};
use crate::store::StagingDir;
pub(crate) use format::{layer_format, Compression, LayerFormat};
use oci_model::{Digest, Hasher};
pub use unpack::{unpack, UnpackError, UnpackLimits, UnpackOptions, UnpackStats, RATIO_FREE_BYTES};

/// Bytes of a layer buffered between the download and the unpacking thread, whatever
/// the sizes of the chunks the HTTP stack hands out (up to ~400 KiB each).
const BUFFER_BUDGET: usize = 1 << 20;
/// The budget is counted in units of this many bytes.
const BUDGET_UNIT: usize = 1024;
/// Messages in flight (the byte budget is what bounds memory).
const CHANNEL_MESSAGES: usize = 256;
/// Decoded buffers between the decoding and the unpacking thread of a layer.
const PIPE_BUFFERS: usize = 4;
/// Size of each decoded buffer.
const PIPE_BUFFER_BYTES: usize = 256 * 1024;
/// After a failed unpack, how much of the blob may still be read to learn whether the
/// download itself was corrupt.
const VERDICT_DRAIN_LIMIT: u64 = 16 << 20;

/// Why a layer could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// the media type is not a layer type
    #[error("layer {digest}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// the layer digest
        digest: Digest,
        /// its media type
        media_type: String,
    },
    /// the blob does not have its descriptor's digest
    #[error("layer blob digest mismatch: expected {expected}, got {actual} (corrupt or substituted download)")]
    DigestMismatch {
        /// descriptor digest
        expected: Digest,
        /// digest of the bytes received
        actual: Digest,
    },
    /// the blob does not have its descriptor's size
    #[error("layer {digest}: descriptor says {expected} bytes, registry sent {actual}")]
    SizeMismatch {
        /// the layer digest
        digest: Digest,
        /// descriptor size
        expected: u64,
        /// bytes received (at least)
        actual: u64,
    },
    /// the download failed
    #[error("downloading layer {digest}: {source}")]
    Download {
        /// the layer digest
        digest: Digest,
        /// the registry error
        #[source]
        source: RegistryError,
    },
    /// the compressed stream is corrupt or truncated
    #[error("layer {digest}: corrupt {format} stream: {message}")]
    Decompress {
        /// the layer digest
        digest: Digest,
        /// gzip or zstd
        format: &'static str,
        /// the decoder's message
        message: String,
    },
    /// decryption failed
    #[error(transparent)]
    Decrypt(#[from] DecryptError),
    /// the blob inflates more than `max_compression_ratio` allows (a decompression bomb)
    #[error("layer {digest}: {uncompressed} bytes inflated from {compressed}, more than the {ratio}:1 compression ratio allowed (unpack_limits.max_compression_ratio): refused as a decompression bomb")]
    CompressionRatio {
        /// the layer digest
        digest: Digest,
        /// the limit
        ratio: u64,
        /// blob bytes read when refused
        compressed: u64,
        /// uncompressed bytes produced when refused
        uncompressed: u64,
    },
    /// the uncompressed tar does not have the config's diff_id
    #[error(
        "layer {digest}: diff_id mismatch: the image config says {expected}, the layer is {actual}"
    )]
    DiffIdMismatch {
        /// the layer digest
        digest: Digest,
        /// diff_id from the image config
        expected: Digest,
        /// digest of the uncompressed tar
        actual: Digest,
    },
    /// the tar content was refused or could not be written
    #[error("layer {digest}: {source}")]
    Unpack {
        /// the layer digest
        digest: Digest,
        /// the unpack error
        #[source]
        source: UnpackError,
    },
    /// the pull gave up on this layer because another one failed
    #[error("layer {digest}: cancelled because another layer of the image failed")]
    Cancelled {
        /// the layer digest
        digest: Digest,
    },
    /// a worker task failed unexpectedly
    #[error("layer {digest}: internal task failure: {message}")]
    Task {
        /// the layer digest
        digest: Digest,
        /// what happened
        message: String,
    },
}

impl LayerError {
    /// Ranks concurrent failures: a corrupt download explains everything after it.
    fn rank(&self) -> u8 {
        match self {
            LayerError::DigestMismatch { .. } | LayerError::SizeMismatch { .. } => 5,
            LayerError::Download { .. } => 4,
            LayerError::Decrypt(_) => 3,
            // An integrity failure explains content errors in the same stream.
            LayerError::Decompress { .. }
            | LayerError::DiffIdMismatch { .. }
            | LayerError::CompressionRatio { .. } => 2,
            LayerError::Unpack { .. } => 1,
            LayerError::UnsupportedMediaType { .. }
            | LayerError::Task { .. }
            | LayerError::Cancelled { .. } => 0,
        }
    }
}

/// The most telling failure seen by any stage.
#[derive(Debug, Default)]
struct Failure(Mutex<Option<LayerError>>);

impl Failure {
    fn record(&self, error: LayerError) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_none_or(|old| error.rank() > old.rank()) {
            *slot = Some(error);
        }
    }

    fn take(&self) -> Option<LayerError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

enum Chunk {
    /// bytes, and the budget units they hold
    Data(Bytes, u32),
    /// all bytes sent; the reader checks size and digest
    Done,
    /// the download failed; its error comes from the task
    Failed,
}

/// The blocking end of the channel: hashes and counts the blob, and returns end of
/// stream only when it has the descriptor's size and digest.
struct ChannelReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
    hasher: Option<Hasher>,
    expected: Digest,
    expected_size: u64,
    received: u64,
    /// `received`, for the compression ratio check of the decoding side
    consumed: Arc<AtomicU64>,
    verdict: Option<bool>,
    failure: Arc<Failure>,
    budget: Arc<tokio::sync::Semaphore>,
}

impl ChannelReader {
    fn fail(&mut self, error: Option<LayerError>) -> io::Error {
        self.verdict = Some(false);
        if let Some(error) = error {
            self.failure.record(error);
        }
        io::Error::other("the layer download failed")
    }

    fn receive(&mut self) -> io::Result<bool> {
        match self.rx.blocking_recv() {
            Some(Chunk::Data(bytes, units)) => {
                // The bytes are now ours: the downloader may fetch as many again.
                self.budget.add_permits(units as usize);
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&bytes);
                }
                self.received += bytes.len() as u64;
                self.consumed.store(self.received, Ordering::Relaxed);
                self.current = bytes;
                Ok(true)
            }
            Some(Chunk::Done) => {
                if self.received != self.expected_size {
                    let error = LayerError::SizeMismatch {
                        digest: self.expected.clone(),
                        expected: self.expected_size,
                        actual: self.received,
                    };
                    return Err(self.fail(Some(error)));
                }
                let actual = self
                    .hasher
                    .take()
                    .map(Hasher::finish)
                    .unwrap_or_else(|| self.expected.clone());
                if actual != self.expected {
                    let error = LayerError::DigestMismatch {
                        expected: self.expected.clone(),
                        actual,
                    };
                    return Err(self.fail(Some(error)));
                }
                self.verdict = Some(true);
                Ok(false)
            }
            Some(Chunk::Failed) | None => Err(self.fail(None)),
        }
    }

    /// After a failed unpack: reads the rest of a small blob so that a corrupt download
    /// is recorded as such.
    fn drain_for_verdict(&mut self) {
        if self.verdict.is_some()
            || self.expected_size.saturating_sub(self.received) > VERDICT_DRAIN_LIMIT
        {
            return;
        }
        self.current = Bytes::new();
        while let Ok(true) = self.receive() {
            self.current = Bytes::new();
        }
    }

    /// Confirms that the blob was read to its verified end.
    fn finish(&mut self) -> io::Result<()> {
        let mut probe = [0u8; 1];
        match self.read(&mut probe)? {
            0 => Ok(()),
            _ => Err(io::Error::other(
                "data after the end of the compressed stream",
            )),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current[..n]);
                self.current = self.current.slice(n..);
                return Ok(n);
            }
            match self.verdict {
                Some(true) => return Ok(0),
                Some(false) => return Err(io::Error::other("the layer download failed")),
                None => {}
            }
            if !self.receive()? {
                return Ok(0);
            }
        }
    }
}

/// The channel reader, shared so that it can still be drained after the stages above it
/// failed (the decrypting reader does not hand its inner reader back).
#[derive(Clone)]
struct SharedChannel(Arc<Mutex<ChannelReader>>);

impl SharedChannel {
    fn lock(&self) -> std::sync::MutexGuard<'_, ChannelReader> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Read for SharedChannel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.lock().read(buf)
    }
}

/// The blob, decrypted if it is encrypted.
enum Source {
    Plain(SharedChannel),
    #[cfg(feature = "encryption")]
    Encrypted {
        reader: Box<ocicrypt_rs::DecryptingReader<SharedChannel>>,
        digest: String,
        failure: Arc<Failure>,
    },
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(r) => r.read(buf),
            #[cfg(feature = "encryption")]
            Source::Encrypted {
                reader,
                digest,
                failure,
            } => reader.read(buf).inspect_err(|e| {
                if let Some(verdict) = crate::decrypt::authentication_failure(e, digest) {
                    failure.record(LayerError::Decrypt(verdict));
                }
            }),
        }
    }
}

impl Source {
    /// Reads to the verified end: the channel's digest check and, for an encrypted
    /// layer, the HMAC.
    fn finish(self, failure: &Failure) -> io::Result<()> {
        #[cfg(not(feature = "encryption"))]
        let _ = failure;
        match self {
            Source::Plain(r) => r.lock().finish(),
            #[cfg(feature = "encryption")]
            Source::Encrypted { reader, digest, .. } => match (*reader).finish() {
                Ok(_) => Ok(()),
                Err(e) => {
                    failure.record(LayerError::Decrypt(DecryptError::Authentication {
                        digest,
                        message: e.to_string(),
                    }));
                    Err(io::Error::other("layer authentication failed"))
                }
            },
        }
    }
}

/// The decompressing stage.
enum Decoder {
    None(Source),
    Gzip(Box<flate2::read::MultiGzDecoder<Source>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<Source>>>),
}

impl Decoder {
    fn new(compression: Compression, source: Source) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Decoder::None(source),
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::read::MultiGzDecoder::new(source))),
            Compression::Zstd => Decoder::Zstd(Box::new(zstd::stream::read::Decoder::new(source)?)),
        })
    }

    fn into_source(self) -> Source {
        match self {
            Decoder::None(s) => s,
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => d.finish().into_inner(),
        }
    }
}

/// Decoded stream with the diff_id hash and the layer size limit.
struct DiffIdReader {
    decoder: Decoder,
    compression: Compression,
    hasher: Hasher,
    bytes: u64,
    limits: SizeLimits,
    digest: Digest,
    failure: Arc<Failure>,
}

/// The bounds on a layer's uncompressed stream.
struct SizeLimits {
    /// `max_layer_bytes`
    max_bytes: u64,
    /// `max_compression_ratio` (0: none)
    ratio: u64,
    /// blob bytes handed to the decoder so far
    consumed: Arc<AtomicU64>,
}

impl Read for DiffIdReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match &mut self.decoder {
            Decoder::None(s) => s.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
        .inspect_err(|e| {
            if self.compression != Compression::None {
                self.failure.record(LayerError::Decompress {
                    digest: self.digest.clone(),
                    format: self.compression.name(),
                    message: e.to_string(),
                });
            }
        })?;
        self.bytes += n as u64;
        if self.bytes > self.limits.max_bytes {
            self.failure.record(LayerError::Unpack {
                digest: self.digest.clone(),
                source: UnpackError::LayerTooLarge {
                    limit: self.limits.max_bytes,
                },
            });
            return Err(io::Error::other("layer size limit exceeded"));
        }
        if self.limits.ratio > 0 && self.bytes > RATIO_FREE_BYTES {
            let compressed = self.limits.consumed.load(Ordering::Relaxed);
            let allowed = compressed
                .saturating_mul(self.limits.ratio)
                .saturating_add(RATIO_FREE_BYTES);
            if self.bytes > allowed {
                self.failure.record(LayerError::CompressionRatio {
                    digest: self.digest.clone(),
                    ratio: self.limits.ratio,
                    compressed,
                    uncompressed: self.bytes,
                });
                return Err(io::Error::other("compression ratio limit exceeded"));
            }
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Tells the layers of a pull to stop (their downloads end, their threads clean up).
#[derive(Debug, Clone)]
pub(crate) struct CancelSignal(tokio::sync::watch::Receiver<bool>);

impl CancelSignal {
    /// A signal and the sender that raises it.
    pub(crate) fn new() -> (tokio::sync::watch::Sender<bool>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Self(rx))
    }

    /// Whether it was raised.
    pub(crate) fn is_raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when raised (never, if the sender is gone without raising it).
    pub(crate) async fn raised(&mut self) {
        while !*self.0.borrow_and_update() {
            if self.0.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What to fetch.
#[derive(Debug, Clone)]
pub(crate) struct LayerJob {
    /// the descriptor from the manifest
    pub descriptor: oci_model::Descriptor,
    /// the diff_id from the image config
    pub diff_id: Digest,
    /// unpack options
    pub options: UnpackOptions,
}

/// Cipher options of an encrypted layer, unwrapped before the download starts.
#[cfg(feature = "encryption")]
pub(crate) type CipherOptions = ocicrypt_rs::LayerBlockCipherOptions;
/// Cipher options of an encrypted layer (none in a build without encryption).
#[cfg(not(feature = "encryption"))]
pub(crate) type CipherOptions = std::convert::Infallible;

/// Unwraps the key of an encrypted layer (before any byte is downloaded).
pub(crate) async fn prepare_decryption(
    job: &LayerJob,
    unwrapper: Option<&dyn crate::decrypt::KeyUnwrap>,
) -> Result<Option<CipherOptions>, LayerError> {
    let media_type = &job.descriptor.media_type;
    let format = layer_format(media_type).ok_or_else(|| LayerError::UnsupportedMediaType {
        digest: job.descriptor.digest.clone(),
        media_type: media_type.clone(),
    })?;
    if !format.encrypted {
        return Ok(None);
    }
    let digest = job.descriptor.digest.to_string();
    #[cfg(feature = "encryption")]
    {
        let unwrapper = unwrapper.ok_or(DecryptError::NoKeyUnwrap {
            digest: digest.clone(),
        })?;
        let annotations: &std::collections::BTreeMap<String, String> = &job.descriptor.annotations;
        Ok(Some(
            crate::decrypt::layer_cipher_options(unwrapper, annotations, &digest).await?,
        ))
    }
    #[cfg(not(feature = "encryption"))]
    {
        let _ = unwrapper;
        Err(DecryptError::NotCompiled { digest }.into())
    }
}

/// Streams the blob into `staging` (an empty directory), verifying as described in the
/// module documentation. `blob` is the opened download. The staging directory belongs to
/// the unpacking thread, which removes it on failure once nothing writes into it any
/// more (also when this future is dropped); on success it is handed back for the commit.
pub(crate) async fn fetch_into(
    job: LayerJob,
    blob: BlobStream,
    cipher: Option<CipherOptions>,
    staging: StagingDir,
    mut cancel: CancelSignal,
) -> Result<(UnpackStats, StagingDir), LayerError> {
    let digest = job.descriptor.digest.clone();
    let format = layer_format(&job.descriptor.media_type).ok_or_else(|| {
        LayerError::UnsupportedMediaType {
            digest: digest.clone(),
            media_type: job.descriptor.media_type.clone(),
        }
    })?;
    let failure = Arc::new(Failure::default());
    let (tx, rx) = mpsc::channel(CHANNEL_MESSAGES);
    let budget = Arc::new(tokio::sync::Semaphore::new(BUFFER_BUDGET / BUDGET_UNIT));
    let download_digest = digest.clone();
    let size = job.descriptor.size;
    let download_budget = budget.clone();
    let mut download = AbortOnDrop(tokio::spawn(async move {
        tokio::select! {
            result = download(blob, tx, download_budget, size, download_digest.clone()) => result,
            // Dropping the download closes the channel: the threads stop and clean up.
            () = cancel.raised() => Err(LayerError::Cancelled { digest: download_digest }),
        }
    }));

    let consumed = Arc::new(AtomicU64::new(0));
    let reader = ChannelReader {
        rx,
        current: Bytes::new(),
        hasher: Some(Hasher::new(digest.algorithm())),
        expected: digest.clone(),
        expected_size: job.descriptor.size,
        received: 0,
        consumed: consumed.clone(),
        verdict: None,
        failure: failure.clone(),
        budget,
    };
    // Two threads per layer: decoding (decrypt, inflate, hash) and unpacking (tar,
    // file writes), joined by a small pool of buffers, so that one layer can use two
    // cores and a slow filesystem does not stall the inflater.
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Piece>(PIPE_BUFFERS);
    let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(PIPE_BUFFERS);
    for _ in 0..PIPE_BUFFERS {
        let _ = empty_tx.send(Vec::with_capacity(PIPE_BUFFER_BYTES));
    }
    let decode = {
        let failure = failure.clone();
        let digest = digest.clone();
        let diff_id = job.diff_id.clone();
        let limits = SizeLimits {
            max_bytes: job.options.limits.max_layer_bytes,
            ratio: job.options.limits.max_compression_ratio,
            consumed,
        };
        tokio::task::spawn_blocking(move || {
            decode_blocking(
                format, reader, cipher, diff_id, limits, failure, digest, full_tx, empty_rx,
            )
        })
    };
    let unpack_stage = {
        let digest = digest.clone();
        let options = job.options;
        tokio::task::spawn_blocking(move || {
            let pipe = PipeReader {
                rx: full_rx,
                empty: empty_tx,
                current: Vec::new(),
                position: 0,
                done: false,
            };
            match unpack_blocking(pipe, staging.path(), &options) {
                Ok(stats) => Ok((stats, staging)),
                // `staging` is dropped (removed) here, after the last write.
                Err(source) => Err(LayerError::Unpack { digest, source }),
            }
        })
    };
    let task_error = |e: tokio::task::JoinError| LayerError::Task {
        digest: digest.clone(),
        message: e.to_string(),
    };
    let unpacked = unpack_stage.await.map_err(task_error)?;
    decode.await.map_err(task_error)?;
    let downloaded = (&mut download.0).await.map_err(|e| LayerError::Task {
        digest: digest.clone(),
        message: e.to_string(),
    })?;
    if let Err(e) = downloaded {
        failure.record(e);
    }
    match (unpacked, failure.take()) {
        (Ok(done), None) => Ok(done),
        (Ok(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e),
        (Err(e), Some(recorded)) => Err(if recorded.rank() >= e.rank() {
            recorded
        } else {
            e
        }),
    }
}

/// Aborts the download when the fetch is cancelled (a sibling layer failed, the pull was
/// dropped): the unpacking thread then sees the channel close and stops.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn download(
    mut blob: BlobStream,
    tx: mpsc::Sender<Chunk>,
    budget: Arc<tokio::sync::Semaphore>,
    size: u64,
    digest: Digest,
) -> Result<(), LayerError> {
    let mut received = 0u64;
    loop {
        match blob.next_chunk().await {
            Ok(Some(chunk)) => {
                received += chunk.len() as u64;
                if received > size {
                    let _ = tx.send(Chunk::Failed).await;
                    return Err(LayerError::SizeMismatch {
                        digest,
                        expected: size,
                        actual: received,
                    });
                }
                // Wait until the unpacking side has taken earlier bytes off the budget; a
                // chunk larger than the whole budget waits for all of it.
                let units = chunk
                    .len()
                    .div_ceil(BUDGET_UNIT)
                    .clamp(1, BUFFER_BUDGET / BUDGET_UNIT) as u32;
                match budget.acquire_many(units).await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return Ok(()),
                }
                if tx.send(Chunk::Data(chunk, units)).await.is_err() {
                    // The unpacking side stopped; its error tells why.
                    return Ok(());
                }
            }
            Ok(None) => {
                let _ = tx.send(Chunk::Done).await;
                return Ok(());
            }
            Err(source) => {
                let _ = tx.send(Chunk::Failed).await;
                return Err(LayerError::Download { digest, source });
            }
        }
    }
}

/// A filled buffer, or the decoder's verdict at the end.
enum Piece {
    Data(Vec<u8>),
    /// the stream ended and every check passed
    End,
    /// the decoder failed (the reason is recorded in the failure slot)
    Failed,
}

/// The unpacking thread's view of the decoded stream: end of stream only once the decoder
/// has verified everything.
struct PipeReader {
    rx: std::sync::mpsc::Receiver<Piece>,
    empty: std::sync::mpsc::SyncSender<Vec<u8>>,
    current: Vec<u8>,
    position: usize,
    done: bool,
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.position < self.current.len() {
                let n = buf.len().min(self.current.len() - self.position);
                buf[..n].copy_from_slice(&self.current[self.position..self.position + n]);
                self.position += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            let used = std::mem::take(&mut self.current);
            if used.capacity() > 0 {
                // Back to the decoder; it may already be gone.
                let _ = self.empty.try_send(used);
            }
            self.position = 0;
            match self.rx.recv() {
                Ok(Piece::Data(data)) => self.current = data,
                Ok(Piece::End) => self.done = true,
                Ok(Piece::Failed) | Err(_) => {
                    return Err(io::Error::other("the layer stream failed verification"))
                }
            }
        }
    }
}

/// Decoding thread: decrypts, decompresses and hashes the blob into pooled buffers; at
/// the end checks the digest (channel), the HMAC (decrypting reader), the decompressor's
/// trailer and the diff_id before sending `End`.
#[allow(clippy::too_many_arguments)]
fn decode_blocking(
    format: LayerFormat,
    reader: ChannelReader,
    cipher: Option<CipherOptions>,
    diff_id: Digest,
    limits: SizeLimits,
    failure: Arc<Failure>,
    digest: Digest,
    out: std::sync::mpsc::SyncSender<Piece>,
    empty: std::sync::mpsc::Receiver<Vec<u8>>,
) {
    let channel = SharedChannel(Arc::new(Mutex::new(reader)));
    let outcome = decode_stream(
        format, &channel, cipher, &diff_id, limits, &failure, &digest, &out, &empty,
    );
    match outcome {
        Ok(true) => {
            let _ = out.send(Piece::End);
        }
        Ok(false) | Err(()) => {
            let _ = out.send(Piece::Failed);
            // Learn whether the download itself was corrupt: that explains a failure best.
            channel.lock().drain_for_verdict();
        }
    }
}

/// `Ok(true)`: all verified; `Ok(false)`: the unpacking side stopped first; `Err`: a
/// check failed (recorded in `failure`).
#[allow(clippy::too_many_arguments)]
fn decode_stream(
    format: LayerFormat,
    channel: &SharedChannel,
    cipher: Option<CipherOptions>,
    diff_id: &Digest,
    limits: SizeLimits,
    failure: &Arc<Failure>,
    digest: &Digest,
    out: &std::sync::mpsc::SyncSender<Piece>,
    empty: &std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<bool, ()> {
    let source = match cipher {
        None => Source::Plain(channel.clone()),
        #[cfg(feature = "encryption")]
        Some(options) => {
            let name = digest.to_string();
            match crate::decrypt::decrypting_reader(channel.clone(), &options, &name) {
                Ok(reader) => Source::Encrypted {
                    reader: Box::new(reader),
                    digest: name,
                    failure: failure.clone(),
                },
                Err(e) => {
                    failure.record(LayerError::Decrypt(e));
                    return Err(());
                }
            }
        }
        #[cfg(not(feature = "encryption"))]
        Some(never) => match never {},
    };
    let decoder = Decoder::new(format.compression, source).map_err(|e| {
        failure.record(LayerError::Decompress {
            digest: digest.clone(),
            format: format.compression.name(),
            message: e.to_string(),
        })
    })?;
    let mut stream = DiffIdReader {
        decoder,
        compression: format.compression,
        hasher: Hasher::new(diff_id.algorithm()),
        bytes: 0,
        limits,
        digest: digest.clone(),
        failure: failure.clone(),
    };
    loop {
        let Ok(mut buf) = empty.recv() else {
            return Ok(false);
        };
        buf.resize(PIPE_BUFFER_BYTES, 0);
        let mut filled = 0;
        while filled < buf.len() {
            match stream.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Failures of the stages record their own typed error; anything else
                    // is a read error of the stream.
                    failure.record(LayerError::Unpack {
                        digest: digest.clone(),
                        source: UnpackError::Read(e),
                    });
                    return Err(());
                }
            }
        }
        let at_end = filled < buf.len();
        buf.truncate(filled);
        if !buf.is_empty() && out.send(Piece::Data(buf)).is_err() {
            return Ok(false);
        }
        if at_end {
            break;
        }
    }
    let DiffIdReader {
        decoder, hasher, ..
    } = stream;
    if decoder.into_source().finish(failure).is_err() {
        failure.record(LayerError::Unpack {
            digest: digest.clone(),
            source: UnpackError::Read(io::Error::other("data after the end of the layer stream")),
        });
        return Err(());
    }
    let actual = hasher.finish();
    if &actual != diff_id {
        failure.record(LayerError::DiffIdMismatch {
            digest: digest.clone(),
            expected: diff_id.clone(),
            actual,
        });
        return Err(());
    }
    Ok(true)
}

/// Unpacking thread: the tar into the staging directory, then the rest of the stream
/// (padding after the end marker), whose end means the decoder verified everything.
fn unpack_blocking(
    mut pipe: PipeReader,
    staging: &std::path::Path,
    options: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let stats = unpack(&mut pipe, staging, options)?;
    io::copy(&mut pipe, &mut io::sink()).map_err(UnpackError::Read)?;
    Ok(stats)
}
