//! `csvflow run` as a library function: the engine on local files, the watermark
//! advancing per file exactly like the Lambda, windows printed at the end.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::definition::{Catalog, DefinitionError};
use crate::engine::{process, FileError, FileInput, FileStats};
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
    /// Threads per input file (plain text files of 8 MiB and more are cut into parts);
    /// 0 = one per core.
    pub threads: usize,
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
    stdout: &mut (dyn Write + Send),
    stderr: &mut dyn Write,
) -> Result<(), RunError> {
    let started = Instant::now();
    let cfg_path = opts.config_path.display().to_string();
    let text = std::fs::read_to_string(&opts.config_path).map_err(|source| RunError::Config {
        path: cfg_path.clone(),
        source,
    })?;
    let dir = opts
        .config_path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let files = crate::resources::DirLoader(dir);
    let catalog =
        Catalog::from_toml_with(&text, &files).map_err(|source| RunError::Definition {
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
    let agg_index = pipeline
        .aggregates()
        .iter()
        .position(|a| std::ptr::eq(a, agg))
        .unwrap_or(0);
    // One input: its cells are the whole state, so they are written straight from the
    // engine's tables (no per-cell keys, map or merge). More inputs merge in a WindowState.
    let single = inputs.len() == 1 && opts.format == OutputFormat::Csv;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let mut state = WindowState::new();
    let mut total = FileStats::default();
    let mut written: Option<u64> = None;
    for path in inputs {
        let input = FileInput {
            name: if path == "-" { "stdin" } else { path },
            watermark_ms: state.watermark_ms(pipeline),
        };
        let mut processed = if path == "-" {
            process(pipeline, input, io::stdin().lock())?
        } else {
            let f = File::open(path).map_err(|source| RunError::Input {
                path: path.clone(),
                source,
            })?;
            crate::split::process_path(pipeline, input, f, Path::new(path), threads)?
        };
        let report = processed.report();
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
        if single {
            if !agg.window.is_session() {
                // Written straight from the tables: their group maps are done with.
                processed.drop_group_indexes();
            }
            if let Some(n) = processed.write_csv(agg_index, &mut *stdout) {
                written = Some(n.map_err(RunError::Output)?);
                // Freeing every cell costs a tenth of a short run and `csvflow run` exits
                // right after: leave the tables to the OS, like a process exit would.
                std::mem::forget(processed);
                continue;
            }
        }
        state.absorb(pipeline, processed.into_report());
    }
    if let Some((qpath, mut w)) = quarantine {
        w.flush().map_err(|source| RunError::Quarantine {
            path: qpath,
            source,
        })?;
    }
    let cells = match written {
        Some(n) => n,
        None => {
            write_windows(agg, state.cells(), opts.format, &mut *stdout)
                .map_err(RunError::Output)?;
            state
                .cells()
                .filter(|(k, _)| k.aggregate == agg.name())
                .count() as u64
        }
    };
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
    // As above: `csvflow run` exits right after, so the OS frees the state at once.
    std::mem::forget(state);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{process_file, FileReport};
    use crate::{Catalog, Pipeline};

    const DEF: &str = r#"
[[pipeline]]
name = "p"
match = "**"
[pipeline.time]
column = "ts"
format = "epoch_s"
allowed_lateness = "1d"
[pipeline.columns]
ts = "timestamp"
k = "string"
amount = "float"
n = "int"
c = "string"

[[pipeline.aggregate]]
name = "tumbling"
group_by = ["k"]
window = { tumbling = "10m" }
[pipeline.aggregate.metrics]
cnt = "count()"
ci = "count_if(c != \"FR\")"
s = "sum(amount)"
si = "sum(n)"
mn = "min(amount)"
mx = "max(c)"
av = "avg(amount)"
fi = "first(c)"
la = "last(n)"
di = "distinct(c)"
p90 = "p90(amount)"

[[pipeline.aggregate]]
name = "hopping"
group_by = ["k", "c"]
window = { hopping = "10m", every = "3m" }
[pipeline.aggregate.metrics]
cnt = "count()"
s = "sum(amount)"
la = "last(c)"

[[pipeline.aggregate]]
name = "session"
group_by = ["k"]
window = { session_gap = "7m" }
[pipeline.aggregate.metrics]
cnt = "count()"
s = "sum(amount)"
"#;

    /// Rows over 8 hours and keys short, long (> 15 bytes, the packed-key limit), quoted
    /// with a comma, and null; `shuffle` puts them out of time order.
    fn rows(count: u64, seed: u64, shuffle: bool) -> Vec<String> {
        const KEYS: [&str; 6] = [
            "a",
            "b",
            "a-much-longer-group-key",
            "\"with, comma\"",
            "",
            "card-00001",
        ];
        let mut next = crate::testing::xorshift(seed);
        let mut out: Vec<String> = (0..count)
            .map(|i| {
                let r = next();
                format!(
                    "{},{},{}.{:02},{},{}\n",
                    1_795_132_800 + i * 28_800 / count,
                    KEYS[(r % 6) as usize],
                    (r >> 8) % 9000,
                    (r >> 20) % 100,
                    (r >> 30) % 50,
                    ["FR", "DE", "US", ""][((r >> 40) % 4) as usize],
                )
            })
            .collect();
        if shuffle {
            for i in (1..out.len()).rev() {
                out.swap(i, (next() % (i as u64 + 1)) as usize);
            }
        }
        out
    }

    fn csv(rows: &[String]) -> String {
        let mut s = String::from("ts,k,amount,n,c\n");
        rows.iter().for_each(|r| s.push_str(r));
        s
    }

    fn report(p: &Pipeline, data: &str) -> FileReport {
        let input = FileInput {
            name: "f",
            watermark_ms: None,
        };
        process_file(p, input, data.as_bytes()).unwrap()
    }

    fn run_text(dir: &std::path::Path, agg: &str, inputs: &[&str]) -> String {
        let opts = RunOptions {
            config_path: dir.join("p.toml"),
            pipeline: "p".into(),
            aggregate: Some(agg.into()),
            format: OutputFormat::Csv,
            quarantine: None,
            inputs: inputs
                .iter()
                .map(|f| dir.join(f).display().to_string())
                .collect(),
            threads: 0,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        run(&opts, &mut out, &mut err).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fast_paths_equal_the_general_path() {
        let cat = Catalog::from_toml(DEF).unwrap();
        let p = &cat.pipelines()[0];
        let dir = std::env::temp_dir().join(format!("csvflow-run-fast-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("p.toml"), DEF).unwrap();
        let ordered = csv(&rows(3000, 7, false));
        let shuffled = csv(&rows(3000, 7, true));
        let (part1, part2) = {
            let r = rows(3000, 7, true);
            (csv(&r[..1400]), csv(&r[1400..]))
        };
        std::fs::write(dir.join("shuffled.csv"), &shuffled).unwrap();
        std::fs::write(dir.join("part1.csv"), &part1).unwrap();
        std::fs::write(dir.join("part2.csv"), &part2).unwrap();

        // Cells found through the ordered and the out-of-order paths agree.
        let (a, b) = (report(p, &ordered), report(p, &shuffled));
        assert_eq!(a.cells, b.cells);
        assert!(a.cells.len() > 500, "{}", a.cells.len());

        // absorb == apply, over two files.
        let mut applied = WindowState::new();
        let mut absorbed = WindowState::new();
        for part in [&part1, &part2] {
            let r = report(p, part);
            applied.apply(p, &r);
            absorbed.absorb(p, r);
        }
        assert_eq!(
            applied.cells().collect::<Vec<_>>(),
            absorbed.cells().collect::<Vec<_>>()
        );

        // `run` on one file (written straight from the engine's tables) and on two files
        // (merged in a WindowState) print what write_windows prints for the merged state.
        let mut whole = WindowState::new();
        whole.apply(p, &b);
        for agg in p.aggregates() {
            let mut expect = Vec::new();
            write_windows(agg, whole.cells(), OutputFormat::Csv, &mut expect).unwrap();
            let expect = String::from_utf8(expect).unwrap();
            assert!(expect.contains("\n\"with, comma\","), "{expect}");
            assert_eq!(
                run_text(&dir, agg.name(), &["shuffled.csv"]),
                expect,
                "{}",
                agg.name()
            );
            let two = run_text(&dir, agg.name(), &["part1.csv", "part2.csv"]);
            assert_eq!(two, expect, "{}", agg.name());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
