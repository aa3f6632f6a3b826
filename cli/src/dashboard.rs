//! `csvflow dashboard`: serves the dashboard (the same router as the Lambda behind its
//! function URL) on a local address, against AWS or LocalStack, and prints the URL with
//! its token. The token is read from the stack's Secrets Manager secret
//! (`--token-secret`, `DASHBOARD_TOKEN_SECRET_ARN`, or the `DashboardTokenSecretArn`
//! output that `. localstack/stack-env` exports); with none, a random one is made up.

use csvflow_aws::config::sdk_config;
use csvflow_aws::dashboard::{self, DashboardSettings, Token};

/// Serve the live dashboard and its JSON API locally; prints the URL with the token.
#[derive(clap::Args)]
pub struct DashboardArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: String,
    /// Secrets Manager secret (ARN or name) holding the bearer token.
    #[arg(long, env = "DASHBOARD_TOKEN_SECRET_ARN")]
    token_secret: Option<String>,
    /// Make up a random token instead of reading the stack's secret.
    #[arg(long, conflicts_with = "token_secret")]
    new_token: bool,
}

/// Runs `csvflow dashboard` to completion on a fresh runtime.
pub fn run(args: DashboardArgs) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,csvflow=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start tokio: {e}"))?;
    runtime.block_on(serve(args))
}

async fn serve(args: DashboardArgs) -> Result<(), String> {
    let settings = DashboardSettings::from_env().map_err(|e| e.to_string())?;
    let sdk = sdk_config().await;
    let secret = match (args.new_token, args.token_secret) {
        (true, _) => None,
        (false, Some(s)) => Some(s),
        // `. localstack/stack-env` exports the stack outputs under their own names too.
        (false, None) => std::env::var("DashboardTokenSecretArn")
            .ok()
            .filter(|s| !s.is_empty()),
    };
    let (text, token) = match &secret {
        Some(secret) => {
            let text = dashboard::read_token_text(&sdk, secret)
                .await
                .map_err(|e| e.to_string())?;
            let token = Token::new(&text);
            (text, token)
        }
        None => Token::generate().map_err(|e| e.to_string())?,
    };
    let app = dashboard::build(&sdk, &settings, token)
        .await
        .map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    match &secret {
        Some(s) => eprintln!("csvflow dashboard: token from secret {s}"),
        None => eprintln!("csvflow dashboard: no token secret given; made up a token for this run"),
    }
    eprintln!("csvflow dashboard: serving on http://{addr}/ (Ctrl-C to stop); open:");
    println!("http://{addr}/#token={text}");
    dashboard::serve(listener, app)
        .await
        .map_err(|e| e.to_string())
}
