//! The dashboard: a small authenticated HTTP app over the windows and alerts in
//! DynamoDB. One axum [`Router`] serves the JSON API (`/api/*`) and the live HTML page
//! (`/`, with uPlot vendored into the binary); the same router runs in Lambda behind a
//! function URL (`lambda_http::run`) and locally in `csvflow dashboard` ([`serve`]).
//!
//! Every `/api/*` request needs `Authorization: Bearer <token>` (the token lives in
//! Secrets Manager and is read once at start-up); without it: 401 and no data. The page
//! and its scripts carry no data and are served to anyone; the page reads the token
//! from the URL fragment, which browsers never send to servers. JSON responses carry an
//! ETag (a hash of the body) and honour `If-None-Match` with 304, so polling is cheap.

mod api;
mod assets;
mod http;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use csvflow_core::Catalog;

use crate::config::{load_catalog, s3_client, ConfigError};

pub use http::Token;

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read the dashboard token from secret {secret}: {reason}")]
    Secret { secret: String, reason: String },
    #[error("the dashboard token in secret {secret} is too short ({len} characters; at least 16)")]
    WeakToken { secret: String, len: usize },
    #[error("cannot generate a token: {0}")]
    Random(String),
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// What the dashboard reads from its environment.
#[derive(Clone, Debug)]
pub struct DashboardSettings {
    pub windows_table: String,
    pub ledger_table: String,
    /// `s3://bucket/key` or a local path of the pipelines TOML.
    pub pipelines_uri: String,
    /// The output bucket (feeds/ and config/); optional, informational for now.
    pub output_bucket: Option<String>,
    /// ARN (or name) of the Secrets Manager secret holding the bearer token.
    pub token_secret: Option<String>,
}

impl DashboardSettings {
    /// Reads `WINDOWS_TABLE`, `LEDGER_TABLE`, `PIPELINES_URI`, and optionally
    /// `OUTPUT_BUCKET` and `DASHBOARD_TOKEN_SECRET_ARN`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| ConfigError::Missing(name));
        let optional = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(Self {
            windows_table: var("WINDOWS_TABLE")?,
            ledger_table: var("LEDGER_TABLE")?,
            pipelines_uri: var("PIPELINES_URI")?,
            output_bucket: optional("OUTPUT_BUCKET"),
            token_secret: optional("DASHBOARD_TOKEN_SECRET_ARN"),
        })
    }
}

/// Everything a request needs, built once.
pub struct Dashboard {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) dynamodb: aws_sdk_dynamodb::Client,
    pub(crate) windows_table: String,
    pub(crate) ledger_table: String,
    pub(crate) token: Token,
}

impl Dashboard {
    pub fn new(
        catalog: Arc<Catalog>,
        dynamodb: aws_sdk_dynamodb::Client,
        settings: &DashboardSettings,
        token: Token,
    ) -> Self {
        Self {
            catalog,
            dynamodb,
            windows_table: settings.windows_table.clone(),
            ledger_table: settings.ledger_table.clone(),
            token,
        }
    }
}

/// Reads the bearer token from Secrets Manager (the secret string, trimmed).
pub async fn read_token(
    sdk: &aws_config::SdkConfig,
    secret: &str,
) -> Result<Token, DashboardError> {
    Ok(Token::new(&read_token_text(sdk, secret).await?))
}

/// The token text itself (for `csvflow dashboard` to print its URL); at least 16 characters.
pub async fn read_token_text(
    sdk: &aws_config::SdkConfig,
    secret: &str,
) -> Result<String, DashboardError> {
    let failed = |reason: String| DashboardError::Secret {
        secret: secret.to_owned(),
        reason,
    };
    let out = aws_sdk_secretsmanager::Client::new(sdk)
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| {
            failed(
                aws_smithy_types::error::display::DisplayErrorContext(
                    aws_sdk_secretsmanager::Error::from(e),
                )
                .to_string(),
            )
        })?;
    let value = out
        .secret_string()
        .ok_or_else(|| failed("the secret has no string value".into()))?
        .trim();
    if value.len() < 16 {
        return Err(DashboardError::WeakToken {
            secret: secret.to_owned(),
            len: value.len(),
        });
    }
    Ok(value.to_owned())
}

/// Loads the pipeline catalog and builds the app (the clients are built once, here).
pub async fn build(
    sdk: &aws_config::SdkConfig,
    settings: &DashboardSettings,
    token: Token,
) -> Result<Router, DashboardError> {
    let catalog = load_catalog(&s3_client(sdk), &settings.pipelines_uri).await?;
    Ok(router(Arc::new(Dashboard::new(
        Arc::new(catalog),
        aws_sdk_dynamodb::Client::new(sdk),
        settings,
        token,
    ))))
}

/// The routes: the JSON API behind the token check, the page and its assets in front.
pub fn router(app: Arc<Dashboard>) -> Router {
    let api = Router::new()
        .route("/api/pipelines", get(api::pipelines))
        .route("/api/windows", get(api::windows))
        .route("/api/top", get(api::top))
        .route("/api/series", get(api::series))
        .route("/api/alerts", get(api::alerts))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            http::require_token,
        ));
    Router::new()
        .merge(api)
        .route("/", get(assets::index))
        .route("/assets/{name}", get(assets::asset))
        .fallback(http::not_found)
        .layer(axum::middleware::from_fn(http::security_headers))
        .with_state(app)
}

/// Serves the router on `listener` until the process ends (the local `csvflow dashboard`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
) -> Result<(), DashboardError> {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a: SocketAddr| a.to_string());
    axum::serve(listener, router)
        .await
        .map_err(|source| DashboardError::Serve { addr, source })
}
