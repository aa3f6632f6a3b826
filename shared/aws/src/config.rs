//! Settings read once at start-up (from the environment in Lambda, from flags or the
//! deployed stack's outputs in the CLI), and the wiring of adapters into the ingest
//! service. A missing setting or a bad pipeline definition fails here, in one line.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use csvflow_core::{Catalog, DefinitionError};

use crate::alerts::SnsAlerts;
use crate::dynamo::{DynamoStore, StoreConfig};
use crate::ingest::{Adapters, Ingest};
use crate::s3::{S3Feeds, S3Objects, S3Quarantine};
use crate::sqs::SqsDeadLetters;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("cannot read pipeline definitions from {uri}: {reason}")]
    Pipelines { uri: String, reason: String },
    #[error("{uri}: {source}")]
    Definition {
        uri: String,
        #[source]
        source: DefinitionError,
    },
}

/// Everything the ingest service needs to know about its environment.
#[derive(Clone, Debug)]
pub struct IngestSettings {
    pub windows_table: String,
    pub ledger_table: String,
    pub output_bucket: String,
    pub dead_letter_queue_url: String,
    pub alerts_topic_arn: String,
    /// EventBridge bus alerts are also put on (none: SNS only).
    pub event_bus: Option<String>,
    /// `s3://bucket/key` or a local path of the pipelines TOML.
    pub pipelines_uri: String,
    pub retention: Duration,
    pub max_attempts: u32,
}

impl IngestSettings {
    /// Reads `WINDOWS_TABLE`, `LEDGER_TABLE`, `OUTPUT_BUCKET`, `DEAD_LETTER_QUEUE_URL`,
    /// `ALERTS_TOPIC_ARN`, `PIPELINES_URI`, and optionally `EVENT_BUS_NAME`, `WINDOW_RETENTION_DAYS` (35) and `MAX_ATTEMPTS` (3).
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| ConfigError::Missing(name));
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            match std::env::var(name) {
                Err(_) => Ok(default),
                Ok(v) => v.parse().map_err(|_| ConfigError::Invalid {
                    name,
                    reason: format!("{v:?} is not a whole number"),
                }),
            }
        };
        Ok(Self {
            windows_table: var("WINDOWS_TABLE")?,
            ledger_table: var("LEDGER_TABLE")?,
            output_bucket: var("OUTPUT_BUCKET")?,
            dead_letter_queue_url: var("DEAD_LETTER_QUEUE_URL")?,
            alerts_topic_arn: var("ALERTS_TOPIC_ARN")?,
            event_bus: std::env::var("EVENT_BUS_NAME")
                .ok()
                .filter(|b| !b.is_empty()),
            pipelines_uri: var("PIPELINES_URI")?,
            retention: Duration::from_secs(number("WINDOW_RETENTION_DAYS", 35)? * 86_400),
            max_attempts: number("MAX_ATTEMPTS", 3)? as u32,
        })
    }

    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            windows_table: self.windows_table.clone(),
            ledger_table: self.ledger_table.clone(),
            retention: self.retention,
        }
    }
}

/// Loads and validates the pipeline catalog from S3 or a local file, with the lookup
/// tables and models it names (paths relative to the definitions file, or full
/// `s3://` URIs).
pub async fn load_catalog(s3: &aws_sdk_s3::Client, uri: &str) -> Result<Catalog, ConfigError> {
    let text = String::from_utf8(fetch(s3, uri).await?).map_err(|e| ConfigError::Pipelines {
        uri: uri.to_owned(),
        reason: e.to_string(),
    })?;
    let definition = |source| ConfigError::Definition {
        uri: uri.to_owned(),
        source,
    };
    let mut files = HashMap::new();
    for path in Catalog::files_referenced(&text).map_err(definition)? {
        let full = resolve(uri, &path);
        files.insert(path, fetch(s3, &full).await?);
    }
    Catalog::from_toml_with(&text, &files).map_err(definition)
}

/// A path from a definitions file, resolved against the file's own location.
fn resolve(definitions_uri: &str, path: &str) -> String {
    if path.starts_with("s3://") || path.starts_with('/') {
        return path.to_string();
    }
    match definitions_uri.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{path}"),
        None => path.to_string(),
    }
}

/// Reads an `s3://bucket/key` object or a local file.
async fn fetch(s3: &aws_sdk_s3::Client, uri: &str) -> Result<Vec<u8>, ConfigError> {
    let failed = |reason: String| ConfigError::Pipelines {
        uri: uri.to_owned(),
        reason,
    };
    match uri.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, key) = rest
                .split_once('/')
                .ok_or_else(|| failed("expected s3://bucket/key".into()))?;
            let object = s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| failed(aws_sdk_s3::Error::from(e).to_string()))?;
            let bytes = object
                .body
                .collect()
                .await
                .map_err(|e| failed(e.to_string()))?
                .into_bytes();
            Ok(bytes.to_vec())
        }
        None => std::fs::read(uri).map_err(|e| failed(e.to_string())),
    }
}

/// The ingest service wired to real AWS adapters.
pub type AwsIngest =
    Ingest<S3Objects, DynamoStore, S3Quarantine, SqsDeadLetters, SnsAlerts, S3Feeds>;

/// Builds the ingest service from an SDK configuration (pointing at AWS or LocalStack).
pub async fn build_ingest(
    sdk: &aws_config::SdkConfig,
    settings: &IngestSettings,
) -> Result<AwsIngest, ConfigError> {
    let s3 = s3_client(sdk);
    let catalog = Arc::new(load_catalog(&s3, &settings.pipelines_uri).await?);
    let mut alerts = SnsAlerts::new(aws_sdk_sns::Client::new(sdk), &settings.alerts_topic_arn);
    if let Some(bus) = &settings.event_bus {
        alerts = alerts.with_event_bus(aws_sdk_eventbridge::Client::new(sdk), bus);
    }
    let adapters = Adapters {
        source: S3Objects::new(s3.clone()),
        store: DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), settings.store_config()),
        quarantine: S3Quarantine::new(s3.clone(), settings.output_bucket.clone()),
        dead_letters: SqsDeadLetters::new(
            aws_sdk_sqs::Client::new(sdk),
            &settings.dead_letter_queue_url,
        ),
        alerts,
        feeds: S3Feeds::new(s3, settings.output_bucket.clone()),
    };
    Ok(Ingest::new(catalog, adapters, settings.max_attempts))
}

/// An S3 client; path-style addressing when a custom endpoint (LocalStack) is set.
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(sdk.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Loads the SDK configuration with retries suited to bursty DynamoDB commits.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(8))
        .load()
        .await
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn paths_resolve_against_the_definitions_file() {
        assert_eq!(
            resolve("s3://b/config/pipelines.toml", "lookups/zones.csv"),
            "s3://b/config/lookups/zones.csv"
        );
        assert_eq!(
            resolve("examples/pipelines.toml", "models/m.json"),
            "examples/models/m.json"
        );
        assert_eq!(resolve("pipelines.toml", "z.csv"), "z.csv");
        assert_eq!(
            resolve("s3://b/p.toml", "s3://other/z.csv"),
            "s3://other/z.csv"
        );
    }
}
