//! Decodes what invokes the ingest function into the objects to process: an S3 event,
//! an SQS batch whose bodies wrap S3 (or SNS-wrapped S3, or EventBridge) events, or an
//! EventBridge "Object Created" event. `s3:TestEvent` and non-create events are ignored.
//! Object keys arrive URL-encoded ('+' is a space) and are decoded here.

use aws_lambda_events::event::s3::S3Event;
use aws_lambda_events::event::sqs::SqsEvent;
use csvflow_core::ports::ObjectRef;
use serde::Deserialize;
use serde_json::Value;

/// An invocation, as the ingest handler sees it.
#[derive(Debug)]
pub enum Invocation {
    /// Direct S3 or EventBridge delivery: a failure fails the whole invocation.
    Direct(Vec<ObjectRef>),
    /// An SQS batch: failures are reported per message (`ReportBatchItemFailures`).
    Sqs(Vec<QueuedMessage>),
}

/// One SQS message of a batch and the objects it announces.
#[derive(Debug)]
pub struct QueuedMessage {
    pub message_id: String,
    /// How many times SQS has delivered this message (1 on the first delivery).
    pub receive_count: u32,
    /// The raw body, kept so a failed message can be dead-lettered as it came.
    pub body: String,
    pub objects: Result<Vec<ObjectRef>, EventError>,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum EventError {
    #[error("unrecognised event: {0}")]
    Unrecognised(String),
    #[error("malformed {kind} event: {reason}")]
    Malformed { kind: &'static str, reason: String },
}

/// Decodes any supported invocation payload.
pub fn decode_invocation(payload: &Value) -> Result<Invocation, EventError> {
    if is_sqs_batch(payload) {
        let batch: SqsEvent =
            serde_json::from_value(payload.clone()).map_err(|e| EventError::Malformed {
                kind: "SQS",
                reason: e.to_string(),
            })?;
        let messages = batch
            .records
            .into_iter()
            .map(|message| {
                let body = message.body.unwrap_or_default();
                QueuedMessage {
                    message_id: message.message_id.unwrap_or_default(),
                    receive_count: message
                        .attributes
                        .get("ApproximateReceiveCount")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(1),
                    objects: decode_body(&body),
                    body,
                }
            })
            .collect();
        return Ok(Invocation::Sqs(messages));
    }
    decode_objects(payload).map(Invocation::Direct)
}

/// Decodes one SQS message body: S3 notification JSON, an SNS envelope around one, or
/// an EventBridge event.
pub fn decode_body(body: &str) -> Result<Vec<ObjectRef>, EventError> {
    let value: Value = serde_json::from_str(body).map_err(|e| EventError::Malformed {
        kind: "SQS message body",
        reason: e.to_string(),
    })?;
    // SNS -> SQS without raw delivery wraps the notification in `Message`.
    if value.get("Type").and_then(Value::as_str) == Some("Notification") {
        if let Some(inner) = value.get("Message").and_then(Value::as_str) {
            return decode_body(inner);
        }
    }
    decode_objects(&value)
}

/// Decodes an S3 notification or an EventBridge event into created objects.
pub fn decode_objects(value: &Value) -> Result<Vec<ObjectRef>, EventError> {
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    if value.get("Records").is_some() {
        return decode_s3_notification(value);
    }
    if value.get("detail-type").is_some() {
        return decode_eventbridge(value);
    }
    Err(EventError::Unrecognised(summarise(value)))
}

fn is_sqs_batch(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|records| records.first())
        .and_then(|first| first.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

fn decode_s3_notification(value: &Value) -> Result<Vec<ObjectRef>, EventError> {
    let event: S3Event =
        serde_json::from_value(value.clone()).map_err(|e| EventError::Malformed {
            kind: "S3",
            reason: e.to_string(),
        })?;
    let mut objects = Vec::new();
    for record in event.records {
        let created = record.event_name.as_deref().is_some_and(|name| {
            name.starts_with("ObjectCreated") || name.starts_with("s3:ObjectCreated")
        });
        if !created {
            continue;
        }
        let (Some(bucket), Some(key)) = (record.s3.bucket.name, record.s3.object.key) else {
            return Err(EventError::Malformed {
                kind: "S3",
                reason: "record without bucket name or object key".into(),
            });
        };
        objects.push(ObjectRef {
            bucket,
            key: decode_key(&key)?,
            version_id: record.s3.object.version_id.filter(|v| !v.is_empty()),
            etag: record.s3.object.e_tag.filter(|v| !v.is_empty()),
            sequencer: record.s3.object.sequencer.filter(|v| !v.is_empty()),
            size: record.s3.object.size,
        });
    }
    Ok(objects)
}

/// The `detail` of an EventBridge "Object Created" event from S3.
#[derive(Deserialize)]
struct ObjectCreatedDetail {
    bucket: NamedBucket,
    object: CreatedObject,
}

#[derive(Deserialize)]
struct NamedBucket {
    name: String,
}

#[derive(Deserialize)]
struct CreatedObject {
    key: String,
    size: Option<i64>,
    etag: Option<String>,
    #[serde(rename = "version-id")]
    version_id: Option<String>,
    sequencer: Option<String>,
}

fn decode_eventbridge(value: &Value) -> Result<Vec<ObjectRef>, EventError> {
    let detail_type = value.get("detail-type").and_then(Value::as_str);
    let source = value.get("source").and_then(Value::as_str);
    if source != Some("aws.s3") || detail_type != Some("Object Created") {
        return Ok(Vec::new());
    }
    let detail: ObjectCreatedDetail = value
        .get("detail")
        .cloned()
        .ok_or_else(|| EventError::Malformed {
            kind: "EventBridge",
            reason: "no detail".into(),
        })
        .and_then(|d| {
            serde_json::from_value(d).map_err(|e| EventError::Malformed {
                kind: "EventBridge",
                reason: e.to_string(),
            })
        })?;
    Ok(vec![ObjectRef {
        bucket: detail.bucket.name,
        key: decode_key(&detail.object.key)?,
        version_id: detail.object.version_id,
        etag: detail.object.etag,
        sequencer: detail.object.sequencer,
        size: detail.object.size,
    }])
}

/// Undoes S3's form-style key encoding: '+' is a space, `%XX` is a byte, and the bytes
/// are UTF-8.
pub fn decode_key(encoded: &str) -> Result<String, EventError> {
    let plus_as_space = encoded.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|e| EventError::Malformed {
            kind: "S3",
            reason: format!("object key {encoded:?} is not UTF-8 once decoded: {e}"),
        })
}

fn summarise(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s3_event(key: &str) -> Value {
        json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-11-20T00:00:00.000Z", "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "AWS:X"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "1"},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "c",
                "bucket": {"name": "landing", "arn": "arn:aws:s3:::landing"},
                "object": {"key": key, "size": 10, "eTag": "abc", "versionId": "v1", "sequencer": "0A"}}
        }]})
    }

    #[test]
    fn decodes_s3_keys_with_spaces_plus_and_unicode() {
        let objects = decode_objects(&s3_event("transactions/a+b%2Bc%C3%A9%E2%82%AC.csv")).unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].bucket, "landing");
        assert_eq!(objects[0].key, "transactions/a b+cé€.csv");
        assert_eq!(objects[0].version_id.as_deref(), Some("v1"));
        assert_eq!(objects[0].sequencer.as_deref(), Some("0A"));
    }

    #[test]
    fn ignores_test_event_and_non_create_events() {
        let test_event =
            json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "landing"});
        assert!(decode_objects(&test_event).unwrap().is_empty());
        let mut removed = s3_event("k.csv");
        removed["Records"][0]["eventName"] = json!("ObjectRemoved:Delete");
        assert!(decode_objects(&removed).unwrap().is_empty());
    }

    #[test]
    fn decodes_sqs_wrapped_events_per_message() {
        let batch = json!({"Records": [
            {"messageId": "m1", "receiptHandle": "r", "body": s3_event("x.csv").to_string(),
             "attributes": {"ApproximateReceiveCount": "2"}, "messageAttributes": {},
             "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:0:q", "awsRegion": "us-east-1"},
            {"messageId": "m2", "receiptHandle": "r", "body": "{\"Event\":\"s3:TestEvent\"}",
             "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs"},
            {"messageId": "m3", "receiptHandle": "r", "body": "not json",
             "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs"}
        ]});
        let Invocation::Sqs(messages) = decode_invocation(&batch).unwrap() else {
            panic!("expected an SQS batch")
        };
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].message_id, "m1");
        assert_eq!(messages[0].receive_count, 2);
        assert_eq!(messages[0].objects.as_ref().unwrap()[0].key, "x.csv");
        assert!(messages[1].objects.as_ref().unwrap().is_empty());
        assert!(matches!(
            messages[2].objects,
            Err(EventError::Malformed { .. })
        ));
    }

    #[test]
    fn decodes_sns_envelope_inside_sqs_body() {
        let envelope =
            json!({"Type": "Notification", "Message": s3_event("a%20b.csv").to_string()});
        let objects = decode_body(&envelope.to_string()).unwrap();
        assert_eq!(objects[0].key, "a b.csv");
    }

    #[test]
    fn decodes_eventbridge_object_created() {
        let event = json!({
            "version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3",
            "account": "0", "time": "2026-11-20T00:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {"version": "0", "bucket": {"name": "landing"},
                "object": {"key": "iot/dev+1.csv", "size": 5, "etag": "e", "version-id": "v9", "sequencer": "01"},
                "request-id": "r", "requester": "me", "reason": "PutObject"}
        });
        let Invocation::Direct(objects) = decode_invocation(&event).unwrap() else {
            panic!("expected a direct invocation")
        };
        assert_eq!(objects[0].key, "iot/dev 1.csv");
        assert_eq!(objects[0].version_id.as_deref(), Some("v9"));
    }

    #[test]
    fn rejects_unknown_payloads_and_bad_keys() {
        assert!(matches!(
            decode_invocation(&json!({"hello": 1})),
            Err(EventError::Unrecognised(_))
        ));
        assert!(decode_key("%FF").is_err());
    }
}
