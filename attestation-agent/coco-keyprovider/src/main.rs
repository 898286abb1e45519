//! `coco-keyprovider`: flags, logging, the daemon switch and the socket. The behaviour is
//! in the library.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Parser;
use coco_keyprovider::{daemon, AdminKey, CocoKeyProvider, Registrar};
use tracing::{info, warn};

/// Keyprovider gRPC service that wraps image layer keys for Confidential Containers
/// (ocicrypt `provider:attestation-agent:<params>`), registering the key-encryption keys
/// in the KBS.
#[derive(Debug, Parser)]
#[command(name = "coco-keyprovider", version, about)]
struct Cli {
    /// Socket address (IP:port) to listen to, e.g. 127.0.0.1:50000.
    #[arg(short, long)]
    socket: SocketAddr,

    /// Ed25519 private key (PKCS#8 PEM) that signs the KBS admin tokens; with --kbs, the
    /// key-encryption keys are registered in the KBS.
    #[arg(short, long, value_name = "FILE")]
    auth_private_key: Option<PathBuf>,

    /// KBS address (http:// or https://); with --auth-private-key, the key-encryption keys
    /// are registered in it.
    #[arg(long, value_name = "URL")]
    kbs: Option<String>,

    /// Extra trusted root CA (PEM) for an HTTPS KBS.
    #[arg(long, value_name = "FILE")]
    kbs_cert: Option<PathBuf>,

    /// Run in the background: output to <run-dir>/coco_keyprovider.{out,err}, pid in
    /// <run-dir>/coco_keyprovider.pid.
    #[arg(short, long)]
    daemon: bool,

    /// Where -d puts its files.
    #[arg(long, value_name = "DIR", default_value = daemon::DEFAULT_RUN_DIR)]
    run_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.daemon && !daemon::is_child() {
        return match daemon::spawn(&cli.run_dir) {
            Ok(pid) => {
                println!("{pid}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("coco-keyprovider: {e}");
                ExitCode::FAILURE
            }
        };
    }
    logging::init("info");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("coco-keyprovider: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coco-keyprovider: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn registrar(cli: &Cli) -> anyhow::Result<Option<Registrar>> {
    match (&cli.kbs, &cli.auth_private_key) {
        (None, None) => {
            if cli.kbs_cert.is_some() {
                bail!("--kbs-cert needs --kbs");
            }
            Ok(None)
        }
        (Some(_), None) => bail!(
            "--kbs needs --auth-private-key (the KBS admin key that authorizes storing the key-encryption keys)"
        ),
        (None, Some(_)) => bail!("--auth-private-key needs --kbs (where to store the key-encryption keys)"),
        (Some(url), Some(key_path)) => {
            let key = AdminKey::from_file(key_path)?;
            let certs = match &cli.kbs_cert {
                Some(path) => vec![std::fs::read_to_string(path)
                    .with_context(|| format!("reading --kbs-cert {}", path.display()))?],
                None => Vec::new(),
            };
            Ok(Some(Registrar::new(url, &certs, key)?))
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM received; stopping"),
                _ = tokio::signal::ctrl_c() => info!("SIGINT received; stopping"),
            }
        }
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let registrar = registrar(&cli)?;
    match &registrar {
        Some(r) => info!(
            kbs = r.url(),
            "key-encryption keys are registered in the KBS"
        ),
        None => info!("no KBS: only keypath= and sample= keys can be used"),
    }
    let listener = tokio::net::TcpListener::bind(cli.socket)
        .await
        .with_context(|| format!("listening on {}", cli.socket))?;
    info!(socket = %cli.socket, version = env!("CARGO_PKG_VERSION"), "coco-keyprovider serving keyprovider.KeyProviderService");
    if cli.daemon && daemon::is_child() {
        daemon::announce(&cli.run_dir).context("writing the pid file")?;
    }
    coco_keyprovider::serve(CocoKeyProvider::new(registrar), listener, shutdown_signal())
        .await
        .map_err(|e| anyhow::anyhow!("gRPC server: {e}"))?;
    if cli.daemon && daemon::is_child() {
        let _ = std::fs::remove_file(daemon::DaemonFiles::in_dir(&cli.run_dir).pid);
    }
    info!("stopped");
    Ok(())
}
