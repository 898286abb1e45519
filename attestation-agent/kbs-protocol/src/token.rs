//! Attestation tokens: the JWT the KBS issues after `/attest`, the token provider used in
//! passport mode, and AA's `GetToken("kbs")` reply format.
//!
//! The client does not verify the token's signature (the KBS does); it reads `exp`/`nbf`
//! only to know when to attest again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keypair::{KeyError, TeeKeyPair};

/// Largest token accepted (trustee's EAR tokens are ~4 KiB).
const MAX_TOKEN_LEN: usize = 64 * 1024;

/// A token that cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the attestation token is not a JWT (header.payload.signature): {0}")]
    Malformed(String),
    #[error("the attestation token is {0} bytes, more than the 64 KiB limit")]
    TooLarge(usize),
}

/// A KBS attestation token (bearer secret: wiped on drop, never printed).
#[derive(Clone)]
pub struct Token {
    raw: Zeroizing<String>,
    expires_at: Option<SystemTime>,
    not_before: Option<SystemTime>,
    issued_at: Option<SystemTime>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires_at", &self.expires_at)
            .field("not_before", &self.not_before)
            .field("issued_at", &self.issued_at)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TimeClaims {
    #[serde(default)]
    exp: Option<serde_json::Number>,
    #[serde(default)]
    nbf: Option<serde_json::Number>,
    #[serde(default)]
    iat: Option<serde_json::Number>,
}

fn claim_time(
    value: Option<serde_json::Number>,
    name: &str,
) -> Result<Option<SystemTime>, TokenError> {
    let Some(number) = value else {
        return Ok(None);
    };
    let seconds = number
        .as_u64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|f| *f >= 0.0 && f.is_finite())
                .map(|f| f as u64)
        })
        .ok_or_else(|| TokenError::Malformed(format!("claim {name} is not a positive time")))?;
    UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .map(Some)
        .ok_or_else(|| TokenError::Malformed(format!("claim {name} is out of range")))
}

impl Token {
    /// Parses a JWT's time claims. The signature is not checked here.
    pub fn parse(raw: &str) -> Result<Self, TokenError> {
        if raw.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge(raw.len()));
        }
        let mut parts = raw.split('.');
        let (Some(header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "expected three dot-separated parts".into(),
            ));
        };
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed("header is not base64url".into()))?;
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&header)
            .map_err(|_| TokenError::Malformed("header is not a JSON object".into()))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed("payload is not base64url".into()))?;
        // Parse as an object first: serde would also build the struct from a JSON array.
        let claims = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&payload)
            .and_then(|map| serde_json::from_value::<TimeClaims>(serde_json::Value::Object(map)))
            .map_err(|e| TokenError::Malformed(format!("payload: {e}")))?;
        Ok(Self {
            raw: Zeroizing::new(raw.to_string()),
            expires_at: claim_time(claims.exp, "exp")?,
            not_before: claim_time(claims.nbf, "nbf")?,
            issued_at: claim_time(claims.iat, "iat")?,
        })
    }

    /// The token as sent in `Authorization: Bearer`.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// `exp - iat` as the KBS's clock counts it: how long the token lasts from its issue,
    /// whatever the skew between the KBS's clock and this one.
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_at?.duration_since(self.issued_at?).ok()
    }

    /// Whether the token can still be presented: `nbf` reached and `exp` more than `margin`
    /// away. A token without `exp` stays usable until the KBS refuses it.
    pub fn is_fresh(&self, margin: Duration) -> bool {
        let now = SystemTime::now();
        if self
            .not_before
            .is_some_and(|nbf| nbf > now + Duration::from_secs(60))
        {
            return false;
        }
        match self.expires_at {
            Some(exp) => now + margin < exp,
            None => true,
        }
    }
}

/// Error type of the provider traits (evidence, token): whatever the implementation uses.
pub type ProviderError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What the client needs from a [`TokenProvider`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenNeed {
    /// Any valid token: the first one, or one replacing an expired token (a provider may
    /// answer from its cache).
    Valid,
    /// A token from a new attestation: the KBS refused the previous one (AA's forced
    /// refresh, ttRPC metadata `coco-token-refresh`).
    NewAttestation,
}

/// Source of tokens in passport mode: CDH implements it by calling AA's `GetToken("kbs")`.
#[async_trait]
pub trait TokenProvider: Send + Sync {
    /// A token as `need` says and the TEE key pair whose public half the token carries.
    async fn get_token(&self, need: TokenNeed) -> Result<(Token, TeeKeyPair), ProviderError>;
}

/// AA's `GetToken("kbs")` reply: `{"token":"<JWT>","tee_keypair":"<PEM private key>"}`.
#[derive(Serialize, Deserialize)]
struct AaTokenReplyWire<'a> {
    token: std::borrow::Cow<'a, str>,
    tee_keypair: std::borrow::Cow<'a, str>,
}

/// Failure to decode AA's token reply.
#[derive(Debug, thiserror::Error)]
pub enum TokenReplyError {
    /// The reply does not parse; only the position is kept, since serde's messages can
    /// quote values (the private key).
    #[error("AA's token reply is not JSON {{\"token\",\"tee_keypair\"}} ({category} error at line {line}, column {column})")]
    Json {
        /// serde_json's error category
        category: &'static str,
        /// 1-based line
        line: usize,
        /// 1-based column
        column: usize,
    },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Encodes AA's `GetToken("kbs")` reply (wire-compatible with upstream AA).
pub fn encode_aa_token_reply(
    token: &Token,
    keypair: &TeeKeyPair,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let pem = keypair.to_pem()?;
    let wire = AaTokenReplyWire {
        token: token.as_str().into(),
        tee_keypair: pem.as_str().into(),
    };
    serde_json::to_vec(&wire)
        .map(Zeroizing::new)
        .map_err(|e| KeyError::Export(e.to_string()))
}

/// Decodes AA's `GetToken("kbs")` reply into the token and its key pair.
pub fn decode_aa_token_reply(bytes: &[u8]) -> Result<(Token, TeeKeyPair), TokenReplyError> {
    let wire: AaTokenReplyWire<'_> =
        serde_json::from_slice(bytes).map_err(|e| TokenReplyError::Json {
            category: match e.classify() {
                serde_json::error::Category::Io => "I/O",
                serde_json::error::Category::Syntax => "syntax",
                serde_json::error::Category::Data => "data",
                serde_json::error::Category::Eof => "truncation",
            },
            line: e.line(),
            column: e.column(),
        })?;
    let token = Token::parse(&wire.token)?;
    let keypair = TeeKeyPair::from_pem(&wire.tee_keypair)?;
    Ok((token, keypair))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPTURED_AA_REPLY: &str = include_str!("../../../testdata/wire/aa-token-response.json");

    #[test]
    fn decodes_the_upstream_aa_token_reply_and_reencodes_it_identically() {
        let (token, key) = decode_aa_token_reply(CAPTURED_AA_REPLY.trim().as_bytes()).unwrap();
        assert_eq!(
            token.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs(1795896183))
        );
        let again = encode_aa_token_reply(&token, &key).unwrap();
        let a: serde_json::Value = serde_json::from_slice(&again).unwrap();
        let b: serde_json::Value = serde_json::from_str(CAPTURED_AA_REPLY).unwrap();
        assert_eq!(a, b);
        assert!(!format!("{token:?}").contains("eyJ"));
    }

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn freshness_follows_exp_and_margin() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let token = Token::parse(&jwt(&format!(r#"{{"exp":{}}}"#, now + 100))).unwrap();
        assert!(token.is_fresh(Duration::from_secs(10)));
        assert!(!token.is_fresh(Duration::from_secs(200)));
        let expired = Token::parse(&jwt(&format!(r#"{{"exp":{}}}"#, now - 1))).unwrap();
        assert!(!expired.is_fresh(Duration::ZERO));
        let float_exp = Token::parse(&jwt(&format!(r#"{{"exp":{}.5}}"#, now + 100))).unwrap();
        assert!(float_exp.is_fresh(Duration::ZERO));
        let no_exp = Token::parse(&jwt("{}")).unwrap();
        assert!(no_exp.is_fresh(Duration::from_secs(3600)));
        let future = Token::parse(&jwt(&format!(r#"{{"nbf":{}}}"#, now + 3600))).unwrap();
        assert!(!future.is_fresh(Duration::ZERO));
    }

    #[test]
    fn lifetime_is_exp_minus_iat_whatever_the_clock() {
        // issued by a KBS whose clock is a day behind: expired by this clock, yet 300 s long
        let day_ago = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 86_400;
        let token = Token::parse(&jwt(&format!(
            r#"{{"iat":{day_ago},"exp":{}}}"#,
            day_ago + 300
        )))
        .unwrap();
        assert_eq!(token.lifetime(), Some(Duration::from_secs(300)));
        assert!(!token.is_fresh(Duration::ZERO));
        for no_lifetime in [
            r#"{"exp":100}"#.to_string(),
            r#"{"iat":100}"#.to_string(),
            r#"{"iat":200,"exp":100}"#.to_string(),
        ] {
            assert_eq!(Token::parse(&jwt(&no_lifetime)).unwrap().lifetime(), None);
        }
        assert!(matches!(
            Token::parse(&jwt(r#"{"iat":"yesterday"}"#)),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            String::new(),
            "a.b".to_string(),
            "a.b.c.d".to_string(),
            "!!.e30.c2ln".to_string(),
            jwt("not json"),
            jwt(r#"{"exp":"tomorrow"}"#),
            jwt(r#"{"exp":-5}"#),
            jwt("[1]"),
        ] {
            assert!(
                matches!(Token::parse(&bad), Err(TokenError::Malformed(_))),
                "{bad}"
            );
        }
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            Token::parse(&huge).err(),
            Some(TokenError::TooLarge(huge.len()))
        );
    }

    #[test]
    fn bad_aa_replies_are_refused() {
        assert!(matches!(
            decode_aa_token_reply(b"{\"token\":1}"),
            Err(TokenReplyError::Json {
                category: "data",
                ..
            })
        ));
        // a bare string (a key pasted in place of the reply) is not quoted back
        let e = decode_aa_token_reply(b"\"-----BEGIN PRIVATE KEY-----MIGH\"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "AA's token reply is not JSON {\"token\",\"tee_keypair\"} (data error at line 1, column 33)"
        );
        let no_key = format!(r#"{{"token":"{}","tee_keypair":"x"}}"#, jwt("{}"));
        assert!(matches!(
            decode_aa_token_reply(no_key.as_bytes()),
            Err(TokenReplyError::Key(_))
        ));
    }
}
