//! SQS adapter: the dead-letter sink that parks a failed delivery with its reason.

use aws_sdk_sqs::types::MessageAttributeValue;
use aws_sdk_sqs::Client;
use aws_smithy_types::error::display::DisplayErrorContext;
use csvflow_core::ports::{DeadLetterSink, ObjectRef};

#[derive(Debug, thiserror::Error)]
#[error("cannot dead-letter to {queue_url}: {}", DisplayErrorContext(source.as_ref()))]
pub struct DeadLetterError {
    queue_url: String,
    #[source]
    source: Box<aws_sdk_sqs::Error>,
}

/// Sends failed deliveries to the dead-letter queue with `reason` and `file` attributes.
#[derive(Clone)]
pub struct SqsDeadLetters {
    client: Client,
    queue_url: String,
}

impl SqsDeadLetters {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, aws_sdk_sqs::error::BuildError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
}

impl DeadLetterSink for SqsDeadLetters {
    type Error = DeadLetterError;

    async fn dead_letter(
        &self,
        body: &str,
        file: Option<&ObjectRef>,
        reason: &str,
    ) -> Result<(), DeadLetterError> {
        let fail = |source: aws_sdk_sqs::Error| DeadLetterError {
            queue_url: self.queue_url.clone(),
            source: Box::new(source),
        };
        // SQS caps attribute values at 256 KiB; reasons are one line, but stay safe.
        let reason: String = reason.chars().take(4_000).collect();
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_attributes(
                "reason",
                string_attribute(&reason).map_err(|e| fail(e.into()))?,
            );
        if let Some(file) = file {
            request = request.message_attributes(
                "file",
                string_attribute(&file.uri()).map_err(|e| fail(e.into()))?,
            );
        }
        request.send().await.map_err(|e| fail(e.into()))?;
        Ok(())
    }
}
