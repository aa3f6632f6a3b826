//! HTTP plumbing of the dashboard: the bearer-token check, cacheable responses (ETag,
//! `If-None-Match` -> 304, short `max-age`), errors as JSON, and security headers.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::Dashboard;

/// Seconds a client may reuse an API response without asking again.
const API_MAX_AGE: &str = "private, max-age=5";

/// The dashboard's bearer token. Only its SHA-256 is kept; requests are compared by hash
/// in constant time.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl Token {
    pub fn new(secret: &str) -> Self {
        Self {
            digest: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// A fresh random token (URL-safe, 40 characters) and its [`Token`].
    pub fn generate() -> Result<(String, Token), super::DashboardError> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut bytes = [0u8; 40];
        getrandom::fill(&mut bytes).map_err(|e| super::DashboardError::Random(e.to_string()))?;
        // 248 = 4 * 62: reject the top bytes so every character is equally likely.
        let mut text = String::with_capacity(40);
        let mut pool = bytes.to_vec();
        while text.len() < 40 {
            if pool.is_empty() {
                let mut more = [0u8; 40];
                getrandom::fill(&mut more)
                    .map_err(|e| super::DashboardError::Random(e.to_string()))?;
                pool.extend_from_slice(&more);
            }
            let b = pool.pop().unwrap_or_default();
            if b < 248 {
                text.push(ALPHABET[usize::from(b) % ALPHABET.len()] as char);
            }
        }
        let token = Token::new(&text);
        Ok((text, token))
    }

    fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest
            .iter()
            .zip(&self.digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

/// Middleware: `Authorization: Bearer <token>` or 401 with no data.
pub(super) async fn require_token(
    State(app): State<Arc<Dashboard>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match presented {
        Some(token) if app.token.matches(token) => next.run(request).await,
        _ => {
            let mut response = error_body(
                StatusCode::UNAUTHORIZED,
                "missing or invalid bearer token (Authorization: Bearer <token>)",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"csvflow-dashboard\""),
            );
            response
        }
    }
}

/// Middleware: headers every response gets.
pub(super) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

pub(super) async fn not_found() -> Response {
    error_body(StatusCode::NOT_FOUND, "no such page")
}

/// `"<first 16 bytes of SHA-256 in hex>"`.
pub(super) fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// True when `If-None-Match` lists `etag` (or `*`); weak validators compare equal.
pub(super) fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim())
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// A response that can be revalidated: 304 when the client has this body already.
pub(super) fn cacheable(
    request_headers: &HeaderMap,
    content_type: &'static str,
    cache_control: &'static str,
    etag: &str,
    body: impl Into<axum::body::Body>,
) -> Response {
    let etag_value = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"\""));
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, etag_value);
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Authorization"));
    if not_modified(request_headers, etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    (StatusCode::OK, headers, body.into()).into_response()
}

/// A JSON API response with its ETag.
pub(super) fn json(request_headers: &HeaderMap, body: Vec<u8>) -> Response {
    let etag = etag_of(&body);
    cacheable(
        request_headers,
        "application/json",
        API_MAX_AGE,
        &etag,
        body,
    )
}

/// `{"error": message}` with a status, never cached.
pub(super) fn error_body(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Why an API request failed: the client's fault (400/404) or the store's (502).
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Store(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::BadRequest(m) => error_body(StatusCode::BAD_REQUEST, m),
            ApiError::NotFound(m) => error_body(StatusCode::NOT_FOUND, m),
            ApiError::Store(m) => {
                tracing::error!(error = %m, "dashboard query failed");
                error_body(StatusCode::BAD_GATEWAY, m)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_value() {
        let token = Token::new("correct horse battery staple");
        assert!(token.matches("correct horse battery staple"));
        assert!(!token.matches("correct horse battery stapl"));
        assert!(!token.matches(""));
    }

    #[test]
    fn generated_tokens_are_url_safe_and_distinct() {
        let (a, ta) = Token::generate().unwrap();
        let (b, _) = Token::generate().unwrap();
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert!(ta.matches(&a));
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let etag = etag_of(b"[]");
        let mut headers = HeaderMap::new();
        assert!(!not_modified(&headers, &etag));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{etag}")).unwrap(),
        );
        assert!(not_modified(&headers, &etag));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&headers, &etag));
    }
}
