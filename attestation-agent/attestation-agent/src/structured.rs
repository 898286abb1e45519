//! TOML and JSON deserialization that names the key of a bad value and reports keys it
//! did not understand, shared by the config file and initdata.

use serde::de::DeserializeOwned;

/// A deserialized document and the keys it held that no field took.
#[derive(Debug)]
pub(crate) struct Parsed<T> {
    pub(crate) value: T,
    pub(crate) unknown_keys: Vec<String>,
}

/// Why a document could not be deserialized.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DeError {
    /// Not well-formed TOML/JSON.
    Syntax(String),
    /// Well-formed, but the value at `key` (dotted path) has the wrong type or value.
    Value { key: String, message: String },
}

fn key_of(path: &serde_path_to_error::Path) -> String {
    let key = path.to_string();
    if key == "." {
        "<top level>".to_string()
    } else {
        key
    }
}

/// Dotted key path of an ignored key; `Option` and newtype layers add no segment.
fn dotted(path: &serde_ignored::Path<'_>) -> String {
    fn push(path: &serde_ignored::Path<'_>, segments: &mut Vec<String>) {
        match path {
            serde_ignored::Path::Root => {}
            serde_ignored::Path::Seq { parent, index } => {
                push(parent, segments);
                segments.push(index.to_string());
            }
            serde_ignored::Path::Map { parent, key } => {
                push(parent, segments);
                segments.push(key.clone());
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => push(parent, segments),
        }
    }
    let mut segments = Vec::new();
    push(path, &mut segments);
    segments.join(".")
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

pub(crate) fn from_toml<T: DeserializeOwned>(text: &str) -> Result<Parsed<T>, DeError> {
    let document =
        toml::de::Deserializer::parse(text).map_err(|e| DeError::Syntax(e.to_string()))?;
    let mut unknown_keys = Vec::new();
    let mut note_unknown = |path: serde_ignored::Path<'_>| unknown_keys.push(dotted(&path));
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
        DeError::Value { key, message }
    })?;
    Ok(Parsed {
        value,
        unknown_keys,
    })
}

pub(crate) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<Parsed<T>, DeError> {
    let mut document = serde_json::Deserializer::from_slice(bytes);
    let mut unknown_keys = Vec::new();
    let mut note_unknown = |path: serde_ignored::Path<'_>| unknown_keys.push(dotted(&path));
    let value = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        &mut document,
        &mut note_unknown,
    ))
    .map_err(|e| {
        let key = key_of(e.path());
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => DeError::Value {
                key,
                message: inner.to_string(),
            },
            _ => DeError::Syntax(inner.to_string()),
        }
    })?;
    document.end().map_err(|e| DeError::Syntax(e.to_string()))?;
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
        a: Inner,
    }
    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Inner {
        n: u8,
    }

    #[test]
    fn toml_names_the_key_and_line() {
        let err = from_toml::<Doc>("\n[a]\nn = \"x\"\n").unwrap_err();
        let DeError::Value { key, message } = err else {
            panic!("{err:?}")
        };
        assert_eq!(key, "a.n");
        assert!(message.contains("invalid type"), "{message}");
        assert!(message.contains("line 3"), "{message}");
        assert!(matches!(from_toml::<Doc>("[a"), Err(DeError::Syntax(_))));
        let err = from_toml::<Doc>("[a]\nn = 300\n").unwrap_err();
        assert!(
            matches!(err, DeError::Value { ref key, .. } if key == "a.n"),
            "{err:?}"
        );
        let err = from_toml::<Doc>("").unwrap_err();
        assert!(
            matches!(err, DeError::Value { ref key, ref message } if key == "<top level>" && message.contains("`a`")),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_keys_are_reported() {
        let mut parsed = from_toml::<Doc>("x = 1\n[a]\nn = 1\ny = 2\n").unwrap();
        assert_eq!(parsed.value, Doc { a: Inner { n: 1 } });
        parsed.unknown_keys.sort();
        assert_eq!(parsed.unknown_keys, vec!["a.y", "x"]);
        let parsed = from_json::<Doc>(br#"{"a":{"n":1,"z":[1]},"w":null}"#).unwrap();
        assert_eq!(parsed.unknown_keys, vec!["a.z", "w"]);
        #[derive(Debug, serde::Deserialize)]
        struct Opt {
            #[allow(dead_code)]
            o: Option<Inner>,
        }
        let parsed = from_toml::<Opt>("[o]\nn = 1\nextra = 2\n").unwrap();
        assert_eq!(parsed.unknown_keys, vec!["o.extra"]);
    }

    #[test]
    fn json_errors() {
        let err = from_json::<Doc>(br#"{"a":{"n":"1"}}"#).unwrap_err();
        assert!(
            matches!(err, DeError::Value { ref key, .. } if key == "a.n"),
            "{err:?}"
        );
        for bad in [
            &b"{\"a\":{\"n\":1}"[..],
            b"",
            b"{\"a\":{\"n\":1}} x",
            b"\xff",
        ] {
            assert!(
                matches!(from_json::<Doc>(bad), Err(DeError::Syntax(_))),
                "{bad:?}"
            );
        }
    }
}
