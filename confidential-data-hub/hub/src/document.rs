//! TOML and JSON deserialization that names the key of a bad value (`kbc.name`,
//! `credentials[1].path`) and lists the keys no field took.

use serde::de::DeserializeOwned;

/// A deserialized document and the dotted paths of the keys it held that no field took.
#[derive(Debug)]
pub(crate) struct Parsed<T> {
    pub(crate) value: T,
    pub(crate) unknown_keys: Vec<String>,
}

/// Why a document could not be deserialized.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DocumentError {
    /// Not well-formed TOML/JSON.
    Syntax(String),
    /// Well-formed, but the value at `key` has the wrong type or is missing.
    Value { key: String, message: String },
}

fn key_of(path: &serde_path_to_error::Path) -> String {
    match path.to_string().as_str() {
        "." => "<top level>".to_string(),
        key => key.to_string(),
    }
}

/// `credentials[0].path` style, without serde_ignored's `?` markers for `Option`s.
fn ignored_key(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_key(parent)),
        Path::Map { parent, key } => match ignored_key(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_key(parent),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.bytes().take(offset).filter(|b| *b == b'\n').count() + 1
}

pub(crate) fn from_toml<T: DeserializeOwned>(text: &str) -> Result<Parsed<T>, DocumentError> {
    let document = toml::de::Deserializer::parse(text)
        .map_err(|e| DocumentError::Syntax(e.to_string().trim_end().to_string()))?;
    let mut unknown_keys = Vec::new();
    let mut note_unknown = |path: serde_ignored::Path<'_>| unknown_keys.push(ignored_key(&path));
    let value = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        document,
        &mut note_unknown,
    ))
    .map_err(|e| {
        let key = key_of(e.path());
        let inner = e.into_inner();
        let message = match inner.span() {
            Some(span) => format!("{} (line {})", inner.message(), line_of(text, span.start)),
            None => inner.message().to_string(),
        };
        DocumentError::Value { key, message }
    })?;
    Ok(Parsed {
        value,
        unknown_keys,
    })
}

pub(crate) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<Parsed<T>, DocumentError> {
    let mut document = serde_json::Deserializer::from_slice(bytes);
    let mut unknown_keys = Vec::new();
    let mut note_unknown = |path: serde_ignored::Path<'_>| unknown_keys.push(ignored_key(&path));
    let value = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        &mut document,
        &mut note_unknown,
    ))
    .map_err(|e| {
        let key = key_of(e.path());
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => DocumentError::Value {
                key,
                message: inner.to_string(),
            },
            _ => DocumentError::Syntax(inner.to_string()),
        }
    })?;
    document
        .end()
        .map_err(|e| DocumentError::Syntax(e.to_string()))?;
    Ok(Parsed {
        value,
        unknown_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Doc {
        a: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
    }
    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Inner {
        n: u8,
    }

    #[test]
    fn toml_names_the_key_and_line() {
        let err = from_toml::<Doc>("\n[a]\nn = \"x\"\n").unwrap_err();
        let DocumentError::Value { key, message } = err else {
            panic!("{err:?}")
        };
        assert_eq!(key, "a.n");
        assert!(message.contains("invalid type"), "{message}");
        assert!(message.contains("line 3"), "{message}");
        let err = from_toml::<Doc>("[[list]]\nn = 1\n[[list]]\nn = 300\n").unwrap_err();
        assert!(
            matches!(&err, DocumentError::Value { key, .. } if key == "list[1].n"),
            "{err:?}"
        );
        assert!(matches!(
            from_toml::<Doc>("[a"),
            Err(DocumentError::Syntax(_))
        ));
    }

    #[test]
    fn json_names_the_key() {
        let err = from_json::<Doc>(br#"{"list": [{"n": 1}, {"n": "x"}]}"#).unwrap_err();
        assert!(
            matches!(&err, DocumentError::Value { key, .. } if key == "list[1].n"),
            "{err:?}"
        );
        assert!(matches!(
            from_json::<Doc>(br#"{"a": {"n": 1}"#),
            Err(DocumentError::Syntax(_))
        ));
        assert!(matches!(
            from_json::<Doc>(br#"{"a": {"n": 1}} extra"#),
            Err(DocumentError::Syntax(_))
        ));
    }

    #[test]
    fn unknown_keys_are_reported_with_their_path() {
        let parsed =
            from_toml::<Doc>("top = 1\n[a]\nn = 1\nx = 2\n[[list]]\nn = 2\ny = 3\n").unwrap();
        assert_eq!(parsed.value.a, Some(Inner { n: 1 }));
        // TOML tables come out in key order
        assert_eq!(parsed.unknown_keys, ["a.x", "list[0].y", "top"]);
        let parsed = from_json::<Doc>(br#"{"a": {"n": 1, "z": {"deep": 1}}}"#).unwrap();
        assert_eq!(parsed.unknown_keys, ["a.z"]);
    }
}
