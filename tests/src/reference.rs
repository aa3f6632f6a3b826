//! An independent reading of generated files for the use-case tests: plain `csv` parsing
//! and a per-test row parser stand in for the engine, so expected windows and alerts are
//! computed without csvflow's code. It applies the product's contract: a row that does not
//! parse is bad; a row older than the watermark (the max event time of the files before,
//! minus the allowed lateness) is late and dropped.

use std::collections::BTreeMap;

/// What the reference admitted from a sequence of files.
#[derive(Debug)]
pub struct Admitted<T> {
    /// (event time ms, row), in file order.
    pub rows: Vec<(i64, T)>,
    pub bad: usize,
    pub late: usize,
    /// The watermark after the last file.
    pub watermark_ms: Option<i64>,
}

/// Reads `files` in order with `delimiter`; `parse` returns the event time and the typed
/// row, or `None` for a row that must be quarantined. Rows with the wrong field count are
/// bad without calling `parse`.
pub fn admit<T>(
    files: &[&[u8]],
    delimiter: u8,
    lateness_ms: i64,
    parse: impl Fn(&csv::StringRecord) -> Option<(i64, T)>,
) -> Admitted<T> {
    let mut out = Admitted {
        rows: Vec::new(),
        bad: 0,
        late: 0,
        watermark_ms: None,
    };
    let mut max_event: Option<i64> = None;
    for bytes in files {
        let watermark = max_event.map(|m| m - lateness_ms);
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(*bytes);
        let width = rdr.headers().map(|h| h.len()).unwrap_or(0);
        for record in rdr.records() {
            let Ok(record) = record else {
                out.bad += 1;
                continue;
            };
            let parsed = if record.len() == width {
                parse(&record)
            } else {
                None
            };
            let Some((ts, row)) = parsed else {
                out.bad += 1;
                continue;
            };
            if watermark.is_some_and(|w| ts < w) {
                out.late += 1;
                continue;
            }
            out.rows.push((ts, row));
        }
        // The watermark moves once per file, with every good row of it (late ones too).
        max_event = rdr_max(bytes, delimiter, &parse).max(max_event);
    }
    out.watermark_ms = max_event.map(|m| m - lateness_ms);
    out
}

/// The max event time of a file's good rows.
fn rdr_max<T>(
    bytes: &[u8],
    delimiter: u8,
    parse: &impl Fn(&csv::StringRecord) -> Option<(i64, T)>,
) -> Option<i64> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(bytes);
    let width = rdr.headers().map(|h| h.len()).unwrap_or(0);
    rdr.records()
        .filter_map(Result::ok)
        .filter(|r| r.len() == width)
        .filter_map(|r| parse(&r).map(|(ts, _)| ts))
        .max()
}

/// The start of the tumbling window of `size_ms` holding `ts` (aligned to the epoch).
pub fn window_start(ts: i64, size_ms: i64) -> i64 {
    ts - ts.rem_euclid(size_ms)
}

/// Groups admitted rows by (key, tumbling window start).
pub fn by_window<T, K: Ord>(
    rows: &[(i64, T)],
    size_ms: i64,
    key: impl Fn(&T) -> K,
) -> BTreeMap<(K, i64), Vec<&T>> {
    let mut out: BTreeMap<(K, i64), Vec<&T>> = BTreeMap::new();
    for (ts, row) in rows {
        out.entry((key(row), window_start(*ts, size_ms)))
            .or_default()
            .push(row);
    }
    out
}

/// RFC 3339 UTC (`2026-11-20T09:00:14Z`) to epoch ms, by hand.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    Some(((days * 24 + num(11..13)?) * 60 + num(14..16)?) * 60_000 + num(17..19)? * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_time_and_watermark() {
        assert_eq!(rfc3339_ms("2026-11-20T00:00:00Z"), Some(1_795_132_800_000));
        assert_eq!(rfc3339_ms("2026-11-20 00:00:00"), None);
        let f1 = b"ts,v\n2026-11-20T02:00:00Z,1\nbad,2\n2026-11-20T03:00:00Z,3\n".as_slice();
        let f2 = b"ts,v\n2026-11-20T01:00:00Z,4\n2026-11-20T02:30:00Z,5\n2026-11-20T04:00:00Z\n"
            .as_slice();
        let a = admit(&[f1, f2], b',', 3_600_000, |r| {
            Some((rfc3339_ms(&r[0])?, r[1].parse::<i64>().ok()?))
        });
        let values: Vec<i64> = a.rows.iter().map(|(_, v)| *v).collect();
        assert_eq!(values, [1, 3, 5]);
        assert_eq!((a.bad, a.late), (2, 1));
        assert_eq!(a.watermark_ms, rfc3339_ms("2026-11-20T02:00:00Z"));
    }
}
