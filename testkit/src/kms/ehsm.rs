//! Intel eHSM-KMS on 127.0.0.1 over HTTPS, as its REST service (`ehsm_kms_service`) checks
//! and answers requests: `POST /ehsm?Action=<action>` with JSON
//! `{"appid", "nonce", "timestamp", "payload", "sign"}`, every answer HTTP 200 with
//! `{"code", "message", "result"}`.
//!
//! Checks in the service's order: required members (`Missing required parameters`),
//! a payload for cryptographic actions, member types (`param type error`), nonce length
//! (`Nonce length error`, over 64), timestamp length (`Timestamp length error`, not 13) and
//! age (`Timestamp error`, 10 minutes or more off), replay of nonce and timestamp
//! (`Timestamp can't be repeated in 20 minutes`), then `sign`: the base64 HMAC-SHA256 under
//! the app's API key of `k=v&…` over the non-empty members `appid`, `nonce`, `timestamp`,
//! `payload` sorted by name, the payload flattened the same way (`sign error`; an unknown
//! app gets a 400 without message, as the service's). Key checks: `keyid error`,
//! `appid error`. Actions: `Encrypt`, `Decrypt` (AES-256-GCM keys), `GetSecretValue`.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use aes_gcm::{aead::Aead as _, aead::Payload, Aes256Gcm, KeyInit as _, Nonce};

/// A 96-bit GCM nonce from 12 bytes.
fn gcm_nonce(iv: &[u8]) -> Option<Nonce<aes_gcm::aead::consts::U12>> {
    <[u8; 12]>::try_from(iv).ok().map(Nonce::from)
}
use base64::{engine::general_purpose::STANDARD, Engine as _};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore as _};
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

use super::{lock, random_hex, Incoming, Reply};

const MAX_TIME_STAMP_DIFF_MS: i64 = 10 * 60 * 1000;
const MAX_NONCE_LEN: usize = 64;
const TIMESTAMP_LEN: usize = 13;

#[derive(Debug, Default)]
struct State {
    apps: HashMap<String, String>,
    /// key id -> (creator app, AES-256 key)
    keys: HashMap<String, (String, [u8; 32])>,
    /// (app, secret name) -> versions, newest last
    secrets: HashMap<(String, String), Vec<String>>,
    seen: HashSet<(String, String, String)>,
    skew_ms: i64,
    calls: Vec<String>,
}

/// The server; stops when dropped.
#[derive(Debug)]
pub struct EhsmKms {
    endpoint: String,
    ca_pem: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for EhsmKms {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EhsmKms {
    /// Starts the service on 127.0.0.1 with a certificate for `127.0.0.1`.
    pub async fn start() -> std::io::Result<Self> {
        let (ca_pem, tls) = super::tls(&["127.0.0.1", "localhost"], "testkit eHSM CA")
            .map_err(std::io::Error::other)?;
        let state = Arc::new(Mutex::new(State::default()));
        let handler_state = state.clone();
        let (addr, task) =
            super::spawn(Some(tls), Arc::new(move |req| handle(&handler_state, &req))).await?;
        Ok(Self {
            endpoint: format!("https://{addr}"),
            ca_pem,
            state,
            task,
        })
    }

    /// `https://127.0.0.1:<port>`
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The CA of the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Enrolls an app (the service's `Enroll`): `(APPID, APIKey)`.
    pub fn enroll(&self) -> (String, String) {
        let id = random_hex(16);
        let app_id = format!(
            "{}-{}-{}-{}-{}",
            &id[..8],
            &id[8..12],
            &id[12..16],
            &id[16..20],
            &id[20..32]
        );
        let api_key = random_hex(16);
        lock(&self.state)
            .apps
            .insert(app_id.clone(), api_key.clone());
        (app_id, api_key)
    }

    /// An `EH_AES_GCM_256` key of `app_id` (`CreateKey`); its key id.
    pub fn create_key(&self, app_id: &str) -> String {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        let key_id = random_hex(16);
        lock(&self.state)
            .keys
            .insert(key_id.clone(), (app_id.to_string(), key));
        key_id
    }

    /// A new version of `app_id`'s secret `name` (`CreateSecret`/`PutSecretValue`).
    pub fn put_secret(&self, app_id: &str, name: &str, data: &str) {
        lock(&self.state)
            .secrets
            .entry((app_id.to_string(), name.to_string()))
            .or_default()
            .push(data.to_string());
    }

    /// Moves the server's clock by `ms` milliseconds.
    pub fn set_clock_skew_ms(&self, ms: i64) {
        lock(&self.state).skew_ms = ms;
    }

    /// The actions the service executed (after every check passed), in order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state).calls.clone()
    }
}

fn result(code: u16, message: &str, data: Value) -> Reply {
    let body = json!({"code": code, "message": message, "result": data});
    (
        200,
        "application/json; charset=utf-8",
        body.to_string().into_bytes(),
    )
}

fn fail(message: &str) -> Reply {
    result(400, message, json!({}))
}

/// The service's `params_sort_str`: non-empty members sorted by name, objects flattened.
fn params_sort_str(params: &Map<String, Value>) -> String {
    let sorted: BTreeMap<&String, &Value> = params.iter().collect();
    let mut out = Vec::new();
    for (key, value) in sorted {
        let text = match value {
            Value::Null => continue,
            Value::String(s) if s.is_empty() => continue,
            // JavaScript's `0 != ''` is false: zero is left out too
            Value::Number(n) if n.as_f64() == Some(0.0) => continue,
            Value::String(s) => s.clone(),
            Value::Object(inner) => params_sort_str(inner),
            other => other.to_string(),
        };
        out.push(format!("{key}={text}"));
    }
    out.join("&")
}

fn now_ms(skew: i64) -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
        + skew
}

fn handle(state: &Mutex<State>, req: &Incoming) -> Reply {
    let action = req
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|p| p.strip_prefix("Action="))
        .unwrap_or_default()
        .to_string();
    if req.method != hyper::Method::POST || req.uri.path() != "/ehsm" {
        return result(404, "API Not Found", json!({}));
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&req.body) else {
        return fail("Missing required parameters");
    };
    let present = |k: &str| {
        body.get(k)
            .is_some_and(|v| !matches!(v, Value::Null) && v != "")
    };
    if !present("appid") || !present("timestamp") || !present("sign") {
        return fail("Missing required parameters");
    }
    let cryptographic = matches!(action.as_str(), "Encrypt" | "Decrypt");
    if cryptographic && !present("payload") {
        return fail("Missing required parameters");
    }
    let (Some(Value::String(appid)), Some(Value::String(timestamp)), Some(Value::String(sign))) =
        (body.get("appid"), body.get("timestamp"), body.get("sign"))
    else {
        return fail("param type error");
    };
    let payload = match body.get("payload") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return fail("param type error"),
    };
    let nonce = match body.get("nonce") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(n)) => n.clone(),
        Some(other) => other.to_string(),
    };
    if nonce.len() > MAX_NONCE_LEN {
        return fail("Nonce length error");
    }
    if timestamp.len() != TIMESTAMP_LEN {
        return fail("Timestamp length error");
    }
    let mut state = lock(state);
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|ts| (now_ms(state.skew_ms) - ts).abs() < MAX_TIME_STAMP_DIFF_MS);
    if !fresh {
        return fail("Timestamp error");
    }
    if !state
        .seen
        .insert((appid.clone(), nonce.clone(), timestamp.clone()))
    {
        return fail("Timestamp can't be repeated in 20 minutes");
    }
    let Some(api_key) = state.apps.get(appid).cloned() else {
        // the service answers an unknown app with its lookup's undefined error
        return (
            200,
            "application/json; charset=utf-8",
            br#"{"code":400,"result":{}}"#.to_vec(),
        );
    };
    let mut signed = Map::new();
    signed.insert("appid".into(), Value::String(appid.clone()));
    signed.insert("nonce".into(), Value::String(nonce));
    signed.insert("timestamp".into(), Value::String(timestamp.clone()));
    signed.insert("payload".into(), Value::Object(payload.clone()));
    let expected = <Hmac<sha2::Sha256> as Mac>::new_from_slice(api_key.as_bytes())
        .map(|mut mac| {
            mac.update(params_sort_str(&signed).as_bytes());
            STANDARD.encode(mac.finalize().into_bytes())
        })
        .unwrap_or_default();
    if &expected != sign {
        return fail("sign error");
    }
    let text = |k: &str| {
        payload
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match action.as_str() {
        "Encrypt" | "Decrypt" => {
            let key = match state.keys.get(&text("keyid")) {
                None => return fail("keyid error"),
                Some((creator, _)) if creator != appid => return fail("appid error"),
                Some((_, key)) => *key,
            };
            let Ok(aad) = STANDARD.decode(text("aad")) else {
                return fail("aad must be base64");
            };
            let Ok(cipher) = Aes256Gcm::new_from_slice(&key) else {
                return result(
                    500,
                    "Server internal error, please contact the administrator.",
                    json!({}),
                );
            };
            state.calls.push(action.clone());
            if action == "Encrypt" {
                let Ok(plaintext) = STANDARD.decode(text("plaintext")) else {
                    return fail("plaintext must be base64");
                };
                let mut iv = [0u8; 12];
                OsRng.fill_bytes(&mut iv);
                let Ok(sealed) = cipher.encrypt(
                    &Nonce::from(iv),
                    Payload {
                        msg: &plaintext,
                        aad: &aad,
                    },
                ) else {
                    return result(
                        500,
                        "Server internal error, please contact the administrator.",
                        json!({}),
                    );
                };
                let blob = [iv.as_slice(), &sealed].concat();
                result(
                    200,
                    "successful",
                    json!({"ciphertext": STANDARD.encode(blob)}),
                )
            } else {
                let blob = STANDARD.decode(text("ciphertext")).unwrap_or_default();
                let plaintext = blob.get(..12).and_then(gcm_nonce).and_then(|iv| {
                    cipher
                        .decrypt(
                            &iv,
                            Payload {
                                msg: &blob[12..],
                                aad: &aad,
                            },
                        )
                        .ok()
                });
                match plaintext {
                    Some(plaintext) => result(
                        200,
                        "successful",
                        json!({"plaintext": STANDARD.encode(plaintext)}),
                    ),
                    None => fail("Decrypt failed"),
                }
            }
        }
        "GetSecretValue" => {
            let name = text("secretName");
            let versions = state.secrets.get(&(appid.clone(), name.clone())).cloned();
            let Some(versions) = versions.filter(|v| !v.is_empty()) else {
                return fail(&format!("Can't find the {name}'s value."));
            };
            state.calls.push(action.clone());
            let wanted = payload.get("versionId").and_then(Value::as_u64);
            let index = match wanted {
                Some(v) => usize::try_from(v).ok().and_then(|v| v.checked_sub(1)),
                None => Some(versions.len() - 1),
            };
            match index.and_then(|i| versions.get(i)) {
                Some(data) => result(
                    200,
                    "successful",
                    json!({
                        "secretName": name,
                        "secretData": data,
                        "versionId": index.map_or(0, |i| i + 1),
                        "createTime": 1_700_000_000_000u64,
                    }),
                ),
                None => result(200, "successful", json!({})),
            }
        }
        _ => result(404, "API Not Found", json!({})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service's own JavaScript (`params_sort_str`, `crypto.createHmac`) gives this
    /// string and signature for these members.
    #[test]
    fn the_sign_string_is_the_services() {
        let params = json!({
            "appid": "86f0e9fe-7f05-4110-9f65-a224ddee1233",
            "nonce": "42",
            "timestamp": "1700000000000",
            "payload": {"plaintext": "aGVsbG8=", "keyid": "k-1", "aad": ""},
        });
        let Value::Object(params) = params else {
            panic!()
        };
        let text = params_sort_str(&params);
        assert_eq!(
            text,
            "appid=86f0e9fe-7f05-4110-9f65-a224ddee1233&nonce=42&payload=keyid=k-1&plaintext=aGVsbG8=&timestamp=1700000000000"
        );
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(b"api-key-1").unwrap();
        mac.update(text.as_bytes());
        assert_eq!(
            STANDARD.encode(mac.finalize().into_bytes()),
            "5K1AdLav5rB4Ib+DoqfNvaKY9ynN9SfJOrLIsxwyzx0="
        );
    }
}
