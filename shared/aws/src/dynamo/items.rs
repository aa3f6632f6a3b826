//! How windows and ledger records are laid out as DynamoDB items (one place, so the
//! store, the CLI's `windows` reader and the feeds agree).
//!
//! Windows table: `pk` = `<pipeline>#<aggregate>#<group values joined by U+001F>`,
//! `sk` = window start as a sortable hex string. Each item keeps the mergeable partial
//! (`state`, JSON), the finished metric values (`metrics`, a map, for people and
//! dashboards), a `version` for optimistic concurrency and `expires_at` for TTL.
//! Ledger table: `pk` = `file#<pipeline>#s3://<bucket>/<key>#<revision>` with `sk` =
//! `file` (status, watermark) and `chunk#NNNNNN` (one per committed chunk);
//! `pk` = `watermark#<pipeline>`, `sk` = `watermark` holds the max event time seen.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use csvflow_core::ports::ObjectRef;
use csvflow_core::{Aggregate, CellKey, CellState, MetricValue, Pipeline};

pub type Item = HashMap<String, AttributeValue>;

/// Separates group-by values inside a partition key.
pub const GROUP_SEPARATOR: char = '\u{1f}';

/// Partition key of an aggregate's group.
pub fn window_pk(pipeline: &str, aggregate: &str, group: &[String]) -> String {
    let mut pk = format!("{pipeline}#{aggregate}#");
    for (i, value) in group.iter().enumerate() {
        if i > 0 {
            pk.push(GROUP_SEPARATOR);
        }
        pk.push_str(value);
    }
    pk
}

/// Sort key: the window start, as hex that sorts like the signed number.
pub fn window_sk(start_ms: i64) -> String {
    format!("{:016x}", (start_ms as u64) ^ (1 << 63))
}

/// The `agg` attribute that lets one aggregate's windows be listed.
pub fn aggregate_tag(pipeline: &str, aggregate: &str) -> String {
    format!("{pipeline}#{aggregate}")
}

/// Index of the windows table: `agg` (hash) + `sk` (range), latest windows first.
pub const AGGREGATE_INDEX: &str = "by-aggregate";
/// Index of the ledger table: `alerts_pk` (hash) + `detected_at` (range).
pub const ALERTS_INDEX: &str = "alerts-by-time";

pub fn alerts_pk(pipeline: &str) -> String {
    format!("alerts#{pipeline}")
}

pub fn file_pk(pipeline: &str, file: &ObjectRef) -> String {
    format!("file#{pipeline}#{}#{}", file.uri(), file.revision())
}

pub fn chunk_sk(index: usize) -> String {
    format!("chunk#{index:06}")
}

pub fn watermark_pk(pipeline: &str) -> String {
    format!("watermark#{pipeline}")
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn metric_attribute(value: &MetricValue) -> AttributeValue {
    match value {
        MetricValue::Null => AttributeValue::Null(true),
        MetricValue::Int(i) => n(i),
        MetricValue::Float(f) if f.is_finite() => n(f),
        MetricValue::Float(f) => s(f.to_string()),
        MetricValue::Str(text) => s(text.clone()),
        MetricValue::Bool(b) => AttributeValue::Bool(*b),
    }
}

/// A stored window as read back: its key, its partial, and the version it was read at.
#[derive(Clone, Debug)]
pub struct StoredWindow {
    pub key: CellKey,
    pub state: CellState,
    pub version: u64,
}

/// Everything needed to write one window item.
pub struct WindowItem<'a> {
    pub pipeline: &'a Pipeline,
    pub aggregate: &'a Aggregate,
    pub key: &'a CellKey,
    pub state: &'a CellState,
    pub version: u64,
    pub expires_at: i64,
    pub file: &'a str,
}

impl WindowItem<'_> {
    pub fn to_item(&self) -> Result<Item, serde_json::Error> {
        let metrics: HashMap<String, AttributeValue> = self
            .aggregate
            .named_values(self.key, self.state)
            .into_iter()
            .map(|(name, value)| (name, metric_attribute(&value)))
            .collect();
        let pipeline = self.pipeline.name();
        Ok(HashMap::from([
            (
                "pk".into(),
                s(window_pk(pipeline, &self.key.aggregate, &self.key.group)),
            ),
            ("sk".into(), s(window_sk(self.key.start_ms))),
            (
                "agg".into(),
                s(aggregate_tag(pipeline, &self.key.aggregate)),
            ),
            ("pipeline".into(), s(pipeline)),
            ("aggregate".into(), s(self.key.aggregate.clone())),
            (
                "group".into(),
                AttributeValue::L(self.key.group.iter().map(|g| s(g.clone())).collect()),
            ),
            ("window_start".into(), n(self.key.start_ms)),
            ("window_end".into(), n(self.key.end_ms)),
            ("metrics".into(), AttributeValue::M(metrics)),
            ("state".into(), s(serde_json::to_string(self.state)?)),
            (
                "reopened".into(),
                AttributeValue::Bool(self.state.reopened()),
            ),
            ("version".into(), n(self.version)),
            ("expires_at".into(), n(self.expires_at)),
            ("last_file".into(), s(self.file)),
        ]))
    }
}

/// Why a stored item could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("stored window {pk}/{sk} is unreadable: {reason}")]
pub struct CorruptItem {
    pub pk: String,
    pub sk: String,
    pub reason: String,
}

fn attr_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn attr_n<T: std::str::FromStr>(item: &Item, name: &str) -> Option<T> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// Reads a window item back into its key and partial.
pub fn read_window(item: &Item) -> Result<StoredWindow, CorruptItem> {
    let corrupt = |reason: &str| CorruptItem {
        pk: attr_s(item, "pk").unwrap_or("?").to_owned(),
        sk: attr_s(item, "sk").unwrap_or("?").to_owned(),
        reason: reason.to_owned(),
    };
    let aggregate = attr_s(item, "aggregate").ok_or_else(|| corrupt("no aggregate"))?;
    let group = item
        .get("group")
        .and_then(|g| g.as_l().ok())
        .ok_or_else(|| corrupt("no group"))?
        .iter()
        .map(|v| {
            v.as_s()
                .cloned()
                .map_err(|_| corrupt("group value is not a string"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start_ms = attr_n(item, "window_start").ok_or_else(|| corrupt("no window_start"))?;
    let end_ms = attr_n(item, "window_end").ok_or_else(|| corrupt("no window_end"))?;
    let version = attr_n(item, "version").ok_or_else(|| corrupt("no version"))?;
    let state_json = attr_s(item, "state").ok_or_else(|| corrupt("no state"))?;
    let state: CellState =
        serde_json::from_str(state_json).map_err(|e| corrupt(&format!("bad state: {e}")))?;
    Ok(StoredWindow {
        key: CellKey {
            aggregate: aggregate.to_owned(),
            group,
            start_ms,
            end_ms,
        },
        state,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_sort_like_the_numbers() {
        let mut starts = [
            -5_000i64,
            0,
            60_000,
            -1,
            i64::MAX,
            i64::MIN,
            1_795_132_800_000,
        ];
        let mut keys: Vec<String> = starts.iter().map(|s| window_sk(*s)).collect();
        starts.sort();
        keys.sort();
        assert_eq!(
            keys,
            starts.iter().map(|s| window_sk(*s)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn partition_keys_separate_group_values() {
        assert_eq!(
            window_pk("p", "a", &["x".into(), "y".into()]),
            "p#a#x\u{1f}y"
        );
        assert_eq!(window_pk("p", "a", &[]), "p#a#");
    }
}
