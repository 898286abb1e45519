//! `secret`: make signing keys, seal secrets (vault or envelope) and unseal them locally.
//! The behaviour is in `confidential_data_hub` ([`seal`], [`envelope`]); this is its
//! command line.

#![forbid(unsafe_code)]

use std::{
    io::Write as _,
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use confidential_data_hub::{
    envelope, generate_key_pair, seal, SecretContent, SecretPayload, Unsealer, VaultSecret,
    Verification, DEFAULT_AA_SOCKET, DEFAULT_SEALED_SECRET_DIR,
};
use kms::{
    KbcParams, KmsProviders, OfflineFsSources, ProviderSettings, WrapType,
    DEFAULT_KMS_CREDENTIAL_DIR, OFFLINE_FS_KBC, OFFLINE_FS_KEYS_FILE, OFFLINE_FS_RESOURCES_FILE,
};

/// Seal and unseal confidential-containers sealed secrets.
#[derive(Parser)]
#[command(
    name = "secret",
    version,
    about = "Makes signing keys and sealed secrets (`sealed.<jws>`) for the confidential data hub, and unseals them"
)]
enum Cli {
    /// Generate a P-256 signing key pair as JWKs (private.jwk, public.jwk).
    Keygen(KeygenArgs),
    /// Seal a secret and print it (`sealed.<header>.<payload>.<signature>`).
    Seal(SealArgs),
    /// Unseal a sealed secret here, as the hub would.
    Unseal(UnsealArgs),
}

#[derive(Args)]
struct KeygenArgs {
    /// The key id to put in the JWKs (the kid sealed secrets will name).
    #[arg(long)]
    kid: String,
    /// Directory to write private.jwk (mode 0600) and public.jwk into.
    #[arg(long)]
    output_dir: PathBuf,
}

#[derive(Args)]
struct SealArgs {
    /// The kid of the verification key: a resource URI (kbs:///…) or a file name in the
    /// hub's sealed-secret directory.
    #[arg(long)]
    signing_kid: String,
    /// The private P-256 JWK to sign with.
    #[arg(long)]
    signing_jwk_path: PathBuf,
    #[command(subcommand)]
    kind: SealKind,
}

#[derive(Subcommand)]
enum SealKind {
    /// A pointer to a secret in a secret store (provision the secret there yourself).
    Vault(VaultArgs),
    /// The secret itself, encrypted under a data key wrapped by a KMS key.
    Envelope(EnvelopeArgs),
}

#[derive(Args)]
struct VaultArgs {
    /// The secret's name at the provider (a resource URI for provider kbs).
    #[arg(long, alias = "name")]
    resource_uri: String,
    /// The secret store: kbs, offline_fs, aws, aliyun, ehsm.
    #[arg(long)]
    provider: String,
    /// Provider settings (JSON object).
    #[arg(long)]
    provider_settings: Option<String>,
    /// Provider annotations (JSON object).
    #[arg(long)]
    annotations: Option<String>,
}

#[derive(Args)]
struct EnvelopeArgs {
    /// The KMS key that wraps the data key.
    #[arg(long)]
    key_id: String,
    /// The file holding the secret.
    #[arg(long)]
    file_path: PathBuf,
    /// The KMS: offline_fs (keys from --kms-credential-dir), aws, aliyun, ehsm.
    #[arg(long)]
    provider: String,
    /// Provider settings (JSON object), e.g. {"region":"eu-west-1"} for aws.
    #[arg(long)]
    provider_settings: Option<String>,
    /// Wrap of the data: A256GCM or A256CTR.
    #[arg(long, default_value = "A256GCM")]
    wrap_type: String,
    /// Where the provider's credentials are (`<dir>/<provider>/…`).
    #[arg(long, default_value = DEFAULT_KMS_CREDENTIAL_DIR)]
    kms_credential_dir: PathBuf,
    /// Send AWS requests to this endpoint instead of AWS's.
    #[cfg(feature = "aws")]
    #[arg(long)]
    aws_endpoint_url: Option<String>,
    /// Connect to this address for the Alibaba Cloud KMS instance (a local KMS).
    #[cfg(feature = "aliyun")]
    #[arg(long)]
    aliyun_resolve: Option<std::net::SocketAddr>,
}

#[derive(Args)]
struct UnsealArgs {
    /// The file holding the sealed secret.
    #[arg(short, long)]
    file_path: PathBuf,
    /// Write the plaintext to this file (mode 0600) instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Do not verify the signature (testing only).
    #[arg(long)]
    skip_verification: bool,
    /// The KBC for kbs resources: `offline_fs_kbc` or `cc_kbc::<KBS URL>`.
    #[arg(long, default_value = OFFLINE_FS_KBC)]
    aa_kbc_params: String,
    /// The attestation agent (cc_kbc).
    #[arg(long, default_value = DEFAULT_AA_SOCKET)]
    aa_socket: String,
    /// offline_fs_kbc stores to read after the /etc ones (repeatable).
    #[arg(long)]
    offline_fs_kbc_file: Vec<PathBuf>,
    /// Directory of verification keys named by file.
    #[arg(long, default_value = DEFAULT_SEALED_SECRET_DIR)]
    sealed_secret_dir: PathBuf,
    /// Where KMS provider credentials are (`<dir>/<provider>/…`).
    #[arg(long, default_value = DEFAULT_KMS_CREDENTIAL_DIR)]
    kms_credential_dir: PathBuf,
}

fn json_object(text: Option<&str>, what: &str) -> anyhow::Result<ProviderSettings> {
    match text {
        None => Ok(ProviderSettings::new()),
        Some(text) => {
            serde_json::from_str(text).with_context(|| format!("--{what} must be a JSON object"))
        }
    }
}

/// Creates `path` with `mode`, refusing to overwrite.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.output_dir)
        .with_context(|| format!("creating {}", args.output_dir.display()))?;
    let pair = generate_key_pair(&args.kid)?;
    let private = args.output_dir.join("private.jwk");
    let public = args.output_dir.join("public.jwk");
    write_new(&private, pair.private_jwk.as_bytes(), 0o600)?;
    write_new(&public, pair.public_jwk.as_bytes(), 0o644)?;
    println!("{}\n{}", private.display(), public.display());
    Ok(())
}

async fn seal_command(args: SealArgs) -> anyhow::Result<()> {
    let signing_jwk = zeroize::Zeroizing::new(
        std::fs::read(&args.signing_jwk_path)
            .with_context(|| format!("reading {}", args.signing_jwk_path.display()))?,
    );
    let content = match args.kind {
        SealKind::Vault(vault) => {
            eprintln!(
                "note: a vault secret only points to the secret; provision it to `{}` separately",
                vault.provider
            );
            SecretContent::Vault(VaultSecret {
                name: vault.resource_uri,
                provider: vault.provider,
                provider_settings: json_object(
                    vault.provider_settings.as_deref(),
                    "provider-settings",
                )?,
                annotations: json_object(vault.annotations.as_deref(), "annotations")?,
            })
        }
        SealKind::Envelope(env) => {
            let plaintext = zeroize::Zeroizing::new(
                std::fs::read(&env.file_path)
                    .with_context(|| format!("reading {}", env.file_path.display()))?,
            );
            let wrap_type: WrapType = env.wrap_type.parse()?;
            #[allow(unused_mut)]
            let mut kms = KmsProviders::new(&env.kms_credential_dir);
            #[cfg(feature = "aws")]
            if let Some(url) = env.aws_endpoint_url {
                kms = kms.with_aws_endpoint_url(url);
            }
            #[cfg(feature = "aliyun")]
            if let Some(addr) = env.aliyun_resolve {
                kms = kms.with_aliyun_network(kms::AliyunNetwork {
                    resolve: Some(addr),
                    ..Default::default()
                });
            }
            let settings = json_object(env.provider_settings.as_deref(), "provider-settings")?;
            SecretContent::Envelope(
                envelope(
                    &kms,
                    &env.provider,
                    settings,
                    &env.key_id,
                    &plaintext,
                    wrap_type,
                )
                .await?,
            )
        }
    };
    let sealed = seal(
        &SecretPayload::new(content),
        &signing_jwk,
        &args.signing_kid,
    )?;
    println!("{sealed}");
    Ok(())
}

async fn unseal_command(args: UnsealArgs) -> anyhow::Result<()> {
    let sealed = std::fs::read(&args.file_path)
        .with_context(|| format!("reading {}", args.file_path.display()))?;
    let (kbc_name, kbs_url) = match args.aa_kbc_params.split_once("::") {
        Some((name, url)) => (name.to_string(), url.to_string()),
        None => (args.aa_kbc_params.clone(), String::new()),
    };
    let params = KbcParams {
        offline_fs: OfflineFsSources {
            keys_file: OFFLINE_FS_KEYS_FILE.into(),
            resources_file: OFFLINE_FS_RESOURCES_FILE.into(),
            extra_files: args.offline_fs_kbc_file,
        },
        kbs_url,
        kbs_cert: None,
        aa_socket: args.aa_socket,
    };
    let kbc: Arc<dyn kms::Kbc> = Arc::from(
        kms::new_kbc(&kbc_name, &params).with_context(|| format!("setting up KBC {kbc_name}"))?,
    );
    let kms = KmsProviders::new(&args.kms_credential_dir).with_kbc(kbc.clone());
    let verification = if args.skip_verification {
        eprintln!("warning: the signature is NOT verified (--skip-verification)");
        Verification::Skipped
    } else {
        Verification::Required
    };
    let plaintext = Unsealer::new(kbc, kms)
        .with_sealed_secret_dir(&args.sealed_secret_dir)
        .with_verification(verification)
        .unseal(&sealed)
        .await?;
    match args.output {
        Some(path) => write_new(&path, &plaintext, 0o600)?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&plaintext)?;
            stdout.flush()?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse() {
        Cli::Keygen(args) => keygen(args),
        Cli::Seal(args) => seal_command(args).await,
        Cli::Unseal(args) => unseal_command(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secret: {e:#}");
            ExitCode::FAILURE
        }
    }
}
