//! `image-pull`: pulls one image into a bundle with image-rs (tests, benchmarks, manual
//! use).
//!
//! `image-pull --work-dir DIR --bundle DIR [--snapshotter flatten] [--insecure-registry HOST]... REF`

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use image_rs::RegistryEntry;
use image_rs::{
    Credentials, ImageClient, ImageConfig, PullOptions, RegistryConfig, SnapshotterKind,
};

#[derive(Parser)]
#[command(about = "Pull an image into an OCI bundle with image-rs")]
struct Args {
    /// layer store and metadata directory
    #[arg(long)]
    work_dir: PathBuf,
    /// bundle directory to create (rootfs + config.json); without it only the layers are pulled
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// overlayfs or flatten
    #[arg(long, default_value = "overlayfs")]
    snapshotter: SnapshotterKind,
    /// a registry (`host[:port]`) to reach over plain HTTP or unverified TLS
    #[arg(long)]
    insecure_registry: Vec<String>,
    /// `user:password` for the registry
    #[arg(long)]
    creds: Option<String>,
    /// layers fetched at once
    #[arg(long, default_value_t = 3)]
    concurrency: usize,
    /// the image
    reference: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    logging::init("warn");
    let args = Args::parse();
    let mut config = ImageConfig::with_work_dir(&args.work_dir);
    config.snapshotter = args.snapshotter;
    config.max_concurrent_layer_downloads_per_image = args.concurrency;
    if !args.insecure_registry.is_empty() {
        let mut registries = RegistryConfig::default();
        for host in &args.insecure_registry {
            registries.registry.push(RegistryEntry {
                location: host.clone(),
                insecure: true,
                ..RegistryEntry::default()
            });
        }
        config.registry_config = Some(registries);
    }
    let client = ImageClient::new(config)
        .await
        .context("opening the image store")?;
    let options = PullOptions {
        credentials: match &args.creds {
            Some(c) => {
                Some(Credentials::from_user_pass(c).context("--creds must be user:password")?)
            }
            None => None,
        },
        ..PullOptions::default()
    };
    match &args.bundle {
        Some(bundle) => {
            let report = client.pull_image(&args.reference, bundle, &options).await?;
            println!("{}", report.image.manifest_digest);
        }
        None => {
            let pulled = client.pull_layers(&args.reference, &options).await?;
            println!("{}", pulled.manifest_digest);
        }
    }
    Ok(())
}
