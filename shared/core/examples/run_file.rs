//! `csvflow run` on local files through the library (no AWS crates, fast to build), for
//! profiling the engine: `cargo run --release -p csvflow-core --example run_file --
//! CONFIG PIPELINE AGGREGATE FILE...` (windows to stdout, summary to stderr).

use std::io::{self, BufWriter};
use std::path::PathBuf;

use csvflow_core::{run, OutputFormat, RunOptions};

/// The allocator `csvflow run` uses (cli/src/main.rs), so that profiles match its runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: run_file CONFIG PIPELINE AGGREGATE FILE...";
    let config_path = PathBuf::from(args.next().ok_or(usage)?);
    let pipeline = args.next().ok_or(usage)?;
    let aggregate = Some(args.next().ok_or(usage)?);
    let inputs: Vec<String> = args.collect();
    let opts = RunOptions {
        config_path,
        pipeline,
        aggregate,
        format: OutputFormat::Csv,
        quarantine: None,
        inputs,
        // CSVFLOW_THREADS=1 for the one-pass engine; default one thread per core.
        threads: std::env::var("CSVFLOW_THREADS")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0),
    };
    let mut out = BufWriter::with_capacity(1 << 16, io::stdout());
    run(&opts, &mut out, &mut io::stderr())?;
    Ok(())
}
