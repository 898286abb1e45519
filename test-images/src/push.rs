//! Byte-exact HTTP push of an image (or an index and its images) from an [`OciLayout`] to a
//! registry (distribution spec: monolithic POST/PATCH/PUT uploads, then the manifest).
//! Unlike `skopeo copy`, nothing is recompressed: uncompressed and malformed layers reach
//! the registry as they are.

use std::io::Read;

use base64::Engine;
use http_client::error_chain;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::layout::{Descriptor, OciLayout, DOCKER_MANIFEST_LIST, OCI_INDEX};

/// Largest request body of one upload step.
const CHUNK: usize = 8 << 20;

/// Where and how to push.
#[derive(Debug, Clone)]
pub struct PushTarget {
    /// `http://host:port` or `https://host:port`
    pub base_url: String,
    /// basic auth user and password
    pub credentials: Option<(String, String)>,
    /// extra trusted CA (PEM) for HTTPS
    pub ca_pem: Option<String>,
    /// token endpoint of a registry in bearer-token mode (the credentials get a token)
    pub token_realm: Option<String>,
}

struct Pusher {
    http: reqwest::Client,
    base: String,
    auth: Option<HeaderValue>,
}

fn http_error<'a>(method: &'static str, url: &'a str) -> impl Fn(reqwest::Error) -> Error + 'a {
    move |e| Error::Http {
        method,
        url: url.to_string(),
        message: error_chain(&e),
    }
}

async fn expect_success(
    method: &'static str,
    url: &str,
    response: reqwest::Response,
) -> Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Err(Error::Http {
        method,
        url: url.to_string(),
        message: format!("{status}: {}", body.chars().take(500).collect::<String>()),
    })
}

impl Pusher {
    fn new(target: &PushTarget) -> Result<Self> {
        // A TLS test registry is trusted through its own CA only.
        let mut builder = http_client::ClientBuilder::new().no_system_proxy();
        if let Some(pem) = &target.ca_pem {
            builder = builder.extra_roots([pem]).only_extra_roots();
        }
        let http = builder.build().map_err(|e| {
            if e.is_certificate() {
                Error::Certificate(e.to_string())
            } else {
                Error::Http {
                    method: "CLIENT",
                    url: target.base_url.clone(),
                    message: e.to_string(),
                }
            }
        })?;
        let auth = target.credentials.as_ref().and_then(|(user, password)| {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            HeaderValue::from_str(&format!("Basic {token}")).ok()
        });
        Ok(Self {
            http,
            base: target.base_url.trim_end_matches('/').to_string(),
            auth,
        })
    }

    /// A push+pull token for `repo` from the token server (basic credentials).
    async fn bearer_token(&self, realm: &str, repo: &str) -> Result<HeaderValue> {
        let url = format!(
            "{realm}?service={}&scope=repository:{repo}:pull,push",
            crate::token::SERVICE
        );
        let response = self
            .request(reqwest::Method::GET, &url)
            .send()
            .await
            .map_err(http_error("GET", &url))?;
        let response = expect_success("GET", &url, response).await?;
        let bytes = response.bytes().await.map_err(http_error("GET", &url))?;
        let body: Value = serde_json::from_slice(&bytes)?;
        let token = body["token"].as_str().ok_or_else(|| Error::Http {
            method: "GET",
            url: url.clone(),
            message: "no token in the response".into(),
        })?;
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| Error::Http {
            method: "GET",
            url,
            message: e.to_string(),
        })
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.auth {
            Some(auth) => request.header(AUTHORIZATION, auth.clone()),
            None => request,
        }
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!("{}{location}", self.base)
        }
    }

    async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool> {
        let url = format!("{}/v2/{repo}/blobs/{digest}", self.base);
        let response = self
            .request(reqwest::Method::HEAD, &url)
            .send()
            .await
            .map_err(http_error("HEAD", &url))?;
        Ok(response.status().is_success())
    }

    async fn push_blob(&self, layout: &OciLayout, repo: &str, digest: &str) -> Result<()> {
        if self.blob_exists(repo, digest).await? {
            return Ok(());
        }
        let url = format!("{}/v2/{repo}/blobs/uploads/", self.base);
        let response = self
            .request(reqwest::Method::POST, &url)
            .send()
            .await
            .map_err(http_error("POST", &url))?;
        let response = expect_success("POST", &url, response).await?;
        let mut location = location_of(&response, &url)?;
        let mut file = layout.open_blob(digest)?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = read_full(&mut file, &mut buf)?;
            if n == 0 {
                break;
            }
            let url = self.absolute(&location);
            let response = self
                .request(reqwest::Method::PATCH, &url)
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(buf[..n].to_vec())
                .send()
                .await
                .map_err(http_error("PATCH", &url))?;
            let response = expect_success("PATCH", &url, response).await?;
            location = location_of(&response, &url)?;
        }
        let url = self.absolute(&location);
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}digest={digest}");
        let response = self
            .request(reqwest::Method::PUT, &url)
            .send()
            .await
            .map_err(http_error("PUT", &url))?;
        expect_success("PUT", &url, response).await?;
        Ok(())
    }

    async fn push_manifest(
        &self,
        layout: &OciLayout,
        repo: &str,
        reference: &str,
        descriptor: &Descriptor,
    ) -> Result<()> {
        let body = layout.read_blob(descriptor.digest.as_str())?;
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let response = self
            .request(reqwest::Method::PUT, &url)
            .header(CONTENT_TYPE, descriptor.media_type.as_str())
            .body(body)
            .send()
            .await
            .map_err(http_error("PUT", &url))?;
        expect_success("PUT", &url, response).await?;
        Ok(())
    }

    async fn push_single(
        &self,
        layout: &OciLayout,
        repo: &str,
        reference: &str,
        manifest: &Descriptor,
    ) -> Result<()> {
        let json: Value = serde_json::from_slice(&layout.read_blob(manifest.digest.as_str())?)?;
        let mut digests = vec![json["config"]["digest"]
            .as_str()
            .ok_or_else(|| Error::InvalidImage("manifest without config digest".into()))?
            .to_string()];
        for layer in json["layers"].as_array().into_iter().flatten() {
            digests.push(
                layer["digest"]
                    .as_str()
                    .ok_or_else(|| Error::InvalidImage("layer without digest".into()))?
                    .to_string(),
            );
        }
        for digest in digests {
            self.push_blob(layout, repo, &digest).await?;
        }
        self.push_manifest(layout, repo, reference, manifest).await
    }
}

fn location_of(response: &reqwest::Response, url: &str) -> Result<String> {
    response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| Error::Http {
            method: "POST",
            url: url.to_string(),
            message: "upload response without Location".into(),
        })
}

fn read_full(file: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Pushes the image or index `manifest` of `layout` as `repo:tag` (for an index, its
/// images first, by digest).
pub async fn push_image(
    layout: &OciLayout,
    manifest: &Descriptor,
    target: &PushTarget,
    repo: &str,
    tag: &str,
) -> Result<()> {
    let mut pusher = Pusher::new(target)?;
    if let Some(realm) = &target.token_realm {
        pusher.auth = Some(pusher.bearer_token(realm, repo).await?);
    }
    if manifest.media_type == OCI_INDEX || manifest.media_type == DOCKER_MANIFEST_LIST {
        let index: Value = serde_json::from_slice(&layout.read_blob(manifest.digest.as_str())?)?;
        for entry in index["manifests"].as_array().into_iter().flatten() {
            let child: Descriptor = serde_json::from_value(entry.clone())?;
            pusher
                .push_single(layout, repo, child.digest.as_str(), &child)
                .await?;
        }
        pusher.push_manifest(layout, repo, tag, manifest).await
    } else {
        pusher.push_single(layout, repo, tag, manifest).await
    }
}
