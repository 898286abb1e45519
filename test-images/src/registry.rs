//! A real `docker-registry` (distribution v2) on 127.0.0.1, started and stopped by a test:
//! temporary storage, a free port, optional htpasswd (bcrypt) auth, optional TLS with a
//! generated CA.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oci_model::{Algorithm, Digest};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use testkit::process::{free_port, Daemon, Ready};

use crate::error::{Error, Result};
use crate::push::PushTarget;

/// Stands for the listen address in the config text until a port is chosen.
const ADDR_PLACEHOLDER: &str = "@ADDR@";

/// How to run the registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// require HTTP basic auth with this user and password (htpasswd, bcrypt)
    pub credentials: Option<(String, String)>,
    /// serve HTTPS with a certificate from a generated CA
    pub tls: bool,
    /// require bearer tokens from a token server that accepts this user and password
    pub token_auth: Option<(String, String)>,
}

/// A running registry; stopped (and its storage removed) when dropped.
#[derive(Debug)]
pub struct Registry {
    daemon: Option<Daemon>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    options: RegistryOptions,
    ca_pem: Option<String>,
    token: Option<crate::token::TokenServer>,
}

impl Registry {
    /// Starts `docker-registry serve` and waits until it accepts connections.
    pub fn start(options: RegistryOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("test-registry-")
            .tempdir()
            .map_err(Error::io("create registry directory", std::env::temp_dir()))?;
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage).map_err(Error::io("create", &storage))?;

        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {ADDR_PLACEHOLDER}\n",
            storage.display()
        );
        let mut ca_pem = None;
        if options.tls {
            let material = generate_tls()?;
            let cert = dir.path().join("server.crt");
            let key = dir.path().join("server.key");
            fs::write(&cert, &material.cert_pem).map_err(Error::io("write", &cert))?;
            fs::write(&key, &material.key_pem).map_err(Error::io("write", &key))?;
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
            ca_pem = Some(material.ca_pem);
        }
        let mut token = None;
        if let Some((user, password)) = &options.token_auth {
            let server = crate::token::TokenServer::start(user, password)?;
            let bundle = dir.path().join("token-ca.pem");
            fs::write(&bundle, server.ca_pem()).map_err(Error::io("write", &bundle))?;
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                server.realm(),
                crate::token::SERVICE,
                crate::token::ISSUER,
                bundle.display()
            ));
            token = Some(server);
        } else if let Some((user, password)) = &options.credentials {
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, bcrypt_entry(user, password)?)
                .map_err(Error::io("write", &htpasswd))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        // A free port can be taken by someone else before the registry binds it (tests
        // start registries in parallel): if the registry then exits, try another port.
        let mut attempt = 0;
        let (daemon, addr) = loop {
            attempt += 1;
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            let text = config.replace(ADDR_PLACEHOLDER, &addr.to_string());
            fs::write(&config_path, text).map_err(Error::io("write", &config_path))?;
            let mut cmd = Command::new("docker-registry");
            cmd.arg("serve").arg(&config_path);
            let spawned = Daemon::spawn(
                "docker-registry",
                cmd,
                dir.path(),
                Ready::Tcp(addr),
                Duration::from_secs(20),
            );
            let mut daemon = match spawned {
                Ok(daemon) => daemon,
                Err(e) if attempt < 5 && e.to_string().contains("address already in use") => {
                    continue
                }
                Err(e) => {
                    return Err(Error::Tool {
                        tool: "docker-registry",
                        message: format!("{e} (is the Debian package docker-registry installed?)"),
                    })
                }
            };
            std::thread::sleep(Duration::from_millis(50));
            match daemon.try_wait()? {
                None => break (daemon, addr),
                Some(status) if attempt < 5 => {
                    tracing::debug!(%status, port = addr.port(), "registry exited right after start; trying another port");
                }
                Some(status) => {
                    return Err(Error::Tool {
                        tool: "docker-registry",
                        message: format!("exited with {status}: {}", daemon.stderr()),
                    })
                }
            }
        };
        Ok(Self {
            daemon: Some(daemon),
            dir,
            addr,
            options,
            ca_pem,
            token,
        })
    }

    /// `127.0.0.1:<port>`, the registry part of image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:<port>` or `https://…`.
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The PEM of the CA that signed the server certificate (TLS only).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The user and password basic auth requires, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.options
            .credentials
            .as_ref()
            .or(self.options.token_auth.as_ref())
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The token endpoint, in token auth mode.
    pub fn token_realm(&self) -> Option<String> {
        self.token.as_ref().map(crate::token::TokenServer::realm)
    }

    /// Where to push to this registry.
    pub fn target(&self) -> PushTarget {
        PushTarget {
            base_url: self.url(),
            credentials: self
                .credentials()
                .map(|(u, p)| (u.to_string(), p.to_string())),
            ca_pem: self.ca_pem.clone(),
            token_realm: self.token_realm(),
        }
    }

    /// The registry's filesystem storage root.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// What the registry wrote to stderr so far.
    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::stderr).unwrap_or_default()
    }

    /// Rewrites the stored bytes of blob `digest` in place with `tamper` (a corrupt or
    /// malicious registry: it then serves content that does not match the digest).
    pub fn tamper_blob(&self, digest: &str, tamper: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let path = blob_data_path(&self.storage_dir(), digest)?;
        let mut data = fs::read(&path).map_err(Error::io("read stored blob", &path))?;
        tamper(&mut data);
        fs::write(&path, data).map_err(Error::io("rewrite stored blob", &path))?;
        Ok(())
    }

    /// Stops the registry.
    pub fn stop(mut self) -> Result<()> {
        if let Some(daemon) = self.daemon.take() {
            daemon.stop()?;
        }
        Ok(())
    }
}

fn blob_data_path(storage: &Path, digest: &str) -> Result<PathBuf> {
    let digest = Digest::parse(digest).map_err(|e| Error::InvalidImage(e.to_string()))?;
    if digest.algorithm() != Algorithm::Sha256 {
        return Err(Error::InvalidImage(format!(
            "{digest}: the registry's storage is read for sha256 blobs only"
        )));
    }
    let hex = digest.hex();
    Ok(storage
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data"))
}

/// One htpasswd line with a bcrypt hash, from `htpasswd -B` (the only hash the registry
/// accepts).
fn bcrypt_entry(user: &str, password: &str) -> Result<String> {
    let output = Command::new("htpasswd")
        .args(["-nbB", user, password])
        .output()
        .map_err(|e| Error::Tool {
            tool: "htpasswd",
            message: format!("{e} (install apache2-utils)"),
        })?;
    if !output.status.success() {
        return Err(Error::Tool {
            tool: "htpasswd",
            message: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    Ok(format!("{text}\n"))
}

struct TlsFiles {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn generate_tls() -> Result<TlsFiles> {
    let err = |e: rcgen::Error| Error::Certificate(e.to_string());
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test-images registry CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().map_err(err)?;
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(err)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "test-images registry");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(err)?;
    Ok(TlsFiles {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_storage_paths_follow_the_registry_layout() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let p = blob_data_path(Path::new("/s"), &d).unwrap();
        assert_eq!(
            p,
            Path::new("/s/docker/registry/v2/blobs/sha256/ab")
                .join("ab".repeat(32))
                .join("data")
        );
        assert!(blob_data_path(Path::new("/s"), "sha256:../x").is_err());
    }

    #[test]
    fn htpasswd_entries_are_bcrypt() {
        let line = bcrypt_entry("alice", "s3cret").unwrap();
        assert!(line.starts_with("alice:$2y$"), "{line}");
    }
}
