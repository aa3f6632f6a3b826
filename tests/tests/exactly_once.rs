//! Exactly-once windowed state in DynamoDB (LocalStack) under duplicate deliveries,
//! crashes mid-commit, concurrency, overwrites, bad input and throttling. Each test
//! checks the stored windows against `csvflow run` (the engine on local files) or
//! against numbers worked out here.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use csvflow_aws::ingest::FileStatus;
use csvflow_core::ports::ObjectRef;
use csvflow_core::{write_windows, Catalog, OutputFormat, RunOptions};
use csvflow_integration::{require_localstack, FaultyStore, TestStack};

const PIPELINES: &str = r#"
[[pipeline]]
name = "cards"
match = "cards/**"

[pipeline.csv]
header = true
on_bad_row = "quarantine"

[pipeline.time]
column = "ts"
format = "epoch_s"
allowed_lateness = "30d"

[pipeline.columns]
ts = "timestamp"
card = "string"
amount = "float"
country = "string"

[[pipeline.aggregate]]
name = "per_card_10m"
group_by = ["card"]
window = { tumbling = "10m" }

[pipeline.aggregate.metrics]
n = "count()"
total = "sum(amount)"
mx = "max(amount)"
mn = "min(amount)"
countries = "distinct(country)"
p90 = "p90(amount)"
foreign = "count_if(country != \"FR\")"

[[pipeline]]
name = "strict"
match = "strict/**"

[pipeline.csv]
header = true
on_bad_row = "fail"

[pipeline.time]
column = "ts"
format = "epoch_s"
allowed_lateness = "30d"

[pipeline.columns]
ts = "timestamp"
card = "string"

[[pipeline.aggregate]]
name = "n"
group_by = []
window = { tumbling = "1m" }

[pipeline.aggregate.metrics]
n = "count()"
"#;

const T0: i64 = 1_795_132_800; // 2026-11-20T00:00:00Z

/// A deterministic card file: `rows` rows over `cards` cards, starting `offset_s` after T0.
fn card_file(seed: u64, rows: usize, cards: usize, offset_s: i64) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut csv = String::from("ts,card,amount,country\n");
    for _ in 0..rows {
        let ts = T0 + offset_s + (next() % 3_600) as i64;
        let card = next() % cards as u64;
        let cents = next() % 50_000;
        let country = ["FR", "FR", "DE", "US", "JP"][(next() % 5) as usize];
        let _ = writeln!(
            csv,
            "{ts},c{card:04},{}.{:02},{country}",
            cents / 100,
            cents % 100
        );
    }
    csv
}

fn catalog() -> Catalog {
    Catalog::from_toml(PIPELINES).expect("test pipelines are valid")
}

/// The stored windows of `cards/per_card_10m`, printed as `csvflow run` prints them.
async fn stored_csv(stack: &TestStack) -> anyhow::Result<String> {
    let catalog = catalog();
    let aggregate = catalog
        .pipeline("cards")
        .and_then(|p| p.aggregate("per_card_10m"))
        .expect("aggregate");
    let cells = stack.windows("cards", "per_card_10m").await?;
    let mut out = Vec::new();
    write_windows(
        aggregate,
        cells.iter().map(|(k, s)| (k, s)),
        OutputFormat::Csv,
        &mut out,
    )?;
    Ok(String::from_utf8(out)?)
}

/// What `csvflow run` prints for the same files, processed in order.
fn local_run_csv(files: &[String]) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("csvflow-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("pipelines.toml");
    std::fs::write(&config, PIPELINES)?;
    let mut inputs = Vec::new();
    for (i, body) in files.iter().enumerate() {
        let path = dir.join(format!("f{i}.csv"));
        std::fs::write(&path, body)?;
        inputs.push(path.display().to_string());
    }
    let options = RunOptions {
        config_path: config,
        pipeline: "cards".into(),
        aggregate: Some("per_card_10m".into()),
        format: OutputFormat::Csv,
        quarantine: None,
        inputs,
        threads: 0,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    csvflow_core::run(&options, &mut out, &mut err).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(String::from_utf8(out)?)
}

/// Ledger writes on top of one write per cell: one entry per chunk of 99 cells, plus
/// the watermark and the file record.
fn ledger_overhead(cells: u64) -> u64 {
    cells.div_ceil(99) + 2
}

/// Compares two window tables cell by cell; floats may differ in the last bits (sums
/// merged in another order), nothing else may.
fn assert_same_windows(actual: &str, expected: &str) {
    let (a, e): (Vec<&str>, Vec<&str>) = (actual.lines().collect(), expected.lines().collect());
    assert_eq!(
        a.len(),
        e.len(),
        "row counts differ\nactual:\n{actual}\nexpected:\n{expected}"
    );
    assert!(a.len() > 1, "no windows at all");
    for (row_a, row_e) in a.iter().zip(&e) {
        for (x, y) in row_a.split(',').zip(row_e.split(',')) {
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(x), Ok(y)) => assert!(
                    (x - y).abs() <= 1e-9 * y.abs().max(1.0),
                    "{row_a} != {row_e}"
                ),
                _ => assert_eq!(x, y, "{row_a} != {row_e}"),
            }
        }
    }
}

#[tokio::test]
async fn duplicate_deliveries_sequential_and_concurrent_count_once() -> anyhow::Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("duplicates").await?;
    let ingest = stack.ingest(PIPELINES).await?;
    let body = card_file(1, 2_000, 150, 0);
    stack.upload("cards/dup.csv", body.clone()).await?;
    let object = ObjectRef::new(&stack.landing_bucket, "cards/dup.csv");
    let (a, b, c) = tokio::join!(
        ingest.ingest_object(&object),
        ingest.ingest_object(&object),
        ingest.ingest_object(&object)
    );
    let statuses = [a?.status, b?.status, c?.status];
    assert!(statuses.contains(&FileStatus::Committed), "{statuses:?}");
    for _ in 0..3 {
        assert_eq!(
            ingest.ingest_object(&object).await?.status,
            FileStatus::Duplicate
        );
    }
    // The S3 notification itself is a fourth delivery.
    let files = stack.drain(&ingest, Duration::from_secs(2)).await?;
    assert!(
        files.iter().all(|f| f.status == FileStatus::Duplicate),
        "{files:?}"
    );
    assert_same_windows(&stored_csv(&stack).await?, &local_run_csv(&[body])?);
    Ok(())
}

#[tokio::test]
async fn crash_mid_commit_then_retry_converges_to_exact_totals() -> anyhow::Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("crash").await?;
    // 400 cards x ~6 windows: several chunks of 99 cells.
    let body = card_file(2, 3_000, 400, 0);
    stack.upload("cards/crash.csv", body.clone()).await?;
    let object = ObjectRef::new(&stack.landing_bucket, "cards/crash.csv");
    let faulty = stack.ingest_with(PIPELINES, FaultyStore::crash_after(stack.store(), 2), 3)?;
    let crashed = faulty.ingest_object(&object).await;
    assert!(crashed.is_err(), "the injected crash must fail the file");
    let partial = stack.windows("cards", "per_card_10m").await?.len();
    assert!(partial > 0, "some chunks landed before the crash");
    let ingest = stack.ingest(PIPELINES).await?;
    let retried = ingest.ingest_object(&object).await?;
    assert_eq!(retried.status, FileStatus::Committed);
    assert!(
        retried.cells > 200,
        "the file spans several chunks: {retried:?}"
    );
    // And once more: a duplicate of a completed file changes nothing.
    assert_eq!(
        ingest.ingest_object(&object).await?.status,
        FileStatus::Duplicate
    );
    assert_same_windows(&stored_csv(&stack).await?, &local_run_csv(&[body])?);
    Ok(())
}

#[tokio::test]
async fn eight_concurrent_files_equal_a_local_run() -> anyhow::Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("concurrent").await?;
    let ingest = Arc::new(stack.ingest(PIPELINES).await?);
    // Overlapping cards and windows: every file covers the same hour and 40 cards.
    let bodies: Vec<String> = (0..8).map(|i| card_file(10 + i, 600, 40, 0)).collect();
    let mut objects = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let key = format!("cards/part-{i}.csv");
        stack.upload(&key, body.clone()).await?;
        objects.push(ObjectRef::new(&stack.landing_bucket, key));
    }
    let mut tasks = Vec::new();
    for object in objects {
        let ingest = Arc::clone(&ingest);
        tasks.push(tokio::spawn(
            async move { ingest.ingest_object(&object).await },
        ));
    }
    for task in tasks {
        let summary = task.await??;
        assert_eq!(summary.status, FileStatus::Committed);
        assert!(
            summary.writes <= summary.cells + ledger_overhead(summary.cells),
            "writes scale with cells: {summary:?}"
        );
    }
    assert_same_windows(&stored_csv(&stack).await?, &local_run_csv(&bodies)?);
    Ok(())
}

#[tokio::test]
async fn a_new_version_is_a_new_file_and_a_stale_event_does_no_harm() -> anyhow::Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("versions").await?;
    let ingest = stack.ingest(PIPELINES).await?;
    let (first, second) = (card_file(3, 300, 20, 0), card_file(4, 300, 20, 0));
    let v1 = stack.upload("cards/same.csv", first.clone()).await?;
    let v2 = stack.upload("cards/same.csv", second.clone()).await?;
    assert_ne!(v1, v2, "the landing bucket is versioned");
    let mut newer = ObjectRef::new(&stack.landing_bucket, "cards/same.csv");
    newer.version_id = v2;
    let mut older = newer.clone();
    older.version_id = v1;
    // The newer event arrives first, the older one after it, then both again.
    for object in [&newer, &older] {
        assert_eq!(
            ingest.ingest_object(object).await?.status,
            FileStatus::Committed
        );
    }
    for object in [&older, &newer] {
        assert_eq!(
            ingest.ingest_object(object).await?.status,
            FileStatus::Duplicate
        );
    }
    // The notifications for both uploads carry version ids: both are duplicates now.
    let files = stack.drain(&ingest, Duration::from_secs(2)).await?;
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files.iter().all(|f| f.status == FileStatus::Duplicate),
        "{files:?}"
    );
    assert_same_windows(
        &stored_csv(&stack).await?,
        &local_run_csv(&[second, first])?,
    );
    Ok(())
}

#[tokio::test]
async fn bad_rows_are_quarantined_and_bad_files_dead_lettered_with_the_reason() -> anyhow::Result<()>
{
    require_localstack().await?;
    let stack = TestStack::create("bad-input").await?;
    let ingest = stack.ingest(PIPELINES).await?;
    let good = format!("ts,card,amount,country\n{T0},c1,10.00,FR\n");
    let with_bad_rows = format!("{good}{T0},c1,not-a-number,FR\nyesterday,c2,1.00,FR\n{T0},c3\n");
    stack.upload("cards/some-bad.csv", with_bad_rows).await?;
    stack
        .upload(
            "strict/fails.csv",
            format!("ts,card\n{T0},a\nnot-a-time,b\n"),
        )
        .await?;
    stack
        .upload("strict/no-column.csv", "ts,other\n1,2\n")
        .await?;
    stack.upload("elsewhere/unrouted.csv", good).await?;
    let files = stack.drain(&ingest, Duration::from_secs(6)).await?;

    let bad = files
        .iter()
        .find(|f| f.file.ends_with("some-bad.csv"))
        .expect("handled");
    assert_eq!((bad.rows, bad.bad), (1, 3), "{bad:?}");
    let listed = stack
        .s3
        .list_objects_v2()
        .bucket(&stack.output_bucket)
        .prefix("quarantine/cards/")
        .send()
        .await?;
    let key = listed
        .contents()
        .first()
        .and_then(|o| o.key())
        .expect("a quarantine object")
        .to_owned();
    let quarantined = stack
        .s3
        .get_object()
        .bucket(&stack.output_bucket)
        .key(&key)
        .send()
        .await?;
    let text = String::from_utf8(quarantined.body.collect().await?.into_bytes().to_vec())?;
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(rows[0]["line"], 3);
    assert!(
        rows[0]["byte_offset"].as_u64().is_some_and(|b| b > 0),
        "{text}"
    );
    assert!(
        rows[0]["record"]
            .as_str()
            .is_some_and(|r| r.contains("not-a-number")),
        "{text}"
    );
    assert!(rows.iter().all(|r| r["file"]
        .as_str()
        .is_some_and(|f| f.ends_with("some-bad.csv"))));

    let unrouted = files
        .iter()
        .find(|f| f.file.ends_with("unrouted.csv"))
        .expect("handled");
    assert_eq!(unrouted.status, FileStatus::Unrouted);

    let dead = stack.dead_letters().await?;
    assert_eq!(
        dead.len(),
        2,
        "both strict files dead-lettered after their retries: {dead:?}"
    );
    let reasons: Vec<String> = dead.into_iter().filter_map(|(_, reason)| reason).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("fails.csv") && r.contains("line 3")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("no-column.csv") && r.contains("card")),
        "{reasons:?}"
    );
    assert!(
        stack.windows("strict", "n").await?.is_empty(),
        "a failed file commits nothing"
    );
    Ok(())
}

#[tokio::test]
async fn throttled_commits_are_retried_whole_and_stay_exact() -> anyhow::Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("throttled").await?;
    let ingest = stack.ingest_with(PIPELINES, FaultyStore::throttled(stack.store(), 2), 5)?;
    let body = card_file(5, 1_500, 300, 0);
    stack.upload("cards/throttled.csv", body.clone()).await?;
    let files = stack.drain(&ingest, Duration::from_secs(6)).await?;
    assert_eq!(
        files.len(),
        1,
        "delivered again until it went through: {files:?}"
    );
    assert!(stack.dead_letters().await?.is_empty());
    assert_same_windows(&stored_csv(&stack).await?, &local_run_csv(&[body])?);
    Ok(())
}
