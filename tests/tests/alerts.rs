//! Alerts against LocalStack: a window breach or a matching row reaches the SNS topic
//! exactly once, whatever duplicates and concurrent files happen; nothing is sent below
//! the threshold; and the `latest.json` feed matches the stored windows.

use std::sync::Arc;

use csvflow_aws::s3::S3Feeds;
use csvflow_core::ports::ObjectRef;
use csvflow_core::{write_windows, Catalog, OutputFormat};
use csvflow_integration::{require_localstack, TestStack};

const PIPELINES: &str = r#"
[[pipeline]]
name = "cards"
match = "cards/**"

[pipeline.csv]
header = true

[pipeline.time]
column = "ts"
format = "rfc3339"
allowed_lateness = "1d"

[pipeline.columns]
ts = "timestamp"
card = "string"
amount = "float"
country = "string"
home = "string"

[[pipeline.aggregate]]
name = "per_card_10m"
group_by = ["card"]
window = { tumbling = "10m" }

[pipeline.aggregate.metrics]
n = "count()"
xborder = "count_if(country != home)"

[[pipeline.alert]]
name = "cross_border_burst"
aggregate = "per_card_10m"
when = "xborder >= 3"

[[pipeline.alert]]
name = "very_high_amount"
row = "amount > 5000"
"#;

const HEADER: &str = "ts,card,amount,country,home\n";

fn rows(card: &str, minute: u32, cross_border: usize, domestic: usize) -> String {
    let mut csv = String::new();
    for i in 0..cross_border + domestic {
        let country = if i < cross_border { "BR" } else { "FR" };
        csv.push_str(&format!(
            "2026-11-20T09:{minute:02}:{:02}Z,{card},10.00,{country},FR\n",
            i % 60
        ));
    }
    csv
}

#[tokio::test]
async fn a_breach_alerts_exactly_once_despite_duplicates_and_concurrent_files() -> anyhow::Result<()>
{
    require_localstack().await?;
    let stack = TestStack::create("alert-once").await?;
    let routed = stack.route_rule("cross_border_burst").await?;
    let ingest = Arc::new(stack.ingest(PIPELINES).await?);
    // Card A reaches 3 cross-border rows only when both files are in: 2 + 2.
    // Card B has 2 cross-border rows in all: below the threshold, no alert.
    stack
        .upload(
            "cards/a.csv",
            format!("{HEADER}{}{}", rows("A", 1, 2, 1), rows("B", 1, 1, 3)),
        )
        .await?;
    stack
        .upload(
            "cards/b.csv",
            format!("{HEADER}{}{}", rows("A", 2, 2, 0), rows("B", 2, 1, 0)),
        )
        .await?;
    let (a, b) = (
        ObjectRef::new(&stack.landing_bucket, "cards/a.csv"),
        ObjectRef::new(&stack.landing_bucket, "cards/b.csv"),
    );
    // Two files concurrently, each delivered twice at once.
    let runs: Vec<_> = [&a, &b, &a, &b]
        .into_iter()
        .map(|object| {
            let (ingest, object) = (Arc::clone(&ingest), object.clone());
            tokio::spawn(async move { ingest.ingest_object(&object).await })
        })
        .collect();
    for run in runs {
        run.await??;
    }
    // And once more each, sequentially, after everything settled.
    ingest.ingest_object(&a).await?;
    ingest.ingest_object(&b).await?;

    let alerts = stack.delivered_alerts().await?;
    let bursts: Vec<_> = alerts
        .iter()
        .filter(|a| a["rule"] == "cross_border_burst")
        .collect();
    assert_eq!(
        bursts.len(),
        1,
        "exactly one alert for the breach: {alerts:#?}"
    );
    let burst = bursts[0];
    assert_eq!(burst["key"]["card"], "A");
    assert_eq!(burst["window"]["start"], "2026-11-20T09:00:00Z");
    assert_eq!(burst["window"]["end"], "2026-11-20T09:10:00Z");
    assert!(
        burst["after"]["xborder"].as_i64().is_some_and(|x| x >= 3),
        "{burst}"
    );
    assert!(
        burst["before"]["xborder"].as_i64().is_some_and(|x| x < 3),
        "{burst}"
    );
    assert!(
        burst["files"][0]
            .as_str()
            .is_some_and(|f| f.starts_with("s3://")),
        "{burst}"
    );
    assert!(
        burst["id"].as_str().is_some_and(|id| id.len() == 16),
        "{burst}"
    );
    assert!(
        alerts.iter().all(|a| a["key"]["card"] != "B"),
        "B stayed below the threshold: {alerts:#?}"
    );

    // `csvflow alerts` reads the same alert back from the ledger's index.
    let recorded = stack.store().alerts_since("cards", 0).await?;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].id, burst["id"].as_str().unwrap_or_default());

    // The same alert, once, on EventBridge, where a rule on `detail.rule` routed it.
    let events = stack.drain_json(&routed).await?;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["source"], "csvflow");
    assert_eq!(events[0]["detail-type"], "csvflow alert");
    assert_eq!(events[0]["detail"], *burst);
    Ok(())
}

#[tokio::test]
async fn row_alerts_fire_once_per_row_and_carry_the_row_as_data() -> anyhow::Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("row-alerts").await?;
    let (routed_rows, routed_bursts) = (
        stack.route_rule("very_high_amount").await?,
        stack.route_rule("cross_border_burst").await?,
    );
    let ingest = stack.ingest(PIPELINES).await?;
    let body = format!(
        "{HEADER}2026-11-20T09:00:00Z,<script>alert(1)</script>,7250.00,FR,FR\n\
         2026-11-20T09:00:01Z,C,4999.99,FR,FR\n\
         2026-11-20T09:00:02Z,C,5000.01,FR,FR\n"
    );
    stack.upload("cards/big.csv", body).await?;
    let object = ObjectRef::new(&stack.landing_bucket, "cards/big.csv");
    for _ in 0..3 {
        ingest.ingest_object(&object).await?;
    }
    let alerts = stack.delivered_alerts().await?;
    let mut lines: Vec<i64> = alerts
        .iter()
        .filter(|a| a["rule"] == "very_high_amount")
        .filter_map(|a| a["line"].as_i64())
        .collect();
    lines.sort();
    assert_eq!(lines, vec![2, 4], "{alerts:#?}");
    // EventBridge routes by rule: the row alerts reach their rule's queue only.
    let mut routed: Vec<i64> = stack
        .drain_json(&routed_rows)
        .await?
        .iter()
        .filter_map(|e| e["detail"]["line"].as_i64())
        .collect();
    routed.sort();
    assert_eq!(routed, vec![2, 4]);
    assert!(stack.drain_json(&routed_bursts).await?.is_empty());
    let first = alerts
        .iter()
        .find(|a| a["line"] == 2)
        .expect("line 2 alerted");
    assert_eq!(
        first["row"]["card"], "<script>alert(1)</script>",
        "CSV values travel as plain data"
    );
    assert_eq!(first["kind"], "row");
    assert_eq!(first["event_time"], "2026-11-20T09:00:00Z");
    Ok(())
}

#[tokio::test]
async fn the_latest_feed_matches_the_stored_windows() -> anyhow::Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("feeds").await?;
    let ingest = stack.ingest(PIPELINES).await?;
    stack
        .upload(
            "cards/f.csv",
            format!("{HEADER}{}{}", rows("A", 1, 1, 2), rows("B", 15, 0, 4)),
        )
        .await?;
    ingest
        .ingest_object(&ObjectRef::new(&stack.landing_bucket, "cards/f.csv"))
        .await?;
    let feed = stack
        .s3
        .get_object()
        .bucket(&stack.output_bucket)
        .key(S3Feeds::key_for("cards", "per_card_10m"))
        .send()
        .await?;
    let feed: serde_json::Value = serde_json::from_slice(&feed.body.collect().await?.into_bytes())?;
    let catalog = Catalog::from_toml(PIPELINES)?;
    let aggregate = catalog
        .pipeline("cards")
        .and_then(|p| p.aggregate("per_card_10m"))
        .expect("aggregate");
    let cells = stack.windows("cards", "per_card_10m").await?;
    let mut expected = Vec::new();
    write_windows(
        aggregate,
        cells.iter().map(|(k, s)| (k, s)),
        OutputFormat::Json,
        &mut expected,
    )?;
    let expected: serde_json::Value = serde_json::from_slice(&expected)?;
    assert_eq!(feed, expected);
    assert_eq!(feed.as_array().map(Vec::len), Some(2));
    Ok(())
}
