//! Fixtures for the dashboard tests: the real dashboard router served in-process on an
//! ephemeral port over a [`TestStack`]'s tables, a minimal HTTP/1.1 client (so the test
//! sees exactly the bytes and headers a browser would), and alert items in the ledger's
//! `alerts-by-time` shape.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use csvflow_aws::dashboard::{self, DashboardSettings, Token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TestStack;

/// The dashboard served on `127.0.0.1:<ephemeral>` until dropped.
pub struct DashboardServer {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DashboardServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestStack {
    /// Serves the dashboard over this stack's tables and `pipelines_uri`, with `token`.
    pub async fn serve_dashboard(
        &self,
        pipelines_uri: &str,
        token: &str,
    ) -> Result<DashboardServer> {
        let settings = DashboardSettings {
            windows_table: self.windows_table.clone(),
            ledger_table: self.ledger_table.clone(),
            pipelines_uri: pipelines_uri.to_owned(),
            output_bucket: Some(self.output_bucket.clone()),
            token_secret: None,
        };
        let router = dashboard::build(&self.sdk, &settings, Token::new(token)).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = dashboard::serve(listener, router).await;
        });
        Ok(DashboardServer { addr, task })
    }

    /// Puts an alert item into the ledger table as the alert sink writes it.
    pub async fn put_alert(
        &self,
        pipeline: &str,
        id: &str,
        detected_at_ms: i64,
        status: &str,
        payload: &serde_json::Value,
    ) -> Result<()> {
        let s = |v: &str| AttributeValue::S(v.to_owned());
        let item = HashMap::from([
            ("pk".to_owned(), s(&format!("alert#{pipeline}#{id}"))),
            ("sk".to_owned(), s("alert")),
            ("alerts_pk".to_owned(), s(&format!("alerts#{pipeline}"))),
            (
                "detected_at".to_owned(),
                AttributeValue::N(detected_at_ms.to_string()),
            ),
            ("payload".to_owned(), s(&payload.to_string())),
            ("status".to_owned(), s(status)),
        ]);
        self.dynamodb
            .put_item()
            .table_name(&self.ledger_table)
            .set_item(Some(item))
            .send()
            .await
            .context("putting an alert item")?;
        Ok(())
    }
}

/// A response as received.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response is not JSON: {}", self.text()))
    }
}

/// `GET path` with extra headers, over a fresh connection (`Connection: close`).
pub async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<HttpResponse> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers in the response")?;
    let head = String::from_utf8(raw[..split].to_vec())?;
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunk")?;
        let size_text = std::str::from_utf8(&data[..line_end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            bail!("truncated chunk body");
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
