//! Ports: the capabilities a driver of the engine needs from the outside world, one
//! trait each. The engine is pure; `shared/aws` adapts S3, DynamoDB and SQS to them.
//!
//! Data flows: event -> [`ObjectSource`] -> rows -> window partials -> [`WindowStore`]
//! (exactly once, guarded by the file ledger; window alerts land in the same
//! transactions as the windows that crossed a threshold) -> [`AlertOutbox`] ->
//! [`AlertSink`]; latest windows -> [`FeedSink`]; bad rows -> [`QuarantineSink`];
//! files that keep failing -> [`DeadLetterSink`].

use std::future::Future;
use std::io::Read;

use crate::alerting::AlertMessage;
use crate::{BadRow, CellChange, CellKey, CellState, FileReport, Pipeline};

/// Where a file came from, and which immutable version of it this is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub bucket: String,
    /// The decoded key (events carry it URL-encoded; decoders undo that).
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub sequencer: Option<String>,
    pub size: Option<i64>,
}

impl ObjectRef {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
            version_id: None,
            etag: None,
            sequencer: None,
            size: None,
        }
    }

    /// `s3://bucket/key`, the name used in logs and bad rows.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// What makes this upload a distinct file for the ledger: a new version of the same
    /// key is a new file. Prefers the version id, then the eTag (content hash).
    pub fn revision(&self) -> &str {
        self.version_id
            .as_deref()
            .filter(|v| !v.is_empty() && *v != "null")
            .or(self.etag.as_deref().map(|e| e.trim_matches('"')))
            .unwrap_or("-")
    }
}

/// Reads objects as blocking byte streams (the engine runs on a blocking thread).
pub trait ObjectSource {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens the object, filling in its version and eTag when the event lacked them.
    fn open(
        &self,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<(ObjectRef, Box<dyn Read + Send>), Self::Error>> + Send;
}

/// How the ledger saw a file before this attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum FileClaim {
    /// Already fully committed by an earlier delivery: nothing to do.
    Done,
    /// To be processed (first attempt or a retry) against this watermark, which was fixed
    /// by the first attempt so every retry judges late rows identically.
    Process { watermark_ms: Option<i64> },
}

/// What committing one chunk did.
#[derive(Clone, Debug, Default)]
pub struct ChunkOutcome {
    /// Windows this chunk changed (before/after), for window alerts.
    pub changes: Vec<CellChange>,
    /// Write requests sent (windows, absorbed sessions and the ledger item).
    pub writes: u64,
}

/// Durable windowed state plus the per-file ledger that makes commits exactly once.
///
/// A file's partials are committed in deterministic chunks (see [`crate::commit`]);
/// each chunk lands atomically together with its ledger entry, so a retry after a
/// crash, a duplicate delivery or a concurrent duplicate skips what already landed.
pub trait WindowStore {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Looks the file up in the ledger and records the first attempt's watermark.
    fn claim(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
    ) -> impl Future<Output = Result<FileClaim, Self::Error>> + Send;

    /// Indexes of the file's chunks the ledger shows as committed.
    fn committed_chunks(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
    ) -> impl Future<Output = Result<Vec<usize>, Self::Error>> + Send;

    /// Merges one chunk of partials into stored state atomically with its ledger entry
    /// and the window alerts its changes raise (see [`Pipeline::window_alerts`]).
    /// `Ok(None)` means another delivery committed this chunk first.
    fn commit_chunk(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        index: usize,
        cells: &[(&CellKey, &CellState)],
    ) -> impl Future<Output = Result<Option<ChunkOutcome>, Self::Error>> + Send;

    /// After the last chunk: advances the pipeline's watermark and marks the file done.
    /// Returns the writes it made.
    fn finish(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        report: &FileReport,
        chunks: usize,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Records that a file failed for good (after its last retry), with the reason.
    fn mark_failed(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        reason: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The ledger's outbox of alerts: window alerts are written by
/// [`WindowStore::commit_chunk`] atomically with the windows; row alerts through
/// [`AlertOutbox::record`]. Publishing claims each alert (with a lease), publishes it and
/// marks it published, so retries and concurrent duplicates deliver each breach once.
pub trait AlertOutbox {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Records alerts for a file unless already recorded (same id: same breach).
    fn record(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        alerts: &[AlertMessage],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Claims the file's unpublished alerts that no one else holds a lease on.
    fn claim_unpublished(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
    ) -> impl Future<Output = Result<Vec<AlertMessage>, Self::Error>> + Send;

    /// Marks a claimed alert published.
    fn mark_published(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        alert: &AlertMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Delivers alerts to people and systems (SNS, EventBridge).
pub trait AlertSink {
    type Error: std::error::Error + Send + Sync + 'static;

    fn publish(&self, alert: &AlertMessage)
        -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Reads back the most recent windows of an aggregate, for feeds.
pub trait WindowReader {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Up to `limit` windows of the aggregate, latest window starts first.
    fn latest_windows(
        &self,
        pipeline: &Pipeline,
        aggregate: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(CellKey, CellState)>, Self::Error>> + Send;

    /// Keys of an aggregate's stored windows starting in `from_start_ms..=to_start_ms`
    /// (from a time index, which may lag the latest writes a little).
    fn window_keys_starting_between(
        &self,
        pipeline: &Pipeline,
        aggregate: &str,
        from_start_ms: i64,
        to_start_ms: i64,
    ) -> impl Future<Output = Result<Vec<CellKey>, Self::Error>> + Send;

    /// The current state of windows by key (strongly consistent); unknown keys are left out.
    fn read_windows(
        &self,
        pipeline: &Pipeline,
        keys: &[CellKey],
    ) -> impl Future<Output = Result<Vec<(CellKey, CellState)>, Self::Error>> + Send;
}

/// Publishes a JSON snapshot of an aggregate's latest windows for dashboards.
pub trait FeedSink {
    type Error: std::error::Error + Send + Sync + 'static;

    fn publish_feed(
        &self,
        pipeline: &Pipeline,
        aggregate: &str,
        json: Vec<u8>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Keeps bad rows where people can inspect them.
pub trait QuarantineSink {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Stores the file's bad rows; idempotent for the same file.
    fn quarantine(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        rows: &[BadRow],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Parks a delivery that failed for good, with the reason, so nothing vanishes.
pub trait DeadLetterSink {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Sends the original event body on, annotated with why it failed.
    fn dead_letter(
        &self,
        body: &str,
        file: Option<&ObjectRef>,
        reason: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_prefers_version_then_etag() {
        let mut o = ObjectRef::new("b", "k");
        assert_eq!(o.revision(), "-");
        o.etag = Some("\"abc\"".into());
        assert_eq!(o.revision(), "abc");
        o.version_id = Some("null".into());
        assert_eq!(o.revision(), "abc");
        o.version_id = Some("v2".into());
        assert_eq!(o.revision(), "v2");
        assert_eq!(o.uri(), "s3://b/k");
    }
}
