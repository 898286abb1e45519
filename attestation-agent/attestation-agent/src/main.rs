//! `attestation-agent`: flags, config, logging, platform detection, initdata binding and
//! the ttRPC socket. All behaviour lives in the library.

#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context, Result};
use attestation_agent::{
    services, version_text, AaKbcParams, AttestationAgent, Config, InitDataRequest, LoadedConfig,
    AA_KBC_PARAMS_ENV, DEFAULT_CMDLINE_PATH, DEFAULT_EVENTLOG_DIR, DEFAULT_SOCKET,
};
use attester::{parse_flag, DetectOptions, Env, Platform, SamplePolicy};
use clap::{CommandFactory, FromArgMatches, Parser};
// no libm.so or libgcc_s.so to map: see daemon-link
use daemon_link as _;
use futures::FutureExt;
use tracing::{info, warn};

/// Attestation Agent: evidence and tokens for the confidential guest.
#[derive(Debug, Parser)]
#[command(name = "attestation-agent")]
struct Args {
    /// ttRPC listen address (unix:///absolute/path)
    #[arg(short = 'a', long = "attestation_sock", default_value = DEFAULT_SOCKET)]
    attestation_sock: String,

    /// Config file (TOML; JSON if the name ends in .json)
    #[arg(short = 'c', long = "config-file")]
    config_file: Option<PathBuf>,

    /// Standard-base64 initdata digest to bind at startup
    #[arg(short = 'i', long = "initdata-digest")]
    initdata_digest: Option<String>,

    /// Initdata TOML file to bind at startup (wins over --initdata-digest)
    #[arg(short = 't', long = "initdata-toml")]
    initdata_toml: Option<PathBuf>,

    /// Kernel command line to read agent.aa_kbc_params and aa.allow_sample from (tests
    /// point it at a fake)
    #[arg(long = "kernel-cmdline", hide = true, default_value = DEFAULT_CMDLINE_PATH)]
    kernel_cmdline: PathBuf,

    /// Directory of the runtime eventlog and its write-ahead record (tests use a temporary
    /// one; the TDX/CSV evidence embeds the log from the default place)
    #[arg(long = "eventlog-dir", hide = true, default_value = DEFAULT_EVENTLOG_DIR)]
    eventlog_dir: PathBuf,
}

fn main() -> ExitCode {
    let version = version_text();
    let matches = Args::command()
        .version(version.clone())
        .long_version(version)
        .get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("attestation-agent: error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each once: the library's messages already include their
/// cause, so a cause whose text is already shown is skipped.
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if text.contains(&message) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&message);
    }
    text
}

/// The configuration, and why aa_kbc_params was dropped if it was.
fn load_config(args: &Args) -> Result<(LoadedConfig, Option<String>)> {
    match &args.config_file {
        Some(path) => Config::load(path)
            .map(|loaded| (loaded, None))
            .with_context(|| format!("loading config file {}", path.display())),
        None => {
            // Upstream drops an unusable aa_kbc_params and starts without a KBS; so do we,
            // but say so (the warning is logged once logging is up).
            let from_params = AaKbcParams::resolve(
                std::env::var_os(AA_KBC_PARAMS_ENV),
                args.kernel_cmdline.clone(),
            )
            .map_err(Into::into)
            .and_then(|params| Config::from_kbc_params(&params));
            let (config, dropped) = match from_params {
                Ok(config) => (config, None),
                Err(e) => (Config::default(), Some(e.to_string())),
            };
            Ok((
                LoadedConfig {
                    config,
                    unknown_keys: Vec::new(),
                },
                dropped,
            ))
        }
    }
}

/// Kernel parameter that sets strict mode (`false`) or allows the sample attester (`true`).
const ALLOW_SAMPLE_PARAM: &str = "aa.allow_sample";

/// Who decides whether the sample attester may stand in: the config file's
/// `[attester] allow_sample`, else the kernel parameter `aa.allow_sample`, else
/// `AA_SAMPLE_ATTESTER` and upstream's fallback (decided in detection).
fn sample_policy(config: &Config, kernel_cmdline: &std::path::Path) -> Result<SamplePolicy> {
    let decided = |allowed: bool, by: String| {
        if allowed {
            SamplePolicy::Allowed(by)
        } else {
            SamplePolicy::Refused(by)
        }
    };
    if let Some(allowed) = config.attester.allow_sample {
        return Ok(decided(
            allowed,
            format!("`[attester] allow_sample = {allowed}` in the config file"),
        ));
    }
    // A guest without a readable command line has no parameter to honour.
    let Ok(cmdline) = protos::KernelCmdline::read(kernel_cmdline) else {
        return Ok(SamplePolicy::FallBack);
    };
    match cmdline.first(ALLOW_SAMPLE_PARAM) {
        None => Ok(SamplePolicy::FallBack),
        // A strict-mode switch that cannot be read must not fall back silently.
        Some(value) => match parse_flag(value) {
            Some(allowed) => Ok(decided(
                allowed,
                format!("kernel parameter {ALLOW_SAMPLE_PARAM}={value}"),
            )),
            None => anyhow::bail!(
                "kernel parameter {ALLOW_SAMPLE_PARAM}={value} is not a boolean: use \
                 true/1/yes/on or false/0/no/off"
            ),
        },
    }
}

fn run(args: Args) -> Result<()> {
    let (
        LoadedConfig {
            config,
            unknown_keys,
        },
        dropped_kbc_params,
    ) = load_config(&args)?;
    logging::init(&config.log.level);
    if !unknown_keys.is_empty() {
        warn!(keys = ?unknown_keys, "ignoring unknown config keys");
    }
    if let Some(reason) = dropped_kbc_params {
        warn!("ignoring aa_kbc_params, no KBS configured: {reason}");
    }
    info!(version = %version_text(), "attestation-agent starting");

    let options = DetectOptions {
        sample: sample_policy(&config, &args.kernel_cmdline)?,
        env: Env::from_process(),
    };
    let detected = attester::detect(&Platform::default(), &options)?;
    let initdata = InitDataRequest::from_flags(
        args.initdata_toml.as_deref(),
        args.initdata_digest.as_deref(),
    )?;
    let mut agent = AttestationAgent::new(config, detected);

    // One thread: the agent waits on its socket and the KBS; evidence, key generation and
    // eventlog writes already run on the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        if let Some(request) = initdata {
            agent.bind_init_data(request).await?;
        }
        agent
            .init_eventlog(&args.eventlog_dir)
            .await
            .context("opening the runtime eventlog")?;
        // Install the signal handlers before the socket exists, so a stop request that
        // follows the socket's appearance is never lost.
        let mut shutdown = Box::pin(protos::server::shutdown_signal());
        if let Some(signal) = (&mut shutdown).now_or_never() {
            let signal = signal.context("installing signal handlers")?;
            info!(signal, "stopping before serving");
            return Ok(());
        }
        let services = [services(Arc::new(agent))];
        let server = protos::server::start(&args.attestation_sock, services).await?;
        info!(addr = %server.addr(), "serving ttRPC");
        let signal = shutdown.await.context("waiting for a stop signal")?;
        info!(signal, "stopping");
        server.stop().await?;
        Ok(())
    })
}
