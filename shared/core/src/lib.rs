//! csvflow-core: the csvflow engine — pipeline definitions, CSV dialects, typed rows,
//! event-time windows, mergeable metrics, alert rules and the local runner. No AWS.
//!
//! Data flows: `Catalog::route(key)` → `process_file` (CSV → typed rows → windows →
//! `FileReport` of mergeable `CellState` partials) → a store merges partials
//! (`WindowState` in memory, DynamoDB in `csvflow-aws`) → `Pipeline::window_alerts`.

pub mod alerting;
mod arena;
mod cells;
mod claims;
pub mod closing;
pub mod commit;
pub mod definition;
pub mod engine;
pub mod expr;
pub mod metrics;
pub mod output;
pub mod ports;
mod reader;
mod records;
pub mod resources;
pub mod rules;
pub mod run;
pub mod sketch;
mod split;
pub mod state;
#[cfg(test)]
mod testing;
pub mod types;
pub mod window;

pub use definition::{Aggregate, Catalog, DefinitionError, Pipeline, RuleTrigger};
pub use engine::{
    process_file, BadRow, CellKey, FileError, FileInput, FileReport, FileStats, RowAlert,
};
pub use metrics::{CellState, MetricValue};
pub use output::{write_windows, OutputFormat};
pub use resources::{DirLoader, FileLoader, NoFiles};
pub use rules::WindowAlert;
pub use run::{run, RunError, RunOptions};
pub use state::{merge_sessions, CellChange, WindowState};
