//! Shared by the integration tests: a temporary guest directory, the real
//! `confidential-data-hub` binary on a temporary socket with `offline_fs_kbc`, and the
//! suite's command-line tools.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use protos::{api, api_ttrpc};
use sha2::Digest as _;
use testkit::process::{Daemon, Ready};

pub(crate) const CDH: &str = env!("CARGO_BIN_EXE_confidential-data-hub");
pub(crate) const SECRET: &str = env!("CARGO_BIN_EXE_secret");
pub(crate) const CDH_TOOL: &str = env!("CARGO_BIN_EXE_cdh-tool");
pub(crate) const AA_CLIENT: &str = env!("CARGO_BIN_EXE_aa-client");
pub(crate) const START: Duration = Duration::from_secs(20);

/// The temporary directories of one guest.
pub(crate) struct Guest {
    pub dir: tempfile::TempDir,
}

impl Default for Guest {
    fn default() -> Self {
        Self::new()
    }
}

impl Guest {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["kbs", "sealed-secret", "kms/offline_fs"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("cmdline"), "console=ttyS0\n").unwrap();
        Self { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn cdh_sock(&self) -> PathBuf {
        self.path("cdh.sock")
    }

    pub(crate) fn cdh_addr(&self) -> String {
        format!("unix://{}", self.cdh_sock().display())
    }

    pub(crate) fn sealed_secret_dir(&self) -> PathBuf {
        self.path("sealed-secret")
    }

    pub(crate) fn kms_dir(&self) -> PathBuf {
        self.path("kms")
    }

    /// Writes the offline_fs_kbc store the hub reads: `repo/type/tag` → bytes.
    pub(crate) fn set_resources(&self, resources: &[(&str, &[u8])]) {
        let map: serde_json::Map<String, serde_json::Value> = resources
            .iter()
            .map(|(k, v)| (k.to_string(), STANDARD.encode(v).into()))
            .collect();
        std::fs::write(
            self.path("resources.json"),
            serde_json::Value::Object(map).to_string(),
        )
        .unwrap();
    }

    /// The hub command: config `socket` plus `config`, offline stores in this directory.
    pub(crate) fn cdh_command(&self, config: &str) -> Command {
        self.cdh_command_with_kms_dir(config, &self.kms_dir())
    }

    /// [`Guest::cdh_command`] with the KMS provider credentials in `kms_dir`.
    pub(crate) fn cdh_command_with_kms_dir(&self, config: &str, kms_dir: &Path) -> Command {
        std::fs::write(
            self.path("cdh.toml"),
            format!("socket = \"{}\"\n{config}", self.cdh_addr()),
        )
        .unwrap();
        let mut cmd = Command::new(CDH);
        cmd.arg("-c")
            .arg(self.path("cdh.toml"))
            .arg("--kernel-cmdline")
            .arg(self.path("cmdline"))
            .arg("--credentials-dir")
            .arg(self.path("kbs"))
            .arg("--offline-fs-kbc-keys")
            .arg(self.path("no-keys.json"))
            .arg("--offline-fs-kbc-resources")
            .arg(self.path("resources.json"))
            .arg("--sealed-secret-dir")
            .arg(self.sealed_secret_dir())
            .arg("--kms-credential-dir")
            .arg(kms_dir)
            .env_clear()
            .env("RUST_LOG", "debug");
        cmd
    }

    /// The attestation agent's socket in this guest.
    pub(crate) fn aa_sock(&self) -> PathBuf {
        aa_sock_in(self.dir.path())
    }

    /// Starts the real attestation agent in this guest; see [`start_sample_aa`].
    pub(crate) fn start_aa(&self, config: &str) -> Daemon {
        start_sample_aa(self.dir.path(), config)
    }

    /// Starts the hub with `offline_fs_kbc` and `top_level` config lines (before any
    /// section).
    pub(crate) fn start_cdh(&self, top_level: &str) -> Daemon {
        let config = format!("{top_level}[kbc]\nname = \"offline_fs_kbc\"\n");
        self.spawn_cdh(self.cdh_command(&config))
    }

    /// Starts `cmd`, a hub command of this guest, and waits for its socket.
    pub(crate) fn spawn_cdh(&self, cmd: Command) -> Daemon {
        Daemon::spawn(
            "cdh",
            cmd,
            self.dir.path(),
            Ready::Unix(self.cdh_sock()),
            START,
        )
        .unwrap()
    }

    /// An envelope secret sealed by `key` under `kid`: `plaintext` encrypted with the key
    /// `key_id` of `provider` (`[name, settings as JSON]`), the tool reading the provider's
    /// credentials from this guest's KMS directory; `extra`: more arguments of the tool.
    pub(crate) fn seal_envelope(
        &self,
        key: &SigningKey,
        kid: &str,
        plaintext: &[u8],
        key_id: &str,
        [provider, settings]: [&str; 2],
        extra: &[&str],
    ) -> String {
        let file = self.path("plain");
        std::fs::write(&file, plaintext).unwrap();
        let kms_dir = self.kms_dir();
        let mut args = vec![
            "envelope",
            "--key-id",
            key_id,
            "--file-path",
            path_str(&file),
            "--provider",
            provider,
            "--provider-settings",
            settings,
            "--kms-credential-dir",
            path_str(&kms_dir),
        ];
        args.extend_from_slice(extra);
        key.seal(kid, &args)
    }

    /// A new signing key whose public key this guest's sealed-secret directory holds as
    /// `kid`.
    pub(crate) fn signing_key(&self, kid: &str) -> SigningKey {
        let key = SigningKey::generate(self.path("keys"), kid);
        std::fs::write(self.sealed_secret_dir().join(kid), key.public_jwk()).unwrap();
        key
    }
}

/// The attestation agent's socket under a guest directory `dir`.
pub(crate) fn aa_sock_in(dir: &Path) -> PathBuf {
    dir.join("aa/attestation-agent.sock")
}

/// Starts the real attestation agent under `dir` (which holds a `cmdline` file) with the
/// sample attester allowed, `config` (more TOML) appended to its config, and its eventlog
/// in `dir/eventlog`.
pub(crate) fn start_sample_aa(dir: &Path, config: &str) -> Daemon {
    let config_path = dir.join("aa.toml");
    std::fs::write(
        &config_path,
        format!("[attester]\nallow_sample = true\n\n{config}"),
    )
    .unwrap();
    let mut cmd = Command::new(testkit::process::workspace_bin("attestation-agent").unwrap());
    cmd.arg("-c")
        .arg(config_path)
        .arg("--attestation_sock")
        .arg(format!("unix://{}", aa_sock_in(dir).display()))
        .arg("--kernel-cmdline")
        .arg(dir.join("cmdline"))
        .arg("--eventlog-dir")
        .arg(dir.join("eventlog"))
        .env_remove("AA_KBC_PARAMS")
        .env_remove("AA_SAMPLE_ATTESTER")
        .env("RUST_LOG", "debug");
    Daemon::spawn("aa", cmd, dir, Ready::Unix(aa_sock_in(dir)), START).unwrap()
}

/// Runs a tool and returns its output.
pub(crate) fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap()
}

/// Runs a tool that must succeed; returns its standard output.
pub(crate) fn run_ok(program: &str, args: &[&str]) -> Vec<u8> {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A sealed-secret signing key made by `secret keygen` in its own directory.
pub(crate) struct SigningKey {
    dir: PathBuf,
}

impl SigningKey {
    /// `secret keygen --kid <kid> --output-dir <dir>`.
    pub(crate) fn generate(dir: PathBuf, kid: &str) -> Self {
        run_ok(
            SECRET,
            &["keygen", "--kid", kid, "--output-dir", path_str(&dir)],
        );
        Self { dir }
    }

    /// The public JWK the guest verifies with.
    pub(crate) fn public_jwk(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("public.jwk")).unwrap()
    }

    pub(crate) fn private_jwk_path(&self) -> PathBuf {
        self.dir.join("private.jwk")
    }

    /// `secret seal` signed with this key under `kid`; `kind` is the sub-command and its
    /// arguments (`vault ...`, `envelope ...`).
    pub(crate) fn seal(&self, kid: &str, kind: &[&str]) -> String {
        let jwk = self.private_jwk_path();
        let mut args = vec![
            "seal",
            "--signing-kid",
            kid,
            "--signing-jwk-path",
            path_str(&jwk),
        ];
        args.extend_from_slice(kind);
        String::from_utf8(run_ok(SECRET, &args))
            .unwrap()
            .trim_end()
            .to_string()
    }

    /// A vault secret `name` of `provider` (`[name, settings as JSON]`) sealed under `kid`.
    pub(crate) fn seal_vault(
        &self,
        kid: &str,
        name: &str,
        [provider, settings]: [&str; 2],
    ) -> String {
        self.seal(
            kid,
            &[
                "vault",
                "--resource-uri",
                name,
                "--provider",
                provider,
                "--provider-settings",
                settings,
            ],
        )
    }
}

pub(crate) fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

pub(crate) fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(Duration::from_secs(30).as_nanos() as i64)
}

pub(crate) fn status_of<T: std::fmt::Debug>(result: ttrpc::Result<T>) -> (ttrpc::Code, String) {
    match result {
        Err(ttrpc::Error::RpcStatus(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected an RPC status, got {other:?}"),
    }
}

pub(crate) async fn connect(addr: &str) -> ttrpc::r#async::Client {
    ttrpc::r#async::Client::connect(addr).await.unwrap()
}

/// `GetResource(path)`: the resource's bytes or the call's error.
pub(crate) async fn get_resource(
    client: &api_ttrpc::GetResourceServiceClient,
    path: &str,
) -> ttrpc::Result<Vec<u8>> {
    let req = api::GetResourceRequest {
        ResourcePath: path.to_string(),
        ..Default::default()
    };
    client.get_resource(ctx(), &req).await.map(|r| r.Resource)
}

/// `GetResource(path)`, which must succeed: the resource's bytes.
pub(crate) async fn resource(client: &api_ttrpc::GetResourceServiceClient, path: &str) -> Vec<u8> {
    get_resource(client, path).await.unwrap()
}

/// `UnsealSecret(secret)`: the plaintext or the call's error.
pub(crate) async fn unseal(
    client: &api_ttrpc::SealedSecretServiceClient,
    secret: &[u8],
) -> ttrpc::Result<Vec<u8>> {
    let req = api::UnsealSecretInput {
        secret: secret.to_vec(),
        ..Default::default()
    };
    client.unseal_secret(ctx(), &req).await.map(|r| r.plaintext)
}

/// Waits until `cdh` has written `path` (a credential it provisions at start).
pub(crate) async fn wait_for_file(path: &Path, cdh: &Daemon) {
    let deadline = std::time::Instant::now() + START;
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "{}", cdh.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every entry below `root`: type, mode, owner, and content digest or link target.
pub(crate) fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let kind = meta.file_type();
            let what = if kind.is_dir() {
                walk(root, &path, out);
                "dir".to_string()
            } else if kind.is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else if kind.is_file() {
                let data = std::fs::read(&path).unwrap();
                format!("file {}", hex::encode(sha2::Sha256::digest(&data)))
            } else if kind.is_fifo() {
                "fifo".to_string()
            } else {
                format!("other {:?}", kind)
            };
            let name = path.strip_prefix(root).unwrap().display().to_string();
            out.insert(
                name,
                format!(
                    "{what} mode {:o} owner {}:{}",
                    meta.mode(),
                    meta.uid(),
                    meta.gid()
                ),
            );
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}
