//! Pipeline definitions: the TOML format, its validation (before any data is read), and
//! the compiled `Catalog` / `Pipeline` / `Aggregate` used by the engine.
//!
//! Every validation error is one line naming the pipeline, the key and the problem, e.g.
//! `pipeline "card-transactions": aggregate "per_card_10m" metric "total": unknown column "amout"`.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::engine::CellKey;
use crate::expr::{Expr, ListScope, Type};
use crate::metrics::{CellState, MetricSpec, MetricValue};
use crate::resources::{FileLoader, LookupTable, Model, NoFiles, Resources};
use crate::types::{ColumnType, TimeFormat, TimeParser, Val};
use crate::window::{parse_duration, WindowSpec};

/// A pipeline definition error (one line).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DefinitionError {
    /// The text is not valid TOML.
    #[error("pipeline definitions: line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// The TOML is valid but a definition is not.
    #[error("{}", fmt_invalid(pipeline, at, message))]
    Invalid {
        /// The pipeline's name (or `#N` when it has none).
        pipeline: String,
        /// Where in the pipeline, e.g. `aggregate "per_card_10m" metric "total"` (may be empty).
        at: String,
        message: String,
    },
}

fn fmt_invalid(pipeline: &str, at: &str, message: &str) -> String {
    if at.is_empty() {
        format!("pipeline \"{pipeline}\": {message}")
    } else {
        format!("pipeline \"{pipeline}\": {at}: {message}")
    }
}

/// What to do with a bad row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadRowPolicy {
    /// Keep it (file, line, offset, reason, record) in the report.
    Quarantine,
    /// Count it and move on.
    Skip,
    /// Fail the file.
    Fail,
}

/// What to do with a row older than the watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatePolicy {
    /// Count it and leave it out.
    Drop,
    /// Count it, aggregate it, and mark the cells it touches `reopened`.
    Update,
}

/// Input compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// By file extension (.gz, .zst) or magic bytes.
    Auto,
    None,
    Gzip,
    Zstd,
}

/// The CSV dialect of a pipeline (`[pipeline.csv]`).
#[derive(Clone, Debug, PartialEq)]
pub struct Dialect {
    pub header: bool,
    pub delimiter: u8,
    /// `None` disables quoting.
    pub quote: Option<u8>,
    pub escape: Option<u8>,
    pub comment: Option<u8>,
    /// A field equal to this text is null (default: the empty field).
    pub null: String,
    /// Column names by position when `header = false`.
    pub file_columns: Option<Vec<String>>,
    pub compression: Compression,
    pub on_bad_row: BadRowPolicy,
}

/// A declared column.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

/// Event time configuration (`[pipeline.time]`).
#[derive(Clone, Debug)]
pub struct TimeConfig {
    pub column: String,
    /// Index of the time column among the declared columns.
    pub slot: usize,
    pub parser: TimeParser,
    pub allowed_lateness_ms: i64,
    pub late: LatePolicy,
}

/// A compiled aggregate (`[[pipeline.aggregate]]`).
#[derive(Clone, Debug)]
pub struct Aggregate {
    pub(crate) name: String,
    pub(crate) group_by: Vec<String>,
    /// Declared-column indexes of the group-by columns.
    pub(crate) group_slots: Vec<usize>,
    pub(crate) window: WindowSpec,
    pub(crate) metrics: Vec<MetricSpec>,
    /// `[pipeline.aggregate.derived]`: values computed from a window's metrics.
    pub(crate) derived: Vec<DerivedMetric>,
}

/// A per-row computed column (`[pipeline.derive]`), evaluated after the declared columns;
/// its slot in the row follows them, in definition order.
#[derive(Clone, Debug)]
pub struct DerivedColumn {
    pub name: String,
    pub source: String,
    pub expr: Expr,
}

/// A value computed from a window's metrics (`[pipeline.aggregate.derived]`), e.g.
/// `surge = "clamp(double(requests) / max(double(drivers), 1.0), 1.0, 3.0)"`. It is not
/// stored as a partial: it is recomputed from the merged metrics whenever a window is
/// output or checked by a rule, so it is always consistent with them.
#[derive(Clone, Debug)]
pub struct DerivedMetric {
    pub name: String,
    pub source: String,
    pub expr: Expr,
}

impl Aggregate {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn group_by(&self) -> &[String] {
        &self.group_by
    }
    pub fn metric_names(&self) -> Vec<&str> {
        self.metrics.iter().map(|m| m.name.as_str()).collect()
    }
    pub fn is_session(&self) -> bool {
        self.window.is_session()
    }
    pub fn window(&self) -> WindowSpec {
        self.window
    }
    pub fn metrics(&self) -> &[MetricSpec] {
        &self.metrics
    }
    pub fn derived(&self) -> &[DerivedMetric] {
        &self.derived
    }
    /// The output columns of a window: metrics, then derived values.
    pub fn output_names(&self) -> Vec<&str> {
        self.metrics
            .iter()
            .map(|m| m.name.as_str())
            .chain(self.derived.iter().map(|d| d.name.as_str()))
            .collect()
    }
    /// A window's output values: its metrics, then its derived values.
    pub fn output_values(&self, key: &CellKey, cell: &CellState) -> Vec<MetricValue> {
        let row = self.scope_row(key, cell, None);
        let mut out = cell.values();
        let m = self.metrics.len();
        out.extend((0..self.derived.len()).map(|i| MetricValue::from(row[m + i].clone())));
        out
    }
    /// Output names with their values.
    pub fn named_values(&self, key: &CellKey, cell: &CellState) -> Vec<(String, MetricValue)> {
        self.output_names()
            .into_iter()
            .map(str::to_string)
            .zip(self.output_values(key, cell))
            .collect()
    }
    /// The step back to the previous window of the same key (`prev.` in rules):
    /// the size for tumbling windows, `every` for hopping ones; none for sessions.
    pub fn previous_window_step_ms(&self) -> Option<i64> {
        match self.window {
            WindowSpec::Tumbling { size_ms } => Some(size_ms),
            WindowSpec::Hopping { every_ms, .. } => Some(every_ms),
            WindowSpec::Session { .. } => None,
        }
    }
    /// The key of the previous window of a cell's group, for `prev.` in rules.
    pub fn previous_key(&self, key: &CellKey) -> Option<CellKey> {
        let step = self.previous_window_step_ms()?;
        Some(CellKey {
            aggregate: key.aggregate.clone(),
            group: key.group.clone(),
            start_ms: key.start_ms - step,
            end_ms: key.end_ms - step,
        })
    }
    /// The row window rules and derived values see, laid out as [`Self::window_scope`]:
    /// metrics, derived values, group-by values, window bounds, then the previous
    /// window's metrics and derived values (null without a previous window).
    pub fn scope_row<'a>(
        &'a self,
        key: &'a CellKey,
        cell: &'a CellState,
        previous: Option<&'a CellState>,
    ) -> Vec<Val<'a>> {
        let mut row = cell.typed_values();
        self.push_derived(&mut row);
        row.extend(key.group.iter().map(|g| Val::Str(g.as_str().into())));
        row.push(Val::Ts(key.start_ms));
        row.push(Val::Ts(key.end_ms));
        let width = self.metrics.len() + self.derived.len();
        match previous {
            Some(p) => {
                let mut prev = p.typed_values();
                // Derived values of the previous window see its metrics in the same slots.
                self.push_derived(&mut prev);
                row.extend(prev);
            }
            None => row.extend(std::iter::repeat_n(Val::Null, width)),
        }
        row
    }
    /// Appends the derived values to a row holding a window's metric values.
    pub(crate) fn push_derived<'a>(&'a self, row: &mut Vec<Val<'a>>) {
        for d in &self.derived {
            let v = d.expr.eval(row).into_owned();
            row.push(v);
        }
    }
    /// Whether any window rule of this aggregate reads `prev.`.
    pub fn rules_read_previous(&self, pipeline: &Pipeline) -> bool {
        pipeline
            .window_rules
            .iter()
            .any(|r| r.aggregate == self.name && r.reads_previous)
    }
    /// The session gap, for session aggregates.
    pub fn session_gap_ms(&self) -> Option<i64> {
        match self.window {
            WindowSpec::Session { gap_ms } => Some(gap_ms),
            _ => None,
        }
    }
    /// Names visible to window rules: metrics, derived values, group-by columns,
    /// `window_start` / `window_end`, then `prev.<metric>` / `prev.<derived>` for windows
    /// that have a previous one.
    pub(crate) fn window_scope(&self) -> Vec<(String, Type)> {
        let own: Vec<(String, Type)> = self
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.out_ty))
            .chain(self.derived.iter().map(|d| (d.name.clone(), d.expr.ty())))
            .collect();
        let mut v = own.clone();
        v.extend(self.group_by.iter().map(|g| (g.clone(), Type::Str)));
        v.push(("window_start".into(), Type::Ts));
        v.push(("window_end".into(), Type::Ts));
        if self.previous_window_step_ms().is_some() {
            v.extend(own.into_iter().map(|(n, t)| (format!("prev.{n}"), t)));
        }
        v
    }
}

/// A per-row alert rule.
#[derive(Clone, Debug)]
pub struct RowRule {
    pub name: String,
    pub source: String,
    pub cond: Expr,
}

/// A per-window alert rule.
#[derive(Clone, Debug)]
pub struct WindowRule {
    pub name: String,
    pub aggregate: String,
    pub source: String,
    pub cond: Expr,
    /// When the rule is checked.
    pub on: RuleTrigger,
    /// After an alert, no alert of this rule for the same group for windows starting
    /// less than this much later (or earlier).
    pub cooldown_ms: Option<i64>,
    /// Whether the condition reads `prev.<metric>`.
    pub reads_previous: bool,
}

/// When a window rule is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleTrigger {
    /// Whenever a window changes: fires when the condition becomes true.
    Change,
    /// Once, when the watermark passes the window's end (e.g. "no dose in the window").
    Close,
}

/// A validated pipeline.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub(crate) name: String,
    pub(crate) glob: Option<String>,
    pub(crate) matcher: Option<globset::GlobMatcher>,
    pub(crate) dialect: Dialect,
    pub(crate) time: TimeConfig,
    pub(crate) columns: Vec<Column>,
    pub(crate) aggregates: Vec<Aggregate>,
    pub(crate) row_rules: Vec<RowRule>,
    pub(crate) window_rules: Vec<WindowRule>,
    /// `[pipeline.derive]`: computed per-row columns, after the declared ones.
    pub(crate) derived: Vec<DerivedColumn>,
    pub(crate) resources: Resources,
}

impl Pipeline {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn aggregates(&self) -> &[Aggregate] {
        &self.aggregates
    }
    pub fn aggregate(&self, name: &str) -> Option<&Aggregate> {
        self.aggregates.iter().find(|a| a.name == name)
    }
    pub fn allowed_lateness_ms(&self) -> i64 {
        self.time.allowed_lateness_ms
    }
    /// The S3 key glob routing files to this pipeline (`match`).
    pub fn match_glob(&self) -> Option<&str> {
        self.glob.as_deref()
    }
    /// Whether an object key routes to this pipeline.
    pub fn matches_key(&self, object_key: &str) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|m| m.is_match(object_key))
    }
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }
    pub fn time(&self) -> &TimeConfig {
        &self.time
    }
    pub fn late_policy(&self) -> LatePolicy {
        self.time.late
    }
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
    pub fn row_rules(&self) -> &[RowRule] {
        &self.row_rules
    }
    pub fn window_rules(&self) -> &[WindowRule] {
        &self.window_rules
    }
    pub fn derived_columns(&self) -> &[DerivedColumn] {
        &self.derived
    }
    pub fn resources(&self) -> &Resources {
        &self.resources
    }
}

/// All pipelines of a definitions file, in the order written.
#[derive(Clone, Debug)]
pub struct Catalog {
    pipelines: Vec<Pipeline>,
}

impl Catalog {
    /// Parses and validates pipeline definitions that refer to no files.
    pub fn from_toml(text: &str) -> Result<Catalog, DefinitionError> {
        Self::from_toml_with(text, &NoFiles)
    }

    /// Parses and validates pipeline definitions, loading the lookup tables and models
    /// they name through `files`.
    pub fn from_toml_with(text: &str, files: &dyn FileLoader) -> Result<Catalog, DefinitionError> {
        Self::parse(text, Some(files))
    }

    /// The files (lookup tables, models) the definitions name, as written, for drivers
    /// that fetch them before compiling (see `HashMap`'s [`FileLoader`]).
    pub fn files_referenced(text: &str) -> Result<Vec<String>, DefinitionError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| syntax(text, &e))?;
        let mut files = Vec::new();
        for item in table
            .get("pipeline")
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            for section in ["lookup", "model"] {
                for entry in item
                    .get(section)
                    .and_then(toml::Value::as_table)
                    .into_iter()
                    .flat_map(|t| t.values())
                {
                    if let Some(f) = entry.get("file").and_then(toml::Value::as_str) {
                        if !files.iter().any(|x| x == f) {
                            files.push(f.to_string());
                        }
                    }
                }
            }
        }
        Ok(files)
    }

    fn parse(text: &str, files: Option<&dyn FileLoader>) -> Result<Catalog, DefinitionError> {
        let files = files.unwrap_or(&NoFiles);
        let table: toml::Table = toml::from_str(text).map_err(|e| syntax(text, &e))?;
        let mut pipelines: Vec<Pipeline> = Vec::new();
        for (key, value) in &table {
            if key != "pipeline" {
                return Err(DefinitionError::Syntax {
                    line: 1,
                    column: 1,
                    message: format!("unknown top-level key \"{key}\" (expected [[pipeline]])"),
                });
            }
            let toml::Value::Array(items) = value else {
                return Err(DefinitionError::Syntax {
                    line: 1,
                    column: 1,
                    message: "`pipeline` must be an array of tables ([[pipeline]])".into(),
                });
            };
            for (i, item) in items.iter().enumerate() {
                let label = item
                    .get("name")
                    .and_then(toml::Value::as_str)
                    .map_or_else(|| format!("#{}", i + 1), str::to_string);
                let raw: RawPipeline = item.clone().try_into().map_err(|e: toml::de::Error| {
                    DefinitionError::Invalid {
                        pipeline: label.clone(),
                        at: String::new(),
                        message: e.message().replace('\n', " "),
                    }
                })?;
                let p = compile_pipeline(raw, files)?;
                if pipelines.iter().any(|q| q.name == p.name) {
                    return Err(invalid(&p.name, "name", "defined twice"));
                }
                pipelines.push(p);
            }
        }
        if pipelines.is_empty() {
            return Err(DefinitionError::Syntax {
                line: 1,
                column: 1,
                message: "no [[pipeline]] defined".into(),
            });
        }
        Ok(Catalog { pipelines })
    }

    pub fn pipelines(&self) -> &[Pipeline] {
        &self.pipelines
    }

    pub fn pipeline(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.name == name)
    }

    /// The first pipeline (in definition order) whose `match` glob matches the
    /// (already URL-decoded) object key.
    pub fn route(&self, object_key: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.matches_key(object_key))
    }
}

fn syntax(text: &str, e: &toml::de::Error) -> DefinitionError {
    let (line, column) = e.span().map_or((1, 1), |s| {
        let before = text.get(..s.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    });
    DefinitionError::Syntax {
        line,
        column,
        message: e.message().replace('\n', " "),
    }
}

fn invalid(pipeline: &str, at: impl Into<String>, message: impl Into<String>) -> DefinitionError {
    DefinitionError::Invalid {
        pipeline: pipeline.to_string(),
        at: at.into(),
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
    #[serde(rename = "match")]
    glob: Option<String>,
    #[serde(default)]
    csv: RawCsv,
    time: RawTime,
    columns: IndexMap<String, String>,
    #[serde(default)]
    lookup: IndexMap<String, RawLookup>,
    #[serde(default)]
    model: IndexMap<String, RawModel>,
    #[serde(default)]
    derive: IndexMap<String, String>,
    #[serde(default)]
    aggregate: Vec<RawAggregate>,
    #[serde(default)]
    alert: Vec<RawAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLookup {
    file: String,
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCsv {
    header: bool,
    delimiter: String,
    quote: String,
    escape: Option<String>,
    comment: Option<String>,
    null: String,
    columns: Option<Vec<String>>,
    compression: String,
    on_bad_row: String,
}

impl Default for RawCsv {
    fn default() -> Self {
        RawCsv {
            header: true,
            delimiter: ",".into(),
            quote: "\"".into(),
            escape: None,
            comment: None,
            null: String::new(),
            columns: None,
            compression: "auto".into(),
            on_bad_row: "quarantine".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTime {
    column: String,
    #[serde(default = "default_format")]
    format: String,
    timezone: Option<String>,
    allowed_lateness: Option<String>,
    late: Option<String>,
}

fn default_format() -> String {
    "rfc3339".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAggregate {
    name: String,
    #[serde(default)]
    group_by: Vec<String>,
    window: RawWindow,
    metrics: IndexMap<String, String>,
    #[serde(default)]
    derived: IndexMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    tumbling: Option<String>,
    hopping: Option<String>,
    every: Option<String>,
    session_gap: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    name: String,
    aggregate: Option<String>,
    when: Option<String>,
    row: Option<String>,
    on: Option<String>,
    cooldown: Option<String>,
}

fn one_byte(p: &str, key: &str, s: &str) -> Result<u8, DefinitionError> {
    match s.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(invalid(
            p,
            format!("csv.{key}"),
            format!(
                "must be a single ASCII character, got \"{}\"",
                s.escape_default()
            ),
        )),
    }
}

fn compile_pipeline(raw: RawPipeline, files: &dyn FileLoader) -> Result<Pipeline, DefinitionError> {
    let p = raw.name.as_str();
    if p.trim().is_empty() {
        return Err(invalid(p, "name", "must not be empty"));
    }

    // Routing glob.
    let matcher = match &raw.glob {
        Some(g) => Some(
            globset::GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .map_err(|e| invalid(p, "match", format!("bad glob \"{g}\": {}", e.kind())))?
                .compile_matcher(),
        ),
        None => None,
    };

    // Columns.
    if raw.columns.is_empty() {
        return Err(invalid(
            p,
            "columns",
            "at least one column must be declared",
        ));
    }
    let mut columns = Vec::with_capacity(raw.columns.len());
    for (name, ty) in &raw.columns {
        let ty = ColumnType::from_name(ty).ok_or_else(|| {
            invalid(
                p,
                format!("columns.{name}"),
                format!("unknown type \"{ty}\" (expected string, int, float, bool or timestamp)"),
            )
        })?;
        columns.push(Column {
            name: name.clone(),
            ty,
        });
    }

    // Dialect.
    let c = &raw.csv;
    let on_bad_row = match c.on_bad_row.as_str() {
        "quarantine" => BadRowPolicy::Quarantine,
        "skip" => BadRowPolicy::Skip,
        "fail" => BadRowPolicy::Fail,
        o => {
            return Err(invalid(
                p,
                "csv.on_bad_row",
                format!("unknown policy \"{o}\" (expected quarantine, skip or fail)"),
            ))
        }
    };
    let compression = match c.compression.as_str() {
        "auto" => Compression::Auto,
        "none" => Compression::None,
        "gzip" | "gz" => Compression::Gzip,
        "zstd" | "zst" => Compression::Zstd,
        o => {
            return Err(invalid(
                p,
                "csv.compression",
                format!("unknown compression \"{o}\" (expected auto, none, gzip or zstd)"),
            ))
        }
    };
    let delimiter = if c.delimiter == "\\t" || c.delimiter == "tab" {
        b'\t'
    } else {
        one_byte(p, "delimiter", &c.delimiter)?
    };
    if matches!(delimiter, b'\n' | b'\r') {
        return Err(invalid(p, "csv.delimiter", "must not be a line break"));
    }
    let quote = if c.quote.is_empty() {
        None
    } else {
        Some(one_byte(p, "quote", &c.quote)?)
    };
    if quote == Some(delimiter) {
        return Err(invalid(p, "csv.quote", "must differ from the delimiter"));
    }
    let escape = c
        .escape
        .as_deref()
        .map(|e| one_byte(p, "escape", e))
        .transpose()?;
    let comment = c
        .comment
        .as_deref()
        .map(|e| one_byte(p, "comment", e))
        .transpose()?;
    if let Some(fc) = &c.columns {
        if c.header {
            return Err(invalid(
                p,
                "csv.columns",
                "only allowed with header = false (with a header, columns are found by name)",
            ));
        }
        for col in &columns {
            if !fc.contains(&col.name) {
                return Err(invalid(
                    p,
                    format!("columns.{}", col.name),
                    format!("not in csv.columns {fc:?}"),
                ));
            }
        }
    }
    let dialect = Dialect {
        header: c.header,
        delimiter,
        quote,
        escape,
        comment,
        null: c.null.clone(),
        file_columns: c.columns.clone(),
        compression,
        on_bad_row,
    };

    // Time.
    let t = &raw.time;
    let slot = columns
        .iter()
        .position(|col| col.name == t.column)
        .ok_or_else(|| invalid(p, "time.column", format!("unknown column \"{}\"", t.column)))?;
    if columns[slot].ty != ColumnType::Timestamp {
        return Err(invalid(
            p,
            "time.column",
            format!(
                "column \"{}\" must be declared as timestamp, not {}",
                t.column, columns[slot].ty
            ),
        ));
    }
    let format = TimeFormat::from_config(&t.format).map_err(|m| invalid(p, "time.format", m))?;
    let tz = match &t.timezone {
        None => None,
        Some(z) => Some(z.parse::<chrono_tz::Tz>().map_err(|_| {
            invalid(
                p,
                "time.timezone",
                format!("unknown timezone \"{z}\" (expected e.g. \"Europe/Paris\")"),
            )
        })?),
    };
    let allowed_lateness_ms = match t.allowed_lateness.as_deref() {
        None | Some("0") | Some("0s") | Some("0ms") => 0,
        Some(d) => parse_duration(d).map_err(|m| invalid(p, "time.allowed_lateness", m))?,
    };
    let late = match t.late.as_deref() {
        None | Some("drop") => LatePolicy::Drop,
        Some("update") => LatePolicy::Update,
        Some(o) => {
            return Err(invalid(
                p,
                "time.late",
                format!("unknown policy \"{o}\" (expected drop or update)"),
            ))
        }
    };
    let time = TimeConfig {
        column: t.column.clone(),
        slot,
        parser: TimeParser { format, tz },
        allowed_lateness_ms,
        late,
    };

    let resources = load_resources(p, &raw, files)?;
    let mut row_names: Vec<(String, Type)> = columns
        .iter()
        .map(|c| (c.name.clone(), Type::from(c.ty)))
        .collect();
    let mut derived = Vec::with_capacity(raw.derive.len());
    for (name, src) in &raw.derive {
        if row_names.iter().any(|(n, _)| n == name) {
            return Err(invalid(p, format!("derive.{name}"), "already a column"));
        }
        let scope = ListScope {
            names: &row_names,
            kind: "column",
        };
        let expr = Expr::compile_in(src, &scope, &resources)
            .map_err(|e| invalid(p, format!("derive.{name}"), e.0))?;
        if expr.ty() == Type::Null {
            return Err(invalid(p, format!("derive.{name}"), "is always null"));
        }
        row_names.push((name.clone(), expr.ty()));
        derived.push(DerivedColumn {
            name: name.clone(),
            source: src.clone(),
            expr,
        });
    }
    let row_scope = ListScope {
        names: &row_names,
        kind: "column",
    };

    // Aggregates.
    let mut aggregates: Vec<Aggregate> = Vec::with_capacity(raw.aggregate.len());
    for a in &raw.aggregate {
        let at = format!("aggregate \"{}\"", a.name);
        if aggregates.iter().any(|x| x.name == a.name) {
            return Err(invalid(p, at, "defined twice"));
        }
        let mut group_slots = Vec::with_capacity(a.group_by.len());
        for g in &a.group_by {
            let s = row_names.iter().position(|(n, _)| n == g).ok_or_else(|| {
                invalid(
                    p,
                    format!("{at} group_by"),
                    format!("unknown column \"{g}\""),
                )
            })?;
            group_slots.push(s);
        }
        let w = &a.window;
        let dur = |key: &str, v: &str| {
            parse_duration(v).map_err(|m| invalid(p, format!("{at} window.{key}"), m))
        };
        let window = match (&w.tumbling, &w.hopping, &w.every, &w.session_gap) {
            (Some(t), None, None, None) => WindowSpec::Tumbling {
                size_ms: dur("tumbling", t)?,
            },
            (None, Some(h), Some(e), None) => {
                let size_ms = dur("hopping", h)?;
                let every_ms = dur("every", e)?;
                if every_ms > size_ms {
                    return Err(invalid(
                        p,
                        format!("{at} window.every"),
                        format!("\"{e}\" must not exceed the window size \"{h}\""),
                    ));
                }
                WindowSpec::Hopping { size_ms, every_ms }
            }
            (None, Some(_), None, None) => {
                return Err(invalid(p, format!("{at} window"), "hopping needs `every`"))
            }
            (None, None, None, Some(g)) => WindowSpec::Session {
                gap_ms: dur("session_gap", g)?,
            },
            _ => {
                return Err(invalid(
                    p,
                    format!("{at} window"),
                    "expected exactly one of { tumbling = \"10m\" }, { hopping = \"10m\", every = \"5m\" }, { session_gap = \"30m\" }",
                ))
            }
        };
        if a.metrics.is_empty() {
            return Err(invalid(
                p,
                format!("{at} metrics"),
                "at least one metric is required",
            ));
        }
        let mut metrics = Vec::with_capacity(a.metrics.len());
        for (name, src) in &a.metrics {
            let m = MetricSpec::compile_in(name, src, &row_scope, &resources)
                .map_err(|e| invalid(p, format!("{at} metric \"{name}\""), e.0))?;
            metrics.push(m);
        }
        let mut agg = Aggregate {
            name: a.name.clone(),
            group_by: a.group_by.clone(),
            group_slots,
            window,
            metrics,
            derived: Vec::new(),
        };
        for (name, src) in &a.derived {
            if agg.window_scope().iter().any(|(n, _)| n == name) {
                return Err(invalid(
                    p,
                    format!("{at} derived \"{name}\""),
                    "already a metric or column",
                ));
            }
            // Derived values see the metrics and the derived values before them.
            let names: Vec<(String, Type)> = agg
                .metrics
                .iter()
                .map(|m| (m.name.clone(), m.out_ty))
                .chain(agg.derived.iter().map(|d| (d.name.clone(), d.expr.ty())))
                .collect();
            let scope = ListScope {
                names: &names,
                kind: "metric",
            };
            let expr = Expr::compile_in(src, &scope, &resources)
                .map_err(|e| invalid(p, format!("{at} derived \"{name}\""), e.0))?;
            agg.derived.push(DerivedMetric {
                name: name.clone(),
                source: src.clone(),
                expr,
            });
        }
        aggregates.push(agg);
    }

    // Alerts.
    let mut row_rules = Vec::new();
    let mut window_rules = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for al in &raw.alert {
        let at = format!("alert \"{}\"", al.name);
        if names.contains(&al.name.as_str()) {
            return Err(invalid(p, at, "defined twice"));
        }
        names.push(&al.name);
        if al.row.is_some() && (al.on.is_some() || al.cooldown.is_some()) {
            return Err(invalid(
                p,
                at,
                "`on` and `cooldown` apply to window rules (`aggregate` + `when`)",
            ));
        }
        match (&al.aggregate, &al.when, &al.row) {
            (None, None, Some(r)) => {
                let cond = Expr::compile_condition_in(r, &row_scope, &resources)
                    .map_err(|e| invalid(p, format!("{at} row"), e.0))?;
                row_rules.push(RowRule {
                    name: al.name.clone(),
                    source: r.clone(),
                    cond,
                });
            }
            (Some(agg), Some(w), None) => {
                let a = aggregates
                    .iter()
                    .find(|x| &x.name == agg)
                    .ok_or_else(|| {
                        invalid(p, format!("{at} aggregate"), format!("unknown aggregate \"{agg}\""))
                    })?;
                let names = a.window_scope();
                let scope = ListScope {
                    names: &names,
                    kind: "metric",
                };
                let cond = Expr::compile_condition_in(w, &scope, &resources)
                    .map_err(|e| invalid(p, format!("{at} when"), e.0))?;
                let own = a.metrics.len() + a.derived.len() + a.group_by.len() + 2;
                let reads_previous = cond.slots().iter().any(|&s| s >= own);
                let on = match al.on.as_deref() {
                    None | Some("change") => RuleTrigger::Change,
                    Some("close") => RuleTrigger::Close,
                    Some(o) => {
                        return Err(invalid(
                            p,
                            format!("{at} on"),
                            format!("unknown trigger \"{o}\" (expected change or close)"),
                        ))
                    }
                };
                if on == RuleTrigger::Close && a.is_session() {
                    return Err(invalid(
                        p,
                        format!("{at} on"),
                        "\"close\" needs a tumbling or hopping window",
                    ));
                }
                let cooldown_ms = al
                    .cooldown
                    .as_deref()
                    .map(|d| parse_duration(d).map_err(|m| invalid(p, format!("{at} cooldown"), m)))
                    .transpose()?;
                window_rules.push(WindowRule {
                    name: al.name.clone(),
                    aggregate: agg.clone(),
                    source: w.clone(),
                    cond,
                    on,
                    cooldown_ms,
                    reads_previous,
                });
            }
            _ => {
                return Err(invalid(
                    p,
                    at,
                    "expected either `row = \"<condition>\"` or `aggregate = \"<name>\"` with `when = \"<condition>\"`",
                ))
            }
        }
    }

    Ok(Pipeline {
        name: raw.name.clone(),
        glob: raw.glob.clone(),
        matcher,
        dialect,
        time,
        columns,
        aggregates,
        row_rules,
        window_rules,
        derived,
        resources,
    })
}

/// Loads the pipeline's lookup tables and models.
fn load_resources(
    p: &str,
    raw: &RawPipeline,
    files: &dyn FileLoader,
) -> Result<Resources, DefinitionError> {
    let mut res = Resources::default();
    for (name, l) in &raw.lookup {
        let at = format!("lookup.{name}");
        let bytes = files
            .load(&l.file)
            .map_err(|e| invalid(p, format!("{at}.file"), e))?;
        let table = LookupTable::from_csv(name, &bytes, &l.key)
            .map_err(|e| invalid(p, &at, format!("{}: {e}", l.file)))?;
        res.lookups.insert(name.clone(), Arc::new(table));
    }
    for (name, m) in &raw.model {
        let at = format!("model.{name}");
        let bytes = files
            .load(&m.file)
            .map_err(|e| invalid(p, format!("{at}.file"), e))?;
        let model = Model::from_json(name, &bytes)
            .map_err(|e| invalid(p, &at, format!("{}: {e}", m.file)))?;
        res.models.insert(name.clone(), Arc::new(model));
    }
    Ok(res)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const EXAMPLE: &str = r#"
[[pipeline]]
name = "card-transactions"
match = "transactions/**"          # S3 key glob that routes a file to this pipeline

[pipeline.csv]
header = true
delimiter = ","
on_bad_row = "quarantine"          # quarantine | skip | fail

[pipeline.time]
column = "ts"
format = "rfc3339"                 # also: epoch_s, epoch_ms, a strftime pattern (+ timezone)
allowed_lateness = "1h"

[pipeline.columns]
ts = "timestamp"
txn_id = "string"
card_id = "string"
merchant = "string"
amount = "float"
currency = "string"
country = "string"
home_country = "string"
channel = "string"

[[pipeline.aggregate]]
name = "per_card_10m"
group_by = ["card_id"]
window = { tumbling = "10m" }      # also { hopping = "10m", every = "5m" }, { session_gap = "30m" }

[pipeline.aggregate.metrics]       # output columns, in the order written
n = "count()"
total = "sum(amount)"
mx = "max(amount)"
xborder = "count_if(country != home_country)"

[[pipeline.alert]]
name = "cross_border_burst"
aggregate = "per_card_10m"
when = "xborder >= 3"

[[pipeline.alert]]
name = "very_high_amount"
row = "amount > 5000"
"#;

    #[test]
    fn example_parses() {
        let c = Catalog::from_toml(EXAMPLE).unwrap();
        let p = c.pipeline("card-transactions").unwrap();
        assert_eq!(p.name(), "card-transactions");
        assert_eq!(p.allowed_lateness_ms(), 3_600_000);
        let a = p.aggregate("per_card_10m").unwrap();
        assert_eq!(a.metric_names(), vec!["n", "total", "mx", "xborder"]);
        assert_eq!(a.group_by(), ["card_id".to_string()]);
        assert!(!a.is_session());
        assert_eq!(p.row_rules().len(), 1);
        assert_eq!(p.window_rules().len(), 1);
        assert_eq!(
            c.route("transactions/2026/11/20/a.csv").map(Pipeline::name),
            Some("card-transactions")
        );
        assert!(c.route("other/a.csv").is_none());
    }

    fn err_of(find: &str, replace: &str) -> String {
        assert!(EXAMPLE.contains(find), "{find}");
        let text = EXAMPLE.replacen(find, replace, 1);
        let e = Catalog::from_toml(&text).unwrap_err().to_string();
        assert!(!e.contains('\n'), "multi-line error: {e}");
        e
    }

    #[test]
    fn validation_errors_are_one_line_with_context() {
        let cases = [
            (
                "total = \"sum(amount)\"",
                "total = \"sum(amout)\"",
                "pipeline \"card-transactions\": aggregate \"per_card_10m\" metric \"total\": unknown column \"amout\"",
            ),
            (
                "total = \"sum(amount)\"",
                "total = \"summ(amount)\"",
                "pipeline \"card-transactions\": aggregate \"per_card_10m\" metric \"total\": unknown function \"summ\"",
            ),
            (
                "tumbling = \"10m\"",
                "tumbling = \"10 minutes\"",
                "pipeline \"card-transactions\": aggregate \"per_card_10m\" window.tumbling: bad duration \"10 minutes\"",
            ),
            (
                "row = \"amount > 5000\"",
                "row = \"amount > \\\"big\\\"\"",
                "pipeline \"card-transactions\": alert \"very_high_amount\" row: cannot compare float with string",
            ),
            (
                "aggregate = \"per_card_10m\"",
                "aggregate = \"per_card_1h\"",
                "pipeline \"card-transactions\": alert \"cross_border_burst\" aggregate: unknown aggregate \"per_card_1h\"",
            ),
            (
                "when = \"xborder >= 3\"",
                "when = \"xborders >= 3\"",
                "pipeline \"card-transactions\": alert \"cross_border_burst\" when: unknown metric \"xborders\"",
            ),
            (
                "match = \"transactions/**\"",
                "match = \"transactions/[\"",
                "pipeline \"card-transactions\": match: bad glob \"transactions/[\"",
            ),
            (
                "group_by = [\"card_id\"]",
                "group_by = [\"card\"]",
                "pipeline \"card-transactions\": aggregate \"per_card_10m\" group_by: unknown column \"card\"",
            ),
            (
                "column = \"ts\"",
                "column = \"time\"",
                "pipeline \"card-transactions\": time.column: unknown column \"time\"",
            ),
            (
                "allowed_lateness = \"1h\"",
                "allowed_lateness = \"1 hour\"",
                "pipeline \"card-transactions\": time.allowed_lateness: bad duration",
            ),
            (
                "delimiter = \",\"",
                "delimter = \",\"",
                "pipeline \"card-transactions\": unknown field `delimter`",
            ),
            (
                "amount = \"float\"",
                "amount = \"money\"",
                "pipeline \"card-transactions\": columns.amount: unknown type \"money\"",
            ),
            (
                "format = \"rfc3339\"",
                "format = \"rfc3339\"\ntimezone = \"Mars/Olympus\"",
                "pipeline \"card-transactions\": time.timezone: unknown timezone \"Mars/Olympus\"",
            ),
            (
                "when = \"xborder >= 3\"",
                "when = \"xborder\"",
                "pipeline \"card-transactions\": alert \"cross_border_burst\" when: condition \"xborder\" is int, expected bool",
            ),
            (
                "delimiter = \",\"",
                "delimiter = \"\\n\"",
                "pipeline \"card-transactions\": csv.delimiter: must not be a line break",
            ),
            (
                "delimiter = \",\"",
                "delimiter = \",\"\nquote = \",\"",
                "pipeline \"card-transactions\": csv.quote: must differ from the delimiter",
            ),
            (
                "on_bad_row = \"quarantine\"",
                "on_bad_row = \"ignore\"",
                "pipeline \"card-transactions\": csv.on_bad_row: unknown policy \"ignore\"",
            ),
            (
                "[[pipeline.alert]]\nname = \"cross_border_burst\"",
                "[[pipeline.aggregate]]\nname = \"per_card_10m\"\nwindow = { tumbling = \"1m\" }\nmetrics = { n = \"count()\" }\n[[pipeline.alert]]\nname = \"cross_border_burst\"",
                "pipeline \"card-transactions\": aggregate \"per_card_10m\": defined twice",
            ),
        ];
        for (find, replace, want) in cases {
            let e = err_of(find, replace);
            assert!(e.starts_with(want), "\n got: {e}\nwant: {want}");
        }
        let e = Catalog::from_toml("[[pipeline]\nname=")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pipeline definitions: line 1"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn windows_and_options() {
        let text = EXAMPLE
            .replace("{ tumbling = \"10m\" }", "{ hopping = \"10m\", every = \"5m\" }")
            .replace(
                "header = true",
                "header = false\ncolumns = [\"ts\",\"txn_id\",\"card_id\",\"merchant\",\"amount\",\"currency\",\"country\",\"home_country\",\"channel\",\"extra\"]\nnull = \"NA\"\ncomment = \"#\"\nescape = \"\\\\\"\ncompression = \"gzip\"",
            )
            .replace("allowed_lateness = \"1h\"", "allowed_lateness = \"1h\"\nlate = \"update\"\ntimezone = \"Europe/Paris\"");
        let c = Catalog::from_toml(&text).unwrap();
        let p = &c.pipelines()[0];
        assert_eq!(
            p.aggregates()[0].window(),
            WindowSpec::Hopping {
                size_ms: 600_000,
                every_ms: 300_000
            }
        );
        assert_eq!(p.late_policy(), LatePolicy::Update);
        let d = p.dialect();
        assert!(!d.header);
        assert_eq!(d.null, "NA");
        assert_eq!(d.comment, Some(b'#'));
        assert_eq!(d.escape, Some(b'\\'));
        assert_eq!(d.compression, Compression::Gzip);
        let s = EXAMPLE.replace("{ tumbling = \"10m\" }", "{ session_gap = \"30m\" }");
        let c = Catalog::from_toml(&s).unwrap();
        assert!(c.pipelines()[0].aggregates()[0].is_session());
        assert_eq!(
            c.pipelines()[0].aggregates()[0].session_gap_ms(),
            Some(1_800_000)
        );
    }
}
