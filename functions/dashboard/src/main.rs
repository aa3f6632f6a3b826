//! The dashboard Lambda, behind a function URL: the JSON API over windows and alerts and
//! the live page, as one axum router (the same one `csvflow dashboard` serves locally).
//! The bearer token is read from Secrets Manager once, at cold start.

use csvflow_aws::config::{sdk_config, ConfigError};
use csvflow_aws::dashboard::{self, DashboardSettings};
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(false)
        .without_time()
        .init();
    let settings = DashboardSettings::from_env()?;
    let secret = settings
        .token_secret
        .as_deref()
        .ok_or(ConfigError::Missing("DASHBOARD_TOKEN_SECRET_ARN"))?;
    let sdk = sdk_config().await;
    let token = dashboard::read_token(&sdk, secret).await?;
    let app = dashboard::build(&sdk, &settings, token).await?;
    lambda_http::run(app).await
}
