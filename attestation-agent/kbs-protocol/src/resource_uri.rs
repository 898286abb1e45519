//! KBS resource URIs: `kbs[+<plugin>]://[<host>[:<port>]]/<segment>[/<segment>…][?<query>]`.
//!
//! `kbs://` is the same as `kbs+resource://`; the canonical form ([`std::fmt::Display`])
//! omits `+resource`. The URI maps to the KBS HTTP path `/kbs/v0/<plugin>/<segments>[?query]`
//! ([`ResourceUri::kbs_path`]). The host and port are informational: the confidential data
//! hub always talks to its configured KBS.
//!
//! The parser is stricter than upstream's (which relied on a URL parser that silently
//! normalises `..` away): dot segments, empty segments, segments that decode to a path
//! separator or NUL, fragments and characters outside RFC 3986 are refused, so a URI can
//! never name something other than what it spells.

use std::{fmt, str::FromStr};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// The plugin a bare `kbs://` URI addresses.
pub(crate) const DEFAULT_PLUGIN: &str = "resource";

pub(crate) use protos::MAX_RESOURCE_URI_LEN;

const SCHEME: &str = "kbs";

/// Why a string is not a resource URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceUriError {
    /// The input is longer than [`MAX_RESOURCE_URI_LEN`].
    #[error("resource URI is {len} bytes long; at most {max} are accepted")]
    TooLong {
        /// length of the input
        len: usize,
        /// the limit
        max: usize,
    },
    /// A NUL byte, raw or percent-encoded.
    #[error("resource URI contains a NUL byte")]
    ContainsNul,
    /// No `<scheme>://` prefix.
    #[error(
        "resource URI has no `kbs://` scheme; expected kbs[+<plugin>]://[<host>[:<port>]]/<path>"
    )]
    MissingScheme,
    /// The scheme is neither `kbs` nor `kbs+<plugin>`.
    #[error("resource URI scheme `{0}` is not `kbs` or `kbs+<plugin>`")]
    UnsupportedScheme(String),
    /// `kbs+://`
    #[error("resource URI scheme `kbs+` needs a plugin name, e.g. `kbs+pkcs11`")]
    EmptyPluginName,
    /// The plugin name has characters other than ASCII letters, digits and `-`.
    #[error("resource URI plugin name `{0}` may only contain ASCII letters, digits and `-`")]
    InvalidPluginName(String),
    /// The authority part is not `[<host>][:<port>]`.
    #[error("resource URI host `{host}` is invalid: {reason}")]
    InvalidHost {
        /// the host as written
        host: String,
        /// why it was refused
        reason: String,
    },
    /// The port is empty, not a number, or above 65535.
    #[error("resource URI port `{0}` is not a number from 0 to 65535")]
    InvalidPort(String),
    /// Nothing after the authority, or only `/`.
    #[error("resource URI has no path; expected at least one /<segment>")]
    MissingPath,
    /// `a//b` or a trailing `/`.
    #[error("resource URI path segment {index} is empty")]
    EmptySegment {
        /// zero-based index of the segment
        index: usize,
    },
    /// `.` or `..`, also when percent-encoded.
    #[error("resource URI path segment `{0}` is a dot segment; `.` and `..` are refused")]
    DotSegment(String),
    /// A segment decodes to something containing `/` or `\`.
    #[error("resource URI path segment `{0}` contains a path separator once decoded")]
    SeparatorInSegment(String),
    /// A `%` not followed by two hex digits, or a segment that does not decode to UTF-8.
    #[error("resource URI {component} `{text}` has invalid percent-encoding")]
    InvalidPercentEncoding {
        /// `path segment` or `query`
        component: &'static str,
        /// the text as written
        text: String,
    },
    /// A character RFC 3986 does not allow unencoded there.
    #[error("resource URI {component} contains {character:?}, which must be percent-encoded")]
    InvalidCharacter {
        /// `path segment` or `query`
        component: &'static str,
        /// the character
        character: char,
    },
    /// `#…`: a resource has no fragments.
    #[error("resource URI has a fragment (`#`); resource URIs take none")]
    Fragment,
}

/// A parsed, validated KBS resource URI. Compare, hash and print it; [`Display`] gives the
/// canonical form, which parses back to an equal value.
///
/// [`Display`]: std::fmt::Display
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceUri {
    plugin: String,
    host: Option<String>,
    port: Option<u16>,
    /// decoded segments, each non-empty, not a dot segment, without `/`, `\` or NUL
    segments: Vec<String>,
    /// raw query (RFC 3986 characters only), never empty
    query: Option<String>,
}

impl ResourceUri {
    /// Parses and validates `text`.
    pub fn parse(text: &str) -> Result<Self, ResourceUriError> {
        if text.len() > MAX_RESOURCE_URI_LEN {
            return Err(ResourceUriError::TooLong {
                len: text.len(),
                max: MAX_RESOURCE_URI_LEN,
            });
        }
        if text.contains('\0') {
            return Err(ResourceUriError::ContainsNul);
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or(ResourceUriError::MissingScheme)?;
        let plugin = parse_scheme(scheme)?;

        let (rest, fragment) = match rest.split_once('#') {
            Some((before, _)) => (before, true),
            None => (rest, false),
        };
        if fragment {
            return Err(ResourceUriError::Fragment);
        }
        let (rest, query) = match rest.split_once('?') {
            Some((before, query)) => (before, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        let (host, port) = parse_authority(authority)?;
        let segments = parse_path(path)?;
        let query = match query {
            None | Some("") => None,
            Some(query) => {
                check_characters(query, "query", |c| is_pchar(c) || c == '/' || c == '?')?;
                check_percent_escapes(query, "query")?;
                Some(query.to_string())
            }
        };
        Ok(Self {
            plugin,
            host,
            port,
            segments,
            query,
        })
    }

    /// The KBS plugin: `resource` for `kbs://`, `<plugin>` for `kbs+<plugin>://`.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The host written in the URI, if any (usually none: `kbs:///…`).
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The port written in the URI, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The percent-decoded path segments (at least one).
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The query, without the `?`, as written.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// `(repository, type, tag)` when this is a plain KBS resource (`resource` plugin,
    /// exactly three segments).
    pub fn repo_type_tag(&self) -> Option<(&str, &str, &str)> {
        match self.segments.as_slice() {
            [repo, kind, tag] if self.plugin == DEFAULT_PLUGIN => Some((repo, kind, tag)),
            _ => None,
        }
    }

    /// The part of the KBS HTTP path after `/kbs/v0/`:
    /// `<plugin>/<segments joined by '/'>[?query]`, segments percent-encoded.
    pub fn kbs_path(&self) -> String {
        let mut path = self.plugin.clone();
        for segment in &self.segments {
            path.push('/');
            push_encoded(&mut path, segment);
        }
        if let Some(query) = &self.query {
            path.push('?');
            path.push_str(query);
        }
        path
    }
}

fn parse_scheme(scheme: &str) -> Result<String, ResourceUriError> {
    let lower = scheme.to_ascii_lowercase();
    if lower == SCHEME {
        return Ok(DEFAULT_PLUGIN.to_string());
    }
    let Some(plugin) = lower.strip_prefix("kbs+") else {
        return Err(ResourceUriError::UnsupportedScheme(scheme.to_string()));
    };
    if plugin.is_empty() {
        return Err(ResourceUriError::EmptyPluginName);
    }
    // The plugin becomes an HTTP path segment: no dots, no separators.
    if !plugin
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(ResourceUriError::InvalidPluginName(plugin.to_string()));
    }
    Ok(plugin.to_string())
}

fn parse_authority(authority: &str) -> Result<(Option<String>, Option<u16>), ResourceUriError> {
    if authority.is_empty() {
        return Ok((None, None));
    }
    // An IPv6 literal carries colons inside its brackets.
    let port_colon = match authority.rfind(']') {
        Some(close) => authority[close..].find(':').map(|i| close + i),
        None => authority.rfind(':'),
    };
    let (host, port) = match port_colon {
        Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(ResourceUriError::InvalidHost {
            host: authority.to_string(),
            reason: "a port needs a host".to_string(),
        });
    }
    let host = url::Host::parse(host).map_err(|e| ResourceUriError::InvalidHost {
        host: host.to_string(),
        reason: e.to_string(),
    })?;
    let port = match port {
        None => None,
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => Some(
            port.parse::<u16>()
                .map_err(|_| ResourceUriError::InvalidPort(port.to_string()))?,
        ),
        Some(port) => return Err(ResourceUriError::InvalidPort(port.to_string())),
    };
    Ok((Some(host.to_string()), port))
}

fn parse_path(path: &str) -> Result<Vec<String>, ResourceUriError> {
    let Some(path) = path.strip_prefix('/') else {
        return Err(ResourceUriError::MissingPath);
    };
    if path.is_empty() {
        return Err(ResourceUriError::MissingPath);
    }
    path.split('/')
        .enumerate()
        .map(|(index, raw)| parse_segment(index, raw))
        .collect()
}

fn parse_segment(index: usize, raw: &str) -> Result<String, ResourceUriError> {
    if raw.is_empty() {
        return Err(ResourceUriError::EmptySegment { index });
    }
    check_characters(raw, "path segment", is_pchar)?;
    let decoded = percent_decode(raw, "path segment")?;
    if decoded.contains('\0') {
        return Err(ResourceUriError::ContainsNul);
    }
    if decoded == "." || decoded == ".." {
        return Err(ResourceUriError::DotSegment(raw.to_string()));
    }
    if decoded.contains(['/', '\\']) {
        return Err(ResourceUriError::SeparatorInSegment(raw.to_string()));
    }
    Ok(decoded)
}

/// RFC 3986 `unreserved / sub-delims / ":" / "@"`, plus `%` of a pct-encoded triplet.
fn is_pchar(c: char) -> bool {
    c == '%' || is_unencoded_pchar(c)
}

fn is_unencoded_pchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c)
}

fn check_characters(
    text: &str,
    component: &'static str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), ResourceUriError> {
    match text.chars().find(|&c| !allowed(c)) {
        Some(character) => Err(ResourceUriError::InvalidCharacter {
            component,
            character,
        }),
        None => Ok(()),
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode_bytes(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push((hi << 4) | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn check_percent_escapes(text: &str, component: &'static str) -> Result<(), ResourceUriError> {
    match percent_decode_bytes(text) {
        Some(bytes) if bytes.contains(&0) => Err(ResourceUriError::ContainsNul),
        Some(_) => Ok(()),
        None => Err(ResourceUriError::InvalidPercentEncoding {
            component,
            text: text.to_string(),
        }),
    }
}

fn percent_decode(text: &str, component: &'static str) -> Result<String, ResourceUriError> {
    percent_decode_bytes(text)
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| ResourceUriError::InvalidPercentEncoding {
            component,
            text: text.to_string(),
        })
}

fn push_encoded(out: &mut String, segment: &str) {
    for b in segment.bytes() {
        let c = char::from(b);
        if b.is_ascii() && is_unencoded_pchar(c) {
            out.push(c);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

impl fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.plugin == DEFAULT_PLUGIN {
            write!(f, "{SCHEME}://")?;
        } else {
            write!(f, "{SCHEME}+{}://", self.plugin)?;
        }
        if let Some(host) = &self.host {
            f.write_str(host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        let mut path = String::new();
        for segment in &self.segments {
            path.push('/');
            push_encoded(&mut path, segment);
        }
        f.write_str(&path)?;
        if let Some(query) = &self.query {
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

impl FromStr for ResourceUri {
    type Err = ResourceUriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for ResourceUri {
    type Error = ResourceUriError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl Serialize for ResourceUri {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceUri {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UriVisitor;
        impl de::Visitor<'_> for UriVisitor {
            type Value = ResourceUri;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a kbs:// resource URI string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ResourceUri, E> {
                ResourceUri::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(UriVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ResourceUri {
        ResourceUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> ResourceUriError {
        match ResourceUri::parse(s) {
            Ok(uri) => panic!("{s} parsed as {uri:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn upstream_vectors_round_trip() {
        let uri = parse("kbs:///default/key/1");
        assert_eq!(uri.plugin(), "resource");
        assert_eq!(uri.host(), None);
        assert_eq!(uri.port(), None);
        assert_eq!(uri.segments(), ["default", "key", "1"]);
        assert_eq!(uri.query(), None);
        assert_eq!(uri.repo_type_tag(), Some(("default", "key", "1")));
        assert_eq!(uri.kbs_path(), "resource/default/key/1");
        assert_eq!(uri.to_string(), "kbs:///default/key/1");

        let uri = parse("kbs://example.org:8080/a/b/c?x=y");
        assert_eq!(uri.host(), Some("example.org"));
        assert_eq!(uri.port(), Some(8080));
        assert_eq!(uri.segments(), ["a", "b", "c"]);
        assert_eq!(uri.query(), Some("x=y"));
        assert_eq!(uri.repo_type_tag(), Some(("a", "b", "c")));
        assert_eq!(uri.kbs_path(), "resource/a/b/c?x=y");
        assert_eq!(uri.to_string(), "kbs://example.org:8080/a/b/c?x=y");

        let uri = parse("kbs+plugin:///some/path");
        assert_eq!(uri.plugin(), "plugin");
        assert_eq!(uri.segments(), ["some", "path"]);
        assert_eq!(uri.repo_type_tag(), None);
        assert_eq!(uri.kbs_path(), "plugin/some/path");
        assert_eq!(uri.to_string(), "kbs+plugin:///some/path");

        for s in [
            "kbs:///alice/cosign-key/213",
            "kbs:///repo/type/tag?param1=value1&param2=value2",
            "kbs+pkcs11:///repo/type/tag",
            "kbs+custom://example.com:8080/repo/type/tag",
            "kbs://[::1]:80/a/b/c",
            "kbs://10.0.0.1/a",
            "kbs:///one/two/three/four/five",
        ] {
            let uri = parse(s);
            assert_eq!(uri.to_string(), s);
            assert_eq!(parse(&uri.to_string()), uri);
        }
    }

    #[test]
    fn resource_plugin_spelled_out_is_the_default() {
        let explicit = parse("kbs+resource:///default/key/1");
        assert_eq!(explicit, parse("kbs:///default/key/1"));
        assert_eq!(explicit.to_string(), "kbs:///default/key/1");
        assert_eq!(parse("KBS+Resource:///a/b/c").to_string(), "kbs:///a/b/c");
    }

    #[test]
    fn three_segments_with_another_plugin_are_not_repo_type_tag() {
        assert_eq!(parse("kbs+pkcs11:///a/b/c").repo_type_tag(), None);
        assert_eq!(parse("kbs:///a/b").repo_type_tag(), None);
        assert_eq!(parse("kbs:///a/b/c/d").repo_type_tag(), None);
    }

    #[test]
    fn percent_encoding_is_decoded_and_canonicalised() {
        let uri = parse("kbs:///my%20repo/key/t%41g");
        assert_eq!(uri.segments(), ["my repo", "key", "tAg"]);
        assert_eq!(uri.repo_type_tag(), Some(("my repo", "key", "tAg")));
        assert_eq!(uri.to_string(), "kbs:///my%20repo/key/tAg");
        assert_eq!(uri.kbs_path(), "resource/my%20repo/key/tAg");
        assert_eq!(parse(&uri.to_string()), uri);
        // a decoded '%' is re-encoded
        let uri = parse("kbs:///a/b/100%25");
        assert_eq!(uri.segments()[2], "100%");
        assert_eq!(uri.to_string(), "kbs:///a/b/100%25");
    }

    #[test]
    fn empty_query_is_dropped() {
        let uri = parse("kbs:///a/b/c?");
        assert_eq!(uri.query(), None);
        assert_eq!(uri.to_string(), "kbs:///a/b/c");
    }

    #[test]
    fn dot_segments_are_refused_even_encoded() {
        for s in [
            "kbs:///default/../../etc/passwd",
            "kbs:///default/./key/1",
            "kbs:///../a/b",
            "kbs:///a/b/..",
            "kbs:///a/%2e%2e/b",
            "kbs:///a/%2E/b",
            "kbs:///a/.%2e/b",
        ] {
            assert!(matches!(err(s), ResourceUriError::DotSegment(_)), "{s}");
        }
        // dots inside a name are fine
        assert_eq!(parse("kbs:///a/..b/c.d").segments(), ["a", "..b", "c.d"]);
    }

    #[test]
    fn separators_inside_segments_are_refused() {
        for s in ["kbs:///a/b%2fc/d", "kbs:///a/b%2Fc", "kbs:///a/b%5cc/d"] {
            assert!(
                matches!(err(s), ResourceUriError::SeparatorInSegment(_)),
                "{s}"
            );
        }
        assert_eq!(
            err("kbs:///a\\b/c"),
            ResourceUriError::InvalidCharacter {
                component: "path segment",
                character: '\\'
            }
        );
    }

    #[test]
    fn empty_segments_are_refused() {
        assert_eq!(
            err("kbs:///a//c"),
            ResourceUriError::EmptySegment { index: 1 }
        );
        assert_eq!(
            err("kbs:///a/b/c/"),
            ResourceUriError::EmptySegment { index: 3 }
        );
        assert_eq!(
            err("kbs:////a"),
            ResourceUriError::EmptySegment { index: 0 }
        );
    }

    #[test]
    fn nul_is_refused_raw_and_encoded() {
        assert_eq!(err("kbs:///a/b\0/c"), ResourceUriError::ContainsNul);
        assert_eq!(err("kbs:///a/b%00/c"), ResourceUriError::ContainsNul);
        assert_eq!(err("kbs:///a/b/c?x=%00"), ResourceUriError::ContainsNul);
    }

    #[test]
    fn scheme_errors() {
        assert_eq!(err("/default/key/1"), ResourceUriError::MissingScheme);
        assert_eq!(err("kbs:/default/key/1"), ResourceUriError::MissingScheme);
        assert_eq!(err(""), ResourceUriError::MissingScheme);
        assert_eq!(
            err("http:///repo/type/tag"),
            ResourceUriError::UnsupportedScheme("http".into())
        );
        assert_eq!(
            err("kbsx:///repo/type/tag"),
            ResourceUriError::UnsupportedScheme("kbsx".into())
        );
        assert_eq!(
            err("kbs+:///repo/type/tag"),
            ResourceUriError::EmptyPluginName
        );
        for plugin in ["..", "a.b", "a+b", "a_b", "a/b", "a%2e"] {
            assert_eq!(
                err(&format!("kbs+{plugin}:///x")),
                ResourceUriError::InvalidPluginName(plugin.into()),
            );
        }
    }

    #[test]
    fn missing_path() {
        for s in [
            "kbs://",
            "kbs:///",
            "kbs://host",
            "kbs://host:80",
            "kbs://?x=y",
        ] {
            assert_eq!(err(s), ResourceUriError::MissingPath, "{s}");
        }
    }

    #[test]
    fn authority_errors() {
        assert!(matches!(
            err("kbs://:8080/a"),
            ResourceUriError::InvalidHost { .. }
        ));
        assert!(matches!(
            err("kbs://user@host/a"),
            ResourceUriError::InvalidHost { .. }
        ));
        assert!(matches!(
            err("kbs://[::1/a"),
            ResourceUriError::InvalidHost { .. }
        ));
        assert_eq!(
            err("kbs://host:/a"),
            ResourceUriError::InvalidPort(String::new())
        );
        assert_eq!(
            err("kbs://host:70000/a"),
            ResourceUriError::InvalidPort("70000".into())
        );
        assert_eq!(
            err("kbs://host:8o/a"),
            ResourceUriError::InvalidPort("8o".into())
        );
    }

    #[test]
    fn character_and_encoding_errors() {
        assert_eq!(
            err("kbs:///a b/c"),
            ResourceUriError::InvalidCharacter {
                component: "path segment",
                character: ' '
            }
        );
        assert_eq!(
            err("kbs:///ä/c"),
            ResourceUriError::InvalidCharacter {
                component: "path segment",
                character: 'ä'
            }
        );
        assert_eq!(
            err("kbs:///a/b?x=\"y\""),
            ResourceUriError::InvalidCharacter {
                component: "query",
                character: '"'
            }
        );
        for s in ["kbs:///a/%zz", "kbs:///a/%4", "kbs:///a/b%", "kbs:///a/%ff"] {
            assert!(
                matches!(
                    err(s),
                    ResourceUriError::InvalidPercentEncoding {
                        component: "path segment",
                        ..
                    }
                ),
                "{s}"
            );
        }
        assert!(matches!(
            err("kbs:///a?x=%g0"),
            ResourceUriError::InvalidPercentEncoding {
                component: "query",
                ..
            }
        ));
        assert_eq!(err("kbs:///a/b/c#frag"), ResourceUriError::Fragment);
    }

    #[test]
    fn oversized_input_is_refused() {
        let long = format!("kbs:///a/b/{}", "c".repeat(MAX_RESOURCE_URI_LEN));
        assert_eq!(
            err(&long),
            ResourceUriError::TooLong {
                len: long.len(),
                max: MAX_RESOURCE_URI_LEN
            }
        );
        let fits = format!("kbs:///a/b/{}", "c".repeat(MAX_RESOURCE_URI_LEN - 11));
        assert_eq!(fits.len(), MAX_RESOURCE_URI_LEN);
        assert!(ResourceUri::parse(&fits).is_ok());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(err("kbs:///default/../../etc/passwd")
            .to_string()
            .contains("dot segment"));
        assert!(err("http:///a").to_string().contains("`http`"));
    }

    #[test]
    fn serde_as_string() {
        let uri = parse("kbs://example.org:8080/a/b/c?x=y");
        let json = serde_json::to_string(&uri).unwrap();
        assert_eq!(json, r#""kbs://example.org:8080/a/b/c?x=y""#);
        let back: ResourceUri = serde_json::from_str(&json).unwrap();
        assert_eq!(back, uri);

        let uris: Vec<ResourceUri> =
            serde_json::from_str(r#"["kbs+resource:///x/y/z","kbs+p:///q"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&uris).unwrap(),
            r#"["kbs:///x/y/z","kbs+p:///q"]"#
        );

        let bad = serde_json::from_str::<ResourceUri>(r#""kbs:///a/../b""#).unwrap_err();
        assert!(bad.to_string().contains("dot segment"), "{bad}");
        let wrong_type = serde_json::from_str::<ResourceUri>("42").unwrap_err();
        assert!(
            wrong_type.to_string().contains("resource URI string"),
            "{wrong_type}"
        );
    }
}
