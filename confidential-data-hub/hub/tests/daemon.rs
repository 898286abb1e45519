//! Runs the real `confidential-data-hub` binary: offline_fs_kbc fed from temporary store
//! files, a fake kernel command line, a temporary credentials directory, and ttRPC calls
//! over its socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

mod common;

use common::{ctx, get_resource, resource, status_of, CDH, START};
use protos::{api, api_ttrpc};

/// Temporary files for one daemon run.
struct Setup {
    dir: tempfile::TempDir,
    cmdline: String,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // store files: the two "/etc" stores and one extra file; later ones overwrite
        std::fs::write(
            dir.path().join("keys.json"),
            r#"{"default/key/1": "b3ZlcndyaXR0ZW4="}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("extra.json"),
            // "\x00\x01binary\xff" and "hunter2"
            r#"{"default/key/1": "AAFiaW5hcnn/", "default/cred/pw": "aHVudGVyMg=="}"#,
        )
        .unwrap();
        Self {
            dir,
            cmdline: "BOOT_IMAGE=/vmlinuz ro quiet".to_string(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn socket(&self) -> PathBuf {
        self.path("run/cdh.sock")
    }

    fn kbs_dir(&self) -> PathBuf {
        self.path("kbs")
    }

    /// A config file with the socket in the temporary directory, then `rest`.
    fn config(&self, rest: &str) -> PathBuf {
        let path = self.path("cdh.toml");
        let text = format!(
            "socket = \"unix://{}\"\n{}",
            self.socket().display(),
            rest.replace("@KBS@", &self.kbs_dir().display().to_string())
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn spawn(&self, config: Option<&Path>) -> Daemon {
        self.spawn_with_env(config, &[])
    }

    /// [`Self::spawn`] with more environment variables.
    fn spawn_with_env(&self, config: Option<&Path>, env: &[(&str, &str)]) -> Daemon {
        std::fs::write(self.path("cmdline"), &self.cmdline).unwrap();
        let stderr = std::fs::File::create(self.path("stderr")).unwrap();
        let mut command = Command::new(CDH);
        if let Some(config) = config {
            command.arg("-c").arg(config);
        }
        let child = command
            .arg("--kernel-cmdline")
            .arg(self.path("cmdline"))
            .arg("--credentials-dir")
            .arg(self.kbs_dir())
            .arg("--offline-fs-kbc-keys")
            .arg(self.path("keys.json"))
            .arg("--offline-fs-kbc-resources")
            .arg(self.path("absent-resources.json"))
            .env_clear()
            .env("OFFLINE_FS_KBC_EXTRA_FILE_PATH", self.path("extra.json"))
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Daemon {
            child,
            stderr: self.path("stderr"),
        }
    }

    /// Runs the daemon expecting it to refuse to start; returns its stderr.
    fn expect_startup_failure(&self, config: Option<&Path>) -> String {
        let mut daemon = self.spawn(config);
        let status = daemon.wait_exit();
        let stderr = daemon.stderr();
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(!self.socket().exists(), "{stderr}");
        stderr
    }
}

/// The running binary; killed if a test fails before stopping it.
struct Daemon {
    child: Child,
    stderr: PathBuf,
}

impl Daemon {
    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + START;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn wait_for_socket(&mut self, socket: &Path) {
        let deadline = Instant::now() + START;
        while !testkit::process::unix_socket_accepts(socket) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("daemon exited with {status}: {}", self.stderr());
            }
            assert!(Instant::now() < deadline, "no socket: {}", self.stderr());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_exit()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn client(socket: &Path) -> ttrpc::r#async::Client {
    ttrpc::r#async::Client::connect(&format!("unix://{}", socket.display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn serves_get_resource_and_stops_on_sigterm() {
    let setup = Setup::new();
    let config = setup.config("[kbc]\nname = \"offline_fs_kbc\"\n");
    let mut daemon = setup.spawn(Some(&config));
    daemon.wait_for_socket(&setup.socket()).await;

    let connection = client(&setup.socket()).await;
    let resources = api_ttrpc::GetResourceServiceClient::new(connection.clone());

    // the extra file overwrote the key store's entry; bytes come back exactly
    assert_eq!(
        resource(&resources, "kbs:///default/key/1").await,
        b"\x00\x01binary\xff"
    );
    assert_eq!(
        resource(&resources, "kbs://any.host:1234/default/cred/pw").await,
        b"hunter2"
    );

    let (code, message) = status_of(get_resource(&resources, "kbs:///default/key/404").await);
    assert_eq!(code, ttrpc::Code::NOT_FOUND, "{message}");
    assert!(message.starts_with("[CDH] [ERROR]: "), "{message}");

    let (code, message) =
        status_of(get_resource(&resources, "kbs:///default/../../etc/passwd").await);
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "{message}");
    assert!(message.contains("dot segment"), "{message}");
    let (code, _) = status_of(get_resource(&resources, "file:///etc/passwd").await);
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT);

    // UnsealSecret is served (tests/sealed_secrets.rs covers it); a malformed secret is
    // INVALID_ARGUMENT
    let sealed = api_ttrpc::SealedSecretServiceClient::new(connection.clone());
    let req = api::UnsealSecretInput {
        secret: b"sealed.a.b.c".to_vec(),
        ..Default::default()
    };
    let (code, message) = status_of(sealed.unseal_secret(ctx(), &req).await);
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "{message}");
    assert!(
        message.contains("header is not unpadded base64url"),
        "{message}"
    );

    // PullImage checks its arguments before anything else
    let images = api_ttrpc::ImagePullServiceClient::new(connection.clone());
    let (code, message) = status_of(
        images
            .pull_image(ctx(), &api::ImagePullRequest::default())
            .await,
    );
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "{message}");
    assert!(message.contains("bundle_path"), "{message}");

    // SecureMount checks the volume type first
    let mounts = api_ttrpc::SecureMountServiceClient::new(connection.clone());
    let (code, message) = status_of(
        mounts
            .secure_mount(ctx(), &api::SecureMountRequest::default())
            .await,
    );
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "{message}");
    assert_eq!(
        message,
        "[CDH] [ERROR]: unknown volume_type ``; this hub mounts `block-device` volumes"
    );

    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "{}", daemon.stderr());
    assert!(!setup.socket().exists());
    assert!(daemon.stderr().contains("SIGTERM"), "{}", daemon.stderr());
}

#[tokio::test]
async fn provisions_credentials_with_mode_0600() {
    let mut setup = Setup::new();
    setup.cmdline = format!(
        "quiet cdh.kbs_resources=kbs:///default/key/1::{}/from-cmdline",
        setup.kbs_dir().display()
    );
    let config = setup.config(
        r#"
[kbc]
name = "offline_fs_kbc"

[[credentials]]
resource_uri = "kbs:///default/key/missing"
path = "@KBS@/missing"

[[credentials]]
resource_uri = "kbs:///default/cred/pw"
path = "@KBS@/registry/pw"
"#,
    );
    let mut daemon = setup.spawn(Some(&config));
    daemon.wait_for_socket(&setup.socket()).await;

    let written = setup.kbs_dir().join("from-cmdline");
    let deadline = Instant::now() + START;
    while !written.exists() {
        assert!(Instant::now() < deadline, "{}", daemon.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pw = setup.kbs_dir().join("registry/pw");
    assert_eq!(std::fs::read(&pw).unwrap(), b"hunter2");
    assert_eq!(std::fs::metadata(&pw).unwrap().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&written).unwrap(), b"\x00\x01binary\xff");
    assert_eq!(std::fs::metadata(&written).unwrap().mode() & 0o777, 0o600);
    // a resource that cannot be fetched is logged, and the daemon keeps serving
    assert!(!setup.kbs_dir().join("missing").exists());
    let resources = api_ttrpc::GetResourceServiceClient::new(client(&setup.socket()).await);
    assert_eq!(
        resource(&resources, "kbs:///default/cred/pw").await,
        b"hunter2"
    );
    assert!(
        daemon.stderr().contains("kbs:///default/key/missing"),
        "{}",
        daemon.stderr()
    );
    assert_eq!(daemon.terminate().code(), Some(0));
}

#[test]
fn refuses_credentials_outside_the_credentials_dir() {
    let setup = Setup::new();
    let outside = setup.path("outside");
    let config = setup.config(&format!(
        "[kbc]\nname = \"offline_fs_kbc\"\n[[credentials]]\nresource_uri = \"kbs:///default/cred/pw\"\npath = \"{}\"\n",
        outside.display()
    ));
    let stderr = setup.expect_startup_failure(Some(&config));
    assert!(stderr.contains("credentials[0].path"), "{stderr}");
    assert!(
        stderr.contains("not inside the credentials directory"),
        "{stderr}"
    );
    assert!(!outside.exists());

    let config = setup.config(
        "[kbc]\nname = \"offline_fs_kbc\"\n[[credentials]]\nresource_uri = \"kbs:///default/cred/pw\"\npath = \"@KBS@/../outside\"\n",
    );
    let stderr = setup.expect_startup_failure(Some(&config));
    assert!(stderr.contains("credentials[0].path"), "{stderr}");
    assert!(!outside.exists());
}

#[test]
fn malformed_config_exits_1_naming_the_key() {
    let setup = Setup::new();
    for (rest, key) in [
        ("[kbc]\nname = 5\n", "kbc.name"),
        ("[kbc]\nurl = \"http://kbs\"\n", "kbc.name"),
        (
            "[kbc]\nname = \"offline_fs_kbc\"\n[image]\nmax_concurrent_layer_downloads_per_image = \"3\"\n",
            "image.max_concurrent_layer_downloads_per_image",
        ),
        ("[kbc]\nname = \"offline_fs_kbc\"\n[log]\nlevel = \"x=y=z\"\n", "log.level"),
    ] {
        let config = setup.config(rest);
        let stderr = setup.expect_startup_failure(Some(&config));
        assert!(stderr.contains(&format!("`{key}`")), "{rest}: {stderr}");
    }
    let stderr = setup.expect_startup_failure(Some(&setup.path("no-such.toml")));
    assert!(stderr.contains("no-such.toml"), "{stderr}");
}

#[test]
fn kbc_problems_stop_the_start() {
    let mut setup = Setup::new();
    let config = setup.config("[kbc]\nname = \"sample_kbc\"\n");
    let stderr = setup.expect_startup_failure(Some(&config));
    assert!(stderr.contains("unknown KBC `sample_kbc`"), "{stderr}");

    // without -c the KBC comes from the kernel command line
    #[cfg(not(feature = "kbs"))]
    {
        setup.cmdline = "agent.aa_kbc_params=cc_kbc::http://127.0.0.1:8080".into();
        let stderr = setup.expect_startup_failure(None);
        assert!(stderr.contains("not compiled into this build"), "{stderr}");
    }
    #[cfg(feature = "kbs")]
    {
        setup.cmdline = "agent.aa_kbc_params=cc_kbc::".into();
        let stderr = setup.expect_startup_failure(None);
        assert!(stderr.contains("cc_kbc needs the KBS address"), "{stderr}");
        setup.cmdline = "agent.aa_kbc_params=cc_kbc::kbs.example:8080".into();
        let stderr = setup.expect_startup_failure(None);
        assert!(stderr.contains("setting up cc_kbc"), "{stderr}");
        assert!(stderr.contains("kbs.example:8080"), "{stderr}");
    }

    // a broken store file is named
    std::fs::write(setup.path("extra.json"), r#"{"default/key/1": 1}"#).unwrap();
    let config = setup.config("[kbc]\nname = \"offline_fs_kbc\"\n");
    let stderr = setup.expect_startup_failure(Some(&config));
    assert!(stderr.contains("extra.json"), "{stderr}");
    assert!(stderr.contains("`default/key/1`"), "{stderr}");
}

#[test]
fn version_flag() {
    let output = Command::new(CDH).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        format!("confidential-data-hub {}", env!("CARGO_PKG_VERSION"))
    );
}

/// One malformed or hostile `cdh.kbs_resources` entry is skipped with a warning naming
/// it; the good entries are still provisioned and nothing is written outside.
#[tokio::test]
async fn malformed_kbs_resources_entries_are_skipped() {
    let mut setup = Setup::new();
    let kbs = setup.kbs_dir().display().to_string();
    let outside = setup.path("outside");
    setup.cmdline = format!(
        "quiet cdh.kbs_resources=kbs:///default/cred/pw::{kbs}/good,no-separator-here,\
         kbs:///default/key/1::{},kbs:///default/key/1::{kbs}/../escape,\
         kbs:///default/key/1::{kbs}/also-good",
        outside.display()
    );
    let config = setup.config("[kbc]\nname = \"offline_fs_kbc\"\n");
    let mut daemon = setup.spawn(Some(&config));
    daemon.wait_for_socket(&setup.socket()).await;
    let good = setup.kbs_dir().join("also-good");
    let deadline = Instant::now() + START;
    while !good.exists() {
        assert!(Instant::now() < deadline, "{}", daemon.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        std::fs::read(setup.kbs_dir().join("good")).unwrap(),
        b"hunter2"
    );
    assert_eq!(std::fs::read(&good).unwrap(), b"\x00\x01binary\xff");
    assert!(!outside.exists());
    assert!(!setup.path("escape").exists());
    let stderr = daemon.stderr();
    for entry in [
        "no-separator-here".to_string(),
        format!("kbs:///default/key/1::{}", outside.display()),
        format!("kbs:///default/key/1::{kbs}/../escape"),
    ] {
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.contains("WARN") && l.contains(&format!("entry `{entry}` skipped")))
                .count(),
            1,
            "{entry}: {stderr}"
        );
    }
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// `AA_KBC_PARAMS` and `AA_SOCKET` win over the file (upstream's precedence), said at info.
#[tokio::test]
async fn the_environment_overrides_the_config_file() {
    let setup = Setup::new();
    // on its own this file cannot start: its cc_kbc URL has no scheme
    let config = setup.config(
        "[aa]\naa_socket = \"unix:///file/aa.sock\"\n[kbc]\nname = \"cc_kbc\"\nurl = \"kbs.example:8080\"\n",
    );
    #[cfg(feature = "kbs")]
    {
        let stderr = setup.expect_startup_failure(Some(&config));
        assert!(stderr.contains("setting up cc_kbc"), "{stderr}");
    }
    let aa = format!("unix://{}", setup.path("env-aa.sock").display());
    let mut daemon = setup.spawn_with_env(
        Some(&config),
        &[("AA_KBC_PARAMS", "offline_fs_kbc::"), ("AA_SOCKET", &aa)],
    );
    daemon.wait_for_socket(&setup.socket()).await;
    let resources = api_ttrpc::GetResourceServiceClient::new(client(&setup.socket()).await);
    assert_eq!(
        resource(&resources, "kbs:///default/cred/pw").await,
        b"hunter2"
    );
    let stderr = daemon.stderr();
    for note in [
        "environment variable AA_KBC_PARAMS=`offline_fs_kbc::` overrides `kbc.name/kbc.url`=`cc_kbc::kbs.example:8080`".to_string(),
        format!("environment variable AA_SOCKET=`{aa}` overrides `aa.aa_socket`=`unix:///file/aa.sock`"),
    ] {
        assert!(
            stderr.lines().any(|l| l.contains("INFO") && l.contains(&note)),
            "{note}: {stderr}"
        );
    }
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// A repeated `agent.aa_kbc_params` or `cdh.kbs_resources` counts its first value, as
/// upstream (which stops at the first match).
#[tokio::test]
async fn the_first_of_a_repeated_kernel_parameter_counts() {
    let mut setup = Setup::new();
    // the first one cannot start the hub: it is the one that counts (the second would)
    setup.cmdline =
        "agent.aa_kbc_params=cc_kbc:: ro agent.aa_kbc_params=offline_fs_kbc::null".to_string();
    let stderr = setup.expect_startup_failure(None);
    #[cfg(feature = "kbs")]
    assert!(stderr.contains("cc_kbc needs the KBS address"), "{stderr}");
    #[cfg(not(feature = "kbs"))]
    assert!(stderr.contains("not compiled into this build"), "{stderr}");

    let kbs = setup.kbs_dir().display().to_string();
    setup.cmdline = format!(
        "cdh.kbs_resources=kbs:///default/cred/pw::{kbs}/first quiet \
         cdh.kbs_resources=kbs:///default/cred/pw::{kbs}/second"
    );
    let config = setup.config("[kbc]\nname = \"offline_fs_kbc\"\n");
    let mut daemon = setup.spawn(Some(&config));
    daemon.wait_for_socket(&setup.socket()).await;
    let first = setup.kbs_dir().join("first");
    let deadline = Instant::now() + START;
    while !first.exists() {
        assert!(Instant::now() < deadline, "{}", daemon.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(std::fs::read(&first).unwrap(), b"hunter2");
    assert_eq!(daemon.terminate().code(), Some(0));
    assert!(!setup.kbs_dir().join("second").exists());
    assert!(
        daemon.stderr().contains("`cdh.kbs_resources` in"),
        "{}",
        daemon.stderr()
    );
    assert!(
        daemon
            .stderr()
            .contains("is given 2 times: the first one counts"),
        "{}",
        daemon.stderr()
    );
}

/// Without `-c`, `CDH_CONFIG_PATH` names the config file (upstream).
#[tokio::test]
async fn cdh_config_path_names_the_config_file() {
    let setup = Setup::new();
    let config = setup.config("[kbc]\nname = \"offline_fs_kbc\"\n");
    let mut daemon = setup.spawn_with_env(None, &[("CDH_CONFIG_PATH", config.to_str().unwrap())]);
    // the socket is the one the file names
    daemon.wait_for_socket(&setup.socket()).await;
    assert!(
        daemon.stderr().contains("from CDH_CONFIG_PATH"),
        "{}",
        daemon.stderr()
    );
    assert_eq!(daemon.terminate().code(), Some(0));
}

/// Upstream's example config (`kbs_cert = ""`, `services_dir`, every `[image]` key)
/// starts the hub, which also serves one socket per service in `services_dir`.
#[tokio::test]
async fn upstreams_example_config_starts_and_serves_services_dir() {
    let setup = Setup::new();
    let services = setup.path("guest-services");
    let example = |kbc: &str| {
        setup.config(&format!(
            r#"services_dir = "{}"

[aa]
aa_socket = "unix://{}"

[kbc]
{kbc}
kbs_cert = ""

[[credentials]]
path = "@KBS@/kms-credential/aliyun/ecsRamRole.json"
resource_uri = "kbs:///default/aliyun/ecs_ram_role"

[image]
max_concurrent_layer_downloads_per_image = 3
sigstore_config_uri = "kbs:///default/sigstore-config/test"
image_security_policy_uri = "kbs:///default/security-policy/test"
authenticated_registry_credentials_uri = "kbs:///default/credential/test"
anonymous_fallback_on_unauthorized = false
registry_configuration_uri = "kbs:///default/registry-configuration/test"
work_dir = "{}"

[image.registry_config]
unqualified-search-registries = ["docker.io", "example1.com"]

[[image.registry_config.registry]]
prefix = "example.com/banned"
blocked = true

[image.image_pull_proxy]
https_proxy = "http://127.0.0.1:5432"
http_proxy = "http://127.0.0.1:5432"
no_proxy = "192.168.0.1,localhost"

[log]
level = "info"
"#,
            services.display(),
            setup.path("aa.sock").display(),
            setup.path("image").display(),
        ))
    };

    // cc_kbc as in the example: the empty certificate is no certificate
    #[cfg(feature = "kbs")]
    {
        let config = example("name = \"cc_kbc\"\nurl = \"http://127.0.0.1:9\"");
        let mut daemon = setup.spawn(Some(&config));
        daemon.wait_for_socket(&setup.socket()).await;
        assert_eq!(daemon.terminate().code(), Some(0), "{}", daemon.stderr());
    }

    let config = example("name = \"offline_fs_kbc\"\nurl = \"\"");
    let mut daemon = setup.spawn(Some(&config));
    daemon.wait_for_socket(&setup.socket()).await;
    for name in [
        "imagepull.sock",
        "sealedsecrets.sock",
        "securemount.sock",
        "getresource.sock",
    ] {
        assert!(services.join(name).exists(), "{name}: {}", daemon.stderr());
    }
    // getresource.sock serves GetResource, and only that
    let one = client(&services.join("getresource.sock")).await;
    let resources = api_ttrpc::GetResourceServiceClient::new(one.clone());
    assert_eq!(
        resource(&resources, "kbs:///default/cred/pw").await,
        b"hunter2"
    );
    let secrets = api_ttrpc::SealedSecretServiceClient::new(one);
    let (code, message) = status_of(
        secrets
            .unseal_secret(ctx(), &api::UnsealSecretInput::default())
            .await,
    );
    assert_eq!(code, ttrpc::Code::INVALID_ARGUMENT, "{message}");
    assert!(message.contains("service does not exist"), "{message}");
    assert_eq!(daemon.terminate().code(), Some(0));
    // every socket is removed at the stop
    assert!(!services.join("getresource.sock").exists());
    assert!(!setup.socket().exists());
}
