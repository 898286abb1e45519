//! `kbs-client`: run the RCAR handshake against a KBS and print a resource (base64) or the
//! token; the tool to reach for when debugging a KBS (trustee-attester style).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use attester::{DetectOptions, Env, Platform, SamplePolicy};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::{Parser, Subcommand};
use kbs_protocol::{
    AttesterEvidenceProvider, KbsClient, KbsClientConfig, ResourceUri, TeeKeyAlgorithm,
};

#[derive(Parser)]
#[command(
    name = "kbs-client",
    version,
    about = "Attest to a KBS and fetch resources"
)]
struct Cli {
    /// KBS base URL, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    /// Extra trusted root CA (PEM) for an HTTPS KBS
    #[arg(long, global = true)]
    cert_file: Option<PathBuf>,
    /// Initdata TOML file sent as init-data
    #[arg(long, global = true)]
    initdata: Option<PathBuf>,
    /// TEE key pair type: ec-p256, ec-p521, rsa-2048 or ml-kem-768
    #[arg(long, global = true, default_value = "ec-p256")]
    tee_key: TeeKeyAlgorithm,
    /// Use the sample attester (evidence that proves nothing) when no TEE is found, as
    /// AA_SAMPLE_ATTESTER=1 does
    #[arg(long, global = true)]
    allow_sample: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attest and print the resource, base64-encoded
    GetResource {
        /// repo/type/tag or a kbs:// URI
        #[arg(long)]
        path: String,
    },
    /// Attest and print the attestation token
    Attest,
}

/// `repo/type/tag` is shorthand for `kbs:///repo/type/tag`.
fn resource_uri(path: &str) -> anyhow::Result<ResourceUri> {
    let text = if path.contains("://") {
        path.to_string()
    } else {
        format!("kbs:///{}", path.trim_start_matches('/'))
    };
    ResourceUri::parse(&text).with_context(|| format!("invalid resource path {path:?}"))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // The same detection as the attestation agent: hardware first, the sample attester
    // only when asked for.
    let options = DetectOptions {
        sample: if cli.allow_sample {
            SamplePolicy::Allowed("--allow-sample".to_string())
        } else {
            SamplePolicy::OptIn
        },
        env: Env::from_process(),
    };
    let attesters = attester::detect(&Platform::default(), &options)
        .context("detecting the TEE (kbs-client takes --allow-sample for sample evidence)")?;
    let evidence = AttesterEvidenceProvider::new(Arc::new(attesters));
    let mut config = KbsClientConfig::new(&cli.url)?;
    config.tee_key_algorithm = cli.tee_key;
    if let Some(cert) = &cli.cert_file {
        config.extra_root_certs_pem.push(
            std::fs::read_to_string(cert)
                .with_context(|| format!("reading the KBS certificate {}", cert.display()))?,
        );
    }
    if let Some(initdata) = &cli.initdata {
        config.initdata_toml = Some(
            std::fs::read_to_string(initdata)
                .with_context(|| format!("reading initdata {}", initdata.display()))?,
        );
    }
    let client = KbsClient::background_check(config, Arc::new(evidence))?;
    match cli.command {
        Command::GetResource { path } => {
            let uri = resource_uri(&path)?;
            let resource = client.get_resource(&uri).await?;
            println!("{}", STANDARD.encode(resource.as_slice()));
        }
        Command::Attest => {
            let (token, _) = client.get_token().await?;
            println!("{}", token.as_str());
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    logging::init("warn");
    let cli = Cli::parse();
    if cli.url.is_empty() {
        bail!("--url must not be empty");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}
