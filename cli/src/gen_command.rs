//! `csvflow gen`: write deterministic sample CSV files for the demo use cases (no AWS).

use std::io::Write;
use std::path::PathBuf;

use csvflow_gen::{DateTime, GenOptions, UseCase, Utc};

/// Write deterministic sample CSV files for one use case, or `all`.
#[derive(clap::Args)]
pub struct GenArgs {
    /// card-fraud, fraud-scoring, iot, orders, clickstream, rides, vitals, sentiment, or all.
    use_case: String,
    /// Good rows per use case, across all its files (bad and late rows come on top).
    #[arg(long)]
    rows: usize,
    /// Files per use case, each covering an equal slice of the event-time range.
    #[arg(long)]
    files: usize,
    /// Files go to OUT/<prefix>/<use-case>-NNN.csv.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Malformed rows, spread over the files.
    #[arg(long, default_value_t = 0)]
    bad_rows: usize,
    /// Rows older than the watermark allows, in files 2 and later.
    #[arg(long, default_value_t = 0)]
    late_rows: usize,
    /// Start of the event-time range (RFC3339).
    #[arg(long, default_value = "2026-11-20T00:00:00Z")]
    start: DateTime<Utc>,
}

/// Generates and writes the files; prints one line per use case.
pub fn run(args: GenArgs) -> Result<(), String> {
    if args.files == 0 {
        return Err("--files must be at least 1".to_owned());
    }
    let use_cases = match args.use_case.as_str() {
        "all" => UseCase::ALL.to_vec(),
        name => vec![name.parse::<UseCase>().map_err(|e| e.to_string())?],
    };
    let options = GenOptions {
        rows: args.rows,
        files: args.files,
        seed: args.seed,
        bad_rows: args.bad_rows,
        late_rows: args.late_rows,
        start: args.start,
    };
    let mut stdout = std::io::stdout().lock();
    for use_case in use_cases {
        let files = csvflow_gen::generate(use_case, &options);
        csvflow_gen::write(&files, &args.out).map_err(|e| e.to_string())?;
        let total = |count: fn(&csvflow_gen::GeneratedFile) -> usize| -> usize {
            files.iter().map(count).sum()
        };
        writeln!(
            stdout,
            "use_case={use_case} files={} rows={} bad={} late={} dir={}",
            files.len(),
            total(|f| f.rows),
            total(|f| f.bad_rows),
            total(|f| f.late_rows),
            args.out.join(use_case.prefix()).display()
        )
        .map_err(|e| format!("cannot print: {e}"))?;
    }
    Ok(())
}
