//! Alert delivery: each alert goes to the SNS topic (JSON body, `pipeline`/`rule`/`kind`
//! message attributes for subscription filters) and, when configured, to an EventBridge
//! bus (source `csvflow`, detail-type `csvflow alert`) so users can route by rule.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_sns::types::MessageAttributeValue;
use aws_smithy_types::error::display::DisplayErrorContext;
use csvflow_core::alerting::AlertMessage;
use csvflow_core::ports::AlertSink;

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("cannot publish alert {id} to SNS {topic}: {}", DisplayErrorContext(source.as_ref()))]
    Sns {
        id: String,
        topic: String,
        #[source]
        source: Box<aws_sdk_sns::Error>,
    },
    #[error("cannot put alert {id} on EventBridge bus {bus}: {reason}")]
    EventBridge {
        id: String,
        bus: String,
        reason: String,
    },
    #[error("cannot encode alert {id}: {source}")]
    Encode {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Publishes alerts to SNS and optionally EventBridge.
#[derive(Clone)]
pub struct SnsAlerts {
    sns: aws_sdk_sns::Client,
    topic_arn: String,
    events: Option<(aws_sdk_eventbridge::Client, String)>,
}

impl SnsAlerts {
    pub fn new(sns: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> Self {
        Self {
            sns,
            topic_arn: topic_arn.into(),
            events: None,
        }
    }

    /// Also put every alert on this EventBridge bus.
    pub fn with_event_bus(
        mut self,
        client: aws_sdk_eventbridge::Client,
        bus: impl Into<String>,
    ) -> Self {
        self.events = Some((client, bus.into()));
        self
    }
}

fn attribute(value: &str) -> Result<MessageAttributeValue, aws_sdk_sns::error::BuildError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
}

impl AlertSink for SnsAlerts {
    type Error = AlertError;

    async fn publish(&self, alert: &AlertMessage) -> Result<(), AlertError> {
        let body = serde_json::to_string(alert).map_err(|source| AlertError::Encode {
            id: alert.id.clone(),
            source,
        })?;
        let sns_error = |source: aws_sdk_sns::Error| AlertError::Sns {
            id: alert.id.clone(),
            topic: self.topic_arn.clone(),
            source: Box::new(source),
        };
        let kind = match alert.kind {
            csvflow_core::alerting::AlertKind::Window => "window",
            csvflow_core::alerting::AlertKind::Row => "row",
        };
        self.sns
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(
                format!("csvflow alert: {} / {}", alert.pipeline, alert.rule)
                    .chars()
                    .take(100)
                    .collect::<String>(),
            )
            .message(&body)
            .message_attributes(
                "pipeline",
                attribute(&alert.pipeline).map_err(|e| sns_error(e.into()))?,
            )
            .message_attributes(
                "rule",
                attribute(&alert.rule).map_err(|e| sns_error(e.into()))?,
            )
            .message_attributes("kind", attribute(kind).map_err(|e| sns_error(e.into()))?)
            .message_attributes(
                "alert_id",
                attribute(&alert.id).map_err(|e| sns_error(e.into()))?,
            )
            .send()
            .await
            .map_err(|e| sns_error(e.into()))?;
        if let Some((client, bus)) = &self.events {
            let failed = |reason: String| AlertError::EventBridge {
                id: alert.id.clone(),
                bus: bus.clone(),
                reason,
            };
            let entry = PutEventsRequestEntry::builder()
                .event_bus_name(bus)
                .source("csvflow")
                .detail_type("csvflow alert")
                .detail(&body)
                .build();
            let out = client
                .put_events()
                .entries(entry)
                .send()
                .await
                .map_err(|e| {
                    failed(DisplayErrorContext(aws_sdk_eventbridge::Error::from(e)).to_string())
                })?;
            if out.failed_entry_count() > 0 {
                let reason = out
                    .entries()
                    .iter()
                    .filter_map(|e| e.error_message())
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(failed(reason));
            }
        }
        Ok(())
    }
}
