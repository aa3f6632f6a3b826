//! CloudWatch Embedded Metric Format: one JSON line per file on stdout, which Lambda
//! ships to CloudWatch Logs and CloudWatch turns into metrics (namespace `csvflow`).
//! Off unless running in Lambda or `CSVFLOW_EMF=1`, so local runs stay readable.

use std::sync::OnceLock;

use serde_json::json;

use crate::ingest::FileSummary;

fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
            || std::env::var("CSVFLOW_EMF").is_ok_and(|v| v == "1")
    })
}

fn timestamp_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Publishes a file's figures as metrics dimensioned by pipeline.
pub fn publish(summary: &FileSummary) {
    if !enabled() {
        return;
    }
    let count = |name: &str| json!({"Name": name, "Unit": "Count"});
    let line = json!({
        "_aws": {
            "Timestamp": timestamp_ms(),
            "CloudWatchMetrics": [{
                "Namespace": "csvflow",
                "Dimensions": [["pipeline"]],
                "Metrics": [count("files"), count("rows"), count("bad_rows"), count("late_rows"),
                    count("cells"), count("writes"), {"Name": "bytes", "Unit": "Bytes"},
                    {"Name": "duration", "Unit": "Milliseconds"}]
            }]
        },
        "pipeline": summary.pipeline.as_deref().unwrap_or("unrouted"),
        "status": summary.status,
        "file": summary.file,
        "files": 1,
        "rows": summary.rows,
        "bad_rows": summary.bad,
        "late_rows": summary.late,
        "cells": summary.cells,
        "writes": summary.writes,
        "bytes": summary.bytes,
        "duration": summary.millis,
    });
    println!("{line}");
}

/// Publishes one failed file attempt.
pub fn publish_failure(file: &str) {
    if !enabled() {
        return;
    }
    let line = json!({
        "_aws": {
            "Timestamp": timestamp_ms(),
            "CloudWatchMetrics": [{"Namespace": "csvflow", "Dimensions": [[]],
                "Metrics": [{"Name": "failed_files", "Unit": "Count"}]}]
        },
        "file": file,
        "failed_files": 1,
    });
    println!("{line}");
}
