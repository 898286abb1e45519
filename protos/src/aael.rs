//! AAEL events: the text `<domain> <operation> <content>` and the tagged event bytes that
//! are hashed into a register and stored in a TCG2 entry. The attestation agent records
//! them; the confidential data hub builds the PullImage event it asks the agent to record,
//! so the encoding lives here, with the rest of the wire between the daemons.
//!
//! Domain and operation are single words (non-empty, no whitespace, no control
//! characters), so the text splits back unambiguously at its first two spaces; the content
//! may hold spaces but no newline (the textual form of the log is one event per line).

use std::fmt;

/// `TaggedEventID` of an AAEL event: the bytes `"LEAA"` on disk (little-endian u32).
pub const AAEL_TAGGED_EVENT_ID: u32 = 0x4141_454C;

/// Longest event text (`<domain> <operation> <content>`) accepted. A PullImage event is a
/// few hundred bytes; the limit keeps one request from filling the runtime directory.
pub const MAX_EVENT_TEXT_LEN: usize = 64 * 1024;

/// Domain of the event the confidential data hub records after every image pull.
pub const PULL_IMAGE_DOMAIN: &str = "github.com/confidential-containers";
/// Operation of the event the confidential data hub records after every image pull.
pub const PULL_IMAGE_OPERATION: &str = "PullImage";

/// A part of an AAEL event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventField {
    /// the domain (first word)
    Domain,
    /// the operation (second word)
    Operation,
    /// the content (rest of the text)
    Content,
}

impl fmt::Display for EventField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventField::Domain => "domain",
            EventField::Operation => "operation",
            EventField::Content => "content",
        })
    }
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Domain or operation is empty.
    #[error("the event {field} is empty; domain and operation are required single words")]
    Empty {
        /// the part
        field: EventField,
    },
    /// Domain or operation holds whitespace.
    #[error(
        "the event {field} contains whitespace at byte {offset}; domain and operation are \
         single words (the log text separates them with spaces)"
    )]
    Whitespace {
        /// the part
        field: EventField,
        /// byte offset in that part
        offset: usize,
    },
    /// Domain or operation holds a control character.
    #[error("the event {field} contains the control character U+{code:04X} at byte {offset}")]
    ControlCharacter {
        /// the part
        field: EventField,
        /// byte offset in that part
        offset: usize,
        /// the character
        code: u32,
    },
    /// The content holds a newline.
    #[error(
        "the event content contains a newline at byte {offset}; the log text is one event \
         per line (escape it, e.g. as JSON)"
    )]
    NewlineInContent {
        /// byte offset in the content
        offset: usize,
    },
    /// The event text is longer than [`MAX_EVENT_TEXT_LEN`].
    #[error("the event text is {len} bytes, longer than the limit of {MAX_EVENT_TEXT_LEN} bytes")]
    TooLong {
        /// length of `<domain> <operation> <content>`
        len: usize,
    },
    /// The content could not be serialized as canonical JSON.
    #[error("the event content cannot be encoded as RFC 8785 JSON: {0}")]
    Canonical(String),
    /// A stored event text does not have the form `<domain> <operation> <content>`.
    #[error("the event text has no {missing}: expected `<domain> <operation> <content>`")]
    Missing {
        /// the first part not found
        missing: EventField,
    },
}

/// Why tagged event bytes are not an AAEL event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer than the 8 header bytes.
    #[error("the tagged event is {len} bytes, shorter than its 8-byte header")]
    Truncated {
        /// bytes available
        len: usize,
    },
    /// Another tagged event (not `"LEAA"`).
    #[error("tagged event id {found:#010x} is not the AAEL id {AAEL_TAGGED_EVENT_ID:#010x}")]
    WrongTag {
        /// the id found
        found: u32,
    },
    /// The declared text length disagrees with the bytes present.
    #[error("the AAEL event declares {declared} text bytes but holds {available}")]
    LengthMismatch {
        /// the length field
        declared: u32,
        /// bytes after the header
        available: usize,
    },
    /// The text is not UTF-8.
    #[error("the AAEL event text is not UTF-8 (at byte {valid_up_to})")]
    NotUtf8 {
        /// length of the valid prefix
        valid_up_to: usize,
    },
    /// The text is not a valid event.
    #[error(transparent)]
    Invalid(#[from] EventError),
}

/// A validated AAEL event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AaelEvent {
    domain: String,
    operation: String,
    content: String,
}

impl AaelEvent {
    /// Checks and builds an event.
    pub fn new(domain: &str, operation: &str, content: &str) -> Result<Self, EventError> {
        check_word(EventField::Domain, domain)?;
        check_word(EventField::Operation, operation)?;
        if let Some(offset) = content.find('\n') {
            return Err(EventError::NewlineInContent { offset });
        }
        let len = domain.len() + operation.len() + content.len() + 2;
        if len > MAX_EVENT_TEXT_LEN {
            return Err(EventError::TooLong { len });
        }
        Ok(Self {
            domain: domain.to_string(),
            operation: operation.to_string(),
            content: content.to_string(),
        })
    }

    /// Parses `<domain> <operation> <content>` (the split is at the first two spaces).
    pub fn parse_text(text: &str) -> Result<Self, EventError> {
        let (domain, rest) = text.split_once(' ').ok_or(EventError::Missing {
            missing: EventField::Operation,
        })?;
        let (operation, content) = rest.split_once(' ').ok_or(EventError::Missing {
            missing: EventField::Content,
        })?;
        Self::new(domain, operation, content)
    }

    /// Decodes tagged event bytes: `u32 0x4141454C` ‖ `u32 len` ‖ text.
    pub fn decode(event: &[u8]) -> Result<Self, DecodeError> {
        let (Some(tag), Some(declared)) = (read_u32(event, 0), read_u32(event, 4)) else {
            return Err(DecodeError::Truncated { len: event.len() });
        };
        if tag != AAEL_TAGGED_EVENT_ID {
            return Err(DecodeError::WrongTag { found: tag });
        }
        let text = &event[8..];
        if usize::try_from(declared).ok() != Some(text.len()) {
            return Err(DecodeError::LengthMismatch {
                declared,
                available: text.len(),
            });
        }
        let text = std::str::from_utf8(text).map_err(|e| DecodeError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        Ok(Self::parse_text(text)?)
    }

    /// The domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The operation.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The content.
    pub fn content(&self) -> &str {
        &self.content
    }

    /// `<domain> <operation> <content>`, without a trailing newline.
    pub fn text(&self) -> String {
        format!("{} {} {}", self.domain, self.operation, self.content)
    }

    /// The tagged event bytes that are hashed and stored: `u32 0x4141454C` ‖ `u32 len` ‖
    /// text, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let text = self.text();
        // new() bounds the text by MAX_EVENT_TEXT_LEN, far below u32::MAX
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        let mut bytes = Vec::with_capacity(8 + text.len());
        bytes.extend_from_slice(&AAEL_TAGGED_EVENT_ID.to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(text.as_bytes());
        bytes
    }
}

impl fmt::Display for AaelEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.domain, self.operation, self.content)
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let chunk = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(chunk.try_into().ok()?))
}

fn check_word(field: EventField, word: &str) -> Result<(), EventError> {
    if word.is_empty() {
        return Err(EventError::Empty { field });
    }
    for (offset, c) in word.char_indices() {
        if c.is_whitespace() {
            return Err(EventError::Whitespace { field, offset });
        }
        if c.is_control() {
            return Err(EventError::ControlCharacter {
                field,
                offset,
                code: u32::from(c),
            });
        }
    }
    Ok(())
}

/// Content of the PullImage event: the RFC 8785 (JCS) canonical JSON
/// `{"digest":"<manifest digest>","image":"<image reference>"}` (members sorted, no
/// whitespace, strings escaped as JCS requires).
pub fn pull_image_content(image: &str, digest: &str) -> Result<String, EventError> {
    #[derive(serde::Serialize)]
    struct PullImage<'a> {
        digest: &'a str,
        image: &'a str,
    }
    serde_json_canonicalizer::to_string(&PullImage { digest, image })
        .map_err(|e| EventError::Canonical(e.to_string()))
}

/// The event the confidential data hub records after pulling `image` whose manifest digest
/// is `digest`: domain [`PULL_IMAGE_DOMAIN`], operation [`PULL_IMAGE_OPERATION`], content
/// [`pull_image_content`].
pub fn pull_image_event(image: &str, digest: &str) -> Result<AaelEvent, EventError> {
    AaelEvent::new(
        PULL_IMAGE_DOMAIN,
        PULL_IMAGE_OPERATION,
        &pull_image_content(image, digest)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_tagged_bytes() {
        let event = AaelEvent::new("domain", "operation", "content").unwrap();
        assert_eq!(event.text(), "domain operation content");
        assert_eq!(event.to_string(), "domain operation content");
        let bytes = event.encode();
        assert_eq!(&bytes[..4], b"LEAA");
        assert_eq!(&bytes[4..8], &24u32.to_le_bytes());
        assert_eq!(&bytes[8..], b"domain operation content");
        assert_eq!(AaelEvent::decode(&bytes).unwrap(), event);
        // content may hold spaces and may be empty
        let spaced = AaelEvent::new("d", "o", " a  b ").unwrap();
        assert_eq!(AaelEvent::parse_text(&spaced.text()).unwrap(), spaced);
        let empty = AaelEvent::new("d", "o", "").unwrap();
        assert_eq!(empty.text(), "d o ");
        assert_eq!(AaelEvent::parse_text("d o ").unwrap(), empty);
    }

    #[test]
    fn domain_and_operation_are_single_words() {
        use EventField::*;
        for (domain, operation, expected) in [
            ("", "op", EventError::Empty { field: Domain }),
            ("d", "", EventError::Empty { field: Operation }),
            (
                "a b",
                "op",
                EventError::Whitespace {
                    field: Domain,
                    offset: 1,
                },
            ),
            (
                "d",
                "op\t",
                EventError::Whitespace {
                    field: Operation,
                    offset: 2,
                },
            ),
            (
                "d",
                "o\u{a0}p",
                EventError::Whitespace {
                    field: Operation,
                    offset: 1,
                },
            ),
            (
                "\u{2003}d",
                "op",
                EventError::Whitespace {
                    field: Domain,
                    offset: 0,
                },
            ),
            (
                "d\u{7f}",
                "op",
                EventError::ControlCharacter {
                    field: Domain,
                    offset: 1,
                    code: 0x7f,
                },
            ),
            (
                "d",
                "o\u{0}",
                EventError::ControlCharacter {
                    field: Operation,
                    offset: 1,
                    code: 0,
                },
            ),
        ] {
            assert_eq!(
                AaelEvent::new(domain, operation, "c").unwrap_err(),
                expected,
                "{domain:?} {operation:?}"
            );
        }
        // non-ASCII words are fine
        AaelEvent::new("例え.jp", "Übung", "c").unwrap();
    }

    #[test]
    fn content_has_no_newline_and_a_size_limit() {
        assert_eq!(
            AaelEvent::new("d", "o", "line1\nline2").unwrap_err(),
            EventError::NewlineInContent { offset: 5 }
        );
        // other characters are the caller's business, as upstream
        AaelEvent::new("d", "o", "tab\there\r").unwrap();
        let fits = "x".repeat(MAX_EVENT_TEXT_LEN - 4);
        AaelEvent::new("d", "o", &fits).unwrap();
        let long = "x".repeat(MAX_EVENT_TEXT_LEN - 3);
        assert_eq!(
            AaelEvent::new("d", "o", &long).unwrap_err(),
            EventError::TooLong {
                len: MAX_EVENT_TEXT_LEN + 1
            }
        );
        let err = AaelEvent::new("d", "o", "a\nb").unwrap_err().to_string();
        assert!(err.contains("newline"), "{err}");
    }

    #[test]
    fn parse_text_needs_three_parts() {
        assert_eq!(
            AaelEvent::parse_text("domain").unwrap_err(),
            EventError::Missing {
                missing: EventField::Operation
            }
        );
        assert_eq!(
            AaelEvent::parse_text("domain operation").unwrap_err(),
            EventError::Missing {
                missing: EventField::Content
            }
        );
        assert_eq!(
            AaelEvent::parse_text(" operation content").unwrap_err(),
            EventError::Empty {
                field: EventField::Domain
            }
        );
    }

    #[test]
    fn decode_refuses_bad_bytes() {
        let good = AaelEvent::new("d", "o", "c").unwrap().encode();
        for len in 0..8 {
            assert_eq!(
                AaelEvent::decode(&good[..len]).unwrap_err(),
                DecodeError::Truncated { len }
            );
        }
        // a shorter body than declared, and a longer one
        assert_eq!(
            AaelEvent::decode(&good[..good.len() - 1]).unwrap_err(),
            DecodeError::LengthMismatch {
                declared: 5,
                available: 4
            }
        );
        let mut long = good.clone();
        long.push(b'x');
        assert_eq!(
            AaelEvent::decode(&long).unwrap_err(),
            DecodeError::LengthMismatch {
                declared: 5,
                available: 6
            }
        );
        // a length field larger than anything addressable
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            AaelEvent::decode(&huge).unwrap_err(),
            DecodeError::LengthMismatch {
                declared: u32::MAX,
                ..
            }
        ));
        // another tagged event (OVMF's LOADED_IMAGE::LoadOptions tag)
        let mut other = good.clone();
        other[..4].copy_from_slice(&0x8f3b_22ed_u32.to_le_bytes());
        let err = AaelEvent::decode(&other).unwrap_err();
        assert_eq!(err, DecodeError::WrongTag { found: 0x8f3b_22ed });
        assert!(err.to_string().contains("0x4141454c"), "{err}");
        let mut bad_utf8 = good.clone();
        bad_utf8[8] = 0xff;
        assert_eq!(
            AaelEvent::decode(&bad_utf8).unwrap_err(),
            DecodeError::NotUtf8 { valid_up_to: 0 }
        );
        let invalid = [b"LEAA".as_slice(), &3u32.to_le_bytes(), b"a\tb"].concat();
        assert!(matches!(
            AaelEvent::decode(&invalid).unwrap_err(),
            DecodeError::Invalid(EventError::Missing { .. })
        ));
    }

    #[test]
    fn pull_image_event_is_canonical_json() {
        let event = pull_image_event(
            "docker.io/library/busybox:latest",
            "sha256:4be429a5fbb2e71ae7958bfa558bc637cf3a61baf40a708cb8fff532b39e52d0",
        )
        .unwrap();
        assert_eq!(event.domain(), "github.com/confidential-containers");
        assert_eq!(event.operation(), "PullImage");
        assert_eq!(
            event.text(),
            "github.com/confidential-containers PullImage \
             {\"digest\":\"sha256:4be429a5fbb2e71ae7958bfa558bc637cf3a61baf40a708cb8fff532b39e52d0\",\
             \"image\":\"docker.io/library/busybox:latest\"}"
        );
    }

    #[test]
    fn pull_image_content_escapes_as_rfc8785() {
        let content = pull_image_content(
            "a\"b\\c\nd\u{1}e\u{1f}f\u{7f}é€😀\u{2028}/",
            "x\t\u{8}\u{c}\r",
        )
        .unwrap();
        assert_eq!(
            content.as_bytes(),
            "{\"digest\":\"x\\t\\b\\f\\r\",\"image\":\"a\\\"b\\\\c\\nd\\u0001e\\u001ff\u{7f}é€😀\u{2028}/\"}"
                .as_bytes()
        );
        // serde_json's string escaping agrees, and the content parses back
        let value: serde_json::Value = serde_json::from_str(&content).unwrap();
        assert_eq!(value["digest"], "x\t\u{8}\u{c}\r");
        assert_eq!(value["image"], "a\"b\\c\nd\u{1}e\u{1f}f\u{7f}é€😀\u{2028}/");
        for s in ["plain", "\u{0}\u{1f} \"\\", "ü\u{2029}"] {
            let content = pull_image_content(s, s).unwrap();
            let quoted = serde_json::to_string(s).unwrap();
            assert_eq!(
                content,
                format!("{{\"digest\":{quoted},\"image\":{quoted}}}")
            );
        }
        // escaping keeps raw newlines out of the content
        assert!(pull_image_event("img\nwith newline", "sha256:00").is_ok());
    }
}
