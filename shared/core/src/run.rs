//! `csvflow run` as a library function: the engine on local files, the watermark
//! advancing per file exactly like the Lambda, windows printed at the end.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use crate::definition::{Catalog, DefinitionError};
use crate::engine::{process_file, FileError, FileInput, FileStats};
use crate::output::{write_windows, OutputFormat};
use crate::state::WindowState;

/// Options of `csvflow run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub config_path: PathBuf,
    pub pipeline: String,
    /// May be omitted when the pipeline has exactly one aggregate.
    pub aggregate: Option<String>,
    pub format: OutputFormat,
    /// Where to append bad rows as JSON lines.
    pub quarantine: Option<PathBuf>,
    /// Input paths in processing order; "-" is stdin (no inputs = stdin).
    pub inputs: Vec<String>,
}

/// Why `run` failed (one line).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read {path}: {source}")]
    Config {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Definition {
        path: String,
        #[source]
        source: DefinitionError,
    },
    #[error("unknown pipeline \"{name}\" (defined: {known})")]
    UnknownPipeline { name: String, known: String },
    #[error("pipeline \"{pipeline}\": unknown aggregate \"{name}\" (defined: {known})")]
    UnknownAggregate {
        pipeline: String,
        name: String,
        known: String,
    },
    #[error(
        "pipeline \"{pipeline}\" has {count} aggregates, choose one with --aggregate ({known})"
    )]
    AggregateRequired {
        pipeline: String,
        count: usize,
        known: String,
    },
    #[error("cannot open input {path}: {source}")]
    Input {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("cannot write quarantine file {path}: {source}")]
    Quarantine {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot write output: {0}")]
    Output(#[source] io::Error),
}

/// Runs a pipeline over local files and prints the aggregate's windows to `stdout` and a
/// one-line summary (`rows=N bad=N late=N cells=N bytes=N seconds=S`) to `stderr`.
pub fn run(
    opts: &RunOptions,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), RunError> {
    let started = Instant::now();
    let cfg_path = opts.config_path.display().to_string();
    let text = std::fs::read_to_string(&opts.config_path).map_err(|source| RunError::Config {
        path: cfg_path.clone(),
        source,
    })?;
    let catalog = Catalog::from_toml(&text).map_err(|source| RunError::Definition {
        path: cfg_path,
        source,
    })?;
    let pipeline = catalog
        .pipeline(&opts.pipeline)
        .ok_or_else(|| RunError::UnknownPipeline {
            name: opts.pipeline.clone(),
            known: catalog
                .pipelines()
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let known = || {
        pipeline
            .aggregates()
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let agg = match &opts.aggregate {
        Some(name) => pipeline
            .aggregate(name)
            .ok_or_else(|| RunError::UnknownAggregate {
                pipeline: pipeline.name().to_string(),
                name: name.clone(),
                known: known(),
            })?,
        None => match pipeline.aggregates() {
            [one] => one,
            many => {
                return Err(RunError::AggregateRequired {
                    pipeline: pipeline.name().to_string(),
                    count: many.len(),
                    known: known(),
                })
            }
        },
    };

    let mut quarantine = match &opts.quarantine {
        Some(p) => Some((
            p.display().to_string(),
            BufWriter::new(File::options().create(true).append(true).open(p).map_err(
                |source| RunError::Quarantine {
                    path: p.display().to_string(),
                    source,
                },
            )?),
        )),
        None => None,
    };

    let stdin_only = vec!["-".to_string()];
    let inputs = if opts.inputs.is_empty() {
        &stdin_only
    } else {
        &opts.inputs
    };
    let mut state = WindowState::new();
    let mut total = FileStats::default();
    for path in inputs {
        let input = FileInput {
            name: if path == "-" { "stdin" } else { path },
            watermark_ms: state.watermark_ms(pipeline),
        };
        let report = if path == "-" {
            process_file(pipeline, input, io::stdin().lock())?
        } else {
            let f = File::open(path).map_err(|source| RunError::Input {
                path: path.clone(),
                source,
            })?;
            process_file(pipeline, input, f)?
        };
        if let Some((qpath, w)) = quarantine.as_mut() {
            for b in &report.bad_rows {
                let line = serde_json::to_string(b).map_err(io::Error::from);
                line.and_then(|l| writeln!(w, "{l}"))
                    .map_err(|source| RunError::Quarantine {
                        path: qpath.clone(),
                        source,
                    })?;
            }
        }
        total.rows += report.stats.rows;
        total.bad += report.stats.bad;
        total.late += report.stats.late;
        total.bytes += report.stats.bytes;
        state.apply(pipeline, &report);
    }
    if let Some((qpath, mut w)) = quarantine {
        w.flush().map_err(|source| RunError::Quarantine {
            path: qpath,
            source,
        })?;
    }
    write_windows(agg, state.cells(), opts.format, &mut *stdout).map_err(RunError::Output)?;
    let cells = state
        .cells()
        .filter(|(k, _)| k.aggregate == agg.name())
        .count();
    writeln!(
        stderr,
        "rows={} bad={} late={} cells={} bytes={} seconds={:.3}",
        total.rows,
        total.bad,
        total.late,
        cells,
        total.bytes,
        started.elapsed().as_secs_f64()
    )
    .map_err(RunError::Output)?;
    Ok(())
}
