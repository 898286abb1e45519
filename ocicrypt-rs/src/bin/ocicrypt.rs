//! `ocicrypt`: encrypt or decrypt an OCI image layout on disk, and a `cmd` keyprovider
//! over local key-encryption keys. Wiring only; the behaviour is in the library.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ocicrypt_rs::keywrap::keyprovider::{handle_request, OcicryptConfig, MAX_MESSAGE_LEN};
use ocicrypt_rs::keywrap::keyprovider::{KekKeyProvider, WrapType};
use ocicrypt_rs::{decrypt_image, encrypt_image, LayoutReference};

#[derive(Parser)]
#[command(
    name = "ocicrypt",
    version,
    about = "Encrypt and decrypt OCI image layers (containers/ocicrypt compatible)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encrypt every layer of an image in an OCI layout.
    Encrypt {
        /// Recipient: jwe:<public key>, pkcs7:<certificate> or provider:<name>[:<params>] (repeatable)
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// Source image, oci:DIR[:tag]
        #[arg(long)]
        input: String,
        /// Destination image, oci:DIR[:tag]
        #[arg(long)]
        output: String,
        /// Keyprovider config for provider: keys (default: $OCICRYPT_KEYPROVIDER_CONFIG)
        #[arg(long)]
        keyprovider_config: Option<PathBuf>,
    },
    /// Decrypt every encrypted layer of an image in an OCI layout.
    Decrypt {
        /// Private key or certificate file, or provider:<name>[:<params>] (repeatable)
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// File holding the password of encrypted private keys
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Source image, oci:DIR[:tag]
        #[arg(long)]
        input: String,
        /// Destination image, oci:DIR[:tag]
        #[arg(long)]
        output: String,
        /// Keyprovider config for provider: keys (default: $OCICRYPT_KEYPROVIDER_CONFIG)
        #[arg(long)]
        keyprovider_config: Option<PathBuf>,
    },
    /// Answer one keyprovider protocol request (stdin → stdout) with local key-encryption
    /// keys, writing CoCo annotation packets: use as a `cmd` key provider.
    Keyprovider {
        /// KID=FILE: a 32-byte key-encryption key and its id, e.g. kbs:///default/key/1=/keys/k1 (repeatable; the first is the default for wrapping)
        #[arg(long = "kek", required = true)]
        keks: Vec<String>,
        /// Wrap with AES-256-CTR instead of AES-256-GCM
        #[arg(long)]
        ctr: bool,
    },
}

fn provider_config(path: Option<PathBuf>) -> anyhow::Result<Option<OcicryptConfig>> {
    Ok(match path {
        Some(path) => Some(OcicryptConfig::from_file(&path)?),
        None => OcicryptConfig::from_env()?,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    logging::init("error");
    match Cli::parse().command {
        Command::Encrypt {
            keys,
            input,
            output,
            keyprovider_config,
        } => {
            let (input, output) = (
                LayoutReference::parse(&input)?,
                LayoutReference::parse(&output)?,
            );
            let config = provider_config(keyprovider_config)?;
            let wrappers = ocicrypt_rs::encryption_wrappers(&keys, config.as_ref())?;
            let summary = encrypt_image(&input, &output, &wrappers).await?;
            println!("{}", summary.digest);
            eprintln!("encrypted {} layer(s)", summary.layers_changed);
        }
        Command::Decrypt {
            keys,
            password_file,
            input,
            output,
            keyprovider_config,
        } => {
            let (input, output) = (
                LayoutReference::parse(&input)?,
                LayoutReference::parse(&output)?,
            );
            let config = provider_config(keyprovider_config)?;
            let password = match password_file {
                Some(path) => Some(zeroize::Zeroizing::new(
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                )),
                None => None,
            };
            let password = password.as_ref().map(|p| p.trim_ascii_end());
            let wrappers = ocicrypt_rs::decryption_wrappers(&keys, password, config.as_ref())?;
            let summary = decrypt_image(&input, &output, &wrappers).await?;
            println!("{}", summary.digest);
            eprintln!(
                "decrypted {} layer(s), {} already plain",
                summary.layers_changed, summary.layers_unchanged
            );
        }
        Command::Keyprovider { keks, ctr } => {
            let mut provider = KekKeyProvider::new();
            for entry in &keks {
                let Some((kid, file)) = entry.rsplit_once('=') else {
                    bail!("--kek takes KID=FILE, got `{entry}`");
                };
                let kek = zeroize::Zeroizing::new(
                    std::fs::read(file).with_context(|| format!("reading {file}"))?,
                );
                provider.add_kek(kid, &kek)?;
            }
            if ctr {
                provider.set_wrap_type(WrapType::A256Ctr);
            }
            let mut request = Vec::new();
            std::io::stdin()
                .take(MAX_MESSAGE_LEN as u64 + 1)
                .read_to_end(&mut request)
                .context("reading the request")?;
            let response = handle_request(&provider, &request).await?;
            std::io::stdout()
                .write_all(&response)
                .context("writing the response")?;
        }
    }
    Ok(())
}
