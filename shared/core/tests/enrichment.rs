//! Tests of what the use cases need beyond plain metrics: per-row derived columns with
//! lookup tables, scoring models and sentiment; derived window values; rules on the
//! previous window; close rules; cool-down and trigger validation.

use std::collections::HashMap;

use csvflow_core::closing::{closing, watermark_after};
use csvflow_core::resources::sentiment;
use csvflow_core::*;

/// 2026-11-20T00:00:00Z
const T0: i64 = 1_795_132_800_000;
const MIN: i64 = 60_000;

fn files() -> HashMap<String, Vec<u8>> {
    HashMap::from([
        (
            "lookups/zones.csv".to_string(),
            b"zone_id,name,borough\nZ01,Downtown,Central\nZ02,Airport,East\n".to_vec(),
        ),
        (
            "models/fraud.json".to_string(),
            br#"{"kind":"logistic_regression","features":["amount_k","foreign"],"intercept":-3.0,"coefficients":[1.5,2.0]}"#.to_vec(),
        ),
    ])
}

fn catalog(text: &str) -> Catalog {
    Catalog::from_toml_with(text, &files()).unwrap_or_else(|e| panic!("{e}"))
}

fn process(p: &Pipeline, data: &str, watermark_ms: Option<i64>) -> FileReport {
    process_file(
        p,
        FileInput {
            name: "f.csv",
            watermark_ms,
        },
        data.as_bytes(),
    )
    .unwrap()
}

fn csv_out(p: &Pipeline, agg: &str, r: &FileReport) -> String {
    let mut out = Vec::new();
    write_windows(
        p.aggregate(agg).unwrap(),
        &r.cells,
        OutputFormat::Csv,
        &mut out,
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

fn ts(min: i64) -> String {
    csvflow_core::types::format_ts(T0 + min * MIN)
}

const RIDES: &str = r#"
[[pipeline]]
name = "rides"
[pipeline.time]
column = "ts"
[pipeline.columns]
ts = "timestamp"
event = "string"
zone_id = "string"
driver_id = "string"
[pipeline.lookup.zones]
file = "lookups/zones.csv"
key = "zone_id"
[pipeline.derive]
zone = "lookup('zones', zone_id, 'name')"
[[pipeline.aggregate]]
name = "demand"
group_by = ["zone_id", "zone"]
window = { tumbling = "5m" }
[pipeline.aggregate.metrics]
requests = "count_if(event == 'request')"
drivers = "distinct(event == 'driver' ? driver_id : null)"
[pipeline.aggregate.derived]
ratio = "double(requests) / max(double(drivers), 1.0)"
surge = "clamp(ratio, 1.0, 3.0)"
[[pipeline.alert]]
name = "surge"
aggregate = "demand"
when = "surge >= 2.5"
"#;

#[test]
fn lookup_enriches_rows_and_derived_values_follow_metrics() {
    let cat = catalog(RIDES);
    let p = cat.pipeline("rides").unwrap();
    let mut data = "ts,event,zone_id,driver_id\n".to_string();
    for i in 0..7 {
        data += &format!("{},request,Z01,\n", ts(i % 4));
    }
    data += &format!("{},driver,Z01,d1\n", ts(1));
    data += &format!("{},driver,Z01,d2\n", ts(2));
    data += &format!("{},driver,Z01,d2\n", ts(3));
    data += &format!("{},request,Z02,\n", ts(1));
    data += &format!("{},request,Z99,\n", ts(1));
    let r = process(p, &data, None);
    assert_eq!(r.stats.bad, 0);
    assert_eq!(
        csv_out(p, "demand", &r),
        "zone_id,zone,window_start,window_end,requests,drivers,ratio,surge\n\
         Z01,Downtown,2026-11-20T00:00:00Z,2026-11-20T00:05:00Z,7,2,3.5,3\n\
         Z02,Airport,2026-11-20T00:00:00Z,2026-11-20T00:05:00Z,1,0,1,1\n\
         Z99,,2026-11-20T00:00:00Z,2026-11-20T00:05:00Z,1,0,1,1\n"
    );
    // Rules see derived values.
    let mut state = WindowState::new();
    let changes = state.apply(p, &r);
    let fired: Vec<_> = changes
        .iter()
        .flat_map(|c| p.window_alerts(c, None))
        .collect();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].key.group, ["Z01", "Downtown"]);
    assert_eq!(
        fired[0].after.last(),
        Some(&("surge".to_string(), MetricValue::Float(3.0)))
    );
}

const SCORING: &str = r#"
[[pipeline]]
name = "scoring"
[pipeline.time]
column = "ts"
[pipeline.columns]
ts = "timestamp"
card = "string"
amount = "float"
country = "string"
home = "string"
text = "string"
[pipeline.model.fraud]
file = "models/fraud.json"
[pipeline.derive]
score = "score('fraud', amount / 1000.0, country != home)"
mood = "sentiment(text)"
[[pipeline.aggregate]]
name = "per_card"
group_by = ["card"]
window = { tumbling = "1h" }
[pipeline.aggregate.metrics]
avg_score = "avg(score)"
risky = "count_if(score > 0.9)"
mood = "avg(mood)"
[[pipeline.alert]]
name = "likely_fraud"
row = "score > 0.9"
"#;

#[test]
fn score_and_sentiment_are_row_functions() {
    let cat = catalog(SCORING);
    let p = cat.pipeline("scoring").unwrap();
    let rows = [
        ("c1", 10.0, "FR", "FR", "great service, love it"),
        ("c1", 3000.0, "US", "FR", "terrible, I want a refund"),
        ("c1", 500.0, "DE", "FR", "ok"),
    ];
    let mut data = "ts,card,amount,country,home,text\n".to_string();
    for (i, (card, amount, country, home, text)) in rows.iter().enumerate() {
        data += &format!(
            "{},{card},{amount},{country},{home},\"{text}\"\n",
            ts(i as i64)
        );
    }
    let r = process(p, &data, None);
    let expected_score = |amount: f64, foreign: bool| {
        let z = -3.0 + 1.5 * amount / 1000.0 + 2.0 * f64::from(u8::from(foreign));
        1.0 / (1.0 + (-z).exp())
    };
    let scores: Vec<f64> = rows
        .iter()
        .map(|(_, a, c, h, _)| expected_score(*a, c != h))
        .collect();
    let (_, cell) = r.cells.iter().next().unwrap();
    let values = cell.values();
    let MetricValue::Float(avg) = values[0] else {
        panic!("{values:?}")
    };
    assert!(
        (avg - scores.iter().sum::<f64>() / 3.0).abs() < 1e-9,
        "{avg}"
    );
    assert_eq!(values[1], MetricValue::Int(1));
    let MetricValue::Float(mood) = values[2] else {
        panic!("{values:?}")
    };
    let want: f64 = rows.iter().map(|r| sentiment(r.4)).sum::<f64>() / 3.0;
    assert!((mood - want).abs() < 1e-6, "{mood} vs {want}");
    // The row alert carries the derived values with the row.
    assert_eq!(r.row_alerts.len(), 1);
    assert_eq!(r.row_alerts[0].line, 3);
    assert!(r.row_alerts[0].row.iter().any(|(k, _)| k == "score"));
}

const IOT: &str = r#"
[[pipeline]]
name = "iot"
[pipeline.time]
column = "ts"
format = "epoch_ms"
allowed_lateness = "2m"
[pipeline.columns]
ts = "timestamp"
device = "string"
temp = "float"
kind = "string"
[[pipeline.aggregate]]
name = "per_device_1m"
group_by = ["device"]
window = { tumbling = "1m" }
[pipeline.aggregate.metrics]
avg_temp = "avg(temp)"
doses = "count_if(kind == 'dose')"
[[pipeline.alert]]
name = "drift"
aggregate = "per_device_1m"
when = "prev.avg_temp != null && avg_temp > prev.avg_temp * 1.2"
cooldown = "5m"
[[pipeline.alert]]
name = "missed"
aggregate = "per_device_1m"
when = "doses == 0"
on = "close"
"#;

#[test]
fn previous_window_rules_and_close_rules() {
    let cat = catalog(IOT);
    let p = cat.pipeline("iot").unwrap();
    let rule = &p.window_rules()[0];
    assert_eq!(rule.cooldown_ms, Some(5 * MIN));
    assert!(rule.reads_previous);
    assert_eq!(p.window_rules()[1].on, RuleTrigger::Close);

    let mut data = "ts,device,temp,kind\n".to_string();
    data += &format!("{},d1,50,\n", T0);
    data += &format!("{},d1,50,dose\n", T0 + 30_000);
    data += &format!("{},d1,70,\n", T0 + MIN);
    data += &format!("{},d1,55,\n", T0 + 2 * MIN);
    data += &format!("{},d1,55,\n", T0 + 6 * MIN);
    let r = process(p, &data, None);
    let mut state = WindowState::new();
    let changes = state.apply(p, &r);
    let cells: HashMap<_, _> = r.cells.iter().collect();
    let agg = p.aggregate("per_device_1m").unwrap();
    let mut fired = Vec::new();
    for c in &changes {
        let prev = agg
            .previous_key(&c.key)
            .and_then(|k| cells.get(&k).copied());
        fired.extend(p.window_alerts(c, prev).into_iter().map(|a| a.key.start_ms));
    }
    // 50 -> 70 is +40%; 70 -> 55 is a fall; minute 6 has no previous window.
    assert_eq!(fired, [T0 + MIN]);

    // The watermark moves to 6m - 2m = 4m: windows ending by then close.
    assert_eq!(watermark_after(p, None, &r), Some(T0 + 4 * MIN));
    let closes = closing(p, None, &r);
    assert_eq!(closes.len(), 1);
    assert_eq!(closes[0].to_start_ms, T0 + 3 * MIN);
    let starts: Vec<i64> = closes[0].file_cells.iter().map(|k| k.start_ms).collect();
    assert_eq!(starts, [T0, T0 + MIN, T0 + 2 * MIN]);
    let missed: Vec<i64> = closes[0]
        .file_cells
        .iter()
        .flat_map(|k| p.close_alerts(k, cells[k], None))
        .map(|a| a.key.start_ms)
        .collect();
    assert_eq!(
        missed,
        [T0 + MIN, T0 + 2 * MIN],
        "no dose in minutes 1 and 2"
    );
    // A later file closes only what its watermark adds.
    let later = process(
        p,
        &format!("ts,device,temp,kind\n{},d1,50,\n", T0 + 10 * MIN),
        Some(T0 + 4 * MIN),
    );
    let c = closing(p, Some(T0 + 4 * MIN), &later);
    assert_eq!(
        (c[0].from_start_ms, c[0].to_start_ms),
        (T0 + 3 * MIN + 1, T0 + 7 * MIN)
    );
}

#[test]
fn definitions_name_what_is_wrong() {
    let cases = [
        (
            RIDES.replace(
                "lookup('zones', zone_id, 'name')",
                "lookup('zone', zone_id, 'name')",
            ),
            "derive.zone: unknown lookup table \"zone\"",
        ),
        (
            RIDES.replace("zone_id, 'name')", "zone_id, 'nom')"),
            "has no column \"nom\" (columns: zone_id, name, borough)",
        ),
        (
            RIDES.replace("lookups/zones.csv", "lookups/nope.csv"),
            "lookup.zones.file: \"lookups/nope.csv\" was not fetched",
        ),
        (
            SCORING.replace("amount / 1000.0, country != home)", "amount)"),
            "model \"fraud\" takes 2 features (amount_k, foreign), got 1",
        ),
        (
            SCORING.replace("sentiment(text)", "sentiment(amount)"),
            "sentiment() expects a string, got float",
        ),
        (
            IOT.replace("cooldown = \"5m\"", "cooldown = \"5 minutes\""),
            "alert \"drift\" cooldown",
        ),
        (
            IOT.replace("on = \"close\"", "on = \"later\""),
            "unknown trigger \"later\" (expected change or close)",
        ),
        (
            IOT.replace(
                "window = { tumbling = \"1m\" }",
                "window = { session_gap = \"1m\" }",
            ),
            "prev.avg_temp",
        ),
        (
            RIDES.replace("surge = \"clamp", "requests = \"clamp"),
            "derived \"requests\": already a metric or column",
        ),
        (
            SCORING.replace("row = \"score > 0.9\"", "row = \"prev.score > 0.9\""),
            "only available in window rules",
        ),
    ];
    for (text, want) in cases {
        let e = Catalog::from_toml_with(&text, &files())
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "want {want:?} in: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    // Without a loader, a definition naming files says so.
    let e = Catalog::from_toml(RIDES)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no file loader configured"), "{e}");
    assert_eq!(
        Catalog::files_referenced(&format!("{RIDES}{SCORING}")).unwrap(),
        ["lookups/zones.csv", "models/fraud.json"]
    );
}
