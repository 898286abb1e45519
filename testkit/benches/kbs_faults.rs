//! `bench kbs_fault_worst_ms` and `bench kbs_fault_worst_ms_<fault>`: the worst latency of
//! `GET /cdh/resource/default/key/1` through the REST shim, the data hub (cc_kbc) and the
//! attestation agent, with their default timeouts and retries, while testkit's KBS
//! misbehaves one way at a time. After each fault is cleared the next read must succeed,
//! and no fault may cost more than two attestations (no re-attestation loop). Faults of the
//! handshake revoke the cached tokens first, so that the agent attests into the fault.
//! Needs release binaries (`cargo build --release --bins`; `make bench` does that).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use testkit::{
    kbs::{FaultTarget, Faults, JweCorruption, KbsConfig, NonceFault, ReplyFault, TestKbs},
    suite::{KbcSetup, Suite},
};

const PATH: &str = "/cdh/resource/default/key/1";
const SECRET: &[u8] = b"fault bench secret";

/// What one fault did.
struct Outcome {
    name: &'static str,
    worst: Duration,
    statuses: Vec<u16>,
    attestations: u64,
}

struct Bench {
    runtime: tokio::runtime::Runtime,
    kbs: TestKbs,
    suite: Suite,
    outcomes: Vec<Outcome>,
}

impl Bench {
    fn timed_read(&self) -> (Duration, u16) {
        let started = Instant::now();
        let (status, body) = self.suite.get(PATH).unwrap();
        let took = started.elapsed();
        if status == 200 {
            assert_eq!(body, SECRET);
        }
        (took, status)
    }

    /// The next reads succeed once the client's token-refusal backoff (5 s) is over.
    fn recovered(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self.suite.get(PATH).unwrap();
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no recovery after {name}: {status} {}",
                String::from_utf8_lossy(&body)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `reads` reads under `faults` (tokens revoked first when `reattest`), then recovery.
    fn fault(&mut self, name: &'static str, faults: Faults, reattest: bool, reads: usize) {
        if reattest {
            self.kbs.revoke_tokens();
        }
        self.kbs.set_faults(faults);
        let before = self.kbs.counters().attest_ok;
        let mut worst = Duration::ZERO;
        let mut statuses = Vec::new();
        for _ in 0..reads {
            let (took, status) = self.timed_read();
            worst = worst.max(took);
            statuses.push(status);
        }
        let attestations = self.kbs.counters().attest_ok - before;
        self.kbs.set_faults(Faults::default());
        self.recovered(name);
        self.record(name, worst, statuses, attestations);
    }

    fn record(&mut self, name: &'static str, worst: Duration, statuses: Vec<u16>, attested: u64) {
        assert!(
            attested <= 2,
            "{name}: {attested} attestations (a re-attestation loop)"
        );
        self.outcomes.push(Outcome {
            name,
            worst,
            statuses,
            attestations: attested,
        });
    }
}

fn resource(faults: Faults) -> Faults {
    Faults {
        target: FaultTarget::Resource,
        ..faults
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kbs = runtime
        .block_on(TestKbs::start(KbsConfig::default()))
        .unwrap();
    kbs.put_resource("default/key/1", SECRET.to_vec());
    let suite = Suite::new(&KbcSetup::CcKbc {
        url: kbs.url(),
        ca_pem: None,
    })
    .unwrap();
    let daemons = suite.start_all().unwrap();
    let mut bench = Bench {
        runtime,
        kbs,
        suite,
        outcomes: Vec::new(),
    };
    bench.recovered("start");

    for (name, corruption) in [
        ("jwe_tag", JweCorruption::Tag),
        ("jwe_enc", JweCorruption::WrongEnc),
        ("jwe_truncated", JweCorruption::TruncatedCiphertext),
        ("jwe_foreign_key", JweCorruption::ForeignKey),
    ] {
        let faults = Faults {
            corrupt_jwe: Some(corruption),
            ..Faults::default()
        };
        bench.fault(name, faults, false, 3);
    }
    for (name, nonce) in [
        ("nonce_empty", NonceFault::Empty),
        ("nonce_oversized", NonceFault::Oversized),
        ("nonce_not_a_string", NonceFault::NotAString),
    ] {
        let faults = Faults {
            nonce,
            ..Faults::default()
        };
        bench.fault(name, faults, true, 1);
    }
    // the agent takes the first use of a repeated nonce, and refuses the second
    let reused = Faults {
        nonce: NonceFault::Reused,
        ..Faults::default()
    };
    bench.kbs.revoke_tokens();
    bench.kbs.set_faults(reused.clone());
    bench.recovered("nonce_reused (first use)");
    bench.fault("nonce_reused", reused, true, 1);

    let storm_500 = Faults {
        fail_with_500: u32::MAX,
        ..Faults::default()
    };
    bench.fault("http_500_resource", resource(storm_500.clone()), false, 1);
    let attest_500 = Faults {
        target: FaultTarget::Attest,
        ..storm_500
    };
    bench.fault("http_500_attest", attest_500, true, 1);
    let storm_401 = Faults {
        fail_with_401: u32::MAX,
        ..Faults::default()
    };
    bench.fault("http_401_resource", resource(storm_401.clone()), false, 5);
    let attest_401 = Faults {
        target: FaultTarget::Attest,
        ..storm_401
    };
    bench.fault("http_401_attest", attest_401, true, 1);
    for (name, reply, target, reattest) in [
        (
            "reset_mid_body_resource",
            ReplyFault::ResetMidBody,
            FaultTarget::Resource,
            false,
        ),
        (
            "reset_mid_body_attest",
            ReplyFault::ResetMidBody,
            FaultTarget::Attest,
            true,
        ),
        (
            "oversized_resource",
            ReplyFault::Oversized,
            FaultTarget::Resource,
            false,
        ),
        (
            "oversized_declared_resource",
            ReplyFault::OversizedDeclared,
            FaultTarget::Resource,
            false,
        ),
        (
            "slowloris_resource",
            ReplyFault::NeverEnding,
            FaultTarget::Resource,
            false,
        ),
        (
            "slowloris_attest",
            ReplyFault::NeverEnding,
            FaultTarget::Attest,
            true,
        ),
    ] {
        let faults = Faults {
            target,
            broken_reply: Some(reply),
            ..Faults::default()
        };
        bench.fault(name, faults, reattest, 1);
    }
    for (name, offset) in [("clock_behind_1d", -86_400), ("clock_ahead_1d", 86_400)] {
        let faults = Faults {
            clock_offset_secs: offset,
            ..Faults::default()
        };
        bench.fault(name, faults, true, 5);
    }

    // restarted between the handshake and the read: sessions lost, then the token key too
    let before = bench.kbs.counters().attest_ok;
    bench.runtime.block_on(bench.kbs.restart()).unwrap();
    let (took, status) = bench.timed_read();
    let attested = bench.kbs.counters().attest_ok - before;
    bench.record("restart", took, vec![status], attested);
    let before = bench.kbs.counters().attest_ok;
    bench.kbs.revoke_tokens();
    bench.runtime.block_on(bench.kbs.restart()).unwrap();
    let (took, status) = bench.timed_read();
    let attested = bench.kbs.counters().attest_ok - before;
    bench.record("restart_new_token_key", took, vec![status], attested);

    // down: the read fails after the bounded retries
    let Bench {
        runtime,
        kbs,
        suite,
        mut outcomes,
    } = bench;
    runtime.block_on(kbs.stop());
    let started = Instant::now();
    let (status, _) = suite.get(PATH).unwrap();
    outcomes.push(Outcome {
        name: "kbs_down",
        worst: started.elapsed(),
        statuses: vec![status],
        attestations: 0,
    });

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut worst = Duration::ZERO;
    for outcome in &outcomes {
        eprintln!(
            "  {:<28} worst {:>9.1} ms, statuses {:?}, attestations {}",
            outcome.name,
            ms(outcome.worst),
            outcome.statuses,
            outcome.attestations
        );
        worst = worst.max(outcome.worst);
    }
    for outcome in &outcomes {
        println!(
            "bench kbs_fault_worst_ms_{}: {:.1} ms",
            outcome.name,
            ms(outcome.worst)
        );
    }
    println!("bench kbs_fault_worst_ms: {:.1} ms", ms(worst));
    for daemon in daemons.into_iter().rev() {
        daemon.stop().unwrap();
    }
}
