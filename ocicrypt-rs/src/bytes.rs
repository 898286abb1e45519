//! Serde helpers for byte fields.
//!
//! Go's `encoding/json` writes `[]byte` as a standard base64 string and reads both a base64
//! string and an array of integers; upstream's Rust keyprovider peers write integer arrays.
//! Every byte field here reads both forms (and `null` as empty), so either peer is understood.

use std::fmt;

use base64::Engine;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};
use zeroize::Zeroizing;

pub(crate) const STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Standard base64 that also accepts a missing padding, as Go's lenient peers sometimes write.
pub(crate) fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .ok()
}

/// Parses a JSON *object* into `T`: serde's derive would also take an array for a struct.
pub(crate) fn from_json_object<T: serde::de::DeserializeOwned>(
    data: &[u8],
) -> Result<T, serde_json::Error> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(<serde_json::Error as serde::de::Error>::custom(
            "expected a JSON object",
        ));
    }
    serde_json::from_slice(data)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string, an array of bytes or null")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        decode_b64(v).ok_or_else(|| E::custom("invalid base64"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // The size hint comes from the peer: cap the preallocation.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(v.to_vec())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(BytesVisitor)
    }
}

/// `Vec<u8>` as a base64 string (write) / base64 string or integer array (read).
pub(crate) mod b64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_any(BytesVisitor)
    }
}

/// `Option<Vec<u8>>` as base64 / `null`; reads either form; an absent field is `None`.
#[cfg(feature = "keywrap-keyprovider")]
pub(crate) mod b64_opt {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&STD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        struct OptVisitor;
        impl<'de> Visitor<'de> for OptVisitor {
            type Value = Option<Vec<u8>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a base64 string, an array of bytes or null")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(BytesVisitor).map(Some)
            }
        }
        d.deserialize_option(OptVisitor)
    }
}

/// `Option<Vec<u8>>` written as an integer array, what upstream's Rust peers read; reads
/// either form.
#[cfg(feature = "keywrap-keyprovider")]
pub(crate) mod int_array_opt {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.collect_seq(bytes.iter()),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        super::b64_opt::deserialize(d)
    }
}

/// A secret key as a base64 string, encoded through a buffer that is wiped afterwards.
pub(crate) mod b64_secret {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        v: &Zeroizing<Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let encoded = Zeroizing::new(STD.encode(v.as_slice()));
        s.serialize_str(&encoded)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Zeroizing<Vec<u8>>, D::Error> {
        d.deserialize_any(BytesVisitor).map(Zeroizing::new)
    }
}

/// `BTreeMap<String, Vec<u8>>` with base64 values (Go's `map[string][]byte`).
pub(crate) mod b64_map {
    use std::collections::BTreeMap;

    use serde::de::MapAccess;

    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        v: &BTreeMap<String, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(v.iter().map(|(k, val)| (k, STD.encode(val))))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Vec<u8>>, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = BTreeMap<String, Vec<u8>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of base64 strings, or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(BTreeMap::new())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(BTreeMap::new())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(MapVisitor)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: Bytes = map.next_value()?;
                    out.insert(key, value.0);
                }
                Ok(out)
            }
        }
        d.deserialize_any(MapVisitor)
    }
}

/// A byte string that (de)serializes like Go's `[]byte`: base64 out, either a base64
/// string or an integer array in.
// Public through `keywrap::keyprovider` only when that feature is on.
#[cfg_attr(not(feature = "keywrap-keyprovider"), allow(unreachable_pub))]
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl serde::Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        b64::serialize(&self.0, s)
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BytesVisitor).map(Bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bytes_read_base64_int_array_and_null() {
        let a: Bytes = serde_json::from_str("\"AQID\"").unwrap();
        let b: Bytes = serde_json::from_str("[1,2,3]").unwrap();
        let c: Bytes = serde_json::from_str("null").unwrap();
        let d: Bytes = serde_json::from_str("\"AQI\"").unwrap();
        assert_eq!(a.0, vec![1, 2, 3]);
        assert_eq!(b.0, vec![1, 2, 3]);
        assert!(c.0.is_empty());
        assert_eq!(d.0, vec![1, 2]);
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"AQID\"");
    }

    #[test]
    fn bytes_reject_wrong_types_and_values() {
        assert!(serde_json::from_str::<Bytes>("[256]").is_err());
        assert!(serde_json::from_str::<Bytes>("[-1]").is_err());
        assert!(serde_json::from_str::<Bytes>("[\"a\"]").is_err());
        assert!(serde_json::from_str::<Bytes>("\"not base64!\"").is_err());
        assert!(serde_json::from_str::<Bytes>("{}").is_err());
        assert!(serde_json::from_str::<Bytes>("12").is_err());
        assert!(serde_json::from_str::<Bytes>("[1,2").is_err());
    }
}
