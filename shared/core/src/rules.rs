//! Window alert rules. A `change` rule fires for a cell when its condition holds after a
//! change and did not hold before (so a window crossing a threshold and then growing
//! alerts once); a `close` rule is checked once, when the watermark passes the window's
//! end. Conditions may read the previous window of the same group (`prev.<metric>`);
//! cool-downs need the history of alerts, so stores apply them (see [`WindowRule`]).

use serde::Serialize;

use crate::definition::{Pipeline, RuleTrigger, WindowRule};
use crate::engine::CellKey;
use crate::metrics::{CellState, MetricValue};
use crate::state::CellChange;

/// A window rule that fired.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowAlert {
    pub rule: String,
    pub key: CellKey,
    /// Output values (metrics, then derived values) before the change (those of an empty
    /// cell when the cell is new; equal to `after` for `close` rules).
    pub before: Vec<(String, MetricValue)>,
    pub after: Vec<(String, MetricValue)>,
}

impl Pipeline {
    /// The window rules of an aggregate checked on `trigger`.
    pub fn rules_on<'p>(
        &'p self,
        aggregate: &'p str,
        trigger: RuleTrigger,
    ) -> impl Iterator<Item = &'p WindowRule> + 'p {
        self.window_rules
            .iter()
            .filter(move |r| r.aggregate == aggregate && r.on == trigger)
    }

    /// `change` rules that fire for a cell change. `previous` is the stored state of the
    /// previous window of the same group, for rules that read `prev.`.
    pub fn window_alerts(
        &self,
        change: &CellChange,
        previous: Option<&CellState>,
    ) -> Vec<WindowAlert> {
        let Some(agg) = self.aggregate(&change.key.aggregate) else {
            return Vec::new();
        };
        let empty;
        let before = match &change.before {
            Some(b) => b,
            None => {
                empty = CellState::new(&agg.metrics);
                &empty
            }
        };
        let mut out = Vec::new();
        for rule in self.rules_on(&change.key.aggregate, RuleTrigger::Change) {
            let after_row = agg.scope_row(&change.key, &change.after, previous);
            if !rule.cond.matches(&after_row) {
                continue;
            }
            let held = change.before.is_some()
                && rule
                    .cond
                    .matches(&agg.scope_row(&change.key, before, previous));
            if !held {
                out.push(WindowAlert {
                    rule: rule.name.clone(),
                    key: change.key.clone(),
                    before: agg.named_values(&change.key, before),
                    after: agg.named_values(&change.key, &change.after),
                });
            }
        }
        out
    }

    /// `close` rules that fire for a window the watermark has passed.
    pub fn close_alerts(
        &self,
        key: &CellKey,
        cell: &CellState,
        previous: Option<&CellState>,
    ) -> Vec<WindowAlert> {
        let Some(agg) = self.aggregate(&key.aggregate) else {
            return Vec::new();
        };
        let row = agg.scope_row(key, cell, previous);
        self.rules_on(&key.aggregate, RuleTrigger::Close)
            .filter(|r| r.cond.matches(&row))
            .map(|r| {
                let values = agg.named_values(key, cell);
                WindowAlert {
                    rule: r.name.clone(),
                    key: key.clone(),
                    before: values.clone(),
                    after: values,
                }
            })
            .collect()
    }
}
