//! The ceiling for `make bench`: how fast BurntSushi's `csv` crate merely reads a file's
//! records (one reused `ByteRecord`, header skipped, nothing parsed or aggregated).
//!
//! usage: csvflow-bench-csv-read FILE
//! prints one line on stdout: records=N bytes=N seconds=S

use std::process::ExitCode;
use std::time::Instant;

fn count(path: &str) -> csv::Result<u64> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .buffer_capacity(1 << 16)
        .from_path(path)?;
    let mut record = csv::ByteRecord::new();
    let mut records = 0u64;
    while reader.read_byte_record(&mut record)? {
        records += 1;
    }
    Ok(records)
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: csvflow-bench-csv-read FILE");
        return ExitCode::from(2);
    };
    let t0 = Instant::now();
    match count(&path) {
        Ok(records) => {
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            println!(
                "records={records} bytes={bytes} seconds={:.4}",
                t0.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("csvflow-bench-csv-read: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
