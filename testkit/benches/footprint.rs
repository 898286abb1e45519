//! `bench idle_rss_mib` and `bench rss_after_21_reads_mib`: resident memory (VmRSS) of the
//! three daemons together in cc_kbc mode against testkit's KBS, once they are up and idle,
//! and after 21 resource reads through the REST shim (the first one attests).
//! `bench idle_pss_mib`: what the idle three cost the machine, each shared page divided
//! among the processes that map it (VmRSS counts libc once per daemon).
//! Needs release binaries (`make bench` builds them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use testkit::{
    kbs::{KbsConfig, TestKbs},
    process::Daemon,
    suite::{KbcSetup, Suite},
};

/// Resident KiB of one process by where the pages come from: its own executable's file
/// pages, shared libraries' file pages (libc and ld.so: a floor no build setting of ours
/// moves), and anonymous memory (heap, stacks, relocated data).
fn breakdown(pid: u32) -> (u64, u64, u64) {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let exe = exe.to_string_lossy();
    let (mut own, mut libs, mut anon) = (0, 0, 0);
    let (mut path, mut rss) = (String::new(), 0);
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let first = fields.first().copied().unwrap_or("");
        let kib: u64 = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        match first {
            "Rss:" => rss = kib,
            // Anonymous follows Rss in each mapping: what is left of Rss is file pages
            "Anonymous:" => {
                let anonymous = kib;
                anon += anonymous;
                let file = rss.saturating_sub(anonymous);
                if path == exe {
                    own += file;
                } else if path.starts_with('/') {
                    libs += file;
                }
            }
            // a mapping's header: address range, perms, offset, device, inode, path
            _ if first.contains('-') && !first.ends_with(':') => {
                path = fields.get(5).copied().unwrap_or("").to_string();
            }
            _ => {}
        }
    }
    (own, libs, anon)
}

/// Proportional set size of one process, KiB.
fn pss_kib(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap()
}

fn total_mib(daemons: &[Daemon]) -> f64 {
    let rss = |d: &Daemon| d.status_kib("VmRSS").unwrap();
    let kib: u64 = daemons.iter().map(rss).sum();
    for d in daemons {
        let pid = d.pid().unwrap();
        let (own, libs, anon) = breakdown(pid);
        eprintln!(
            "  pid {pid}: {} KiB (executable {own}, shared libraries {libs}, anonymous {anon})",
            rss(d)
        );
    }
    kib as f64 / 1024.0
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kbs = runtime
        .block_on(TestKbs::start(KbsConfig::default()))
        .unwrap();
    kbs.put_resource("default/key/1", b"footprint secret".to_vec());
    let suite = Suite::new(&KbcSetup::CcKbc {
        url: kbs.url(),
        ca_pem: None,
    })
    .unwrap();
    let daemons = suite.start_all().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let idle = total_mib(&daemons);
    let idle_pss: u64 = daemons.iter().map(|d| pss_kib(d.pid().unwrap())).sum();
    for _ in 0..21 {
        let (status, body) = suite.get("/cdh/resource/default/key/1").unwrap();
        assert_eq!(
            (status, body.as_slice()),
            (200, b"footprint secret".as_slice())
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = total_mib(&daemons);
    println!("bench idle_rss_mib: {idle:.1} MiB");
    println!("bench idle_pss_mib: {:.1} MiB", idle_pss as f64 / 1024.0);
    println!("bench rss_after_21_reads_mib: {after:.1} MiB");
    for daemon in daemons.into_iter().rev() {
        daemon.stop().unwrap();
    }
}
