//! `confidential-data-hub`: flags, configuration, logging, socket. The behaviour lives in
//! the library.

#![forbid(unsafe_code)]

use std::{future::Future, path::PathBuf, process::ExitCode, sync::Arc, task::Poll};

use anyhow::Context as _;
use clap::Parser;
// no libm.so or libgcc_s.so to map: see daemon-link
use confidential_data_hub::{
    Config, Environment, Hub, LoadOptions, LoadedConfig, DEFAULT_CREDENTIALS_DIR,
    DEFAULT_KERNEL_CMDLINE, DEFAULT_SEALED_SECRET_DIR,
};
use daemon_link as _;
use kms::{
    KmsProviders, OfflineFsSources, DEFAULT_KMS_CREDENTIAL_DIR, OFFLINE_FS_KEYS_FILE,
    OFFLINE_FS_RESOURCES_FILE,
};
use tracing::{info, warn};

/// Confidential Data Hub: KBS resources and secrets for the confidential guest, over ttRPC.
#[derive(Debug, Parser)]
#[command(name = "confidential-data-hub", version, about)]
struct Cli {
    /// Config file (TOML; JSON if the name ends in `.json`); default: CDH_CONFIG_PATH.
    /// Without either, the KBC comes from AA_KBC_PARAMS or the kernel parameter
    /// agent.aa_kbc_params.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Kernel command line to read instead of /proc/cmdline (tests).
    #[arg(long, hide = true, default_value = DEFAULT_KERNEL_CMDLINE)]
    kernel_cmdline: PathBuf,

    /// Directory credential files must lie under (tests).
    #[arg(long, hide = true, default_value = DEFAULT_CREDENTIALS_DIR)]
    credentials_dir: PathBuf,

    /// offline_fs_kbc key store (tests).
    #[arg(long, hide = true, default_value = OFFLINE_FS_KEYS_FILE)]
    offline_fs_kbc_keys: PathBuf,

    /// offline_fs_kbc resource store (tests).
    #[arg(long, hide = true, default_value = OFFLINE_FS_RESOURCES_FILE)]
    offline_fs_kbc_resources: PathBuf,

    /// Directory of sealed-secret verification keys named by file (tests).
    #[arg(long, hide = true, default_value = DEFAULT_SEALED_SECRET_DIR)]
    sealed_secret_dir: PathBuf,

    /// Directory of KMS provider credentials (tests).
    #[arg(long, hide = true, default_value = DEFAULT_KMS_CREDENTIAL_DIR)]
    kms_credential_dir: PathBuf,

    /// Send AWS KMS and Secrets Manager requests here (tests with a local emulator).
    #[cfg(feature = "aws")]
    #[arg(long, hide = true)]
    aws_endpoint_url: Option<String>,

    /// Connect to this address for every Alibaba Cloud KMS host (tests with a local KMS).
    #[cfg(feature = "aliyun")]
    #[arg(long, hide = true)]
    aliyun_resolve: Option<std::net::SocketAddr>,

    /// PEM CA certificates trusted for Alibaba Cloud's regional KMS hosts (tests).
    #[cfg(feature = "aliyun")]
    #[arg(long, hide = true)]
    aliyun_ca_file: Option<PathBuf>,

    /// The ECS metadata server instead of http://100.100.100.200 (tests).
    #[cfg(feature = "aliyun")]
    #[arg(long, hide = true)]
    aliyun_metadata_url: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confidential-data-hub: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    #[allow(unused_mut)]
    let mut kms_providers = KmsProviders::new(&cli.kms_credential_dir);
    #[cfg(feature = "aws")]
    if let Some(url) = &cli.aws_endpoint_url {
        kms_providers = kms_providers.with_aws_endpoint_url(url);
    }
    // upstream's credential directory variables of the aliyun and ehsm providers
    let env_dir = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    #[cfg(feature = "aliyun")]
    {
        if let Some(dir) = env_dir(kms::ALIYUN_KEY_PATH_ENV) {
            kms_providers = kms_providers.with_aliyun_credential_dir(dir);
        }
        let extra_root_pems = match &cli.aliyun_ca_file {
            Some(path) => vec![std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?],
            None => Vec::new(),
        };
        kms_providers = kms_providers.with_aliyun_network(kms::AliyunNetwork {
            resolve: cli.aliyun_resolve,
            extra_root_pems,
            metadata_url: cli.aliyun_metadata_url.clone(),
        });
    }
    #[cfg(feature = "ehsm")]
    if let Some(dir) = env_dir(kms::EHSM_KEY_PATH_ENV) {
        kms_providers = kms_providers.with_ehsm_credential_dir(dir);
    }
    #[cfg(not(any(feature = "aliyun", feature = "ehsm")))]
    let _ = env_dir;
    let options = LoadOptions {
        config_file: cli.config,
        kernel_cmdline: cli.kernel_cmdline,
        credentials_dir: cli.credentials_dir,
        offline_fs: OfflineFsSources {
            keys_file: cli.offline_fs_kbc_keys,
            resources_file: cli.offline_fs_kbc_resources,
            extra_files: Vec::new(),
        },
        env: Environment::from_process(),
    };
    let LoadedConfig {
        config,
        warnings,
        notes,
    } = Config::load(&options).context("loading the configuration")?;
    logging::init(&config.log.level);
    for note in &notes {
        info!("{note}");
    }
    for warning in &warnings {
        warn!("{warning}");
    }

    let kbc_name = config.kbc.name.clone();
    let params = config.kbc_params();
    let kbc = tokio::task::spawn_blocking(move || kms::new_kbc(&kbc_name, &params))
        .await?
        .with_context(|| format!("setting up KBC `{}` ([kbc] name)", config.kbc.name))?;
    let hub = Arc::new(Hub::with_kms(
        config,
        kbc,
        kms_providers,
        cli.sealed_secret_dir,
    ));

    // Install the signal handlers before the socket appears, so a stop request sent as soon
    // as the socket exists is never lost.
    let mut shutdown = std::pin::pin!(protos::server::shutdown_signal());
    let mut early_signal = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = shutdown.as_mut().poll(cx) {
            early_signal = Some(result);
        }
        Poll::Ready(())
    })
    .await;

    // The per-service sockets first: launchers wait for the combined socket only.
    let service_sockets = hub.config().service_sockets();
    let mut service_servers = Vec::new();
    for (name, service) in hub.per_service_ttrpc_services() {
        let Some(addr) = service_sockets.get(name) else {
            continue;
        };
        let server = protos::server::start(addr, [service])
            .await
            .with_context(|| format!("starting the ttRPC server on {addr} (services_dir)"))?;
        info!(socket = %addr, "serving one service");
        service_servers.push(server);
    }

    let socket = hub.config().socket.clone();
    let server = protos::server::start(&socket, hub.ttrpc_services())
        .await
        .context("starting the ttRPC server")?;
    info!(socket = %socket, kbc = %hub.config().kbc.name, "confidential-data-hub serving");

    // After the socket is up: kata-agent gives the socket only a few seconds to appear.
    let provisioning = tokio::spawn({
        let hub = hub.clone();
        async move { hub.provision_credentials().await }
    });

    let signal = match early_signal {
        Some(result) => result,
        None => shutdown.await,
    }
    .context("waiting for a stop signal")?;
    info!(signal, "stopping");
    provisioning.abort();
    server.stop().await.context("stopping the ttRPC server")?;
    for server in service_servers {
        let addr = server.addr().to_string();
        server
            .stop()
            .await
            .with_context(|| format!("stopping the ttRPC server on {addr}"))?;
    }
    Ok(())
}
