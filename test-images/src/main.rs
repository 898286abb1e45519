//! `test-images build --out DIR` writes the fixtures into an OCI layout;
//! `test-images serve` starts a local registry holding them until Ctrl-C.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use test_images::{fixtures, push_image, OciLayout, Registry, RegistryOptions};

#[derive(Parser)]
#[command(about = "Builds the suite's OCI test images and serves them from a local registry")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write every fixture into an OCI layout, tagged by fixture name.
    Build {
        /// layout directory
        #[arg(long)]
        out: PathBuf,
        /// also write the large image of this many MiB (tag `large`)
        #[arg(long)]
        large_mib: Option<u64>,
        /// layer count of the large image
        #[arg(long, default_value_t = 8)]
        large_layers: usize,
    },
    /// Start a registry on 127.0.0.1, push every fixture, and serve until Ctrl-C.
    Serve {
        /// serve HTTPS (the CA is written to `<work>/ca.pem`)
        #[arg(long)]
        tls: bool,
        /// require basic auth with this user (needs --password)
        #[arg(long, requires = "password")]
        user: Option<String>,
        /// password for --user
        #[arg(long)]
        password: Option<String>,
        /// where to keep the layout and the CA
        #[arg(long)]
        work: PathBuf,
    },
}

fn write_all(layout: &OciLayout) -> anyhow::Result<Vec<(String, test_images::Descriptor)>> {
    let mut written = Vec::new();
    for (repo, image) in fixtures::all() {
        let built = layout
            .write_image(&image)
            .with_context(|| format!("building {repo}"))?;
        let tag = repo.rsplit('/').next().unwrap_or(repo).to_string();
        layout.tag(&tag, &built.manifest)?;
        written.push((repo.to_string(), built.manifest));
    }
    let index = fixtures::write_multi_arch(layout)?;
    layout.tag("multi-arch", &index)?;
    written.push(("test/multi-arch".to_string(), index));
    Ok(written)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Build {
            out,
            large_mib,
            large_layers,
        } => {
            let layout = OciLayout::create(&out)?;
            for (repo, descriptor) in write_all(&layout)? {
                println!("{repo}\t{}", descriptor.digest);
            }
            if let Some(mib) = large_mib {
                let built = layout.write_image(&fixtures::large(mib << 20, large_layers))?;
                layout.tag("large", &built.manifest)?;
                println!("test/large\t{}", built.manifest.digest);
            }
        }
        Cmd::Serve {
            tls,
            user,
            password,
            work,
        } => {
            let layout = OciLayout::create(work.join("oci"))?;
            let written = write_all(&layout)?;
            let registry = Registry::start(RegistryOptions {
                credentials: user.zip(password),
                tls,
                token_auth: None,
            })?;
            if let Some(ca) = registry.ca_pem() {
                std::fs::write(work.join("ca.pem"), ca)?;
            }
            for (repo, descriptor) in &written {
                push_image(&layout, descriptor, &registry.target(), repo, "v1").await?;
                println!("{}/{repo}:v1\t{}", registry.host(), descriptor.digest);
            }
            println!("serving on {} (Ctrl-C stops)", registry.url());
            tokio::signal::ctrl_c().await?;
            registry.stop()?;
        }
    }
    Ok(())
}
