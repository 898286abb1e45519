//! TOML and JSON deserialization for the daemons' config files: a bad value is reported
//! with the key that holds it (`kbc.name`, `credentials[1].path`, and the line for TOML),
//! and the keys no field took are listed so the daemon can warn about them.

#![forbid(unsafe_code)]

use serde::de::DeserializeOwned;

/// A deserialized document and the dotted paths of the keys it held that no field took.
#[derive(Debug)]
pub struct Parsed<T> {
    /// the deserialized value
    pub value: T,
    /// dotted paths of the keys no field took
    pub unknown_keys: Vec<String>,
}

/// Why a document could not be deserialized.
#[derive(Debug, PartialEq, Eq)]
pub enum DocumentError {
    /// Not well-formed TOML/JSON.
    Syntax(String),
    /// Well-formed, but the value at `key` has the wrong type or is missing.
    Value {
        /// dotted path of the key (`<top level>` for the document itself)
        key: String,
        /// what is wrong with it
        message: String,
    },
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

/// Deserializes a TOML document.
pub fn from_toml<T: DeserializeOwned>(text: &str) -> Result<Parsed<T>, DocumentError> {
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

/// Deserializes a JSON document (trailing data is an error).
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<Parsed<T>, DocumentError> {
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
        a: Inner,
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
        assert!(matches!(
            from_toml::<Doc>("[a"),
            Err(DocumentError::Syntax(_))
        ));
        let err = from_toml::<Doc>("[a]\nn = 300\n").unwrap_err();
        assert!(
            matches!(err, DocumentError::Value { ref key, .. } if key == "a.n"),
            "{err:?}"
        );
        let err = from_toml::<Doc>("").unwrap_err();
        assert!(
            matches!(err, DocumentError::Value { ref key, ref message } if key == "<top level>" && message.contains("`a`")),
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
            matches!(err, DocumentError::Value { ref key, .. } if key == "a.n"),
            "{err:?}"
        );
        for bad in [
            &b"{\"a\":{\"n\":1}"[..],
            b"",
            b"{\"a\":{\"n\":1}} x",
            b"\xff",
        ] {
            assert!(
                matches!(from_json::<Doc>(bad), Err(DocumentError::Syntax(_))),
                "{bad:?}"
            );
        }
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Listed {
        #[serde(default)]
        list: Vec<Inner>,
    }

    #[test]
    fn sequence_keys_are_indexed() {
        let err = from_toml::<Listed>("[[list]]\nn = 1\n[[list]]\nn = 300\n").unwrap_err();
        assert!(
            matches!(&err, DocumentError::Value { key, .. } if key == "list[1].n"),
            "{err:?}"
        );
        let err = from_json::<Listed>(br#"{"list": [{"n": 1}, {"n": "x"}]}"#).unwrap_err();
        assert!(
            matches!(&err, DocumentError::Value { key, .. } if key == "list[1].n"),
            "{err:?}"
        );
        let parsed = from_toml::<Listed>("top = 1\n[[list]]\nn = 2\ny = 3\n").unwrap();
        assert_eq!(parsed.unknown_keys, ["list[0].y", "top"]);
    }
}
