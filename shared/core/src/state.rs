//! In-memory windowed state of one pipeline: merging file reports into cells (sessions
//! merge with overlapping/touching sessions of the same key) and tracking the watermark.
//! Used by `csvflow run` and by the AWS layer's in-memory fake store.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::definition::Pipeline;
use crate::engine::{CellKey, FileReport};
use crate::metrics::CellState;

/// What applying a report did to one cell.
#[derive(Clone, Debug, PartialEq)]
pub struct CellChange {
    /// The cell's key after the change.
    pub key: CellKey,
    /// The state before (for sessions: the earliest existing session it grew from).
    pub before: Option<CellState>,
    pub after: CellState,
    /// Session cells absorbed into `key` (deleted).
    pub removed: Vec<CellKey>,
}

/// Cells plus the max event time seen.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WindowState {
    cells: BTreeMap<CellKey, CellState>,
    max_event_ms: Option<i64>,
}

impl WindowState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Max event time seen minus the pipeline's allowed lateness.
    pub fn watermark_ms(&self, pipeline: &Pipeline) -> Option<i64> {
        self.max_event_ms
            .map(|m| m.saturating_sub(pipeline.allowed_lateness_ms()))
    }

    pub fn max_event_ms(&self) -> Option<i64> {
        self.max_event_ms
    }

    /// Merges a file's cells and advances the max event time.
    pub fn apply(&mut self, pipeline: &Pipeline, report: &FileReport) -> Vec<CellChange> {
        let mut changes = Vec::with_capacity(report.cells.len());
        for (key, cell) in &report.cells {
            let gap = pipeline
                .aggregate(&key.aggregate)
                .and_then(|a| a.session_gap_ms());
            let change = match gap {
                Some(gap) => self.apply_session(gap, key, cell),
                None => {
                    let before = self.cells.get(key).cloned();
                    let after = match self.cells.get_mut(key) {
                        Some(c) => {
                            c.merge(cell);
                            c.clone()
                        }
                        None => {
                            self.cells.insert(key.clone(), cell.clone());
                            cell.clone()
                        }
                    };
                    CellChange {
                        key: key.clone(),
                        before,
                        after,
                        removed: Vec::new(),
                    }
                }
            };
            changes.push(change);
        }
        if let Some(m) = report.max_event_ms {
            self.max_event_ms = Some(self.max_event_ms.map_or(m, |x| x.max(m)));
        }
        changes
    }

    /// Merges a file's cells and advances the max event time, like [`WindowState::apply`],
    /// but moves the report's cells in and reports nothing (no `CellChange`, no clones):
    /// the path for callers that only want the resulting state (`csvflow run`).
    pub fn absorb(&mut self, pipeline: &Pipeline, report: FileReport) {
        if let Some(m) = report.max_event_ms {
            self.max_event_ms = Some(self.max_event_ms.map_or(m, |x| x.max(m)));
        }
        let cells = report.cells;
        let sessions = pipeline
            .aggregates()
            .iter()
            .any(|a| a.session_gap_ms().is_some());
        if self.cells.is_empty() && !sessions {
            // Nothing to merge with: the report's map becomes the state as is.
            self.cells = cells;
            return;
        }
        for (key, cell) in cells {
            let gap = pipeline
                .aggregate(&key.aggregate)
                .and_then(|a| a.session_gap_ms());
            match gap {
                Some(gap) => {
                    self.apply_session(gap, &key, &cell);
                }
                None => match self.cells.entry(key) {
                    Entry::Occupied(mut e) => e.get_mut().merge(&cell),
                    Entry::Vacant(e) => {
                        e.insert(cell);
                    }
                },
            }
        }
    }

    fn apply_session(&mut self, gap: i64, key: &CellKey, cell: &CellState) -> CellChange {
        let lo = CellKey {
            aggregate: key.aggregate.clone(),
            group: key.group.clone(),
            start_ms: i64::MIN,
            end_ms: i64::MIN,
        };
        let hi = CellKey {
            start_ms: key.end_ms,
            end_ms: i64::MAX,
            ..lo.clone()
        };
        let touching: Vec<CellKey> = self
            .cells
            .range(lo..=hi)
            .filter(|(k, _)| k.end_ms >= key.start_ms)
            .map(|(k, _)| k.clone())
            .collect();
        let existing: Vec<(CellKey, CellState)> = touching
            .iter()
            .filter_map(|k| self.cells.remove(k).map(|c| (k.clone(), c)))
            .collect();
        let before = existing.first().map(|(_, c)| c.clone());
        let (new_key, merged) = merge_sessions(gap, existing, (key.clone(), cell.clone()));
        let removed = touching.into_iter().filter(|k| *k != new_key).collect();
        self.cells.insert(new_key.clone(), merged.clone());
        CellChange {
            key: new_key,
            before,
            after: merged,
            removed,
        }
    }

    pub fn cells(&self) -> impl Iterator<Item = (&CellKey, &CellState)> {
        self.cells.iter()
    }

    pub fn get(&self, key: &CellKey) -> Option<&CellState> {
        self.cells.get(key)
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// Merges a new session cell with the existing sessions of the same key that overlap or
/// touch it (the caller finds them, e.g. by querying `[start - gap, end + gap]`). The
/// result spans the earliest start to the latest end (= last event + gap).
pub fn merge_sessions(
    gap_ms: i64,
    existing: Vec<(CellKey, CellState)>,
    new: (CellKey, CellState),
) -> (CellKey, CellState) {
    let (mut key, mut state) = new;
    for (k, c) in existing {
        if k.aggregate != key.aggregate || k.group != key.group {
            continue;
        }
        key.start_ms = key.start_ms.min(k.start_ms);
        key.end_ms = key.end_ms.max(k.end_ms);
        state.merge(&c);
    }
    if state.last_event_ms != i64::MIN {
        key.end_ms = key.end_ms.max(state.last_event_ms.saturating_add(gap_ms));
    }
    if state.first_event_ms != i64::MAX {
        key.start_ms = key.start_ms.min(state.first_event_ms);
    }
    (key, state)
}
