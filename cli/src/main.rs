//! `csvflow`: run a pipeline on local files, run the local event-source runner against
//! LocalStack, replay S3 objects through the ingest handler, and read windows back.

mod aws_commands;
mod dashboard;
mod gen_command;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use csvflow_core::{OutputFormat, RunOptions};

/// mimalloc rather than the system allocator: `csvflow run` builds tens of megabytes of
/// cells, and mimalloc's regions get transparent huge pages where the kernel offers them
/// (on the 1M-row bench file, two threads: about 720 page faults instead of 14,400, and a
/// tenth off the run; see the README's bench section).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "csvflow",
    version,
    about = "Windowed analytics for CSV files landing in S3"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Json,
}

impl From<Format> for OutputFormat {
    fn from(format: Format) -> Self {
        match format {
            Format::Csv => OutputFormat::Csv,
            Format::Json => OutputFormat::Json,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline on local files (no AWS) and print its windows.
    Run {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        pipeline: String,
        /// Which aggregate to print; may be left out when the pipeline has one.
        #[arg(long)]
        aggregate: Option<String>,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        /// Write bad rows here as JSON lines.
        #[arg(long)]
        quarantine: Option<PathBuf>,
        /// Threads per input file: a plain CSV file of 8 MiB or more is cut at line
        /// starts into parts processed side by side (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Input files, in order; `-` is stdin.
        #[arg(required = true)]
        inputs: Vec<String>,
    },
    /// Play Lambda's SQS event source mapping locally: poll the ingest queue and run the
    /// ingest handler in-process for every S3 notification. Settings come from the
    /// environment (see `localstack/lambda-env`).
    Local {
        /// The queue S3 notifications land in.
        #[arg(long, env = "INGEST_QUEUE_URL")]
        queue_url: String,
        /// Stop after the queue has been empty this many seconds (default: run forever).
        #[arg(long)]
        exit_when_idle: Option<u64>,
    },
    /// Run the ingest handler on S3 objects exactly as the Lambda would (replay, backfill).
    Ingest {
        /// Objects as s3://BUCKET/KEY.
        objects: Vec<String>,
        /// Replay every object under s3://BUCKET/PREFIX.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Show recent alerts (from the ledger's alert index).
    Alerts {
        /// Only this pipeline (default: every pipeline of the catalog).
        #[arg(long)]
        pipeline: Option<String>,
        /// How far back, e.g. 30m, 6h, 7d.
        #[arg(long, default_value = "1h")]
        since: String,
        /// Keep polling and print new alerts as they arrive.
        #[arg(long)]
        follow: bool,
        /// Print each alert as its full JSON message.
        #[arg(long)]
        json: bool,
    },
    /// Serve the live dashboard and its JSON API locally (the dashboard Lambda's router);
    /// prints the URL with the token.
    Dashboard(dashboard::DashboardArgs),
    /// Write deterministic sample CSV files for the demo use cases (no AWS).
    Gen(gen_command::GenArgs),
    /// One line per pipeline: files, rows, bad and late rows, windows, recent alerts.
    Status {
        /// Count alerts detected this far back, e.g. 1h, 1d.
        #[arg(long, default_value = "1d")]
        since: String,
    },
    /// Read windows back from DynamoDB, in the same format as `csvflow run`.
    Windows {
        #[arg(long)]
        pipeline: String,
        #[arg(long)]
        aggregate: Option<String>,
        /// Only this group key (comma-separated values for several group-by columns).
        #[arg(long)]
        key: Option<String>,
        /// Only windows starting at or after this RFC3339 time.
        #[arg(long)]
        from: Option<String>,
        /// Only windows starting before this RFC3339 time.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            pipeline,
            aggregate,
            format,
            quarantine,
            inputs,
            threads,
        } => {
            let options = RunOptions {
                config_path: config,
                pipeline,
                aggregate,
                format: format.into(),
                quarantine,
                inputs,
                threads,
            };
            csvflow_core::run(
                &options,
                &mut std::io::stdout(),
                &mut std::io::stderr().lock(),
            )
            .map_err(|e| e.to_string())
        }
        Command::Dashboard(args) => dashboard::run(args),
        Command::Gen(args) => gen_command::run(args),
        other => aws_commands::run(other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("csvflow: {message}");
            ExitCode::FAILURE
        }
    }
}
