//! One local file processed on several threads (`csvflow run`): the file is cut at line
//! starts into chunks, which the threads claim ([`Claims`]) and process in stretches of
//! contiguous chunks, and the stretches' cells are merged. A cut is kept only where the
//! stretch before it stops exactly, so the result is what one pass gives; a cut inside a
//! quoted field (or before a comment or blank line) sends the file back to one pass.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::claims::Claims;
use crate::definition::Pipeline;
use crate::engine::{
    column_names, process, process_part, Boundary, FileError, FileInput, Part, Processed,
};
use crate::reader;
use crate::records::RecordReader;

/// Files smaller than this per thread are not worth cutting.
const MIN_PART_BYTES: u64 = 4 << 20;

/// Chunks per thread: a thread that is done takes chunks from one that lags, so the last
/// to finish waits for at most about one chunk.
const CHUNKS_PER_THREAD: u64 = 32;

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

/// Where a thread processed a stretch of contiguous chunks from: its first chunk.
struct Stretch<'p> {
    chunk: usize,
    processed: Result<(Processed<'p>, Option<Boundary>), FileError>,
}

/// [`process_path`] with at least `min_part_bytes` per thread; also returns the number
/// of stretches merged (1 = one pass).
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
    let threads = (threads as u64).min(len / min_part_bytes.max(1));
    if threads < 2 || !meta.is_file() {
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
    let starts = chunk_starts(&probe, len, threads * CHUNKS_PER_THREAD).map_err(io_error)?;
    if starts.len() < 2 {
        return one_pass(file);
    }
    let names = {
        probe.seek(SeekFrom::Start(0)).map_err(io_error)?;
        let mut rdr = RecordReader::new(&pipeline.dialect, skip_bom(probe, input)?.0);
        match column_names(pipeline, &mut rdr, input.name)? {
            Some(names) => names,
            None => return one_pass(file),
        }
    };
    let claims = Claims::new(starts, threads as usize);

    // Thread `t` processes stretches until no chunk is left; thread 0 starts at the top
    // of the file (`top`), the others at their run's first chunk.
    let work = |t: usize, mut top: Option<File>| {
        let mut stretches = Vec::new();
        let mut chunk = match top {
            Some(_) => Some(0),
            None => claims.next(t).or_else(|| claims.steal(t)),
        };
        while let Some(k) = chunk {
            let mut extend = || claims.next(t).map(|next| claims.end(next));
            // Thread 0's first stretch reads the file from its top (a BOM skipped, the
            // header read); any other starts at its chunk, with the column names known.
            let opened = match top.take() {
                Some(file) => skip_bom(file, input).map(|(r, bom_len)| (r, None, 0, bom_len)),
                None => {
                    let start = claims.start(k);
                    let opened = File::open(path).and_then(|mut f| {
                        f.seek(SeekFrom::Start(start))?;
                        Ok(Box::new(f) as Box<dyn Read>)
                    });
                    let names = Some(names.clone());
                    opened.map(|r| (r, names, start, start)).map_err(io_error)
                }
            };
            let processed = opened.and_then(|(r, names, start, byte_base)| {
                let part = Part {
                    names,
                    start,
                    byte_base,
                    stop_at: claims.end(k),
                    extend: &mut extend,
                };
                process_part(pipeline, input, r, part)
            });
            let failed = processed.is_err();
            stretches.push(Stretch {
                chunk: k,
                processed,
            });
            // Past a failed row the file's result is that error: no more work.
            if failed {
                break;
            }
            chunk = claims.steal(t);
        }
        stretches
    };
    let mut stretches = std::thread::scope(|scope| {
        let work = &work;
        let workers: Vec<_> = (1..threads as usize)
            .map(|t| {
                let worker = std::thread::Builder::new().name(format!("csvflow-worker-{t}"));
                worker.spawn_scoped(scope, move || work(t, None))
            })
            .collect();
        // Thread 0 here, while the others run; then the runs of any worker that could
        // not be started.
        let mut stretches = work(0, Some(file));
        for (t, spawned) in (1..).zip(workers) {
            match spawned {
                Ok(handle) => stretches.extend(
                    handle
                        .join()
                        .map_err(|_| io_error(io::Error::other("a worker thread panicked")))?,
                ),
                Err(_) => stretches.extend(work(t, None)),
            }
        }
        Ok(stretches)
    })?;

    // The stretches in file order, each starting where the one before stopped.
    stretches.sort_unstable_by_key(|s| s.chunk);
    let mut stretches = stretches.into_iter();
    let (mut whole, mut stopped) = match stretches.next() {
        Some(Stretch {
            chunk: 0,
            processed,
        }) => processed?,
        _ => return one_pass(File::open(path).map_err(io_error)?),
    };
    let (mut shift, mut merged) = (0, 1);
    for Stretch { chunk, processed } in stretches {
        let line = match stopped {
            Some(Boundary { byte, line }) if byte == claims.start(chunk) => line,
            _ => return one_pass(File::open(path).map_err(io_error)?),
        };
        shift += line.saturating_sub(1);
        let (part, next) = processed.map_err(|e| e.shift_lines(shift))?;
        whole.absorb(part, shift);
        stopped = next;
        merged += 1;
    }
    // Every chunk was claimed, so the last stretch read to the end.
    if stopped.is_some() {
        return one_pass(File::open(path).map_err(io_error)?);
    }
    Ok((whole, merged))
}

/// The file offsets where `chunks` chunks start: 0, then the line starts at or after
/// equal fractions of the file (fewer chunks when lines are long).
fn chunk_starts(f: &File, len: u64, chunks: u64) -> io::Result<Vec<u64>> {
    let mut starts: Vec<u64> = vec![0];
    let mut buf = [0u8; 4096];
    for k in 1..chunks {
        let mut at = (len * k / chunks).max(starts.last().copied().unwrap_or(0));
        let start = loop {
            let n = f.read_at(&mut buf, at)?;
            if n == 0 {
                break None;
            }
            if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
                break Some(at + i as u64 + 1);
            }
            at += n as u64;
        };
        match start {
            Some(s) if s < len => starts.push(s),
            _ => break,
        }
    }
    Ok(starts)
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
        // Both paths ran: cuts kept (several stretches; how many depends on how the
        // threads are scheduled, but a run stolen from keeps a chunk for its own thread)
        // and cuts refused (one pass).
        assert_eq!(merged.len(), 48);
        assert!(
            merged.contains(&1) && merged.iter().any(|&n| n >= 2),
            "{merged:?}"
        );
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
        // The same file with `quarantine`: the cuts hold (a stretch per thread, or more),
        // and the row's line is the file's.
        let kept = Catalog::from_toml(DEF).unwrap();
        let file = File::open(&path).unwrap();
        let (parts, n) =
            process_in_parts(&kept.pipelines()[0], input, file, &path, 4, 2048).unwrap();
        assert!(n >= 2, "{n} stretches");
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
