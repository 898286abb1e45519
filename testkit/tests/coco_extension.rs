//! The `coco` guest extension (`coco-extension/build.sh`): the manifest follows kata-agent's
//! rules (src/agent/src/guest_extension_image.rs) and resolves to the argv kata-agent builds;
//! the tree holds every path it names; the pause bundle is an OCI bundle with a static pause;
//! the EROFS image holds the tree owned by root with fixed times; the dm-verity parameters
//! verify and a flipped byte fails; the disk has the data and hash partitions kata's
//! kata-extension-mount.sh opens; and two builds give the same bytes.
//!
//! Needs the debug daemons (`cargo build --bins`, `make test` does it) and mkfs.erofs,
//! fsck.erofs, dump.erofs (erofs-utils) and veritysetup (cryptsetup-bin):
//! scripts/install-test-deps.sh installs them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    os::unix::fs::PermissionsExt,
    path::{Component, Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde::Deserialize;
use testkit::process::{send_signal, workspace_bin};

// ---- kata-agent's manifest rules --------------------------------------------------------------

/// The `${name}` variables kata-agent puts in its substitution context
/// (build_substitution_ctx in src/agent/src/main.rs); any other name fails its launch.
const KATA_CONTEXT_VARS: [&str; 11] = [
    "aa_attestation_uri",
    "aa_attestation_socket",
    "aa_config_path",
    "cdh_config_path",
    "cdh_socket",
    "ocicrypt_config_path",
    "rest_api_features",
    "launch_process_timeout",
    "initdata_toml_path",
    "extension_root",
    "attester_variant",
];

/// The `[paths]` components kata-agent resolves in the coco extension.
const REQUIRED_PATHS: [&str; 2] = ["ocicrypt-config", "pause-bundle"];

/// kata-agent's variant when the selector is empty.
const DEFAULT_VARIANT: &str = "default";

type Table = toml::map::Map<String, toml::Value>;
type Ctx = BTreeMap<&'static str, String>;

#[derive(Debug, Clone)]
struct Manifest {
    paths: BTreeMap<String, String>,
    processes: Vec<Process>,
}

#[derive(Debug, Clone)]
struct Process {
    id: String,
    level: u32,
    binary: Binary,
    args: Vec<String>,
    optional_args: Vec<(String, Vec<String>)>,
    config: Option<String>,
    env: BTreeMap<String, String>,
    wait_socket: Option<String>,
    timeout_secs: Option<String>,
}

#[derive(Debug, Clone)]
enum Binary {
    Path(String),
    Select {
        selector: String,
        variants: BTreeMap<String, Variant>,
    },
}

#[derive(Debug, Clone)]
struct Variant {
    path: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

/// The `${name}` tokens of `s`, scanned as kata-agent's `substitute` does.
fn template_vars(at: &str, s: &str) -> Result<Vec<String>, String> {
    let mut vars = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{at}: unterminated '${{' in '{s}'"))?;
        let name = &after[..end];
        if !KATA_CONTEXT_VARS.contains(&name) {
            return Err(format!(
                "{at}: unknown substitution variable '{name}' (kata-agent knows {})",
                KATA_CONTEXT_VARS.join(", ")
            ));
        }
        vars.push(name.to_string());
        rest = &after[end + 1..];
    }
    Ok(vars)
}

fn substitute(at: &str, s: &str, ctx: &Ctx) -> Result<String, String> {
    template_vars(at, s)?;
    let mut out = s.to_string();
    for (name, value) in ctx {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    Ok(out)
}

/// kata-agent's context with the values it uses in a guest (AA_ATTESTATION_URI, ...).
fn kata_ctx(extension_root: &str) -> Ctx {
    let aa_sock = "/run/confidential-containers/attestation-agent/attestation-agent.sock";
    BTreeMap::from([
        ("aa_attestation_uri", format!("unix://{aa_sock}")),
        ("aa_attestation_socket", aa_sock.to_string()),
        (
            "aa_config_path",
            "/run/confidential-containers/aa.toml".into(),
        ),
        (
            "cdh_config_path",
            "/run/confidential-containers/cdh.toml".into(),
        ),
        ("cdh_socket", "/run/confidential-containers/cdh.sock".into()),
        (
            "ocicrypt_config_path",
            format!("{extension_root}/etc/ocicrypt_config.json"),
        ),
        ("rest_api_features", "resource".into()),
        ("launch_process_timeout", "6".into()),
        ("initdata_toml_path", String::new()),
        ("extension_root", extension_root.to_string()),
        ("attester_variant", DEFAULT_VARIANT.into()),
    ])
}

fn allow_keys(at: &str, t: &Table, allowed: &[&str]) -> Result<(), String> {
    match t.keys().find(|k| !allowed.contains(&k.as_str())) {
        // kata-agent ignores unknown keys; a typo (`wait_sockets`) would silently drop a setting.
        Some(k) => Err(format!(
            "{at}: unknown key '{k}' (allowed: {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

fn string<'a>(at: &str, v: &'a toml::Value) -> Result<&'a str, String> {
    v.as_str()
        .ok_or_else(|| format!("{at}: must be a string, not {}", v.type_str()))
}

fn template(at: &str, v: &toml::Value) -> Result<String, String> {
    let s = string(at, v)?;
    template_vars(at, s)?;
    Ok(s.to_string())
}

fn templates(at: &str, v: Option<&toml::Value>) -> Result<Vec<String>, String> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let a = v
        .as_array()
        .ok_or_else(|| format!("{at}: must be an array of strings, not {}", v.type_str()))?;
    a.iter()
        .enumerate()
        .map(|(i, s)| template(&format!("{at}[{i}]"), s))
        .collect()
}

fn env_table(at: &str, v: Option<&toml::Value>) -> Result<BTreeMap<String, String>, String> {
    let Some(v) = v else {
        return Ok(BTreeMap::new());
    };
    let t = v
        .as_table()
        .ok_or_else(|| format!("{at}: must be a table of strings, not {}", v.type_str()))?;
    let mut env = BTreeMap::new();
    for (k, v) in t {
        let valid = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("{at}: '{k}' is not an environment variable name"));
        }
        env.insert(k.clone(), template(&format!("{at}.{k}"), v)?);
    }
    Ok(env)
}

/// A relative path inside the extension: kata-agent joins it to the extension root and
/// refuses `..`; an absolute one would be re-rooted silently, so it is refused here too.
fn check_rel_path(at: &str, p: &str) -> Result<(), String> {
    if p.trim().is_empty() {
        return Err(format!("{at}: empty path"));
    }
    if p.starts_with('/') {
        return Err(format!(
            "{at}: '{p}' is absolute; paths are relative to the extension root"
        ));
    }
    if Path::new(p)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("{at}: '{p}' leaves the extension root"));
    }
    Ok(())
}

fn binary_path(at: &str, v: &toml::Value) -> Result<String, String> {
    let p = template(at, v)?;
    check_rel_path(
        at,
        &substitute(at, &p, &kata_ctx("/run/kata-extensions/coco"))?,
    )?;
    Ok(p)
}

fn parse_process(i: usize, t: &Table) -> Result<Process, String> {
    let id = match t.get("id") {
        Some(v) => string(&format!("process #{i} id"), v)?.to_string(),
        None => return Err(format!("process #{i} has no id")),
    };
    if id.is_empty() {
        return Err(format!("process #{i} has an empty id"));
    }
    let at = format!("process '{id}'");
    allow_keys(
        &at,
        t,
        &[
            "id",
            "level",
            "path",
            "select",
            "variants",
            "args",
            "optional_args",
            "config",
            "env",
            "wait_socket",
            "timeout_secs",
        ],
    )?;
    let level = match t.get("level") {
        Some(toml::Value::Integer(n)) if (1..=3).contains(n) => *n as u32,
        Some(v) => {
            return Err(format!(
                "{at}: level must be 1 (attestation-agent), 2 (+ data hub) or 3 (+ REST API); \
                 kata-agent never launches {v}"
            ))
        }
        None => {
            return Err(format!(
                "{at}: no level (kata-agent never launches level 0)"
            ))
        }
    };
    let binary = match (t.get("path"), t.get("select"), t.get("variants")) {
        (Some(p), None, None) => Binary::Path(binary_path(&format!("{at} path"), p)?),
        (Some(_), _, _) => {
            return Err(format!(
                "{at}: has both `path` and `select`/`variants`; kata-agent lets the variant \
                 path win silently, name the binary one way"
            ))
        }
        (None, Some(sel), Some(vs)) => {
            let selector = template(&format!("{at} select"), sel)?;
            let vs = vs
                .as_table()
                .ok_or_else(|| format!("{at}: variants must be a table"))?;
            if !vs.contains_key(DEFAULT_VARIANT) {
                return Err(format!(
                    "{at}: no [process.variants.default], which kata-agent picks for an empty selector"
                ));
            }
            let mut variants = BTreeMap::new();
            for (name, v) in vs {
                let vat = format!("{at} variant '{name}'");
                let vt = v
                    .as_table()
                    .ok_or_else(|| format!("{vat}: must be a table"))?;
                allow_keys(&vat, vt, &["path", "args", "env"])?;
                let path = match vt.get("path") {
                    Some(p) => binary_path(&format!("{vat} path"), p)?,
                    None => return Err(format!("{vat}: no path")),
                };
                variants.insert(
                    name.clone(),
                    Variant {
                        path,
                        args: templates(&format!("{vat} args"), vt.get("args"))?,
                        env: env_table(&format!("{vat} env"), vt.get("env"))?,
                    },
                );
            }
            Binary::Select { selector, variants }
        }
        (None, Some(_), None) => return Err(format!("{at}: `select` without variants")),
        (None, None, Some(_)) => return Err(format!("{at}: variants without `select`")),
        (None, None, None) => {
            return Err(format!(
                "{at}: names no binary (neither `path` nor `select` with variants)"
            ))
        }
    };
    let mut optional_args = Vec::new();
    if let Some(v) = t.get("optional_args") {
        let a = v
            .as_array()
            .ok_or_else(|| format!("{at}: optional_args must be an array of tables"))?;
        for (j, g) in a.iter().enumerate() {
            let gat = format!("{at} optional_args[{j}]");
            let g = g
                .as_table()
                .ok_or_else(|| format!("{gat}: must be a table"))?;
            allow_keys(&gat, g, &["when", "args"])?;
            let when = match g.get("when") {
                Some(w) => string(&format!("{gat} when"), w)?.to_string(),
                None => return Err(format!("{gat}: no `when`")),
            };
            if !KATA_CONTEXT_VARS.contains(&when.as_str()) {
                return Err(format!(
                    "{gat}: `when` names '{when}', which kata-agent never sets"
                ));
            }
            let args = templates(&format!("{gat} args"), g.get("args"))?;
            if args.is_empty() {
                return Err(format!("{gat}: no args"));
            }
            optional_args.push((when, args));
        }
    }
    let opt_template = |key: &str| -> Result<Option<String>, String> {
        t.get(key)
            .map(|v| template(&format!("{at} {key}"), v))
            .transpose()
    };
    let timeout_secs = opt_template("timeout_secs")?;
    if let Some(ts) = &timeout_secs {
        let value = substitute(&at, ts, &kata_ctx("/run/kata-extensions/coco"))?;
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{at}: timeout_secs '{ts}' is not a whole number of seconds"
            ));
        }
    }
    Ok(Process {
        level,
        binary,
        args: templates(&format!("{at} args"), t.get("args"))?,
        optional_args,
        config: opt_template("config")?,
        env: env_table(&format!("{at} env"), t.get("env"))?,
        wait_socket: opt_template("wait_socket")?,
        timeout_secs,
        id,
    })
}

/// Checks a components.toml against kata-agent's rules, a little stricter where kata-agent
/// would silently do something else than the author meant.
fn validate(text: &str) -> Result<Manifest, String> {
    let top: Table = toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?;
    allow_keys("manifest", &top, &["schema_version", "paths", "process"])?;
    match top.get("schema_version") {
        Some(toml::Value::Integer(1)) => {}
        Some(toml::Value::Integer(n)) => {
            return Err(format!(
                "unsupported schema_version {n}; kata-agent reads 1"
            ))
        }
        Some(v) => {
            return Err(format!(
                "schema_version must be the integer 1, not {}",
                v.type_str()
            ))
        }
        None => return Err("no schema_version; kata-agent requires it".into()),
    }
    let paths_table = match top.get("paths") {
        Some(toml::Value::Table(t)) => t,
        Some(v) => return Err(format!("[paths] must be a table, not {}", v.type_str())),
        None => return Err("no [paths] table".into()),
    };
    let mut paths = BTreeMap::new();
    for (k, v) in paths_table {
        let at = format!("paths.\"{k}\"");
        let p = string(&at, v)?;
        if p.contains("${") {
            return Err(format!(
                "{at}: kata-agent does not substitute [paths] values"
            ));
        }
        check_rel_path(&at, p)?;
        paths.insert(k.clone(), p.to_string());
    }
    for required in REQUIRED_PATHS {
        if !paths.contains_key(required) {
            return Err(format!(
                "[paths] has no \"{required}\", which kata-agent resolves in the coco extension"
            ));
        }
    }
    let list = match top.get("process") {
        Some(toml::Value::Array(a)) if !a.is_empty() => a,
        Some(toml::Value::Array(_)) | None => {
            return Err("no [[process]] entries: the extension would launch nothing".into())
        }
        Some(v) => {
            return Err(format!(
                "process must be an array of tables, not {}",
                v.type_str()
            ))
        }
    };
    let mut processes = Vec::new();
    let mut ids = BTreeSet::new();
    for (i, p) in list.iter().enumerate() {
        let t = p
            .as_table()
            .ok_or_else(|| format!("process #{i} must be a table"))?;
        let process = parse_process(i, t)?;
        if !ids.insert(process.id.clone()) {
            return Err(format!("process id '{}' appears twice", process.id));
        }
        processes.push(process);
    }
    Ok(Manifest { paths, processes })
}

/// One process as kata-agent launches it (LaunchSpec plus the `-c` its launch_process adds).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Launch {
    id: String,
    path: PathBuf,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    wait_socket: Option<String>,
    timeout_secs: u64,
}

/// kata-agent's launch plan: level gating, variant choice, `${var}` substitution,
/// optional args when their variable is set, `-c <config>` when that file exists.
fn launch_plan(
    m: &Manifest,
    ctx: &Ctx,
    root: &Path,
    max_level: u32,
) -> Result<Vec<Launch>, String> {
    let mut plan = Vec::new();
    for p in m.processes.iter().filter(|p| p.level <= max_level) {
        let at = format!("process '{}'", p.id);
        let (path, variant) = match &p.binary {
            Binary::Path(path) => (path.clone(), None),
            Binary::Select { selector, variants } => {
                let mut name = substitute(&at, selector, ctx)?;
                if name.is_empty() {
                    name = DEFAULT_VARIANT.into();
                }
                let v = variants
                    .get(&name)
                    .ok_or_else(|| format!("{at}: no variant '{name}'"))?;
                (v.path.clone(), Some(v))
            }
        };
        let mut argv = Vec::new();
        for a in &p.args {
            argv.push(substitute(&at, a, ctx)?);
        }
        for (when, args) in &p.optional_args {
            if ctx.get(when.as_str()).is_some_and(|v| !v.is_empty()) {
                for a in args {
                    argv.push(substitute(&at, a, ctx)?);
                }
            }
        }
        let mut env = BTreeMap::new();
        for (k, v) in &p.env {
            env.insert(k.clone(), substitute(&at, v, ctx)?);
        }
        if let Some(v) = variant {
            for a in &v.args {
                argv.push(substitute(&at, a, ctx)?);
            }
            for (k, val) in &v.env {
                env.insert(k.clone(), substitute(&at, val, ctx)?);
            }
        }
        if let Some(c) = &p.config {
            let c = substitute(&at, c, ctx)?;
            if !c.is_empty() && Path::new(&c).exists() {
                argv.push("-c".into());
                argv.push(c);
            }
        }
        let wait_socket = match &p.wait_socket {
            Some(s) => Some(substitute(&at, s, ctx)?).filter(|s| !s.is_empty()),
            None => None,
        };
        let timeout_secs = match &p.timeout_secs {
            Some(t) => substitute(&at, t, ctx)?
                .parse()
                .map_err(|e| format!("{at}: timeout_secs: {e}"))?,
            None => 0,
        };
        plan.push(Launch {
            id: p.id.clone(),
            path: root.join(substitute(&at, &path, ctx)?),
            argv,
            env: env.into_iter().collect(),
            wait_socket,
            timeout_secs,
        });
    }
    Ok(plan)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn shipped_manifest_text() -> String {
    fs::read_to_string(repo_root().join("coco-extension/components.toml")).unwrap()
}

fn shipped_manifest_value() -> toml::Value {
    toml::from_str(&shipped_manifest_text()).unwrap()
}

fn process_table<'a>(v: &'a mut toml::Value, id: &str) -> &'a mut Table {
    v["process"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .map(|p| p.as_table_mut().unwrap())
        .find(|p| p["id"].as_str() == Some(id))
        .unwrap()
}

// ---- the manifest, without a build ---------------------------------------------------------

#[test]
fn shipped_manifest_resolves_to_the_argv_kata_agent_uses() {
    let m = validate(&shipped_manifest_text()).unwrap();
    assert_eq!(m.paths["ocicrypt-config"], "etc/ocicrypt_config.json");
    assert_eq!(m.paths["pause-bundle"], "pause_bundle");
    let ids: Vec<_> = m
        .processes
        .iter()
        .map(|p| (p.id.as_str(), p.level))
        .collect();
    assert_eq!(
        ids,
        [
            ("attestation-agent", 1),
            ("confidential-data-hub", 2),
            ("api-server-rest", 3)
        ]
    );

    let root = Path::new("/run/kata-extensions/coco");
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = kata_ctx("/run/kata-extensions/coco");
    // config files that exist, so the `-c` kata-agent adds is part of the argv
    let aa_conf = dir.path().join("aa.toml");
    let cdh_conf = dir.path().join("cdh.toml");
    fs::write(&aa_conf, "").unwrap();
    fs::write(&cdh_conf, "").unwrap();
    ctx.insert("aa_config_path", aa_conf.display().to_string());
    ctx.insert("cdh_config_path", cdh_conf.display().to_string());
    ctx.insert(
        "initdata_toml_path",
        "/run/confidential-containers/initdata.toml".into(),
    );

    let plan = launch_plan(&m, &ctx, root, 3).unwrap();
    assert_eq!(plan.len(), 3);
    let aa_sock = "/run/confidential-containers/attestation-agent/attestation-agent.sock";
    assert_eq!(
        plan[0],
        Launch {
            id: "attestation-agent".into(),
            path: root.join("usr/local/bin/attestation-agent"),
            argv: vec![
                "--attestation_sock".into(),
                format!("unix://{aa_sock}"),
                "--initdata-toml".into(),
                "/run/confidential-containers/initdata.toml".into(),
                "-c".into(),
                aa_conf.display().to_string(),
            ],
            env: vec![],
            wait_socket: Some(aa_sock.into()),
            timeout_secs: 6,
        }
    );
    assert_eq!(
        plan[1],
        Launch {
            id: "confidential-data-hub".into(),
            path: root.join("usr/local/bin/confidential-data-hub"),
            argv: vec!["-c".into(), cdh_conf.display().to_string()],
            env: vec![
                (
                    "OCICRYPT_KEYPROVIDER_CONFIG".into(),
                    "/run/kata-extensions/coco/etc/ocicrypt_config.json".into()
                ),
                (
                    "PATH".into(),
                    "/run/kata-extensions/coco/usr/sbin:/bin:/sbin:/usr/bin:/usr/sbin".into()
                ),
            ],
            wait_socket: Some("/run/confidential-containers/cdh.sock".into()),
            timeout_secs: 6,
        }
    );
    assert_eq!(
        plan[2],
        Launch {
            id: "api-server-rest".into(),
            path: root.join("usr/local/bin/api-server-rest"),
            argv: vec!["--features".into(), "resource".into()],
            env: vec![],
            wait_socket: None,
            timeout_secs: 0,
        }
    );

    // Without initdata and configs: only the socket; the level gates later processes.
    let bare = kata_ctx("/run/kata-extensions/coco");
    let plan = launch_plan(&m, &bare, root, 1).unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(
        plan[0].argv,
        ["--attestation_sock", &format!("unix://{aa_sock}")]
    );
    assert!(launch_plan(&m, &bare, root, 0).unwrap().is_empty());

    // The NVIDIA variant: its own binary and library path, the same argv.
    let mut nv = bare.clone();
    nv.insert("attester_variant", "nvidia".into());
    let plan = launch_plan(&m, &nv, root, 1).unwrap();
    assert_eq!(
        plan[0].path,
        root.join("usr/local/bin/attestation-agent-nv")
    );
    assert_eq!(
        plan[0].env,
        [(
            "LD_LIBRARY_PATH".to_string(),
            "/run/kata-extensions/coco/usr/local/lib:/run/kata-extensions/gpu/usr/lib".to_string()
        )]
    );
    assert_eq!(
        plan[0].argv,
        ["--attestation_sock", &format!("unix://{aa_sock}")]
    );
    // An empty selector means "default"; an unknown one fails as in kata-agent.
    let mut empty = bare.clone();
    empty.insert("attester_variant", String::new());
    assert_eq!(
        launch_plan(&m, &empty, root, 1).unwrap()[0].path,
        root.join("usr/local/bin/attestation-agent")
    );
    let mut unknown = bare;
    unknown.insert("attester_variant", "tpu".into());
    let err = launch_plan(&m, &unknown, root, 1).unwrap_err();
    assert!(err.contains("no variant 'tpu'"), "{err}");
}

#[test]
fn validator_rejects_bad_manifests() {
    type Mutation = fn(&mut toml::Value);
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "missing pause-bundle",
            |v| {
                v["paths"].as_table_mut().unwrap().remove("pause-bundle");
            },
            "\"pause-bundle\"",
        ),
        (
            "missing ocicrypt-config",
            |v| {
                v["paths"].as_table_mut().unwrap().remove("ocicrypt-config");
            },
            "\"ocicrypt-config\"",
        ),
        (
            "path and select",
            |v| {
                process_table(v, "attestation-agent")
                    .insert("path".into(), "usr/local/bin/attestation-agent".into());
            },
            "both `path` and `select`",
        ),
        (
            "unknown variable",
            |v| {
                process_table(v, "api-server-rest").insert(
                    "args".into(),
                    toml::Value::Array(vec!["${rest_api_flags}".into()]),
                );
            },
            "unknown substitution variable 'rest_api_flags'",
        ),
        (
            "unknown variable in env",
            |v| {
                let env = process_table(v, "confidential-data-hub")["env"]
                    .as_table_mut()
                    .unwrap();
                env.insert("PATH".into(), "${addon_root}/usr/sbin".into());
            },
            "unknown substitution variable 'addon_root'",
        ),
        (
            "unterminated variable",
            |v| {
                process_table(v, "confidential-data-hub")
                    .insert("wait_socket".into(), "${cdh_socket".into());
            },
            "unterminated",
        ),
        (
            "schema version 2",
            |v| {
                v["schema_version"] = 2.into();
            },
            "unsupported schema_version 2",
        ),
        (
            "schema version as a string",
            |v| {
                v["schema_version"] = "1".into();
            },
            "must be the integer 1",
        ),
        (
            "no schema version",
            |v| {
                v.as_table_mut().unwrap().remove("schema_version");
            },
            "no schema_version",
        ),
        (
            "timeout as an integer",
            |v| {
                process_table(v, "api-server-rest").insert("timeout_secs".into(), 0.into());
            },
            "must be a string",
        ),
        (
            "timeout with a unit",
            |v| {
                process_table(v, "api-server-rest").insert("timeout_secs".into(), "5s".into());
            },
            "not a whole number",
        ),
        (
            "no default variant",
            |v| {
                process_table(v, "attestation-agent")["variants"]
                    .as_table_mut()
                    .unwrap()
                    .remove("default");
            },
            "no [process.variants.default]",
        ),
        (
            "select without variants",
            |v| {
                process_table(v, "attestation-agent").remove("variants");
            },
            "`select` without variants",
        ),
        (
            "no binary",
            |v| {
                process_table(v, "api-server-rest").remove("path");
            },
            "names no binary",
        ),
        (
            "path leaves the extension",
            |v| {
                process_table(v, "api-server-rest")
                    .insert("path".into(), "usr/../../bin/sh".into());
            },
            "leaves the extension root",
        ),
        (
            "absolute path",
            |v| {
                v["paths"]["pause-bundle"] = "/pause_bundle".into();
            },
            "is absolute",
        ),
        (
            "variable in [paths]",
            |v| {
                v["paths"]["ocicrypt-config"] = "${extension_root}/etc/ocicrypt_config.json".into();
            },
            "does not substitute [paths]",
        ),
        (
            "misspelt key",
            |v| {
                let p = process_table(v, "confidential-data-hub");
                let s = p.remove("wait_socket").unwrap();
                p.insert("wait_sockets".into(), s);
            },
            "unknown key 'wait_sockets'",
        ),
        (
            "level 0",
            |v| {
                process_table(v, "api-server-rest").insert("level".into(), 0.into());
            },
            "level must be",
        ),
        (
            "duplicate id",
            |v| {
                process_table(v, "api-server-rest").insert("id".into(), "attestation-agent".into());
            },
            "appears twice",
        ),
        (
            "optional args on an unknown variable",
            |v| {
                let g = process_table(v, "attestation-agent")["optional_args"][0]
                    .as_table_mut()
                    .unwrap();
                g.insert("when".into(), "initdata".into());
            },
            "never sets",
        ),
        (
            "env name with a space",
            |v| {
                let env = process_table(v, "confidential-data-hub")["env"]
                    .as_table_mut()
                    .unwrap();
                env.insert("BAD NAME".into(), "x".into());
            },
            "not an environment variable name",
        ),
        (
            "args as a string",
            |v| {
                process_table(v, "api-server-rest").insert("args".into(), "--features".into());
            },
            "must be an array of strings",
        ),
        (
            "no processes",
            |v| {
                v.as_table_mut().unwrap().remove("process");
            },
            "no [[process]]",
        ),
    ];
    let good = shipped_manifest_value();
    validate(&toml::to_string(&good).unwrap()).unwrap();
    for (name, mutate, expected) in cases {
        let mut v = good.clone();
        mutate(&mut v);
        assert_ne!(v, good, "{name}: the mutation changed nothing");
        let err = validate(&toml::to_string(&v).unwrap())
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert!(err.contains(expected), "{name}: {err}");
    }

    // Truncated inside a string, and not TOML at all.
    let text = shipped_manifest_text();
    let cut = text.find("usr/local/bin/confidential-data-hub").unwrap() + 5;
    let err = validate(&text[..cut]).unwrap_err();
    assert!(err.contains("not valid TOML"), "{err}");
    let err = validate("{\"schema_version\": 1}").unwrap_err();
    assert!(err.contains("not valid TOML"), "{err}");
}

// ---- the build --------------------------------------------------------------------------------

const BINARIES: [&str; 3] = [
    "attestation-agent",
    "confidential-data-hub",
    "api-server-rest",
];
const EPOCH: u64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC

#[derive(Debug)]
struct Build {
    out: PathBuf,
    stdout: String,
    params: BTreeMap<String, String>,
}

impl Build {
    fn rootfs(&self) -> PathBuf {
        self.out.join("rootfs")
    }
    fn file(&self, name: &str) -> PathBuf {
        self.out.join(name)
    }
}

#[derive(Debug)]
struct Builds {
    bin_dir: PathBuf,
    first: Build,
    second: Build,
    other_epoch: Build,
}

fn require_tools() -> Result<(), String> {
    for tool in ["mkfs.erofs", "fsck.erofs", "dump.erofs", "veritysetup"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run sh: {e}"))?
            .success();
        if !found {
            return Err(format!(
                "{tool} is not installed: run scripts/install-test-deps.sh \
                 (Debian packages erofs-utils and cryptsetup-bin)"
            ));
        }
    }
    Ok(())
}

fn run_build(bin_dir: &Path, out: &Path, epoch: u64) -> Result<Build, String> {
    let output = Command::new(repo_root().join("coco-extension/build.sh"))
        .env("BIN_DIR", bin_dir)
        .env("OUT_DIR", out)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .output()
        .map_err(|e| format!("cannot run coco-extension/build.sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "coco-extension/build.sh failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    // The "verity parameters:" block: indented key=value lines.
    let mut params = BTreeMap::new();
    let block = stdout
        .split("verity parameters:\n")
        .nth(1)
        .ok_or_else(|| format!("build.sh printed no verity parameters:\n{stdout}"))?;
    for line in block.lines().take_while(|l| l.starts_with("  ")) {
        let (k, v) = line
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("bad verity parameter line '{line}'"))?;
        params.insert(
            k.to_string(),
            v.split_whitespace().next().unwrap_or("").to_string(),
        );
    }
    Ok(Build {
        out: out.to_path_buf(),
        stdout,
        params,
    })
}

/// One set of builds shared by the tests of this file, from a snapshot of the debug daemons
/// (so a concurrent `cargo build` cannot change them between two builds).
fn builds() -> &'static Builds {
    static BUILDS: OnceLock<Result<Builds, String>> = OnceLock::new();
    let result = BUILDS.get_or_init(|| {
        require_tools()?;
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("coco-extension");
        if base.exists() {
            fs::remove_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
        }
        let bin_dir = base.join("bin");
        fs::create_dir_all(&bin_dir).map_err(|e| e.to_string())?;
        for name in BINARIES {
            let bin = workspace_bin(name).map_err(|e| e.to_string())?;
            fs::copy(&bin, bin_dir.join(name)).map_err(|e| format!("{}: {e}", bin.display()))?;
        }
        Ok(Builds {
            first: run_build(&bin_dir, &base.join("first"), EPOCH)?,
            second: run_build(&bin_dir, &base.join("second"), EPOCH)?,
            other_epoch: run_build(&bin_dir, &base.join("other-epoch"), EPOCH + 1)?,
            bin_dir,
        })
    });
    match result {
        Ok(b) => b,
        Err(e) => panic!("{e}"),
    }
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 == 0o111)
}

/// Every path below `root`, relative, with its mode bits (and whether it is a directory).
fn tree(root: &Path) -> BTreeMap<String, (bool, u32)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (bool, u32)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.insert(rel, (meta.is_dir(), meta.permissions().mode() & 0o7777));
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn verity_verify(b: &Build, data: &Path, hash: &Path, root_hash: &str) -> Output {
    run(Command::new("veritysetup").args([
        "verify",
        "--no-superblock",
        &format!("--hash={}", b.params["hash_algorithm"]),
        &format!("--data-block-size={}", b.params["data_block_size"]),
        &format!("--hash-block-size={}", b.params["hash_block_size"]),
        &format!("--data-blocks={}", b.params["data_blocks"]),
        &format!("--salt={}", b.params["salt"]),
        &data.display().to_string(),
        &hash.display().to_string(),
        root_hash,
    ]))
}

#[test]
fn tree_holds_every_path_the_manifest_names() {
    let b = &builds().first;
    let root = b.rootfs();
    let expected: BTreeMap<String, (bool, u32)> = [
        ("etc", (true, 0o755)),
        ("etc/kata-extensions", (true, 0o755)),
        ("etc/kata-extensions/components.toml", (false, 0o644)),
        ("etc/ocicrypt_config.json", (false, 0o644)),
        ("pause_bundle", (true, 0o755)),
        ("pause_bundle/config.json", (false, 0o644)),
        ("pause_bundle/rootfs", (true, 0o755)),
        ("pause_bundle/rootfs/pause", (false, 0o755)),
        ("usr", (true, 0o755)),
        ("usr/local", (true, 0o755)),
        ("usr/local/bin", (true, 0o755)),
        ("usr/local/bin/api-server-rest", (false, 0o755)),
        ("usr/local/bin/attestation-agent", (false, 0o755)),
        ("usr/local/bin/confidential-data-hub", (false, 0o755)),
        ("usr/sbin", (true, 0o755)),
        ("usr/sbin/cryptsetup", (false, 0o755)),
    ]
    .into_iter()
    .map(|(p, m)| (p.to_string(), m))
    .collect();
    assert_eq!(tree(&root), expected);

    // The manifest in the tree is the shipped one and passes the rules.
    let text = fs::read_to_string(root.join("etc/kata-extensions/components.toml")).unwrap();
    assert_eq!(text, shipped_manifest_text());
    let m = validate(&text).unwrap();

    for (name, rel) in &m.paths {
        assert!(
            root.join(rel).exists(),
            "[paths] {name} = {rel} is not in the tree"
        );
    }
    assert!(root
        .join(&m.paths["pause-bundle"])
        .join("config.json")
        .is_file());

    // With ${extension_root} = the tree, every binary and every in-extension path of each
    // process and variant exists. The NVIDIA variant is the one exception, and only because
    // no attestation-agent-nv was built.
    let nv_built = builds().bin_dir.join("attestation-agent-nv").exists();
    assert!(!nv_built && !root.join("usr/local/bin/attestation-agent-nv").exists());
    let root_str = root.display().to_string();
    let mut checked = 0;
    let no_env = BTreeMap::new();
    for p in &m.processes {
        let mut variants: Vec<(Option<&str>, &str, &BTreeMap<String, String>)> = Vec::new();
        match &p.binary {
            Binary::Path(path) => variants.push((None, path, &no_env)),
            Binary::Select { variants: vs, .. } => {
                for (name, v) in vs {
                    variants.push((Some(name), &v.path, &v.env));
                }
            }
        }
        for (variant, path, env) in variants {
            let absent_ok = variant == Some("nvidia") && !nv_built;
            let bin = root.join(path);
            assert!(
                is_executable(&bin) || absent_ok,
                "{} {variant:?}: {} is not an executable in the tree",
                p.id,
                bin.display()
            );
            for (k, v) in p.env.iter().chain(env.iter()) {
                let v = v.replace("${extension_root}", &root_str);
                for part in v.split(':').filter(|s| s.starts_with(&root_str)) {
                    assert!(
                        Path::new(part).exists() || absent_ok,
                        "{} env {k}: {part} is not in the tree",
                        p.id
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(
        checked, 3,
        "OCICRYPT_KEYPROVIDER_CONFIG, PATH and LD_LIBRARY_PATH"
    );

    // The keyprovider config CDH is pointed at.
    let ocicrypt: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("etc/ocicrypt_config.json")).unwrap()).unwrap();
    assert_eq!(
        ocicrypt,
        serde_json::json!({"key-providers": {"attestation-agent": {
            "ttrpc": "unix:///run/confidential-containers/cdh.sock"}}})
    );
}

#[test]
fn daemons_accept_the_argv_kata_agent_builds() {
    let b = &builds().first;
    let root = b.rootfs();
    let m = validate(&shipped_manifest_text()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = kata_ctx(&root.display().to_string());
    for (key, file) in [
        ("aa_config_path", "aa.toml"),
        ("cdh_config_path", "cdh.toml"),
    ] {
        let p = dir.path().join(file);
        fs::write(&p, "").unwrap();
        ctx.insert(key, p.display().to_string());
    }
    ctx.insert(
        "initdata_toml_path",
        dir.path().join("initdata.toml").display().to_string(),
    );
    for features in ["resource", "all"] {
        ctx.insert("rest_api_features", features.into());
        let plan = launch_plan(&m, &ctx, &root, 3).unwrap();
        assert_eq!(plan.len(), 3);
        for l in plan {
            // clap parses every flag and value before it acts on --help: an unknown flag or
            // a bad value (`--features bogus`) fails here.
            let out = run(Command::new(&l.path)
                .args(&l.argv)
                .arg("--help")
                .env_clear()
                .envs(l.env.iter().cloned()));
            assert!(
                out.status.success() && !out.stdout.is_empty(),
                "{} {:?} --help: {}\n{}",
                l.id,
                l.argv,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // ... and a wrong value does fail, so the check above can fail.
    ctx.insert("rest_api_features", "bogus".into());
    let plan = launch_plan(&m, &ctx, &root, 3).unwrap();
    let asr = &plan[2];
    let out = run(Command::new(&asr.path).args(&asr.argv).arg("--help"));
    assert!(!out.status.success());
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciSpec {
    oci_version: String,
    process: OciProcess,
    root: OciRoot,
    #[serde(default)]
    mounts: Vec<OciMount>,
    linux: OciLinux,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciProcess {
    args: Vec<String>,
    cwd: String,
    user: OciUser,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    terminal: bool,
}

#[derive(Debug, Deserialize)]
struct OciUser {
    uid: u32,
    gid: u32,
}

#[derive(Debug, Deserialize)]
struct OciRoot {
    path: String,
    #[serde(default)]
    readonly: bool,
}

#[derive(Debug, Deserialize)]
struct OciMount {
    destination: String,
}

#[derive(Debug, Deserialize)]
struct OciLinux {
    namespaces: Vec<OciNamespace>,
}

#[derive(Debug, Deserialize)]
struct OciNamespace {
    #[serde(rename = "type")]
    kind: String,
    path: Option<String>,
}

/// True when the ELF file has no program interpreter (a static executable).
fn elf_is_static(bytes: &[u8]) -> bool {
    assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
    let is64 = bytes[4] == 2;
    assert_eq!(bytes[5], 1, "little-endian ELF expected");
    let u = |off: usize, len: usize| -> usize {
        let mut v = 0usize;
        for (i, b) in bytes[off..off + len].iter().enumerate() {
            v |= (*b as usize) << (8 * i);
        }
        v
    };
    let (phoff, phentsize, phnum) = if is64 {
        (u(0x20, 8), u(0x36, 2), u(0x38, 2))
    } else {
        (u(0x1c, 4), u(0x2a, 2), u(0x2c, 2))
    };
    assert!(phnum > 0, "no program headers");
    (0..phnum).all(|i| u(phoff + i * phentsize, 4) != 3) // PT_INTERP
}

#[test]
fn pause_bundle_is_an_oci_bundle_with_a_static_pause() {
    let b = &builds().first;
    let bundle = b.rootfs().join("pause_bundle");
    let spec: OciSpec =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert!(spec.oci_version.starts_with("1."), "{}", spec.oci_version);
    assert_eq!(spec.process.args, ["/pause"]);
    assert_eq!(spec.process.cwd, "/");
    assert!(!spec.process.terminal);
    // as the upstream pause image: user 65535:65535
    assert_eq!(
        (spec.process.user.uid, spec.process.user.gid),
        (65535, 65535)
    );
    assert!(spec.process.env.iter().all(|e| e.contains('=')));
    assert_eq!(spec.root.path, "rootfs");
    assert!(spec.root.readonly);
    assert!(spec.mounts.iter().all(|m| m.destination.starts_with('/')));
    let kinds: BTreeSet<&str> = spec
        .linux
        .namespaces
        .iter()
        .map(|n| n.kind.as_str())
        .collect();
    assert_eq!(
        kinds.len(),
        spec.linux.namespaces.len(),
        "a namespace appears twice"
    );
    assert_eq!(
        kinds,
        BTreeSet::from(["ipc", "mount", "network", "pid", "uts"])
    );
    assert!(spec.linux.namespaces.iter().all(|n| n.path.is_none()));

    // kata-agent copies config.json and rootfs/pause; args[0] is that binary.
    let pause = bundle
        .join(&spec.root.path)
        .join(spec.process.args[0].trim_start_matches('/'));
    assert!(is_executable(&pause));
    assert!(
        elf_is_static(&fs::read(&pause).unwrap()),
        "pause is not static"
    );

    // It waits, and SIGTERM / SIGINT end it with status 0.
    for signal in ["TERM", "INT"] {
        let mut child = Command::new(&pause).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            child.try_wait().unwrap().is_none(),
            "pause exited by itself"
        );
        send_signal(child.id(), "CHLD").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            child.try_wait().unwrap().is_none(),
            "pause exited on SIGCHLD"
        );
        send_signal(child.id(), signal).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("pause ignored SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0), "SIG{signal}: {status}");
    }
}

#[test]
fn erofs_image_holds_the_tree_owned_by_root_with_fixed_times() {
    let b = &builds().first;
    let image = b.file("coco-extension.erofs");
    let dir = tempfile::tempdir().unwrap();
    let extracted = dir.path().join("x");
    let out = run(Command::new("fsck.erofs")
        .arg(format!("--extract={}", extracted.display()))
        .arg("--preserve-perms")
        .arg(&image));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Same entries, modes and bytes as the tree.
    assert_eq!(tree(&extracted), tree(&b.rootfs()));
    for (rel, (is_dir, _)) in tree(&b.rootfs()) {
        if !is_dir {
            assert!(
                fs::read(extracted.join(&rel)).unwrap() == fs::read(b.rootfs().join(&rel)).unwrap(),
                "{rel} differs in the image"
            );
        }
    }
    // Owners and times are fixed in the image itself.
    for path in [
        "/usr/local/bin/attestation-agent",
        "/etc",
        "/pause_bundle/config.json",
    ] {
        let out = run(Command::new("dump.erofs")
            .arg(format!("--path={path}"))
            .arg(&image)
            .env("TZ", "UTC"));
        let text = String::from_utf8_lossy(&out.stdout);
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(out.status.success(), "{path}: {text}");
        assert!(words.contains("Uid: 0 Gid: 0"), "{path}: {text}");
        assert!(
            words.contains("Timestamp: 2023-11-14 22:13:20"),
            "{path}: {text}"
        );
    }
}

#[test]
fn verity_parameters_verify_and_a_flipped_byte_fails() {
    let b = &builds().first;
    let p = &b.params;
    for key in [
        "root_hash",
        "salt",
        "data_blocks",
        "data_block_size",
        "hash_block_size",
    ] {
        assert!(!p[key].is_empty(), "{key} not printed:\n{}", b.stdout);
    }
    assert_eq!(
        p["hash_algorithm"], "sha256",
        "kata's mount script passes no --hash"
    );
    assert_eq!(p["data_block_size"], "4096");
    assert_eq!(p["hash_block_size"], "4096");
    assert_eq!(p["hash_offset"], "0");
    assert_eq!(p["root_hash"].len(), 64);
    assert_eq!(p["salt"].len(), 64);
    // The salt is derived from the data: sha256 of the EROFS image.
    let data = b.file("coco-extension.erofs");
    let bytes = fs::read(&data).unwrap();
    assert_eq!(
        p["salt"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
    );
    assert_eq!(
        p["data_blocks"].parse::<usize>().unwrap() * 4096,
        bytes.len(),
        "dm-verity must cover the whole image"
    );
    // kata's verity_params value, as written for the runtime configuration.
    let line = fs::read_to_string(b.file("root_hash_coco-extension.txt")).unwrap();
    let expected = format!(
        "root_hash={},salt={},data_blocks={},data_block_size={},hash_block_size={}\n",
        p["root_hash"], p["salt"], p["data_blocks"], p["data_block_size"], p["hash_block_size"]
    );
    assert_eq!(line, expected);
    assert!(b
        .stdout
        .contains(&format!("verity_params = \"{}\"", expected.trim())));

    let hash = b.file("coco-extension.verity");
    let ok = verity_verify(b, &data, &hash, &p["root_hash"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Another root hash fails.
    let mut wrong = p["root_hash"].clone().into_bytes();
    wrong[63] = if wrong[63] == b'0' { b'1' } else { b'0' };
    let out = verity_verify(b, &data, &hash, std::str::from_utf8(&wrong).unwrap());
    assert!(!out.status.success(), "a wrong root hash verified");

    // One flipped byte in the data (in a copy; the build stays untouched) fails.
    let dir = tempfile::tempdir().unwrap();
    for offset in [1024 + 3, bytes.len() / 2, bytes.len() - 1] {
        let mut tampered = bytes.clone();
        tampered[offset] ^= 0x01;
        let copy = dir.path().join("tampered.erofs");
        fs::write(&copy, &tampered).unwrap();
        let out = verity_verify(b, &copy, &hash, &p["root_hash"]);
        assert!(!out.status.success(), "a flipped byte at {offset} verified");
    }
    assert_eq!(fs::read(&data).unwrap(), bytes);
}

#[test]
fn disk_image_has_data_and_hash_partitions_as_kata_mounts_them() {
    let b = &builds().first;
    let disk = fs::read(b.file("kata-containers-coco-extension.img")).unwrap();
    let data = fs::read(b.file("coco-extension.erofs")).unwrap();
    let hash = fs::read(b.file("coco-extension.verity")).unwrap();
    assert_eq!(&disk[510..512], [0x55, 0xaa], "no msdos partition table");
    let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let entry = |i: usize| &disk[446 + 16 * i..446 + 16 * (i + 1)];
    // kata-extension-mount.sh: <disk>p1 = data, <disk>p2 = hash; nothing else.
    let mut parts = Vec::new();
    for i in 0..2 {
        let e = entry(i);
        assert_eq!(e[4], 0x83, "partition {} is not a Linux partition", i + 1);
        parts.push((le(&e[8..12]) * 512, le(&e[12..16]) * 512));
    }
    assert!(entry(2).iter().chain(entry(3)).all(|b| *b == 0));
    let (p1, p1_len) = parts[0];
    let (p2, p2_len) = parts[1];
    assert_eq!(p1, 1 << 20, "partition 1 starts at 1 MiB");
    assert!(p1_len >= data.len() && p2_len >= hash.len());
    assert!(p1 + p1_len <= p2, "partitions overlap");
    assert_eq!(disk.len(), p2 + p2_len, "the disk ends with partition 2");
    assert!(
        disk[p1..p1 + data.len()] == data[..],
        "partition 1 is not the EROFS image"
    );
    assert!(
        disk[p2..p2 + hash.len()] == hash[..],
        "partition 2 is not the hash tree"
    );

    // The partitions, read back from the disk, verify with the printed parameters.
    let dir = tempfile::tempdir().unwrap();
    let (d, h) = (dir.path().join("p1"), dir.path().join("p2"));
    fs::write(&d, &disk[p1..p1 + p1_len]).unwrap();
    fs::write(&h, &disk[p2..p2 + p2_len]).unwrap();
    let out = verity_verify(b, &d, &h, &b.params["root_hash"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn builds_are_reproducible_and_follow_source_date_epoch() {
    let all = builds();
    let (a, b, c) = (&all.first, &all.second, &all.other_epoch);
    for name in [
        "coco-extension.erofs",
        "coco-extension.verity",
        "kata-containers-coco-extension.img",
        "root_hash_coco-extension.txt",
    ] {
        assert!(
            fs::read(a.file(name)).unwrap() == fs::read(b.file(name)).unwrap(),
            "{name} differs between two builds of the same inputs"
        );
    }
    assert_eq!(a.params, b.params);
    // The timestamp is in the image: another SOURCE_DATE_EPOCH gives another root hash.
    assert!(
        fs::read(a.file("coco-extension.erofs")).unwrap()
            != fs::read(c.file("coco-extension.erofs")).unwrap()
    );
    assert_ne!(a.params["root_hash"], c.params["root_hash"]);
}

#[test]
fn build_refuses_a_bin_dir_without_the_daemons() {
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().join("bin");
    fs::create_dir(&bin_dir).unwrap();
    fs::write(bin_dir.join("attestation-agent"), "").unwrap();
    let out = dir.path().join("out");
    let result = run(Command::new(repo_root().join("coco-extension/build.sh"))
        .env("BIN_DIR", &bin_dir)
        .env("OUT_DIR", &out));
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("attestation-agent is missing or not executable"),
        "{stderr}"
    );
    assert!(!out.exists(), "a refused build wrote {}", out.display());
}
