//! Use-case tests for the signal pipelines of `examples/pipelines.toml` (issue #6): IoT
//! equipment, ride demand, clinical vitals and sentiment. Each test generates files with
//! `csvflow_gen`, ingests them one after the other through LocalStack with the shipped
//! definitions (lookups loaded from S3 as in a deployment), and checks every stored
//! window and every delivered alert against numbers computed here from the CSV bytes:
//! plain `csv` parsing, `chrono`/`chrono-tz` for time, `vader-parity` for sentiment, and
//! a file-by-file simulation of the product's semantics (late rows dropped, `change`
//! rules alerting once per window, `prev.` rules, the cool-down, `on = "close"` rules).
//! Nothing expected is read back from csvflow's engine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use chrono::{DateTime, NaiveDateTime, TimeZone};
use chrono_tz::America::New_York;
use csvflow_aws::ingest::FileSummary;
use csvflow_core::{Catalog, DirLoader, MetricValue, Pipeline};
use csvflow_gen::{generate, GenOptions, GeneratedFile, UseCase};
use csvflow_integration::reference::{admit, window_start};
use csvflow_integration::{require_localstack, TestStack};
use serde_json::Value;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

// ---- running a use case ----------------------------------------------------------------

/// Generated files ingested in order into a private stack with the shipped pipelines.
struct Run {
    stack: TestStack,
    files: Vec<GeneratedFile>,
    summaries: Vec<FileSummary>,
    catalog: Catalog,
    started: Instant,
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Three files, a few bad and late rows: small enough for a quick test, with every
/// planted pattern.
fn options(rows: usize, seed: u64) -> GenOptions {
    GenOptions {
        rows,
        files: 3,
        seed,
        bad_rows: 4,
        late_rows: 4,
        ..GenOptions::default()
    }
}

async fn ingest_generated(test: &str, use_case: UseCase, opts: &GenOptions) -> Result<Run> {
    ingest_with_extra(test, generate(use_case, opts), Vec::new()).await
}

/// Ingests the generated files, then hand-made ones (well-formed, on time) after them.
async fn ingest_with_extra(
    test: &str,
    generated: Vec<GeneratedFile>,
    extra: Vec<(String, String)>,
) -> Result<Run> {
    require_localstack().await?;
    let started = Instant::now();
    let mut files = generated;
    for (key, text) in extra {
        files.push(GeneratedFile {
            key,
            rows: text.lines().count() - 1,
            bytes: text.into_bytes(),
            bad_rows: 0,
            late_rows: 0,
        });
    }
    let stack = TestStack::create(test).await?;
    let ingest = stack.ingest_examples().await?;
    let uploads: Vec<(&str, &[u8])> = files
        .iter()
        .map(|f| (f.key.as_str(), f.bytes.as_slice()))
        .collect();
    let summaries = stack.ingest_in_order(&ingest, &uploads).await?;
    // The catalog only names the output columns (metrics, then derived values) of the
    // stored windows; it computes nothing expected.
    let dir = examples_dir();
    let toml = std::fs::read_to_string(dir.join("pipelines.toml"))?;
    let catalog = Catalog::from_toml_with(&toml, &DirLoader(dir))?;
    Ok(Run {
        stack,
        files,
        summaries,
        catalog,
        started,
    })
}

impl Run {
    fn pipeline(&self, name: &str, lateness_ms: i64) -> &Pipeline {
        let pipeline = self.catalog.pipeline(name).expect("shipped pipeline");
        assert_eq!(
            pipeline.allowed_lateness_ms(),
            lateness_ms,
            "{name} lateness"
        );
        pipeline
    }
}

// ---- the reference reading, file by file -------------------------------------------------

/// What the reference admits from each file, read in order with the product's contract
/// ([`admit`]): bad rows counted, late rows counted and dropped.
struct Reference<T> {
    /// The admitted rows of each file: (event time ms, row).
    files: Vec<Vec<(i64, T)>>,
    bad: Vec<usize>,
    late: Vec<usize>,
    /// The watermark after each file (max event time so far − allowed lateness); the
    /// watermark before file k is the one after file k − 1 (none before the first).
    watermarks: Vec<Option<i64>>,
}

impl<T> Reference<T> {
    fn read(
        files: &[GeneratedFile],
        lateness_ms: i64,
        parse: impl Fn(&csv::StringRecord) -> Option<(i64, T)>,
    ) -> Self {
        let bytes: Vec<&[u8]> = files.iter().map(|f| f.bytes.as_slice()).collect();
        let mut out = Reference {
            files: Vec::new(),
            bad: Vec::new(),
            late: Vec::new(),
            watermarks: Vec::new(),
        };
        let (mut rows, mut bad, mut late) = (0, 0, 0);
        // Reading each prefix of the files gives each file's share and watermark.
        for k in 1..=bytes.len() {
            let mut admitted = admit(&bytes[..k], b',', lateness_ms, &parse);
            let file_rows = admitted.rows.split_off(rows);
            rows += file_rows.len();
            out.files.push(file_rows);
            out.bad.push(admitted.bad - bad);
            out.late.push(admitted.late - late);
            (bad, late) = (admitted.bad, admitted.late);
            out.watermarks.push(admitted.watermark_ms);
        }
        out
    }

    fn map<U>(self, f: impl Fn(T) -> U) -> Reference<U> {
        Reference {
            files: self
                .files
                .into_iter()
                .map(|rows| rows.into_iter().map(|(ts, row)| (ts, f(row))).collect())
                .collect(),
            bad: self.bad,
            late: self.late,
            watermarks: self.watermarks,
        }
    }

    fn rows(&self) -> impl Iterator<Item = &(i64, T)> {
        self.files.iter().flatten()
    }
}

/// Each file's summary (rows, bad, late, cells touched) against the reference, and the
/// reference against the generator's own counts.
fn assert_file_figures<T>(run: &Run, reference: &Reference<T>, cells_per_file: &[usize]) {
    assert_eq!(run.summaries.len(), run.files.len(), "{:?}", run.summaries);
    for (k, (summary, file)) in run.summaries.iter().zip(&run.files).enumerate() {
        let figures = (
            reference.files[k].len(),
            reference.bad[k],
            reference.late[k],
        );
        assert_eq!(
            figures,
            (file.rows, file.bad_rows, file.late_rows),
            "{}: reference vs generator (rows, bad, late)",
            file.key
        );
        assert!(summary.file.ends_with(&file.key), "{summary:?}");
        assert_eq!(
            (summary.rows, summary.bad, summary.late, summary.cells),
            (
                figures.0 as u64,
                figures.1 as u64,
                figures.2 as u64,
                cells_per_file[k] as u64
            ),
            "{}: (rows, bad, late, cells) stored vs reference",
            file.key
        );
    }
}

// ---- windows, file by file -------------------------------------------------------------

/// A window: (group-by values, start ms).
type Cell = (Vec<String>, i64);

/// One tumbling aggregate as it stands after each file.
struct Windows<S> {
    size_ms: i64,
    /// Every window's state after each file.
    after: Vec<BTreeMap<Cell, S>>,
    /// The latest event time in each window after each file.
    last_event: Vec<BTreeMap<Cell, i64>>,
    /// The windows each file changed.
    changed: Vec<BTreeSet<Cell>>,
}

impl<S> Windows<S> {
    fn build<T>(
        reference: &Reference<T>,
        size_ms: i64,
        group: impl Fn(&T) -> Vec<String>,
        state: impl Fn(&[&T]) -> S,
    ) -> Self {
        let mut rows: BTreeMap<Cell, (Vec<&T>, i64)> = BTreeMap::new();
        let mut out = Windows {
            size_ms,
            after: Vec::new(),
            last_event: Vec::new(),
            changed: Vec::new(),
        };
        for file in &reference.files {
            let mut changed = BTreeSet::new();
            for (ts, row) in file {
                let cell = (group(row), window_start(*ts, size_ms));
                changed.insert(cell.clone());
                let entry = rows.entry(cell).or_insert((Vec::new(), i64::MIN));
                entry.0.push(row);
                entry.1 = entry.1.max(*ts);
            }
            out.after.push(
                rows.iter()
                    .map(|(c, (r, _))| (c.clone(), state(r)))
                    .collect(),
            );
            out.last_event
                .push(rows.iter().map(|(c, (_, t))| (c.clone(), *t)).collect());
            out.changed.push(changed);
        }
        out
    }

    fn last(&self) -> &BTreeMap<Cell, S> {
        self.after.last().expect("at least one file")
    }
}

/// How close a stored float must be to the expected one.
#[derive(Clone, Copy, Debug)]
enum Tolerance {
    Relative(f64),
    /// Checked separately.
    Skip,
}

const EXACT: Tolerance = Tolerance::Relative(1e-9);

fn close_enough(got: &MetricValue, want: &MetricValue, tolerance: Tolerance) -> bool {
    match (got, want) {
        (MetricValue::Float(g), MetricValue::Float(w)) => match tolerance {
            Tolerance::Relative(r) => (g - w).abs() <= r * g.abs().max(w.abs()),
            Tolerance::Skip => true,
        },
        _ if matches!(tolerance, Tolerance::Skip) => true,
        _ => got == want,
    }
}

fn int(n: usize) -> MetricValue {
    MetricValue::Int(n as i64)
}

fn opt_int(v: Option<i64>) -> MetricValue {
    v.map_or(MetricValue::Null, MetricValue::Int)
}

fn opt_float(v: Option<f64>) -> MetricValue {
    v.map_or(MetricValue::Null, MetricValue::Float)
}

/// Every stored window of `aggregate` equals the reference after the last file: same
/// keys and bounds, same output values (metrics, then derived) by name.
async fn assert_stored_windows<S>(
    run: &Run,
    pipeline: &str,
    aggregate: &str,
    windows: &Windows<S>,
    values: impl Fn(&Cell, &S) -> Vec<(&'static str, MetricValue)>,
    tolerance: impl Fn(&str) -> Tolerance,
) -> Result<usize> {
    let agg = run
        .catalog
        .pipeline(pipeline)
        .and_then(|p| p.aggregate(aggregate))
        .context("aggregate")?;
    let stored = run.stack.windows(pipeline, aggregate).await?;
    let expected = windows.last();
    let stored_cells: BTreeSet<Cell> = stored
        .iter()
        .map(|(k, _)| (k.group.clone(), k.start_ms))
        .collect();
    let expected_cells: BTreeSet<Cell> = expected.keys().cloned().collect();
    let missing: Vec<_> = expected_cells.difference(&stored_cells).take(5).collect();
    let extra: Vec<_> = stored_cells.difference(&expected_cells).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && stored.len() == expected.len(),
        "{pipeline}/{aggregate}: {} stored, {} expected; missing {missing:?}, extra {extra:?}",
        stored.len(),
        expected.len()
    );
    for (key, state) in &stored {
        let cell = (key.group.clone(), key.start_ms);
        let at = format!("{pipeline}/{aggregate} {:?} @{}", key.group, key.start_ms);
        assert_eq!(key.aggregate, aggregate, "{at}");
        assert_eq!(key.end_ms, key.start_ms + windows.size_ms, "{at}: end");
        let got = agg.named_values(key, state);
        let want = values(&cell, &expected[&cell]);
        let got_names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        let want_names: Vec<&str> = want.iter().map(|(n, _)| *n).collect();
        assert_eq!(got_names, want_names, "{at}: output columns");
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            assert!(
                close_enough(g, w, tolerance(name)),
                "{at} {name}: stored {g:?}, expected {w:?}"
            );
        }
    }
    Ok(stored.len())
}

// ---- alerts, file by file ----------------------------------------------------------------

/// The windows a `change` rule alerts on, per file in key order: a window the file
/// changed whose condition holds after the file and did not already hold before it (on
/// a window that existed). `cond(state, prev)` gets the same key's previous window as
/// stored after the file, for `prev.` rules.
fn change_rule<S>(windows: &Windows<S>, cond: impl Fn(&S, Option<&S>) -> bool) -> Vec<Vec<Cell>> {
    (0..windows.after.len())
        .map(|k| {
            let after = &windows.after[k];
            windows.changed[k]
                .iter()
                .filter(|cell| {
                    let prev = after.get(&(cell.0.clone(), cell.1 - windows.size_ms));
                    let before = k.checked_sub(1).and_then(|j| windows.after[j].get(*cell));
                    cond(&after[*cell], prev) && !before.is_some_and(|b| cond(b, prev))
                })
                .cloned()
                .collect()
        })
        .collect()
}

/// Drops an alert when the last alerted window of the same key started less than
/// `cooldown_ms` away (remembered across files; windows taken per file in key order).
fn cool_down(per_file: Vec<Vec<Cell>>, cooldown_ms: i64) -> Vec<Vec<Cell>> {
    let mut last: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    per_file
        .into_iter()
        .map(|cells| {
            cells
                .into_iter()
                .filter(|(group, start)| {
                    if last
                        .get(group)
                        .is_some_and(|l| (start - l).abs() < cooldown_ms)
                    {
                        return false;
                    }
                    last.insert(group.clone(), *start);
                    true
                })
                .collect()
        })
        .collect()
}

/// The windows an `on = "close"` rule alerts on, per file: those whose end the file's
/// watermark passed (end in (before, after]), checked once on their state after it.
fn close_rule<S, T>(
    windows: &Windows<S>,
    reference: &Reference<T>,
    cond: impl Fn(&S) -> bool,
) -> Vec<Vec<Cell>> {
    (0..windows.after.len())
        .map(|k| {
            let before = k.checked_sub(1).and_then(|j| reference.watermarks[j]);
            let after = reference.watermarks[k];
            windows.after[k]
                .iter()
                .filter(|((_, start), state)| {
                    let end = start + windows.size_ms;
                    after.is_some_and(|a| end <= a) && before.is_none_or(|b| end > b) && cond(state)
                })
                .map(|(cell, _)| cell.clone())
                .collect()
        })
        .collect()
}

/// (rule, group-by values, window start).
type AlertKey = (String, Vec<String>, i64);

/// What an alert must say besides its key: the file that raised it and its event time.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AlertFacts {
    file: String,
    event_ms: i64,
}

#[derive(Default)]
struct Expected(BTreeMap<AlertKey, AlertFacts>);

impl Expected {
    /// A change rule's alerts: event time = the window's latest row after the file.
    fn change<S>(&mut self, run: &Run, rule: &str, windows: &Windows<S>, per_file: &[Vec<Cell>]) {
        for (k, cells) in per_file.iter().enumerate() {
            for cell in cells {
                let event_ms = windows.last_event[k][cell];
                self.add(run, rule, k, cell, event_ms);
            }
        }
    }

    /// A close rule's alerts: event time = the window's end.
    fn close<S>(&mut self, run: &Run, rule: &str, windows: &Windows<S>, per_file: &[Vec<Cell>]) {
        for (k, cells) in per_file.iter().enumerate() {
            for cell in cells {
                self.add(run, rule, k, cell, cell.1 + windows.size_ms);
            }
        }
    }

    fn add(&mut self, run: &Run, rule: &str, file: usize, cell: &Cell, event_ms: i64) {
        let facts = AlertFacts {
            file: run.files[file].key.clone(),
            event_ms,
        };
        let previous = self
            .0
            .insert((rule.to_owned(), cell.0.clone(), cell.1), facts);
        assert!(previous.is_none(), "{rule} {cell:?} expected twice");
    }

    fn count(&self, rule: &str) -> usize {
        self.0.keys().filter(|(r, _, _)| r == rule).count()
    }
}

fn rfc3339_to_ms(value: &Value) -> Option<i64> {
    DateTime::parse_from_rfc3339(value.as_str()?)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The alerts delivered through SNS equal the expected ones: same (rule, key, window)
/// set, each exactly once, raised by the expected file with the expected event time.
async fn assert_delivered_alerts(
    run: &Run,
    pipeline: &Pipeline,
    expected: &Expected,
) -> Result<usize> {
    // SNS -> SQS delivery is asynchronous: wait for the expected number (15 s at most),
    // then drain once more for duplicates or strays.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut alerts = Vec::new();
    while alerts.len() < expected.0.len() && Instant::now() < deadline {
        alerts.extend(run.stack.delivered_alerts().await?);
    }
    alerts.extend(run.stack.delivered_alerts().await?);

    let mut delivered: BTreeMap<AlertKey, Vec<AlertFacts>> = BTreeMap::new();
    for alert in &alerts {
        ensure!(
            alert["pipeline"] == pipeline.name() && alert["kind"] == "window",
            "{alert}"
        );
        let aggregate = alert["aggregate"].as_str().unwrap_or_default();
        let group_by = pipeline
            .aggregate(aggregate)
            .with_context(|| format!("aggregate of {alert}"))?
            .group_by();
        let group = group_by
            .iter()
            .map(|c| alert["key"][c].as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .with_context(|| format!("key of {alert}"))?;
        let start = rfc3339_to_ms(&alert["window"]["start"]).context("window start")?;
        let end = rfc3339_to_ms(&alert["window"]["end"]).context("window end")?;
        ensure!(end > start, "{alert}");
        let facts = AlertFacts {
            file: alert["files"][0].as_str().unwrap_or_default().to_owned(),
            event_ms: rfc3339_to_ms(&alert["event_time"]).context("event time")?,
        };
        let rule = alert["rule"].as_str().unwrap_or_default().to_owned();
        delivered
            .entry((rule, group, start))
            .or_default()
            .push(facts);
    }
    let missing: Vec<_> = expected
        .0
        .keys()
        .filter(|k| !delivered.contains_key(*k))
        .collect();
    let extra: Vec<_> = delivered
        .keys()
        .filter(|k| !expected.0.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{}: {} alerts delivered, {} expected\nmissing: {missing:#?}\nunexpected: {extra:#?}",
        pipeline.name(),
        alerts.len(),
        expected.0.len()
    );
    for (key, facts) in &delivered {
        let want = &expected.0[key];
        assert_eq!(facts.len(), 1, "{key:?} delivered {} times", facts.len());
        // `files` holds s3://bucket/key: compare the key.
        assert!(
            facts[0].file.ends_with(&format!("/{}", want.file)),
            "{key:?}: raised by {}, expected {}",
            facts[0].file,
            want.file
        );
        assert_eq!(facts[0].event_ms, want.event_ms, "{key:?}: event time");
    }
    Ok(alerts.len())
}

fn report(run: &Run, name: &str, windows: &[(&str, usize)], expected: &Expected) {
    let rows: usize = run.summaries.iter().map(|s| s.rows as usize).sum();
    let bad: u64 = run.summaries.iter().map(|s| s.bad).sum();
    let late: u64 = run.summaries.iter().map(|s| s.late).sum();
    let mut rules: BTreeMap<&str, usize> = BTreeMap::new();
    for (rule, _, _) in expected.0.keys() {
        *rules.entry(rule.as_str()).or_default() += 1;
    }
    eprintln!(
        "{name}: {} files, {rows} rows, {bad} bad, {late} late; windows {windows:?}; \
         alerts {rules:?}; {:.1} s",
        run.files.len(),
        run.started.elapsed().as_secs_f64()
    );
}

// ---- parsing helpers ---------------------------------------------------------------------

fn utc_ms(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Empty is null; anything else must parse.
fn nullable<T: std::str::FromStr>(s: &str) -> Option<Option<T>> {
    if s.is_empty() {
        Some(None)
    } else {
        s.parse().ok().map(Some)
    }
}

fn not_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

// ---- iot-equipment -----------------------------------------------------------------------

struct Reading {
    device: String,
    temperature: f64,
    vibration: f64,
}

struct DeviceMinute {
    readings: usize,
    min_temp: f64,
    max_temp: f64,
    avg_temp: f64,
    /// The exact value at the rank the product's DDSketch reads, ⌊0.95·(n − 1)⌋ (0-based).
    p95_sketch_rank: f64,
    /// The exact nearest-rank p95, ⌈0.95·n⌉ (1-based).
    p95_nearest_rank: f64,
    max_vibration: f64,
}

fn device_minute(rows: &[&Reading]) -> DeviceMinute {
    let mut temps: Vec<f64> = rows.iter().map(|r| r.temperature).collect();
    temps.sort_by(f64::total_cmp);
    let n = temps.len();
    DeviceMinute {
        readings: n,
        min_temp: temps[0],
        max_temp: temps[n - 1],
        avg_temp: rows.iter().map(|r| r.temperature).sum::<f64>() / n as f64,
        p95_sketch_rank: temps[(0.95 * (n as f64 - 1.0)) as usize],
        p95_nearest_rank: temps[(95 * n).div_ceil(100) - 1],
        max_vibration: rows.iter().map(|r| r.vibration).fold(f64::MIN, f64::max),
    }
}

/// Two hand-made files after the generated range, for the cool-down, which the
/// generator's few random overheats (two per file, random devices) almost never reach:
/// dev-001 overheats in minutes 10, 12 and 15 after the range in the first (12 is within
/// 5 minutes of 10's alert; 15 is exactly 5 minutes on, so it alerts), then in minutes
/// 19 and 21 in the second (19 is within 5 minutes of 15; 21 is 6 minutes after the last
/// alerted window, 15, though only 2 after the dropped 19).
fn cooldown_files(opts: &GenOptions) -> Vec<(String, String)> {
    let end = opts.start.timestamp_millis() + UseCase::Iot.span_hours() * HOUR;
    let file = |minutes: &[i64]| {
        let mut csv = String::from("ts,device_id,site,temperature,vibration,pressure\n");
        for m in minutes {
            let ts = end + m * MINUTE + 5_000;
            csv += &format!("{ts},dev-001,plant-a,95.5,7.25,250.0\n");
            csv += &format!("{},dev-001,plant-a,70.1,2.50,260.0\n", ts + 20_000);
        }
        csv
    };
    vec![
        ("iot/iot-cooldown-1.csv".to_owned(), file(&[10, 12, 15])),
        ("iot/iot-cooldown-2.csv".to_owned(), file(&[19, 21])),
    ]
}

#[tokio::test]
async fn iot_equipment_minutes_overheat_with_cooldown_and_drift() -> Result<()> {
    const PIPELINE: &str = "iot-equipment";
    // Sparse readings make about one window per row, each a DynamoDB write: 1200 rows
    // keep the test quick and still plant a drift and two overheats per file.
    let opts = options(1200, 42);
    let generated = generate(UseCase::Iot, &opts);
    let run = ingest_with_extra("uc-iot", generated, cooldown_files(&opts)).await?;
    let pipeline = run.pipeline(PIPELINE, 2 * MINUTE);
    // ts,device_id,site,temperature,vibration,pressure with epoch-millisecond times.
    let reference = Reference::read(&run.files, 2 * MINUTE, |r| {
        let _pressure: f64 = r[5].parse().ok()?;
        let row = Reading {
            device: r[1].to_owned(),
            temperature: r[3].parse().ok()?,
            vibration: r[4].parse().ok()?,
        };
        Some((r[0].parse().ok()?, row))
    });
    let minutes = Windows::build(
        &reference,
        MINUTE,
        |r| vec![r.device.clone()],
        device_minute,
    );
    let cells: Vec<usize> = minutes.changed.iter().map(BTreeSet::len).collect();
    assert_file_figures(&run, &reference, &cells);

    // p95 is a DDSketch with 1% relative accuracy "for the rank the sketch picks":
    // ⌊0.95·(n − 1)⌋, which differs from the nearest rank in small windows (with 5
    // readings it is the 4th value, not the 5th), so the stored p95 is checked within 1%
    // of the exact value at the sketch's rank; windows where that is more than 1% away
    // from the nearest-rank p95 are counted for the report (with 2 readings, as in the
    // hand-made files, the sketch's p95 is the lower one).
    let stored = assert_stored_windows(
        &run,
        PIPELINE,
        "per_device_1m",
        &minutes,
        |_, m| {
            vec![
                ("readings", int(m.readings)),
                ("min_temp", MetricValue::Float(m.min_temp)),
                ("max_temp", MetricValue::Float(m.max_temp)),
                ("avg_temp", MetricValue::Float(m.avg_temp)),
                ("p95_temp", MetricValue::Float(m.p95_sketch_rank)),
                ("max_vibration", MetricValue::Float(m.max_vibration)),
            ]
        },
        |name| match name {
            "p95_temp" => Tolerance::Relative(0.01),
            _ => EXACT,
        },
    )
    .await?;
    let rank_differs = minutes
        .last()
        .values()
        .filter(|m| (m.p95_nearest_rank - m.p95_sketch_rank).abs() > 0.01 * m.p95_nearest_rank)
        .count();
    eprintln!(
        "iot: p95 at the sketch's rank is >1% off the nearest-rank p95 in {rank_differs} windows"
    );

    let mut expected = Expected::default();
    let overheat = change_rule(&minutes, |m, _| m.max_temp > 90.0);
    let candidates: usize = overheat.iter().map(Vec::len).sum();
    let overheat = cool_down(overheat, 5 * MINUTE);
    expected.change(&run, "overheat", &minutes, &overheat);
    // The hand-made files: 10, 15 and 21 alert; 12 and 19 are cooled down.
    let end = opts.start.timestamp_millis() + UseCase::Iot.span_hours() * HOUR;
    let tail: Vec<i64> = overheat[3..]
        .iter()
        .flatten()
        .map(|(_, start)| (start - end) / MINUTE)
        .collect();
    assert_eq!(tail, [10, 15, 21], "the cool-down scenario as simulated");
    let drift = change_rule(&minutes, |m, prev| {
        prev.is_some_and(|p| m.avg_temp > p.avg_temp * 1.2)
    });
    expected.change(&run, "temperature_drift", &minutes, &drift);
    let generated_overheats: usize = overheat[..3].iter().map(Vec::len).sum();
    assert!(generated_overheats > 0, "planted overheats alert");
    assert!(
        expected.count("temperature_drift") > 0,
        "planted drifts alert"
    );
    eprintln!(
        "iot: {candidates} overheat windows, {} after the cool-down",
        expected.count("overheat")
    );
    let delivered = assert_delivered_alerts(&run, pipeline, &expected).await?;
    assert_eq!(delivered, expected.0.len());
    report(&run, PIPELINE, &[("per_device_1m", stored)], &expected);
    Ok(())
}

// ---- ride-demand -------------------------------------------------------------------------

struct RideEvent {
    event: String,
    zone_id: String,
    rider: Option<String>,
    driver: Option<String>,
}

struct ZoneWindow {
    requests: usize,
    riders: usize,
    drivers: usize,
}

impl ZoneWindow {
    fn surge(&self) -> f64 {
        (self.requests as f64 / (self.drivers as f64).max(1.0)).clamp(1.0, 3.0)
    }
}

fn zone_window(rows: &[&RideEvent]) -> ZoneWindow {
    let distinct = |f: fn(&RideEvent) -> Option<&String>| {
        rows.iter()
            .filter_map(|r| f(r))
            .collect::<BTreeSet<_>>()
            .len()
    };
    ZoneWindow {
        requests: rows.iter().filter(|r| r.event == "request").count(),
        riders: distinct(|r| r.rider.as_ref()),
        drivers: distinct(|r| r.driver.as_ref()),
    }
}

/// zone_id -> name, read from the shipped lookup table.
fn zone_names() -> Result<BTreeMap<String, String>> {
    let mut names = BTreeMap::new();
    let mut rdr = csv::Reader::from_path(examples_dir().join("lookups/zones.csv"))?;
    for record in rdr.records() {
        let record = record?;
        names.insert(record[0].to_owned(), record[1].to_owned());
    }
    Ok(names)
}

#[tokio::test]
async fn ride_demand_zones_surge_from_requests_per_available_driver() -> Result<()> {
    const PIPELINE: &str = "ride-demand";
    let run = ingest_generated("uc-rides", UseCase::Rides, &options(2000, 42)).await?;
    let pipeline = run.pipeline(PIPELINE, 10 * MINUTE);
    let zones = zone_names()?;
    // ts,event,zone_id,rider_id,driver_id; empty ids are null.
    let reference = Reference::read(&run.files, 10 * MINUTE, |r| {
        let row = RideEvent {
            event: r[1].to_owned(),
            zone_id: r[2].to_owned(),
            rider: not_empty(&r[3]),
            driver: not_empty(&r[4]),
        };
        Some((utc_ms(&r[0])?, row))
    });
    let per_zone = Windows::build(
        &reference,
        5 * MINUTE,
        |r| {
            let name = zones.get(&r.zone_id).cloned().unwrap_or_default();
            vec![r.zone_id.clone(), name]
        },
        zone_window,
    );
    // Every zone is in the lookup table (a miss would group under an empty name).
    assert!(per_zone.last().keys().all(|(g, _)| !g[1].is_empty()));
    let cells: Vec<usize> = per_zone.changed.iter().map(BTreeSet::len).collect();
    assert_file_figures(&run, &reference, &cells);

    let stored = assert_stored_windows(
        &run,
        PIPELINE,
        "per_zone_5m",
        &per_zone,
        |_, w| {
            vec![
                ("requests", int(w.requests)),
                ("riders", int(w.riders)),
                ("drivers", int(w.drivers)),
                ("surge", MetricValue::Float(w.surge())),
            ]
        },
        |_| EXACT,
    )
    .await?;

    let mut expected = Expected::default();
    let surges = change_rule(&per_zone, |w, _| w.surge() >= 2.5 && w.requests >= 10);
    expected.change(&run, "surge_pricing", &per_zone, &surges);
    assert!(expected.count("surge_pricing") > 0, "planted surges alert");
    let delivered = assert_delivered_alerts(&run, pipeline, &expected).await?;
    assert_eq!(delivered, expected.0.len());
    report(&run, PIPELINE, &[("per_zone_5m", stored)], &expected);
    Ok(())
}

// ---- clinical-vitals ---------------------------------------------------------------------

struct VitalsRow {
    patient: String,
    kind: String,
    heart_rate: Option<i64>,
    spo2: Option<i64>,
    systolic: Option<i64>,
}

struct PatientHour {
    readings: usize,
    avg_hr: Option<f64>,
    max_hr: Option<i64>,
    min_spo2: Option<i64>,
    max_systolic: Option<i64>,
}

fn patient_hour(rows: &[&VitalsRow]) -> PatientHour {
    let hr: Vec<i64> = rows.iter().filter_map(|r| r.heart_rate).collect();
    PatientHour {
        readings: rows.iter().filter(|r| r.kind == "vitals").count(),
        avg_hr: (!hr.is_empty()).then(|| hr.iter().sum::<i64>() as f64 / hr.len() as f64),
        max_hr: hr.iter().copied().max(),
        min_spo2: rows.iter().filter_map(|r| r.spo2).min(),
        max_systolic: rows.iter().filter_map(|r| r.systolic).max(),
    }
}

struct Adherence {
    readings: usize,
    doses: usize,
}

fn adherence(rows: &[&VitalsRow]) -> Adherence {
    let kind = |k: &str| rows.iter().filter(|r| r.kind == k).count();
    Adherence {
        readings: kind("vitals"),
        doses: kind("dose"),
    }
}

/// Naive America/New_York wall-clock time to epoch ms (no DST change in the generated
/// range; an ambiguous time would take the earlier instant).
fn new_york_ms(s: &str) -> Option<i64> {
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok()?;
    Some(
        New_York
            .from_local_datetime(&naive)
            .earliest()?
            .timestamp_millis(),
    )
}

#[tokio::test]
async fn clinical_vitals_thresholds_and_missed_doses_on_close() -> Result<()> {
    const PIPELINE: &str = "clinical-vitals";
    let run = ingest_generated("uc-vitals", UseCase::Vitals, &options(2000, 42)).await?;
    let pipeline = run.pipeline(PIPELINE, HOUR);
    // ts,patient_id,kind,heart_rate,spo2,systolic,diastolic,medication: ints, empty =
    // null (dose rows); a non-integer is a bad row.
    let reference = Reference::read(&run.files, HOUR, |r| {
        let _diastolic: Option<i64> = nullable(&r[6])?;
        let row = VitalsRow {
            patient: r[1].to_owned(),
            kind: r[2].to_owned(),
            heart_rate: nullable(&r[3])?,
            spo2: nullable(&r[4])?,
            systolic: nullable(&r[5])?,
        };
        Some((new_york_ms(&r[0])?, row))
    });
    let patient = |r: &VitalsRow| vec![r.patient.clone()];
    let hourly = Windows::build(&reference, HOUR, patient, patient_hour);
    let six_hours = Windows::build(&reference, 6 * HOUR, patient, adherence);
    let cells: Vec<usize> = (0..run.files.len())
        .map(|k| hourly.changed[k].len() + six_hours.changed[k].len())
        .collect();
    assert_file_figures(&run, &reference, &cells);

    let stored_hourly = assert_stored_windows(
        &run,
        PIPELINE,
        "per_patient_1h",
        &hourly,
        |_, h| {
            vec![
                ("readings", int(h.readings)),
                ("avg_hr", opt_float(h.avg_hr)),
                ("max_hr", opt_int(h.max_hr)),
                ("min_spo2", opt_int(h.min_spo2)),
                ("max_systolic", opt_int(h.max_systolic)),
            ]
        },
        |_| EXACT,
    )
    .await?;
    let stored_six = assert_stored_windows(
        &run,
        PIPELINE,
        "adherence_6h",
        &six_hours,
        |_, a| vec![("readings", int(a.readings)), ("doses", int(a.doses))],
        |_| EXACT,
    )
    .await?;

    let mut expected = Expected::default();
    let tachycardia = change_rule(&hourly, |h, _| h.max_hr.is_some_and(|v| v > 120));
    expected.change(&run, "tachycardia", &hourly, &tachycardia);
    let low_spo2 = change_rule(&hourly, |h, _| h.min_spo2.is_some_and(|v| v < 90));
    expected.change(&run, "low_spo2", &hourly, &low_spo2);
    let crisis = change_rule(&hourly, |h, _| h.max_systolic.is_some_and(|v| v > 180));
    expected.change(&run, "hypertensive_crisis", &hourly, &crisis);
    let missed = close_rule(&six_hours, &reference, |a| a.readings > 0 && a.doses == 0);
    expected.close(&run, "missed_dose", &six_hours, &missed);
    for rule in [
        "tachycardia",
        "low_spo2",
        "hypertensive_crisis",
        "missed_dose",
    ] {
        assert!(expected.count(rule) > 0, "planted {rule} alerts");
    }
    let delivered = assert_delivered_alerts(&run, pipeline, &expected).await?;
    assert_eq!(delivered, expected.0.len());
    report(
        &run,
        PIPELINE,
        &[
            ("per_patient_1h", stored_hourly),
            ("adherence_6h", stored_six),
        ],
        &expected,
    );
    Ok(())
}

// ---- sentiment ---------------------------------------------------------------------------

struct Post {
    source: String,
    mood: f64,
}

struct SourceWindow {
    posts: usize,
    avg_sentiment: f64,
    negative: usize,
    positive: usize,
}

/// The oracle rounds compounds to 4 decimals (as Python's vaderSentiment does); the
/// engine's crate may not: both should agree within this.
const VADER_TOLERANCE: f64 = 1e-3;

fn source_window(rows: &[&Post]) -> SourceWindow {
    let n = rows.len();
    SourceWindow {
        posts: n,
        avg_sentiment: rows.iter().map(|p| p.mood).sum::<f64>() / n as f64,
        negative: rows.iter().filter(|p| p.mood <= -0.05).count(),
        positive: rows.iter().filter(|p| p.mood >= 0.05).count(),
    }
}

#[tokio::test]
async fn sentiment_per_source_and_a_negative_spike() -> Result<()> {
    const PIPELINE: &str = "sentiment";
    let run = ingest_generated("uc-sentiment", UseCase::Sentiment, &options(2000, 42)).await?;
    let pipeline = run.pipeline(PIPELINE, 15 * MINUTE);
    let vader = vader_parity::SentimentIntensityAnalyzer::new();
    // ts,post_id,source,text; the mood is the oracle's VADER compound of the text.
    let reference = Reference::read(&run.files, 15 * MINUTE, |r| {
        Some((utc_ms(&r[0])?, (r[2].to_owned(), r[3].to_owned())))
    })
    .map(|(source, text)| Post {
        source,
        mood: vader.polarity_scores(&text).compound,
    });
    let borderline = reference
        .rows()
        .filter(|(_, p)| (p.mood.abs() - 0.05).abs() < VADER_TOLERANCE)
        .count();
    let per_source = Windows::build(
        &reference,
        15 * MINUTE,
        |p| vec![p.source.clone()],
        source_window,
    );
    let cells: Vec<usize> = per_source.changed.iter().map(BTreeSet::len).collect();
    assert_file_figures(&run, &reference, &cells);

    // Counts are exact: no post scores within the oracle's tolerance of ±0.05, where
    // the engine's unrounded score could fall on the other side of a threshold.
    assert_eq!(
        borderline, 0,
        "posts scored within {VADER_TOLERANCE} of ±0.05"
    );
    let values = |_: &Cell, w: &SourceWindow| {
        vec![
            ("posts", int(w.posts)),
            ("avg_sentiment", MetricValue::Float(w.avg_sentiment)),
            ("negative", int(w.negative)),
            ("positive", int(w.positive)),
        ]
    };
    // Everything but the average first; the average is checked last (see below).
    let stored = assert_stored_windows(
        &run,
        PIPELINE,
        "per_source_15m",
        &per_source,
        values,
        |name| match name {
            "avg_sentiment" => Tolerance::Skip,
            _ => EXACT,
        },
    )
    .await?;

    // The alert compares the average with -0.3: a window within the oracle's tolerance
    // of it would make the expected set ambiguous.
    for after in &per_source.after {
        for (cell, w) in after {
            assert!(
                w.posts < 20 || (w.avg_sentiment + 0.3).abs() >= VADER_TOLERANCE,
                "{cell:?}: average {} too close to -0.3 to predict",
                w.avg_sentiment
            );
        }
    }
    let mut expected = Expected::default();
    let spikes = change_rule(&per_source, |w, _| w.posts >= 20 && w.avg_sentiment < -0.3);
    expected.change(&run, "negative_spike", &per_source, &spikes);
    assert!(
        expected.count("negative_spike") > 0,
        "planted outage alerts"
    );
    let delivered = assert_delivered_alerts(&run, pipeline, &expected).await?;
    assert_eq!(delivered, expected.0.len());
    report(&run, PIPELINE, &[("per_source_15m", stored)], &expected);

    // KNOWN FAILURE (product bug, kept on purpose): the engine's `sentiment()` uses
    // qsv_vader_sentiment_analysis 0.2.0, which departs from VADER (vaderSentiment 3.3.2,
    // matched by vader-parity): a single `?` adds 0.18 of emphasis (VADER: only 2 or
    // more) and a text with no sentiment words is pushed negative by it (VADER leaves a
    // zero sum alone), so "How do I turn on checkout?" scores -0.0464 instead of 0; a
    // few other templates differ by 0.01-0.05 too. Averages then miss by more than 1e-3.
    let mut off: Vec<(Cell, f64, f64)> = Vec::new();
    for (key, state) in run.stack.windows(PIPELINE, "per_source_15m").await? {
        let cell = (key.group.clone(), key.start_ms);
        let want = per_source.last()[&cell].avg_sentiment;
        let stored_avg = state.values().get(1).cloned();
        let got = match stored_avg {
            Some(MetricValue::Float(g)) => g,
            other => panic!("{cell:?}: avg_sentiment {other:?}"),
        };
        if (got - want).abs() > VADER_TOLERANCE {
            off.push((cell, got, want));
        }
    }
    let worst = off
        .iter()
        .map(|(_, g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    assert!(
        off.is_empty(),
        "avg_sentiment differs from VADER by more than {VADER_TOLERANCE} in {} of {stored} \
         windows (up to {worst:.4}), e.g. (window, stored, VADER) {:?}",
        off.len(),
        &off[..off.len().min(3)]
    );
    Ok(())
}
