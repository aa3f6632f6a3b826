//! Column types, typed field values, and fast field parsing (numbers, bools, timestamps).

use std::borrow::Cow;
use std::fmt;

use chrono::{NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

/// The declared type of a column (`[pipeline.columns]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    String,
    Int,
    Float,
    Bool,
    Timestamp,
}

impl ColumnType {
    /// Parses a type name as written in TOML.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "string" | "str" | "text" => ColumnType::String,
            "int" | "integer" | "i64" => ColumnType::Int,
            "float" | "double" | "f64" | "number" => ColumnType::Float,
            "bool" | "boolean" => ColumnType::Bool,
            "timestamp" | "time" | "datetime" => ColumnType::Timestamp,
            _ => return None,
        })
    }

    /// The canonical name of the type.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int => "int",
            ColumnType::Float => "float",
            ColumnType::Bool => "bool",
            ColumnType::Timestamp => "timestamp",
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A typed value of one field (or of an expression), borrowing strings from the record.
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// Epoch milliseconds, UTC.
    Ts(i64),
}

impl Val<'_> {
    /// The same value, owning its string.
    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Int(i) => Val::Int(i),
            Val::Float(f) => Val::Float(f),
            Val::Str(s) => Val::Str(std::borrow::Cow::Owned(s.into_owned())),
            Val::Ts(t) => Val::Ts(t),
        }
    }
    /// True only for `Bool(true)`: null and false are both "not matched".
    pub fn is_true(&self) -> bool {
        matches!(self, Val::Bool(true))
    }

    /// The value as f64 when numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// Parses an integer field (surrounding ASCII whitespace allowed).
pub fn parse_int(s: &str) -> Option<i64> {
    parse_int_bytes(s.as_bytes())
}

/// [`parse_int`] on a raw field (bytes that are not ASCII are never an integer).
pub fn parse_int_bytes(b: &[u8]) -> Option<i64> {
    if let Some(i) = plain_int(b) {
        return Some(i);
    }
    let t = std::str::from_utf8(b).ok()?.trim_ascii();
    let t = t.strip_prefix('+').unwrap_or(t);
    t.parse::<i64>().ok()
}

/// The common integer form `-?[0-9]{1,18}`, which cannot overflow; `None` for anything
/// else (left to the general parser).
#[inline]
fn plain_int(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v = 0i64;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + i64::from(d);
    }
    Some(if neg { -v } else { v })
}

/// Parses a float field (surrounding ASCII whitespace allowed); non-finite values are rejected.
pub fn parse_float(s: &str) -> Option<f64> {
    parse_float_bytes(s.as_bytes())
}

/// [`parse_float`] on a raw field (bytes that are not ASCII are never a float).
pub fn parse_float_bytes(b: &[u8]) -> Option<f64> {
    if let Some(x) = plain_decimal(b) {
        return Some(x);
    }
    let t = b.trim_ascii();
    // Reject words like "inf"/"NaN": data with them is almost always a bug upstream.
    if t.is_empty() || !t.iter().all(|c| c.is_ascii_digit() || b"+-.eE".contains(c)) {
        return None;
    }
    let t = std::str::from_utf8(t).ok()?;
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// `x.round() as i64` (half away from zero) for |x| < 2^63, without the `round` call:
/// `x - trunc(x)` is exact, and an |x| of 2^52 or more is a whole number already.
#[inline]
pub(crate) fn round_i64(x: f64) -> i64 {
    let whole = x as i64;
    let frac = x - whole as f64;
    whole + i64::from(frac >= 0.5) - i64::from(frac <= -0.5)
}

/// Powers of ten exact in f64.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The common float form `[+-]?digits[.digits]` with 1 to 15 digits in all (money,
/// measurements); `None` for anything else (left to the general parser).
///
/// The digits as an integer m < 10^15 are exact in f64, and so is 10^k for the k digits
/// after the point, so m / 10^k — one correctly rounded division — is the double nearest
/// to the decimal, exactly what `str::parse` returns (Clinger's fast path).
#[inline]
fn plain_decimal(b: &[u8]) -> Option<f64> {
    let (neg, rest) = match b {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, b),
    };
    let mut m = 0u64;
    let mut digits = 0usize;
    let mut point = None;
    for (i, &c) in rest.iter().enumerate() {
        let d = c.wrapping_sub(b'0');
        if d <= 9 {
            m = m * 10 + u64::from(d);
            digits += 1;
            if digits > 15 {
                return None;
            }
        } else if c == b'.' && point.is_none() {
            point = Some(i);
        } else {
            return None;
        }
    }
    if digits == 0 {
        return None;
    }
    let scale = point.map_or(0, |p| rest.len() - p - 1);
    let x = m as f64 / POW10[scale];
    Some(if neg { -x } else { x })
}

/// Parses a bool field: true/false, t/f, yes/no, y/n, 1/0 (case-insensitive).
pub fn parse_bool(s: &str) -> Option<bool> {
    parse_bool_bytes(s.as_bytes())
}

/// [`parse_bool`] on a raw field.
pub fn parse_bool_bytes(b: &[u8]) -> Option<bool> {
    let t = b.trim_ascii();
    const TRUE: [&[u8]; 5] = [b"true", b"t", b"yes", b"y", b"1"];
    const FALSE: [&[u8]; 5] = [b"false", b"f", b"no", b"n", b"0"];
    if TRUE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if FALSE.iter().any(|w| t.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

/// How timestamps are written in the data.
#[derive(Clone, Debug, PartialEq)]
pub enum TimeFormat {
    /// RFC 3339 / ISO 8601 (`T` or space separator, optional fraction, `Z` or offset;
    /// without an offset the timestamp is naive and takes the pipeline's timezone).
    Rfc3339,
    /// Seconds since the Unix epoch (integer or decimal).
    EpochS,
    /// Milliseconds since the Unix epoch (integer or decimal).
    EpochMs,
    /// A chrono strftime pattern; with `%z`/`%:z` the offset comes from the data,
    /// otherwise the timestamp is naive.
    Pattern { pattern: String, has_offset: bool },
}

impl TimeFormat {
    /// Parses the `format` key; patterns are validated here.
    pub fn from_config(s: &str) -> Result<Self, String> {
        Ok(match s {
            "rfc3339" | "iso8601" => TimeFormat::Rfc3339,
            "epoch_s" | "epoch" | "unix" => TimeFormat::EpochS,
            "epoch_ms" | "unix_ms" => TimeFormat::EpochMs,
            p if p.contains('%') => {
                use chrono::format::{Item, StrftimeItems};
                if StrftimeItems::new(p).any(|i| matches!(i, Item::Error)) {
                    return Err(format!("bad strftime pattern \"{p}\""));
                }
                let has_offset = p.contains("%z") || p.contains("%:z") || p.contains("%#z");
                TimeFormat::Pattern {
                    pattern: p.to_string(),
                    has_offset,
                }
            }
            other => {
                return Err(format!(
                    "unknown time format \"{other}\" (expected rfc3339, epoch_s, epoch_ms or a strftime pattern)"
                ))
            }
        })
    }
}

/// Parses timestamps of one format into epoch milliseconds; naive ones use `tz`.
#[derive(Clone, Debug)]
pub struct TimeParser {
    pub format: TimeFormat,
    /// Timezone of naive timestamps; `None` = UTC.
    pub tz: Option<Tz>,
}

impl TimeParser {
    /// Parses one raw field: RFC 3339 straight from the bytes, other formats as text
    /// (`"invalid UTF-8"` when it is not). The field the same as the last one parsed
    /// with `cache` is not parsed again (a file's rows often share their timestamp), nor
    /// an RFC 3339 date the same as the last one. The error is a short reason.
    pub fn parse_bytes(&self, b: &[u8], cache: &mut TimeCache) -> Result<i64, &'static str> {
        let n = b.len();
        if n == cache.len && same_bytes(b, cache.text.get(..n).unwrap_or_default()) {
            return Ok(cache.ms);
        }
        let ms = match &self.format {
            TimeFormat::Rfc3339 => self.rfc3339(b.trim_ascii(), &mut cache.day),
            _ => self.parse(std::str::from_utf8(b).map_err(|_| "invalid UTF-8")?),
        }?;
        if let Some(text) = cache.text.get_mut(..n) {
            text.copy_from_slice(b);
            (cache.len, cache.ms) = (n, ms);
        }
        Ok(ms)
    }

    fn rfc3339(&self, b: &[u8], days: &mut DayCache) -> Result<i64, &'static str> {
        let p = parse_iso(b, days).ok_or("bad rfc3339 timestamp")?;
        match p.offset_min {
            Some(off) => Ok(p.naive_ms - i64::from(off) * 60_000),
            None => self.localize(p.naive_ms),
        }
    }

    /// Parses one field; the error is a short reason.
    pub fn parse(&self, s: &str) -> Result<i64, &'static str> {
        let s = s.trim_ascii();
        match &self.format {
            TimeFormat::Rfc3339 => self.rfc3339(s.as_bytes(), &mut DayCache::default()),
            TimeFormat::EpochS => parse_epoch(s, 1000).ok_or("bad epoch_s timestamp"),
            TimeFormat::EpochMs => parse_epoch(s, 1).ok_or("bad epoch_ms timestamp"),
            TimeFormat::Pattern {
                pattern,
                has_offset,
            } => {
                if *has_offset {
                    chrono::DateTime::parse_from_str(s, pattern)
                        .map(|d| d.timestamp_millis())
                        .map_err(|_| "timestamp does not match the pattern")
                } else {
                    let naive = match NaiveDateTime::parse_from_str(s, pattern) {
                        Ok(n) => n,
                        Err(e) if e.kind() == chrono::format::ParseErrorKind::NotEnough => {
                            NaiveDate::parse_from_str(s, pattern)
                                .map_err(|_| "timestamp does not match the pattern")?
                                .and_time(chrono::NaiveTime::MIN)
                        }
                        Err(_) => return Err("timestamp does not match the pattern"),
                    };
                    self.localize(naive.and_utc().timestamp_millis())
                }
            }
        }
    }

    /// Converts a naive wall-clock time (as if UTC) in the pipeline timezone to UTC.
    fn localize(&self, naive_ms: i64) -> Result<i64, &'static str> {
        let Some(tz) = self.tz else {
            return Ok(naive_ms);
        };
        let naive = chrono::DateTime::from_timestamp_millis(naive_ms)
            .ok_or("timestamp out of range")?
            .naive_utc();
        // Ambiguous local times (DST fall-back) take the earlier instant; times in a
        // DST gap do not exist and make the row bad.
        let offset = match tz.offset_from_local_datetime(&naive) {
            chrono::LocalResult::Single(o) => o,
            chrono::LocalResult::Ambiguous(a, _) => a,
            chrono::LocalResult::None => return Err("local time does not exist (DST gap)"),
        };
        Ok(naive_ms - i64::from(offset.fix().local_minus_utc()) * 1000)
    }
}

fn parse_epoch(s: &str, scale: i64) -> Option<i64> {
    if let Ok(i) = s.parse::<i64>() {
        return i.checked_mul(scale);
    }
    let f = parse_float(s)? * scale as f64;
    if f.abs() < 9.0e15 {
        Some(f.round() as i64)
    } else {
        None
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Iso {
    naive_ms: i64,
    offset_min: Option<i32>,
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let mut v = 0u32;
    for i in 0..n {
        let c = *b.get(at + i)?;
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Longest timestamp field [`TimeCache`] remembers.
const MEMO_BYTES: usize = 32;

/// What [`TimeParser::parse_bytes`] remembers of the fields it parsed: the last one (its
/// text and value) and the last RFC 3339 date.
#[derive(Clone, Copy, Debug)]
pub struct TimeCache {
    day: DayCache,
    /// The last field parsed is `text[..len]` (none when `len` is past `text`).
    text: [u8; MEMO_BYTES],
    len: usize,
    ms: i64,
}

impl Default for TimeCache {
    fn default() -> Self {
        TimeCache {
            day: DayCache::default(),
            text: [0; MEMO_BYTES],
            len: MEMO_BYTES + 1,
            ms: 0,
        }
    }
}

/// Whether `a` and `b` are equal; those of 4 to 32 bytes compare as overlapping words,
/// without a call to `memcmp` (timestamps, country codes, ids).
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| -> u64 {
        s.get(at..at + 8)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let half = |s: &[u8], at: usize| -> u32 {
        s.get(at..at + 4)
            .and_then(|w| w.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    match n {
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        17..=32 => [0, 8, n - 16, n - 8]
            .iter()
            .all(|&at| word(a, at) == word(b, at)),
        _ => a == b,
    }
}

/// The date of the last RFC 3339 timestamp parsed, and its day number.
#[derive(Clone, Copy, Debug)]
struct DayCache {
    /// `YYYY-MM-DD`: always a valid date (the epoch's before the first timestamp), so
    /// only a valid date can match it.
    date: [u8; 10],
    days: i64,
}

impl Default for DayCache {
    fn default() -> Self {
        DayCache {
            date: *b"1970-01-01",
            days: 0,
        }
    }
}

/// The day number of the date `YYYY-MM-DD` that `b` starts with, from `cache` when it is
/// the same date as last time.
#[inline]
fn iso_days(b: &[u8], cache: &mut DayCache) -> Option<i64> {
    let date = b.get(..10)?;
    if date == cache.date {
        return Some(cache.days);
    }
    let y = i64::from(digits(b, 0, 4)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let mo = digits(b, 5, 2)?;
    let d = digits(b, 8, 2)?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    cache.date.copy_from_slice(date);
    cache.days = days;
    Some(days)
}

/// Fast RFC 3339 parser: `YYYY-MM-DD[T| ]HH:MM[:SS[.fff…]][Z|±HH:MM|±HHMM]`.
#[inline]
fn parse_iso(b: &[u8], cache: &mut DayCache) -> Option<Iso> {
    let days = iso_days(b, cache)?;
    match utc_time_of_day(b) {
        Some(secs) => Some(Iso {
            naive_ms: (days * 86_400 + i64::from(secs)) * 1000,
            offset_min: Some(0),
        }),
        None => parse_iso_time(b, days),
    }
}

/// The time of day, in seconds, of the most common form, `YYYY-MM-DDTHH:MM:SSZ` (a leap
/// second aside), from one 8-byte load of `HH:MM:SS`; `None` for any other form.
#[inline]
fn utc_time_of_day(b: &[u8]) -> Option<u32> {
    if b.len() != 20 || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let w = u64::from_le_bytes(b[11..19].try_into().ok()?);
    // Bytes 0, 1, 3, 4, 6 and 7 are digits, 2 and 5 colons: all have a high nibble of 3,
    // the colons are 0x3A, and no digit's low nibble is over 9 (adding 6 carries then).
    const DIGITS: u64 = 0x0F0F_000F_0F00_0F0F;
    const COLONS: u64 = 0x0000_FF00_00FF_0000;
    let nibbles = w & DIGITS;
    if w & 0xF0F0_F0F0_F0F0_F0F0 != 0x3030_3030_3030_3030
        || w & COLONS != 0x0000_3A00_003A_0000
        || (nibbles + 0x0606_0006_0600_0606) & 0xF0F0_00F0_F000_F0F0 != 0
    {
        return None;
    }
    let digit = |k: u32| (nibbles >> (8 * k)) as u32 & 0xF;
    let (h, m, s) = (
        digit(0) * 10 + digit(1),
        digit(3) * 10 + digit(4),
        digit(6) * 10 + digit(7),
    );
    (h <= 23 && m <= 59 && s <= 59).then_some(h * 3600 + m * 60 + s)
}

/// [`parse_iso`] past the date (`days`), for any form.
fn parse_iso_time(b: &[u8], days: i64) -> Option<Iso> {
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let h = digits(b, 11, 2)?;
    let mi = digits(b, 14, 2)?;
    let mut i = 16;
    let mut sec = 0;
    if b.get(i) == Some(&b':') {
        sec = digits(b, 17, 2)?;
        i = 19;
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // A leap second is folded into the last millisecond of the minute.
    let (sec, leap) = if sec == 60 { (59, true) } else { (sec, false) };
    let mut ms = 0u32;
    if matches!(b.get(i), Some(b'.' | b',')) {
        i += 1;
        let start = i;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            if i - start < 3 {
                ms = ms * 10 + u32::from(c - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..3 {
            ms *= 10;
        }
    }
    if leap {
        ms = 999;
    }
    let offset_min = match b.get(i) {
        None => None,
        Some(b'Z' | b'z') if i + 1 == b.len() => Some(0),
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, i + 1, 2)?;
            let om = match (b.get(i + 3), b.len() - i) {
                (Some(b':'), 6) => digits(b, i + 4, 2)?,
                (Some(_), 5) => digits(b, i + 3, 2)?,
                (None, 3) => 0,
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let off = (oh * 60 + om) as i32;
            Some(if sign == b'-' { -off } else { off })
        }
        _ => return None,
    };
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec);
    Some(Iso {
        naive_ms: secs * 1000 + i64::from(ms),
        offset_min,
    })
}

/// Formats epoch milliseconds as RFC 3339 UTC (`2026-11-20T00:10:00Z`, with `.fff` when
/// the milliseconds are not zero).
pub fn format_ts(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(d) if ms.rem_euclid(1000) == 0 => d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(d) => d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(format: TimeFormat, tz: Option<&str>) -> TimeParser {
        TimeParser {
            format,
            tz: tz.map(|t| t.parse().unwrap()),
        }
    }

    #[test]
    fn round_i64_rounds_as_round_does() {
        let mut next = crate::testing::xorshift(11);
        let mut cases = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.49999999999999994,
            -0.49999999999999994,
            4503599627370495.5,
            4503599627370496.0,
            -4503599627370497.0,
            8.9e18,
            -8.9e18,
        ];
        for _ in 0..10_000 {
            let bits = next();
            let mag = (next() % 19) as i32;
            cases.push((bits as i64 as f64 / i64::MAX as f64) * 10f64.powi(mag));
            cases.push((next() % 1_000_000) as f64 / 100.0 * 1e9);
        }
        for x in cases {
            assert_eq!(round_i64(x), x.round() as i64, "{x:?}");
        }
    }

    #[test]
    fn numbers_and_bools() {
        assert_eq!(parse_int(" 42 "), Some(42));
        assert_eq!(parse_int("+7"), Some(7));
        assert_eq!(parse_int("4.2"), None);
        assert_eq!(parse_float("1e3"), Some(1000.0));
        assert_eq!(parse_float("-0.5"), Some(-0.5));
        assert_eq!(parse_float("NaN"), None);
        assert_eq!(parse_float("inf"), None);
        assert_eq!(parse_float("12,5"), None);
        assert_eq!(parse_int("-0"), Some(0));
        assert_eq!(parse_int("+-5"), Some(-5));
        assert_eq!(parse_int("-"), None);
        assert_eq!(parse_int("9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int("9223372036854775808"), None);
        assert_eq!(parse_int_bytes(b"\xff1"), None);
        assert_eq!(parse_bool_bytes(b" Yes "), Some(true));
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("no"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn plain_decimals_parse_like_std() {
        // The fast path must agree with `str::parse` bit for bit, signs of zero included.
        let mut x: u64 = 7;
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "+0",
            "0.0",
            "-0.0",
            "5.",
            ".5",
            "-.5",
            "+.5",
            "007.50",
            "0.1",
            "0.3",
            "123456789012345",
            "1234567890.12345",
            "999999999999999",
            "0.000000000000001",
            "9007199254740993",
            "1234567890123456",
            "1.7976931348623157",
            ".",
            "-",
            "+",
            "1.2.3",
            "1e3",
            " 1.5",
            "1.5 ",
            "--1",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 16) as usize + 1;
            let v = (x >> 8) % 10u64.pow(digits.min(15) as u32);
            let text = format!("{v:0digits$}");
            let at = (x >> 4) as usize % (digits + 1);
            let sign = ["", "-", "+"][(x >> 60) as usize % 3];
            cases.push(format!("{sign}{}.{}", &text[..at], &text[at..]));
            cases.push(format!("{sign}{text}"));
        }
        for c in &cases {
            let std = c.trim_ascii().parse::<f64>().ok();
            let ours = parse_float(c);
            assert_eq!(ours.map(f64::to_bits), std.map(f64::to_bits), "{c:?}");
        }
    }

    /// The one-load reading of `YYYY-MM-DDTHH:MM:SSZ` gives what the general parser gives,
    /// for that form and for every near miss (a byte changed, one more or one less).
    #[test]
    fn utc_time_of_day_agrees_with_the_general_parser() {
        let base = b"2026-11-20T12:34:56Z";
        let bytes = b"0123456789:TZz+-. /\x00\xff";
        let mut next = crate::testing::xorshift(17);
        let mut fast = 0;
        for round in 0..200_000 {
            let mut t = base.to_vec();
            for _ in 0..(round % 3) {
                let at = 10 + next() as usize % 10;
                t[at] = bytes[next() as usize % bytes.len()];
            }
            match round % 7 {
                5 => t.truncate(19),
                6 => t.push(b'0'),
                _ => {}
            }
            let days = days_from_civil(2026, 11, 20);
            let general = parse_iso_time(&t, days);
            let got = parse_iso(&t, &mut DayCache::default());
            assert_eq!(got, general, "{:?}", String::from_utf8_lossy(&t));
            fast += usize::from(utc_time_of_day(&t).is_some());
        }
        // Both paths were taken.
        assert!(fast > 1000 && fast < 150_000, "{fast}");
    }

    /// A date cache shared by a run of timestamps gives what parsing each alone gives,
    /// bad times on a cached date and bad dates included.
    #[test]
    fn rfc3339_day_cache_changes_nothing() {
        let texts = [
            "2026-11-20T00:10:00Z",
            "2026-11-20T23:59:60Z",
            "2026-11-20T24:00:00Z",
            "2026-11-20T00:10:00",
            "2026-11-20 01:10+01:00",
            "2026-11-20Tjunk",
            "2026-11-20",
            "2026-11-2",
            "  2026-11-20T00:10:00.5Z ",
            "2026-11-21T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2024-02-29T12:00:00.25-05:00",
            "2024-02-29T12:00:00Z",
            "2026-03-29T02:30:00",
            "2026-11-20T00:10:00Z",
            "\0\0\0\0\0\0\0\0\0\0T00:00:00Z",
            "1970-01-01T00:00:01Z",
        ];
        for tz in [None, Some("Europe/Paris")] {
            let t = p(TimeFormat::Rfc3339, tz);
            let mut cache = TimeCache::default();
            for text in texts {
                let cached = t.parse_bytes(text.as_bytes(), &mut cache);
                assert_eq!(cached, t.parse(text), "{text:?} in {tz:?}");
            }
            // A fresh cache holds a real date: bytes that are no date never match it.
            let mut cache = TimeCache::default();
            let zeros = "\0\0\0\0\0\0\0\0\0\0T00:00:00Z";
            assert!(t.parse_bytes(zeros.as_bytes(), &mut cache).is_err());
            assert_eq!(t.parse_bytes(b"1970-01-01T00:00:01Z", &mut cache), Ok(1000));
        }
    }

    #[test]
    fn same_bytes_agrees_with_slice_equality() {
        let base: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=40 {
            let a = &base[..n];
            assert!(same_bytes(a, a), "{n}");
            assert!(
                !same_bytes(a, &base[..n.saturating_sub(1)]) || n == 0,
                "{n}"
            );
            // One byte different, wherever it is.
            for k in 0..n {
                let mut b = a.to_vec();
                b[k] ^= 0x20;
                assert!(!same_bytes(a, &b), "{n} at {k}");
            }
        }
    }

    #[test]
    fn repeated_timestamp_fields_are_remembered_not_confused() {
        let t = p(TimeFormat::Rfc3339, None);
        let mut cache = TimeCache::default();
        let texts = [
            "2026-11-20T00:10:00Z",
            "2026-11-20T00:10:00Z",
            "2026-11-20T00:10:01Z",
            "2026-11-20T00:10:00Z",
            "",
            "2026-11-20T00:10:00.123456789012345Z",
            "2026-11-20T00:10:00.123456789012345Z",
            "2026-11-20T00:10:00.123456789012346Z",
            "2026-11-20Tjunk",
            "2026-11-20Tjunk",
            "2026-11-20T00:10:00Z",
        ];
        for text in texts {
            let got = t.parse_bytes(text.as_bytes(), &mut cache);
            assert_eq!(got, t.parse(text), "{text:?}");
        }
        let e = p(TimeFormat::EpochS, None);
        let mut cache = TimeCache::default();
        for text in ["", "1795133400", "1795133400", "1795133401", "x", "x"] {
            assert_eq!(e.parse_bytes(text.as_bytes(), &mut cache), e.parse(text));
        }
    }

    #[test]
    fn rfc3339() {
        let t = p(TimeFormat::Rfc3339, None);
        assert_eq!(t.parse("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(t.parse("2026-11-20T00:10:00Z"), Ok(1_795_133_400_000));
        assert_eq!(t.parse("2026-11-20T00:10:00.5Z"), Ok(1_795_133_400_500));
        assert_eq!(t.parse("2026-11-20 01:10:00+01:00"), Ok(1_795_133_400_000));
        assert_eq!(t.parse("2026-11-19T23:10:00-0100"), Ok(1_795_133_400_000));
        assert_eq!(
            t.parse("2026-11-20T00:10:00.123456789Z"),
            Ok(1_795_133_400_123)
        );
        assert!(t.parse("2026-02-30T00:00:00Z").is_err());
        assert!(t.parse("2026-11-20T00:10:00Zjunk").is_err());
        assert!(t.parse("yesterday").is_err());
        assert!(t.parse("").is_err());
        for ms in [0i64, 951_782_400_000, 1_795_133_400_123, -86_400_000] {
            assert_eq!(t.parse(&format_ts(ms)), Ok(ms));
        }
    }

    #[test]
    fn naive_timestamps_take_the_timezone() {
        let t = p(TimeFormat::Rfc3339, Some("Europe/Paris"));
        // Winter: UTC+1.
        assert_eq!(t.parse("2026-11-20T01:10:00"), Ok(1_795_133_400_000));
        // An explicit offset wins over the timezone.
        assert_eq!(t.parse("2026-11-20T00:10:00Z"), Ok(1_795_133_400_000));
        // DST gap.
        assert!(t.parse("2026-03-29T02:30:00").is_err());
    }

    #[test]
    fn epochs_and_patterns() {
        assert_eq!(
            p(TimeFormat::EpochS, None).parse("1795133400"),
            Ok(1_795_133_400_000)
        );
        assert_eq!(
            p(TimeFormat::EpochS, None).parse("1795133400.25"),
            Ok(1_795_133_400_250)
        );
        assert_eq!(
            p(TimeFormat::EpochMs, None).parse("1795133400123"),
            Ok(1_795_133_400_123)
        );
        assert!(p(TimeFormat::EpochMs, None).parse("soon").is_err());
        let f = TimeFormat::from_config("%d/%m/%Y %H:%M").unwrap();
        assert_eq!(
            p(f.clone(), None).parse("20/11/2026 00:10"),
            Ok(1_795_133_400_000)
        );
        assert_eq!(
            p(f, Some("America/New_York")).parse("19/11/2026 19:10"),
            Ok(1_795_133_400_000)
        );
        let d = TimeFormat::from_config("%Y%m%d").unwrap();
        assert_eq!(p(d, None).parse("19700102"), Ok(86_400_000));
        let z = TimeFormat::from_config("%Y-%m-%d %H:%M:%S %z").unwrap();
        assert_eq!(
            p(z, None).parse("2026-11-20 01:10:00 +0100"),
            Ok(1_795_133_400_000)
        );
        assert!(TimeFormat::from_config("%Q").is_err());
        assert!(TimeFormat::from_config("unix_ns").is_err());
    }
}
