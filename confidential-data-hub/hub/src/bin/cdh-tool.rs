//! `cdh-tool`: one sub-command per ttRPC method of the confidential data hub, for testing
//! and debugging a running hub. Byte answers are printed as standard base64 (as upstream's
//! tool does) unless `--raw` is given.

#![forbid(unsafe_code)]

use std::{collections::HashMap, io::Write as _, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{anyhow, Context as _};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use clap::{Parser, Subcommand};
use confidential_data_hub::{
    optsdata_of_unwrap_answer, unwrap_request_for_packet, CdhClient, DEFAULT_CDH_SOCKET,
};

/// Call the confidential data hub over ttRPC.
#[derive(Parser)]
#[command(
    name = "cdh-tool",
    version,
    about = "Calls each ttRPC method of the confidential data hub (resources, sealed secrets, key unwrap, image pull, secure mount) and prints the answer"
)]
struct Cli {
    /// The hub's ttRPC address.
    #[arg(short, long, default_value = DEFAULT_CDH_SOCKET)]
    socket: String,
    /// Limit for connecting and for the call, in seconds.
    #[arg(short, long, default_value_t = 50)]
    timeout: u64,
    /// Print byte answers as they are instead of base64.
    #[arg(long)]
    raw: bool,
    #[command(subcommand)]
    operation: Operation,
}

#[derive(Subcommand)]
enum Operation {
    /// GetResource: a KBS resource by URI.
    GetResource {
        /// e.g. kbs:///default/key/1
        #[arg(short, long)]
        resource_uri: String,
    },
    /// UnsealSecret: the plaintext of a sealed secret.
    UnsealSecret {
        /// File holding `sealed.<header>.<payload>.<signature>`.
        #[arg(short, long)]
        secret_path: PathBuf,
    },
    /// KeyProvider UnWrapKey: the private layer options of an annotation packet.
    UnwrapKey {
        /// File holding the annotation packet JSON (the decoded layer annotation), or with
        /// --request the whole keyprovider request.
        #[arg(short, long)]
        annotation_path: PathBuf,
        /// The file is a complete keyprovider request; print the hub's raw answer.
        #[arg(long)]
        request: bool,
    },
    /// PullImage: pull an image into a bundle directory; prints the manifest digest.
    PullImage {
        /// e.g. registry.example/app:1.0
        #[arg(short, long)]
        image_url: String,
        /// Directory for rootfs and config.json.
        #[arg(short, long)]
        bundle_path: String,
    },
    /// SecureMount: mount a protected volume.
    SecureMount {
        /// `block-device`, …
        #[arg(long)]
        volume_type: String,
        /// KEY=VALUE, repeatable.
        #[arg(long = "option", value_parser = parse_key_value)]
        options: Vec<(String, String)>,
        /// Repeatable.
        #[arg(long = "flag")]
        flags: Vec<String>,
        /// Where to mount.
        #[arg(long)]
        mount_point: String,
    },
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))
}

fn print_bytes(bytes: &[u8], raw: bool) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if raw {
        stdout.write_all(bytes)?;
    } else {
        writeln!(stdout, "{}", STANDARD.encode(bytes))?;
    }
    stdout.flush()?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(cli.timeout);
    let cdh = CdhClient::connect(&cli.socket, timeout).await?;
    match cli.operation {
        Operation::GetResource { resource_uri } => {
            print_bytes(&cdh.get_resource(&resource_uri).await?, cli.raw)
        }
        Operation::UnsealSecret { secret_path } => {
            let secret = std::fs::read(&secret_path)
                .with_context(|| format!("reading {}", secret_path.display()))?;
            print_bytes(&cdh.unseal_secret(&secret).await?, cli.raw)
        }
        Operation::UnwrapKey {
            annotation_path,
            request,
        } => {
            let input = std::fs::read(&annotation_path)
                .with_context(|| format!("reading {}", annotation_path.display()))?;
            if request {
                print_bytes(&cdh.unwrap_key(&input).await?, cli.raw)
            } else {
                let answer = cdh.unwrap_key(&unwrap_request_for_packet(&input)).await?;
                print_bytes(&optsdata_of_unwrap_answer(&answer)?, cli.raw)
            }
        }
        Operation::PullImage {
            image_url,
            bundle_path,
        } => {
            println!("{}", cdh.pull_image(&image_url, &bundle_path).await?);
            Ok(())
        }
        Operation::SecureMount {
            volume_type,
            options,
            flags,
            mount_point,
        } => {
            let options: HashMap<String, String> = options.into_iter().collect();
            cdh.secure_mount(&volume_type, options, flags, &mount_point)
                .await?;
            println!("mounted at {mount_point}");
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cdh-tool: {:#}", anyhow!(e));
            ExitCode::FAILURE
        }
    }
}
