//! `svc-overlay peers | publish | tail`: a client of a running node's control API.
//!
//! Requests carry `Authorization: Bearer <token>` when `--token-file` is given, and POST
//! bodies are `application/octet-stream` (a non-simple content type, which the control API's
//! browser guard requires).

use std::io::Write as _;

use futures_util::StreamExt as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, RequestBuilder, Url};
use serde_json::Value;
use zeroize::Zeroizing;

use super::args::NodeArgs;
use super::OperatorError;
use crate::config::secrets;

/// Longest SSE line accepted from the node (a message is at most a few MiB of base64).
const MAX_SSE_LINE: usize = 32 << 20;

/// A connection to one node's control API.
pub(crate) struct ControlClient {
    base: Url,
    token: Option<Zeroizing<String>>,
    http: Client,
}

impl ControlClient {
    /// Parses `--node` and reads `--token-file`.
    pub(crate) fn new(args: &NodeArgs) -> Result<ControlClient, OperatorError> {
        let base = Url::parse(args.node.trim()).map_err(|e| {
            OperatorError::usage(format!("--node `{}`: not a URL ({e})", args.node))
        })?;
        if base.scheme() != "http" {
            return Err(OperatorError::usage(format!(
                "--node `{}`: only http:// URLs are supported",
                args.node
            )));
        }
        let token = match &args.token_file {
            Some(path) => Some(
                secrets::read_token_file("token_file", path)
                    .map_err(|e| OperatorError::usage(e.to_string()))?,
            ),
            None => None,
        };
        // No proxy from the environment: the control API is a private endpoint.
        let http = Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| OperatorError::Failed(format!("HTTP client: {e}")))?;
        Ok(ControlClient { base, token, http })
    }

    fn url(&self, path: &str) -> Result<Url, OperatorError> {
        self.base
            .join(path)
            .map_err(|e| OperatorError::usage(format!("--node `{}`: {e}", self.base)))
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {}", token.as_str())),
            None => request,
        }
    }

    async fn send(
        &self,
        request: RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, OperatorError> {
        let response = self
            .authorized(request)
            .send()
            .await
            .map_err(|e| OperatorError::Failed(format!("{what}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(OperatorError::Failed(format!(
            "{what}: the node answered {status}: {}",
            body.trim()
        )))
    }

    /// `GET /v1/peers`, pretty-printed.
    pub(crate) async fn peers(&self) -> Result<String, OperatorError> {
        let request = self.http.get(self.url("/v1/peers")?);
        let response = self.send(request, "GET /v1/peers").await?;
        let value: Value = response
            .json()
            .await
            .map_err(|e| OperatorError::Failed(format!("GET /v1/peers: {e}")))?;
        serde_json::to_string_pretty(&value).map_err(|e| OperatorError::Failed(e.to_string()))
    }

    /// `POST /v1/broadcast`; returns the node's answer (`{"id":"…"}`).
    pub(crate) async fn publish(&self, data: Vec<u8>) -> Result<String, OperatorError> {
        let request = self
            .http
            .post(self.url("/v1/broadcast")?)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(data);
        let response = self.send(request, "POST /v1/broadcast").await?;
        let text = response
            .text()
            .await
            .map_err(|e| OperatorError::Failed(format!("POST /v1/broadcast: {e}")))?;
        Ok(text.trim().to_string())
    }

    /// `GET /v1/gossip`: writes each event's data (one JSON object) as a line to `out`, until
    /// `count` messages (if given) or the stream ends.
    pub(crate) async fn tail(
        &self,
        count: Option<u64>,
        out: &mut dyn std::io::Write,
    ) -> Result<(), OperatorError> {
        let request = self.http.get(self.url("/v1/gossip")?);
        let response = self.send(request, "GET /v1/gossip").await?;
        let mut body = response.bytes_stream();
        let mut line: Vec<u8> = Vec::new();
        let mut seen = 0u64;
        let mut lagged = false;
        if count == Some(0) {
            return Ok(());
        }
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| OperatorError::Failed(format!("GET /v1/gossip: {e}")))?;
            for &b in chunk.iter() {
                if b != b'\n' {
                    if line.len() >= MAX_SSE_LINE {
                        return Err(OperatorError::Failed(
                            "GET /v1/gossip: an event line is too long".to_string(),
                        ));
                    }
                    line.push(b);
                    continue;
                }
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches('\r');
                if text.is_empty() {
                    lagged = false;
                } else if let Some(name) = text.strip_prefix("event:") {
                    lagged = name.trim() == "lagged";
                } else if let Some(data) = text.strip_prefix("data:").filter(|_| lagged) {
                    // This client fell behind; the node dropped messages for it.
                    tracing::warn!("the node dropped messages for this client: {}", data.trim());
                    let _ = writeln!(
                        std::io::stderr(),
                        "svc-overlay tail: lagged {}",
                        data.trim()
                    );
                } else if let Some(data) = text.strip_prefix("data:") {
                    let io = |source| OperatorError::Io {
                        path: "<stdout>".into(),
                        source,
                    };
                    writeln!(out, "{}", data.trim_start()).map_err(io)?;
                    out.flush().map_err(io)?;
                    seen += 1;
                    if count.is_some_and(|c| seen >= c) {
                        return Ok(());
                    }
                }
                line.clear();
            }
        }
        if count.is_some() {
            return Err(OperatorError::Failed(format!(
                "GET /v1/gossip: the stream ended after {seen} messages"
            )));
        }
        Ok(())
    }
}
