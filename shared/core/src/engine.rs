//! Processing one file: CSV records → typed rows → bad-row policy → row alerts →
//! watermark / late policy → window cells. Produces a `FileReport` of mergeable partials.
//!
//! Hot path: records from a [`RecordReader`] (most split where they lie in its buffer),
//! fields borrowed from it, typed values on the stack (`SmallVec`), groups found by the
//! group key's raw bytes (packed into two words when short; no allocation unless the
//! group is new), each group remembering its last cell, fixed-window cells kept in
//! per-aggregate arenas by cell id (no allocation per cell). The public
//! `CellKey`/`CellState` map is built once per file, in key order, at the end — or skipped
//! by `csvflow run` on a single file, which writes the tables out directly.

use std::collections::BTreeMap;
use std::io::Read;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::cells::{CellsByGroup, FixedCells};
use crate::definition::{BadRowPolicy, Dialect, LatePolicy, Pipeline};
use crate::metrics::{Acc, CellState};
use crate::reader;
use crate::records::{Batch, Record, RecordReader};
use crate::types::{
    parse_bool_bytes, parse_float_bytes, parse_int_bytes, ColumnType, TimeCache, TimeParser, Val,
};
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
}

impl FileError {
    /// The error of a part of a file whose first line is `shift` lines into the file.
    pub(crate) fn shift_lines(mut self, shift: u64) -> Self {
        match &mut self {
            FileError::BadRowFail { line, .. } => *line += shift,
            FileError::Io { .. }
            | FileError::Decompress { .. }
            | FileError::MissingColumn { .. } => {}
        }
        self
    }

    /// Whether retrying the same file may succeed (I/O failures); the others are
    /// properties of the file's content.
    pub fn is_retryable(&self) -> bool {
        matches!(self, FileError::Io { .. })
    }
}

const MAX_RECORD_TEXT: usize = 4096;

/// Records read at a time: their groups are looked up, and their cells start loading,
/// before the first is typed ([`Ctx::look_ahead`]).
const BATCH_RECORDS: usize = 16;

/// No group found ahead ([`Ctx::ahead`]).
const NO_GROUP: u32 = u32::MAX;

/// One group (distinct group-key value) of an aggregate while a file is processed.
struct Group {
    /// The group-by values (built once, when the group first appears).
    key: Vec<String>,
    /// The key's bytes in the [`GroupIndex`] (to find the group in another table).
    raw: Box<[u8]>,
    /// Sessions by start (disjoint and not touching).
    sessions: BTreeMap<i64, CellState>,
}

/// Cells of one aggregate while a file is processed: groups found by their key's raw
/// bytes (borrowed lookup, allocation only for a new group) and their fixed-window cells
/// in a compact arena ([`FixedCells`]; no allocation per cell; a row touches its group's
/// hash entry, its group's chain, which names its last cell, and that cell's words: few
/// cache misses when the groups outgrow the caches, and those looked up a batch ahead).
/// Each cell's `CellState` is built once, at the end, in output order.
struct AggTable {
    index: GroupIndex,
    group_list: Vec<Group>,
    fixed: FixedCells,
}

#[derive(Default)]
struct GroupIndex {
    /// Keys of at most 15 bytes packed into two words (no byte comparison on lookup):
    /// 24-byte entries, small enough to share the core's cache with the cells.
    small: FxHashMap<PackedKey, u32>,
    groups: FxHashMap<Box<[u8]>, u32>,
}

/// A group key of at most 15 bytes as two words: the bytes, zero padded, and the length
/// in the last byte (so keys differing only by trailing zero bytes stay distinct). Not a
/// `u128`, whose 16-byte alignment would pad each map entry from 24 to 32 bytes.
///
/// Hashed as an array, which `FxHasher` takes as bytes: that spreads similar keys (say
/// `card-00001`, `card-00002`) better than hashing the words one by one, and on the
/// bench's 10k cards it is the faster of the two.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct PackedKey([u64; 2]);

/// `bytes` as a [`PackedKey`], when at most 15; built from at most two overlapping
/// fixed-size loads (no variable-length copy).
#[inline]
fn pack_key(bytes: &[u8]) -> Option<PackedKey> {
    let n = bytes.len();
    let word = |at: usize| -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let (lo, hi) = match n {
        0..=7 => {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(bytes);
            (u64::from_le_bytes(b), 0)
        }
        8..=15 => (
            word(0),
            word(n - 8).checked_shr((16 - n as u32) * 8).unwrap_or(0),
        ),
        _ => return None,
    };
    Some(PackedKey([lo, hi | (n as u64) << 56]))
}

/// The first 16 bytes of a group key's first value, zero padded, as an integer that
/// orders like the key wherever two prefixes differ (keys are sorted comparing these,
/// and the whole keys only on a tie: few string comparisons, none through pointers).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct KeyPrefix(u128);

impl KeyPrefix {
    fn of(key: &[String]) -> Self {
        let mut bytes = [0u8; 16];
        if let Some(first) = key.first() {
            let n = first.len().min(16);
            bytes[..n].copy_from_slice(&first.as_bytes()[..n]);
        }
        KeyPrefix(u128::from_be_bytes(bytes))
    }
}

impl AggTable {
    /// Rank of each group (by index) in group-key order.
    fn group_ranks(&self) -> Vec<u32> {
        let order = self.groups_in_order();
        let mut rank = vec![0u32; order.len()];
        for (r, &g) in order.iter().enumerate() {
            rank[g as usize] = r as u32;
        }
        rank
    }

    /// Group indexes in group-key order.
    fn groups_in_order(&self) -> Vec<u32> {
        self.keys_in_order().into_iter().map(|(_, g)| g).collect()
    }

    /// Groups in group-key order, with their [`KeyPrefix`].
    fn keys_in_order(&self) -> Vec<(KeyPrefix, u32)> {
        let mut order: Vec<(KeyPrefix, u32)> = (self.group_list.iter())
            .zip(0..)
            .map(|(g, i)| (KeyPrefix::of(&g.key), i))
            .collect();
        let key = |g: u32| &self.group_list[g as usize].key;
        order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| key(a.1).cmp(key(b.1))));
        order
    }

    fn new(agg: &crate::definition::Aggregate) -> Self {
        AggTable {
            index: GroupIndex::default(),
            group_list: Vec::new(),
            fixed: FixedCells::new(&agg.metrics, agg.window.size_ms()),
        }
    }

    /// Merges the cells of `other`, a table of the same aggregate, into this one.
    fn absorb(&mut self, agg: &crate::definition::Aggregate, other: AggTable) {
        let theirs = other.fixed.by_group();
        for (gb, group) in other.group_list.into_iter().enumerate() {
            let g = match self.index.find(&group.raw) {
                Some(g) => g,
                None => {
                    let g = self.group_list.len() as u32;
                    self.index.insert(&group.raw, g);
                    self.group_list.push(Group {
                        key: group.key,
                        raw: group.raw,
                        sessions: BTreeMap::new(),
                    });
                    g
                }
            };
            match agg.window {
                WindowSpec::Session { gap_ms } => {
                    let sessions = &mut self.group_list[g as usize].sessions;
                    for (start, cell) in group.sessions {
                        merge_session(sessions, gap_ms, start, cell);
                    }
                }
                _ => {
                    for &id in theirs.of(gb as u32) {
                        let cell = self.fixed.cell(g, other.fixed.start(id));
                        self.fixed.merge_cell(cell, &other.fixed, id);
                    }
                }
            }
        }
    }
}

impl GroupIndex {
    /// The group of a key.
    #[inline]
    fn find(&self, key: &[u8]) -> Option<u32> {
        match pack_key(key) {
            Some(k) => self.small.get(&k).copied(),
            None => self.groups.get(key).copied(),
        }
    }

    /// Adds a new key's group.
    fn insert(&mut self, key: &[u8], g: u32) {
        match pack_key(key) {
            Some(k) => self.small.insert(k, g),
            None => self.groups.insert(key.into(), g),
        };
    }
}

struct Ctx<'p> {
    pipeline: &'p Pipeline,
    file: String,
    /// Field index in the file of each declared column.
    layout: Vec<usize>,
    /// The declared columns the typing loop looks at.
    plan: TypingPlan,
    nfields: usize,
    report: FileReport,
    tables: Vec<AggTable>,
    keybuf: Vec<u8>,
    scratch: String,
    session_keys: Vec<i64>,
    /// The group of each record of the batch in each table, where [`Ctx::look_ahead`]
    /// found it ([`NO_GROUP`] otherwise), by record, then by table.
    ahead: Vec<u32>,
    /// The last timestamp field and date parsed: rows that share them are not parsed again.
    times: TimeCache,
    /// Offset in the file of the reader's first byte (a skipped BOM, or where a part
    /// starts): record positions plus this are file offsets.
    byte_base: u64,
    watermark_ms: Option<i64>,
}

/// Processes one file with a pipeline.
pub fn process_file<R: Read>(
    pipeline: &Pipeline,
    input: FileInput<'_>,
    reader: R,
) -> Result<FileReport, FileError> {
    process(pipeline, input, reader).map(Processed::into_report)
}

/// A processed file whose cells are still in the engine's tables: turned into a
/// [`FileReport`] by `into_report`, or written out directly by `csvflow run` when there is
/// nothing to merge them with (one input file). A file processed in parts
/// ([`crate::split`]) keeps the later parts' tables beside the first part's until then.
pub(crate) struct Processed<'p> {
    ctx: Ctx<'p>,
    /// The tables of the later parts, in file order (one per aggregate each).
    later: Vec<Vec<AggTable>>,
}

impl<'p> Processed<'p> {
    fn new(ctx: Ctx<'p>) -> Self {
        Processed {
            ctx,
            later: Vec::new(),
        }
    }

    /// Everything but the cells (bad rows, row alerts, stats, max event time).
    pub(crate) fn report(&self) -> &FileReport {
        &self.ctx.report
    }

    pub(crate) fn into_report(self) -> FileReport {
        let Processed { mut ctx, later } = self;
        for tables in later {
            for ((agg, mine), theirs) in ctx
                .pipeline
                .aggregates
                .iter()
                .zip(ctx.tables.iter_mut())
                .zip(tables)
            {
                mine.absorb(agg, theirs);
            }
        }
        ctx.finish()
    }

    /// Adds the part of the same file that follows this one: its bad rows and row alerts
    /// after these (their lines shifted by `line_shift`, the lines before it), its
    /// counters to these; its cells stay in its own tables until they are read.
    pub(crate) fn absorb(&mut self, later: Processed<'_>, line_shift: u64) {
        let Processed {
            ctx: other,
            later: more_tables,
        } = later;
        self.later.push(other.tables);
        self.later.extend(more_tables);
        let (report, mut more) = (&mut self.ctx.report, other.report);
        for b in &mut more.bad_rows {
            b.line += line_shift;
        }
        for a in &mut more.row_alerts {
            a.line += line_shift;
        }
        report.bad_rows.append(&mut more.bad_rows);
        report.row_alerts.append(&mut more.row_alerts);
        let (s, o) = (&mut report.stats, more.stats);
        s.rows += o.rows;
        s.bad += o.bad;
        s.late += o.late;
        s.bytes += o.bytes;
        report.max_event_ms = match (report.max_event_ms, more.max_event_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// Frees the tables' key -> group maps, which writing them out does not use (their
    /// memory goes back to the allocator, for the output's use, instead of fresh pages).
    pub(crate) fn drop_group_indexes(&mut self) {
        let later = self.later.iter_mut().flatten();
        for table in self.ctx.tables.iter_mut().chain(later) {
            table.index = GroupIndex::default();
        }
    }

    /// Writes the cells of the pipeline's aggregate `agg` as [`crate::write_windows`] would
    /// (CSV), straight from the tables (the parts' cells of one window merged as they are
    /// written); returns the number of cells, or `None` (nothing written) for session
    /// windows, which take the general path.
    pub(crate) fn write_csv<W: std::io::Write + Send>(
        &self,
        agg: usize,
        out: W,
    ) -> Option<std::io::Result<u64>> {
        let a = self.ctx.pipeline.aggregates.get(agg)?;
        if a.window.is_session() {
            return None;
        }
        let mut tables = vec![self.ctx.tables.get(agg)?];
        for part in &self.later {
            tables.push(part.get(agg)?);
        }
        Some(write_fixed_csv(a, &tables, out))
    }
}

/// Writes the fixed-window cells of `tables` (one aggregate; the parts of one file) as
/// CSV in output order: groups by key, then windows by start. Parts were processed on
/// several threads: every other batch of groups is then formatted (and written) on another.
fn write_fixed_csv<W: std::io::Write + Send>(
    a: &crate::definition::Aggregate,
    tables: &[&AggTable],
    mut out: W,
) -> std::io::Result<u64> {
    // Each table's groups in key order and cells by group, the tables side by side.
    let prepare = |t: &AggTable| (t.keys_in_order(), t.fixed.by_group());
    let prepared: Vec<(Vec<(KeyPrefix, u32)>, CellsByGroup)> = std::thread::scope(|scope| {
        let Some((&first, rest)) = tables.split_first() else {
            return Vec::new();
        };
        let later: Vec<_> = rest
            .iter()
            .map(|&t| std::thread::Builder::new().spawn_scoped(scope, move || prepare(t)))
            .collect();
        let mut prepared = vec![prepare(first)];
        for (handle, &t) in later.into_iter().zip(rest) {
            // No thread: prepare that table here.
            prepared.push(match handle {
                Ok(h) => h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
                Err(_) => prepare(t),
            });
        }
        prepared
    });
    // Every (table, group), in key order; a key found in several parts is one run.
    let mut keyed: Vec<(KeyPrefix, usize, u32)> = Vec::new();
    let mut by_group = Vec::with_capacity(tables.len());
    for (t, (order, cells)) in prepared.into_iter().enumerate() {
        keyed.extend(order.into_iter().map(|(prefix, g)| (prefix, t, g)));
        by_group.push(cells);
    }
    let key = |&(t, g): &(usize, u32)| &tables[t].group_list[g as usize].key;
    if tables.len() > 1 {
        // The tables' runs merged (a stable sort finds them); tables in file order.
        keyed.sort_by(|x, y| {
            (x.0.cmp(&y.0))
                .then_with(|| key(&(x.1, x.2)).cmp(key(&(y.1, y.2))))
                .then(x.1.cmp(&y.1))
        });
    }
    // Where each key's run starts: most neighbours differ in their prefixes, which tells
    // them apart without a look at their keys.
    let groups: Vec<Listed> = (0..keyed.len())
        .map(|i| {
            let (prefix, t, g) = keyed[i];
            let first = match i.checked_sub(1).map(|p| keyed[p]) {
                Some((p, pt, pg)) if tables.len() > 1 && p == prefix => {
                    key(&(pt, pg)) != key(&(t, g))
                }
                _ => true,
            };
            Listed {
                table: t,
                group: g,
                first,
            }
        })
        .collect();
    if tables.len() == 1 {
        let mut w = crate::output::CsvWindows::new(a, out)?;
        let count = write_groups(a, tables, &by_group, &groups, &mut w)?;
        w.finish()?;
        return Ok(count);
    }
    // Batches of groups (a key's run never split), formatted here and on a helper thread,
    // written out in order.
    let mut batches = Vec::new();
    let mut rest = groups.as_slice();
    while !rest.is_empty() {
        let mut end = rest.len().min(BATCH_GROUPS);
        while end < rest.len() && !rest[end].first {
            end += 1;
        }
        let (batch, after) = rest.split_at(end);
        batches.push(batch);
        rest = after;
    }
    crate::output::CsvWindows::new(a, &mut out)?.finish()?;
    let out = crate::output::InOrder::new(out);
    let write_batches = || {
        let _stop = out.stop_on_panic();
        let mut count = 0;
        while let Some((i, mut buf)) = out.claim(batches.len()) {
            let mut w = crate::output::CsvWindows::without_header(a, &mut buf);
            let formatted = write_groups(a, tables, &by_group, batches[i], &mut w);
            let written = formatted.and_then(|n| w.finish().map(|()| n));
            match written.and_then(|n| out.write(i, buf).map(|more| (n, more))) {
                Ok((n, true)) => count += n,
                // Another thread's batch failed: it reports why.
                Ok((_, false)) => break,
                Err(e) => {
                    out.fail();
                    return Err(e);
                }
            }
        }
        Ok(count)
    };
    let count = std::thread::scope(|scope| -> std::io::Result<u64> {
        // Batches claimed by this thread and a helper as each is done with one; with no
        // helper, every batch here.
        let helper = std::thread::Builder::new().spawn_scoped(scope, write_batches);
        let mine = write_batches();
        let theirs = match helper {
            Ok(helper) => helper
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e)),
            Err(_) => Ok(0),
        };
        Ok(mine? + theirs?)
    })?;
    out.into_inner()?.flush()?;
    Ok(count)
}

/// Groups per batch of output (about 150 KB of CSV for a day of ten-minute windows).
const BATCH_GROUPS: usize = 64;

/// Groups (of a table) whose cells are prefetched ahead of the one being written.
const PREFETCH_GROUPS: usize = 2;

/// Where a window's accumulators are: in a table's arena, or merged from several parts.
#[derive(Clone, Copy)]
enum CellSource {
    /// (table, cell id)
    Table(usize, u32),
    /// Offset in the group's merged accumulators.
    Merged(usize),
}

/// A group of one of the tables, in output order.
#[derive(Clone, Copy)]
struct Listed {
    table: usize,
    group: u32,
    /// Whether its key differs from the one before (the first of the key's run: a key
    /// found in several tables is one run).
    first: bool,
}

/// Writes the cells of `groups` (in output order, equal keys adjacent); returns the number
/// of windows written.
fn write_groups<W: std::io::Write>(
    a: &crate::definition::Aggregate,
    tables: &[&AggTable],
    by_group: &[CellsByGroup],
    groups: &[Listed],
    w: &mut crate::output::CsvWindows<'_, W>,
) -> std::io::Result<u64> {
    let m = a.metrics.len();
    let (mut cells, mut sources) = (Vec::new(), Vec::new());
    let mut merged = Vec::<Acc>::new();
    let mut count = 0u64;
    let mut run = 0;
    while run < groups.len() {
        let mut end = run + 1;
        while end < groups.len() && !groups[end].first {
            end += 1;
        }
        // The cells lie far apart in the arenas: those of the groups that follow are
        // fetched into the cache while this one's are written.
        for &Listed {
            table: t, group: g, ..
        } in groups[end..].iter().take(PREFETCH_GROUPS)
        {
            for &id in by_group[t].of(g) {
                tables[t].fixed.prefetch(id);
            }
        }
        // (start, table, id) of the key's cells, by start; equal starts merge.
        cells.clear();
        for &Listed {
            table: t, group: g, ..
        } in &groups[run..end]
        {
            let fixed = &tables[t].fixed;
            cells.extend(by_group[t].of(g).iter().map(|&id| (fixed.start(id), t, id)));
        }
        if end - run > 1 {
            cells.sort_by_key(|&(start, t, _)| (start, t));
        }
        sources.clear();
        merged.clear();
        let mut i = 0;
        while i < cells.len() {
            let (start, t, id) = cells[i];
            let mut j = i + 1;
            while j < cells.len() && cells[j].0 == start {
                j += 1;
            }
            if j == i + 1 {
                sources.push((start, CellSource::Table(t, id)));
            } else {
                let at = merged.len();
                let mut state = tables[t].fixed.cell_state(id);
                for &(_, t2, id2) in &cells[i + 1..j] {
                    state.merge(&tables[t2].fixed.cell_state(id2));
                }
                merged.append(&mut state.accs);
                sources.push((start, CellSource::Merged(at)));
            }
            i = j;
        }
        let Listed { table, group, .. } = groups[run];
        w.group(&tables[table].group_list[group as usize].key);
        if a.derived().is_empty() {
            // Fields written straight from the cells.
            for &(start, src) in &sources {
                let end = start.saturating_add(a.window.size_ms());
                w.window_fields(start, end, |buf| match src {
                    CellSource::Table(t, id) => tables[t].fixed.write_fields(id, buf),
                    CellSource::Merged(at) => merged[at..at + m].iter().for_each(|acc| {
                        buf.push(b',');
                        crate::output::value_field(buf, &acc.val());
                    }),
                })?;
            }
            count += sources.len() as u64;
            run = end;
            continue;
        }
        let mut values = Vec::with_capacity(sources.len() * m);
        for &(_, src) in &sources {
            match src {
                CellSource::Table(t, id) => {
                    values.extend((0..m).map(|i| tables[t].fixed.value(id, i)))
                }
                CellSource::Merged(at) => values.extend(merged[at..at + m].iter().map(Acc::val)),
            }
        }
        for (i, &(start, _)) in sources.iter().enumerate() {
            let end = start.saturating_add(a.window.size_ms());
            w.window(start, end, &values[i * m..i * m + m])?;
        }
        count += sources.len() as u64;
        run = end;
    }
    Ok(count)
}

pub(crate) fn process<'p, R: Read>(
    pipeline: &'p Pipeline,
    input: FileInput<'_>,
    reader: R,
) -> Result<Processed<'p>, FileError> {
    let file = input.name.to_string();
    let opened =
        reader::open(reader, input.name, pipeline.dialect.compression).map_err(|(codec, e)| {
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
    let part = Part {
        names: None,
        start: 0,
        byte_base: opened.bom_len,
        stop_at: u64::MAX,
        extend: &mut || None,
    };
    process_part(pipeline, input, opened.reader, part).map(|(p, _)| p)
}

/// A stretch of a plain (uncompressed) file processed on its own ([`crate::split`]).
pub(crate) struct Part<'c> {
    /// The file's column names, for a part that does not start at the top (no header to
    /// read); `None` = read them (or take them from the definition) as for a whole file.
    pub names: Option<Vec<String>>,
    /// File offset where the part starts.
    pub start: u64,
    /// File offset of the reader's first byte (the part's start, or past a BOM).
    pub byte_base: u64,
    /// Stop before the first record that starts at or past this file offset (`u64::MAX`:
    /// read to the end), unless `extend` moves it.
    pub stop_at: u64,
    /// Asked when a record reaches the stop: the part's next stop (it goes on), or `None`
    /// (it stops there).
    pub extend: &'c mut dyn FnMut() -> Option<u64>,
}

/// The first record a part did not process, because it starts at or past its stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Boundary {
    /// Its file offset.
    pub byte: u64,
    /// Its line, counted from the part's start (1-based).
    pub line: u64,
}

/// Processes the records of `part` read from `reader`; the boundary is where it stopped
/// (`None` when it read to the end).
pub(crate) fn process_part<'p, R: Read>(
    pipeline: &'p Pipeline,
    input: FileInput<'_>,
    reader: R,
    part: Part,
) -> Result<(Processed<'p>, Option<Boundary>), FileError> {
    let mut rdr = RecordReader::new(&pipeline.dialect, reader);
    let mut ctx = Ctx {
        pipeline,
        file: input.name.to_string(),
        layout: Vec::new(),
        plan: TypingPlan::default(),
        nfields: 0,
        report: FileReport::default(),
        tables: pipeline.aggregates.iter().map(AggTable::new).collect(),
        keybuf: Vec::with_capacity(64),
        scratch: String::new(),
        session_keys: Vec::new(),
        ahead: Vec::new(),
        times: TimeCache::default(),
        byte_base: part.byte_base,
        watermark_ms: input.watermark_ms,
    };
    let bytes_read =
        |rdr: &RecordReader<R>, ctx: &Ctx<'_>| rdr.position().byte + ctx.byte_base - part.start;

    // Column layout.
    let names: Vec<String> = match part.names {
        Some(names) => names,
        None => match column_names(pipeline, &mut rdr, input.name)? {
            Some(names) => names,
            None => {
                ctx.report.stats.bytes = bytes_read(&rdr, &ctx);
                return Ok((Processed::new(ctx), None));
            }
        },
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
    ctx.plan = TypingPlan::new(pipeline, &ctx.layout);

    let mut stop_at = part.stop_at;
    let lookahead = ctx.lookahead_keys();
    loop {
        let batch = rdr
            .read_batch(BATCH_RECORDS)
            .map_err(|e| read_error(e, input.name))?;
        if batch.is_empty() {
            break;
        }
        ctx.look_ahead(&lookahead, &batch);
        for (i, rec) in batch.iter().enumerate() {
            let byte = rec.position.byte + ctx.byte_base;
            while byte >= stop_at {
                match (part.extend)() {
                    Some(further) => stop_at = further,
                    None => {
                        ctx.report.stats.bytes = byte - part.start;
                        let line = rec.position.line;
                        return Ok((Processed::new(ctx), Some(Boundary { byte, line })));
                    }
                }
            }
            ctx.row(&rec, i)?;
        }
    }
    ctx.report.stats.bytes = bytes_read(&rdr, &ctx);
    Ok((Processed::new(ctx), None))
}

/// The file's column names: its header (`None` for an empty file), or those the
/// definition gives for a file without one.
pub(crate) fn column_names<R: Read>(
    pipeline: &Pipeline,
    rdr: &mut RecordReader<R>,
    file: &str,
) -> Result<Option<Vec<String>>, FileError> {
    let d = &pipeline.dialect;
    if !d.header {
        return Ok(Some(match &d.file_columns {
            Some(c) => c.clone(),
            None => pipeline.columns.iter().map(|c| c.name.clone()).collect(),
        }));
    }
    Ok(read(rdr, file)?.map(|rec| {
        rec.iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_string())
            .collect()
    }))
}

/// The next record; a failed read is a decompression or an I/O error.
fn read<'r, R: Read>(
    rdr: &'r mut RecordReader<R>,
    file: &str,
) -> Result<Option<Record<'r>>, FileError> {
    rdr.read().map_err(|e| read_error(e, file))
}

/// A failed read of `file`: a decompression or an I/O error.
fn read_error(io: std::io::Error, file: &str) -> FileError {
    match reader::as_decompress(&io) {
        Some((codec, _)) => FileError::Decompress {
            file: file.to_string(),
            codec,
            source: io,
        },
        None => FileError::Io {
            file: file.to_string(),
            source: io,
        },
    }
}

/// Types one field. Numbers, bools and timestamps are parsed from the raw bytes (their
/// forms are ASCII); when that fails, a field that is not UTF-8 is reported as such, as
/// it takes precedence over the type error.
#[inline]
fn parse_field<'r>(
    raw: &'r [u8],
    ty: ColumnType,
    null: &[u8],
    tp: &TimeParser,
    times: &mut TimeCache,
) -> Result<Val<'r>, &'static str> {
    if raw == null {
        return Ok(Val::Null);
    }
    let typed = match ty {
        ColumnType::String => {
            let s = std::str::from_utf8(raw).map_err(|_| "invalid UTF-8")?;
            return Ok(Val::Str(s.into()));
        }
        ColumnType::Int => parse_int_bytes(raw).map(Val::Int).ok_or("bad int"),
        ColumnType::Float => parse_float_bytes(raw).map(Val::Float).ok_or("bad float"),
        ColumnType::Bool => parse_bool_bytes(raw).map(Val::Bool).ok_or("bad bool"),
        ColumnType::Timestamp => tp.parse_bytes(raw, times).map(Val::Ts),
    };
    typed.map_err(|why| match std::str::from_utf8(raw) {
        Ok(_) => why,
        Err(_) => "invalid UTF-8",
    })
}

/// Which declared columns the pipeline reads (the time column, group-by columns, metric
/// arguments, row rules, derived columns), by declared index. The others are only
/// validated: a string column nobody reads is not turned into a value.
fn columns_read(p: &Pipeline) -> Vec<bool> {
    let mut read = vec![false; p.columns.len()];
    let mut mark = |slot: usize| {
        if let Some(r) = read.get_mut(slot) {
            *r = true;
        }
    };
    mark(p.time.slot);
    for a in &p.aggregates {
        a.group_slots.iter().copied().for_each(&mut mark);
        for m in &a.metrics {
            m.arg
                .iter()
                .flat_map(|e| e.slots())
                .copied()
                .for_each(&mut mark);
        }
    }
    for r in &p.row_rules {
        r.cond.slots().iter().copied().for_each(&mut mark);
    }
    for d in &p.derived {
        d.expr.slots().iter().copied().for_each(&mut mark);
    }
    read
}

/// How each declared column is typed, in declared order (a row's values are pushed in
/// that order), for each kind of record.
#[derive(Default)]
struct TypingPlan {
    /// For a record that is all ASCII: the typed columns are validated even when nobody
    /// reads them, and so are the string columns the pipeline reads ([`columns_read`]).
    /// A string column nobody reads needs no check there and stays null (`skip`).
    ascii: Vec<TypedColumn>,
    /// For any other record: every column (strings are checked for UTF-8).
    all: Vec<TypedColumn>,
}

#[derive(Clone, Copy)]
struct TypedColumn {
    /// Index among the declared columns (and in the typed row).
    slot: usize,
    /// Index of its field in the file.
    field: usize,
    ty: ColumnType,
    /// Not looked at: the row's value is null.
    skip: bool,
}

impl TypingPlan {
    fn new(p: &Pipeline, layout: &[usize]) -> Self {
        let read = columns_read(p);
        let all: Vec<TypedColumn> = (p.columns.iter().zip(layout).enumerate())
            .map(|(slot, (c, &field))| TypedColumn {
                slot,
                field,
                ty: c.ty,
                skip: false,
            })
            .collect();
        let ascii = (all.iter())
            .map(|&c| TypedColumn {
                skip: c.ty == ColumnType::String && !read[c.slot],
                ..c
            })
            .collect();
        TypingPlan { ascii, all }
    }
}

/// Renders a computed value as group-key text (strings as they are, numbers in shortest
/// round-trip form, timestamps in RFC 3339).
fn render_key(v: &Val<'_>, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let _ = match v {
        Val::Null => Ok(()),
        Val::Str(s) => out.write_all(s.as_bytes()),
        Val::Bool(b) => write!(out, "{b}"),
        Val::Int(i) => write!(out, "{i}"),
        Val::Float(f) => write!(out, "{f}"),
        Val::Ts(t) => out.write_all(crate::types::format_ts(*t).as_bytes()),
    };
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
    /// Processes record `rec`, number `rec_in_batch` of its batch.
    fn row(&mut self, rec: &Record<'_>, rec_in_batch: usize) -> Result<(), FileError> {
        let p = self.pipeline;
        let d = &p.dialect;
        if rec.len() != self.nfields {
            let reason = format!("expected {} fields, found {}", self.nfields, rec.len());
            return self.bad(rec, reason);
        }
        // An ASCII record is valid UTF-8 throughout: its string fields need no further
        // check, and those nobody reads stay null in `row`, where nothing looks at them.
        let ascii = rec.as_ascii();
        let plan = match ascii {
            Some(_) => &self.plan.ascii,
            None => &self.plan.all,
        };
        // Values pushed in slot order (the plan's): none written twice, none dropped.
        let mut row: SmallVec<[Val<'_>; 16]> = SmallVec::new();
        for &TypedColumn {
            slot,
            field,
            ty,
            skip,
        } in plan
        {
            let value = match (ascii, ty) {
                _ if skip => Val::Null,
                (Some(text), ColumnType::String) => match text.get(field) {
                    Some(s) if s != d.null => Val::Str(s.into()),
                    _ => Val::Null,
                },
                _ => {
                    let raw = rec.get(field).unwrap_or_default();
                    let (null, time) = (d.null.as_bytes(), &p.time.parser);
                    match parse_field(raw, ty, null, time, &mut self.times) {
                        Ok(v) => v,
                        Err(why) => {
                            let name = &p.columns[slot].name;
                            let reason = format!("column \"{name}\": {why}: \"{}\"", excerpt(raw));
                            return self.bad(rec, reason);
                        }
                    }
                }
            };
            row.push(value);
        }
        let ts = match row.get(p.time.slot) {
            Some(Val::Ts(t)) => *t,
            _ => {
                let reason = format!("missing timestamp in column \"{}\"", p.time.column);
                return self.bad(rec, reason);
            }
        };
        for d in &p.derived {
            let v = d.expr.eval(&row).into_owned();
            row.push(v);
        }
        let line = rec.position.line;
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
                        .chain(p.derived.iter().zip(&row[p.columns.len()..]).map(|(d, v)| {
                            let mut s = Vec::new();
                            render_key(v, &mut s);
                            (d.name.clone(), String::from_utf8_lossy(&s).into_owned())
                        }))
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

        let tables = self.tables.len();
        for (t, (agg, table)) in p.aggregates.iter().zip(self.tables.iter_mut()).enumerate() {
            // Group key bytes: the raw field for one group-by column, else length-prefixed
            // raw fields (null = empty).
            // Derived columns (slots past the declared ones) key by their rendered value.
            let ncols = p.columns.len();
            let keybytes: &[u8] = match agg.group_slots.as_slice() {
                [] => &[],
                &[slot] if slot < ncols => match row.get(slot) {
                    Some(Val::Null) | None => &[],
                    _ => rec.get(self.layout[slot]).unwrap_or_default(),
                },
                slots => {
                    self.keybuf.clear();
                    for &slot in slots {
                        let at = self.keybuf.len();
                        self.keybuf.extend_from_slice(&[0; 4]);
                        match row.get(slot) {
                            Some(Val::Null) | None => {}
                            Some(v) if slot >= ncols => render_key(v, &mut self.keybuf),
                            _ => self
                                .keybuf
                                .extend_from_slice(rec.get(self.layout[slot]).unwrap_or_default()),
                        }
                        let len = (self.keybuf.len() - at - 4) as u32;
                        self.keybuf[at..at + 4].copy_from_slice(&len.to_le_bytes());
                    }
                    &self.keybuf
                }
            };
            let metrics = &agg.metrics;
            let scratch = &mut self.scratch;
            let found = match self.ahead.get(rec_in_batch * tables + t) {
                Some(&g) if g != NO_GROUP => Some(g),
                _ => table.index.find(keybytes),
            };
            let g = match found {
                Some(g) => g,
                None => {
                    let key = agg
                        .group_slots
                        .iter()
                        .map(|&slot| match row.get(slot) {
                            Some(Val::Null) | None => String::new(),
                            Some(v) if slot >= ncols => {
                                let mut s = Vec::new();
                                render_key(v, &mut s);
                                String::from_utf8_lossy(&s).into_owned()
                            }
                            _ => String::from_utf8_lossy(
                                rec.get(self.layout[slot]).unwrap_or_default(),
                            )
                            .into_owned(),
                        })
                        .collect();
                    let g = table.group_list.len() as u32;
                    table.group_list.push(Group {
                        key,
                        raw: keybytes.into(),
                        sessions: BTreeMap::new(),
                    });
                    table.index.insert(keybytes, g);
                    g
                }
            };
            match agg.window {
                WindowSpec::Session { gap_ms } => {
                    let cell = session_cell(
                        &mut table.group_list[g as usize].sessions,
                        gap_ms,
                        ts,
                        metrics,
                        &mut self.session_keys,
                    );
                    cell.update(metrics, &row, ts, scratch);
                    cell.reopened |= reopened;
                }
                WindowSpec::Tumbling { size_ms } => {
                    let cell = table.fixed.tumbling_cell(g, ts, size_ms);
                    table
                        .fixed
                        .update(cell, metrics, &row, ts, reopened, scratch);
                }
                spec => spec.assign(ts, |start, _end| {
                    let cell = table.fixed.cell(g, start);
                    table
                        .fixed
                        .update(cell, metrics, &row, ts, reopened, scratch);
                }),
            }
        }
        // Typed from the record alone, the values own nothing (their strings borrow the
        // record): dropping them would be a loop over the row that frees nothing.
        if p.derived.is_empty() && !row.spilled() {
            std::mem::forget(row);
        }
        Ok(())
    }

    /// (table, field in the file) of the group keys worth looking up a batch ahead
    /// ([`Self::look_ahead`]): those of one declared column, of tables whose windows live
    /// in the arena (fixed windows).
    fn lookahead_keys(&self) -> Vec<(usize, usize)> {
        let p = self.pipeline;
        (p.aggregates.iter().enumerate())
            .filter(|(_, a)| !a.window.is_session())
            .filter_map(|(t, a)| match a.group_slots.as_slice() {
                &[slot] => Some((t, *self.layout.get(slot)?)),
                _ => None,
            })
            .collect()
    }

    /// Finds the groups of the records of `batch` ([`Self::ahead`]), all the batch's keys
    /// at once, so that their cache misses overlap, and starts loading each group's chain;
    /// then (the chains mostly in) the cell each group touched last, which its row reads
    /// to find its window.
    #[inline]
    fn look_ahead(&mut self, keys: &[(usize, usize)], batch: &Batch<'_>) {
        let tables = self.tables.len();
        self.ahead.clear();
        self.ahead.resize(batch.len() * tables, NO_GROUP);
        let null = self.pipeline.dialect.null.as_bytes();
        for (i, rec) in batch.iter().enumerate() {
            for &(t, field) in keys {
                let Some(raw) = rec.get(field) else { continue };
                // The row's key: a null value keys as no bytes.
                let key = if raw == null { &[][..] } else { raw };
                let table = &self.tables[t];
                if let Some(g) = table.index.find(key) {
                    self.ahead[i * tables + t] = g;
                    table.fixed.prefetch_chain(g);
                }
            }
        }
        for (k, &g) in self.ahead.iter().enumerate() {
            if g != NO_GROUP {
                self.tables[k % tables].fixed.prefetch_last_cell(g);
            }
        }
    }

    fn bad(&mut self, rec: &Record<'_>, reason: String) -> Result<(), FileError> {
        self.report.stats.bad += 1;
        let line = rec.position.line;
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
                    byte_offset: rec.position.byte + self.byte_base,
                    reason,
                    record: render(&self.pipeline.dialect, rec),
                });
                Ok(())
            }
        }
    }

    fn finish(mut self) -> FileReport {
        // Cells come out in key order without comparing strings per cell: aggregates by
        // name, groups ranked once by their key, then window start.
        let mut aggs: Vec<(&crate::definition::Aggregate, AggTable)> =
            self.pipeline.aggregates.iter().zip(self.tables).collect();
        aggs.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let mut cells: Vec<(CellKey, CellState)> = Vec::with_capacity(
            aggs.iter()
                .map(|(_, t)| t.fixed.count() + t.group_list.len())
                .sum(),
        );
        for (agg, table) in aggs {
            let key = |g: &Group, start: i64, end: i64| CellKey {
                aggregate: agg.name.clone(),
                group: g.key.clone(),
                start_ms: start,
                end_ms: end,
            };
            match agg.window {
                WindowSpec::Session { gap_ms } => {
                    let rank = table.group_ranks();
                    let mut groups: Vec<(u32, Group)> = table
                        .group_list
                        .into_iter()
                        .enumerate()
                        .map(|(i, g)| (rank[i], g))
                        .collect();
                    groups.sort_unstable_by_key(|(r, _)| *r);
                    for (_, mut g) in groups {
                        for (start, cell) in std::mem::take(&mut g.sessions) {
                            let end = cell.last_event_ms.saturating_add(gap_ms);
                            cells.push((key(&g, start, end), cell));
                        }
                    }
                }
                WindowSpec::Tumbling { size_ms } | WindowSpec::Hopping { size_ms, .. } => {
                    let f = &table.fixed;
                    let by_group = f.by_group();
                    for g in table.groups_in_order() {
                        let grp = &table.group_list[g as usize];
                        for &id in by_group.of(g) {
                            let start = f.start(id);
                            let end = start.saturating_add(size_ms);
                            cells.push((key(grp, start, end), f.cell_state(id)));
                        }
                    }
                }
            }
        }
        // Sorted already, so the map is bulk-built.
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

/// Merges a session (`start`, `cell`) of the same group into `sessions`, joining those it
/// overlaps or comes within the gap of (as [`session_cell`] does for one event).
fn merge_session(sessions: &mut BTreeMap<i64, CellState>, gap: i64, start: i64, cell: CellState) {
    let reach = cell.last_event_ms.saturating_add(gap);
    let touching: Vec<i64> = sessions
        .range(..=reach)
        .rev()
        .take_while(|(_, c)| c.last_event_ms.saturating_add(gap) >= start)
        .map(|(&k, _)| k)
        .collect();
    let mut merged = cell;
    let mut first = start;
    for k in touching {
        if let Some(c) = sessions.remove(&k) {
            merged.merge(&c);
            first = first.min(k);
        }
    }
    sessions.insert(first, merged);
}

/// Re-encodes a record in the dialect (for quarantine), lossy UTF-8, bounded length.
fn render(d: &Dialect, rec: &Record<'_>) -> String {
    let mut w = csv::WriterBuilder::new()
        .delimiter(d.delimiter)
        .quote(d.quote.unwrap_or(b'"'))
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let bytes = match w.write_record(rec.iter()) {
        Ok(()) => w.into_inner().unwrap_or_default(),
        Err(_) => rec.iter().collect::<Vec<_>>().join(&d.delimiter),
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

#[cfg(test)]
mod tests {
    use super::{pack_key, KeyPrefix, PackedKey};

    /// Keys sorted by prefix, then whole key, are sorted by key: one or two values,
    /// short, equal to 16 bytes or longer, with zero bytes and shared beginnings.
    #[test]
    fn key_prefixes_order_like_keys() {
        let mut next = crate::testing::xorshift(5);
        let alphabet = [
            "",
            "a",
            "\0",
            "é",
            "card-0000000001",
            "card-00000000012",
            "z",
        ];
        let mut value = || -> String {
            (0..next() % 4)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect()
        };
        let mut keys: Vec<Vec<String>> = (0..3_000)
            .map(|i| match i % 3 {
                0 => vec![value()],
                _ => vec![value(), value()],
            })
            .collect();
        let mut by_prefix = keys.clone();
        by_prefix.sort_by(|a, b| (KeyPrefix::of(a).cmp(&KeyPrefix::of(b))).then_with(|| a.cmp(b)));
        keys.sort();
        assert_eq!(by_prefix, keys);
    }

    /// The packed key is the bytes, zero padded to 15, then the length.
    #[test]
    fn pack_key_packs_bytes_and_length() {
        let mut next = crate::testing::xorshift(5);
        for n in 0..=16usize {
            for _ in 0..50 {
                let bytes: Vec<u8> = (0..n).map(|_| next() as u8).collect();
                let want = (n <= 15).then(|| {
                    let mut b = [0u8; 16];
                    b[..n].copy_from_slice(&bytes);
                    b[15] = n as u8;
                    let (lo, hi) = b.split_at(8);
                    PackedKey([lo, hi].map(|w| u64::from_le_bytes(w.try_into().unwrap())))
                });
                assert_eq!(pack_key(&bytes), want, "{bytes:?}");
            }
        }
        assert_ne!(pack_key(b"a"), pack_key(b"a\0"));
    }
}
