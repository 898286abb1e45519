//! The keyprovider parameters: what follows `provider:attestation-agent:` on skopeo's (or
//! `ocicrypt`'s) command line, `<key>=<value>` pairs joined by `::`, as upstream reads them:
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `keyid` | `kbs:///<repo>/<type>/<tag>` (also `kbs://<host>/…`, `<host>/<repo>/<type>/<tag>`, `/<repo>/<type>/<tag>`) | the KEK's resource; written into the packet as `kbs:///<repo>/<type>/<tag>` |
//! | `keypath` | a file of exactly 32 bytes | the KEK; absent: a random KEK, which must then be registered in the KBS |
//! | `algorithm` | `A256GCM` (default) or `A256CTR` | how the layer's private options are wrapped (`wrap_type`) |
//! | `sample` | `true` or `false` | upstream's sample KEK and kid `kbs:///default/test-key/1` (demos only) |
//! | `encrypter` | `kbs` | newer upstream's KMS selector; `kbs` is the only one built in |
//!
//! Stricter than upstream, which ignores what it does not understand (and, by a bug, reads
//! `algorithm` from `keypath`): an unknown key, a repeated key, a value that is not one of
//! the above, or `sample=true` together with `keyid`/`keypath` is refused with a message
//! that says what is accepted, instead of silently encrypting with another key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kbs_protocol::ResourceUri;
use ocicrypt_rs::keywrap::keyprovider::WrapType;

/// The provider name the confidential data hub unwraps in process
/// (`org.opencontainers.image.enc.keys.provider.attestation-agent`).
pub const PROVIDER_NAME: &str = "attestation-agent";

/// What Go's ocicrypt sends for `provider:attestation-agent` without parameters.
const NO_PARAMETERS: &str = "Enabled";

/// Largest parameter string accepted.
pub(crate) const MAX_PARAMETERS_LEN: usize = 4096;

/// Why the parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// No parameters for [`PROVIDER_NAME`].
    #[error("the request has no parameters for key provider `{PROVIDER_NAME}`: name the provider `{PROVIDER_NAME}` in the ocicrypt keyprovider config and encrypt with provider:{PROVIDER_NAME}[:<params>] (the confidential data hub unwraps only that annotation)")]
    NotForThisProvider,
    /// Several `provider:attestation-agent:…` keys in one request.
    #[error("{0} parameter strings for `{PROVIDER_NAME}`; give one provider:{PROVIDER_NAME}:<params> key")]
    Several(usize),
    /// Not UTF-8, or too long.
    #[error("the parameters are not UTF-8 text of at most {MAX_PARAMETERS_LEN} bytes")]
    NotText,
    /// A piece without `=`.
    #[error("parameter `{0}` is not <key>=<value> (pairs are joined by `::`)")]
    NotAPair(String),
    /// A key this provider does not know.
    #[error("unknown parameter `{0}`; known: keyid, keypath, algorithm, sample, encrypter")]
    UnknownKey(String),
    /// A key given twice.
    #[error("parameter `{0}` is given twice")]
    Repeated(String),
    /// `algorithm` other than A256GCM / A256CTR.
    #[error("algorithm `{0}` is not supported; use A256GCM (the default) or A256CTR")]
    Algorithm(String),
    /// `sample` other than true / false.
    #[error("sample=`{0}` is not true or false")]
    Sample(String),
    /// `encrypter` other than kbs.
    #[error("encrypter `{0}` is not built in; only kbs is")]
    Encrypter(String),
    /// `keypath` empty.
    #[error("keypath is empty")]
    EmptyKeyPath,
    /// `sample=true` with `keyid` or `keypath`.
    #[error(
        "sample=true uses the sample key and kid; it cannot be combined with keyid or keypath"
    )]
    SampleConflict,
    /// `keyid` is not a KBS resource.
    #[error("keyid `{keyid}` is not a KBS resource: {reason}; use kbs:///<repository>/<type>/<tag> (or kbs://<kbs-addr>/…, <kbs-addr>/<repository>/<type>/<tag>, /<repository>/<type>/<tag>)")]
    KeyId {
        /// the keyid as given (shortened)
        keyid: String,
        /// what is wrong
        reason: String,
    },
}

/// Parsed parameters of one wrap request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WrapParams {
    /// `sample=true`
    pub sample: bool,
    /// `keyid`, normalized to `kbs:///<repo>/<type>/<tag>`
    pub keyid: Option<ResourceUri>,
    /// `keypath`
    pub keypath: Option<PathBuf>,
    /// `algorithm` (A256GCM when absent)
    pub algorithm: Algorithm,
}

/// The `algorithm` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// AES-256-GCM (authenticated; the default)
    #[default]
    A256Gcm,
    /// AES-256-CTR (not authenticated)
    A256Ctr,
}

impl Algorithm {
    /// Every value upstream documents.
    pub const ALL: [Algorithm; 2] = [Algorithm::A256Gcm, Algorithm::A256Ctr];

    /// The parameter value and packet `wrap_type`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::A256Gcm => "A256GCM",
            Algorithm::A256Ctr => "A256CTR",
        }
    }

    /// The annotation packet's wrap type.
    pub fn wrap_type(self) -> WrapType {
        match self {
            Algorithm::A256Gcm => WrapType::A256Gcm,
            Algorithm::A256Ctr => WrapType::A256Ctr,
        }
    }
}

impl std::str::FromStr for Algorithm {
    type Err = ParamsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| ParamsError::Algorithm(shorten(s)))
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(200).collect()
}

/// One segment of trustee's resource pattern `[A-Za-z0-9_-]+[A-Za-z0-9_.-]*`.
fn trustee_segment(segment: &str) -> bool {
    let mut chars = segment.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Normalizes a `keyid` in any form upstream accepts to `kbs:///<repo>/<type>/<tag>`.
pub(crate) fn normalize_keyid(keyid: &str) -> Result<ResourceUri, ParamsError> {
    let bad = |reason: &str| ParamsError::KeyId {
        keyid: shorten(keyid),
        reason: reason.to_string(),
    };
    let text = if keyid.contains("://") {
        keyid.to_string()
    } else if keyid.starts_with('/') || keyid.split('/').count() == 4 {
        // `/<repo>/<type>/<tag>` or `<kbs-addr>/<repo>/<type>/<tag>`
        format!("kbs://{keyid}")
    } else {
        return Err(bad(
            "no kbs:// scheme and not <kbs-addr>/<repository>/<type>/<tag>",
        ));
    };
    let uri = ResourceUri::parse(&text).map_err(|e| bad(&e.to_string()))?;
    if uri.query().is_some() {
        return Err(bad("a KEK resource takes no query"));
    }
    let (repo, kind, tag) = uri
        .repo_type_tag()
        .ok_or_else(|| bad("a KEK is a plain resource: kbs:///<repository>/<type>/<tag>"))?;
    if ![repo, kind, tag].iter().all(|s| trustee_segment(s)) {
        return Err(bad(
            "each of repository, type and tag must match [A-Za-z0-9_-][A-Za-z0-9_.-]* (trustee's resource names)",
        ));
    }
    ResourceUri::parse(&format!("kbs:///{repo}/{kind}/{tag}")).map_err(|e| bad(&e.to_string()))
}

impl WrapParams {
    /// The parameters in a wrap request's `ec.Parameters` (keyed by provider name).
    pub fn from_request(parameters: &BTreeMap<String, Vec<Vec<u8>>>) -> Result<Self, ParamsError> {
        let entries = parameters
            .get(PROVIDER_NAME)
            .ok_or(ParamsError::NotForThisProvider)?;
        match entries.as_slice() {
            [] => Ok(Self::default()),
            [one] => {
                if one.len() > MAX_PARAMETERS_LEN {
                    return Err(ParamsError::NotText);
                }
                Self::parse(std::str::from_utf8(one).map_err(|_| ParamsError::NotText)?)
            }
            several => Err(ParamsError::Several(several.len())),
        }
    }

    /// Parses `k=v::k=v`.
    pub fn parse(text: &str) -> Result<Self, ParamsError> {
        let mut params = WrapParams::default();
        if text.is_empty() || text == NO_PARAMETERS {
            return Ok(params);
        }
        if text.len() > MAX_PARAMETERS_LEN {
            return Err(ParamsError::NotText);
        }
        let mut seen = Vec::new();
        for piece in text.split("::") {
            let (key, value) = piece
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| ParamsError::NotAPair(shorten(piece)))?;
            if seen.contains(&key) {
                return Err(ParamsError::Repeated(shorten(key)));
            }
            seen.push(key);
            match key {
                "keyid" => params.keyid = Some(normalize_keyid(value)?),
                "keypath" if value.is_empty() => return Err(ParamsError::EmptyKeyPath),
                "keypath" => params.keypath = Some(PathBuf::from(value)),
                "algorithm" => params.algorithm = value.parse()?,
                "sample" => {
                    params.sample = match value {
                        "true" => true,
                        "false" => false,
                        other => return Err(ParamsError::Sample(shorten(other))),
                    }
                }
                "encrypter" if value == "kbs" => {}
                "encrypter" => return Err(ParamsError::Encrypter(shorten(value))),
                other => return Err(ParamsError::UnknownKey(shorten(other))),
            }
        }
        if params.sample && (params.keyid.is_some() || params.keypath.is_some()) {
            return Err(ParamsError::SampleConflict);
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn upstreams_documented_parameters_parse() {
        let p = WrapParams::parse(
            "keypath=/home/key1::keyid=kbs:///default/key/key_id1::algorithm=A256GCM",
        )
        .unwrap();
        assert_eq!(p.keypath, Some(PathBuf::from("/home/key1")));
        assert_eq!(p.keyid.unwrap().to_string(), "kbs:///default/key/key_id1");
        assert_eq!(p.algorithm, Algorithm::A256Gcm);
        assert!(!p.sample);
        let p = WrapParams::parse("algorithm=A256CTR::keyid=kbs:///a/b/c").unwrap();
        assert_eq!(p.algorithm, Algorithm::A256Ctr);
        assert!(WrapParams::parse("sample=true").unwrap().sample);
        assert!(!WrapParams::parse("sample=false").unwrap().sample);
        assert_eq!(WrapParams::parse("").unwrap(), WrapParams::default());
        assert_eq!(WrapParams::parse("Enabled").unwrap(), WrapParams::default());
        assert_eq!(
            WrapParams::parse("encrypter=kbs").unwrap(),
            WrapParams::default()
        );
        // an `=` inside a value is kept
        assert_eq!(
            WrapParams::parse("keypath=/k/a=b").unwrap().keypath,
            Some(PathBuf::from("/k/a=b"))
        );
    }

    #[test]
    fn every_keyid_form_upstream_documents_normalizes_to_a_full_uri() {
        for (input, expected) in [
            ("kbs:///default/key/1", "kbs:///default/key/1"),
            (
                "kbs://kbs.example:8080/default/key/1",
                "kbs:///default/key/1",
            ),
            ("kbs+resource:///default/key/1", "kbs:///default/key/1"),
            ("kbs.example/default/key/1", "kbs:///default/key/1"),
            ("/default/key/1", "kbs:///default/key/1"),
            ("/docker.io/key_1/tag-2.v", "kbs:///docker.io/key_1/tag-2.v"),
        ] {
            assert_eq!(
                normalize_keyid(input).unwrap().to_string(),
                expected,
                "{input}"
            );
        }
        for bad in [
            "default/key/1",
            "key1",
            "kbs:///default/key",
            "kbs:///a/b/c/d",
            "kbs:///default/../key/1",
            "kbs:///default/key/1?x=y",
            "kbs+pkcs11:///a/b/c",
            "https://a/b/c/d",
            "kbs:///.hidden/key/1",
            "kbs:///de%2Ffault/key/1",
            "kbs:///default/key/ünïcode",
            "/default//1",
            "",
        ] {
            assert!(
                matches!(normalize_keyid(bad), Err(ParamsError::KeyId { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_parameters_are_refused_with_their_own_error() {
        let cases: Vec<(&str, ParamsError)> = vec![
            (
                "algorithm=A128GCM",
                ParamsError::Algorithm("A128GCM".into()),
            ),
            (
                "algorithm=a256gcm",
                ParamsError::Algorithm("a256gcm".into()),
            ),
            ("algorithm=", ParamsError::Algorithm(String::new())),
            (
                "keyID=kbs:///a/b/c",
                ParamsError::UnknownKey("keyID".into()),
            ),
            ("keyid", ParamsError::NotAPair("keyid".into())),
            ("=x", ParamsError::NotAPair("=x".into())),
            ("keyid=kbs:///a/b/c::", ParamsError::NotAPair(String::new())),
            (
                "algorithm=A256GCM::algorithm=A256CTR",
                ParamsError::Repeated("algorithm".into()),
            ),
            ("sample=yes", ParamsError::Sample("yes".into())),
            (
                "sample=true::keyid=kbs:///a/b/c",
                ParamsError::SampleConflict,
            ),
            ("keypath=/k::sample=true", ParamsError::SampleConflict),
            ("keypath=", ParamsError::EmptyKeyPath),
            ("encrypter=aliyun", ParamsError::Encrypter("aliyun".into())),
        ];
        for (text, expected) in cases {
            assert_eq!(WrapParams::parse(text), Err(expected), "{text}");
        }
        let huge = format!("keypath=/{}", "a".repeat(MAX_PARAMETERS_LEN));
        assert_eq!(WrapParams::parse(&huge), Err(ParamsError::NotText));
    }

    #[test]
    fn only_one_parameter_string_for_this_provider_is_read() {
        let mut map = BTreeMap::new();
        assert_eq!(
            WrapParams::from_request(&map),
            Err(ParamsError::NotForThisProvider)
        );
        map.insert("other".to_string(), vec![b"keyid=kbs:///a/b/c".to_vec()]);
        assert_eq!(
            WrapParams::from_request(&map),
            Err(ParamsError::NotForThisProvider)
        );
        map.insert(PROVIDER_NAME.to_string(), vec![]);
        assert_eq!(WrapParams::from_request(&map), Ok(WrapParams::default()));
        map.insert(
            PROVIDER_NAME.to_string(),
            vec![b"algorithm=A256CTR".to_vec()],
        );
        assert_eq!(
            WrapParams::from_request(&map).unwrap().algorithm,
            Algorithm::A256Ctr
        );
        map.insert(PROVIDER_NAME.to_string(), vec![vec![0xff, 0xfe]]);
        assert_eq!(WrapParams::from_request(&map), Err(ParamsError::NotText));
        map.insert(
            PROVIDER_NAME.to_string(),
            vec![b"sample=true".to_vec(), b"sample=false".to_vec()],
        );
        assert_eq!(WrapParams::from_request(&map), Err(ParamsError::Several(2)));
    }
}
