//! Processing one file: CSV records → typed rows → bad-row policy → row alerts →
//! watermark / late policy → window cells. Produces a `FileReport` of mergeable partials.
//!
//! Hot path: one reused `ByteRecord`, fields borrowed from it, typed values on the stack
//! (`SmallVec`), group cells found by the group key's raw bytes (no allocation unless
//! the group is new).

use std::collections::BTreeMap;
use std::io::Read;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::definition::{BadRowPolicy, Dialect, LatePolicy, Pipeline};
use crate::metrics::CellState;
use crate::reader;
use crate::types::{parse_bool, parse_float, parse_int, ColumnType, TimeParser, Val};
use crate::window::WindowSpec;

/// The file being processed.
#[derive(Clone, Copy, Debug)]
pub struct FileInput<'a> {
    /// Identifies the file (e.g. `s3://bucket/key`); copied into bad rows and errors, and
    /// its extension (`.gz`, `.zst`) is a compression hint.
    pub name: &'a str,
    /// The pipeline's watermark before this file (max event time seen − allowed lateness);
    /// `None` = nothing is late.
    pub watermark_ms: Option<i64>,
}

/// Identifies one cell: (aggregate, group key, window).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CellKey {
    pub aggregate: String,
    /// Group-by values (raw field text; null is the empty string), in `group_by` order.
    pub group: Vec<String>,
    pub start_ms: i64,
    /// Exclusive. For sessions: last event + gap.
    pub end_ms: i64,
}

/// A quarantined bad row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRow {
    pub file: String,
    /// 1-based line where the record starts.
    pub line: u64,
    /// Byte offset of the record in the (decompressed) input.
    pub byte_offset: u64,
    pub reason: String,
    /// The record re-encoded in the file's dialect (lossy UTF-8, at most 4 KiB).
    pub record: String,
}

/// A row that matched a row rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowAlert {
    pub rule: String,
    pub line: u64,
    pub event_ms: i64,
    /// The declared columns and their raw text, in declared order.
    pub row: Vec<(String, String)>,
}

/// Counters of one file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStats {
    /// Good rows aggregated (excludes bad rows and dropped late rows; includes late rows
    /// kept by `late = "update"`).
    pub rows: u64,
    /// Bad rows (whatever the policy).
    pub bad: u64,
    /// Late rows (older than the watermark), dropped or not.
    pub late: u64,
    /// Bytes of CSV read, after decompression (BOM included).
    pub bytes: u64,
    /// Cells in the report.
    pub cells: u64,
}

/// Everything a file produced.
#[derive(Clone, Debug, Default)]
pub struct FileReport {
    pub cells: BTreeMap<CellKey, CellState>,
    pub bad_rows: Vec<BadRow>,
    pub row_alerts: Vec<RowAlert>,
    pub stats: FileStats,
    /// Largest event time of a good row (late rows included).
    pub max_event_ms: Option<i64>,
}

/// Why a file failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{file}: read failed: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {codec} decompression failed: {source}")]
    Decompress {
        file: String,
        codec: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: header lacks declared column \"{column}\"")]
    MissingColumn { file: String, column: String },
    #[error("{file}: line {line}: bad row ({reason}) and on_bad_row = \"fail\"")]
    BadRowFail {
        file: String,
        line: u64,
        reason: String,
    },
    #[error("{file}: line {line}: CSV error: {source}")]
    Csv {
        file: String,
        line: u64,
        #[source]
        source: csv::Error,
    },
}

impl FileError {
    /// Whether retrying the same file may succeed (I/O failures); the others are
    /// properties of the file's content.
    pub fn is_retryable(&self) -> bool {
        matches!(self, FileError::Io { .. })
    }
}

const MAX_RECORD_TEXT: usize = 4096;

pub(crate) fn reader_builder(d: &Dialect) -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false)
        .flexible(true)
        .delimiter(d.delimiter)
        .escape(d.escape)
        .comment(d.comment)
        .buffer_capacity(64 * 1024);
    match d.quote {
        Some(q) => b.quote(q),
        None => b.quoting(false),
    };
    b
}

/// Cells of one aggregate while a file is processed.
struct Group {
    key: Vec<String>,
    /// Fixed windows by start.
    fixed: FxHashMap<i64, CellState>,
    /// Sessions by start (disjoint and not touching).
    sessions: BTreeMap<i64, CellState>,
}

#[derive(Default)]
struct AggTable {
    groups: FxHashMap<Box<[u8]>, Group>,
}

struct Ctx<'p> {
    pipeline: &'p Pipeline,
    file: String,
    /// Field index in the file of each declared column.
    layout: Vec<usize>,
    nfields: usize,
    report: FileReport,
    tables: Vec<AggTable>,
    keybuf: Vec<u8>,
    scratch: String,
    session_keys: Vec<i64>,
    bom_len: u64,
    watermark_ms: Option<i64>,
}

/// Processes one file with a pipeline.
pub fn process_file<R: Read>(
    pipeline: &Pipeline,
    input: FileInput<'_>,
    reader: R,
) -> Result<FileReport, FileError> {
    let file = input.name.to_string();
    let d = &pipeline.dialect;
    let opened = reader::open(reader, input.name, d.compression).map_err(|(codec, e)| {
        if codec.is_empty() {
            FileError::Io {
                file: file.clone(),
                source: e,
            }
        } else {
            FileError::Decompress {
                file: file.clone(),
                codec,
                source: e,
            }
        }
    })?;
    let mut rdr = reader_builder(d).from_reader(opened.reader);
    let mut rec = csv::ByteRecord::new();
    let mut ctx = Ctx {
        pipeline,
        file,
        layout: Vec::new(),
        nfields: 0,
        report: FileReport::default(),
        tables: pipeline
            .aggregates
            .iter()
            .map(|_| AggTable::default())
            .collect(),
        keybuf: Vec::with_capacity(64),
        scratch: String::new(),
        session_keys: Vec::new(),
        bom_len: opened.bom_len,
        watermark_ms: input.watermark_ms,
    };

    // Column layout.
    let names: Vec<String> = if d.header {
        if !read(&mut rdr, &mut rec, &ctx)? {
            ctx.report.stats.bytes = rdr.position().byte() + ctx.bom_len;
            return Ok(ctx.report);
        }
        rec.iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_string())
            .collect()
    } else {
        match &d.file_columns {
            Some(c) => c.clone(),
            None => pipeline.columns.iter().map(|c| c.name.clone()).collect(),
        }
    };
    for c in &pipeline.columns {
        match names.iter().position(|n| *n == c.name) {
            Some(i) => ctx.layout.push(i),
            None => {
                return Err(FileError::MissingColumn {
                    file: ctx.file,
                    column: c.name.clone(),
                })
            }
        }
    }
    ctx.nfields = names.len();

    while read(&mut rdr, &mut rec, &ctx)? {
        ctx.row(&rec)?;
    }
    ctx.report.stats.bytes = rdr.position().byte() + ctx.bom_len;
    Ok(ctx.finish())
}

fn read<R: Read>(
    rdr: &mut csv::Reader<R>,
    rec: &mut csv::ByteRecord,
    ctx: &Ctx<'_>,
) -> Result<bool, FileError> {
    rdr.read_byte_record(rec).map_err(|e| {
        let line = e.position().map_or(rdr.position().line(), |p| p.line());
        if !e.is_io_error() {
            return FileError::Csv {
                file: ctx.file.clone(),
                line,
                source: e,
            };
        }
        match e.into_kind() {
            csv::ErrorKind::Io(io) => match reader::as_decompress(&io) {
                Some((codec, _)) => FileError::Decompress {
                    file: ctx.file.clone(),
                    codec,
                    source: io,
                },
                None => FileError::Io {
                    file: ctx.file.clone(),
                    source: io,
                },
            },
            _ => FileError::Io {
                file: ctx.file.clone(),
                source: std::io::Error::other("CSV reader error"),
            },
        }
    })
}

#[inline]
fn parse_field<'r>(
    raw: &'r [u8],
    ty: ColumnType,
    null: &[u8],
    tp: &TimeParser,
) -> Result<Val<'r>, &'static str> {
    if raw == null {
        return Ok(Val::Null);
    }
    let s = std::str::from_utf8(raw).map_err(|_| "invalid UTF-8")?;
    Ok(match ty {
        ColumnType::String => Val::Str(s.into()),
        ColumnType::Int => Val::Int(parse_int(s).ok_or("bad int")?),
        ColumnType::Float => Val::Float(parse_float(s).ok_or("bad float")?),
        ColumnType::Bool => Val::Bool(parse_bool(s).ok_or("bad bool")?),
        ColumnType::Timestamp => Val::Ts(tp.parse(s)?),
    })
}

fn excerpt(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    if s.chars().count() > 40 {
        let cut: String = s.chars().take(40).collect();
        format!("{cut}…")
    } else {
        s.into_owned()
    }
}

impl Ctx<'_> {
    fn row(&mut self, rec: &csv::ByteRecord) -> Result<(), FileError> {
        let p = self.pipeline;
        let d = &p.dialect;
        if rec.len() != self.nfields {
            let reason = format!("expected {} fields, found {}", self.nfields, rec.len());
            return self.bad(rec, reason);
        }
        let mut row: SmallVec<[Val<'_>; 16]> = SmallVec::with_capacity(p.columns.len());
        for (c, &i) in p.columns.iter().zip(&self.layout) {
            let raw = rec.get(i).unwrap_or_default();
            match parse_field(raw, c.ty, d.null.as_bytes(), &p.time.parser) {
                Ok(v) => row.push(v),
                Err(why) => {
                    let reason = format!("column \"{}\": {why}: \"{}\"", c.name, excerpt(raw));
                    return self.bad(rec, reason);
                }
            }
        }
        let ts = match row.get(p.time.slot) {
            Some(Val::Ts(t)) => *t,
            _ => {
                let reason = format!("missing timestamp in column \"{}\"", p.time.column);
                return self.bad(rec, reason);
            }
        };
        let line = rec.position().map_or(0, |q| q.line());
        for rule in &p.row_rules {
            if rule.cond.matches(&row) {
                self.report.row_alerts.push(RowAlert {
                    rule: rule.name.clone(),
                    line,
                    event_ms: ts,
                    row: p
                        .columns
                        .iter()
                        .zip(&self.layout)
                        .map(|(c, &i)| {
                            (
                                c.name.clone(),
                                String::from_utf8_lossy(rec.get(i).unwrap_or_default())
                                    .into_owned(),
                            )
                        })
                        .collect(),
                });
            }
        }
        self.report.max_event_ms = Some(self.report.max_event_ms.map_or(ts, |m| m.max(ts)));
        let stats = &mut self.report.stats;
        let mut reopened = false;
        if let Some(wm) = self.watermark_ms {
            if ts < wm {
                stats.late += 1;
                match p.time.late {
                    LatePolicy::Drop => return Ok(()),
                    LatePolicy::Update => reopened = true,
                }
            }
        }
        stats.rows += 1;

        for (agg, table) in p.aggregates.iter().zip(self.tables.iter_mut()) {
            // Group key bytes: length-prefixed raw fields (null = empty).
            self.keybuf.clear();
            for &slot in &agg.group_slots {
                let raw = match row.get(slot) {
                    Some(Val::Null) | None => &[][..],
                    _ => rec.get(self.layout[slot]).unwrap_or_default(),
                };
                self.keybuf
                    .extend_from_slice(&(raw.len() as u32).to_le_bytes());
                self.keybuf.extend_from_slice(raw);
            }
            let group = match table.groups.get_mut(&self.keybuf[..]) {
                Some(g) => g,
                None => {
                    let key = agg
                        .group_slots
                        .iter()
                        .map(|&slot| match row.get(slot) {
                            Some(Val::Null) | None => String::new(),
                            _ => String::from_utf8_lossy(
                                rec.get(self.layout[slot]).unwrap_or_default(),
                            )
                            .into_owned(),
                        })
                        .collect();
                    table
                        .groups
                        .entry(self.keybuf.clone().into_boxed_slice())
                        .or_insert(Group {
                            key,
                            fixed: FxHashMap::default(),
                            sessions: BTreeMap::new(),
                        })
                }
            };
            let metrics = &agg.metrics;
            let scratch = &mut self.scratch;
            match agg.window {
                WindowSpec::Session { gap_ms } => {
                    let cell = session_cell(
                        &mut group.sessions,
                        gap_ms,
                        ts,
                        metrics,
                        &mut self.session_keys,
                    );
                    cell.update(metrics, &row, ts, scratch);
                    cell.reopened |= reopened;
                }
                spec => spec.assign(ts, |start, _end| {
                    let cell = group
                        .fixed
                        .entry(start)
                        .or_insert_with(|| CellState::new(metrics));
                    cell.update(metrics, &row, ts, scratch);
                    cell.reopened |= reopened;
                }),
            }
        }
        Ok(())
    }

    fn bad(&mut self, rec: &csv::ByteRecord, reason: String) -> Result<(), FileError> {
        self.report.stats.bad += 1;
        let pos = rec.position();
        let line = pos.map_or(0, |q| q.line());
        match self.pipeline.dialect.on_bad_row {
            BadRowPolicy::Skip => Ok(()),
            BadRowPolicy::Fail => Err(FileError::BadRowFail {
                file: self.file.clone(),
                line,
                reason,
            }),
            BadRowPolicy::Quarantine => {
                self.report.bad_rows.push(BadRow {
                    file: self.file.clone(),
                    line,
                    byte_offset: pos.map_or(0, |q| q.byte()) + self.bom_len,
                    reason,
                    record: render(&self.pipeline.dialect, rec),
                });
                Ok(())
            }
        }
    }

    fn finish(mut self) -> FileReport {
        let mut cells: Vec<(CellKey, CellState)> = Vec::new();
        for (agg, table) in self.pipeline.aggregates.iter().zip(self.tables) {
            for (_, g) in table.groups {
                let key = |start: i64, end: i64| CellKey {
                    aggregate: agg.name.clone(),
                    group: g.key.clone(),
                    start_ms: start,
                    end_ms: end,
                };
                match agg.window {
                    WindowSpec::Session { gap_ms } => {
                        for (start, cell) in g.sessions {
                            let end = cell.last_event_ms.saturating_add(gap_ms);
                            cells.push((key(start, end), cell));
                        }
                    }
                    WindowSpec::Tumbling { size_ms } | WindowSpec::Hopping { size_ms, .. } => {
                        for (start, cell) in g.fixed {
                            cells.push((key(start, start.saturating_add(size_ms)), cell));
                        }
                    }
                }
            }
        }
        // Sorting once and bulk-building is much cheaper than inserting key by key.
        cells.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.report.cells = cells.into_iter().collect();
        self.report.stats.cells = self.report.cells.len() as u64;
        self.report
    }
}

/// The session cell an event at `ts` belongs to, merging the sessions it bridges.
fn session_cell<'g>(
    sessions: &'g mut BTreeMap<i64, CellState>,
    gap: i64,
    ts: i64,
    metrics: &[crate::metrics::MetricSpec],
    keys: &mut Vec<i64>,
) -> &'g mut CellState {
    keys.clear();
    // Sessions are disjoint and sorted, so their ends grow with their starts: scan back
    // from the last session starting within reach until one ends before `ts`.
    for (&start, cell) in sessions.range(..=ts.saturating_add(gap)).rev() {
        if cell.last_event_ms.saturating_add(gap) >= ts {
            keys.push(start);
        } else {
            break;
        }
    }
    let start = match keys.as_slice() {
        [] => {
            sessions.insert(ts, CellState::new(metrics));
            ts
        }
        [k] if *k <= ts => *k,
        _ => {
            let mut merged = CellState::new(metrics);
            let mut start = ts;
            for k in keys.iter() {
                if let Some(c) = sessions.remove(k) {
                    merged.merge(&c);
                    start = start.min(*k);
                }
            }
            sessions.insert(start, merged);
            start
        }
    };
    sessions
        .entry(start)
        .or_insert_with(|| CellState::new(metrics))
}

/// Re-encodes a record in the dialect (for quarantine), lossy UTF-8, bounded length.
fn render(d: &Dialect, rec: &csv::ByteRecord) -> String {
    let mut w = csv::WriterBuilder::new()
        .delimiter(d.delimiter)
        .quote(d.quote.unwrap_or(b'"'))
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let bytes = match w.write_byte_record(rec) {
        Ok(()) => w.into_inner().unwrap_or_default(),
        Err(_) => rec.as_slice().to_vec(),
    };
    let mut s = String::from_utf8_lossy(&bytes).into_owned();
    if s.ends_with('\n') {
        s.pop();
    }
    if s.len() > MAX_RECORD_TEXT {
        let mut cut = MAX_RECORD_TEXT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}
