//! What kata-agent writes for a pod with initdata: `aa.toml` and `cdh.toml` in upstream's
//! shape (empty certificates), a `policy.rego`, and the `initdata.toml` that carries them.

/// The initdata of a pod whose agent and hub use the KBS at `kbs_url` through `cc_kbc`.
#[derive(Debug, Clone)]
pub struct PodInitdata {
    /// `/run/confidential-containers/initdata/aa.toml`
    pub aa_toml: String,
    /// `/run/confidential-containers/initdata/cdh.toml`
    pub cdh_toml: String,
    /// `/run/confidential-containers/initdata/initdata.toml` (version 0.1.0, sha384)
    pub initdata: String,
}

impl PodInitdata {
    /// The files for a KBS at `kbs_url` (as the guest reaches it).
    pub fn new(kbs_url: &str) -> PodInitdata {
        let aa_toml = format!(
            "[token_configs]\n[token_configs.coco_as]\nurl = \"{kbs_url}\"\n\n\
             [token_configs.kbs]\nurl = \"{kbs_url}\"\ncert = \"\"\n"
        );
        let cdh_toml = format!(
            "socket = 'unix:///run/confidential-containers/cdh.sock'\n\
             credentials = []\n\n[kbc]\nname = 'cc_kbc'\nurl = '{kbs_url}'\nkbs_cert = ''\n"
        );
        let policy = "package agent_policy\n\ndefault AllowRequestsFailingPolicy := true\n";
        let initdata = format!(
            "version = \"0.1.0\"\nalgorithm = \"sha384\"\n\n[data]\n\
             \"aa.toml\" = '''\n{aa_toml}'''\n\n\"cdh.toml\" = '''\n{cdh_toml}'''\n\n\
             \"policy.rego\" = '''\n{policy}'''\n"
        );
        PodInitdata {
            aa_toml,
            cdh_toml,
            initdata,
        }
    }
}

/// kata-agent's `launch_process_timeout`: how long it waits for each daemon's socket.
pub const SOCKET_TIMEOUT_MS: u64 = 6000;

/// The daemons in the order kata-agent launches them.
pub const LAUNCH_ORDER: [&str; 3] = [
    "attestation-agent",
    "confidential-data-hub",
    "api-server-rest",
];

/// Panics unless `ready` (daemon, milliseconds until its socket appeared) lists the daemons
/// in kata-agent's order, each within its limit; `context` goes into the message.
pub fn assert_launched_as_kata(ready: &[(&str, u64)], context: &str) {
    let names: Vec<&str> = ready.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, LAUNCH_ORDER, "{context}");
    for (name, ms) in ready {
        assert!(
            *ms <= SOCKET_TIMEOUT_MS,
            "{name} took {ms} ms, over kata's {SOCKET_TIMEOUT_MS} ms: {context}"
        );
    }
}
