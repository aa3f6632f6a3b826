//! The alert message csvflow delivers (SNS, EventBridge, `csvflow alerts`, dashboard):
//! built from the engine's row and window rule matches, with a stable id per breach —
//! per (pipeline, rule, key, window) for window rules, per (pipeline, rule, file, line)
//! for row rules — which is what makes "exactly one alert per breach" checkable.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::types::format_ts;
use crate::{CellChange, MetricValue, Pipeline, RowAlert, WindowAlert};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Window,
    Row,
}

/// A window's bounds, RFC 3339 UTC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertWindow {
    pub start: String,
    pub end: String,
}

/// One breach, as delivered. CSV values are carried as data (JSON strings), never markup.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertMessage {
    /// Stable id of the breach (hex): the same breach always gets the same id.
    pub id: String,
    pub kind: AlertKind,
    pub pipeline: String,
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<String>,
    /// Group-by column -> value (window rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<AlertWindow>,
    /// Metric values before and after the file that crossed the threshold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Map<String, Value>>,
    /// The matching row's columns (row rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The file(s) that triggered it.
    pub files: Vec<String>,
    /// Event time of the breach: the row's time, or the latest row of the window.
    pub event_time: String,
    /// When csvflow detected it.
    pub detected_at: String,
    /// `detected_at` in epoch milliseconds (for sorting and indexes).
    pub detected_at_ms: i64,
}

fn stable_id(parts: &[&str]) -> String {
    let mut text = String::new();
    for part in parts {
        text.push_str(part);
        text.push('\u{1f}');
    }
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

fn metric_json(value: &MetricValue) -> Value {
    match value {
        MetricValue::Null => Value::Null,
        MetricValue::Int(i) => Value::from(*i),
        MetricValue::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        MetricValue::Str(s) => Value::String(s.clone()),
        MetricValue::Bool(b) => Value::Bool(*b),
    }
}

fn metrics_json(values: &[(String, MetricValue)]) -> Map<String, Value> {
    values
        .iter()
        .map(|(name, value)| (name.clone(), metric_json(value)))
        .collect()
}

impl AlertMessage {
    /// The message for a window rule that the change made true.
    pub fn for_window(
        pipeline: &Pipeline,
        alert: &WindowAlert,
        change: &CellChange,
        file: &str,
        now_ms: i64,
    ) -> Self {
        let event_ms = if change.after.last_event_ms == i64::MIN {
            alert.key.start_ms
        } else {
            change.after.last_event_ms
        };
        Self::window(pipeline, alert, event_ms, file, now_ms)
    }

    /// The alert of an `on = "close"` rule; its event time is the window's end.
    pub fn for_closed_window(
        pipeline: &Pipeline,
        alert: &WindowAlert,
        file: &str,
        now_ms: i64,
    ) -> Self {
        Self::window(pipeline, alert, alert.key.end_ms, file, now_ms)
    }

    fn window(
        pipeline: &Pipeline,
        alert: &WindowAlert,
        event_ms: i64,
        file: &str,
        now_ms: i64,
    ) -> Self {
        let group_by = pipeline
            .aggregate(&alert.key.aggregate)
            .map(|a| a.group_by())
            .unwrap_or_default();
        let key: Map<String, Value> = group_by
            .iter()
            .zip(&alert.key.group)
            .map(|(column, value)| (column.clone(), Value::String(value.clone())))
            .collect();
        let start = format_ts(alert.key.start_ms);
        let mut id_parts = vec![
            pipeline.name(),
            alert.rule.as_str(),
            alert.key.aggregate.as_str(),
            start.as_str(),
        ];
        id_parts.extend(alert.key.group.iter().map(String::as_str));
        Self {
            id: stable_id(&id_parts),
            kind: AlertKind::Window,
            pipeline: pipeline.name().to_owned(),
            rule: alert.rule.clone(),
            aggregate: Some(alert.key.aggregate.clone()),
            key: Some(key),
            window: Some(AlertWindow {
                start,
                end: format_ts(alert.key.end_ms),
            }),
            before: Some(metrics_json(&alert.before)),
            after: Some(metrics_json(&alert.after)),
            row: None,
            line: None,
            files: vec![file.to_owned()],
            event_time: format_ts(event_ms),
            detected_at: format_ts(now_ms),
            detected_at_ms: now_ms,
        }
    }

    /// The message for a row that matched a row rule.
    pub fn for_row(pipeline: &Pipeline, alert: &RowAlert, file: &str, now_ms: i64) -> Self {
        let line = alert.line.to_string();
        Self {
            id: stable_id(&[pipeline.name(), alert.rule.as_str(), file, line.as_str()]),
            kind: AlertKind::Row,
            pipeline: pipeline.name().to_owned(),
            rule: alert.rule.clone(),
            aggregate: None,
            key: None,
            window: None,
            before: None,
            after: None,
            row: Some(
                alert
                    .row
                    .iter()
                    .map(|(column, value)| (column.clone(), Value::String(value.clone())))
                    .collect(),
            ),
            line: Some(alert.line),
            files: vec![file.to_owned()],
            event_time: format_ts(alert.event_ms),
            detected_at: format_ts(now_ms),
            detected_at_ms: now_ms,
        }
    }

    /// One line for people: `rule pipeline key window -> after`.
    pub fn summary(&self) -> String {
        let compact = |m: &Option<Map<String, Value>>| {
            m.as_ref().map(|m| Value::Object(m.clone()).to_string())
        };
        match self.kind {
            AlertKind::Window => format!(
                "{} {} {} window {} {} -> {}",
                self.detected_at,
                self.pipeline,
                self.rule,
                self.window.as_ref().map_or("", |w| w.start.as_str()),
                compact(&self.key).unwrap_or_default(),
                compact(&self.after).unwrap_or_default()
            ),
            AlertKind::Row => format!(
                "{} {} {} {} line {} {}",
                self.detected_at,
                self.pipeline,
                self.rule,
                self.files.join(","),
                self.line.unwrap_or_default(),
                compact(&self.row).unwrap_or_default()
            ),
        }
    }
}
