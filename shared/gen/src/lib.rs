//! Deterministic sample CSV data for the csvflow demo use cases: same options, same bytes.
//!
//! [`generate`] builds the files of one use case in memory (pure, no I/O); [`write`] puts
//! them under a directory. Every use case spans a fixed event-time range from
//! [`GenOptions::start`] (6 hours, 12 for vitals) split evenly across the files, and
//! plants the pattern its demo pipeline alerts on in every run.

mod card_fraud;
mod clickstream;
mod common;
mod fraud_scoring;
mod iot;
mod orders;
mod rides;
mod sentiment;
#[cfg(test)]
mod testkit;
mod vitals;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use chrono::{DateTime, Utc};
use rand::rngs::ChaCha8Rng;
use rand::SeedableRng;

pub use fraud_scoring::cards_lookup_csv;
pub use rides::zones_lookup_csv;

use common::Layout;

/// The demo use cases, each with its own columns, key prefix and planted pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UseCase {
    CardFraud,
    FraudScoring,
    Iot,
    Orders,
    Clickstream,
    Rides,
    Vitals,
    Sentiment,
}

impl UseCase {
    pub const ALL: [UseCase; 8] = [
        UseCase::CardFraud,
        UseCase::FraudScoring,
        UseCase::Iot,
        UseCase::Orders,
        UseCase::Clickstream,
        UseCase::Rides,
        UseCase::Vitals,
        UseCase::Sentiment,
    ];

    /// The name used on the command line and in file names, e.g. `card-fraud`.
    pub fn name(self) -> &'static str {
        match self {
            UseCase::CardFraud => "card-fraud",
            UseCase::FraudScoring => "fraud-scoring",
            UseCase::Iot => "iot",
            UseCase::Orders => "orders",
            UseCase::Clickstream => "clickstream",
            UseCase::Rides => "rides",
            UseCase::Vitals => "vitals",
            UseCase::Sentiment => "sentiment",
        }
    }

    /// The key prefix (folder) the files go under, without a slash, e.g. `transactions`.
    pub fn prefix(self) -> &'static str {
        self.layout().prefix
    }

    /// The header row's column names.
    pub fn header(self) -> &'static [&'static str] {
        self.layout().header
    }

    /// The field delimiter (`;` for orders, `,` otherwise).
    pub fn delimiter(self) -> u8 {
        self.layout().delimiter
    }

    /// How many hours of event time the files cover, from [`GenOptions::start`].
    pub fn span_hours(self) -> i64 {
        self.layout().hours
    }

    fn layout(self) -> &'static Layout {
        match self {
            UseCase::CardFraud => &card_fraud::LAYOUT,
            UseCase::FraudScoring => &fraud_scoring::LAYOUT,
            UseCase::Iot => &iot::LAYOUT,
            UseCase::Orders => &orders::LAYOUT,
            UseCase::Clickstream => &clickstream::LAYOUT,
            UseCase::Rides => &rides::LAYOUT,
            UseCase::Vitals => &vitals::LAYOUT,
            UseCase::Sentiment => &sentiment::LAYOUT,
        }
    }

    /// Mixed into the seed so that use cases do not share one random stream.
    fn salt(self) -> u64 {
        let index = UseCase::ALL.iter().position(|u| *u == self).unwrap_or(0) as u64;
        (index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

impl fmt::Display for UseCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for UseCase {
    type Err = GenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UseCase::ALL
            .into_iter()
            .find(|u| u.name() == s)
            .ok_or_else(|| GenError::UnknownUseCase { name: s.to_owned() })
    }
}

/// What to generate. `rows` counts good rows across all files; bad and late rows come
/// on top. `files` below 1 is taken as 1; late rows need at least 2 files (they go in
/// files 2..F) and are left out otherwise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenOptions {
    pub rows: usize,
    pub files: usize,
    pub seed: u64,
    pub bad_rows: usize,
    pub late_rows: usize,
    pub start: DateTime<Utc>,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            rows: 2000,
            files: 3,
            seed: 42,
            bad_rows: 0,
            late_rows: 0,
            start: default_start(),
        }
    }
}

/// 2026-11-20T00:00:00Z, the default `--start`.
pub fn default_start() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_132_800, 0).unwrap_or_default()
}

/// One CSV file, header included, ready to be written or uploaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Object key relative to the output root, e.g. `iot/iot-001.csv`.
    pub key: String,
    pub bytes: Vec<u8>,
    /// Good, on-time rows.
    pub rows: usize,
    /// Malformed rows (wrong field count, non-numeric number, unparsable timestamp).
    pub bad_rows: usize,
    /// Well-formed rows more than 2 hours older than the previous file's span start.
    pub late_rows: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error(
        "unknown use case `{name}` (expected one of card-fraud, fraud-scoring, iot, orders, \
         clickstream, rides, vitals, sentiment)"
    )]
    UnknownUseCase { name: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Builds the files of one use case in memory, in time order (`...-001.csv` first).
/// Pure: the same use case and options always give the same bytes, on every platform.
pub fn generate(use_case: UseCase, opts: &GenOptions) -> Vec<GeneratedFile> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ use_case.salt());
    let rng = &mut rng;
    match use_case {
        UseCase::CardFraud => card_fraud::generate(opts, rng),
        UseCase::FraudScoring => fraud_scoring::generate(opts, rng),
        UseCase::Iot => iot::generate(opts, rng),
        UseCase::Orders => orders::generate(opts, rng),
        UseCase::Clickstream => clickstream::generate(opts, rng),
        UseCase::Rides => rides::generate(opts, rng),
        UseCase::Vitals => vitals::generate(opts, rng),
        UseCase::Sentiment => sentiment::generate(opts, rng),
    }
}

/// Writes every file at `out_dir/<key>`, creating folders as needed.
pub fn write(files: &[GeneratedFile], out_dir: &Path) -> Result<(), GenError> {
    for file in files {
        let path = out_dir.join(&file.key);
        let written = match path.parent() {
            Some(parent) => std::fs::create_dir_all(parent),
            None => Ok(()),
        }
        .and_then(|()| std::fs::write(&path, &file.bytes));
        written.map_err(|source| GenError::Write { path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{classify, opts};

    #[test]
    fn names_round_trip() {
        for use_case in UseCase::ALL {
            assert_eq!(use_case.to_string().parse::<UseCase>().unwrap(), use_case);
        }
        assert!("nope".parse::<UseCase>().is_err());
        assert_eq!(default_start().to_rfc3339(), "2026-11-20T00:00:00+00:00");
    }

    #[test]
    fn same_options_same_bytes_other_seed_other_bytes() {
        let base = GenOptions {
            bad_rows: 4,
            late_rows: 4,
            ..opts(500, 3)
        };
        for use_case in UseCase::ALL {
            let a = generate(use_case, &base);
            let b = generate(use_case, &base.clone());
            assert_eq!(a, b, "{use_case}");
            let other = generate(
                use_case,
                &GenOptions {
                    seed: 7,
                    ..base.clone()
                },
            );
            assert_eq!(other.len(), a.len());
            assert_ne!(other, a, "{use_case}: seed ignored");
        }
    }

    #[test]
    fn counts_headers_keys_and_lateness_match_the_options() {
        for (rows, files, bad, late) in
            [(2000, 3, 5, 5), (300, 4, 7, 3), (0, 2, 2, 2), (13, 1, 3, 4)]
        {
            let options = GenOptions {
                bad_rows: bad,
                late_rows: late,
                ..opts(rows, files)
            };
            for use_case in UseCase::ALL {
                let generated = generate(use_case, &options);
                assert_eq!(generated.len(), files, "{use_case}");
                for (i, file) in generated.iter().enumerate() {
                    let key = format!("{}/{}-{:03}.csv", use_case.prefix(), use_case, i + 1);
                    assert_eq!(file.key, key);
                }
                // classify() parses every file back and checks each row against the counts.
                let parsed = classify(use_case, &options, &generated);
                let sum = |f: fn(&GeneratedFile) -> usize| generated.iter().map(f).sum::<usize>();
                assert_eq!(sum(|f| f.rows), rows, "{use_case} rows");
                assert_eq!(parsed.len(), rows, "{use_case} parsed rows");
                assert_eq!(sum(|f| f.bad_rows), bad, "{use_case} bad");
                let expected_late = if files > 1 { late } else { 0 };
                assert_eq!(sum(|f| f.late_rows), expected_late, "{use_case} late");
                assert_eq!(generated[0].late_rows, 0);
            }
        }
    }

    #[test]
    fn bad_rows_mix_the_three_kinds() {
        let options = GenOptions {
            bad_rows: 9,
            ..opts(100, 3)
        };
        for use_case in UseCase::ALL {
            let files = generate(use_case, &options);
            let kinds = crate::testkit::bad_kinds(use_case, &files);
            assert!(
                kinds.field_count > 0 && kinds.timestamp > 0,
                "{use_case}: {kinds:?}"
            );
            if !use_case.layout().numeric.is_empty() {
                assert!(kinds.non_numeric > 0, "{use_case}: {kinds:?}");
            }
        }
    }

    #[test]
    fn write_puts_files_under_their_keys() {
        let dir = std::env::temp_dir().join(format!("csvflow-gen-test-{}", std::process::id()));
        let files = generate(UseCase::Orders, &opts(50, 2));
        write(&files, &dir).unwrap();
        let back = std::fs::read(dir.join("orders/orders-002.csv")).unwrap();
        assert_eq!(back, files[1].bytes);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_reports_the_path_it_could_not_write() {
        let blocker = std::env::temp_dir().join(format!("csvflow-gen-file-{}", std::process::id()));
        std::fs::write(&blocker, b"not a folder").unwrap();
        let err = write(&generate(UseCase::Iot, &opts(10, 1)), &blocker).unwrap_err();
        std::fs::remove_file(&blocker).unwrap();
        assert!(err.to_string().contains("iot-001.csv"), "{err}");
    }
}
