//! The ingest use case, shared by the Lambda, `csvflow local` and `csvflow ingest`:
//! route an object to its pipeline, stream it through the engine, quarantine bad rows,
//! commit the partials exactly once, publish the alerts the commit raised, and refresh
//! the aggregate feeds. Generic over the ports, so the same code runs against AWS,
//! LocalStack or test doubles.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use csvflow_core::alerting::AlertMessage;
use csvflow_core::closing::closing;
use csvflow_core::commit::{commit_chunks, plan_chunks, CommitOutcome};
use csvflow_core::ports::{
    AlertOutbox, AlertSink, DeadLetterSink, FeedSink, FileClaim, ObjectRef, ObjectSource,
    QuarantineSink, WindowReader, WindowStore,
};
use csvflow_core::{
    process_file, write_windows, Catalog, CellChange, CellKey, CellState, FileInput, FileReport,
    OutputFormat, Pipeline,
};
use serde::Serialize;
use serde_json::Value;

use crate::events::{decode_invocation, EventError, Invocation, QueuedMessage};
use crate::metrics;

/// Why a file could not be ingested. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{file}: {source}")]
    Source {
        file: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{file}: {source}")]
    Engine {
        file: String,
        #[source]
        source: csvflow_core::FileError,
    },
    #[error("{file}: the engine thread stopped: {source}")]
    EngineThread {
        file: String,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("{file}: state store: {source}")]
    Store {
        file: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{file}: quarantine: {source}")]
    Quarantine {
        file: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("{file}: alerts: {source}")]
    Alerts {
        file: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{file}: feeds: {source}")]
    Feeds {
        file: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("pipeline {0:?} is not in the catalog")]
    UnknownPipeline(String),
}

/// What happened to one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Processed and committed by this invocation.
    Committed,
    /// The ledger shows it was already committed: nothing changed.
    Duplicate,
    /// No pipeline's `match` glob covers the key: logged and counted, not retried.
    Unrouted,
}

/// The per-file figures logged, returned and published as metrics.
#[derive(Clone, Serialize)]
pub struct FileSummary {
    pub file: String,
    pub pipeline: Option<String>,
    pub status: FileStatus,
    pub rows: u64,
    pub bad: u64,
    pub late: u64,
    pub cells: u64,
    pub writes: u64,
    pub bytes: u64,
    pub millis: u64,
    #[serde(skip)]
    pub changes: Vec<CellChange>,
}

/// The adapters the ingest service runs on, one per port.
pub struct Adapters<S, W, Q, D, A, F> {
    pub source: S,
    /// Windows, ledger and alert outbox (one store implements all three ports).
    pub store: W,
    pub quarantine: Q,
    pub dead_letters: D,
    pub alerts: A,
    pub feeds: F,
}

/// Handles a Lambda invocation payload: what `csvflow local` drives like Lambda does.
pub trait BatchHandler {
    /// Returns the function's response and the files handled.
    fn handle(
        &self,
        payload: &Value,
    ) -> impl std::future::Future<Output = Result<(Value, Vec<FileSummary>), IngestError>> + Send;
}

impl<S, W, Q, D, A, F> BatchHandler for Ingest<S, W, Q, D, A, F>
where
    S: ObjectSource + Sync,
    W: WindowStore + AlertOutbox + WindowReader + Sync,
    Q: QuarantineSink + Sync,
    D: DeadLetterSink + Sync,
    A: AlertSink + Sync,
    F: FeedSink + Sync,
{
    async fn handle(&self, payload: &Value) -> Result<(Value, Vec<FileSummary>), IngestError> {
        self.handle(payload).await
    }
}

/// How many of an aggregate's latest windows a feed snapshot holds.
const FEED_WINDOWS: usize = 500;

/// The ingest service: the catalog and its adapters, built once.
pub struct Ingest<S, W, Q, D, A, F> {
    catalog: Arc<Catalog>,
    ports: Adapters<S, W, Q, D, A, F>,
    /// Deliveries of one SQS message before it is dead-lettered with its reason.
    max_attempts: u32,
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(
    e: E,
) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

/// Maps any store port's error to [`IngestError::Store`] for a file.
fn store_error<E: std::error::Error + Send + Sync + 'static>(
    file: &str,
) -> impl FnOnce(E) -> IngestError + '_ {
    move |e| IngestError::Store {
        file: file.to_owned(),
        source: boxed(e),
    }
}

impl<S, W, Q, D, A, F> Ingest<S, W, Q, D, A, F>
where
    S: ObjectSource + Sync,
    W: WindowStore + AlertOutbox + WindowReader + Sync,
    Q: QuarantineSink + Sync,
    D: DeadLetterSink + Sync,
    A: AlertSink + Sync,
    F: FeedSink + Sync,
{
    pub fn new(
        catalog: Arc<Catalog>,
        ports: Adapters<S, W, Q, D, A, F>,
        max_attempts: u32,
    ) -> Self {
        Self {
            catalog,
            ports,
            max_attempts,
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Ingests one object end to end.
    pub async fn ingest_object(&self, object: &ObjectRef) -> Result<FileSummary, IngestError> {
        let started = Instant::now();
        let uri = object.uri();
        let Some(pipeline) = self.catalog.route(&object.key) else {
            tracing::warn!(file = %uri, "no pipeline matches this key; ignored");
            let summary = FileSummary::empty(uri, None, FileStatus::Unrouted);
            metrics::publish(&summary);
            return Ok(summary);
        };
        let (object, reader) =
            self.ports
                .source
                .open(object)
                .await
                .map_err(|e| IngestError::Source {
                    file: uri.clone(),
                    source: boxed(e),
                })?;
        let claim = self
            .ports
            .store
            .claim(pipeline, &object)
            .await
            .map_err(|e| IngestError::Store {
                file: uri.clone(),
                source: boxed(e),
            })?;
        let watermark_ms = match claim {
            FileClaim::Done => {
                tracing::info!(file = %uri, pipeline = pipeline.name(), "already committed; duplicate delivery ignored");
                // A crash may have come between the commit and the alerts going out.
                self.publish_alerts(pipeline, &object, &uri).await?;
                let summary = FileSummary::empty(uri, Some(pipeline.name()), FileStatus::Duplicate);
                metrics::publish(&summary);
                return Ok(summary);
            }
            FileClaim::Process { watermark_ms } => watermark_ms,
        };
        let report = self
            .run_engine(pipeline, &uri, watermark_ms, reader)
            .await?;
        self.ports
            .quarantine
            .quarantine(pipeline, &object, &report.bad_rows)
            .await
            .map_err(|e| IngestError::Quarantine {
                file: uri.clone(),
                source: boxed(e),
            })?;
        let now = now_ms();
        let row_alerts: Vec<AlertMessage> = report
            .row_alerts
            .iter()
            .map(|alert| AlertMessage::for_row(pipeline, alert, &uri, now))
            .collect();
        self.ports
            .store
            .record(pipeline, &object, &row_alerts)
            .await
            .map_err(|e| IngestError::Store {
                file: uri.clone(),
                source: boxed(e),
            })?;
        let store_error = |e| IngestError::Store {
            file: uri.clone(),
            source: boxed(e),
        };
        let mut outcome: CommitOutcome =
            commit_chunks(&self.ports.store, pipeline, &object, &report)
                .await
                .map_err(store_error)?;
        // Before the file counts as done, so a retry after a crash closes them again.
        self.close_windows(pipeline, &object, &uri, watermark_ms, &report)
            .await?;
        outcome.writes += self
            .ports
            .store
            .finish(
                pipeline,
                &object,
                &report,
                plan_chunks(pipeline, &report).len(),
            )
            .await
            .map_err(store_error)?;
        let alerts = self.publish_alerts(pipeline, &object, &uri).await?;
        self.refresh_feeds(pipeline, &uri).await?;
        let summary = FileSummary {
            file: uri,
            pipeline: Some(pipeline.name().to_owned()),
            status: FileStatus::Committed,
            rows: report.stats.rows,
            bad: report.stats.bad,
            late: report.stats.late,
            cells: report.stats.cells,
            writes: outcome.writes,
            bytes: report.stats.bytes,
            millis: started.elapsed().as_millis() as u64,
            changes: outcome.changes,
        };
        tracing::info!(
            file = %summary.file, pipeline = pipeline.name(), rows = summary.rows, bad = summary.bad,
            late = summary.late, cells = summary.cells, writes = summary.writes, bytes = summary.bytes,
            ms = summary.millis, chunks_already_done = outcome.chunks_already_done, alerts,
            "file committed"
        );
        metrics::publish(&summary);
        Ok(summary)
    }

    /// Checks `on = "close"` rules on the windows this file closes (the watermark passes
    /// their end) and records the alerts they raise. Alert ids are (rule, window), so a
    /// retry or two files closing the same window record it once.
    async fn close_windows(
        &self,
        pipeline: &Pipeline,
        object: &ObjectRef,
        uri: &str,
        watermark_before: Option<i64>,
        report: &FileReport,
    ) -> Result<(), IngestError> {
        let now = now_ms();
        for closing in closing(pipeline, watermark_before, report) {
            let store = &self.ports.store;
            let mut keys = store
                .window_keys_starting_between(
                    pipeline,
                    &closing.aggregate,
                    closing.from_start_ms,
                    closing.to_start_ms,
                )
                .await
                .map_err(store_error(uri))?;
            keys.extend(closing.file_cells);
            keys.sort();
            keys.dedup();
            let Some(aggregate) = pipeline.aggregate(&closing.aggregate) else {
                continue;
            };
            let previous: Vec<CellKey> = keys
                .iter()
                .filter_map(|k| aggregate.previous_key(k))
                .collect();
            keys.extend(previous);
            keys.sort();
            keys.dedup();
            let windows: BTreeMap<CellKey, CellState> = store
                .read_windows(pipeline, &keys)
                .await
                .map_err(store_error(uri))?
                .into_iter()
                .collect();
            let mut alerts = Vec::new();
            for (key, cell) in windows.iter().filter(|(k, _)| {
                (closing.from_start_ms..=closing.to_start_ms).contains(&k.start_ms)
            }) {
                let previous = aggregate.previous_key(key).and_then(|p| windows.get(&p));
                for alert in pipeline.close_alerts(key, cell, previous) {
                    alerts.push(AlertMessage::for_closed_window(pipeline, &alert, uri, now));
                }
            }
            if !alerts.is_empty() {
                tracing::info!(file = %uri, aggregate = %closing.aggregate, alerts = alerts.len(), "closed windows raised alerts");
                store
                    .record(pipeline, object, &alerts)
                    .await
                    .map_err(store_error(uri))?;
            }
        }
        Ok(())
    }

    /// Publishes the file's alerts that are not out yet (each claimed first, so a
    /// concurrent duplicate does not publish it too). Returns how many went out.
    async fn publish_alerts(
        &self,
        pipeline: &Pipeline,
        object: &ObjectRef,
        uri: &str,
    ) -> Result<usize, IngestError> {
        let store_error = |e| IngestError::Store {
            file: uri.to_owned(),
            source: boxed(e),
        };
        let claimed = self
            .ports
            .store
            .claim_unpublished(pipeline, object)
            .await
            .map_err(store_error)?;
        for alert in &claimed {
            self.ports
                .alerts
                .publish(alert)
                .await
                .map_err(|e| IngestError::Alerts {
                    file: uri.to_owned(),
                    source: boxed(e),
                })?;
            tracing::info!(alert = %alert.id, rule = %alert.rule, pipeline = pipeline.name(), "alert published");
            self.ports
                .store
                .mark_published(pipeline, object, alert)
                .await
                .map_err(store_error)?;
        }
        Ok(claimed.len())
    }

    /// Rewrites each aggregate's `latest.json` feed from the stored windows.
    async fn refresh_feeds(&self, pipeline: &Pipeline, uri: &str) -> Result<(), IngestError> {
        let feed_error = |e| IngestError::Feeds {
            file: uri.to_owned(),
            source: e,
        };
        for aggregate in pipeline.aggregates() {
            let windows = self
                .ports
                .store
                .latest_windows(pipeline, aggregate.name(), FEED_WINDOWS)
                .await
                .map_err(|e| feed_error(boxed(e)))?;
            let mut json = Vec::new();
            write_windows(
                aggregate,
                windows.iter().map(|(k, s)| (k, s)),
                OutputFormat::Json,
                &mut json,
            )
            .map_err(|e| feed_error(boxed(e)))?;
            self.ports
                .feeds
                .publish_feed(pipeline, aggregate.name(), json)
                .await
                .map_err(|e| feed_error(boxed(e)))?;
        }
        Ok(())
    }

    async fn run_engine(
        &self,
        pipeline: &Pipeline,
        uri: &str,
        watermark_ms: Option<i64>,
        reader: Box<dyn std::io::Read + Send>,
    ) -> Result<FileReport, IngestError> {
        let catalog = Arc::clone(&self.catalog);
        let name = pipeline.name().to_owned();
        let file = uri.to_owned();
        let joined = tokio::task::spawn_blocking(move || {
            // The pipeline was routed from this same catalog, so it is there.
            let pipeline = catalog.pipeline(&name)?;
            Some(process_file(
                pipeline,
                FileInput {
                    name: &file,
                    watermark_ms,
                },
                reader,
            ))
        })
        .await;
        match joined {
            Ok(Some(Ok(report))) => Ok(report),
            Ok(None) => Err(IngestError::UnknownPipeline(pipeline.name().to_owned())),
            Ok(Some(Err(source))) => Err(IngestError::Engine {
                file: uri.to_owned(),
                source,
            }),
            Err(source) => Err(IngestError::EngineThread {
                file: uri.to_owned(),
                source,
            }),
        }
    }

    /// Handles a whole Lambda invocation payload. For SQS batches the result is an
    /// `SQSBatchResponse` listing the messages to retry; a message that failed on its
    /// last allowed delivery is dead-lettered with its reason and not retried again.
    pub async fn handle(&self, payload: &Value) -> Result<(Value, Vec<FileSummary>), IngestError> {
        match decode_invocation(payload)? {
            Invocation::Direct(objects) => {
                let mut summaries = Vec::new();
                for object in &objects {
                    summaries.push(self.ingest_object(object).await?);
                }
                Ok((serde_json::json!({ "files": summaries }), summaries))
            }
            Invocation::Sqs(messages) => {
                let mut failures = Vec::new();
                let mut summaries = Vec::new();
                for message in &messages {
                    match self.handle_message(message).await {
                        Ok(mut done) => summaries.append(&mut done),
                        Err(()) => failures
                            .push(serde_json::json!({ "itemIdentifier": message.message_id })),
                    }
                }
                Ok((
                    serde_json::json!({ "batchItemFailures": failures }),
                    summaries,
                ))
            }
        }
    }

    /// Processes one queued message; `Err` means "deliver it again".
    async fn handle_message(&self, message: &QueuedMessage) -> Result<Vec<FileSummary>, ()> {
        let objects = match &message.objects {
            Ok(objects) => objects,
            Err(error) => {
                // An undecodable message never gets better: park it at once.
                self.park(message, None, &error.to_string()).await?;
                return Ok(Vec::new());
            }
        };
        let mut summaries = Vec::new();
        for object in objects {
            match self.ingest_object(object).await {
                Ok(summary) => summaries.push(summary),
                Err(error) => {
                    let reason = error.to_string();
                    metrics::publish_failure(&object.uri());
                    if message.receive_count < self.max_attempts {
                        tracing::warn!(file = %object.uri(), attempt = message.receive_count, error = %reason, "file failed; will be retried");
                        return Err(());
                    }
                    if let Some(pipeline) = self.catalog.route(&object.key) {
                        if let Err(e) = self
                            .ports
                            .store
                            .mark_failed(pipeline, object, &reason)
                            .await
                        {
                            tracing::error!(file = %object.uri(), error = %e, "cannot record the failure in the ledger");
                        }
                    }
                    self.park(message, Some(object), &reason).await?;
                }
            }
        }
        Ok(summaries)
    }

    async fn park(
        &self,
        message: &QueuedMessage,
        file: Option<&ObjectRef>,
        reason: &str,
    ) -> Result<(), ()> {
        tracing::error!(message_id = %message.message_id, file = file.map(|f| f.uri()).unwrap_or_default(), reason, "dead-lettering");
        self.ports.dead_letters.dead_letter(&message.body, file, reason).await.map_err(|e| {
            tracing::error!(error = %e, "cannot dead-letter; leaving the message for SQS to redrive");
        })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl std::fmt::Debug for FileSummary {
    /// The figures only: `changes` can hold thousands of window states.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSummary")
            .field("file", &self.file)
            .field("pipeline", &self.pipeline)
            .field("status", &self.status)
            .field("rows", &self.rows)
            .field("bad", &self.bad)
            .field("late", &self.late)
            .field("cells", &self.cells)
            .field("writes", &self.writes)
            .field("changes", &self.changes.len())
            .finish_non_exhaustive()
    }
}

impl FileSummary {
    fn empty(file: String, pipeline: Option<&str>, status: FileStatus) -> Self {
        Self {
            file,
            pipeline: pipeline.map(str::to_owned),
            status,
            rows: 0,
            bad: 0,
            late: 0,
            cells: 0,
            writes: 0,
            bytes: 0,
            millis: 0,
            changes: Vec::new(),
        }
    }
}
