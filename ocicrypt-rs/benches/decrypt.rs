//! Decrypt throughput of the streaming reader: 256 MiB through `DecryptingReader` with
//! 256 KiB reads (HMAC verified at the end), best of three runs.
//! Prints `bench ocicrypt_decrypt_mbps: <value> MB/s` (MB = 10^6 bytes, as openssl speed).

use std::io::Read;
use std::time::Instant;

use ocicrypt_rs::{DecryptingReader, EncryptingReader};

const SIZE: usize = 256 * 1024 * 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let plain: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let mut enc = EncryptingReader::new(plain.as_slice(), None)?;
    let mut ciphertext = Vec::with_capacity(SIZE);
    enc.read_to_end(&mut ciphertext)?;
    let opts = enc.finish()?;
    drop(plain);
    let mut buf = vec![0u8; 256 * 1024];
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        let mut reader = DecryptingReader::new(ciphertext.as_slice(), &opts)?;
        let mut total = 0usize;
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        let verified = reader.finish()?;
        let secs = start.elapsed().as_secs_f64();
        if total != SIZE || verified.size != SIZE as u64 {
            return Err("short decryption".into());
        }
        best = best.min(secs);
    }
    println!(
        "bench ocicrypt_decrypt_mbps: {:.1} MB/s",
        SIZE as f64 / best / 1e6
    );
    Ok(())
}
