//! tokio `AsyncRead` versions of the layer cipher readers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::{DecryptState, EncryptState, LayerBlockCipherOptions, VerifiedLayer};
use crate::error::{Error, Result};

pin_project_lite::pin_project! {
    /// Async twin of [`super::EncryptingReader`].
    pub struct AsyncEncryptingReader<R> {
        #[pin]
        inner: R,
        state: EncryptState,
    }
}

impl<R> std::fmt::Debug for AsyncEncryptingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncEncryptingReader")
            .field("size", &self.state.size)
            .finish_non_exhaustive()
    }
}

impl<R: AsyncRead> AsyncEncryptingReader<R> {
    /// See [`super::EncryptingReader::new`].
    pub fn new(inner: R, expected_digest: Option<&str>) -> Result<Self> {
        Ok(AsyncEncryptingReader {
            inner,
            state: EncryptState::new(expected_digest)?,
        })
    }

    /// See [`super::EncryptingReader::finish`].
    pub fn finish(self) -> Result<LayerBlockCipherOptions> {
        self.state.finish()
    }
}

impl<R: AsyncRead> AsyncRead for AsyncEncryptingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.state.outcome.is_some() {
            return Poll::Ready(this.state.at_eof());
        }
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled_mut();
                if filled.len() == before {
                    return Poll::Ready(this.state.at_eof());
                }
                this.state.process(&mut filled[before..]);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

pin_project_lite::pin_project! {
    /// Async twin of [`super::DecryptingReader`]: the read that reaches end of stream
    /// fails if the layer does not verify.
    pub struct AsyncDecryptingReader<R> {
        #[pin]
        inner: R,
        state: DecryptState,
    }
}

impl<R> std::fmt::Debug for AsyncDecryptingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncDecryptingReader")
            .field("size", &self.state.size)
            .field("verdict", &self.state.verdict)
            .finish_non_exhaustive()
    }
}

impl<R: AsyncRead> AsyncDecryptingReader<R> {
    /// See [`super::DecryptingReader::new`].
    pub fn new(inner: R, opts: &LayerBlockCipherOptions) -> Result<Self> {
        Ok(AsyncDecryptingReader {
            inner,
            state: DecryptState::new(opts)?,
        })
    }

    /// See [`super::DecryptingReader::verify_digest`].
    pub fn verify_digest(mut self) -> Self {
        self.state.verify_digest();
        self
    }

    /// See [`super::DecryptingReader::finish`].
    pub async fn finish(self) -> Result<VerifiedLayer>
    where
        R: Unpin,
    {
        let mut this = self;
        let mut sink = vec![0u8; 64 * 1024];
        while !this.state.is_done() {
            match this.read(&mut sink).await {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(match this.state.verdict_error() {
                        Some(verdict) => verdict,
                        None => Error::Io(e),
                    })
                }
            }
        }
        this.state.verified()
    }
}

impl<R: AsyncRead> AsyncRead for AsyncDecryptingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        if let Some(err) = this.state.failed() {
            return Poll::Ready(Err(err));
        }
        if this.state.is_done() || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled_mut();
                if filled.len() == before {
                    return Poll::Ready(this.state.at_eof());
                }
                this.state.process(&mut filled[before..]);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use oci_model::Digest;

    async fn encrypt(plain: &[u8]) -> (Vec<u8>, LayerBlockCipherOptions) {
        let mut r = AsyncEncryptingReader::new(plain, None).unwrap();
        let mut ct = Vec::new();
        r.read_to_end(&mut ct).await.unwrap();
        (ct, r.finish().unwrap())
    }

    #[tokio::test]
    async fn async_round_trip_and_sync_interop() {
        let plain: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let (ct, opts) = encrypt(&plain).await;
        assert_eq!(opts.private.digest, Digest::sha256_of(&plain).to_string());
        // decrypt with the sync reader
        let mut out = Vec::new();
        std::io::Read::read_to_end(
            &mut super::super::DecryptingReader::new(ct.as_slice(), &opts).unwrap(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, plain);
        let mut r = AsyncDecryptingReader::new(ct.as_slice(), &opts)
            .unwrap()
            .verify_digest();
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, plain);
        assert_eq!(r.finish().await.unwrap().size, plain.len() as u64);
    }

    #[tokio::test]
    async fn async_tamper_fails_at_end() {
        let (mut ct, opts) = encrypt(&[3u8; 3000]).await;
        ct[2999] ^= 0x80;
        let mut r = AsyncDecryptingReader::new(ct.as_slice(), &opts).unwrap();
        let err = r.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(matches!(Error::from_io(&err), Some(Error::HmacMismatch)));
        let r = AsyncDecryptingReader::new(ct.as_slice(), &opts).unwrap();
        assert!(matches!(r.finish().await, Err(Error::HmacMismatch)));
    }
}
