//! Fixtures for the LocalStack integration tests: every test gets its own landing
//! bucket (with S3 notifications to its own queue), output bucket, dead-letter queue
//! and DynamoDB tables, named after the test, so tests never see each other's data.
//! LocalStack must be running (`localstack/up`); the endpoint comes from
//! `AWS_ENDPOINT_URL` (default `http://127.0.0.1:4566`).

pub mod dashboard_fixture;
pub mod reference;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketVersioningStatus, Event, NotificationConfiguration, QueueConfiguration,
    VersioningConfiguration,
};
use csvflow_aws::alerts::SnsAlerts;
use csvflow_aws::config::{build_ingest, s3_client, AwsIngest, IngestSettings};
use csvflow_aws::dynamo::{DynamoStore, StoreConfig};
use csvflow_aws::ingest::{Adapters, BatchHandler, Ingest};
use csvflow_aws::runner::QueueRunner;
use csvflow_aws::s3::{S3Feeds, S3Objects, S3Quarantine};
use csvflow_aws::sqs::SqsDeadLetters;
use csvflow_core::{CellKey, CellState, MetricValue};

/// One test's private set of AWS resources in LocalStack.
pub struct TestStack {
    pub sdk: aws_config::SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub landing_bucket: String,
    pub output_bucket: String,
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    pub alerts_topic_arn: String,
    /// An SQS queue subscribed (raw delivery) to the alerts topic, to count alerts.
    pub alerts_inbox_url: String,
    /// The EventBridge bus alerts are also put on (see [`TestStack::route_rule`]).
    pub event_bus: String,
    pub windows_table: String,
    pub ledger_table: String,
}

fn unique_name(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let slug: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    format!(
        "t-{slug}-{:x}{:x}",
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// SDK configuration pointing at LocalStack.
pub async fn localstack_config() -> aws_config::SdkConfig {
    let endpoint =
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned());
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

impl TestStack {
    /// Creates the resources, with the landing bucket notifying the queue.
    pub async fn create(test: &str) -> Result<Self> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,csvflow_aws=info")
                }),
            )
            .with_test_writer()
            .try_init();
        let sdk = localstack_config().await;
        let name = unique_name(test);
        let stack = Self {
            s3: s3_client(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            landing_bucket: format!("{name}-landing"),
            output_bucket: format!("{name}-output"),
            queue_url: String::new(),
            dead_letter_queue_url: String::new(),
            alerts_topic_arn: String::new(),
            alerts_inbox_url: String::new(),
            event_bus: format!("{name}-events"),
            windows_table: format!("{name}-windows"),
            ledger_table: format!("{name}-ledger"),
            sdk,
        };
        stack.create_tables().await?;
        let mut stack = stack;
        stack.dead_letter_queue_url = stack.create_queue(&format!("{name}-dlq")).await?;
        stack.queue_url = stack.create_queue(&format!("{name}-ingest")).await?;
        stack.alerts_inbox_url = stack.create_queue(&format!("{name}-alerts")).await?;
        let sns = aws_sdk_sns::Client::new(&stack.sdk);
        stack.alerts_topic_arn = sns
            .create_topic()
            .name(format!("{name}-alerts"))
            .send()
            .await
            .context("creating the alerts topic")?
            .topic_arn
            .context("topic without ARN")?;
        aws_sdk_eventbridge::Client::new(&stack.sdk)
            .create_event_bus()
            .name(&stack.event_bus)
            .send()
            .await
            .context("creating the event bus")?;
        let inbox_arn = stack.queue_arn(&stack.alerts_inbox_url).await?;
        sns.subscribe()
            .topic_arn(&stack.alerts_topic_arn)
            .protocol("sqs")
            .endpoint(inbox_arn)
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .context("subscribing the alerts inbox")?;
        for bucket in [&stack.landing_bucket, &stack.output_bucket] {
            stack
                .s3
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .with_context(|| format!("creating bucket {bucket}"))?;
        }
        stack
            .s3
            .put_bucket_versioning()
            .bucket(&stack.landing_bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .context("enabling versioning")?;
        let queue_arn = stack.queue_arn(&stack.queue_url).await?;
        stack
            .s3
            .put_bucket_notification_configuration()
            .bucket(&stack.landing_bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .queue_configurations(
                        QueueConfiguration::builder()
                            .queue_arn(queue_arn)
                            .events(Event::S3ObjectCreated)
                            .build()?,
                    )
                    .build(),
            )
            .send()
            .await
            .context("configuring S3 notifications")?;
        Ok(stack)
    }

    async fn create_queue(&self, name: &str) -> Result<String> {
        let out = self
            .sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .with_context(|| format!("creating queue {name}"))?;
        out.queue_url.context("queue without URL")
    }

    async fn queue_arn(&self, url: &str) -> Result<String> {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await?;
        out.attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .cloned()
            .context("queue without ARN")
    }

    /// The windows and ledger tables, with the keys and indexes of `infra/template.yaml`.
    async fn create_tables(&self) -> Result<()> {
        let key = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
        };
        let attribute = |name: &str, kind: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
        };
        let index = |name: &str, hash: &str, range: &str| -> Result<GlobalSecondaryIndex> {
            Ok(GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(hash, KeyType::Hash)?)
                .key_schema(key(range, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()?)
        };
        self.dynamodb
            .create_table()
            .table_name(&self.windows_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("sk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("agg", ScalarAttributeType::S)?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(index("by-aggregate", "agg", "sk")?)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("creating table {}", self.windows_table))?;
        self.dynamodb
            .create_table()
            .table_name(&self.ledger_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("sk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("alerts_pk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("detected_at", ScalarAttributeType::N)?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(index("alerts-by-time", "alerts_pk", "detected_at")?)
            .send()
            .await
            .with_context(|| format!("creating table {}", self.ledger_table))?;
        Ok(())
    }

    /// Stores the pipelines TOML in the output bucket and returns its `s3://` URI.
    pub async fn put_pipelines(&self, toml: &str) -> Result<String> {
        self.s3
            .put_object()
            .bucket(&self.output_bucket)
            .key("config/pipelines.toml")
            .body(ByteStream::from(toml.as_bytes().to_vec()))
            .send()
            .await
            .context("uploading pipelines")?;
        Ok(format!("s3://{}/config/pipelines.toml", self.output_bucket))
    }

    pub fn settings(&self, pipelines_uri: &str) -> IngestSettings {
        IngestSettings {
            windows_table: self.windows_table.clone(),
            ledger_table: self.ledger_table.clone(),
            output_bucket: self.output_bucket.clone(),
            dead_letter_queue_url: self.dead_letter_queue_url.clone(),
            alerts_topic_arn: self.alerts_topic_arn.clone(),
            event_bus: Some(self.event_bus.clone()),
            pipelines_uri: pipelines_uri.to_owned(),
            retention: Duration::from_secs(35 * 86_400),
            max_attempts: 3,
        }
    }

    /// The ingest service for these resources and pipelines.
    pub async fn ingest(&self, pipelines_toml: &str) -> Result<AwsIngest> {
        let uri = self.put_pipelines(pipelines_toml).await?;
        Ok(build_ingest(&self.sdk, &self.settings(&uri)).await?)
    }

    /// The ingest service with the shipped `examples/pipelines.toml`, uploaded with its
    /// `lookups/` and `models/` beside it as `localstack/deploy` does, so the definition's
    /// relative paths resolve against S3 as in a deployment.
    pub async fn ingest_examples(&self) -> Result<AwsIngest> {
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let toml = std::fs::read_to_string(examples.join("pipelines.toml"))?;
        for dir in ["lookups", "models"] {
            for entry in std::fs::read_dir(examples.join(dir))? {
                let path = entry?.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .context("file name")?
                    .to_owned();
                self.s3
                    .put_object()
                    .bucket(&self.output_bucket)
                    .key(format!("config/{dir}/{name}"))
                    .body(ByteStream::from(std::fs::read(&path)?))
                    .send()
                    .await
                    .with_context(|| format!("uploading {}", path.display()))?;
            }
        }
        self.ingest(&toml).await
    }

    /// Uploads files one at a time and lets the runner process each before the next, as
    /// files landing minutes apart would be: each file sees the watermark of those before.
    pub async fn ingest_in_order<H: BatchHandler>(
        &self,
        ingest: &H,
        files: &[(&str, &[u8])],
    ) -> Result<Vec<csvflow_aws::ingest::FileSummary>> {
        let mut summaries = Vec::new();
        for (key, bytes) in files {
            self.upload(key, bytes.to_vec()).await?;
            summaries.extend(self.drain(ingest, Duration::from_secs(2)).await?);
        }
        Ok(summaries)
    }

    /// Uploads an object to the landing bucket; returns its version id.
    pub async fn upload(&self, key: &str, body: impl Into<Vec<u8>>) -> Result<Option<String>> {
        let out = self
            .s3
            .put_object()
            .bucket(&self.landing_bucket)
            .key(key)
            .body(ByteStream::from(body.into()))
            .send()
            .await
            .with_context(|| format!("uploading {key}"))?;
        Ok(out.version_id)
    }

    /// Runs the local runner until the queue has been quiet for `idle`.
    pub async fn drain<H: BatchHandler>(
        &self,
        ingest: &H,
        idle: Duration,
    ) -> Result<Vec<csvflow_aws::ingest::FileSummary>> {
        let mut files = Vec::new();
        QueueRunner::new(self.sqs.clone(), &self.queue_url, ingest)
            .run(Some(idle), |f| files.push(f.clone()))
            .await?;
        Ok(files)
    }

    pub fn store(&self) -> DynamoStore {
        DynamoStore::new(
            self.dynamodb.clone(),
            StoreConfig {
                windows_table: self.windows_table.clone(),
                ledger_table: self.ledger_table.clone(),
                retention: Duration::from_secs(35 * 86_400),
            },
        )
    }

    /// An aggregate's stored windows, sorted by key.
    pub async fn windows(
        &self,
        pipeline: &str,
        aggregate: &str,
    ) -> Result<Vec<(CellKey, CellState)>> {
        let mut cells: Vec<(CellKey, CellState)> = self
            .store()
            .windows(pipeline, aggregate, None)
            .await?
            .into_iter()
            .map(|w| (w.key, w.state))
            .collect();
        cells.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(cells)
    }

    /// The AWS adapters for these resources around a given store (e.g. a [`FaultyStore`]).
    pub fn adapters<W>(
        &self,
        store: W,
    ) -> Adapters<S3Objects, W, S3Quarantine, SqsDeadLetters, SnsAlerts, S3Feeds> {
        Adapters {
            source: S3Objects::new(self.s3.clone()),
            store,
            quarantine: S3Quarantine::new(self.s3.clone(), &self.output_bucket),
            dead_letters: SqsDeadLetters::new(self.sqs.clone(), &self.dead_letter_queue_url),
            alerts: SnsAlerts::new(aws_sdk_sns::Client::new(&self.sdk), &self.alerts_topic_arn),
            feeds: S3Feeds::new(self.s3.clone(), &self.output_bucket),
        }
    }

    /// The ingest service over a given store, with these pipelines.
    pub fn ingest_with<W: WindowStore + AlertOutbox + WindowReader + Sync>(
        &self,
        pipelines_toml: &str,
        store: W,
        max_attempts: u32,
    ) -> Result<Ingest<S3Objects, W, S3Quarantine, SqsDeadLetters, SnsAlerts, S3Feeds>> {
        let catalog = csvflow_core::Catalog::from_toml(pipelines_toml)?;
        Ok(Ingest::new(
            std::sync::Arc::new(catalog),
            self.adapters(store),
            max_attempts,
        ))
    }

    /// Routes the alerts of one rule from the stack's EventBridge bus to a new SQS queue,
    /// as a user would (an EventBridge rule matching `detail.rule`); returns its URL.
    pub async fn route_rule(&self, rule: &str) -> Result<String> {
        let name = format!("{}-{rule}", self.event_bus)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect::<String>();
        let queue_url = self.create_queue(&name).await?;
        let queue_arn = self.queue_arn(&queue_url).await?;
        let events = aws_sdk_eventbridge::Client::new(&self.sdk);
        let pattern = serde_json::json!({"source": ["csvflow"], "detail": {"rule": [rule]}});
        events
            .put_rule()
            .name(&name)
            .event_bus_name(&self.event_bus)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .with_context(|| format!("creating EventBridge rule {name}"))?;
        events
            .put_targets()
            .rule(&name)
            .event_bus_name(&self.event_bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(queue_arn)
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("targeting {name} at its queue"))?;
        Ok(queue_url)
    }

    /// Alert messages delivered through SNS so far (drains the inbox queue).
    pub async fn delivered_alerts(&self) -> Result<Vec<serde_json::Value>> {
        self.drain_json(&self.alerts_inbox_url).await
    }

    /// The JSON bodies of the messages waiting in a queue (deleted once read).
    pub async fn drain_json(&self, queue_url: &str) -> Result<Vec<serde_json::Value>> {
        let mut alerts = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await?;
            if out.messages().is_empty() {
                return Ok(alerts);
            }
            for message in out.messages() {
                alerts.push(serde_json::from_str(message.body().unwrap_or_default())?);
                if let Some(handle) = message.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await?;
                }
            }
        }
    }

    /// Messages waiting in the dead-letter queue (bodies and `reason` attributes).
    pub async fn dead_letters(&self) -> Result<Vec<(String, Option<String>)>> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.dead_letter_queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await?;
        Ok(out
            .messages()
            .iter()
            .map(|m| {
                let reason = m
                    .message_attributes()
                    .and_then(|a| a.get("reason"))
                    .and_then(|r| r.string_value())
                    .map(str::to_owned);
                (m.body().unwrap_or_default().to_owned(), reason)
            })
            .collect())
    }
}

/// `(window_start_ms, count)` per window of a count-only aggregate.
pub fn counts(cells: &[(CellKey, CellState)]) -> Vec<(Vec<String>, i64, i64)> {
    cells
        .iter()
        .map(|(key, state)| {
            let n = match state.values().first() {
                Some(MetricValue::Int(n)) => *n,
                other => panic!("expected an integer count, got {other:?}"),
            };
            (key.group.clone(), key.start_ms, n)
        })
        .collect()
}

/// Fails unless LocalStack answers: integration tests must run, not skip.
pub async fn require_localstack() -> Result<()> {
    let sdk = localstack_config().await;
    match aws_sdk_sqs::Client::new(&sdk).list_queues().send().await {
        Ok(_) => Ok(()),
        Err(e) => bail!("LocalStack is not reachable (start it with `localstack/up`): {e}"),
    }
}

/// A [`WindowStore`] that delegates to the real DynamoDB store but fails on purpose:
/// after `commit_chunks_before_crash` chunks have landed it returns an error (a crash
/// mid-commit), and the first `transient_failures` chunk attempts fail as throttled.
/// Used to prove retries converge; production code has no test-only branches.
pub struct FaultyStore {
    pub inner: DynamoStore,
    pub commit_chunks_before_crash: Option<usize>,
    pub transient_failures: std::sync::atomic::AtomicUsize,
    chunks_landed: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
pub enum FaultyError {
    #[error("injected crash after {0} chunk(s)")]
    Crash(usize),
    #[error("injected throttling")]
    Throttled,
    #[error(transparent)]
    Store(#[from] csvflow_aws::dynamo::StoreError),
}

impl FaultyStore {
    pub fn crash_after(inner: DynamoStore, chunks: usize) -> Self {
        Self {
            inner,
            commit_chunks_before_crash: Some(chunks),
            transient_failures: 0.into(),
            chunks_landed: 0.into(),
        }
    }

    pub fn throttled(inner: DynamoStore, failures: usize) -> Self {
        Self {
            inner,
            commit_chunks_before_crash: None,
            transient_failures: failures.into(),
            chunks_landed: 0.into(),
        }
    }
}

use csvflow_core::alerting::AlertMessage;
use csvflow_core::ports::{
    AlertOutbox, ChunkOutcome, FileClaim, ObjectRef, WindowReader, WindowStore,
};
use csvflow_core::{FileReport, Pipeline};

impl WindowStore for FaultyStore {
    type Error = FaultyError;

    async fn claim(&self, pipeline: &Pipeline, file: &ObjectRef) -> Result<FileClaim, FaultyError> {
        Ok(self.inner.claim(pipeline, file).await?)
    }

    async fn committed_chunks(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
    ) -> Result<Vec<usize>, FaultyError> {
        Ok(self.inner.committed_chunks(pipeline, file).await?)
    }

    async fn commit_chunk(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        index: usize,
        cells: &[(&CellKey, &CellState)],
    ) -> Result<Option<ChunkOutcome>, FaultyError> {
        let take_one = |n: usize| n.checked_sub(1);
        if self
            .transient_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take_one)
            .is_ok()
        {
            return Err(FaultyError::Throttled);
        }
        if let Some(limit) = self.commit_chunks_before_crash {
            if self.chunks_landed.load(Ordering::SeqCst) >= limit {
                return Err(FaultyError::Crash(limit));
            }
        }
        let outcome = self
            .inner
            .commit_chunk(pipeline, file, index, cells)
            .await?;
        self.chunks_landed.fetch_add(1, Ordering::SeqCst);
        Ok(outcome)
    }

    async fn finish(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        report: &FileReport,
        chunks: usize,
    ) -> Result<u64, FaultyError> {
        Ok(self.inner.finish(pipeline, file, report, chunks).await?)
    }

    async fn mark_failed(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        reason: &str,
    ) -> Result<(), FaultyError> {
        Ok(self.inner.mark_failed(pipeline, file, reason).await?)
    }
}

impl AlertOutbox for FaultyStore {
    type Error = FaultyError;

    async fn record(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        alerts: &[AlertMessage],
    ) -> Result<(), FaultyError> {
        Ok(self.inner.record(pipeline, file, alerts).await?)
    }

    async fn claim_unpublished(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
    ) -> Result<Vec<AlertMessage>, FaultyError> {
        Ok(self.inner.claim_unpublished(pipeline, file).await?)
    }

    async fn mark_published(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        alert: &AlertMessage,
    ) -> Result<(), FaultyError> {
        Ok(self.inner.mark_published(pipeline, file, alert).await?)
    }
}

impl WindowReader for FaultyStore {
    type Error = FaultyError;

    async fn latest_windows(
        &self,
        pipeline: &Pipeline,
        aggregate: &str,
        limit: usize,
    ) -> Result<Vec<(CellKey, CellState)>, FaultyError> {
        Ok(self
            .inner
            .latest_windows(pipeline, aggregate, limit)
            .await?)
    }

    async fn window_keys_starting_between(
        &self,
        pipeline: &Pipeline,
        aggregate: &str,
        from_start_ms: i64,
        to_start_ms: i64,
    ) -> Result<Vec<CellKey>, FaultyError> {
        Ok(self
            .inner
            .window_keys_starting_between(pipeline, aggregate, from_start_ms, to_start_ms)
            .await?)
    }

    async fn read_windows(
        &self,
        pipeline: &Pipeline,
        keys: &[CellKey],
    ) -> Result<Vec<(CellKey, CellState)>, FaultyError> {
        Ok(self.inner.read_windows(pipeline, keys).await?)
    }
}
