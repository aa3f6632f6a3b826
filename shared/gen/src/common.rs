//! Shared plumbing for the generators: time spans, portable random helpers, bad and late
//! row injection, and the CSV writer.
//!
//! Determinism across platforms: ChaCha8 is portable, integer ranges are drawn as `u64`,
//! and no transcendental float functions are used (only `+ - * /`, whose results IEEE 754
//! fixes exactly), so the same seed gives the same bytes everywhere.

use chrono::{DateTime, Duration, Utc};
#[cfg(test)]
use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::America::New_York;
use rand::rngs::ChaCha8Rng;
use rand::RngExt;

use crate::{GenOptions, GeneratedFile, UseCase};

pub(crate) type Rng = ChaCha8Rng;

/// A good row before formatting: its event time and the fields after the `ts` column.
pub(crate) struct Row {
    pub ts: DateTime<Utc>,
    pub fields: Vec<String>,
}

impl Row {
    pub fn new(ts: DateTime<Utc>, fields: Vec<String>) -> Self {
        Row { ts, fields }
    }
}

/// How the `ts` column (always the first) is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TsFormat {
    /// `2026-11-20T09:00:14Z`
    Rfc3339,
    /// Milliseconds since the Unix epoch, `1795132800123`.
    EpochMillis,
    /// Naive America/New_York wall-clock time, `2026-11-19 19:00:14`.
    NewYorkLocal,
}

const NEW_YORK_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

impl TsFormat {
    pub fn format(self, ts: DateTime<Utc>) -> String {
        match self {
            TsFormat::Rfc3339 => ts.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            TsFormat::EpochMillis => ts.timestamp_millis().to_string(),
            TsFormat::NewYorkLocal => ts
                .with_timezone(&New_York)
                .format(NEW_YORK_FORMAT)
                .to_string(),
        }
    }

    /// Reads back what [`TsFormat::format`] writes (ambiguous local times: the earlier).
    #[cfg(test)]
    pub fn parse(self, s: &str) -> Option<DateTime<Utc>> {
        match self {
            TsFormat::Rfc3339 => DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            TsFormat::EpochMillis => s
                .parse::<i64>()
                .ok()
                .and_then(DateTime::from_timestamp_millis),
            TsFormat::NewYorkLocal => NaiveDateTime::parse_from_str(s, NEW_YORK_FORMAT)
                .ok()
                .and_then(|n| New_York.from_local_datetime(&n).earliest())
                .map(|t| t.with_timezone(&Utc)),
        }
    }

    /// A timestamp that looks almost right but does not parse.
    fn garbage(self, ts: DateTime<Utc>, variant: usize) -> String {
        let good = self.format(ts);
        if variant % 2 == 1 {
            return ["not-a-time", "yesterday", "N/A"][variant / 2 % 3].to_owned();
        }
        match self {
            // Hour 25.
            TsFormat::Rfc3339 => format!("{}T25{}", &good[..10], &good[13..]),
            TsFormat::NewYorkLocal => format!("{} 25{}", &good[..10], &good[13..]),
            // A letter in the middle of the number.
            TsFormat::EpochMillis => format!("{}x{}", &good[..6], &good[6..]),
        }
    }
}

/// Everything the shared code needs to know about a use case's files.
pub(crate) struct Layout {
    pub use_case: UseCase,
    pub prefix: &'static str,
    pub header: &'static [&'static str],
    pub delimiter: u8,
    pub ts_format: TsFormat,
    /// Columns (record index, `ts` is 0) holding numbers: targets for non-numeric bad rows.
    pub numeric: &'static [usize],
    /// Event-time range covered by all the files together.
    pub hours: i64,
}

impl Layout {
    /// The files' time spans: `hours` from `start`, split evenly.
    pub fn spans(&self, opts: &GenOptions) -> Vec<Span> {
        let files = opts.files.max(1) as i64;
        let total = Duration::hours(self.hours).num_milliseconds();
        (0..files)
            .map(|i| Span {
                start: opts.start + Duration::milliseconds(total * i / files),
                end: opts.start + Duration::milliseconds(total * (i + 1) / files),
            })
            .collect()
    }
}

/// A half-open event-time range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Span {
    /// The whole range covered by `spans` (non-empty, in order).
    pub fn union(spans: &[Span]) -> Span {
        Span {
            start: spans[0].start,
            end: spans[spans.len() - 1].end,
        }
    }

    pub fn len_ms(&self) -> i64 {
        (self.end - self.start).num_milliseconds()
    }

    pub fn contains(&self, ts: DateTime<Utc>) -> bool {
        self.start <= ts && ts < self.end
    }

    pub fn random_time(&self, rng: &mut Rng) -> DateTime<Utc> {
        time_between(rng, self.start, self.end)
    }

    /// The starts of the `len`-long windows aligned on multiples of `len` since the epoch
    /// (so UTC-aligned for minutes and hours) that fit inside this span with `before`
    /// and `after` to spare.
    fn aligned_range(
        &self,
        len: Duration,
        before: Duration,
        after: Duration,
    ) -> Option<(i64, i64)> {
        let len = len.num_milliseconds();
        let lo = (self.start + before).timestamp_millis();
        let hi = (self.end - after).timestamp_millis() - len;
        let first = -(-lo).div_euclid(len);
        let last = hi.div_euclid(len);
        (first <= last).then_some((first, last))
    }
}

/// Picks `per_span` aligned window starts (see [`Span::aligned_range`]) in each span that
/// has room; when none has, picks `per_span` in the whole range instead.
pub(crate) fn aligned_starts(
    rng: &mut Rng,
    spans: &[Span],
    len: Duration,
    before: Duration,
    after: Duration,
    per_span: usize,
) -> Vec<DateTime<Utc>> {
    let mut pick = |span: &Span| -> Option<Vec<DateTime<Utc>>> {
        let (first, last) = span.aligned_range(len, before, after)?;
        Some(
            (0..per_span)
                .map(|_| {
                    let k = first + rng.random_range(0..(last - first + 1) as u64) as i64;
                    DateTime::from_timestamp_millis(k * len.num_milliseconds())
                        .unwrap_or(span.start)
                })
                .collect(),
        )
    };
    let starts: Vec<_> = spans.iter().filter_map(&mut pick).flatten().collect();
    if starts.is_empty() {
        pick(&Span::union(spans)).unwrap_or_default()
    } else {
        starts
    }
}

/// The start of the `len`-long epoch-aligned window holding `ts`.
pub(crate) fn window_start(ts: DateTime<Utc>, len: Duration) -> DateTime<Utc> {
    let len = len.num_milliseconds();
    DateTime::from_timestamp_millis(ts.timestamp_millis().div_euclid(len) * len).unwrap_or(ts)
}

// ---- portable random helpers ----

/// Uniform in `0..n` (0 when `n` is 0).
pub(crate) fn below(rng: &mut Rng, n: usize) -> usize {
    if n == 0 {
        0
    } else {
        rng.random_range(0..n as u64) as usize
    }
}

/// Uniform in `lo..=hi`.
pub(crate) fn int_between(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    lo + rng.random_range(0..=(hi - lo) as u64) as i64
}

pub(crate) fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[below(rng, items.len())]
}

/// Picks an item with probability proportional to its weight.
pub(crate) fn weighted<'a, T>(rng: &mut Rng, items: &'a [(T, u32)]) -> &'a T {
    let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut roll = rng.random_range(0..total.max(1));
    for (item, weight) in items {
        if roll < u64::from(*weight) {
            return item;
        }
        roll -= u64::from(*weight);
    }
    &items[items.len() - 1].0
}

/// Uniform in `[0, 1)`.
pub(crate) fn unit(rng: &mut Rng) -> f64 {
    rng.random::<f64>()
}

/// Uniform in `[lo, hi)`.
pub(crate) fn between(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * unit(rng)
}

/// In `[lo, hi)`, skewed towards `lo` (most purchases are small).
pub(crate) fn skewed(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    let u = unit(rng);
    lo + (hi - lo) * u * u
}

pub(crate) fn chance(rng: &mut Rng, p: f64) -> bool {
    unit(rng) < p
}

/// Bell-shaped around `mean` with standard deviation `sd`, bounded to `mean ± 3 sd`
/// (a sum of three uniforms: no `ln`/`cos`, so portable).
pub(crate) fn bell(rng: &mut Rng, mean: f64, sd: f64) -> f64 {
    let sum = unit(rng) + unit(rng) + unit(rng);
    mean + sd * 2.0 * (sum - 1.5)
}

/// Uniform in `[a, b)` at millisecond resolution (`a` when the range is empty).
pub(crate) fn time_between(rng: &mut Rng, a: DateTime<Utc>, b: DateTime<Utc>) -> DateTime<Utc> {
    let ms = (b - a).num_milliseconds();
    if ms <= 0 {
        a
    } else {
        a + Duration::milliseconds(rng.random_range(0..ms as u64) as i64)
    }
}

/// A random id such as `tx-9f3c01a2b4d5e6f7`.
pub(crate) fn hex_id(rng: &mut Rng, prefix: &str) -> String {
    format!("{prefix}{:016x}", rng.random::<u64>())
}

/// Two decimals, e.g. `12.50`.
pub(crate) fn money(amount: f64) -> String {
    format!("{amount:.2}")
}

/// Splits `total` into `parts` near-equal counts (the first ones get the remainder).
pub(crate) fn shares(total: usize, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    (0..parts)
        .map(|i| total / parts + usize::from(i < total % parts))
        .collect()
}

/// `count` times spread evenly over `span` with some jitter, in order: a sensor or a
/// patient monitor reporting on a schedule.
pub(crate) fn schedule(rng: &mut Rng, span: Span, count: usize) -> Vec<DateTime<Utc>> {
    let len = span.len_ms();
    let step = len as f64 / count.max(1) as f64;
    let phase = unit(rng);
    let mut times: Vec<_> = (0..count)
        .map(|j| {
            let at = (j as f64 + phase + between(rng, -0.15, 0.15)) * step;
            span.start + Duration::milliseconds((at as i64).clamp(0, len - 1))
        })
        .collect();
    times.sort();
    times
}

// ---- bad and late rows, and the writer ----

#[derive(Clone, Copy, Debug)]
enum Spoil {
    FieldCount,
    NonNumeric,
    Timestamp,
}

/// Values that fail to parse as numbers.
const NOT_NUMBERS: [&str; 5] = ["n/a", "12..50", "abc", "€12", "1,5"];

/// Turns the good rows into files: sorts them into their files by event time, adds the
/// requested bad rows (spread over all files, at their place in time) and late rows
/// (files 2..F, at a random place), and writes each file with its header.
/// `fresh` makes a normal-looking row (fields after `ts`) for a given event time.
pub(crate) fn assemble(
    layout: &Layout,
    spans: &[Span],
    mut rows: Vec<Row>,
    opts: &GenOptions,
    rng: &mut Rng,
    fresh: &mut dyn FnMut(&mut Rng, DateTime<Utc>) -> Vec<String>,
) -> Vec<GeneratedFile> {
    let n = spans.len();
    rows.sort_by_key(|r| r.ts);
    // (position in the file, record)
    let mut buckets: Vec<Vec<(DateTime<Utc>, Vec<String>)>> = vec![Vec::new(); n];
    let (mut good, mut bad, mut late) = (vec![0; n], vec![0; n], vec![0; n]);
    for row in rows {
        let f = spans.partition_point(|s| s.end <= row.ts).min(n - 1);
        good[f] += 1;
        buckets[f].push((row.ts, record(layout, row.ts, row.fields)));
    }

    let kinds: &[Spoil] = if layout.numeric.is_empty() {
        &[Spoil::FieldCount, Spoil::Timestamp]
    } else {
        &[Spoil::FieldCount, Spoil::NonNumeric, Spoil::Timestamp]
    };
    for i in 0..opts.bad_rows {
        let f = i % n;
        let ts = spans[f].random_time(rng);
        let mut rec = record(layout, ts, fresh(rng, ts));
        let variant = i / kinds.len();
        match kinds[i % kinds.len()] {
            Spoil::FieldCount if variant % 2 == 1 => rec.push("extra".to_owned()),
            Spoil::FieldCount => {
                rec.pop();
            }
            Spoil::NonNumeric => {
                let col = layout.numeric[variant % layout.numeric.len()];
                rec[col] = NOT_NUMBERS[variant % NOT_NUMBERS.len()].to_owned();
            }
            Spoil::Timestamp => rec[0] = layout.ts_format.garbage(ts, variant),
        }
        bad[f] += 1;
        buckets[f].push((ts, rec));
    }

    if n > 1 {
        for i in 0..opts.late_rows {
            let f = 1 + i % (n - 1);
            let ts = spans[f - 1].start
                - Duration::hours(2)
                - Duration::seconds(int_between(rng, 60, 3600));
            let rec = record(layout, ts, fresh(rng, ts));
            late[f] += 1;
            let at = spans[f].random_time(rng);
            buckets[f].push((at, rec));
        }
    }

    buckets
        .into_iter()
        .enumerate()
        .map(|(f, mut bucket)| {
            bucket.sort_by_key(|(at, _)| *at);
            GeneratedFile {
                key: format!(
                    "{}/{}-{:03}.csv",
                    layout.prefix,
                    layout.use_case.name(),
                    f + 1
                ),
                bytes: to_csv(layout, bucket.into_iter().map(|(_, rec)| rec)),
                rows: good[f],
                bad_rows: bad[f],
                late_rows: late[f],
            }
        })
        .collect()
}

fn record(layout: &Layout, ts: DateTime<Utc>, fields: Vec<String>) -> Vec<String> {
    let mut rec = Vec::with_capacity(fields.len() + 1);
    rec.push(layout.ts_format.format(ts));
    rec.extend(fields);
    rec
}

/// The records as CSV after the layout's header, quoted as the `csv` crate's writer quotes
/// (`csv_core` underneath), written into memory: nothing can fail.
fn to_csv(layout: &Layout, records: impl Iterator<Item = Vec<String>>) -> Vec<u8> {
    let mut w = csv_core::WriterBuilder::new()
        .delimiter(layout.delimiter)
        .terminator(csv_core::Terminator::Any(b'\n'))
        .build();
    let mut out = Vec::new();
    let header = layout.header.iter().map(|h| h.as_bytes());
    write_record(&mut w, &mut out, header);
    for rec in records {
        write_record(&mut w, &mut out, rec.iter().map(String::as_bytes));
    }
    out
}

/// Appends one record: its fields with delimiters between them, then the terminator.
/// Each step gets room for its worst case (every byte a doubled quote, plus the quotes
/// around it); a step that still reports a full buffer is simply run again.
fn write_record<'f>(
    w: &mut csv_core::Writer,
    out: &mut Vec<u8>,
    fields: impl Iterator<Item = &'f [u8]>,
) {
    use csv_core::WriteResult::InputEmpty;
    for (i, mut field) in fields.enumerate() {
        if i > 0 {
            while step(out, 4, |buf| w.delimiter(buf)) != InputEmpty {}
        }
        loop {
            let (res, nin) = step(out, 2 * field.len() + 4, |buf| {
                let (res, nin, nout) = w.field(field, buf);
                ((res, nin), nout)
            });
            field = &field[nin..];
            if res == InputEmpty {
                break;
            }
        }
    }
    while step(out, 4, |buf| w.terminator(buf)) != InputEmpty {}
}

/// Runs one `csv_core` write step into `room` spare bytes at the end of `out` and keeps
/// the bytes it wrote.
fn step<T>(out: &mut Vec<u8>, room: usize, write: impl FnOnce(&mut [u8]) -> (T, usize)) -> T {
    let at = out.len();
    out.resize(at + room, 0);
    let (result, written) = write(&mut out[at..]);
    out.truncate(at + written);
    result
}

/// A small CSV document (the lookup tables) as a string.
pub(crate) fn csv_string(
    header: &'static [&'static str],
    records: impl Iterator<Item = Vec<String>>,
) -> String {
    let layout = Layout {
        use_case: UseCase::CardFraud,
        prefix: "",
        header,
        delimiter: b',',
        ts_format: TsFormat::Rfc3339,
        numeric: &[],
        hours: 0,
    };
    // Only whole UTF-8 strings and ASCII punctuation go in.
    String::from_utf8_lossy(&to_csv(&layout, records)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn spans_split_evenly_and_cover_the_range() {
        let opts = GenOptions {
            files: 3,
            ..GenOptions::default()
        };
        let layout = crate::iot::LAYOUT;
        let spans = layout.spans(&opts);
        assert_eq!(spans[0].start, at("2026-11-20T00:00:00Z"));
        assert_eq!(spans[1].start, at("2026-11-20T02:00:00Z"));
        assert_eq!(spans[2].end, at("2026-11-20T06:00:00Z"));
        assert_eq!(spans[0].end, spans[1].start);
    }

    #[test]
    fn aligned_starts_fit_and_are_aligned() {
        let mut rng = Rng::seed_from_u64(1);
        let span = Span {
            start: at("2026-11-20T00:03:30Z"),
            end: at("2026-11-20T00:40:00Z"),
        };
        for _ in 0..200 {
            let w = aligned_starts(
                &mut rng,
                &[span],
                Duration::minutes(10),
                Duration::zero(),
                Duration::zero(),
                1,
            )[0];
            assert_eq!(w.timestamp() % 600, 0);
            assert!(
                w >= span.start && w + Duration::minutes(10) <= span.end,
                "{w}"
            );
        }
        // No room in either span: falls back to the whole range.
        let tiny = [
            Span {
                start: at("2026-11-20T00:00:00Z"),
                end: at("2026-11-20T00:04:00Z"),
            },
            Span {
                start: at("2026-11-20T00:04:00Z"),
                end: at("2026-11-20T00:08:00Z"),
            },
        ];
        let got = aligned_starts(
            &mut rng,
            &tiny,
            Duration::minutes(5),
            Duration::zero(),
            Duration::zero(),
            1,
        );
        assert_eq!(got, vec![at("2026-11-20T00:00:00Z")]);
    }

    #[test]
    fn timestamps_round_trip_and_garbage_does_not_parse() {
        let ts = at("2026-11-20T13:05:09.250Z");
        assert_eq!(TsFormat::Rfc3339.format(ts), "2026-11-20T13:05:09Z");
        assert_eq!(TsFormat::EpochMillis.format(ts), "1795179909250");
        assert_eq!(TsFormat::NewYorkLocal.format(ts), "2026-11-20 08:05:09");
        for format in [
            TsFormat::Rfc3339,
            TsFormat::EpochMillis,
            TsFormat::NewYorkLocal,
        ] {
            let back = format.parse(&format.format(ts)).unwrap();
            assert!((ts - back).num_milliseconds().abs() < 1000);
            for variant in 0..6 {
                let bad = format.garbage(ts, variant);
                assert_eq!(format.parse(&bad), None, "{bad}");
            }
        }
    }

    #[test]
    fn shares_add_up() {
        assert_eq!(shares(10, 3), vec![4, 3, 3]);
        assert_eq!(shares(0, 2), vec![0, 0]);
    }
}
