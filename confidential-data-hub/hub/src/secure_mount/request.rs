//! The `SecureMount` request of a `block-device` volume: its options checked and typed
//! before anything on the host is touched.

use std::{
    collections::HashMap,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use kbs_protocol::ResourceUri;

use super::SecureMountError;

/// Directories of the guest's own system a volume must never cover or link into.
const SYSTEM_DIRS: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/sbin", "/sys", "/usr",
];

/// Longest device-mapper name the kernel takes (`DM_NAME_LEN` less the NUL).
const MAX_MAPPER_NAME: usize = 127;

/// The options a `block-device` volume takes; any other name is refused, so a misspelt
/// `key` cannot silently turn into a random key.
const KNOWN_OPTIONS: &[&str] = &[
    "deviceId",
    "devicePath",
    "sourceType",
    "encryptionType",
    "key",
    "targetType",
    "filesystemType",
    "mkfsOpts",
    "dataIntegrity",
    "mapperName",
    // ZFS options, refused with the encryption type rather than as unknown names
    "pool",
    "dataset",
];

/// Where the device comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceSpec {
    /// `deviceId` "MAJ:MIN", resolved through `/sys/dev/block/MAJ:MIN/uevent`.
    Id {
        /// major number
        major: u32,
        /// minor number
        minor: u32,
    },
    /// `devicePath`.
    Path(PathBuf),
}

/// What the device holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceType {
    /// Nothing worth keeping: format it (with a header kept in guest memory).
    Empty,
    /// A LUKS2 volume with its header on the device: open it.
    Encrypted,
}

/// What appears at the mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetType {
    /// A symbolic link to the opened mapper device.
    Device,
    /// The ext4 file system of the opened device, mounted.
    FileSystem,
}

/// Where the volume key comes from (`key`); never shown in errors or logs.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum KeySpec {
    /// `sealed.…`: a sealed secret, unsealed by the hub.
    Sealed(String),
    /// `kbs://…`: a KBS resource, fetched through the hub's KBC.
    Resource(ResourceUri),
    /// `file://<path>`: a file inside the hub's runtime directory.
    File(PathBuf),
    /// No `key`: a random 4096-byte key, for an ephemeral `empty` volume.
    Random,
}

impl std::fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sealed(_) => f.write_str("Sealed(..)"),
            Self::Resource(uri) => write!(f, "Resource({uri})"),
            Self::File(path) => write!(f, "File({})", path.display()),
            Self::Random => f.write_str("Random"),
        }
    }
}

/// A checked `block-device` request with `encryptionType` `luks2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlockDeviceRequest {
    /// the device
    pub(crate) device: DeviceSpec,
    /// format or open
    pub(crate) source: SourceType,
    /// the key
    pub(crate) key: KeySpec,
    /// link or mount
    pub(crate) target: TargetType,
    /// extra `mkfs.ext4` arguments (`mkfsOpts`, split on whitespace)
    pub(crate) mkfs_options: Vec<String>,
    /// dm-integrity (`hmac-sha256`) under dm-crypt
    pub(crate) integrity: bool,
    /// `/dev/mapper/<name>`; `None` for a random name
    pub(crate) mapper_name: Option<String>,
    /// the mount point (absolute, no `.`/`..` segments)
    pub(crate) mount_point: PathBuf,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> SecureMountError {
    SecureMountError::InvalidOption {
        name,
        reason: reason.into(),
    }
}

/// Checks that `path` is absolute, not `/`, and has no `.`/`..` segments or NUL bytes.
pub(crate) fn check_absolute_path(path: &Path) -> Result<(), String> {
    let bytes = path.as_os_str().as_bytes();
    if !path.is_absolute() {
        return Err("is not an absolute path".into());
    }
    if bytes.contains(&0) {
        return Err("contains a NUL byte".into());
    }
    if bytes.split(|b| *b == b'/').any(|s| s == b"." || s == b"..") {
        return Err("contains a `.` or `..` segment".into());
    }
    if path.parent().is_none() {
        return Err("is the root directory".into());
    }
    Ok(())
}

/// Checks a device-mapper name: 1 to 127 of `A-Z a-z 0-9 _ . + -`, not `.` or `..`.
pub(crate) fn check_mapper_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_MAPPER_NAME {
        return Err(format!("must be 1 to {MAX_MAPPER_NAME} characters long"));
    }
    if name == "." || name == ".." {
        return Err("must not be `.` or `..`".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+' | '-')))
    {
        return Err(format!(
            "contains {c:?}; only letters, digits, `_`, `.`, `+` and `-` are allowed"
        ));
    }
    Ok(())
}

fn parse_device_id(value: &str) -> Result<DeviceSpec, SecureMountError> {
    let number = |part: &str| {
        (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u32>().ok())
            .flatten()
    };
    match value.split_once(':') {
        Some((major, minor)) => match (number(major), number(minor)) {
            (Some(major), Some(minor)) => Ok(DeviceSpec::Id { major, minor }),
            _ => Err(invalid(
                "deviceId",
                format!("`{value}` is not MAJOR:MINOR in decimal"),
            )),
        },
        None => Err(invalid(
            "deviceId",
            format!("`{value}` is not MAJOR:MINOR in decimal"),
        )),
    }
}

fn parse_key(value: Option<&String>) -> Result<KeySpec, SecureMountError> {
    let Some(value) = value else {
        return Ok(KeySpec::Random);
    };
    if value.starts_with("sealed.") {
        Ok(KeySpec::Sealed(value.clone()))
    } else if value.starts_with("kbs://") {
        ResourceUri::parse(value)
            .map(KeySpec::Resource)
            .map_err(|e| invalid("key", format!("is not a valid resource URI: {e}")))
    } else if let Some(path) = value.strip_prefix("file://") {
        let path = PathBuf::from(path);
        check_absolute_path(&path)
            .map_err(|reason| invalid("key", format!("file://{}: {reason}", path.display())))?;
        Ok(KeySpec::File(path))
    } else {
        // the value may be key material itself: it is not quoted
        Err(invalid(
            "key",
            "must be a sealed secret (`sealed.…`), a resource URI (`kbs://…`) or `file://<path>`",
        ))
    }
}

impl BlockDeviceRequest {
    /// Checks `options` and `mount_point` of a `block-device` request.
    pub(crate) fn parse(
        options: &HashMap<String, String>,
        mount_point: &str,
    ) -> Result<Self, SecureMountError> {
        let mut names: Vec<&String> = options.keys().collect();
        names.sort();
        if let Some(name) = names
            .into_iter()
            .find(|name| !KNOWN_OPTIONS.contains(&name.as_str()))
        {
            return Err(SecureMountError::UnknownOption {
                name: name.clone(),
                known: KNOWN_OPTIONS.join(", "),
            });
        }
        let get = |name: &str| options.get(name);

        match get("encryptionType").map(String::as_str) {
            Some("luks2") => {}
            Some("zfs") => return Err(SecureMountError::EncryptionTypeNotBuilt("zfs".into())),
            Some(other) => {
                return Err(invalid(
                    "encryptionType",
                    format!("`{other}` is neither `luks2` nor `zfs`"),
                ))
            }
            None => return Err(SecureMountError::MissingOption("encryptionType")),
        }
        for zfs_only in ["pool", "dataset"] {
            if options.contains_key(zfs_only) {
                return Err(invalid(
                    zfs_only,
                    "is a ZFS option; encryptionType is `luks2`",
                ));
            }
        }

        // upstream's rule: deviceId wins when both are given
        let device = match (get("deviceId"), get("devicePath")) {
            (Some(id), _) => parse_device_id(id)?,
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                check_absolute_path(&path).map_err(|reason| {
                    invalid("devicePath", format!("`{}` {reason}", path.display()))
                })?;
                DeviceSpec::Path(path)
            }
            (None, None) => return Err(SecureMountError::MissingOption("deviceId or devicePath")),
        };

        let source = match get("sourceType").map(String::as_str) {
            Some("empty") => SourceType::Empty,
            Some("encrypted") => SourceType::Encrypted,
            Some(other) => {
                return Err(invalid(
                    "sourceType",
                    format!("`{other}` is neither `empty` nor `encrypted`"),
                ))
            }
            None => return Err(SecureMountError::MissingOption("sourceType")),
        };

        let key = parse_key(get("key"))?;
        if key == KeySpec::Random && source == SourceType::Encrypted {
            return Err(invalid(
                "key",
                "is required to open an `encrypted` device (a random key opens nothing)",
            ));
        }

        let target = match get("targetType").map(String::as_str) {
            None | Some("device") => TargetType::Device,
            Some("fileSystem") => TargetType::FileSystem,
            Some(other) => {
                return Err(invalid(
                    "targetType",
                    format!("`{other}` is neither `device` nor `fileSystem`"),
                ))
            }
        };
        match get("filesystemType").map(String::as_str) {
            None | Some("ext4") => {}
            Some(other) => {
                return Err(invalid(
                    "filesystemType",
                    format!("`{other}` is not supported; only `ext4` is"),
                ))
            }
        }
        let mkfs_options: Vec<String> = get("mkfsOpts")
            .map(|opts| opts.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        if target == TargetType::Device {
            for (name, given) in [
                ("filesystemType", get("filesystemType").is_some()),
                ("mkfsOpts", !mkfs_options.is_empty()),
            ] {
                if given {
                    return Err(invalid(name, "only applies with targetType `fileSystem`"));
                }
            }
        }
        if source == SourceType::Encrypted && !mkfs_options.is_empty() {
            return Err(invalid(
                "mkfsOpts",
                "only applies to an `empty` device (an `encrypted` one keeps its file system)",
            ));
        }

        let integrity = match get("dataIntegrity").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(invalid(
                    "dataIntegrity",
                    format!("`{other}` is neither `true` nor `false`"),
                ))
            }
        };

        let mapper_name = match get("mapperName") {
            Some(name) => {
                check_mapper_name(name)
                    .map_err(|reason| invalid("mapperName", format!("`{name}` {reason}")))?;
                Some(name.clone())
            }
            None => None,
        };

        let mount_point = PathBuf::from(mount_point);
        check_absolute_path(&mount_point)
            .and_then(
                |()| match SYSTEM_DIRS.iter().find(|dir| mount_point.starts_with(dir)) {
                    Some(dir) => Err(format!("is inside the system directory {dir}")),
                    None => Ok(()),
                },
            )
            .map_err(|reason| SecureMountError::InvalidMountPoint {
                path: mount_point.clone(),
                reason,
            })?;

        Ok(Self {
            device,
            source,
            key,
            target,
            mkfs_options,
            integrity,
            mapper_name,
            mount_point,
        })
    }
}

/// An options map from pairs (tests).
#[cfg(test)]
pub(crate) fn options(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &[(&str, &str)] = &[
        ("deviceId", "7:3"),
        ("sourceType", "empty"),
        ("encryptionType", "luks2"),
    ];

    fn with(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut all = options(BASE);
        all.extend(options(extra));
        all
    }

    fn parse_err(options: &HashMap<String, String>) -> String {
        BlockDeviceRequest::parse(options, "/run/volumes/a")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn minimal_request_takes_the_defaults() {
        let request = BlockDeviceRequest::parse(&with(&[]), "/run/volumes/a").unwrap();
        assert_eq!(
            request,
            BlockDeviceRequest {
                device: DeviceSpec::Id { major: 7, minor: 3 },
                source: SourceType::Empty,
                key: KeySpec::Random,
                target: TargetType::Device,
                mkfs_options: vec![],
                integrity: false,
                mapper_name: None,
                mount_point: PathBuf::from("/run/volumes/a"),
            }
        );
    }

    #[test]
    fn every_option_is_read() {
        let request = BlockDeviceRequest::parse(
            &with(&[
                ("devicePath", "/dev/vdb"),
                ("key", "kbs:///default/disk/key"),
                ("targetType", "fileSystem"),
                ("filesystemType", "ext4"),
                ("mkfsOpts", " -m 0\t-L data "),
                ("dataIntegrity", "true"),
                ("mapperName", "data-1"),
            ]),
            "/run/volumes/b",
        )
        .unwrap();
        // deviceId wins over devicePath, as upstream documents
        assert_eq!(request.device, DeviceSpec::Id { major: 7, minor: 3 });
        assert_eq!(
            request.key,
            KeySpec::Resource(ResourceUri::parse("kbs:///default/disk/key").unwrap())
        );
        assert_eq!(request.target, TargetType::FileSystem);
        assert_eq!(request.mkfs_options, ["-m", "0", "-L", "data"]);
        assert!(request.integrity);
        assert_eq!(request.mapper_name.as_deref(), Some("data-1"));

        let mut by_path = with(&[("devicePath", "/dev/vdb"), ("key", "file:///run/k")]);
        by_path.remove("deviceId");
        let request = BlockDeviceRequest::parse(&by_path, "/m").unwrap();
        assert_eq!(request.device, DeviceSpec::Path(PathBuf::from("/dev/vdb")));
        assert_eq!(request.key, KeySpec::File(PathBuf::from("/run/k")));
        let sealed = with(&[("key", "sealed.a.b.c")]);
        let request = BlockDeviceRequest::parse(&sealed, "/m").unwrap();
        assert_eq!(request.key, KeySpec::Sealed("sealed.a.b.c".into()));
        assert_eq!(format!("{:?}", request.key), "Sealed(..)");
    }

    #[test]
    fn each_bad_option_has_its_own_error() {
        let mut no_device = with(&[]);
        no_device.remove("deviceId");
        let mut no_source = with(&[]);
        no_source.remove("sourceType");
        let mut no_encryption = with(&[]);
        no_encryption.remove("encryptionType");
        let cases: Vec<(HashMap<String, String>, &str)> = vec![
            (with(&[("keys", "kbs:///a/b/c")]), "unknown option `keys`"),
            (no_device, "missing option `deviceId or devicePath`"),
            (no_source, "missing option `sourceType`"),
            (no_encryption, "missing option `encryptionType`"),
            (
                with(&[("encryptionType", "zfs")]),
                "encryptionType `zfs` is not built into this hub",
            ),
            (
                with(&[("encryptionType", "luks1")]),
                "option `encryptionType`: `luks1` is neither",
            ),
            (
                with(&[("pool", "p")]),
                "option `pool`: is a ZFS option; encryptionType is `luks2`",
            ),
            (with(&[("deviceId", "7")]), "`7` is not MAJOR:MINOR"),
            (with(&[("deviceId", "7:-1")]), "`7:-1` is not MAJOR:MINOR"),
            (
                with(&[("deviceId", "99999999999:0")]),
                "`99999999999:0` is not MAJOR:MINOR",
            ),
            (
                with(&[("sourceType", "full")]),
                "option `sourceType`: `full` is neither",
            ),
            (
                with(&[("key", "hunter2")]),
                "option `key`: must be a sealed secret",
            ),
            (
                with(&[("key", "kbs:///a/../c")]),
                "option `key`: is not a valid resource URI",
            ),
            (
                with(&[("key", "file://relative/key")]),
                "option `key`: file://relative/key: is not an absolute path",
            ),
            (
                with(&[("key", "file:///run/../etc/shadow")]),
                "contains a `.` or `..` segment",
            ),
            (
                with(&[("sourceType", "encrypted")]),
                "option `key`: is required to open an `encrypted` device",
            ),
            (
                with(&[("targetType", "dir")]),
                "option `targetType`: `dir` is neither",
            ),
            (
                with(&[("targetType", "fileSystem"), ("filesystemType", "xfs")]),
                "option `filesystemType`: `xfs` is not supported",
            ),
            (
                with(&[("filesystemType", "ext4")]),
                "option `filesystemType`: only applies with targetType `fileSystem`",
            ),
            (
                with(&[("mkfsOpts", "-m 0")]),
                "option `mkfsOpts`: only applies with targetType `fileSystem`",
            ),
            (
                with(&[
                    ("sourceType", "encrypted"),
                    ("key", "kbs:///a/b/c"),
                    ("targetType", "fileSystem"),
                    ("mkfsOpts", "-m 0"),
                ]),
                "option `mkfsOpts`: only applies to an `empty` device",
            ),
            (
                with(&[("dataIntegrity", "yes")]),
                "option `dataIntegrity`: `yes` is neither",
            ),
            (
                with(&[("mapperName", "../x")]),
                "option `mapperName`: `../x` contains '/'",
            ),
            (
                with(&[("mapperName", "..")]),
                "option `mapperName`: `..` must not be",
            ),
            (with(&[("mapperName", "")]), "must be 1 to 127 characters"),
            (
                with(&[("mapperName", &"x".repeat(128))]),
                "must be 1 to 127 characters",
            ),
            (
                with(&[("devicePath", "dev/vdb")]),
                "option `devicePath`: `dev/vdb` is not an absolute path",
            ),
        ];
        for (options, expected) in cases {
            let mut options = options;
            if expected.contains("devicePath") {
                options.remove("deviceId");
            }
            let message = parse_err(&options);
            assert!(message.contains(expected), "{options:?}: {message}");
        }
        // the key value is never quoted
        assert!(!parse_err(&with(&[("key", "hunter2")])).contains("hunter2"));
    }

    #[test]
    fn mount_point_must_be_a_plain_absolute_path() {
        for (path, reason) in [
            ("relative/dir", "is not an absolute path"),
            ("/", "is the root directory"),
            ("/run/../etc", "contains a `.` or `..` segment"),
            ("/run/./x", "contains a `.` or `..` segment"),
            ("/run/a\0b", "contains a NUL byte"),
            ("/etc", "is inside the system directory /etc"),
            ("/usr/lib/x", "is inside the system directory /usr"),
            ("/dev/mapper/x", "is inside the system directory /dev"),
        ] {
            let e = BlockDeviceRequest::parse(&with(&[]), path).unwrap_err();
            assert!(
                matches!(&e, SecureMountError::InvalidMountPoint { reason: r, .. } if r == reason),
                "{path}: {e}"
            );
        }
    }
}
