//! Committing a file's partials through a [`WindowStore`]: cut them into deterministic
//! chunks (the same file always gives the same chunks, which is what lets the ledger
//! recognise a chunk on a retry), skip the chunks the ledger has, commit the rest, then
//! finish the file. The store decides how a chunk lands atomically.

use crate::ports::{ObjectRef, WindowStore};
use crate::{CellChange, CellKey, CellState, FileReport, Pipeline};

/// Most writes in one chunk's transaction besides its ledger entry (DynamoDB allows 100
/// actions per transaction).
pub const CHUNK_WRITES: usize = 99;

/// How many cells of an aggregate fit in one chunk. Each cell may also raise one alert
/// per window rule of its aggregate (plus a cool-down item), and a session cell may absorb (delete) stored
/// sessions, so those leave room. Depends on the definition only: deterministic.
pub fn chunk_cells(pipeline: &Pipeline, aggregate: &str) -> usize {
    // A rule with a cool-down may also write its cool-down item.
    let rules: usize = pipeline
        .window_rules()
        .iter()
        .filter(|r| r.aggregate == aggregate)
        .map(|r| 1 + usize::from(r.cooldown_ms.is_some()))
        .sum();
    let session = pipeline
        .aggregate(aggregate)
        .is_some_and(|a| a.is_session());
    let per_cell = 1 + rules + if session { 2 } else { 0 };
    (CHUNK_WRITES / per_cell).max(1)
}

/// One chunk: cells in key order.
pub type Chunk<'r> = Vec<(&'r CellKey, &'r CellState)>;

/// Cuts a file's cells into chunks. Deterministic in the report and the definition
/// alone. A chunk holds one aggregate's cells; the cells of one session group stay in
/// one chunk so their merges see each other.
pub fn plan_chunks<'r>(pipeline: &Pipeline, report: &'r FileReport) -> Vec<Chunk<'r>> {
    let mut chunks: Vec<Chunk<'r>> = Vec::new();
    let mut current: Chunk<'r> = Vec::new();
    for (key, state) in &report.cells {
        if let Some((previous, _)) = current.last() {
            let session = pipeline
                .aggregate(&key.aggregate)
                .is_some_and(|a| a.is_session());
            let other_aggregate = previous.aggregate != key.aggregate;
            let same_session_group = session && !other_aggregate && previous.group == key.group;
            let full = current.len() >= chunk_cells(pipeline, &key.aggregate);
            if other_aggregate || (full && !same_session_group) {
                chunks.push(std::mem::take(&mut current));
            }
        }
        current.push((key, state));
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// What committing a file did.
#[derive(Clone, Debug, Default)]
pub struct CommitOutcome {
    /// Windows this invocation changed (chunks committed by an earlier or concurrent
    /// delivery of the same file are not repeated), for window alerts.
    pub changes: Vec<CellChange>,
    /// Write requests sent: windows, absorbed sessions, ledger entries, watermark.
    pub writes: u64,
    pub chunks: usize,
    /// Chunks skipped because the ledger shows them committed already.
    pub chunks_already_done: usize,
}

/// Commits a processed file's chunks exactly once (skipping those the ledger has). The
/// caller then runs [`WindowStore::finish`], after anything that must happen before the
/// file counts as done (e.g. recording the alerts of the windows it closes).
pub async fn commit_chunks<W: WindowStore>(
    store: &W,
    pipeline: &Pipeline,
    file: &ObjectRef,
    report: &FileReport,
) -> Result<CommitOutcome, W::Error> {
    let chunks = plan_chunks(pipeline, report);
    let done = store.committed_chunks(pipeline, file).await?;
    let mut outcome = CommitOutcome {
        chunks: chunks.len(),
        ..CommitOutcome::default()
    };
    for (index, cells) in chunks.iter().enumerate() {
        if done.contains(&index) {
            outcome.chunks_already_done += 1;
            continue;
        }
        match store.commit_chunk(pipeline, file, index, cells).await? {
            Some(chunk) => {
                outcome.changes.extend(chunk.changes);
                outcome.writes += chunk.writes;
            }
            None => outcome.chunks_already_done += 1,
        }
    }
    Ok(outcome)
}
