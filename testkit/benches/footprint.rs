//! `bench idle_rss_mib` and `bench rss_after_21_reads_mib`: resident memory (VmRSS) of the
//! three daemons together in cc_kbc mode against testkit's KBS, once they are up and idle,
//! and after 21 resource reads through the REST shim (the first one attests).
//! Needs release binaries (`make bench` builds them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use testkit::{
    kbs::{KbsConfig, TestKbs},
    process::Daemon,
    suite::{KbcSetup, Suite},
};

fn total_mib(daemons: &[Daemon]) -> f64 {
    let rss = |d: &Daemon| d.status_kib("VmRSS").unwrap();
    let kib: u64 = daemons.iter().map(rss).sum();
    for d in daemons {
        eprintln!("  {:?}: {} KiB", d.pid(), rss(d));
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
    println!("bench rss_after_21_reads_mib: {after:.1} MiB");
    for daemon in daemons.into_iter().rev() {
        daemon.stop().unwrap();
    }
}
