//! The ingest Lambda: SQS batches of S3 notifications (or direct S3 / EventBridge
//! events) in, windows committed exactly once to DynamoDB out.

use csvflow_aws::config::{build_ingest, sdk_config, IngestSettings};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(false)
        .without_time()
        .init();
    let settings = IngestSettings::from_env()?;
    let ingest = build_ingest(&sdk_config().await, &settings).await?;
    let ingest = &ingest;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let span = tracing::info_span!("invocation", request_id = %event.context.request_id);
        let (response, _summaries) = ingest.handle(&event.payload).instrument(span).await?;
        Ok::<Value, Error>(response)
    }))
    .await
}
