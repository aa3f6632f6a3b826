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
    QueueRunner::new(aws_sdk_sqs::Client::new(&sdk), queue_url, &ingest)
        .run(idle, print_file)
        .await
        .map_err(|e| e.to_string())
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
    let mut from = now() - since_ms;
    let mut seen = std::collections::HashSet::new();
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
        found.sort_by_key(|a| a.detected_at_ms);
        for alert in found {
            if !seen.insert(alert.id.clone()) {
                continue;
            }
            from = from.max(alert.detected_at_ms);
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
