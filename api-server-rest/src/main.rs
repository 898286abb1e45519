//! `api-server-rest` binary: flags, logging, listener, signals. Behaviour is in the library.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context;
use api_server_rest::{
    serve, BackendConfig, Backends, Features, Router, DEFAULT_AA_ADDR, DEFAULT_BIND,
    DEFAULT_CDH_ADDR, DEFAULT_TIMEOUT,
};
use clap::Parser;
// no libm.so or libgcc_s.so to map: see daemon-link
use daemon_link as _;

/// REST shim for workload containers: KBS resources through the confidential data hub,
/// evidence and tokens through the attestation agent. Answers loopback peers only.
#[derive(Debug, Parser)]
#[command(name = "api-server-rest", version)]
struct Cli {
    /// Address to listen on.
    #[arg(short = 'b', long = "bind", default_value = DEFAULT_BIND)]
    bind: SocketAddr,
    /// Endpoints to serve: resource, attestation or all.
    #[arg(short = 'f', long = "features", default_value = "resource")]
    features: Features,
    /// ttRPC address of the confidential data hub.
    #[arg(short = 'c', long = "cdh_addr", default_value = DEFAULT_CDH_ADDR)]
    cdh_addr: String,
    /// ttRPC address of the attestation agent.
    #[arg(short = 'a', long = "aa_addr", default_value = DEFAULT_AA_ADDR)]
    aa_addr: String,
    /// Keep the TEE private key (`tee_keypair`) out of /aa/token?token_type=kbs: only
    /// `{"token":...}` is returned. Off by default, as upstream: the workload gets the key
    /// that goes with the token, and so can any process in the pod.
    #[arg(long = "withhold-tee-key")]
    withhold_tee_key: bool,
}

// One thread: the shim only forwards to the two daemons; a worker per core would cost
// memory and buy nothing.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // A bad flag exits 1 (as upstream); --help and --version exit 0.
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        if e.use_stderr() {
            let _ = e.print();
            std::process::exit(1);
        }
        e.exit()
    });
    logging::init("info");

    let listener = tokio::net::TcpListener::bind(cli.bind)
        .await
        .with_context(|| format!("cannot listen on {}", cli.bind))?;
    tracing::info!(
        bind = %cli.bind,
        features = %cli.features,
        cdh = %cli.cdh_addr,
        aa = %cli.aa_addr,
        withhold_tee_key = cli.withhold_tee_key,
        "api-server-rest {} listening",
        env!("CARGO_PKG_VERSION")
    );
    let backends = Backends::new(BackendConfig {
        aa_addr: cli.aa_addr,
        cdh_addr: cli.cdh_addr,
        timeout: DEFAULT_TIMEOUT,
    });
    let router =
        Arc::new(Router::new(cli.features, backends).withhold_tee_key(cli.withhold_tee_key));
    serve(listener, router, async {
        match protos::server::shutdown_signal().await {
            Ok(signal) => tracing::info!("{signal} received; stopping"),
            Err(e) => tracing::error!(error = %e, "cannot listen for stop signals; stopping"),
        }
    })
    .await;
    Ok(())
}
