//! The subcommands that talk to AWS (or LocalStack, via `AWS_ENDPOINT_URL`): the local
//! runner, replay, and reading windows back. They use the same code as the Lambda.

use std::time::Duration;

use csvflow_aws::config::{build_ingest, load_catalog, s3_client, sdk_config, IngestSettings};
use csvflow_aws::dynamo::{DynamoStore, StoreConfig};
use csvflow_aws::ingest::FileSummary;
use csvflow_aws::runner::QueueRunner;
use csvflow_core::ports::ObjectRef;
use csvflow_core::{write_windows, CellKey, CellState};

use crate::Command;

/// Runs an AWS subcommand to completion on a fresh runtime.
pub fn run(command: Command) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,csvflow=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("cannot start tokio: {e}"))?;
    runtime.block_on(async move {
        match command {
            Command::Local {
                queue_url,
                exit_when_idle,
            } => local(&queue_url, exit_when_idle.map(Duration::from_secs)).await,
            Command::Ingest { objects, prefix } => ingest(objects, prefix).await,
            Command::Windows {
                pipeline,
                aggregate,
                key,
                from,
                to,
                format,
            } => {
                windows(
                    &pipeline,
                    aggregate.as_deref(),
                    key.as_deref(),
                    from.as_deref(),
                    to.as_deref(),
                    format.into(),
                )
                .await
            }
            Command::Alerts {
                pipeline,
                since,
                follow,
                json,
            } => alerts(pipeline.as_deref(), &since, follow, json).await,
            Command::Status { since } => status(&since).await,
            Command::Run { .. } => Err("`run` does not use AWS".to_owned()),
            Command::Dashboard(_) => Err("`dashboard` runs on its own".to_owned()),
            Command::Gen(_) => Err("`gen` does not use AWS".to_owned()),
        }
    })
}

fn print_file(summary: &FileSummary) {
    eprintln!(
        "{} {:?} pipeline={} rows={} bad={} late={} cells={} writes={} ms={}",
        summary.file,
        summary.status,
        summary.pipeline.as_deref().unwrap_or("-"),
        summary.rows,
        summary.bad,
        summary.late,
        summary.cells,
        summary.writes,
        summary.millis
    );
}

async fn local(queue_url: &str, idle: Option<Duration>) -> Result<(), String> {
    let settings = IngestSettings::from_env().map_err(|e| e.to_string())?;
    let sdk = sdk_config().await;
    let ingest = build_ingest(&sdk, &settings)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "csvflow local: polling {queue_url} for {} pipeline(s)",
        ingest.catalog().pipelines().len()
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(stop_on_signal(stop.clone()));
    QueueRunner::new(aws_sdk_sqs::Client::new(&sdk), queue_url, &ingest)
        .run_until(idle, &stop, print_file)
        .await
        .map_err(|e| e.to_string())
}

/// TERM or INT (Ctrl-C): the runner finishes the receive in flight and the files it
/// brought, then exits; killed mid-poll, it would leave SQS a waiting receive that takes the
/// next message and hides it for the visibility timeout (30 min). A second signal exits
/// at once.
async fn stop_on_signal(stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    eprintln!("csvflow local: stopping after the current poll (signal again to stop now)");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    std::process::exit(130);
}

fn parse_s3_uri(uri: &str) -> Result<(String, String), String> {
    uri.strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(bucket, key)| (bucket.to_owned(), key.to_owned()))
        .ok_or_else(|| format!("{uri:?} is not of the form s3://BUCKET/KEY"))
}

async fn ingest(objects: Vec<String>, prefix: Option<String>) -> Result<(), String> {
    let settings = IngestSettings::from_env().map_err(|e| e.to_string())?;
    let sdk = sdk_config().await;
    let ingest = build_ingest(&sdk, &settings)
        .await
        .map_err(|e| e.to_string())?;
    let mut targets = Vec::new();
    for uri in &objects {
        let (bucket, key) = parse_s3_uri(uri)?;
        targets.push(ObjectRef::new(bucket, key));
    }
    if let Some(prefix) = prefix {
        let (bucket, key_prefix) = parse_s3_uri(&prefix)?;
        let s3 = s3_client(&sdk);
        let mut pages = s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix(&key_prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|e| format!("cannot list {prefix}: {}", aws_sdk_s3::Error::from(e)))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    targets.push(ObjectRef::new(&bucket, key));
                }
            }
        }
    }
    if targets.is_empty() {
        return Err("nothing to ingest: give s3://BUCKET/KEY objects or --prefix".to_owned());
    }
    let mut failures = 0;
    for object in &targets {
        match ingest.ingest_object(object).await {
            Ok(summary) => print_file(&summary),
            Err(e) => {
                failures += 1;
                eprintln!("{}: failed: {e}", object.uri());
            }
        }
    }
    if failures > 0 {
        return Err(format!("{failures} of {} file(s) failed", targets.len()));
    }
    Ok(())
}

fn parse_time(text: &str) -> Result<i64, String> {
    let parser = csvflow_core::types::TimeParser {
        format: csvflow_core::types::TimeFormat::Rfc3339,
        tz: None,
    };
    parser
        .parse(text)
        .map_err(|reason| format!("{text:?}: {reason}"))
}

async fn windows(
    pipeline_name: &str,
    aggregate: Option<&str>,
    key: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    format: csvflow_core::OutputFormat,
) -> Result<(), String> {
    let settings = IngestSettings::from_env().map_err(|e| e.to_string())?;
    let sdk = sdk_config().await;
    let catalog = load_catalog(&s3_client(&sdk), &settings.pipelines_uri)
        .await
        .map_err(|e| e.to_string())?;
    let pipeline = catalog
        .pipeline(pipeline_name)
        .ok_or_else(|| format!("no pipeline named {pipeline_name:?}"))?;
    let aggregate = match aggregate {
        Some(name) => pipeline
            .aggregate(name)
            .ok_or_else(|| format!("pipeline {pipeline_name:?} has no aggregate {name:?}"))?,
        None => match pipeline.aggregates() {
            [only] => only,
            _ => {
                return Err(format!(
                    "pipeline {pipeline_name:?} has several aggregates: pass --aggregate"
                ))
            }
        },
    };
    let (from, to) = (
        from.map(parse_time).transpose()?,
        to.map(parse_time).transpose()?,
    );
    let group: Option<Vec<String>> = key.map(|k| k.split(',').map(str::to_owned).collect());
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        StoreConfig {
            windows_table: settings.windows_table.clone(),
            ledger_table: settings.ledger_table.clone(),
            retention: settings.retention,
        },
    );
    let stored = store
        .windows(pipeline.name(), aggregate.name(), group.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let cells: Vec<(CellKey, CellState)> = stored
        .into_iter()
        .filter(|w| {
            from.is_none_or(|f| w.key.start_ms >= f) && to.is_none_or(|t| w.key.start_ms < t)
        })
        .map(|w| (w.key, w.state))
        .collect();
    write_windows(
        aggregate,
        cells.iter().map(|(k, s)| (k, s)),
        format,
        std::io::stdout().lock(),
    )
    .map_err(|e| format!("cannot write windows: {e}"))
}

async fn alerts(
    pipeline: Option<&str>,
    since: &str,
    follow: bool,
    json: bool,
) -> Result<(), String> {
    let since_ms =
        csvflow_core::window::parse_duration(since).map_err(|e| format!("--since: {e}"))?;
    let settings = IngestSettings::from_env().map_err(|e| e.to_string())?;
    let sdk = sdk_config().await;
    let catalog = load_catalog(&s3_client(&sdk), &settings.pipelines_uri)
        .await
        .map_err(|e| e.to_string())?;
    let pipelines: Vec<String> = match pipeline {
        Some(name) if catalog.pipeline(name).is_none() => {
            return Err(format!("no pipeline named {name:?}"))
        }
        Some(name) => vec![name.to_owned()],
        None => catalog
            .pipelines()
            .iter()
            .map(|p| p.name().to_owned())
            .collect(),
    };
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), settings.store_config());
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    // An alert's `detected_at` is taken before its file commits, and the index is eventually
    // consistent: with concurrent files an older alert can become visible after a newer one.
    // So `--follow` re-reads the last FOLLOW_LOOKBACK_MS on every poll (not just from the
    // newest alert printed) and prints each alert id once.
    const FOLLOW_LOOKBACK_MS: i64 = 5 * 60 * 1000;
    let start = now() - since_ms;
    let mut from = start;
    let mut seen = std::collections::HashMap::new(); // alert id -> detected_at_ms
    loop {
        let mut found = Vec::new();
        for name in &pipelines {
            found.extend(
                store
                    .alerts_since(name, from)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        found.sort_by(|a, b| {
            (a.detected_at_ms, &a.files, a.line).cmp(&(b.detected_at_ms, &b.files, b.line))
        });
        for alert in found {
            if seen
                .insert(alert.id.clone(), alert.detected_at_ms)
                .is_some()
            {
                continue;
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&alert).map_err(|e| e.to_string())?
                );
            } else {
                println!("{}", alert.summary());
            }
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        from = start.max(now() - FOLLOW_LOOKBACK_MS);
        seen.retain(|_, detected_at| *detected_at >= from);
    }
}

/// One line per pipeline: files committed (and failed), rows, bad and late rows, stored
/// windows per aggregate, and alerts of the last `since`.
pub(crate) async fn status(since: &str) -> Result<(), String> {
    let since_ms =
        csvflow_core::window::parse_duration(since).map_err(|e| format!("--since: {e}"))?;
    let settings = IngestSettings::from_env().map_err(|e| e.to_string())?;
    let sdk = sdk_config().await;
    let catalog = load_catalog(&s3_client(&sdk), &settings.pipelines_uri)
        .await
        .map_err(|e| e.to_string())?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), settings.store_config());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    println!(
        "{:<18} {:>5} {:>8} {:>4} {:>4} {:>7} {:>6}  windows per aggregate",
        "pipeline", "files", "rows", "bad", "late", "windows", "alerts"
    );
    for pipeline in catalog.pipelines() {
        let name = pipeline.name();
        let files = store.files(name).await.map_err(|e| e.to_string())?;
        let done = files.iter().filter(|f| f.status == "done").count();
        let failed = files.iter().filter(|f| f.status == "failed").count();
        let sum = |f: fn(&csvflow_aws::dynamo::FileRecord) -> u64| files.iter().map(f).sum::<u64>();
        let mut per_aggregate = Vec::new();
        let mut windows = 0;
        for aggregate in pipeline.aggregates() {
            let n = store
                .windows(name, aggregate.name(), None)
                .await
                .map_err(|e| e.to_string())?
                .len();
            windows += n;
            per_aggregate.push(format!("{}={n}", aggregate.name()));
        }
        let alerts = store
            .alerts_since(name, now - since_ms)
            .await
            .map_err(|e| e.to_string())?
            .len();
        let files = if failed > 0 {
            format!("{done}+{failed}!")
        } else {
            done.to_string()
        };
        println!(
            "{name:<18} {files:>5} {:>8} {:>4} {:>4} {windows:>7} {alerts:>6}  {}",
            sum(|f| f.rows),
            sum(|f| f.bad),
            sum(|f| f.late),
            per_aggregate.join(" ")
        );
    }
    Ok(())
}
