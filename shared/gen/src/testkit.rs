//! Test helpers: read generated files back with the csv crate and sort their rows into
//! good, bad and late, checking the counts each file claims.

use chrono::{DateTime, Duration, Utc};

use crate::{GenOptions, GeneratedFile, UseCase};

/// Default options with these sizes and no bad or late rows.
pub(crate) fn opts(rows: usize, files: usize) -> GenOptions {
    GenOptions {
        rows,
        files,
        ..GenOptions::default()
    }
}

/// A good, on-time data row read back from a file.
#[derive(Clone, Debug)]
pub(crate) struct Parsed {
    /// Which file (0-based) it came from.
    pub file: usize,
    pub ts: DateTime<Utc>,
    /// The whole record, `ts` text included.
    pub fields: Vec<String>,
}

impl Parsed {
    pub fn get(&self, column: &str, use_case: UseCase) -> &str {
        let i = use_case.header().iter().position(|c| *c == column).unwrap();
        &self.fields[i]
    }
}

fn records(use_case: UseCase, file: &GeneratedFile) -> Vec<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(use_case.delimiter())
        .flexible(true)
        .has_headers(false)
        .from_reader(file.bytes.as_slice());
    let all: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(all[0], use_case.header(), "{}: header", file.key);
    all[1..].to_vec()
}

#[derive(Debug, Default)]
pub(crate) struct BadKinds {
    pub field_count: usize,
    pub non_numeric: usize,
    pub timestamp: usize,
}

/// Why a record is bad, if it is.
fn spoiled(use_case: UseCase, rec: &[String]) -> Option<&'static str> {
    let layout = use_case.layout();
    if rec.len() != layout.header.len() {
        return Some("field_count");
    }
    if layout.ts_format.parse(&rec[0]).is_none() {
        return Some("timestamp");
    }
    let bad_number = layout
        .numeric
        .iter()
        .any(|&i| !rec[i].is_empty() && rec[i].parse::<f64>().is_err());
    bad_number.then_some("non_numeric")
}

pub(crate) fn bad_kinds(use_case: UseCase, files: &[GeneratedFile]) -> BadKinds {
    let mut kinds = BadKinds::default();
    for file in files {
        for rec in records(use_case, file) {
            match spoiled(use_case, &rec) {
                Some("field_count") => kinds.field_count += 1,
                Some("timestamp") => kinds.timestamp += 1,
                Some(_) => kinds.non_numeric += 1,
                None => {}
            }
        }
    }
    kinds
}

/// Parses every file, checks its header and that its good/bad/late counts match what it
/// holds (late = more than 2 h before the previous file's span start; good rows inside
/// the file's own span), and returns the good rows in file order.
pub(crate) fn classify(
    use_case: UseCase,
    opts: &GenOptions,
    files: &[GeneratedFile],
) -> Vec<Parsed> {
    let spans = use_case.layout().spans(opts);
    let mut good = Vec::new();
    for (f, file) in files.iter().enumerate() {
        let (mut n_good, mut n_bad, mut n_late) = (0, 0, 0);
        for rec in records(use_case, file) {
            if spoiled(use_case, &rec).is_some() {
                n_bad += 1;
                continue;
            }
            let ts = use_case.layout().ts_format.parse(&rec[0]).unwrap();
            if f > 0 && ts < spans[f - 1].start - Duration::hours(2) {
                n_late += 1;
                continue;
            }
            let span = spans[f];
            // Timestamps written to the second may sit a few ms before the span start.
            assert!(
                ts > span.start - Duration::seconds(1) && ts < span.end,
                "{}: {ts} outside {span:?}",
                file.key
            );
            n_good += 1;
            good.push(Parsed {
                file: f,
                ts,
                fields: rec,
            });
        }
        assert_eq!(n_good, file.rows, "{}: good rows", file.key);
        assert_eq!(n_bad, file.bad_rows, "{}: bad rows", file.key);
        assert_eq!(n_late, file.late_rows, "{}: late rows", file.key);
    }
    good
}

/// Good rows of small runs (2000 rows, 3 files, with bad and late rows mixed in so pattern
/// checks see what the pipeline would see), one per seed: patterns must not need luck.
pub(crate) fn small_runs(use_case: UseCase) -> Vec<Vec<Parsed>> {
    [42, 7, 2026]
        .into_iter()
        .map(|seed| {
            let options = GenOptions {
                bad_rows: 6,
                late_rows: 6,
                seed,
                ..opts(2000, 3)
            };
            classify(use_case, &options, &crate::generate(use_case, &options))
        })
        .collect()
}
