//! The `tpm` attester on a real kernel's TPM driver: the guest boots under OVMF with QEMU's
//! tpm-tis backed by the host's swtpm (the AK provisioned on the host beforehand, persistent
//! at the attester's default handle 0x81010002), loads tpm_tis and tpm_crb, and runs
//! `evidence-getter` (attester built with `tpm-attester,bin`) for a random report data. The
//! host checks the quote with `tpm2_checkquote` against the AK it made, the nonce and the
//! PCR digest, and replays the event log the kernel exposes
//! (/sys/kernel/security/tpm0/binary_bios_measurements, TCG2 crypto-agile, SHA-256 bank)
//! to the quoted PCRs; a copy of the log with one digest altered does not replay.
//!
//! Needs `cargo build -p attester --features tpm-attester,bin --bin evidence-getter`, swtpm,
//! swtpm_ioctl and tpm2-tools on the host, QEMU and OVMF: `make vm-test` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use sha2::{Digest as _, Sha256};
use testkit::{
    process::workspace_bin,
    vm::{self, VmConfig},
};

/// The attester's default AK handle (`DEFAULT_AK_HANDLE` in attester/src/tpm).
const AK_HANDLE: &str = "0x81010002";
const TPM_ALG_SHA256: u16 = 0x000b;
const EV_NO_ACTION: u32 = 0x3;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(dir: &Path, tcti: &str, args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .env("TPM2TOOLS_TCTI", tcti)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (install tpm2-tools)", args[0]));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two free consecutive TCP ports on 127.0.0.1 (swtpm's server and control).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = a.local_addr().unwrap().port();
        if port < 65535 && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair");
}

/// Manufactures a TPM in `state` and persists an RSASSA-SHA256 AK (under an RSA EK) at
/// [`AK_HANDLE`]; writes `ak.pem` to `dir`. swtpm is shut down properly afterwards, so the
/// state holds the AK when QEMU's swtpm starts from it.
fn provision(state: &Path, dir: &Path) {
    let port = free_port_pair();
    let swtpm = Proc(
        Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .args(["--flags", "not-need-init,startup-clear"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("swtpm must be installed (scripts/install-test-deps.sh)"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "swtpm did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    let t = |args: &[&str]| tool(dir, &tcti, args);
    t(&["tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"]);
    t(&["tpm2_flushcontext", "-t"]);
    t(&[
        "tpm2_createak",
        "-C",
        "ek.ctx",
        "-c",
        "ak.ctx",
        "-G",
        "rsa",
        "-g",
        "sha256",
        "-s",
        "rsassa",
        "-u",
        "ak.pem",
        "-f",
        "pem",
        "-n",
        "ak.name",
    ]);
    t(&["tpm2_flushcontext", "-t"]);
    t(&["tpm2_flushcontext", "-s"]);
    t(&["tpm2_evictcontrol", "-c", "ak.ctx", AK_HANDLE]);
    t(&["tpm2_shutdown"]);
    let stopped = Command::new("swtpm_ioctl")
        .args(["--tcp", &format!("127.0.0.1:{}", port + 1), "-s"])
        .output()
        .unwrap();
    assert!(stopped.status.success(), "{stopped:?}");
    drop(swtpm);
}

/// swtpm for QEMU: the control channel on a unix socket, the state of [`provision`].
fn swtpm_for_qemu(state: &Path) -> (Proc, PathBuf) {
    let sock = state.join("swtpm-sock");
    let child = Command::new("swtpm")
        .arg("socket")
        .arg("--tpm2")
        .arg("--tpmstate")
        .arg(format!("dir={}", state.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", sock.display()))
        .stdout(Stdio::null())
        .stderr(fs::File::create(state.join("swtpm.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "swtpm made no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Proc(child), sock)
}

/// evidence-getter (debug info stripped) and the shared libraries it needs, the TCTI
/// libraries tss2-tctildr loads at run time included: (path under /vmtest/input, bytes).
fn evidence_getter_files(work: &Path) -> Vec<(String, Vec<u8>)> {
    let bin = workspace_bin("evidence-getter").expect(
        "build it: cargo build -p attester --features tpm-attester,bin --bin evidence-getter",
    );
    let stripped = work.join("evidence-getter");
    let status = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&stripped)
        .arg(&bin)
        .status()
        .unwrap();
    assert!(status.success());
    let mut files = vec![(
        "tpm/evidence-getter".to_string(),
        fs::read(&stripped).unwrap(),
    )];
    let mut libs = BTreeMap::new();
    let mut roots = vec![bin.clone()];
    for tcti in ["libtss2-tcti-device.so.0", "libtss2-tcti-swtpm.so.0"] {
        for dir in ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"] {
            let p = Path::new(dir).join(tcti);
            if p.exists() {
                libs.insert(tcti.to_string(), p.clone());
                roots.push(p);
                break;
            }
        }
    }
    assert!(
        libs.contains_key("libtss2-tcti-device.so.0"),
        "libtss2-tcti-device.so.0 not found (Debian libtss2-tcti-device0)"
    );
    for root in roots {
        let out = Command::new("ldd").arg(&root).output().unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((name, rest)) = line.trim().split_once(" => ") {
                let path = rest.split(' ').next().unwrap_or_default();
                assert!(path.starts_with('/'), "{}: {line}", root.display());
                libs.insert(name.to_string(), PathBuf::from(path));
            }
        }
    }
    for (name, path) in libs {
        files.push((format!("tpm/lib/{name}"), fs::read(&path).unwrap()));
    }
    files
}

/// One event of a TCG2 crypto-agile log: (PCR, type, SHA-256 digest, offset of that
/// digest in the log).
#[derive(Debug, Clone)]
struct Event {
    pcr: u32,
    kind: u32,
    sha256: Option<[u8; 32]>,
    digest_at: usize,
    data: Vec<u8>,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).ok_or("overflow")?;
        let s = self
            .b
            .get(self.at..end)
            .ok_or_else(|| format!("truncated at {} (wanted {n} bytes)", self.at))?;
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
}

/// Parses a TCG2 crypto-agile event log (TCG PC Client Platform Firmware Profile, 10.2):
/// a TCG_PCR_EVENT header carrying the Spec ID Event03 (the digest sizes of the banks),
/// then TCG_PCR_EVENT2 records.
fn parse_log(log: &[u8]) -> Result<Vec<Event>, String> {
    let mut r = Reader { b: log, at: 0 };
    let _pcr = r.u32()?;
    let kind = r.u32()?;
    if kind != EV_NO_ACTION {
        return Err(format!("first event type {kind:#x}, not EV_NO_ACTION"));
    }
    r.take(20)?;
    let size = r.u32()? as usize;
    let spec = r.take(size)?;
    if !spec.starts_with(b"Spec ID Event03\0") {
        return Err("no Spec ID Event03: not a crypto-agile log".into());
    }
    let mut s = Reader { b: spec, at: 16 };
    s.take(4 + 4)?; // platformClass, versions, errata, uintnSize
    let n = s.u32()?;
    let mut sizes = BTreeMap::new();
    for _ in 0..n {
        let alg = s.u16()?;
        sizes.insert(alg, s.u16()? as usize);
    }
    if sizes.get(&TPM_ALG_SHA256) != Some(&32) {
        return Err(format!("no 32-byte SHA-256 bank in {sizes:?}"));
    }
    let mut events = Vec::new();
    while r.at < log.len() {
        let pcr = r.u32()?;
        let kind = r.u32()?;
        let count = r.u32()?;
        let mut sha256 = None;
        let mut digest_at = 0;
        for _ in 0..count {
            let alg = r.u16()?;
            let len = *sizes
                .get(&alg)
                .ok_or_else(|| format!("digest of unknown algorithm {alg:#x}"))?;
            let at = r.at;
            let d = r.take(len)?;
            if alg == TPM_ALG_SHA256 {
                sha256 = Some(d.try_into().unwrap());
                digest_at = at;
            }
        }
        let size = r.u32()? as usize;
        let data = r.take(size)?.to_vec();
        events.push(Event {
            pcr,
            kind,
            sha256,
            digest_at,
            data,
        });
    }
    Ok(events)
}

/// The SHA-256 PCR values the events extend to (EV_NO_ACTION is not extended; a
/// StartupLocality event sets the initial value of its PCR).
fn replay(events: &[Event]) -> Result<BTreeMap<u32, [u8; 32]>, String> {
    let mut pcrs: BTreeMap<u32, [u8; 32]> = BTreeMap::new();
    for e in events {
        if e.kind == EV_NO_ACTION {
            if let Some(rest) = e.data.strip_prefix(b"StartupLocality\0") {
                let mut init = [0u8; 32];
                init[31] = *rest.first().ok_or("empty StartupLocality")?;
                pcrs.insert(e.pcr, init);
            }
            continue;
        }
        let digest = e
            .sha256
            .ok_or_else(|| format!("event of PCR {} has no SHA-256 digest", e.pcr))?;
        let pcr = pcrs.entry(e.pcr).or_insert([0u8; 32]);
        let mut h = Sha256::new();
        h.update(*pcr);
        h.update(digest);
        *pcr = h.finalize().into();
    }
    Ok(pcrs)
}

/// (qualifying data, PCR selection bytes of SHA-256, PCR digest) of a marshalled
/// TPMS_ATTEST of a quote (TPM 2.0 Part 2, 10.12.12).
fn parse_quote(m: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let be16 = |b: &[u8]| u16::from_be_bytes(b[..2].try_into().unwrap()) as usize;
    assert_eq!(&m[..4], b"\xffTCG", "not a TPM-generated message");
    assert_eq!(&m[4..6], [0x80, 0x18], "not TPM_ST_ATTEST_QUOTE");
    let mut at = 6;
    at += 2 + be16(&m[at..]); // qualifiedSigner
    let extra_len = be16(&m[at..]);
    let extra = m[at + 2..at + 2 + extra_len].to_vec();
    at += 2 + extra_len;
    at += 17 + 8; // clockInfo, firmwareVersion
    let count = u32::from_be_bytes(m[at..at + 4].try_into().unwrap());
    at += 4;
    let mut select = Vec::new();
    for _ in 0..count {
        let alg = be16(&m[at..]) as u16;
        let n = m[at + 2] as usize;
        if alg == TPM_ALG_SHA256 {
            select = m[at + 3..at + 3 + n].to_vec();
        }
        at += 3 + n;
    }
    let len = be16(&m[at..]);
    (extra, select, m[at + 2..at + 2 + len].to_vec())
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    STANDARD.decode(body.trim()).unwrap()
}

#[test]
#[ignore = "boots a VM under OVMF (a few minutes of TCG): make vm-test runs it"]
fn vm_tpm_quote_verifies_and_the_event_log_replays_to_it() {
    let work = tempfile::Builder::new()
        .prefix("vmtest-tpm-")
        .tempdir()
        .unwrap();
    let state = work.path().join("state");
    fs::create_dir(&state).unwrap();
    provision(&state, work.path());
    let ak_pem = fs::read_to_string(work.path().join("ak.pem")).unwrap();

    let report_data: [u8; 32] = Sha256::digest(format!("{:?}", Instant::now())).into();
    let mut config = VmConfig {
        uefi: true,
        ..VmConfig::default()
    }
    .env("VMTEST_SCENARIOS", "tpm")
    .env("VMTEST_TPM_REPORT_DATA", hex::encode(report_data));
    for (path, bytes) in evidence_getter_files(work.path()) {
        config = config.file(&path, bytes);
    }
    let (swtpm, sock) = swtpm_for_qemu(&state);
    config.tpm_socket = Some(sock);
    let run = vm::run(&config).unwrap();
    drop(swtpm);
    eprintln!(
        "tpm boot (OVMF): QEMU wall time {:?}, init at {} ms, launched at {} ms of uptime, \
         evidence in {} ms",
        run.wall,
        run.fact("init_ms").unwrap_or("?"),
        run.fact("launched").unwrap_or("?"),
        run.fact("tpm_ms").unwrap_or("?"),
    );
    assert!(run.done(), "{}", run.report());
    // the first line too, behind OVMF's terminal sequences on the results port
    assert!(run.fact("init_ms").is_some(), "{}", run.report());
    assert_eq!(run.fact("tpm_version"), Some("2"), "{}", run.report());
    assert!(
        run.fact("tpm_dev").unwrap_or_default().contains("tpmrm0"),
        "{}",
        run.report()
    );
    assert_eq!(
        run.fact("evidence"),
        Some("0"),
        "{}\n{}",
        run.text("evidence.err"),
        run.report()
    );
    let out = run.text("evidence");
    let json = out
        .lines()
        .find_map(|l| l.strip_prefix("tpm: "))
        .unwrap_or_else(|| panic!("no tpm evidence: {out}\n{}", run.text("evidence.err")));
    let evidence: serde_json::Value = serde_json::from_str(json).unwrap();

    // the AK the host provisioned signed the quote over the report data, zero-padded to 64
    let ak_der = STANDARD
        .decode(evidence["ak_public"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        ak_der,
        pem_der(&ak_pem),
        "the quote is not by the host's AK"
    );
    let quote = &evidence["tpm_quote"];
    let message = STANDARD.decode(quote["message"].as_str().unwrap()).unwrap();
    let signature = STANDARD
        .decode(quote["signature"].as_str().unwrap())
        .unwrap();
    fs::write(work.path().join("quote.msg"), &message).unwrap();
    fs::write(work.path().join("quote.sig"), &signature).unwrap();
    let mut nonce = report_data.to_vec();
    nonce.resize(64, 0);
    let checkquote = |nonce: &[u8]| {
        Command::new("tpm2_checkquote")
            .args(["-u", "ak.pem", "-m", "quote.msg", "-s", "quote.sig"])
            .args(["-g", "sha256", "-q", &hex::encode(nonce)])
            .current_dir(work.path())
            .output()
            .unwrap()
    };
    let checked = checkquote(&nonce);
    assert!(
        checked.status.success(),
        "tpm2_checkquote: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let mut other = nonce.clone();
    other[0] ^= 1;
    assert!(
        !checkquote(&other).status.success(),
        "another nonce verified"
    );
    // the quote covers SHA-256 PCRs 0-23 and its digest is that of the reported values
    let pcrs: Vec<[u8; 32]> = quote["pcrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            hex::decode(v.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    assert_eq!(pcrs.len(), 24);
    let (extra, select, pcr_digest) = parse_quote(&message);
    assert_eq!(extra, nonce);
    assert_eq!(select, [0xff, 0xff, 0xff]);
    let mut h = Sha256::new();
    for p in &pcrs {
        h.update(p);
    }
    assert_eq!(pcr_digest, h.finalize().to_vec());

    // the kernel's event log replays to the quoted PCRs
    let log = run.files.get("eventlog").cloned().unwrap_or_default();
    assert!(
        !log.is_empty(),
        "no event log: {}",
        run.text("eventlog.err")
    );
    let events = parse_log(&log).unwrap();
    let replayed = replay(&events).unwrap();
    eprintln!(
        "event log: {} bytes, {} events, PCRs {:?}",
        log.len(),
        events.len(),
        replayed.keys().collect::<Vec<_>>()
    );
    for pcr in 0..8 {
        assert!(replayed.contains_key(&pcr), "the log measures no PCR {pcr}");
    }
    for (pcr, value) in &replayed {
        assert_eq!(
            hex::encode(value),
            hex::encode(pcrs[*pcr as usize]),
            "PCR {pcr}: the log does not replay to the quoted value"
        );
    }
    // one digest altered: that PCR no longer replays to the quote
    let victim = events
        .iter()
        .rev()
        .find(|e| e.kind != EV_NO_ACTION && e.pcr < 8)
        .unwrap();
    let mut altered = log.clone();
    altered[victim.digest_at] ^= 0x01;
    let replayed = replay(&parse_log(&altered).unwrap()).unwrap();
    assert_ne!(replayed[&victim.pcr], pcrs[victim.pcr as usize]);
    // a truncated log does not parse
    assert!(parse_log(&log[..log.len() - 1]).is_err());
}
