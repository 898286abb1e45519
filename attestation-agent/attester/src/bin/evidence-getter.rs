//! `evidence-getter`: prints the evidence of the detected TEE (and of every additional TEE
//! device) for a report data: what an operator runs first inside a new VM image.
//!
//! Output: one line per TEE, `<tee>: <evidence JSON>`, the primary TEE first.

use anyhow::{bail, Context};
use attester::{DetectOptions, Env, Platform, SamplePolicy};
use clap::Parser;

/// Prints the attestation evidence of this platform.
#[derive(Debug, Parser)]
#[command(name = "evidence-getter", version)]
struct Cli {
    /// Use the sample attester when no TEE is found (its evidence proves nothing).
    #[arg(long)]
    allow_sample: bool,

    /// Report data to bind: hex digits, or `@<file>` for the raw bytes of a file
    /// (normally a digest; at most 64 bytes on most TEEs). Empty by default.
    #[arg(long, value_name = "HEX|@FILE")]
    report_data: Option<String>,
}

fn report_data(arg: Option<&str>) -> anyhow::Result<Vec<u8>> {
    match arg {
        None => Ok(Vec::new()),
        Some(arg) => match arg.strip_prefix('@') {
            Some("") => bail!("`@` must be followed by a file name"),
            Some(path) => std::fs::read(path).with_context(|| format!("reading {path}")),
            None => hex::decode(arg.trim()).with_context(|| {
                format!("--report-data {arg:?} is not hex; use @<file> for a file")
            }),
        },
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    logging::init("warn");
    let cli = Cli::parse();
    let data = report_data(cli.report_data.as_deref())?;
    let options = DetectOptions {
        sample: if cli.allow_sample {
            SamplePolicy::Allowed("--allow-sample".to_string())
        } else {
            SamplePolicy::OptIn
        },
        env: Env::from_process(),
    };
    let detected = attester::detect(&Platform::default(), &options)?;
    for attester in std::iter::once(&detected.primary).chain(detected.additional.iter()) {
        let tee = attester.tee();
        let evidence = attester
            .get_evidence(&data)
            .await
            .with_context(|| format!("getting {tee} evidence"))?;
        println!("{tee}: {evidence}");
    }
    Ok(())
}
