//! Writing window cells as CSV or JSON (shared by `csvflow run` and `csvflow windows`, so
//! their outputs can be diffed).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::definition::Aggregate;
use crate::engine::CellKey;
use crate::metrics::{Acc, CellState, MetricValue};
use crate::types::{format_ts, Val};

/// Output format of `write_windows`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Csv,
    Json,
}

/// Writes the cells of one aggregate, sorted by group key then window start.
///
/// CSV header: group-by columns, `window_start`, `window_end` (RFC 3339 UTC), then the
/// metrics in order; null is the empty field; floats in shortest round-trip form.
/// JSON: an array with one object per cell and the same fields (numbers as numbers, null
/// as null), one object per line.
pub fn write_windows<'a, W: Write>(
    agg: &Aggregate,
    cells: impl IntoIterator<Item = (&'a CellKey, &'a CellState)>,
    format: OutputFormat,
    mut out: W,
) -> io::Result<()> {
    let mut rows: Vec<(&CellKey, &CellState)> = cells
        .into_iter()
        .filter(|(k, _)| k.aggregate == agg.name())
        .collect();
    let order = |a: &(&CellKey, &CellState), b: &(&CellKey, &CellState)| {
        (&a.0.group, a.0.start_ms, a.0.end_ms).cmp(&(&b.0.group, b.0.start_ms, b.0.end_ms))
    };
    // Cells from a `WindowState` or a `FileReport` come in this order already.
    if !rows.is_sorted_by(|a, b| order(a, b).is_le()) {
        rows.sort_by(order);
    }
    let metrics = agg.output_names();
    match format {
        OutputFormat::Csv => {
            let mut w = CsvWindows::new(agg, &mut out)?;
            for (k, c) in rows {
                w.cell(&k.group, k.start_ms, k.end_ms, &c.accs)?;
            }
            w.finish()?;
        }
        OutputFormat::Json => {
            out.write_all(b"[")?;
            for (i, (k, c)) in rows.into_iter().enumerate() {
                out.write_all(if i == 0 { b"\n{" } else { b",\n{" })?;
                let mut first = true;
                let mut field =
                    |out: &mut W, name: &str, v: &serde_json::Value| -> io::Result<()> {
                        if !first {
                            out.write_all(b",")?;
                        }
                        first = false;
                        serde_json::to_writer(&mut *out, name)?;
                        out.write_all(b":")?;
                        serde_json::to_writer(&mut *out, v)?;
                        Ok(())
                    };
                for (name, g) in agg.group_by().iter().zip(&k.group) {
                    field(&mut out, name, &serde_json::Value::from(g.as_str()))?;
                }
                field(&mut out, "window_start", &format_ts(k.start_ms).into())?;
                field(&mut out, "window_end", &format_ts(k.end_ms).into())?;
                for (name, v) in metrics.iter().zip(agg.output_values(k, c)) {
                    let j = match v {
                        MetricValue::Null => serde_json::Value::Null,
                        MetricValue::Int(i) => i.into(),
                        MetricValue::Float(f) => serde_json::Number::from_f64(f)
                            .map_or(serde_json::Value::Null, serde_json::Value::Number),
                        MetricValue::Str(s) => s.into(),
                        MetricValue::Bool(b) => b.into(),
                    };
                    field(&mut out, name, &j)?;
                }
                out.write_all(b"}")?;
            }
            out.write_all(b"\n]\n")?;
        }
    }
    out.flush()
}

/// The CSV form of [`write_windows`], one cell at a time (cells must come in output order):
/// shared with `csvflow run`'s single-file path, which writes straight from the engine's
/// tables.
///
/// Lines are built in a buffer and written out in blocks, as the `csv` crate's writer
/// (`,` delimiter, `\n` terminator, quotes only when necessary) would print them, without
/// its per-field machinery: only text fields can need quotes.
pub(crate) struct CsvWindows<'a, W: Write> {
    agg: &'a Aggregate,
    out: W,
    /// Pending output (whole lines).
    buf: Vec<u8>,
    /// The current group's fields, formatted, with the delimiter after them ([`Self::group`]).
    group: Vec<u8>,
    /// Window bounds already formatted, `start,end` (they repeat across groups), bounded in
    /// size.
    bounds: FxHashMap<(i64, i64), Box<[u8]>>,
}

/// Pending output written out once it is this long.
const BLOCK: usize = 1 << 16;
/// Formatted windows' bounds kept at most.
const MAX_BOUNDS: usize = 4096;

impl<'a, W: Write> CsvWindows<'a, W> {
    /// Writes the header.
    pub(crate) fn new(agg: &'a Aggregate, out: W) -> io::Result<Self> {
        let mut w = Self::without_header(agg, out);
        let names = agg.group_by().iter().map(String::as_str);
        let names = names.chain(["window_start", "window_end"]);
        for (i, name) in names.chain(agg.output_names()).enumerate() {
            if i > 0 {
                w.buf.push(b',');
            }
            text_field(&mut w.buf, name.as_bytes());
        }
        w.end_line()?;
        Ok(w)
    }

    /// Lines to follow another writer's (no header).
    pub(crate) fn without_header(agg: &'a Aggregate, out: W) -> Self {
        CsvWindows {
            agg,
            out,
            buf: Vec::with_capacity(BLOCK + 4096),
            group: Vec::new(),
            bounds: FxHashMap::default(),
        }
    }

    /// Writes one cell: group values, window bounds, each metric's value, then the
    /// derived values.
    pub(crate) fn cell(
        &mut self,
        group: &[String],
        start_ms: i64,
        end_ms: i64,
        accs: &[Acc],
    ) -> io::Result<()> {
        let values: SmallVec<[Val<'_>; 16]> = accs.iter().map(Acc::val).collect();
        self.group(group);
        self.window(start_ms, end_ms, &values)
    }

    /// Sets the group of the windows [`Self::window`] writes next.
    pub(crate) fn group(&mut self, group: &[String]) {
        self.group.clear();
        for g in group {
            text_field(&mut self.group, g.as_bytes());
            self.group.push(b',');
        }
    }

    /// Writes one cell of the current group ([`Self::group`]) from the metrics' values
    /// (`Acc::val`, in metric order).
    pub(crate) fn window(
        &mut self,
        start_ms: i64,
        end_ms: i64,
        values: &[Val<'_>],
    ) -> io::Result<()> {
        self.buf.extend_from_slice(&self.group);
        self.bounds(start_ms, end_ms);
        for v in values {
            self.buf.push(b',');
            value_field(&mut self.buf, v);
        }
        if !self.agg.derived().is_empty() {
            let mut vals = values.to_vec();
            self.agg.push_derived(&mut vals);
            for v in &vals[values.len()..] {
                self.buf.push(b',');
                value_field(&mut self.buf, v);
            }
        }
        self.end_line()
    }

    /// Writes one cell of the current group ([`Self::group`]) whose metric fields `fields`
    /// appends, each after a comma. Only for an aggregate without derived values (they are
    /// computed from the metrics' values: [`Self::window`]).
    pub(crate) fn window_fields(
        &mut self,
        start_ms: i64,
        end_ms: i64,
        fields: impl FnOnce(&mut Vec<u8>),
    ) -> io::Result<()> {
        debug_assert!(self.agg.derived().is_empty());
        self.buf.extend_from_slice(&self.group);
        self.bounds(start_ms, end_ms);
        fields(&mut self.buf);
        self.end_line()
    }

    /// Appends a window's bounds (RFC 3339), formatted once per distinct window.
    fn bounds(&mut self, start_ms: i64, end_ms: i64) {
        if let Some(text) = self.bounds.get(&(start_ms, end_ms)) {
            self.buf.extend_from_slice(text);
            return;
        }
        let at = self.buf.len();
        write_ts(&mut self.buf, start_ms);
        self.buf.push(b',');
        write_ts(&mut self.buf, end_ms);
        if self.bounds.len() >= MAX_BOUNDS {
            self.bounds.clear();
        }
        self.bounds
            .insert((start_ms, end_ms), self.buf[at..].into());
    }

    /// Terminates the current line; writes the pending output out when it is long.
    fn end_line(&mut self) -> io::Result<()> {
        self.buf.push(b'\n');
        if self.buf.len() >= BLOCK {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}

/// A writer shared by threads that make numbered pieces of one output, claimed in turn
/// ([`Self::claim`]): a piece is written once all before it are, by the thread that
/// finishes the piece it waited for. A piece made early is kept (up to [`MAX_PENDING`]),
/// so a thread that runs ahead of a slow (or starved) one goes on making pieces.
pub(crate) struct InOrder<W> {
    turn: Mutex<Turn<W>>,
    turn_changed: Condvar,
    claimed: AtomicUsize,
}

/// Pieces kept at most while an earlier one is being made (about 150 KB each in the
/// bench).
const MAX_PENDING: usize = 16;

struct Turn<W> {
    out: W,
    /// The piece to write next.
    next: usize,
    /// Pieces made before their turn, by number.
    pending: BTreeMap<usize, Vec<u8>>,
    /// Buffers of written pieces, for the next ones.
    spare: Vec<Vec<u8>>,
    /// A thread stopped (its piece failed): the others stop too.
    stopped: bool,
}

impl<W: Write> InOrder<W> {
    pub(crate) fn new(out: W) -> Self {
        InOrder {
            turn: Mutex::new(Turn {
                out,
                next: 0,
                pending: BTreeMap::new(),
                spare: Vec::new(),
                stopped: false,
            }),
            turn_changed: Condvar::new(),
            claimed: AtomicUsize::new(0),
        }
    }

    /// The next piece to make, of `count` (`None` when all are claimed), and an empty
    /// buffer to make it in.
    pub(crate) fn claim(&self, count: usize) -> Option<(usize, Vec<u8>)> {
        let i = self.claimed.fetch_add(1, Ordering::Relaxed);
        if i >= count {
            return None;
        }
        let spare = self.turn.lock().ok().and_then(|mut t| t.spare.pop());
        Some((i, spare.unwrap_or_default()))
    }

    /// Writes piece `i` once pieces `0..i` are written (keeping it until then); `Ok(false)`
    /// (nothing written) when a thread stopped.
    pub(crate) fn write(&self, i: usize, mut piece: Vec<u8>) -> io::Result<bool> {
        let mut turn = self.turn.lock().map_err(|_| poisoned())?;
        while turn.next != i && turn.pending.len() >= MAX_PENDING && !turn.stopped {
            turn = self.turn_changed.wait(turn).map_err(|_| poisoned())?;
        }
        if turn.stopped {
            return Ok(false);
        }
        if turn.next != i {
            turn.pending.insert(i, piece);
            return Ok(true);
        }
        loop {
            turn.out.write_all(&piece)?;
            piece.clear();
            turn.spare.push(piece);
            turn.next += 1;
            let next = turn.next;
            match turn.pending.remove(&next) {
                Some(more) => piece = more,
                None => break,
            }
        }
        self.turn_changed.notify_all();
        Ok(true)
    }

    /// Stops the other threads (this one's piece failed).
    pub(crate) fn fail(&self) {
        if let Ok(mut turn) = self.turn.lock() {
            turn.stopped = true;
        }
        self.turn_changed.notify_all();
    }

    /// A guard that stops the other threads if this one panics while it is held (they
    /// would otherwise wait for its pieces forever; with `panic = "abort"` the process
    /// ends anyway).
    pub(crate) fn stop_on_panic(&self) -> impl Drop + '_ {
        struct Guard<'a, W: Write>(&'a InOrder<W>);
        impl<W: Write> Drop for Guard<'_, W> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.fail();
                }
            }
        }
        Guard(self)
    }

    pub(crate) fn into_inner(self) -> io::Result<W> {
        let turn = self.turn.into_inner().map_err(|_| poisoned())?;
        Ok(turn.out)
    }
}

fn poisoned() -> io::Error {
    io::Error::other("an output thread panicked")
}

/// Appends a text field, quoted (quotes doubled) when it holds a delimiter, a quote or a
/// line break, as the `csv` crate's writer does by default.
fn text_field(buf: &mut Vec<u8>, text: &[u8]) {
    if !text
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
    {
        buf.extend_from_slice(text);
        return;
    }
    buf.push(b'"');
    for &b in text {
        if b == b'"' {
            buf.push(b'"');
        }
        buf.push(b);
    }
    buf.push(b'"');
}

/// Appends a metric value as a field: [`write_val`], quoted when it is text that needs it.
pub(crate) fn value_field(buf: &mut Vec<u8>, v: &Val<'_>) {
    match v {
        Val::Str(s) => text_field(buf, s.as_bytes()),
        v => write_val(buf, v),
    }
}

/// Appends a window bound exactly as [`format_ts`] prints it (RFC 3339 UTC, milliseconds
/// only when not whole seconds), without allocating for years 0..=9999.
pub(crate) fn write_ts(buf: &mut Vec<u8>, ms: i64) {
    // 0000-01-01 .. 9999-12-31 in epoch milliseconds.
    const MIN: i64 = -62_167_219_200_000;
    const MAX: i64 = 253_402_300_800_000;
    if !(MIN..MAX).contains(&ms) {
        buf.extend_from_slice(format_ts(ms).as_bytes());
        return;
    }
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let secs = in_day / 1000;
    let frac = in_day % 1000;
    let two = |buf: &mut Vec<u8>, v: i64, sep: u8| {
        buf.push(b'0' + (v / 10) as u8);
        buf.push(b'0' + (v % 10) as u8);
        buf.push(sep);
    };
    buf.extend_from_slice(&[
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        b'-',
    ]);
    two(buf, m, b'-');
    two(buf, d, b'T');
    two(buf, secs / 3600, b':');
    two(buf, secs / 60 % 60, b':');
    buf.push(b'0' + (secs % 60 / 10) as u8);
    buf.push(b'0' + (secs % 10) as u8);
    if frac != 0 {
        buf.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }
    buf.push(b'Z');
}

/// Days since 1970-01-01 -> (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Appends a metric value exactly as `MetricValue::from(v).to_string()` would.
fn write_val(buf: &mut Vec<u8>, v: &Val<'_>) {
    match v {
        Val::Null => {}
        Val::Bool(b) => buf.extend_from_slice(if *b { b"true" } else { b"false" }),
        Val::Int(i) => write_int(buf, *i),
        Val::Float(f) => write_f64(buf, *f),
        Val::Str(s) => buf.extend_from_slice(s.as_bytes()),
        Val::Ts(t) => write_ts(buf, *t),
    }
}

/// Appends `i` in decimal, as `format!("{i}")`: one or two digits (most counts) here,
/// longer numbers by `itoa`.
#[inline]
pub(crate) fn write_int(buf: &mut Vec<u8>, i: i64) {
    match i {
        0..=9 => buf.push(b'0' + i as u8),
        10..=99 => buf.extend_from_slice(&[b'0' + (i / 10) as u8, b'0' + (i % 10) as u8]),
        _ => buf.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
    }
}

/// Appends `x` exactly as `format!("{x}")` (shortest round-trip decimal, no exponent).
///
/// Fast path for values with at most two decimals (money), below 1e13 in magnitude: if
/// `c / 100` (c = round(x * 100), exact in f64) rounds back to `x`, then that decimal is
/// the shortest string that round-trips — any other decimal with as few digits is at
/// least 0.01 away while doubles below 1e13 are closer than 0.002 apart — so it is what
/// `Display` prints, trailing zeros trimmed. Everything else goes through `Display`.
pub(crate) fn write_f64(buf: &mut Vec<u8>, x: f64) {
    use std::io::Write as _;
    if x != 0.0 && x.abs() < 1e13 {
        let c = crate::types::round_i64(x * 100.0);
        if c as f64 / 100.0 == x {
            write_cents(buf, c);
            return;
        }
    }
    let _ = write!(buf, "{x}");
}

/// Appends `c` hundredths as a decimal, trailing zeros trimmed: what [`write_f64`] prints
/// for the double nearest to `c / 100` (|c| < 1e15).
pub(crate) fn write_cents(buf: &mut Vec<u8>, c: i64) {
    if c < 0 {
        buf.push(b'-');
    }
    let c = c.unsigned_abs();
    write_int(buf, (c / 100) as i64);
    let frac = c % 100;
    if frac != 0 {
        buf.push(b'.');
        buf.push(b'0' + (frac / 10) as u8);
        if !frac.is_multiple_of(10) {
            buf.push(b'0' + (frac % 10) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_like_the_csv_crate() {
        for text in [
            "",
            "a",
            "a,b",
            "a\"b",
            "\"",
            "a\nb",
            "a\rb",
            " x ",
            "caf\u{e9}",
            "a;b",
        ] {
            let mut w = csv::WriterBuilder::new()
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(Vec::new());
            w.write_record([text, "x"]).unwrap();
            let want = w.into_inner().unwrap();
            let mut ours = Vec::new();
            text_field(&mut ours, text.as_bytes());
            ours.extend_from_slice(b",x\n");
            assert_eq!(ours, want, "{text:?}");
        }
        let mut buf = Vec::new();
        for i in [
            0,
            7,
            -7,
            9,
            10,
            99,
            100,
            999_999_999,
            1 << 40,
            i64::MAX,
            i64::MIN,
        ] {
            buf.clear();
            write_int(&mut buf, i);
            assert_eq!(buf, i.to_string().as_bytes());
        }
    }

    #[test]
    fn pieces_are_written_in_order_however_fast_each_thread_is() {
        /// Takes `room` bytes, then fails.
        struct Limited(Vec<u8>, usize);
        impl Write for Limited {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                if self.0.len() + bytes.len() > self.1 {
                    return Err(io::Error::other("full"));
                }
                self.0.extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let write_all = |room: usize| {
            let out = InOrder::new(Limited(Vec::new(), room));
            let pieces = |pause: u64| {
                let mut written = 0;
                while let Some((i, mut piece)) = out.claim(40) {
                    std::thread::sleep(std::time::Duration::from_micros(pause));
                    piece.extend_from_slice(format!("{i},").as_bytes());
                    match out.write(i, piece) {
                        Ok(true) => written += 1,
                        Ok(false) => break,
                        Err(e) => {
                            out.fail();
                            return Err(e);
                        }
                    }
                }
                Ok(written)
            };
            // One thread much slower than the other (a starved core).
            let (fast, slow) = std::thread::scope(|s| {
                let slow = s.spawn(|| pieces(2000));
                (pieces(0), slow.join().unwrap())
            });
            (
                fast,
                slow,
                String::from_utf8(out.into_inner().unwrap().0).unwrap(),
            )
        };
        let (fast, slow, text) = write_all(usize::MAX);
        let want: String = (0..40).map(|i| format!("{i},")).collect();
        let (fast, slow) = (fast.unwrap(), slow.unwrap());
        assert_eq!((fast + slow, text), (40, want));
        // The fast thread made the pieces the slow one would have held up.
        assert!(slow <= 10, "the slow thread made {slow} of 40");
        // A failed write stops both threads (neither waits for the other's pieces).
        let (fast, slow, text) = write_all(12);
        assert!(fast.is_err() != slow.is_err(), "{fast:?} {slow:?}");
        assert_eq!(text, "0,1,2,3,4,5,");
    }

    #[test]
    fn write_f64_matches_display() {
        let mut buf = Vec::new();
        let mut check = |x: f64| {
            buf.clear();
            write_f64(&mut buf, x);
            assert_eq!(std::str::from_utf8(&buf).unwrap(), format!("{x}"), "{x:e}");
        };
        for x in [
            0.0,
            -0.0,
            0.1,
            0.01,
            0.05,
            1.0,
            -1.0,
            0.3,
            0.1 + 0.2,
            12345.67,
            -12345.6,
            1e12,
            9_999_999_999_999.99,
            1e13,
            1e13 + 0.5,
            123.456,
            5e-324,
            1e300,
            0.995,
            100.10,
            f64::MAX,
            f64::MIN_POSITIVE,
            2.5e-3,
            7.0e-2,
        ] {
            check(x);
        }
        let mut r: u64 = 99;
        for i in 0..200_000u64 {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            let cents = (r % 2_000_000_000_000_000) as i64 - 1_000_000_000_000_000;
            let scale = [1, 10, 100, 1000, 100_000][(i % 5) as usize];
            // Sums of cents as the engine computes them, plus arbitrary doubles.
            check((cents / scale) as f64 / 100.0);
            check((cents % 1_000_000_000) as f64 / 100.0 + (r % 7) as f64 * 1e-9);
            check(f64::from_bits(r));
        }
    }

    #[test]
    fn write_ts_matches_format_ts() {
        let mut buf = Vec::new();
        let mut check = |ms: i64| {
            buf.clear();
            write_ts(&mut buf, ms);
            assert_eq!(std::str::from_utf8(&buf).unwrap(), format_ts(ms), "{ms}");
        };
        for ms in [
            0,
            1,
            -1,
            999,
            1_000,
            -86_400_000,
            951_782_400_000,     // 2000-02-29
            1_795_132_800_123,   // 2026-11-20T00:00:00.123Z
            -62_167_219_200_000, // 0000-01-01
            -62_167_219_200_001, // before year 0: falls back
            253_402_300_799_999, // 9999-12-31T23:59:59.999Z
            253_402_300_800_000, // 10000-01-01: falls back
            i64::MIN,
            i64::MAX,
        ] {
            check(ms);
        }
        let mut x: u64 = 7;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            check((x % 400_000_000_000_000) as i64 - 70_000_000_000_000);
        }
    }
}
