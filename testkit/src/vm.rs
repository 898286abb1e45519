//! The pod-VM test bed: boots the guest `vm/build-guest.sh` builds (Debian's kernel, a
//! busybox initramfs, the daemons, `vm/init`) under QEMU in TCG mode, with the test's inputs
//! in one more initramfs archive, virtio disks backed by sparse files, QEMU user networking
//! (the host's 127.0.0.1 is 10.0.2.2 in the guest) and, when asked, OVMF and a swtpm TPM.
//! The guest reports `VMTEST` lines on its second serial port; [`VmRun`] holds them once
//! the guest has powered off. See `vm/README.md`.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use base64::Engine as _;

use crate::process::workspace_bin;

/// The guest's parts, as `vm/build-guest.sh` printed them.
#[derive(Debug, Clone)]
pub struct Guest {
    /// the kernel image
    pub kernel: PathBuf,
    /// its version (`uname -r` in the guest)
    pub kernel_version: String,
    /// the initramfs archives, in order
    pub initrds: Vec<PathBuf>,
    /// OVMF firmware code
    pub ovmf_code: PathBuf,
    /// OVMF variable store template
    pub ovmf_vars: PathBuf,
    /// how long the build (or the cache check) took
    pub build_time: Duration,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

impl Guest {
    /// Builds the guest (or finds it in the cache) once per test process, with the daemons
    /// of the running test's target directory.
    pub fn get() -> io::Result<&'static Guest> {
        static GUEST: OnceLock<Result<Guest, String>> = OnceLock::new();
        GUEST
            .get_or_init(|| Guest::build().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| io::Error::other(e.clone()))
    }

    fn build() -> io::Result<Guest> {
        let bin_dir = workspace_bin("attestation-agent")?
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| io::Error::other("no target directory"))?;
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(repo_root().join("vm/build-guest.sh"))
            .env("BIN_DIR", &bin_dir)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "vm/build-guest.sh failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut values: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for line in text.lines() {
            if let Some((k, v)) = line.split_once(' ') {
                values.entry(k).or_default().push(v);
            }
        }
        let one = |k: &str| -> io::Result<String> {
            values
                .get(k)
                .and_then(|v| v.first())
                .map(|v| v.to_string())
                .ok_or_else(|| {
                    io::Error::other(format!("vm/build-guest.sh printed no {k}:\n{text}"))
                })
        };
        Ok(Guest {
            kernel: one("kernel")?.into(),
            kernel_version: one("kernel_version")?,
            initrds: values
                .get("initrd")
                .map(|v| v.iter().map(PathBuf::from).collect())
                .unwrap_or_default(),
            ovmf_code: one("ovmf_code")?.into(),
            ovmf_vars: one("ovmf_vars")?.into(),
            build_time: started.elapsed(),
        })
    }
}

/// A virtio disk: a sparse file of `mib` MiB with a serial number the guest finds it by
/// (`/sys/block/vdX/serial`).
#[derive(Debug, Clone)]
pub struct Disk {
    /// the serial
    pub serial: String,
    /// size in MiB
    pub mib: u64,
}

/// One boot.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// `/vmtest/input/env` assignments (values are quoted for the shell)
    pub env: Vec<(String, String)>,
    /// files under `/vmtest/input/` (relative path, content)
    pub files: Vec<(String, Vec<u8>)>,
    /// virtio disks, in PCI order
    pub disks: Vec<Disk>,
    /// virtio disks backed by copies of existing images (serial, image), read-only, after
    /// `disks` in PCI order
    pub images: Vec<(String, PathBuf)>,
    /// guest memory
    pub memory_mib: u32,
    /// virtual CPUs
    pub cpus: u32,
    /// boot through OVMF (UEFI) instead of SeaBIOS
    pub uefi: bool,
    /// attach this swtpm control socket as a TPM 2.0 (tpm-tis)
    pub tpm_socket: Option<PathBuf>,
    /// kill QEMU after this long
    pub timeout: Duration,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            env: Vec::new(),
            files: Vec::new(),
            disks: Vec::new(),
            images: Vec::new(),
            memory_mib: 2048,
            cpus: 2,
            uefi: false,
            tpm_socket: None,
            timeout: Duration::from_secs(600),
        }
    }
}

impl VmConfig {
    /// Adds an `/vmtest/input/env` assignment.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Adds a file under `/vmtest/input/`.
    pub fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.to_string(), content.into()));
        self
    }

    /// Adds a read-only virtio disk backed by a copy of the image at `path` (the copy is
    /// the run's, [`VmRun::disk`] finds it by `serial`).
    pub fn image(mut self, serial: &str, path: impl Into<PathBuf>) -> Self {
        self.images.push((serial.to_string(), path.into()));
        self
    }

    /// Adds a virtio disk.
    pub fn disk(mut self, serial: &str, mib: u64) -> Self {
        self.disks.push(Disk {
            serial: serial.to_string(),
            mib,
        });
        self
    }
}

/// What one boot reported.
#[derive(Debug)]
pub struct VmRun {
    /// `VMTEST <key> <value>` lines, in order
    pub facts: Vec<(String, String)>,
    /// `VMTEST-FILE <name> <base64>` files
    pub files: BTreeMap<String, Vec<u8>>,
    /// the kernel console (first serial port)
    pub console: String,
    /// QEMU's wall time, start to exit
    pub wall: Duration,
    disks: BTreeMap<String, PathBuf>,
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl VmRun {
    /// The value of the first `key` fact.
    pub fn fact(&self, key: &str) -> Option<&str> {
        self.facts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The values of every `key` fact, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.facts
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the `key` fact whose value starts with `first` (a word), without it.
    pub fn fact_for(&self, key: &str, first: &str) -> Option<&str> {
        self.all(key)
            .into_iter()
            .find_map(|v| match v.split_once(' ') {
                Some((w, rest)) if w == first => Some(rest),
                None if v == first => Some(""),
                _ => None,
            })
    }

    /// A reported file as text (lossy).
    pub fn text(&self, name: &str) -> String {
        self.files
            .get(name)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }

    /// The backing file of the disk with `serial`.
    pub fn disk(&self, serial: &str) -> &Path {
        &self.disks[serial]
    }

    /// The run's working directory (disks, console, results).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Whether the guest reached the end of its init.
    pub fn done(&self) -> bool {
        self.fact("done").is_some()
    }

    /// The facts, the daemons' logs and the end of the console, for failure messages.
    pub fn report(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.facts {
            s.push_str(&format!("VMTEST {k} {v}\n"));
        }
        for name in ["aa.log", "cdh.log", "asr.log"] {
            s.push_str(&format!("--- {name} ---\n{}\n", self.text(name)));
        }
        let tail: Vec<&str> = self.console.lines().rev().take(40).collect();
        s.push_str("--- console (end) ---\n");
        for line in tail.into_iter().rev() {
            s.push_str(line);
            s.push('\n');
        }
        s
    }
}

/// Single quotes for the shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Writes `dir` as a newc cpio archive to `out` (GNU cpio, root-owned entries).
fn cpio_of(dir: &Path, out: &Path) -> io::Result<()> {
    let status = Command::new("sh")
        .arg("-c")
        .arg("cd \"$1\" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --quiet > \"$2\"")
        .arg("sh")
        .arg(dir)
        .arg(out)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("cpio failed: {status}")))
    }
}

/// One VM at a time: TCG takes every core this machine has.
static ONE_VM: Mutex<()> = Mutex::new(());

/// Kills QEMU if the test panics while it runs.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The QEMU accelerator: `VM_ACCEL` (e.g. `kvm`) or TCG.
fn accel() -> String {
    std::env::var("VM_ACCEL").unwrap_or_else(|_| "tcg,thread=multi".to_string())
}

/// Boots the guest with `config` and waits until it powers off (or the timeout kills it).
pub fn run(config: &VmConfig) -> io::Result<VmRun> {
    let guest = Guest::get()?;
    let dir = tempfile::Builder::new().prefix("vmtest-").tempdir()?;
    if std::env::var_os("VMTEST_KEEP").is_some() {
        eprintln!("VMTEST_KEEP: the run is kept in {}", dir.path().display());
    }
    let input = dir.path().join("input");
    fs::create_dir_all(input.join("vmtest/input"))?;
    let mut env = String::new();
    for (k, v) in &config.env {
        env.push_str(&format!("{k}={}\n", shell_quote(v)));
    }
    env.push_str(&format!(
        "VMTEST_DISKS={}\n",
        config.disks.len() + config.images.len()
    ));
    fs::write(input.join("vmtest/input/env"), env)?;
    for (path, content) in &config.files {
        let p = input.join("vmtest/input").join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(p, content)?;
    }
    let input_cpio = dir.path().join("input.cpio");
    cpio_of(&input, &input_cpio)?;
    let initrd = dir.path().join("initrd.img");
    {
        let mut out = fs::File::create(&initrd)?;
        for part in guest.initrds.iter().chain(std::iter::once(&input_cpio)) {
            io::copy(&mut fs::File::open(part)?, &mut out)?;
        }
        out.flush()?;
    }
    let mut disks = BTreeMap::new();
    for disk in &config.disks {
        let path = dir.path().join(format!("{}.img", disk.serial));
        fs::File::create(&path)?.set_len(disk.mib << 20)?;
        disks.insert(disk.serial.clone(), path);
    }
    for (serial, image) in &config.images {
        let path = dir.path().join(format!("{serial}.img"));
        fs::copy(image, &path)?;
        disks.insert(serial.clone(), path);
    }
    let console = dir.path().join("console.log");
    let results = dir.path().join("results.log");

    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", &accel(), "-cpu", "max", "-machine", "q35"])
        .args(["-smp", &config.cpus.to_string()])
        .args(["-m", &config.memory_mib.to_string()])
        .args(["-nographic", "-no-reboot", "-monitor", "none"])
        .arg("-kernel")
        .arg(&guest.kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", results.display()))
        .args([
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-pci,netdev=n0",
        ]);
    for (i, disk) in config.disks.iter().enumerate() {
        cmd.arg("-drive")
            .arg(format!(
                "file={},if=none,id=d{i},format=raw,cache=unsafe",
                disks[&disk.serial].display()
            ))
            .arg("-device")
            .arg(format!("virtio-blk-pci,drive=d{i},serial={}", disk.serial));
    }
    for (i, (serial, _)) in config.images.iter().enumerate() {
        cmd.arg("-drive")
            .arg(format!(
                "file={},if=none,id=e{i},format=raw,readonly=on",
                disks[serial].display()
            ))
            .arg("-device")
            .arg(format!("virtio-blk-pci,drive=e{i},serial={serial}"));
    }
    if config.uefi {
        let vars = dir.path().join("OVMF_VARS.fd");
        fs::copy(&guest.ovmf_vars, &vars)?;
        cmd.arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                guest.ovmf_code.display()
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
    }
    if let Some(sock) = &config.tpm_socket {
        cmd.arg("-chardev")
            .arg(format!("socket,id=chrtpm,path={}", sock.display()))
            .args(["-tpmdev", "emulator,id=tpm0,chardev=chrtpm"])
            .args(["-device", "tpm-tis,tpmdev=tpm0"]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.path().join("qemu.stderr"))?);

    let _one = ONE_VM.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let mut qemu = Qemu(cmd.spawn()?);
    let status = loop {
        if let Some(status) = qemu.0.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > config.timeout {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let wall = started.elapsed();
    drop(qemu);
    let path = dir.path().to_path_buf();
    // VMTEST_KEEP: the run stays on disk for a look afterwards
    let dir = if std::env::var_os("VMTEST_KEEP").is_some() {
        let _ = dir.keep();
        None
    } else {
        Some(dir)
    };

    let console_text =
        String::from_utf8_lossy(&fs::read(&console).unwrap_or_default()).into_owned();
    let results_text =
        String::from_utf8_lossy(&fs::read(&results).unwrap_or_default()).into_owned();
    let mut facts = Vec::new();
    let mut files = BTreeMap::new();
    for line in results_text.lines() {
        let line = line.trim_end_matches('\r');
        // OVMF writes its terminal set-up sequences to every serial port, before the first line
        let Some(line) = line.find("VMTEST").map(|i| &line[i..]) else {
            continue;
        };
        if let Some(rest) = line.strip_prefix("VMTEST-FILE ") {
            let (name, b64) = rest.split_once(' ').unwrap_or((rest, ""));
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap_or_else(|e| format!("<undecodable: {e}>").into_bytes());
            files.insert(name.to_string(), bytes);
        } else if let Some(rest) = line.strip_prefix("VMTEST ") {
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            facts.push((k.to_string(), v.to_string()));
        }
    }
    let run = VmRun {
        facts,
        files,
        console: console_text,
        wall,
        disks,
        path,
        _dir: dir,
    };
    match status {
        None => Err(io::Error::other(format!(
            "the guest did not power off within {:?}\n{}",
            config.timeout,
            run.report()
        ))),
        Some(status) if !status.success() => Err(io::Error::other(format!(
            "QEMU exited with {status}: {}\n{}",
            fs::read_to_string(run.dir().join("qemu.stderr")).unwrap_or_default(),
            run.report()
        ))),
        Some(_) => Ok(run),
    }
}

/// Whether `needle` occurs in the file at `path` (read in chunks, overlapping by the
/// needle's length, so a large disk image is not read whole into memory).
pub fn file_contains(path: &Path, needle: &[u8]) -> io::Result<bool> {
    use std::io::Read as _;
    if needle.is_empty() {
        return Ok(true);
    }
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; 4 << 20];
    let keep = needle.len() - 1;
    let mut filled = 0;
    loop {
        let n = file.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(false);
        }
        filled += n;
        if buf[..filled].windows(needle.len()).any(|w| w == needle) {
            return Ok(true);
        }
        if filled > keep {
            buf.copy_within(filled - keep..filled, 0);
            filled = keep;
        }
    }
}

/// How many bytes of the file at `path` are not zero.
pub fn nonzero_bytes(path: &Path) -> io::Result<u64> {
    use std::io::Read as _;
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; 4 << 20];
    let mut count = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(count);
        }
        count += buf[..n].iter().filter(|b| **b != 0).count() as u64;
    }
}
