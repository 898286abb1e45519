//! Shared by the integration tests: real peers (a local `docker-registry`, `gpg` in a
//! private GNUPGHOME, `skopeo`, `openssl`), a tiny HTTP server, and the policy request
//! for an image in the registry.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine;
use image_policy::{ContainersPolicy, DocumentSource, PolicyOptions};
use image_rs::Digest;
use image_rs::Reference;
use image_rs::{ClientSettings, Credentials, RegistryClient, Repository};
use image_rs::{PolicyError, PolicyRequest, SignaturePolicy};
use image_rs::{ResourceError, ResourceProvider};
use test_images::{BuiltImage, Descriptor, ImageSpec, OciLayout};
use test_images::{Registry, RegistryOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs a command, panicking with its output if it fails.
pub(crate) fn run(cmd: &mut Command) -> Output {
    let output = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A GPG key in its own GNUPGHOME.
pub(crate) struct Gpg {
    pub home: tempfile::TempDir,
    /// primary key fingerprint
    pub fingerprint: String,
}

/// What kind of key to generate.
pub(crate) enum KeyKind {
    /// an RSA-2048 primary key that signs
    Rsa,
    /// an Ed25519 certification-only primary key with an Ed25519 signing subkey
    Ed25519WithSigningSubkey,
    /// an RSA key created on 2020-01-01 that expired on 2020-06-01
    Expired,
}

impl Gpg {
    pub(crate) fn generate(name: &str, kind: KeyKind) -> Self {
        let home = tempfile::Builder::new().prefix("gnupg-").tempdir().unwrap();
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let params = match kind {
            KeyKind::Rsa => format!(
                "%no-protection\nKey-Type: RSA\nKey-Length: 2048\nKey-Usage: sign\nName-Real: {name}\nName-Email: {name}@policy.test\nExpire-Date: 0\n%commit\n"
            ),
            KeyKind::Ed25519WithSigningSubkey => format!(
                "%no-protection\nKey-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: cert\nSubkey-Type: EDDSA\nSubkey-Curve: ed25519\nSubkey-Usage: sign\nName-Real: {name}\nName-Email: {name}@policy.test\nExpire-Date: 0\n%commit\n"
            ),
            KeyKind::Expired => format!(
                "%no-protection\nKey-Type: RSA\nKey-Length: 2048\nKey-Usage: sign\nName-Real: {name}\nName-Email: {name}@policy.test\nExpire-Date: 2020-06-01\n%commit\n"
            ),
        };
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", home.path())
            .args(["--batch", "--quiet"]);
        if matches!(kind, KeyKind::Expired) {
            cmd.arg("--faked-system-time=20200101T000000!");
        }
        cmd.arg("--gen-key")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(params.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "gpg --gen-key: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let listing = run(Command::new("gpg").env("GNUPGHOME", home.path()).args([
            "--batch",
            "--with-colons",
            "--list-secret-keys",
        ]));
        let fingerprint = String::from_utf8_lossy(&listing.stdout)
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string();
        Self { home, fingerprint }
    }

    fn gpg(&self) -> Command {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path()).arg("--batch");
        cmd
    }

    /// `gpg --export` (binary).
    pub(crate) fn public_key(&self) -> Vec<u8> {
        run(self.gpg().args(["--export", &self.fingerprint])).stdout
    }

    /// `gpg --armor --export`.
    pub(crate) fn armored_public_key(&self) -> Vec<u8> {
        run(self.gpg().args(["--armor", "--export", &self.fingerprint])).stdout
    }

    /// Writes the public key to `dir/<name>` and returns the path.
    pub(crate) fn write_public_key(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.public_key()).unwrap();
        path
    }

    /// Imports the revocation certificate gpg made when it created the key.
    pub(crate) fn revoke(&self) {
        let cert = self
            .home
            .path()
            .join("openpgp-revocs.d")
            .join(format!("{}.rev", self.fingerprint));
        let text = std::fs::read_to_string(&cert)
            .unwrap()
            .replace(":-----BEGIN", "-----BEGIN");
        let path = self.home.path().join("revocation.asc");
        std::fs::write(&path, text).unwrap();
        run(self.gpg().args(["--quiet", "--import"]).arg(&path));
    }

    /// `skopeo standalone-sign` of `manifest` for `identity`.
    pub(crate) fn standalone_sign(&self, manifest: &[u8], identity: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let manifest_path = dir.path().join("manifest.json");
        std::fs::write(&manifest_path, manifest).unwrap();
        let out = dir.path().join("signature");
        run(Command::new("skopeo")
            .env("GNUPGHOME", self.home.path())
            .arg("standalone-sign")
            .arg(&manifest_path)
            .arg(identity)
            .arg(&self.fingerprint)
            .arg("-o")
            .arg(&out));
        std::fs::read(out).unwrap()
    }

    /// `gpg --sign` of an arbitrary payload (compressed, one-pass signed), at
    /// `faked_time` (`YYYYMMDDTHHMMSS`) if given.
    pub(crate) fn sign_payload(&self, payload: &[u8], faked_time: Option<&str>) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("payload.json");
        std::fs::write(&input, payload).unwrap();
        let output = dir.path().join("payload.sig");
        let mut cmd = self.gpg();
        if let Some(time) = faked_time {
            cmd.arg(format!("--faked-system-time={time}!"));
        }
        run(cmd
            .args([
                "--quiet",
                "--yes",
                "--local-user",
                &self.fingerprint,
                "--output",
            ])
            .arg(&output)
            .arg("--sign")
            .arg(&input));
        std::fs::read(output).unwrap()
    }
}

/// A simple-signing payload as skopeo writes it.
pub(crate) fn simple_payload(kind: &str, digest: &str, identity: &str) -> Vec<u8> {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{identity}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{kind}"}},"optional":{{"creator":"policy test"}}}}"#
    )
    .into_bytes()
}

/// A registry, a layout to build images in, a scratch directory, and a registry client
/// that trusts the registry's CA (when it has TLS).
pub(crate) struct Env {
    pub registry: Registry,
    pub layout: OciLayout,
    pub dir: tempfile::TempDir,
    pub client: RegistryClient,
}

/// An image in the registry: its reference, manifest, and the registry session a pull of
/// it would hand to the policy.
#[derive(Clone, Debug)]
pub(crate) struct Pushed {
    pub reference: Reference,
    pub manifest: Vec<u8>,
    pub digest: Digest,
    pub repository: Repository,
}

impl Env {
    /// A plain-HTTP registry without auth.
    pub(crate) fn new() -> Self {
        Self::with_options(RegistryOptions::default())
    }

    pub(crate) fn with_options(options: RegistryOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path().join("oci")).unwrap();
        let registry = Registry::start(options).unwrap();
        let client = RegistryClient::new(&ClientSettings {
            extra_root_certificates: registry.ca_pem().map(str::to_string).into_iter().collect(),
            ..ClientSettings::default()
        })
        .unwrap();
        Self {
            registry,
            layout,
            dir,
            client,
        }
    }

    /// The registry's credentials, if it wants some.
    pub(crate) fn credentials(&self) -> Option<Credentials> {
        self.registry
            .credentials()
            .map(|(user, password)| Credentials::new(user, password))
    }

    pub(crate) fn host(&self) -> String {
        self.registry.host()
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A small image, distinct per `variant`.
    pub(crate) fn image(variant: &str) -> ImageSpec {
        let mut image = test_images::fixtures::plain();
        image.config.labels.insert("variant".into(), variant.into());
        image
    }

    /// Writes `image` to the layout, tagged `tag`.
    pub(crate) fn write(&self, image: &ImageSpec, tag: &str) -> BuiltImage {
        let built = self.layout.write_image(image).unwrap();
        self.layout.tag(tag, &built.manifest).unwrap();
        built
    }

    /// Pushes image `variant` byte-exact as `repo:tag`.
    pub(crate) async fn push(&self, variant: &str, repo: &str, tag: &str) -> Pushed {
        let built = self.write(&Self::image(variant), &format!("{repo}-{tag}"));
        test_images::push_image(
            &self.layout,
            &built.manifest,
            &self.registry.target(),
            repo,
            tag,
        )
        .await
        .unwrap();
        self.fetch(&format!("{}/{repo}:{tag}", self.host())).await
    }

    /// Pushes a descriptor of the layout (image or index) as `repo:tag`.
    pub(crate) async fn push_descriptor(&self, descriptor: &Descriptor, repo: &str, tag: &str) {
        test_images::push_image(&self.layout, descriptor, &self.registry.target(), repo, tag)
            .await
            .unwrap();
    }

    /// `skopeo copy --sign-by` of image `variant` to `repo:tag`, the signature going to
    /// the lookaside store of `registries_d`.
    pub(crate) async fn push_signed(
        &self,
        gpg: &Gpg,
        registries_d: &Path,
        variant: &str,
        repo: &str,
        tag: &str,
    ) -> Pushed {
        let layout_tag = format!("{repo}-{tag}").replace('/', "-");
        self.write(&Self::image(variant), &layout_tag);
        let destination = format!("docker://{}/{repo}:{tag}", self.host());
        run(Command::new("skopeo")
            .env("GNUPGHOME", gpg.home.path())
            .arg("--registries.d")
            .arg(registries_d)
            .args([
                "copy",
                "-q",
                "--dest-tls-verify=false",
                "--sign-by",
                &gpg.fingerprint,
            ])
            .arg(format!("oci:{}:{layout_tag}", self.layout.root().display()))
            .arg(&destination));
        self.fetch(&format!("{}/{repo}:{tag}", self.host())).await
    }

    /// The manifest of `reference` as the registry serves it (plain HTTP registries are
    /// reached as insecure ones, TLS ones with their CA; with the registry's credentials).
    pub(crate) async fn fetch(&self, reference: &str) -> Pushed {
        let reference = Reference::parse(reference).unwrap();
        let insecure = self.registry.ca_pem().is_none();
        let mut repository = self
            .client
            .repository(&reference, insecure, self.credentials())
            .await
            .unwrap();
        let manifest = repository
            .fetch_manifest(&reference.manifest_reference(), reference.digest())
            .await
            .unwrap();
        Pushed {
            reference,
            manifest: manifest.bytes,
            digest: manifest.digest,
            repository,
        }
    }

    /// A registries.d directory whose lookaside for this registry is `lookaside` (a URL),
    /// also used for writing.
    pub(crate) fn registries_d(&self, name: &str, lookaside: &str) -> (PathBuf, String) {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let yaml = format!(
            "docker:\n  {}:\n    lookaside: {lookaside}\n    lookaside-staging: {lookaside}\n",
            self.host()
        );
        std::fs::write(dir.join("default.yaml"), &yaml).unwrap();
        (dir, yaml)
    }

    /// Where a signature of `pushed` lives in a `file://` lookaside rooted at `store`.
    pub(crate) fn signature_path(
        store: &Path,
        repository: &str,
        digest: &Digest,
        index: usize,
    ) -> PathBuf {
        store
            .join(format!(
                "{repository}@{}={}",
                digest.algorithm().name(),
                digest.hex()
            ))
            .join(format!("signature-{index}"))
    }
}

impl Pushed {
    /// The request image-rs makes when this image is pulled as itself.
    pub(crate) fn request(&self) -> PolicyRequest<'_> {
        PolicyRequest {
            requested: &self.reference,
            pulled: &self.reference,
            manifest_digest: &self.digest,
            index_digest: None,
            manifest: &self.manifest,
            repository: &self.repository,
        }
    }

    /// The same image pulled as `reference` (another repository or registry, served
    /// over plain HTTP without auth): a new session on it.
    pub(crate) async fn as_reference(&self, reference: &str) -> Pushed {
        let reference = Reference::parse(reference).unwrap();
        let repository = self
            .repository
            .client()
            .repository(&reference, true, None)
            .await
            .unwrap();
        Pushed {
            reference,
            repository,
            ..self.clone()
        }
    }

    /// `host/repo@digest`, in the same session.
    pub(crate) fn by_digest(&self) -> Pushed {
        let name = format!("{}@{}", self.reference.name(), self.digest);
        Pushed {
            reference: Reference::parse(&name).unwrap(),
            ..self.clone()
        }
    }
}

/// A policy from inline documents.
pub(crate) fn policy(json: &str, registries_d: &[&str]) -> ContainersPolicy {
    let mut options = PolicyOptions::new(DocumentSource::Inline(json.to_string()));
    options.registries_d = registries_d
        .iter()
        .map(|d| DocumentSource::Inline(d.to_string()))
        .collect();
    ContainersPolicy::new(options, Arc::new(image_rs::LocalResources)).unwrap()
}

pub(crate) async fn check(
    policy: &ContainersPolicy,
    request: &PolicyRequest<'_>,
) -> Result<(), PolicyError> {
    policy.check(request).await
}

/// Resources served from memory, counting fetches (the CDH's KBS client in production).
#[derive(Debug, Default)]
pub(crate) struct MemoryResources {
    pub resources: Mutex<BTreeMap<String, Vec<u8>>>,
    pub fetches: Mutex<Vec<String>>,
}

impl MemoryResources {
    pub(crate) fn insert(&self, uri: &str, bytes: Vec<u8>) {
        self.resources
            .lock()
            .unwrap()
            .insert(uri.to_string(), bytes);
    }

    pub(crate) fn fetch_count(&self, uri: &str) -> usize {
        self.fetches
            .lock()
            .unwrap()
            .iter()
            .filter(|u| *u == uri)
            .count()
    }
}

#[async_trait::async_trait]
impl ResourceProvider for MemoryResources {
    async fn get_resource(&self, uri: &str) -> Result<Vec<u8>, ResourceError> {
        self.fetches.lock().unwrap().push(uri.to_string());
        self.resources
            .lock()
            .unwrap()
            .get(uri)
            .cloned()
            .ok_or_else(|| ResourceError::Provider {
                uri: uri.to_string(),
                message: "no such resource".into(),
            })
    }
}

/// A request seen by [`HttpServer`].
#[derive(Debug, Clone)]
pub(crate) struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
}

/// A response of [`HttpServer`].
pub(crate) struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub(crate) fn ok(body: Vec<u8>) -> Self {
        Self {
            status: 200,
            headers: Vec::new(),
            body,
        }
    }

    pub(crate) fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Handler = Arc<dyn Fn(&HttpRequest) -> HttpResponse + Send + Sync>;

/// A minimal HTTP/1.1 server on 127.0.0.1 (one request per connection) for lookaside
/// stores and the registry signature extension.
pub(crate) struct HttpServer {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<HttpRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    pub(crate) async fn start(
        handler: impl Fn(&HttpRequest) -> HttpResponse + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler: Handler = Arc::new(handler);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        // a TLS ClientHello (HTTPS probe) gets the connection closed, as a
                        // plain-HTTP server would answer it with an error
                        if buf.first() == Some(&0x16) {
                            return;
                        }
                    }
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let mut lines = text.split("\r\n");
                    let mut first = lines.next().unwrap_or("").split(' ');
                    let method = first.next().unwrap_or("").to_string();
                    let path = first.next().unwrap_or("").to_string();
                    let headers = lines
                        .take_while(|l| !l.is_empty())
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let request = HttpRequest {
                        method,
                        path,
                        headers,
                    };
                    seen.lock().unwrap().push(request.clone());
                    let response = handler(&request);
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        response.status,
                        response.body.len()
                    );
                    for (k, v) in &response.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&response.body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    /// Serves the files under `root` (GET only; 404 for anything else).
    pub(crate) async fn serve_dir(root: PathBuf) -> Self {
        Self::start(move |request| {
            let relative = request.path.trim_start_matches('/');
            if request.method != "GET" || relative.split('/').any(|c| c == ".." || c.is_empty()) {
                return HttpResponse::status(404);
            }
            match std::fs::read(root.join(relative)) {
                Ok(body) => HttpResponse::ok(body),
                Err(_) => HttpResponse::status(404),
            }
        })
        .await
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Standard base64.
pub(crate) fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}
