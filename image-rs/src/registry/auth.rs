//! Registry credentials from a containers `auth.json` (spec §6.4):
//! `{"auths": {"<key>": {"auth": "<base64 user:password>"}}}`.
//!
//! Lookup for `registry/a/b`: the key `registry/a/b`, then `registry/a`, then `registry`;
//! then any key that normalizes to the registry (`https://host/v1/` → `host`;
//! `index.docker.io`, `registry-1.docker.io` → `docker.io`).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::reference::{Reference, DEFAULT_REGISTRY};

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// user name
    pub username: String,
    /// password (zeroized on drop)
    pub password: Zeroizing<String>,
}

impl Credentials {
    /// Credentials from a user name and password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: Zeroizing::new(password.into()),
        }
    }

    /// Parses `user:password`.
    pub fn from_user_pass(text: &str) -> Option<Self> {
        let (user, password) = text.split_once(':')?;
        (!user.is_empty()).then(|| Self::new(user, password.trim_end_matches('\n')))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why an auth.json was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFileError {
    /// not JSON of the expected shape
    #[error("invalid auth.json: {0}")]
    Malformed(String),
    /// an `auth` value is not base64 of `user:password`
    #[error("invalid auth.json entry {key:?}: the `auth` value is not base64 of `user:password`")]
    BadEntry {
        /// the `auths` key
        key: String,
    },
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct RawAuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

/// A parsed auth.json.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthFile {
    auths: BTreeMap<String, Credentials>,
}

impl fmt::Debug for AuthFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFile")
            .field("keys", &self.auths.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn normalize_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    normalize_registry(host).to_string()
}

fn normalize_registry(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY,
        other => other,
    }
}

impl AuthFile {
    /// Parses auth.json bytes; every entry must decode.
    pub fn parse(bytes: &[u8]) -> Result<Self, AuthFileError> {
        // serde's messages can quote values (passwords): only the position is kept
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
            AuthFileError::Malformed(format!(
                "not JSON ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if !value.is_object() {
            return Err(AuthFileError::Malformed(
                "the document is not a JSON object".into(),
            ));
        }
        let raw: RawAuthFile = serde_json::from_value(value).map_err(|_| {
            AuthFileError::Malformed(
                "not of the shape {\"auths\": {<registry>: {\"auth\"} or {\"username\", \"password\"}}} with string values".into(),
            )
        })?;
        let mut auths = BTreeMap::new();
        for (key, entry) in raw.auths {
            let credentials = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => {
                    let decoded = Zeroizing::new(
                        base64::engine::general_purpose::STANDARD
                            .decode(auth.trim())
                            .map_err(|_| AuthFileError::BadEntry { key: key.clone() })?,
                    );
                    let text = std::str::from_utf8(&decoded)
                        .map_err(|_| AuthFileError::BadEntry { key: key.clone() })?;
                    Credentials::from_user_pass(text)
                        .ok_or_else(|| AuthFileError::BadEntry { key: key.clone() })?
                }
                (_, Some(user), Some(password)) if !user.is_empty() => {
                    Credentials::new(user, password)
                }
                // identity tokens and credential helpers are not used here
                _ => continue,
            };
            auths.insert(key, credentials);
        }
        Ok(Self { auths })
    }

    /// The credentials for `reference`, if any.
    pub fn lookup(&self, reference: &Reference) -> Option<Credentials> {
        let registry = reference.registry();
        let mut namespace = format!("{registry}/{}", reference.repository());
        loop {
            if let Some(c) = self.auths.get(&namespace) {
                return Some(c.clone());
            }
            match namespace.rfind('/') {
                Some(i) => namespace.truncate(i),
                None => break,
            }
        }
        let wanted = normalize_registry(registry);
        self.auths
            .iter()
            .find(|(key, _)| normalize_key(key) == wanted)
            .map(|(_, c)| c.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn lookup_prefers_the_most_specific_namespace() {
        let json = format!(
            r#"{{"auths": {{
                "quay.io": {{"auth": "{}"}},
                "quay.io/team": {{"auth": "{}"}},
                "quay.io/team/app": {{"auth": "{}"}},
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "127.0.0.1:5000": {{"username": "u", "password": "p"}},
                "helper.io": {{"identitytoken": "x"}}
            }}, "credHelpers": {{}}}}"#,
            b64("reg:1"),
            b64("team:2"),
            b64("app:3\n"),
            b64("hub:4")
        );
        let file = AuthFile::parse(json.as_bytes()).unwrap();
        let user = |r: &str| {
            file.lookup(&Reference::parse(r).unwrap())
                .map(|c| (c.username, c.password.to_string()))
        };
        assert_eq!(
            user("quay.io/team/app:v1"),
            Some(("app".into(), "3".into()))
        );
        assert_eq!(
            user("quay.io/team/other"),
            Some(("team".into(), "2".into()))
        );
        assert_eq!(user("quay.io/x/y"), Some(("reg".into(), "1".into())));
        assert_eq!(user("busybox"), Some(("hub".into(), "4".into())));
        assert_eq!(user("127.0.0.1:5000/a"), Some(("u".into(), "p".into())));
        assert_eq!(user("helper.io/a"), None);
        assert_eq!(user("other.io/a"), None);
        assert!(
            !format!("{:?}", file.lookup(&Reference::parse("quay.io/a").unwrap())).contains("1\"")
        );
    }

    #[test]
    fn malformed_auth_files_are_refused() {
        for bad in [
            "",
            "[]",
            r#"{"auths": []}"#,
            r#"{"auths": {"a.io": {"auth": "!!!"}}}"#,
            &format!(
                r#"{{"auths": {{"a.io": {{"auth": "{}"}}}}}}"#,
                b64("no-colon")
            ),
            &format!(
                r#"{{"auths": {{"a.io": {{"auth": "{}"}}}}}}"#,
                b64(":empty-user")
            ),
        ] {
            assert!(AuthFile::parse(bad.as_bytes()).is_err(), "{bad:?} accepted");
        }
        // values never come back in the message
        for (bad, expected) in [
            (
                r#"{"auths": {"a.io": {"username": "u", "password": 7}}} hunter2"#,
                "invalid auth.json: not JSON (Syntax error at line 1, column 55)",
            ),
            (
                r#"{"auths": "hunter2"}"#,
                "invalid auth.json: not of the shape {\"auths\": {<registry>: {\"auth\"} or {\"username\", \"password\"}}} with string values",
            ),
            (
                r#"{"auths": {"a.io": {"password": ["hunter2"]}}}"#,
                "invalid auth.json: not of the shape {\"auths\": {<registry>: {\"auth\"} or {\"username\", \"password\"}}} with string values",
            ),
        ] {
            let e = AuthFile::parse(bad.as_bytes()).unwrap_err();
            assert_eq!(e.to_string(), expected);
        }
        assert!(AuthFile::parse(b"{}")
            .unwrap()
            .lookup(&Reference::parse("a.io/b").unwrap())
            .is_none());
    }
}
