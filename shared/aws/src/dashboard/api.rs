//! The JSON endpoints. Windows are rendered by `csvflow_core::write_windows`, exactly as
//! `csvflow windows --format json` prints them; reads go to the windows table (one
//! key: Query on `pk`), its `by-aggregate` index (latest windows across keys) and the
//! ledger table's `alerts-by-time` index.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_smithy_types::error::display::DisplayErrorContext;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use csvflow_core::window::{parse_duration, WindowSpec};
use csvflow_core::{write_windows, Aggregate, CellKey, CellState, OutputFormat, Pipeline};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{json, ApiError};
use super::Dashboard;
use crate::dynamo::items::{self, Item};
use crate::dynamo::{DynamoStore, StoreConfig};

/// Most items one request reads from an index (bounds latency and cost).
const MAX_ITEMS: usize = 20_000;
const WINDOWS_INDEX: &str = "by-aggregate";
const ALERTS_INDEX: &str = "alerts-by-time";

type Cells = Vec<(CellKey, CellState)>;

fn store_error(operation: &str, table: &str, e: impl Into<aws_sdk_dynamodb::Error>) -> ApiError {
    ApiError::Store(format!(
        "DynamoDB {operation} on {table} failed: {}",
        DisplayErrorContext(e.into())
    ))
}

fn render(agg: &Aggregate, cells: &Cells) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    write_windows(
        agg,
        cells.iter().map(|(k, s)| (k, s)),
        OutputFormat::Json,
        &mut out,
    )
    .map_err(|e| ApiError::Store(format!("cannot render windows: {e}")))?;
    Ok(out)
}

fn render_values(agg: &Aggregate, cells: &Cells) -> Result<Vec<Value>, ApiError> {
    serde_json::from_slice(&render(agg, cells)?)
        .map_err(|e| ApiError::Store(format!("cannot re-read rendered windows: {e}")))
}

fn to_body(value: &Value) -> Vec<u8> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    body
}

fn pipeline_of<'c>(app: &'c Dashboard, name: Option<&str>) -> Result<&'c Pipeline, ApiError> {
    let name = name.ok_or_else(|| ApiError::BadRequest("pipeline= is required".into()))?;
    app.catalog
        .pipeline(name)
        .ok_or_else(|| ApiError::NotFound(format!("no pipeline named {name:?}")))
}

fn aggregate_of<'p>(pipeline: &'p Pipeline, name: Option<&str>) -> Result<&'p Aggregate, ApiError> {
    match name {
        Some(name) => pipeline.aggregate(name).ok_or_else(|| {
            ApiError::NotFound(format!(
                "pipeline {:?} has no aggregate {name:?}",
                pipeline.name()
            ))
        }),
        None => match pipeline.aggregates() {
            [only] => Ok(only),
            _ => Err(ApiError::BadRequest(format!(
                "pipeline {:?} has several aggregates: pass aggregate=",
                pipeline.name()
            ))),
        },
    }
}

fn number(text: Option<&str>, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
    match text {
        None => Ok(default),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "{name}={t:?}: expected a whole number from 1 to {max}"
            ))),
        },
    }
}

fn window_json(spec: WindowSpec) -> Value {
    match spec {
        WindowSpec::Tumbling { size_ms } => json!({"kind": "tumbling", "size_ms": size_ms}),
        WindowSpec::Hopping { size_ms, every_ms } => {
            json!({"kind": "hopping", "size_ms": size_ms, "every_ms": every_ms})
        }
        WindowSpec::Session { gap_ms } => json!({"kind": "session", "gap_ms": gap_ms}),
    }
}

/// `GET /api/pipelines`: the catalog — pipelines, their aggregates, metrics and rules.
pub(super) async fn pipelines(State(app): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    let pipelines: Vec<Value> = app
        .catalog
        .pipelines()
        .iter()
        .map(|p| {
            json!({
                "name": p.name(),
                "match": p.match_glob(),
                "aggregates": p.aggregates().iter().map(|a| json!({
                    "name": a.name(),
                    "group_by": a.group_by(),
                    "window": window_json(a.window()),
                    "metrics": a.metrics().iter().map(|m| json!({
                        "name": m.name,
                        "source": m.source,
                    })).chain(a.derived().iter().map(|d| json!({
                        "name": d.name,
                        "source": d.source,
                        "derived": true,
                    }))).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "alerts": p.window_rules().iter().map(|r| json!({
                    "name": r.name, "kind": "window", "aggregate": r.aggregate, "when": r.source,
                })).chain(p.row_rules().iter().map(|r| json!({
                    "name": r.name, "kind": "row", "when": r.source,
                }))).collect::<Vec<_>>(),
            })
        })
        .collect();
    json(&headers, to_body(&json!({ "pipelines": pipelines })))
}

#[derive(Deserialize)]
pub(super) struct WindowsQuery {
    pipeline: Option<String>,
    aggregate: Option<String>,
    key: Option<String>,
}

/// The group values of `key`: the whole text for one group-by column, comma-separated
/// values for several (like `csvflow windows --key`), nothing for none.
fn group_of(agg: &Aggregate, key: Option<&str>) -> Result<Vec<String>, ApiError> {
    match (agg.group_by().len(), key) {
        (0, None | Some("")) => Ok(Vec::new()),
        (0, Some(_)) => Err(ApiError::BadRequest(format!(
            "aggregate {:?} has no group-by columns: leave key= out",
            agg.name()
        ))),
        (_, None) => Err(ApiError::BadRequest(format!(
            "key= is required: aggregate {:?} groups by {}",
            agg.name(),
            agg.group_by().join(",")
        ))),
        (1, Some(k)) => Ok(vec![k.to_owned()]),
        (n, Some(k)) => {
            let group: Vec<String> = k.split(',').map(str::to_owned).collect();
            if group.len() != n {
                return Err(ApiError::BadRequest(format!(
                    "key={k:?}: aggregate {:?} groups by {} columns ({}), comma-separated",
                    agg.name(),
                    n,
                    agg.group_by().join(",")
                )));
            }
            Ok(group)
        }
    }
}

/// `GET /api/windows?pipeline=P&aggregate=A&key=K`: every stored window of one key, as
/// `csvflow windows --format json` prints them.
pub(super) async fn windows(
    State(app): State<Arc<Dashboard>>,
    Query(q): Query<WindowsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pipeline = pipeline_of(&app, q.pipeline.as_deref())?;
    let agg = aggregate_of(pipeline, q.aggregate.as_deref())?;
    let group = group_of(agg, q.key.as_deref())?;
    let store = DynamoStore::new(
        app.dynamodb.clone(),
        StoreConfig {
            windows_table: app.windows_table.clone(),
            ledger_table: app.ledger_table.clone(),
            retention: std::time::Duration::ZERO,
        },
    );
    let cells: Cells = store
        .windows(pipeline.name(), agg.name(), Some(&group))
        .await
        .map_err(|e| ApiError::Store(e.to_string()))?
        .into_iter()
        .map(|w| (w.key, w.state))
        .collect();
    Ok(json(&headers, render(agg, &cells)?))
}

/// Reads items of the `by-aggregate` index, newest window first, until `enough` says
/// stop (or [`MAX_ITEMS`]). Returns the items and whether the read was cut short.
async fn latest_items(
    app: &Dashboard,
    tag: &str,
    exact_sk: Option<&str>,
    mut enough: impl FnMut(&Item) -> bool,
) -> Result<(Vec<Item>, bool), ApiError> {
    let table = &app.windows_table;
    let mut found = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let mut query = app
            .dynamodb
            .query()
            .table_name(table)
            .index_name(WINDOWS_INDEX)
            .expression_attribute_values(":agg", items::s(tag))
            .scan_index_forward(false)
            .set_exclusive_start_key(start.take());
        query = match exact_sk {
            Some(sk) => query
                .key_condition_expression("agg = :agg AND sk = :sk")
                .expression_attribute_values(":sk", items::s(sk)),
            None => query.key_condition_expression("agg = :agg"),
        };
        let page = query
            .send()
            .await
            .map_err(|e| store_error("Query", table, e))?;
        for item in page.items.unwrap_or_default() {
            if enough(&item) {
                return Ok((found, false));
            }
            found.push(item);
            if found.len() >= MAX_ITEMS {
                return Ok((found, true));
            }
        }
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok((found, false)),
        }
    }
}

fn decode(items: &[Item]) -> Result<Cells, ApiError> {
    items
        .iter()
        .map(|item| {
            items::read_window(item)
                .map(|w| (w.key, w.state))
                .map_err(|e| ApiError::Store(e.to_string()))
        })
        .collect()
}

#[derive(Deserialize)]
pub(super) struct TopQuery {
    pipeline: Option<String>,
    aggregate: Option<String>,
    metric: Option<String>,
    n: Option<String>,
}

/// `GET /api/top?pipeline=P&aggregate=A&metric=M&n=10`: the keys of the latest window,
/// highest `M` first (nulls last).
pub(super) async fn top(
    State(app): State<Arc<Dashboard>>,
    Query(q): Query<TopQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pipeline = pipeline_of(&app, q.pipeline.as_deref())?;
    let agg = aggregate_of(pipeline, q.aggregate.as_deref())?;
    let names = agg.output_names();
    let metric = match q.metric.as_deref() {
        Some(m) if names.contains(&m) => m.to_owned(),
        Some(m) => {
            return Err(ApiError::NotFound(format!(
                "aggregate {:?} has no metric {m:?} (it has {})",
                agg.name(),
                names.join(", ")
            )))
        }
        None => names.first().map(|m| (*m).to_owned()).unwrap_or_default(),
    };
    let n = number(q.n.as_deref(), "n", 10, 1000)?;
    let tag = items::aggregate_tag(pipeline.name(), agg.name());
    let (newest, _) = latest_items(&app, &tag, None, {
        let mut seen = 0;
        move |_| {
            seen += 1;
            seen > 1
        }
    })
    .await?;
    let latest_sk = newest
        .first()
        .and_then(|i| i.get("sk"))
        .and_then(|v| v.as_s().ok())
        .cloned();
    let (cells, truncated) = match &latest_sk {
        None => (Vec::new(), false),
        Some(sk) => {
            let (items, truncated) = latest_items(&app, &tag, Some(sk), |_| false).await?;
            (decode(&items)?, truncated)
        }
    };
    let (start, end) = cells.iter().fold((None, None), |(s, e), (k, _)| {
        (
            Some(s.map_or(k.start_ms, |s: i64| s.min(k.start_ms))),
            Some(e.map_or(k.end_ms, |e: i64| e.max(k.end_ms))),
        )
    });
    let mut rows = render_values(agg, &cells)?;
    // Stable: equal values keep the group-key order write_windows gave them.
    rows.sort_by(|a, b| {
        let (x, y) = (a[&metric].as_f64(), b[&metric].as_f64());
        match (x, y) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    });
    let keys = rows.len();
    rows.truncate(n);
    Ok(json(
        &headers,
        to_body(&json!({
            "pipeline": pipeline.name(),
            "aggregate": agg.name(),
            "group_by": agg.group_by(),
            "metric": metric,
            "window_start": start.map(csvflow_core::types::format_ts),
            "window_end": end.map(csvflow_core::types::format_ts),
            "keys": keys,
            "truncated": truncated,
            "top": rows,
        })),
    ))
}

#[derive(Deserialize)]
pub(super) struct SeriesQuery {
    pipeline: Option<String>,
    aggregate: Option<String>,
    windows: Option<String>,
}

/// `GET /api/series?pipeline=P&aggregate=A[&windows=30]`: the latest windows over time,
/// oldest first; per window start, the partials of all keys merged (counts and sums
/// add up, max/min/mean/distinct combine exactly), and how many keys it had.
pub(super) async fn series(
    State(app): State<Arc<Dashboard>>,
    Query(q): Query<SeriesQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pipeline = pipeline_of(&app, q.pipeline.as_deref())?;
    let agg = aggregate_of(pipeline, q.aggregate.as_deref())?;
    let limit = number(q.windows.as_deref(), "windows", 30, 1000)?;
    let tag = items::aggregate_tag(pipeline.name(), agg.name());
    let mut starts: Vec<String> = Vec::new();
    let (items, truncated) = latest_items(&app, &tag, None, |item| {
        let sk = item.get("sk").and_then(|v| v.as_s().ok());
        match sk {
            Some(sk) if starts.last() == Some(sk) => false,
            Some(sk) => {
                starts.push(sk.clone());
                starts.len() > limit
            }
            None => false,
        }
    })
    .await?;
    let mut merged: BTreeMap<i64, (CellKey, CellState, usize)> = BTreeMap::new();
    for (key, state) in decode(&items)? {
        match merged.get_mut(&key.start_ms) {
            Some((k, s, n)) => {
                k.end_ms = k.end_ms.max(key.end_ms);
                s.merge(&state);
                *n += 1;
            }
            None => {
                let k = CellKey {
                    aggregate: key.aggregate,
                    group: Vec::new(),
                    start_ms: key.start_ms,
                    end_ms: key.end_ms,
                };
                merged.insert(key.start_ms, (k, state, 1));
            }
        }
    }
    let keys: Vec<usize> = merged.values().map(|(_, _, n)| *n).collect();
    let cells: Cells = merged.into_values().map(|(k, s, _)| (k, s)).collect();
    let windows = render_values(agg, &cells)?;
    Ok(json(
        &headers,
        to_body(&json!({
            "pipeline": pipeline.name(),
            "aggregate": agg.name(),
            "group_by": agg.group_by(),
            "metrics": agg.output_names(),
            "windows": windows,
            "keys": keys,
            "truncated": truncated,
        })),
    ))
}

#[derive(Deserialize)]
pub(super) struct AlertsQuery {
    pipeline: Option<String>,
    since: Option<String>,
    limit: Option<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `GET /api/alerts?pipeline=P&since=1h[&limit=100]`: alerts detected since then,
/// newest first, each with its status and the alert message as published.
pub(super) async fn alerts(
    State(app): State<Arc<Dashboard>>,
    Query(q): Query<AlertsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let pipeline = pipeline_of(&app, q.pipeline.as_deref())?;
    let since = q.since.as_deref().unwrap_or("24h");
    let since_ms =
        parse_duration(since).map_err(|e| ApiError::BadRequest(format!("since: {e}")))?;
    let limit = number(q.limit.as_deref(), "limit", 100, 1000)?;
    let from = now_ms().saturating_sub(since_ms);
    let table = &app.ledger_table;
    let out = app
        .dynamodb
        .query()
        .table_name(table)
        .index_name(ALERTS_INDEX)
        .key_condition_expression("alerts_pk = :pk AND detected_at >= :from")
        .expression_attribute_values(":pk", items::s(format!("alerts#{}", pipeline.name())))
        .expression_attribute_values(":from", items::n(from))
        .scan_index_forward(false)
        .limit(limit as i32)
        .send()
        .await
        .map_err(|e| store_error("Query", table, e))?;
    let alerts: Vec<Value> = out
        .items()
        .iter()
        .map(|item| {
            let text = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
            };
            let detected_at = item
                .get("detected_at")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok());
            let alert = text("payload")
                .map(|p| serde_json::from_str::<Value>(p).unwrap_or_else(|_| Value::from(p)));
            json!({
                "detected_at": detected_at,
                "status": text("status"),
                "alert": alert,
            })
        })
        .collect();
    Ok(json(
        &headers,
        to_body(&json!({
            "pipeline": pipeline.name(),
            "since_ms": from,
            "alerts": alerts,
        })),
    ))
}
