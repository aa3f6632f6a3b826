//! One local file processed on several threads (`csvflow run`): the file is cut at line
//! starts, each part is processed on its own thread, and the parts' cells are merged. A
//! cut is kept only where the part before it stops exactly, so the result is what one
//! pass gives; a cut inside a quoted field (or before a comment or blank line) sends the
//! file back to one pass.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::definition::Pipeline;
use crate::engine::{
    column_names, process, process_part, Boundary, FileError, FileInput, Part, Processed,
};
use crate::reader;
use crate::records::RecordReader;

/// Files smaller than this per thread are not worth cutting.
const MIN_PART_BYTES: u64 = 4 << 20;

/// Processes the plain-text file `file` (opened from `path`) on up to `threads` threads;
/// compressed files, stdin-like inputs and small files take one pass.
pub(crate) fn process_path<'p>(
    pipeline: &'p Pipeline,
    input: FileInput<'_>,
    file: File,
    path: &Path,
    threads: usize,
) -> Result<Processed<'p>, FileError> {
    process_in_parts(pipeline, input, file, path, threads, MIN_PART_BYTES).map(|(p, _)| p)
}

/// [`process_path`] with parts of at least `min_part_bytes`; also returns the number of
/// parts merged (1 = one pass).
fn process_in_parts<'p>(
    pipeline: &'p Pipeline,
    input: FileInput<'_>,
    file: File,
    path: &Path,
    threads: usize,
    min_part_bytes: u64,
) -> Result<(Processed<'p>, usize), FileError> {
    let io_error = |source: io::Error| FileError::Io {
        file: input.name.to_string(),
        source,
    };
    let one_pass = |f: File| Ok((process(pipeline, input, f)?, 1));
    let meta = file.metadata().map_err(io_error)?;
    let len = meta.len();
    let parts = (threads as u64).min(len / min_part_bytes.max(1));
    if parts < 2 || !meta.is_file() {
        return one_pass(file);
    }
    let mut probe = File::open(path).map_err(io_error)?;
    let mut head = Vec::with_capacity(4);
    (&mut probe)
        .take(4)
        .read_to_end(&mut head)
        .map_err(io_error)?;
    if !reader::codec(&head, input.name, pipeline.dialect.compression).is_empty() {
        return one_pass(file);
    }
    let cuts = cuts(&mut probe, len, parts).map_err(io_error)?;
    let names = {
        probe.seek(SeekFrom::Start(0)).map_err(io_error)?;
        let mut rdr = RecordReader::new(&pipeline.dialect, skip_bom(probe, input)?.0);
        match column_names(pipeline, &mut rdr, input.name)? {
            Some(names) => names,
            None => return one_pass(file),
        }
    };

    let (first, later) = std::thread::scope(|scope| {
        let later: Vec<_> = cuts
            .iter()
            .enumerate()
            .map(|(k, &start)| {
                let (names, stop_at) = (names.clone(), cuts.get(k + 1).copied());
                let worker = std::thread::Builder::new().name(format!("csvflow-part-{}", k + 2));
                worker.spawn_scoped(scope, move || {
                    let mut f = File::open(path).map_err(io_error)?;
                    f.seek(SeekFrom::Start(start)).map_err(io_error)?;
                    let part = Part {
                        names: Some(names),
                        start,
                        byte_base: start,
                        stop_at,
                    };
                    process_part(pipeline, input, f, part)
                })
            })
            .collect();
        // Part 1 on this thread, while the others run.
        let first = skip_bom(file, input).and_then(|(r, bom_len)| {
            let part = Part {
                names: None,
                start: 0,
                byte_base: bom_len,
                stop_at: cuts.first().copied(),
            };
            process_part(pipeline, input, r, part)
        });
        // A part whose thread could not be started is `None`: the file takes one pass.
        let later: Vec<_> = later
            .into_iter()
            .map(|spawned| {
                let handle = spawned.ok()?;
                Some(handle.join().unwrap_or_else(|_| {
                    Err(io_error(io::Error::other("a worker thread panicked")))
                }))
            })
            .collect();
        (first, later)
    });

    let (mut whole, mut stopped) = first?;
    let mut shift = 0;
    for (&cut, part) in cuts.iter().zip(later) {
        // The part before stopped exactly at the cut, and this part's thread ran.
        let (line, part) = match (stopped, part) {
            (Some(Boundary { byte, line }), Some(part)) if byte == cut => (line, part),
            _ => return one_pass(File::open(path).map_err(io_error)?),
        };
        shift += line.saturating_sub(1);
        let (part, next) = part.map_err(|e| e.shift_lines(shift))?;
        whole.absorb(part, shift);
        stopped = next;
    }
    Ok((whole, cuts.len() + 1))
}

/// The file offsets where parts 2..=parts start: the line starts at or after equal
/// fractions of the file (fewer when lines are long).
fn cuts(f: &mut File, len: u64, parts: u64) -> io::Result<Vec<u64>> {
    let mut cuts: Vec<u64> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    for k in 1..parts {
        let from = (len * k / parts).max(cuts.last().copied().unwrap_or(0));
        f.seek(SeekFrom::Start(from))?;
        let mut at = from;
        let cut = loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break None;
            }
            if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
                break Some(at + i as u64 + 1);
            }
            at += n as u64;
        };
        match cut {
            Some(c) if c < len => cuts.push(c),
            _ => break,
        }
    }
    Ok(cuts)
}

/// The file from its start with a UTF-8 BOM skipped, and the BOM's length.
fn skip_bom(f: File, input: FileInput<'_>) -> Result<(Box<dyn Read>, u64), FileError> {
    let opened = reader::open(f, input.name, crate::definition::Compression::None).map_err(
        |(_, source)| FileError::Io {
            file: input.name.to_string(),
            source,
        },
    )?;
    Ok((opened.reader, opened.bom_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::FileReport;
    use crate::Catalog;

    const DEF: &str = r##"
[[pipeline]]
name = "p"
match = "**"
[pipeline.csv]
comment = "#"
on_bad_row = "quarantine"
[pipeline.time]
column = "ts"
format = "epoch_s"
allowed_lateness = "1d"
[pipeline.columns]
ts = "timestamp"
k = "string"
amount = "float"
note = "string"

[[pipeline.aggregate]]
name = "tumbling"
group_by = ["k"]
window = { tumbling = "10m" }
[pipeline.aggregate.metrics]
n = "count()"
s = "sum(amount)"
first_note = "first(note)"
last_note = "last(note)"
p90 = "p90(amount)"

[[pipeline.aggregate]]
name = "hopping"
group_by = ["k", "note"]
window = { hopping = "10m", every = "5m" }
[pipeline.aggregate.metrics]
n = "count()"

[[pipeline.aggregate]]
name = "session"
group_by = ["k"]
window = { session_gap = "7m" }
[pipeline.aggregate.metrics]
n = "count()"
s = "sum(amount)"

[[pipeline.alert]]
name = "big"
row = "amount > 900"
"##;

    /// A file of `rows` rows over 8 hours and 151 keys (enough groups for several output
    /// batches), out of order, with quoted fields holding
    /// delimiters, quotes and newlines, bad rows, comment lines, blank lines and CRLF.
    fn data(rows: u64, seed: u64, bom: bool) -> Vec<u8> {
        let mut next = crate::testing::xorshift(seed);
        let mut out = Vec::new();
        if bom {
            out.extend_from_slice(b"\xef\xbb\xbf");
        }
        out.extend_from_slice(b"ts,k,amount,note\n");
        for i in 0..rows {
            let r = next();
            let note = match r % 9 {
                0 => "\"two\nlines\"".to_string(),
                1 => "\"a, \"\"quoted\"\" one\"".to_string(),
                2 => "\"\n\n\n\"".to_string(),
                n => format!("n{n}"),
            };
            let ts = 1_795_132_800 + (i * 28_800 / rows) as i64 - ((r >> 50) % 900) as i64;
            let line = match (r >> 8) % 40 {
                0 => format!("{ts},k{},not-a-number,{note}\n", (r >> 12) % 151),
                1 => "# a comment, \"with a quote\n".to_string(),
                2 => "\n".to_string(),
                3 => format!("{ts},k{},1.5\r\n", (r >> 12) % 151),
                _ => format!(
                    "{ts},k{},{}.{:02},{note}{}",
                    (r >> 12) % 151,
                    (r >> 16) % 1000,
                    (r >> 26) % 100,
                    if r >> 60 == 0 { "\r\n" } else { "\n" }
                ),
            };
            out.extend_from_slice(line.as_bytes());
        }
        out
    }

    fn assert_same(a: &FileReport, b: &FileReport, what: &str) {
        assert_eq!(a.cells, b.cells, "{what}: cells");
        assert_eq!(a.bad_rows, b.bad_rows, "{what}: bad rows");
        assert_eq!(a.row_alerts, b.row_alerts, "{what}: row alerts");
        assert_eq!(a.stats, b.stats, "{what}: stats");
        assert_eq!(a.max_event_ms, b.max_event_ms, "{what}: max event time");
    }

    #[test]
    fn parts_give_what_one_pass_gives() {
        let cat = Catalog::from_toml(DEF).unwrap();
        let p = &cat.pipelines()[0];
        let dir = std::env::temp_dir().join(format!("csvflow-split-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut merged = Vec::new();
        for (seed, bom) in [(1, false), (2, true), (3, false), (4, false)] {
            let bytes = data(4000, seed, bom);
            let path = dir.join(format!("f{seed}.csv"));
            std::fs::write(&path, &bytes).unwrap();
            let input = FileInput {
                name: "f.csv",
                watermark_ms: Some(1_795_132_800_000 + 3_600_000),
            };
            let one_pass = process(p, input, &bytes[..]).unwrap();
            let csv_of = |processed: &Processed<'_>, agg: usize| {
                let mut out = Vec::new();
                processed.write_csv(agg, &mut out).unwrap().unwrap();
                String::from_utf8(out).unwrap()
            };
            let one_csv = [csv_of(&one_pass, 0), csv_of(&one_pass, 1)];
            let one = one_pass.into_report();
            assert!(one.stats.bad > 50 && one.stats.late > 50, "{:?}", one.stats);
            assert!(!one.row_alerts.is_empty());
            for threads in [2, 3, 5, 16] {
                for min_part in [1, 2048, 40_000] {
                    let file = File::open(&path).unwrap();
                    let (parts, n) =
                        process_in_parts(p, input, file, &path, threads, min_part).unwrap();
                    let what = format!("seed {seed}, {threads} threads, {n} parts");
                    // Written straight from the parts' tables (tumbling, hopping) ...
                    assert_eq!(one_csv, [csv_of(&parts, 0), csv_of(&parts, 1)], "{what}");
                    // ... and merged into one report.
                    assert_same(&one, &parts.into_report(), &what);
                    merged.push(n);
                }
            }
        }
        // Both paths ran: cuts kept (up to 5 parts) and cuts refused (one pass).
        assert_eq!(merged.len(), 48);
        assert!(merged.contains(&1) && merged.contains(&5), "{merged:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failing_part_names_the_file_line() {
        let def = DEF.replace("on_bad_row = \"quarantine\"", "on_bad_row = \"fail\"");
        let cat = Catalog::from_toml(&def).unwrap();
        let p = &cat.pipelines()[0];
        let mut text = String::from("ts,k,amount,note\n");
        // One record over two lines, then one line per record: the bad row is in the last
        // part, whose lines are counted from the cut.
        for i in 0..3000 {
            let note = if i == 0 { "\"x\ny\"" } else { "\"x,y\"" };
            text.push_str(&format!("{},k{},1.0,{note}\n", 1_795_132_800 + i, i % 5));
        }
        text.push_str("1795135800,k1,oops,z\n");
        let dir = std::env::temp_dir().join(format!("csvflow-split-fail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.csv");
        std::fs::write(&path, &text).unwrap();
        let input = FileInput {
            name: "f.csv",
            watermark_ms: None,
        };
        // The same file with `quarantine`: the cuts hold (4 parts), and the row's line is
        // the file's.
        let kept = Catalog::from_toml(DEF).unwrap();
        let file = File::open(&path).unwrap();
        let (parts, n) =
            process_in_parts(&kept.pipelines()[0], input, file, &path, 4, 2048).unwrap();
        assert_eq!(n, 4);
        let lines: Vec<u64> = parts.report().bad_rows.iter().map(|b| b.line).collect();
        assert_eq!(lines, [3003]);
        // With `fail`, the last part's error names that line too.
        let file = File::open(&path).unwrap();
        let e = process_in_parts(p, input, file, &path, 4, 2048)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "f.csv: line 3003: bad row (column \"amount\": bad float: \"oops\") and on_bad_row = \"fail\""
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
