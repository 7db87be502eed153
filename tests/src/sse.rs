//! A small Server-Sent Events client for the tests: reads the raw stream and splits it into
//! events and comments.

use std::time::Duration;

use futures_util::StreamExt as _;

/// One block of the stream (up to a blank line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Block {
    /// `id:` field.
    pub id: Option<i64>,
    /// `event:` field.
    pub event: Option<String>,
    /// `data:` field.
    pub data: Option<String>,
    /// `retry:` field.
    pub retry: Option<u64>,
    /// Comment lines (without the `:`).
    pub comments: Vec<String>,
}

impl Block {
    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.data.as_deref().unwrap_or("null")).unwrap()
    }
}

/// An open stream.
pub struct SseClient {
    /// Response status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    body: Option<futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    buf: String,
}

impl SseClient {
    /// Opens `GET {base}{path}` with a bearer token and optional `Last-Event-ID`.
    pub async fn connect(base: &str, path: &str, token: &str, last_event_id: Option<&str>) -> Self {
        let auth = format!("Bearer {token}");
        let mut headers = vec![("authorization", auth.as_str())];
        if let Some(id) = last_event_id {
            headers.push(("last-event-id", id));
        }
        Self::connect_with(base, path, &headers).await
    }

    /// Opens `GET {base}{path}` with the given headers (a session cookie, say).
    pub async fn connect_with(base: &str, path: &str, headers: &[(&str, &str)]) -> Self {
        Self::connect_on(&reqwest::Client::new(), base, path, headers).await
    }

    /// Opens `GET {base}{path}` through `client` (reusing a connection it keeps open).
    pub async fn connect_on(
        client: &reqwest::Client,
        base: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Self {
        let mut req = client.get(format!("{base}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        Self {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: Some(resp.bytes_stream().boxed()),
            buf: String::new(),
        }
    }

    /// The next block, or `None` when the stream ended or nothing came within `wait`.
    pub async fn next_block(&mut self, wait: Duration) -> Option<Block> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let mut block = Block::default();
                for line in raw.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        block.comments.push(c.trim().to_owned());
                    } else if let Some((k, v)) = line.split_once(':') {
                        let v = v.strip_prefix(' ').unwrap_or(v);
                        match k {
                            "id" => block.id = v.parse().ok(),
                            "event" => block.event = Some(v.to_owned()),
                            "data" => block.data = Some(v.to_owned()),
                            "retry" => block.retry = v.parse().ok(),
                            _ => {}
                        }
                    }
                }
                return Some(block);
            }
            let body = self.body.as_mut()?;
            match tokio::time::timeout_at(deadline, body.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(_) => {
                    self.body = None;
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// The next `event: action` block (skipping comments), or `None`.
    pub async fn next_action(&mut self, wait: Duration) -> Option<Block> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let block = self.next_block(left).await?;
            if block.event.is_some() {
                return Some(block);
            }
        }
    }

    /// True when the server closed the stream within `wait`.
    pub async fn ended_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.body.is_none() {
                return true;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            if self.next_block(left).await.is_none() && self.body.is_none() {
                return true;
            }
        }
    }
}
