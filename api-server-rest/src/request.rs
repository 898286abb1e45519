//! Parsing of what a workload puts in a request: the feature set the server runs with, the
//! `<repository>/<type>/<tag>` of a resource path, the `runtime_data` query of the
//! evidence endpoints and the `token_type` query of `/aa/token`. Everything here is checked before any backend is called.

use std::{fmt, str::FromStr};

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine,
};
use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, CONTROLS};
use protos::MAX_RESOURCE_URI_LEN;

/// Which group of endpoints the server answers (`-f/--features`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Features {
    /// `/cdh/resource/...` only (the default).
    Resource,
    /// `/aa/...` only.
    Attestation,
    /// Both groups.
    All,
}

impl Features {
    /// Whether `/cdh/resource/...` is served.
    pub(crate) fn resource(self) -> bool {
        matches!(self, Self::Resource | Self::All)
    }

    /// Whether the `/aa/...` endpoints and the TEE fields of `/info` are served.
    pub(crate) fn attestation(self) -> bool {
        matches!(self, Self::Attestation | Self::All)
    }

    /// The flag value, also reported as `feature` by `/info`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Resource => "resource",
            Self::Attestation => "attestation",
            Self::All => "all",
        }
    }
}

impl fmt::Display for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `-f/--features` value is none of the known feature sets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown feature set `{0}`: use resource, attestation or all")]
pub struct UnknownFeatures(String);

impl FromStr for Features {
    type Err = UnknownFeatures;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "resource" => Ok(Self::Resource),
            "attestation" => Ok(Self::Attestation),
            "all" => Ok(Self::All),
            other => Err(UnknownFeatures(other.to_string())),
        }
    }
}

/// A percent-encoded URL component could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    /// A `%` not followed by two hexadecimal digits.
    #[error("malformed percent escape")]
    BadEscape,
    /// The decoded bytes are not UTF-8.
    #[error("decoded text is not UTF-8")]
    NotUtf8,
}

/// Strict percent-decoding: a stray `%` is an error rather than a literal, so the same
/// request cannot be read two ways by us and by the daemon behind us.
fn decode_component(raw: &str, plus_is_space: bool) -> Result<String, DecodeError> {
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(DecodeError::BadEscape)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(DecodeError::BadEscape);
            }
        }
    }
    let decoded: Vec<u8> = if plus_is_space {
        let spaced: Vec<u8> = bytes
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        percent_decode(&spaced).collect()
    } else {
        percent_decode(bytes).collect()
    };
    String::from_utf8(decoded).map_err(|_| DecodeError::NotUtf8)
}

/// Why a `/cdh/resource/...` path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResourcePathError {
    /// A segment could not be percent-decoded.
    #[error("resource path segment {position}: {source}")]
    Decode {
        /// 1-based position of the segment
        position: usize,
        /// what was wrong
        source: DecodeError,
    },
    /// An empty segment (`//`, a leading or trailing `/`).
    #[error("resource path segment {position} is empty")]
    Empty {
        /// 1-based position of the segment
        position: usize,
    },
    /// `.` or `..` after decoding: path traversal.
    #[error("resource path segment {position} is a dot segment")]
    DotSegment {
        /// 1-based position of the segment
        position: usize,
    },
    /// `/`, `\` or a control character (NUL included) after decoding.
    #[error("resource path segment {position} contains a forbidden character")]
    ForbiddenCharacter {
        /// 1-based position of the segment
        position: usize,
    },
    /// Every segment is fine but there are not exactly three of them.
    #[error("a resource path has exactly 3 segments (repository/type/tag), found {0}")]
    SegmentCount(usize),
    /// The `kbs:///` URI for it would be longer than the CDH accepts.
    #[error("the resource URI would be {len} bytes, more than {max}")]
    TooLong {
        /// length of the URI
        len: usize,
        /// [`protos::MAX_RESOURCE_URI_LEN`]
        max: usize,
    },
}

impl ResourcePathError {
    /// A wrong segment count names no resource (404); everything else is a bad request (400).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Self::SegmentCount(_))
    }
}

/// Characters that are percent-encoded again when a decoded segment is put into the
/// `kbs:///` URI, so the CDH parses back exactly the segment that was checked here.
const URI_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A checked KBS resource name: three decoded, non-empty, traversal-free segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourcePath {
    /// the repository (e.g. `default`)
    pub(crate) repository: String,
    /// the resource type (e.g. `key`)
    pub(crate) resource_type: String,
    /// the tag (e.g. `1`)
    pub(crate) tag: String,
}

impl ResourcePath {
    /// Parses the still percent-encoded part of the request path after `/cdh/resource/`.
    /// Every segment is decoded and checked first, the segment count last.
    pub(crate) fn parse(encoded: &str) -> Result<Self, ResourcePathError> {
        let mut segments = Vec::new();
        for (index, raw) in encoded.split('/').enumerate() {
            let position = index + 1;
            let segment = decode_component(raw, false)
                .map_err(|source| ResourcePathError::Decode { position, source })?;
            if segment.is_empty() {
                return Err(ResourcePathError::Empty { position });
            }
            if segment == "." || segment == ".." {
                return Err(ResourcePathError::DotSegment { position });
            }
            if segment
                .chars()
                .any(|c| c == '/' || c == '\\' || c.is_control())
            {
                return Err(ResourcePathError::ForbiddenCharacter { position });
            }
            segments.push(segment);
        }
        let path = match <[String; 3]>::try_from(segments) {
            Ok([repository, resource_type, tag]) => Self {
                repository,
                resource_type,
                tag,
            },
            Err(segments) => return Err(ResourcePathError::SegmentCount(segments.len())),
        };
        let len = path.kbs_uri().len();
        if len > MAX_RESOURCE_URI_LEN {
            return Err(ResourcePathError::TooLong {
                len,
                max: MAX_RESOURCE_URI_LEN,
            });
        }
        Ok(path)
    }

    /// The resource URI the CDH's `GetResource` takes: `kbs:///<repository>/<type>/<tag>`.
    pub(crate) fn kbs_uri(&self) -> String {
        format!(
            "kbs:///{}/{}/{}",
            utf8_percent_encode(&self.repository, URI_SEGMENT),
            utf8_percent_encode(&self.resource_type, URI_SEGMENT),
            utf8_percent_encode(&self.tag, URI_SEGMENT)
        )
    }
}

/// Why the query of `/aa/evidence` or `/aa/additional-evidence` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RuntimeDataError {
    /// No `runtime_data` parameter.
    #[error("query parameter runtime_data is required")]
    Missing,
    /// A parameter the endpoint reads is given more than once.
    #[error("query parameter {0} is given more than once")]
    Repeated(&'static str),
    /// A parameter name or value could not be decoded.
    #[error("query parameter could not be decoded: {0}")]
    Decode(DecodeError),
    /// `encoding` is neither absent nor `base64`.
    #[error("unsupported encoding: only base64 (URL-safe alphabet) or no encoding parameter")]
    UnknownEncoding,
    /// `encoding=base64` but `runtime_data` is not URL-safe base64.
    #[error("runtime_data is not valid URL-safe base64")]
    InvalidBase64,
}

/// Why the query of `/aa/token` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenTypeError {
    /// No `token_type` parameter, or an empty one.
    #[error("query parameter token_type is required")]
    Missing,
    /// `token_type` is given more than once.
    #[error("query parameter token_type is given more than once")]
    Repeated,
    /// A parameter name or value could not be decoded.
    #[error("query parameter could not be decoded: {0}")]
    Decode(DecodeError),
    /// The value is longer than any token type.
    #[error("token_type is longer than {MAX_TOKEN_TYPE_LEN} bytes")]
    TooLong,
}

/// Longest `token_type` passed on (the known ones are `kbs` and `coco_as`).
pub const MAX_TOKEN_TYPE_LEN: usize = 64;

/// The `token_type` of a `/aa/token` request (required, non-empty, form-encoded). Other
/// parameters are ignored.
pub(crate) fn token_type_from_query(query: Option<&str>) -> Result<String, TokenTypeError> {
    let mut token_type = None;
    for pair in query.unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(raw_name, true).map_err(TokenTypeError::Decode)?;
        if name != "token_type" {
            continue;
        }
        if token_type.is_some() {
            return Err(TokenTypeError::Repeated);
        }
        token_type = Some(decode_component(raw_value, true).map_err(TokenTypeError::Decode)?);
    }
    match token_type {
        None => Err(TokenTypeError::Missing),
        Some(value) if value.is_empty() => Err(TokenTypeError::Missing),
        Some(value) if value.len() > MAX_TOKEN_TYPE_LEN => Err(TokenTypeError::TooLong),
        Some(value) => Ok(value),
    }
}

/// URL-safe base64; padding is optional (upstream only took the unpadded form).
const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The runtime data bytes of an evidence request, from its query string:
/// `runtime_data` (required) as UTF-8 bytes, or base64-decoded with `encoding=base64`.
/// Other parameters are ignored.
pub(crate) fn runtime_data_from_query(query: Option<&str>) -> Result<Vec<u8>, RuntimeDataError> {
    let mut runtime_data = None;
    let mut encoding = None;
    for pair in query.unwrap_or_default().split('&') {
        if pair.is_empty() {
            continue;
        }
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(raw_name, true).map_err(RuntimeDataError::Decode)?;
        let (slot, name) = match name.as_str() {
            "runtime_data" => (&mut runtime_data, "runtime_data"),
            "encoding" => (&mut encoding, "encoding"),
            _ => continue,
        };
        if slot.is_some() {
            return Err(RuntimeDataError::Repeated(name));
        }
        *slot = Some(decode_component(raw_value, true).map_err(RuntimeDataError::Decode)?);
    }
    let runtime_data = runtime_data.ok_or(RuntimeDataError::Missing)?;
    match encoding.as_deref() {
        None => Ok(runtime_data.into_bytes()),
        Some("base64") => URL_SAFE_ANY_PADDING
            .decode(runtime_data)
            .map_err(|_| RuntimeDataError::InvalidBase64),
        Some(_) => Err(RuntimeDataError::UnknownEncoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_parse_and_print() {
        for (text, features, resource, attestation) in [
            ("resource", Features::Resource, true, false),
            ("attestation", Features::Attestation, false, true),
            ("all", Features::All, true, true),
        ] {
            let parsed: Features = text.parse().unwrap();
            assert_eq!(parsed, features);
            assert_eq!(parsed.to_string(), text);
            assert_eq!(parsed.resource(), resource);
            assert_eq!(parsed.attestation(), attestation);
        }
        for bad in [
            "",
            "Resource",
            "ALL",
            "resource,attestation",
            "token",
            " all",
        ] {
            let err = bad.parse::<Features>().unwrap_err();
            assert_eq!(err, UnknownFeatures(bad.to_string()));
            assert!(err.to_string().contains("resource, attestation or all"));
        }
    }

    #[test]
    fn good_resource_paths() {
        let p = ResourcePath::parse("default/key/1").unwrap();
        assert_eq!(
            (
                p.repository.as_str(),
                p.resource_type.as_str(),
                p.tag.as_str()
            ),
            ("default", "key", "1")
        );
        assert_eq!(p.kbs_uri(), "kbs:///default/key/1");

        // escapes are decoded, and re-encoded where a URI needs it
        let p = ResourcePath::parse("my%20repo/k%65y/tag%3Fx").unwrap();
        assert_eq!(p.repository, "my repo");
        assert_eq!(p.resource_type, "key");
        assert_eq!(p.tag, "tag?x");
        assert_eq!(p.kbs_uri(), "kbs:///my%20repo/key/tag%3Fx");

        // names that merely contain dots are fine
        let p = ResourcePath::parse(".../a.b/..c").unwrap();
        assert_eq!(p.kbs_uri(), "kbs:///.../a.b/..c");

        // non-ASCII survives as UTF-8 escapes
        let p = ResourcePath::parse("r%C3%A9po/t/x").unwrap();
        assert_eq!(p.repository, "répo");
        assert_eq!(p.kbs_uri(), "kbs:///r%C3%A9po/t/x");
    }

    #[test]
    fn hostile_resource_paths_are_bad_requests() {
        use ResourcePathError::*;
        let cases: &[(&str, ResourcePathError)] = &[
            ("../../etc/passwd", DotSegment { position: 1 }),
            ("%2e%2e/%2e%2e/etc", DotSegment { position: 1 }),
            ("%2E./x/y", DotSegment { position: 1 }),
            ("a/./b", DotSegment { position: 2 }),
            ("a/b/%2e", DotSegment { position: 3 }),
            ("a/%2F/b", ForbiddenCharacter { position: 2 }),
            ("a/b%2fc/d", ForbiddenCharacter { position: 2 }),
            ("a/b%5Cc/d", ForbiddenCharacter { position: 2 }),
            ("a/b/c%00", ForbiddenCharacter { position: 3 }),
            ("a/b/c%0A", ForbiddenCharacter { position: 3 }),
            ("a/b/c%7F", ForbiddenCharacter { position: 3 }),
            ("a//c", Empty { position: 2 }),
            ("/a/b/c", Empty { position: 1 }),
            ("a/b/c/", Empty { position: 4 }),
            ("", Empty { position: 1 }),
            (
                "a/b/%zz",
                Decode {
                    position: 3,
                    source: DecodeError::BadEscape,
                },
            ),
            (
                "a/b/c%",
                Decode {
                    position: 3,
                    source: DecodeError::BadEscape,
                },
            ),
            (
                "a/b/c%4",
                Decode {
                    position: 3,
                    source: DecodeError::BadEscape,
                },
            ),
            (
                "a/%FF/c",
                Decode {
                    position: 2,
                    source: DecodeError::NotUtf8,
                },
            ),
        ];
        for (path, expected) in cases {
            let err = ResourcePath::parse(path).unwrap_err();
            assert_eq!(&err, expected, "{path}");
            assert!(!err.is_not_found(), "{path}");
        }
    }

    /// Found by the `rest_request` fuzz target: each `<` becomes `%3C` in the URI, so a
    /// 4.5 KB path named a URI the CDH refuses as too long.
    #[test]
    fn paths_whose_uri_is_too_long_are_bad_requests() {
        let tag = "%3C".repeat(1400);
        let err = ResourcePath::parse(&format!("def/key/{tag}")).unwrap_err();
        assert_eq!(
            err,
            ResourcePathError::TooLong {
                len: "kbs:///def/key/".len() + 3 * 1400,
                max: MAX_RESOURCE_URI_LEN
            }
        );
        assert!(!err.is_not_found());
        // the longest accepted URI is exactly the limit
        let tag = "t".repeat(MAX_RESOURCE_URI_LEN - "kbs:///def/key/".len());
        let path = ResourcePath::parse(&format!("def/key/{tag}")).unwrap();
        assert_eq!(path.kbs_uri().len(), MAX_RESOURCE_URI_LEN);
    }

    #[test]
    fn wrong_segment_count_is_not_found() {
        for (path, count) in [("a", 1), ("a/b", 2), ("a/b/c/d", 4), ("a/b/c/d/e/f", 6)] {
            let err = ResourcePath::parse(path).unwrap_err();
            assert_eq!(err, ResourcePathError::SegmentCount(count), "{path}");
            assert!(err.is_not_found());
        }
    }

    #[test]
    fn runtime_data_plain_and_base64() {
        assert_eq!(
            runtime_data_from_query(Some("runtime_data=hello")).unwrap(),
            b"hello"
        );
        // form encoding: '+' is a space, escapes are decoded, UTF-8 bytes are kept
        assert_eq!(
            runtime_data_from_query(Some("runtime_data=a+b%2Bc%C3%A9")).unwrap(),
            "a b+cé".as_bytes()
        );
        assert_eq!(
            runtime_data_from_query(Some("other=1&runtime_data=&x")).unwrap(),
            b""
        );
        assert_eq!(runtime_data_from_query(Some("runtime_data")).unwrap(), b"");
        // URL-safe alphabet, with or without padding; parameter order does not matter
        assert_eq!(
            runtime_data_from_query(Some("encoding=base64&runtime_data=-_8")).unwrap(),
            [0xfb, 0xff]
        );
        assert_eq!(
            runtime_data_from_query(Some("runtime_data=-_8%3D&encoding=base64")).unwrap(),
            [0xfb, 0xff]
        );
        assert_eq!(
            runtime_data_from_query(Some("runtime_data=aGVsbG8&encoding=base64")).unwrap(),
            b"hello"
        );
    }

    #[test]
    fn runtime_data_bad_queries() {
        use RuntimeDataError::*;
        let cases: &[(Option<&str>, RuntimeDataError)] = &[
            (None, Missing),
            (Some(""), Missing),
            (Some("runtime_dat=x"), Missing),
            (Some("encoding=base64"), Missing),
            (
                Some("runtime_data=a&runtime_data=b"),
                Repeated("runtime_data"),
            ),
            (
                Some("runtime_data=a&encoding=base64&encoding=base64"),
                Repeated("encoding"),
            ),
            (Some("runtime_data=a&encoding=hex"), UnknownEncoding),
            (Some("runtime_data=a&encoding=BASE64"), UnknownEncoding),
            (Some("runtime_data=a&encoding="), UnknownEncoding),
            // standard alphabet characters are not URL-safe base64
            (Some("runtime_data=%2B%2F8&encoding=base64"), InvalidBase64),
            (Some("runtime_data=a&encoding=base64"), InvalidBase64),
            (Some("runtime_data=!!!!&encoding=base64"), InvalidBase64),
            (Some("runtime_data=%zz"), Decode(DecodeError::BadEscape)),
            (Some("runtime_data=%FF"), Decode(DecodeError::NotUtf8)),
            (Some("runtime%5Fdata=%"), Decode(DecodeError::BadEscape)),
        ];
        for (query, expected) in cases {
            assert_eq!(
                &runtime_data_from_query(*query).unwrap_err(),
                expected,
                "{query:?}"
            );
        }
    }

    #[test]
    fn token_type_is_read_from_the_query() {
        assert_eq!(
            token_type_from_query(Some("token_type=kbs")).unwrap(),
            "kbs"
        );
        assert_eq!(
            token_type_from_query(Some("x=1&token_type=coco%5Fas&y")).unwrap(),
            "coco_as"
        );
        assert_eq!(
            token_type_from_query(Some("token%5Ftype=a+b")).unwrap(),
            "a b"
        );
        let long = "k".repeat(MAX_TOKEN_TYPE_LEN);
        assert_eq!(
            token_type_from_query(Some(&format!("token_type={long}"))).unwrap(),
            long
        );
    }

    #[test]
    fn token_type_bad_queries() {
        use TokenTypeError::*;
        let too_long = format!("token_type={}", "k".repeat(MAX_TOKEN_TYPE_LEN + 1));
        let cases: &[(Option<&str>, TokenTypeError)] = &[
            (None, Missing),
            (Some(""), Missing),
            (Some("token_type="), Missing),
            (Some("token_type"), Missing),
            (Some("tokentype=kbs"), Missing),
            (Some("runtime_data=kbs"), Missing),
            (Some("token_type=kbs&token_type=kbs"), Repeated),
            (Some("token_type=%zz"), Decode(DecodeError::BadEscape)),
            (Some("token_type=%FF"), Decode(DecodeError::NotUtf8)),
            (Some("token%5type=kbs"), Decode(DecodeError::BadEscape)),
            (Some(too_long.as_str()), TooLong),
        ];
        for (query, expected) in cases {
            assert_eq!(
                &token_type_from_query(*query).unwrap_err(),
                expected,
                "{query:?}"
            );
        }
    }
}
