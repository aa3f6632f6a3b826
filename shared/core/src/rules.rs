//! Window alert rules: a rule fires for a cell when its condition holds after a change
//! and did not hold before (so a window crossing a threshold and then growing alerts once).

use serde::Serialize;

use crate::definition::{Aggregate, Pipeline};
use crate::engine::CellKey;
use crate::metrics::{CellState, MetricValue};
use crate::state::CellChange;
use crate::types::Val;

/// A window rule that fired.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowAlert {
    pub rule: String,
    pub key: CellKey,
    /// Metric values before (those of an empty cell when the cell is new).
    pub before: Vec<(String, MetricValue)>,
    pub after: Vec<(String, MetricValue)>,
}

/// The row a window rule sees: metrics, group-by values, window_start, window_end.
fn scope_row<'a>(cell: &'a CellState, key: &'a CellKey) -> Vec<Val<'a>> {
    let mut row = cell.typed_values();
    row.extend(key.group.iter().map(|g| Val::Str(g.as_str().into())));
    row.push(Val::Ts(key.start_ms));
    row.push(Val::Ts(key.end_ms));
    row
}

fn named(agg: &Aggregate, cell: &CellState) -> Vec<(String, MetricValue)> {
    agg.metric_names()
        .into_iter()
        .map(str::to_string)
        .zip(cell.values())
        .collect()
}

impl Pipeline {
    /// Window rules that fire for a cell change.
    pub fn window_alerts(&self, change: &CellChange) -> Vec<WindowAlert> {
        let Some(agg) = self.aggregate(&change.key.aggregate) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let empty;
        let before = match &change.before {
            Some(b) => b,
            None => {
                empty = CellState::new(&agg.metrics);
                &empty
            }
        };
        for rule in self
            .window_rules
            .iter()
            .filter(|r| r.aggregate == change.key.aggregate)
        {
            let after_row = scope_row(&change.after, &change.key);
            if !rule.cond.matches(&after_row) {
                continue;
            }
            let held =
                change.before.is_some() && rule.cond.matches(&scope_row(before, &change.key));
            if !held {
                out.push(WindowAlert {
                    rule: rule.name.clone(),
                    key: change.key.clone(),
                    before: named(agg, before),
                    after: named(agg, &change.after),
                });
            }
        }
        out
    }
}
