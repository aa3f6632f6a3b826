//! The local stand-in for Lambda's SQS event source mapping: long-polls the ingest
//! queue LocalStack's S3 notifications land in, hands each batch to the ingest service
//! exactly as Lambda would (an SQS event), deletes what succeeded and makes the rest
//! visible again after a short backoff, so SQS's redrive policy still applies.

use aws_smithy_types::error::display::DisplayErrorContext;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use aws_sdk_sqs::Client;
use serde_json::{json, Value};

use crate::ingest::{BatchHandler, FileSummary, IngestError};

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("SQS {operation} on {queue_url} failed: {}", DisplayErrorContext(source.as_ref()))]
    Sqs {
        operation: &'static str,
        queue_url: String,
        #[source]
        source: Box<aws_sdk_sqs::Error>,
    },
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// Polls one queue and feeds an ingest service.
pub struct QueueRunner<'a, H> {
    sqs: Client,
    queue_url: String,
    ingest: &'a H,
    /// Seconds a failed message stays invisible before its next delivery.
    retry_after_secs: i32,
}

impl<'a, H: BatchHandler> QueueRunner<'a, H> {
    pub fn new(sqs: Client, queue_url: impl Into<String>, ingest: &'a H) -> Self {
        Self {
            sqs,
            queue_url: queue_url.into(),
            ingest,
            retry_after_secs: 1,
        }
    }

    fn sqs_error<E: Into<aws_sdk_sqs::Error>>(
        &self,
        operation: &'static str,
    ) -> impl FnOnce(E) -> RunnerError + '_ {
        move |e| RunnerError::Sqs {
            operation,
            queue_url: self.queue_url.clone(),
            source: Box::new(e.into()),
        }
    }

    /// Receives and handles one batch (waiting up to `wait` for it). Returns the files
    /// handled, or `None` when the queue stayed empty.
    pub async fn poll_once(&self, wait: Duration) -> Result<Option<Vec<FileSummary>>, RunnerError> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(self.sqs_error("ReceiveMessage"))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(None);
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: serde_json::Map<String, Value> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body().unwrap_or_default(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_url,
                })
            })
            .collect();
        let (response, summaries) = self.ingest.handle(&json!({ "Records": records })).await?;
        let failed: Vec<&str> = response["batchItemFailures"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|i| i["itemIdentifier"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let mut done = Vec::new();
        for message in &messages {
            let (Some(id), Some(handle)) = (message.message_id(), message.receipt_handle()) else {
                continue;
            };
            if failed.contains(&id) {
                self.sqs
                    .change_message_visibility()
                    .queue_url(&self.queue_url)
                    .receipt_handle(handle)
                    .visibility_timeout(self.retry_after_secs)
                    .send()
                    .await
                    .map_err(self.sqs_error("ChangeMessageVisibility"))?;
            } else {
                done.push(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(id)
                        .receipt_handle(handle)
                        .build()
                        .map_err(|e| {
                            self.sqs_error("DeleteMessageBatch")(aws_sdk_sqs::Error::from(e))
                        })?,
                );
            }
        }
        if !done.is_empty() {
            self.sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(done))
                .send()
                .await
                .map_err(self.sqs_error("DeleteMessageBatch"))?;
        }
        Ok(Some(summaries))
    }

    /// Runs until the queue has been empty for `idle` (forever when `idle` is `None`),
    /// calling `on_file` for every file handled.
    pub async fn run(
        &self,
        idle: Option<Duration>,
        on_file: impl FnMut(&FileSummary),
    ) -> Result<(), RunnerError> {
        self.run_until(idle, &AtomicBool::new(false), on_file).await
    }

    /// [`run`](Self::run), that also returns once `stop` is set, between two polls: the
    /// receive in flight and the files it brought are always finished. (A long poll
    /// abandoned mid-way is still served: SQS hands the next message to it and hides it for
    /// the queue's visibility timeout.)
    pub async fn run_until(
        &self,
        idle: Option<Duration>,
        stop: &AtomicBool,
        mut on_file: impl FnMut(&FileSummary),
    ) -> Result<(), RunnerError> {
        let mut last_activity = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let wait = idle.map_or(Duration::from_secs(10), |i| i.min(Duration::from_secs(2)));
            match self.poll_once(wait).await {
                Ok(Some(summaries)) => {
                    last_activity = Instant::now();
                    summaries.iter().for_each(&mut on_file);
                }
                Ok(None) => {
                    if idle.is_some_and(|i| last_activity.elapsed() >= i) {
                        return Ok(());
                    }
                }
                Err(RunnerError::Sqs { .. }) if idle.is_none() => {
                    // A long-running runner rides out LocalStack restarts.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
