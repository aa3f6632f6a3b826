//! Window rules that need stored history, against LocalStack: a rule on the previous
//! window (`prev.`), a cool-down that holds across files, and `on = "close"` rules checked
//! when the watermark passes a window's end — each alert delivered once, duplicates too.

use csvflow_core::ports::ObjectRef;
use csvflow_integration::{require_localstack, TestStack};

const PIPELINES: &str = r#"
[[pipeline]]
name = "sensors"
match = "sensors/**"

[pipeline.time]
column = "ts"
allowed_lateness = "1m"

[pipeline.columns]
ts = "timestamp"
device = "string"
temp = "float"
kind = "string"

[[pipeline.aggregate]]
name = "per_minute"
group_by = ["device"]
window = { tumbling = "1m" }

[pipeline.aggregate.metrics]
avg_temp = "avg(temp)"
doses = "count_if(kind == 'dose')"

[[pipeline.alert]]
name = "drift"
aggregate = "per_minute"
when = "prev.avg_temp != null && avg_temp > prev.avg_temp * 1.2"
cooldown = "3m"

[[pipeline.alert]]
name = "missed_dose"
aggregate = "per_minute"
when = "doses == 0"
on = "close"
"#;

fn row(minute: u32, temp: u32, kind: &str) -> String {
    format!("2026-11-20T09:{minute:02}:10Z,d1,{temp},{kind}\n")
}

/// Rule name -> sorted window-start minutes of the delivered alerts.
fn minutes(alerts: &[serde_json::Value], rule: &str) -> Vec<u32> {
    let mut m: Vec<u32> = alerts
        .iter()
        .filter(|a| a["rule"] == rule)
        .filter_map(|a| a["window"]["start"].as_str()?.get(14..16)?.parse().ok())
        .collect();
    m.sort_unstable();
    m
}

#[tokio::test]
async fn previous_window_cooldown_and_close_rules_alert_once() -> anyhow::Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("rules-history").await?;
    let ingest = stack.ingest(PIPELINES).await?;
    // Minute averages 50, 70, 50, 70, 50, 70, 50: rises of 40% in minutes 1, 3 and 5.
    // Minute 3 is within the 3-minute cool-down of minute 1's alert; minute 5 is not.
    // Doses only in minutes 0 and 2.
    let mut first = String::from("ts,device,temp,kind\n");
    for (m, t) in [50, 70, 50, 70, 50, 70, 50].into_iter().enumerate() {
        first += &row(m as u32, t, "");
    }
    first += &row(0, 50, "dose");
    first += &row(2, 50, "dose");
    // The second file: minute 7 rises 100% on minute 6, but minute 5 alerted 2 minutes
    // before (the cool-down is read back from DynamoDB); minute 9 moves the watermark.
    let second = format!("ts,device,temp,kind\n{}{}", row(7, 100, ""), row(9, 50, ""));

    stack
        .ingest_in_order(
            &ingest,
            &[
                ("sensors/1.csv", first.as_bytes()),
                ("sensors/2.csv", second.as_bytes()),
            ],
        )
        .await?;
    // A duplicate delivery of both files changes nothing.
    for key in ["sensors/1.csv", "sensors/2.csv"] {
        ingest
            .ingest_object(&ObjectRef::new(&stack.landing_bucket, key))
            .await?;
    }

    let alerts = stack.delivered_alerts().await?;
    assert_eq!(minutes(&alerts, "drift"), [1, 5], "{alerts:#?}");
    let drift = alerts.iter().find(|a| a["rule"] == "drift").unwrap();
    assert_eq!(drift["after"]["avg_temp"], 70.0, "{drift}");
    // The watermark after file 1 is 09:06:10 - 1m: windows 0..=4 closed; file 2 moves it
    // to 09:08:10: windows 5..=7 closed (7 from file 2 itself). Dose-less: 1, 3..=7.
    assert_eq!(
        minutes(&alerts, "missed_dose"),
        [1, 3, 4, 5, 6, 7],
        "{alerts:#?}"
    );
    let missed = alerts.iter().find(|a| a["rule"] == "missed_dose").unwrap();
    assert_eq!(missed["event_time"], missed["window"]["end"], "{missed}");
    assert_eq!(alerts.len(), 8, "nothing else, no duplicates: {alerts:#?}");
    Ok(())
}
