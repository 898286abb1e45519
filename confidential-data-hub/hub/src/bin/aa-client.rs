//! `aa-client`: one sub-command per ttRPC method of the attestation agent. Evidence and
//! tokens (JSON documents) are printed as received.

#![forbid(unsafe_code)]

use std::{io::Write as _, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use confidential_data_hub::{AaClient, DEFAULT_AA_SOCKET};

/// Call the attestation agent over ttRPC.
#[derive(Parser)]
#[command(
    name = "aa-client",
    version,
    about = "Calls each ttRPC method of the attestation agent (evidence, tokens, runtime measurements, initdata) and prints the answer"
)]
struct Cli {
    /// The attestation agent's ttRPC address.
    #[arg(short, long, default_value = DEFAULT_AA_SOCKET)]
    socket: String,
    /// Limit for connecting and for the call, in seconds.
    #[arg(short, long, default_value_t = 50)]
    timeout: u64,
    #[command(subcommand)]
    operation: Operation,
}

#[derive(Subcommand)]
enum Operation {
    /// GetEvidence: the TEE evidence binding runtime data.
    GetEvidence {
        /// The runtime data (text).
        #[arg(short, long, default_value = "")]
        runtime_data: String,
    },
    /// GetAdditionalEvidence: evidence of the additional devices.
    GetAdditionalEvidence {
        /// The runtime data (text).
        #[arg(short, long, default_value = "")]
        runtime_data: String,
    },
    /// GetToken: a token of the given type.
    GetToken {
        /// `kbs` or `coco_as`.
        #[arg(long, default_value = "kbs")]
        token_type: String,
    },
    /// ExtendRuntimeMeasurement: record an event; prints OK, NOT_SUPPORTED or NOT_ENABLED.
    ExtendRuntimeMeasurement {
        /// The event domain.
        #[arg(long)]
        domain: String,
        /// The event operation.
        #[arg(long)]
        operation: String,
        /// The event content.
        #[arg(long)]
        content: String,
        /// The register to extend (default: the agent's configured one).
        #[arg(long)]
        register_index: Option<u64>,
    },
    /// BindInitData: bind an initdata digest.
    BindInitData {
        /// The digest, in hex.
        #[arg(long)]
        digest: String,
    },
    /// GetTeeType: the platform's TEE.
    GetTeeType,
    /// GetAdditionalTees: the additional devices' TEEs, one per line.
    GetAdditionalTees,
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let aa = AaClient::connect(&cli.socket, Duration::from_secs(cli.timeout)).await?;
    let mut stdout = std::io::stdout().lock();
    match cli.operation {
        Operation::GetEvidence { runtime_data } => {
            stdout.write_all(&aa.get_evidence(runtime_data.as_bytes()).await?)?
        }
        Operation::GetAdditionalEvidence { runtime_data } => {
            stdout.write_all(&aa.get_additional_evidence(runtime_data.as_bytes()).await?)?
        }
        Operation::GetToken { token_type } => {
            stdout.write_all(&aa.get_token(&token_type).await?)?
        }
        Operation::ExtendRuntimeMeasurement {
            domain,
            operation,
            content,
            register_index,
        } => {
            let result = aa
                .extend_runtime_measurement(&domain, &operation, &content, register_index)
                .await?;
            writeln!(stdout, "{result:?}")?
        }
        Operation::BindInitData { digest } => {
            let digest = hex::decode(digest.trim()).context("--digest must be hex")?;
            aa.bind_init_data(&digest).await?;
            writeln!(stdout, "OK")?
        }
        Operation::GetTeeType => writeln!(stdout, "{}", aa.get_tee_type().await?)?,
        Operation::GetAdditionalTees => {
            for tee in aa.get_additional_tees().await? {
                writeln!(stdout, "{tee}")?;
            }
        }
    }
    stdout.flush()?;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aa-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}
