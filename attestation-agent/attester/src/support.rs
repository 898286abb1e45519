//! Helpers the hardware attesters share: sizing report data and digests to a platform
//! field, running device work off the async workers, and file access whose errors name the
//! file.

use crate::{AttesterError, Tee};

/// `data` zero-padded to the platform's report-data field of `N` bytes; longer data is an
/// error, never silently truncated.
pub(crate) fn pad_report_data<const N: usize>(
    tee: Tee,
    data: &[u8],
) -> Result<[u8; N], AttesterError> {
    let mut field = [0u8; N];
    let target = field
        .get_mut(..data.len())
        .ok_or(AttesterError::ReportDataTooLong {
            tee,
            len: data.len(),
            max: N,
        })?;
    target.copy_from_slice(data);
    Ok(field)
}

/// An initdata digest zero-padded to a register of `N` bytes (a longer digest is an error).
#[cfg(any(feature = "tdx-attester", feature = "snp-attester"))]
pub(crate) fn pad_digest<const N: usize>(
    tee: Tee,
    register: &'static str,
    expected: &'static str,
    digest: &[u8],
) -> Result<[u8; N], AttesterError> {
    let mut value = [0u8; N];
    let target = value
        .get_mut(..digest.len())
        .ok_or(AttesterError::InitDataDigestSize {
            tee,
            len: digest.len(),
            register,
            expected,
        })?;
    target.copy_from_slice(digest);
    Ok(value)
}

/// Runs blocking device work (ioctls, configfs, the TPM stack) on tokio's blocking pool so
/// the async workers never wait on the kernel.
pub(crate) async fn blocking<T, F>(tee: Tee, work: F) -> Result<T, AttesterError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, AttesterError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| AttesterError::Platform {
            tee,
            message: format!("the device request did not complete: {join}"),
        })?
}

/// An I/O error on `path`.
#[cfg(any(
    feature = "tdx-attester",
    feature = "snp-attester",
    feature = "sgx-attester",
    feature = "cca-attester",
    feature = "se-attester",
    feature = "csv-attester"
))]
pub(crate) fn io_error(
    tee: Tee,
    action: &'static str,
    path: &std::path::Path,
    source: std::io::Error,
) -> AttesterError {
    AttesterError::Io {
        tee,
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a whole file.
#[cfg(feature = "sgx-attester")]
pub(crate) fn read_file(tee: Tee, path: &std::path::Path) -> Result<Vec<u8>, AttesterError> {
    std::fs::read(path).map_err(|e| io_error(tee, "read", path, e))
}

/// A file that may be absent: `Ok(None)` when it does not exist.
#[cfg(any(feature = "tdx-attester", feature = "csv-attester"))]
pub(crate) fn read_optional(
    tee: Tee,
    path: &std::path::Path,
) -> Result<Option<Vec<u8>>, AttesterError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(tee, "read", path, e)),
    }
}

/// Opens a device node for reading and writing (ioctls need both).
#[cfg(any(
    feature = "tdx-attester",
    feature = "snp-attester",
    feature = "se-attester",
    feature = "csv-attester",
    feature = "sgx-attester"
))]
pub(crate) fn open_device(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
}

/// The path of an environment-configured file: absolute paths are taken under the
/// platform root, so a fake tree also contains what the variables point at.
#[cfg(any(feature = "tdx-attester", feature = "csv-attester", feature = "tpm"))]
pub(crate) fn env_path(platform: &crate::Platform, value: &str) -> std::path::PathBuf {
    platform.path(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_is_padded_never_truncated() {
        let padded: [u8; 8] = pad_report_data(Tee::Tdx, b"abc").unwrap();
        assert_eq!(&padded, b"abc\0\0\0\0\0");
        let exact: [u8; 3] = pad_report_data(Tee::Tdx, b"abc").unwrap();
        assert_eq!(&exact, b"abc");
        let empty: [u8; 2] = pad_report_data(Tee::Snp, b"").unwrap();
        assert_eq!(empty, [0, 0]);
        let err = pad_report_data::<2>(Tee::Snp, b"abc").unwrap_err();
        assert!(
            matches!(
                err,
                AttesterError::ReportDataTooLong {
                    tee: Tee::Snp,
                    len: 3,
                    max: 2
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("at most 2"), "{err}");
    }

    #[tokio::test]
    async fn blocking_work_returns_its_result() {
        let value = blocking(Tee::Tdx, || Ok(7)).await.unwrap();
        assert_eq!(value, 7);
        let err = blocking::<(), _>(Tee::Tdx, || {
            Err(AttesterError::Platform {
                tee: Tee::Tdx,
                message: "x".into(),
            })
        })
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "tdx: x");
    }
}
