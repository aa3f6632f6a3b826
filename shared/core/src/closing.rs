//! Which windows a file closes, for `on = "close"` rules: those whose end the watermark
//! passes while the file is committed (from the watermark before the file, fixed by its
//! first attempt, to the watermark after it), so every retry closes the same windows.

use crate::definition::{Pipeline, RuleTrigger};
use crate::engine::{CellKey, FileReport};
use crate::window::WindowSpec;

/// The watermark once a file is committed: the max event time seen, minus the allowed
/// lateness, never going back.
pub fn watermark_after(
    pipeline: &Pipeline,
    before_ms: Option<i64>,
    report: &FileReport,
) -> Option<i64> {
    let file = report
        .max_event_ms
        .map(|m| m.saturating_sub(pipeline.allowed_lateness_ms()));
    match (before_ms, file) {
        (Some(b), Some(f)) => Some(b.max(f)),
        (b, f) => b.or(f),
    }
}

/// Windows of one aggregate a file closes: those starting in `from_start_ms..=to_start_ms`
/// (so ending in `(before, after]`), and the file's own cells among them.
#[derive(Clone, Debug, PartialEq)]
pub struct Closing {
    pub aggregate: String,
    pub from_start_ms: i64,
    pub to_start_ms: i64,
    /// The file's own cells in the range (a store's time index may lag behind writes).
    pub file_cells: Vec<CellKey>,
}

/// What a file closes, per aggregate with close rules (tumbling and hopping windows).
pub fn closing(pipeline: &Pipeline, before_ms: Option<i64>, report: &FileReport) -> Vec<Closing> {
    let Some(after) = watermark_after(pipeline, before_ms, report) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for agg in pipeline.aggregates() {
        if pipeline
            .rules_on(agg.name(), RuleTrigger::Close)
            .next()
            .is_none()
        {
            continue;
        }
        let size = match agg.window() {
            WindowSpec::Tumbling { size_ms } | WindowSpec::Hopping { size_ms, .. } => size_ms,
            WindowSpec::Session { .. } => continue,
        };
        // end = start + size; end in (before, after].
        let from_start_ms =
            before_ms.map_or(i64::MIN, |b| b.saturating_sub(size).saturating_add(1));
        let to_start_ms = after.saturating_sub(size);
        if from_start_ms > to_start_ms {
            continue;
        }
        let file_cells = report
            .cells
            .keys()
            .filter(|k| {
                k.aggregate == agg.name() && (from_start_ms..=to_start_ms).contains(&k.start_ms)
            })
            .cloned()
            .collect();
        out.push(Closing {
            aggregate: agg.name().to_string(),
            from_start_ms,
            to_start_ms,
            file_cells,
        });
    }
    out
}
