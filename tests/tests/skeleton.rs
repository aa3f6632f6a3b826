//! The walking skeleton against LocalStack: a CSV dropped in the landing bucket goes
//! through the real S3 -> SQS notification, the local runner and the ingest handler,
//! and its row counts per 1-minute window land in DynamoDB.

use std::time::Duration;

use csvflow_integration::{counts, require_localstack, TestStack};
use serde_json::json;

const PIPELINES: &str = r#"
[[pipeline]]
name = "events"
match = "events/**"

[pipeline.csv]
header = true

[pipeline.time]
column = "ts"
format = "rfc3339"
allowed_lateness = "1h"

[pipeline.columns]
ts = "timestamp"
kind = "string"

[[pipeline.aggregate]]
name = "per_minute"
group_by = []
window = { tumbling = "1m" }

[pipeline.aggregate.metrics]
n = "count()"
"#;

const CSV: &str = "ts,kind\n\
2026-11-20T00:00:05Z,a\n\
2026-11-20T00:00:59Z,b\n\
2026-11-20T00:01:00Z,a\n\
2026-11-20T00:02:30Z,c\n\
2026-11-20T00:02:31Z,c\n\
2026-11-20T00:02:59.999Z,c\n";

const MINUTE_0: i64 = 1_795_132_800_000; // 2026-11-20T00:00:00Z

fn expected() -> Vec<(Vec<String>, i64, i64)> {
    vec![
        (vec![], MINUTE_0, 2),
        (vec![], MINUTE_0 + 60_000, 1),
        (vec![], MINUTE_0 + 120_000, 3),
    ]
}

#[tokio::test]
async fn uploaded_csv_is_counted_per_minute_in_dynamodb() -> anyhow::Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("upload-counted").await?;
    let ingest = stack.ingest(PIPELINES).await?;
    stack.upload("events/day1.csv", CSV).await?;
    let files = stack.drain(&ingest, Duration::from_secs(3)).await?;
    assert_eq!(files.len(), 1, "one file handled: {files:?}");
    assert_eq!(files[0].rows, 6);
    assert_eq!(files[0].cells, 3);
    // One write per window cell, one ledger entry for the single chunk, the watermark
    // and the file record: writes scale with cells, never with rows.
    assert_eq!(files[0].writes, files[0].cells + 3);
    assert_eq!(
        counts(&stack.windows("events", "per_minute").await?),
        expected()
    );
    Ok(())
}

#[tokio::test]
async fn keys_with_spaces_plus_and_unicode_are_decoded() -> anyhow::Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("odd-keys").await?;
    let ingest = stack.ingest(PIPELINES).await?;
    let key = "events/my file+v1 (copy) é€ 東京.csv";
    stack.upload(key, CSV).await?;
    let files = stack.drain(&ingest, Duration::from_secs(3)).await?;
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        files[0].file,
        format!("s3://{}/{key}", stack.landing_bucket)
    );
    assert_eq!(
        counts(&stack.windows("events", "per_minute").await?),
        expected()
    );
    assert!(stack.dead_letters().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn s3_test_event_is_ignored_without_error() -> anyhow::Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("test-event").await?;
    let ingest = stack.ingest(PIPELINES).await?;
    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-20T00:00:00.000Z",
        "Bucket": stack.landing_bucket, "RequestId": "1", "HostId": "h"});
    stack
        .sqs
        .send_message()
        .queue_url(&stack.queue_url)
        .message_body(test_event.to_string())
        .send()
        .await?;
    let files = stack.drain(&ingest, Duration::from_secs(3)).await?;
    assert!(files.is_empty(), "{files:?}");
    assert!(
        stack.dead_letters().await?.is_empty(),
        "a test event is not a failure"
    );
    let left = stack
        .sqs
        .receive_message()
        .queue_url(&stack.queue_url)
        .wait_time_seconds(1)
        .send()
        .await?;
    assert!(left.messages().is_empty(), "the test event was consumed");
    assert!(stack.windows("events", "per_minute").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn sqs_wrapped_and_direct_s3_events_are_both_handled() -> anyhow::Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("wrapped").await?;
    let ingest = stack.ingest(PIPELINES).await?;
    stack.upload("events/a b.csv", CSV).await?;
    // Consume the real notification by hand, then hand it to the handler as an SQS
    // event (what Lambda's event source mapping sends) ...
    let mut body = None;
    for _ in 0..10 {
        let received = stack
            .sqs
            .receive_message()
            .queue_url(&stack.queue_url)
            .wait_time_seconds(1)
            .max_number_of_messages(10)
            .send()
            .await?;
        body = received
            .messages()
            .iter()
            .filter_map(|m| m.body())
            .find(|b| b.contains("ObjectCreated"))
            .map(str::to_owned);
        if body.is_some() {
            break;
        }
    }
    let body = body.expect("LocalStack delivered the S3 notification");
    let sqs_event = json!({"Records": [{"messageId": "m-1", "receiptHandle": "r", "body": body,
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q", "awsRegion": "us-east-1"}]});
    let (response, files) = ingest.handle(&sqs_event).await?;
    assert_eq!(response, json!({"batchItemFailures": []}));
    assert_eq!(files.len(), 1);
    // ... and the same notification delivered directly (S3 -> Lambda) is a duplicate.
    let direct: serde_json::Value = serde_json::from_str(&body)?;
    let (_, again) = ingest.handle(&direct).await?;
    assert_eq!(again[0].status, csvflow_aws::ingest::FileStatus::Duplicate);
    assert_eq!(
        counts(&stack.windows("events", "per_minute").await?),
        expected()
    );
    Ok(())
}
