//! `<bundle>/config.json`: an OCI runtime spec generated from the image config (the OCI
//! image spec's conversion rules): args = Entrypoint + Cmd, Env, WorkingDir, the User
//! resolved through the image's own `/etc/passwd` and `/etc/group` (upstream left it
//! unresolved), labels and the implicit `org.opencontainers.image.*` annotations,
//! StopSignal, exposed ports, and Volumes as tmpfs mounts.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde_json::{json, Value};

use crate::fsutil::{open_child_dir, open_dir_path};
use oci_model::ImageConfiguration;

/// File name of the runtime spec in a bundle.
pub(crate) const BUNDLE_CONFIG: &str = "config.json";
/// Directory name of the root filesystem in a bundle.
pub(crate) const BUNDLE_ROOTFS: &str = "rootfs";
/// Hostname of the generated spec (as upstream).
pub(crate) const BUNDLE_HOSTNAME: &str = "image-rs";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const MAX_ACCOUNT_FILE: u64 = 4 << 20;

/// Why the runtime spec could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// the image's user is not in its `/etc/passwd`
    #[error("the image user {0:?} is not in the image's /etc/passwd")]
    UnknownUser(String),
    /// the image's group is not in its `/etc/group`
    #[error("the image group {0:?} is not in the image's /etc/group")]
    UnknownGroup(String),
    /// the User field does not parse
    #[error("invalid image User {0:?}")]
    InvalidUser(String),
    /// `config.json` exists already
    #[error("{0} already exists")]
    Exists(std::path::PathBuf),
    /// a file operation failed
    #[error("{op} {path}: {source}")]
    Io {
        /// the operation
        op: &'static str,
        /// the path
        path: std::path::PathBuf,
        /// the error
        #[source]
        source: std::io::Error,
    },
}

/// The process identity the User field resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    /// uid
    pub uid: u32,
    /// primary gid
    pub gid: u32,
    /// supplementary gids
    pub additional_gids: Vec<u32>,
    /// home directory from passwd, if known
    pub home: Option<String>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// Resolves a docker `User` (`user`, `uid`, `user:group`, `uid:gid`, ...) against the
/// image's passwd and group files (as runc and containerd do).
pub(crate) fn resolve_user(
    user: &str,
    passwd: &str,
    group: &str,
) -> Result<ResolvedUser, BundleError> {
    let passwd = parse_passwd(passwd);
    let groups = parse_group(group);
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if user_part.contains(':') || group_part.is_some_and(|g| g.is_empty() || g.contains(':')) {
        return Err(BundleError::InvalidUser(user.to_string()));
    }
    let (uid, mut gid, home, name) = if user_part.is_empty() {
        match passwd.iter().find(|p| p.uid == 0) {
            Some(p) => (0, p.gid, Some(p.home.clone()), Some(p.name.clone())),
            None => (0, 0, None, None),
        }
    } else if let Ok(uid) = user_part.parse::<u32>() {
        match passwd.iter().find(|p| p.uid == uid) {
            Some(p) => (uid, p.gid, Some(p.home.clone()), Some(p.name.clone())),
            None => (uid, 0, None, None),
        }
    } else {
        let p = passwd
            .iter()
            .find(|p| p.name == user_part)
            .ok_or_else(|| BundleError::UnknownUser(user_part.to_string()))?;
        (p.uid, p.gid, Some(p.home.clone()), Some(p.name.clone()))
    };
    if let Some(g) = group_part {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| BundleError::UnknownGroup(g.to_string()))?,
        };
    }
    let mut additional_gids: Vec<u32> = match &name {
        Some(name) => groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m == name) && g.gid != gid)
            .map(|g| g.gid)
            .collect(),
        None => Vec::new(),
    };
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// Reads `relative` inside `rootfs`, resolving every symlink inside the rootfs (as the
/// container would see it), never outside. `None` if it does not exist.
fn read_in_root(rootfs: &Path, relative: &str) -> Result<Option<String>, BundleError> {
    let io = |op, source| BundleError::Io {
        op,
        path: rootfs.join(relative),
        source,
    };
    let root = open_dir_path(rootfs).map_err(|e| io("open", e))?;
    let fd = match rustix::fs::openat2(
        root.as_fd(),
        relative,
        // NONBLOCK: opening a fifo planted by the image must not wait for a writer.
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => return Ok(None),
        // No openat2 (Linux < 5.6): plain directories only, no symlinks at all.
        Err(rustix::io::Errno::NOSYS) => {
            let mut dir = root;
            let parts: Vec<&str> = relative.split('/').collect();
            let Some((leaf, parents)) = parts.split_last() else {
                return Ok(None);
            };
            for part in parents {
                match open_child_dir(dir.as_fd(), std::ffi::OsStr::new(part)) {
                    Ok(next) => dir = next,
                    Err(_) => return Ok(None),
                }
            }
            match rustix::fs::openat(
                dir.as_fd(),
                *leaf,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(_) => return Ok(None),
            }
        }
        Err(e) => return Err(io("open", e.into())),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| io("stat", e.into()))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(io(
            "read",
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not a regular file"),
        ));
    }
    let mut text = String::new();
    File::from(fd)
        .take(MAX_ACCOUNT_FILE)
        .read_to_string(&mut text)
        .map_err(|e| io("read", e))?;
    Ok(Some(text))
}

/// The user of the image config resolved in `rootfs`.
pub(crate) fn resolve_image_user(
    config: &ImageConfiguration,
    rootfs: &Path,
) -> Result<ResolvedUser, BundleError> {
    let user = config
        .config
        .as_ref()
        .and_then(|c| c.user.as_deref())
        .unwrap_or("");
    let passwd = read_in_root(rootfs, "etc/passwd")?.unwrap_or_default();
    let group = read_in_root(rootfs, "etc/group")?.unwrap_or_default();
    resolve_user(user.trim(), &passwd, &group)
}

fn default_mounts() -> Vec<Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ]
}

/// The runtime spec for `config` with its user already resolved.
pub(crate) fn runtime_spec(config: &ImageConfiguration, user: &ResolvedUser) -> Value {
    let c = config.config.clone().unwrap_or_default();
    let mut args: Vec<String> = c.entrypoint.clone().unwrap_or_default();
    args.extend(c.cmd.clone().unwrap_or_default());
    let mut env = c.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            user.home
                .as_deref()
                .filter(|h| !h.is_empty())
                .unwrap_or("/")
        ));
    }
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());

    let labels = c.labels.clone().unwrap_or_default();
    let mut annotations: BTreeMap<String, String> = BTreeMap::new();
    let mut implicit = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            annotations.insert(format!("org.opencontainers.image.{key}"), value);
        }
    };
    implicit("os", Some(config.os.clone()).filter(|o| !o.is_empty()));
    implicit(
        "architecture",
        Some(config.architecture.clone()).filter(|a| !a.is_empty()),
    );
    implicit("variant", config.variant.clone());
    implicit("os.version", config.os_version.clone());
    implicit("author", config.author.clone());
    implicit("created", config.created.clone());
    implicit("stopSignal", c.stop_signal.clone());
    implicit(
        "exposedPorts",
        c.exposed_ports
            .as_ref()
            .map(|p| p.keys().cloned().collect::<Vec<_>>().join(",")),
    );
    annotations.extend(labels);

    let mut mounts: Vec<Value> = c
        .volumes
        .as_ref()
        .map(|v| {
            v.keys()
                .map(|dest| json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "noexec", "nodev", "relatime", "rw"]}))
                .collect()
        })
        .unwrap_or_default();
    mounts.extend(default_mounts());

    let mut process_user = json!({"uid": user.uid, "gid": user.gid});
    if !user.additional_gids.is_empty() {
        process_user["additionalGids"] = json!(user.additional_gids);
    }
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.1.0",
        "process": {
            "terminal": false,
            "user": process_user,
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": BUNDLE_ROOTFS, "readonly": true},
        "hostname": BUNDLE_HOSTNAME,
        "mounts": mounts,
        "annotations": annotations,
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Writes `<bundle>/config.json` for `config`, resolving the user in `<bundle>/rootfs`.
/// Blocking.
pub(crate) fn write_runtime_config(
    config: &ImageConfiguration,
    bundle: &Path,
) -> Result<(), BundleError> {
    let user = resolve_image_user(config, &bundle.join(BUNDLE_ROOTFS))?;
    let spec = runtime_spec(config, &user);
    let path = bundle.join(BUNDLE_CONFIG);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => BundleError::Exists(path.clone()),
            _ => BundleError::Io {
                op: "create",
                path: path.clone(),
                source: e,
            },
        })?;
    let bytes = serde_json::to_vec_pretty(&spec).map_err(|e| BundleError::Io {
        op: "serialize",
        path: path.clone(),
        source: e.into(),
    })?;
    file.write_all(&bytes).map_err(|e| BundleError::Io {
        op: "write",
        path,
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_model::{ContainerConfig, RootFs};

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\nbroken line\nsvc:x:1001:1001::/srv:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nstaff:x:50:app,svc\naudio:x:29:app\nbad\n";

    #[test]
    fn users_resolve_like_runc() {
        let r = |u: &str| resolve_user(u, PASSWD, GROUP);
        assert_eq!(
            r("").unwrap(),
            ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![],
                home: Some("/root".into())
            }
        );
        let app = r("app").unwrap();
        assert_eq!(
            (app.uid, app.gid, app.additional_gids.clone()),
            (1000, 1000, vec![29, 50])
        );
        assert_eq!(app.home.as_deref(), Some("/home/app"));
        assert_eq!(r("1000").unwrap().additional_gids, vec![29, 50]);
        assert_eq!(r("app:staff").unwrap().gid, 50);
        assert_eq!(r("app:staff").unwrap().additional_gids, vec![29]);
        assert_eq!(
            r("1001:7").unwrap(),
            ResolvedUser {
                uid: 1001,
                gid: 7,
                additional_gids: vec![50],
                home: Some("/srv".into())
            }
        );
        assert_eq!(
            r("4242").unwrap(),
            ResolvedUser {
                uid: 4242,
                gid: 0,
                additional_gids: vec![],
                home: None
            }
        );
        assert!(matches!(r("nobody"), Err(BundleError::UnknownUser(_))));
        assert!(matches!(
            r("app:nogroup"),
            Err(BundleError::UnknownGroup(_))
        ));
        assert!(matches!(r("app:"), Err(BundleError::InvalidUser(_))));
        assert!(matches!(r("a:b:c"), Err(BundleError::InvalidUser(_))));
        assert_eq!(resolve_user("", "", "").unwrap().uid, 0);
    }

    #[test]
    fn the_spec_follows_the_conversion_rules() {
        let mut labels = BTreeMap::new();
        labels.insert(
            "org.opencontainers.image.os".to_string(),
            "label-wins".to_string(),
        );
        labels.insert("custom".to_string(), "x".to_string());
        let mut ports = BTreeMap::new();
        ports.insert("80/tcp".to_string(), json!({}));
        ports.insert("53/udp".to_string(), json!({}));
        let mut volumes = BTreeMap::new();
        volumes.insert("/data".to_string(), json!({}));
        let config = ImageConfiguration {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
            os_version: None,
            created: Some("2024-01-01T00:00:00Z".into()),
            author: None,
            config: Some(ContainerConfig {
                entrypoint: Some(vec!["/bin/app".into()]),
                cmd: Some(vec!["--x".into()]),
                env: Some(vec!["A=1".into()]),
                working_dir: Some("/work".into()),
                labels: Some(labels),
                stop_signal: Some("SIGINT".into()),
                exposed_ports: Some(ports),
                volumes: Some(volumes),
                user: Some("app".into()),
            }),
            rootfs: RootFs {
                fs_type: "layers".into(),
                diff_ids: vec![],
            },
        };
        let user = ResolvedUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![50],
            home: Some("/home/app".into()),
        };
        let spec = runtime_spec(&config, &user);
        assert_eq!(spec["process"]["args"], json!(["/bin/app", "--x"]));
        assert_eq!(
            spec["process"]["env"],
            json!([DEFAULT_PATH, "A=1", "HOME=/home/app"])
        );
        assert_eq!(spec["process"]["cwd"], "/work");
        assert_eq!(
            spec["process"]["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [50]})
        );
        assert_eq!(spec["root"]["path"], "rootfs");
        assert_eq!(spec["hostname"], "image-rs");
        let a = &spec["annotations"];
        assert_eq!(a["org.opencontainers.image.os"], "label-wins");
        assert_eq!(a["org.opencontainers.image.architecture"], "amd64");
        assert_eq!(a["org.opencontainers.image.stopSignal"], "SIGINT");
        assert_eq!(a["org.opencontainers.image.exposedPorts"], "53/udp,80/tcp");
        assert_eq!(a["custom"], "x");
        assert_eq!(spec["mounts"][0]["destination"], "/data");
        assert_eq!(spec["mounts"][0]["type"], "tmpfs");
        assert_eq!(spec["mounts"].as_array().unwrap().len(), 7);
    }

    #[test]
    fn account_files_are_read_inside_the_rootfs_only() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        // An absolute symlink resolves inside the rootfs, not on the host.
        std::os::unix::fs::symlink("/real/passwd", rootfs.join("etc/passwd")).unwrap();
        std::fs::create_dir_all(rootfs.join("real")).unwrap();
        std::fs::write(rootfs.join("real/passwd"), PASSWD).unwrap();
        std::os::unix::fs::symlink("../../outside/passwd", rootfs.join("etc/group")).unwrap();
        assert_eq!(
            read_in_root(&rootfs, "etc/passwd").unwrap().as_deref(),
            Some(PASSWD)
        );
        // "../../outside" is clamped at the rootfs: it does not exist there.
        assert_eq!(read_in_root(&rootfs, "etc/group").unwrap(), None);
        assert_eq!(read_in_root(&rootfs, "etc/shadow").unwrap(), None);
    }

    #[test]
    fn an_account_file_that_is_a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            rootfs.join("etc/passwd"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_in_root(&rootfs, "etc/passwd"));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading a fifo /etc/passwd hangs");
        assert!(
            matches!(&result, Err(BundleError::Io { op: "read", source, .. }) if source.kind() == std::io::ErrorKind::InvalidData),
            "{result:?}"
        );
    }
}
