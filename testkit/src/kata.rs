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
