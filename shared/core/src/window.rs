//! Window kinds (tumbling, hopping, session), durations, and assigning an event time to
//! its windows. Bounds are UTC-epoch-aligned milliseconds, `[start, end)`.

/// How an aggregate cuts time into windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowSpec {
    /// Fixed, non-overlapping windows of `size_ms`.
    Tumbling { size_ms: i64 },
    /// Windows of `size_ms` starting every `every_ms`; a row counts in each window covering it.
    Hopping { size_ms: i64, every_ms: i64 },
    /// Per-key sessions: a gap of `gap_ms` without events closes a session; a session is
    /// `[first event, last event + gap)`.
    Session { gap_ms: i64 },
}

impl WindowSpec {
    pub fn is_session(&self) -> bool {
        matches!(self, WindowSpec::Session { .. })
    }

    /// The window length (0 for sessions, whose length varies).
    pub fn size_ms(&self) -> i64 {
        match *self {
            WindowSpec::Tumbling { size_ms } | WindowSpec::Hopping { size_ms, .. } => size_ms,
            WindowSpec::Session { .. } => 0,
        }
    }

    /// Calls `f(start, end)` for every fixed window containing `ts` (nothing for sessions).
    #[inline]
    pub fn assign(&self, ts: i64, mut f: impl FnMut(i64, i64)) {
        match *self {
            WindowSpec::Tumbling { size_ms } => {
                let start = ts - ts.rem_euclid(size_ms);
                f(start, start.saturating_add(size_ms));
            }
            WindowSpec::Hopping { size_ms, every_ms } => {
                let last = ts - ts.rem_euclid(every_ms);
                let mut first = last;
                while first.saturating_sub(every_ms).saturating_add(size_ms) > ts {
                    first -= every_ms;
                }
                let mut start = first;
                while start <= last {
                    f(start, start.saturating_add(size_ms));
                    start += every_ms;
                }
            }
            WindowSpec::Session { .. } => {}
        }
    }
}

/// Parses a duration like `10m`, `1h30m`, `500ms`, `2d`, `90s` into milliseconds (> 0).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || {
        format!(
            "bad duration \"{s}\" (expected e.g. \"500ms\", \"30s\", \"10m\", \"1h30m\", \"1d\")"
        )
    };
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let b = t.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n: i64 = t[start..i].parse().map_err(|_| bad())?;
        let ustart = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = match &t[ustart..i] {
            "ms" => 1,
            "s" | "sec" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if total <= 0 {
        return Err(format!("duration \"{s}\" must be greater than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(spec: WindowSpec, ts: i64) -> Vec<(i64, i64)> {
        let mut v = Vec::new();
        spec.assign(ts, |s, e| v.push((s, e)));
        v
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(600_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn tumbling() {
        let t = WindowSpec::Tumbling { size_ms: 600_000 };
        assert_eq!(windows(t, 0), vec![(0, 600_000)]);
        assert_eq!(windows(t, 599_999), vec![(0, 600_000)]);
        assert_eq!(windows(t, 600_000), vec![(600_000, 1_200_000)]);
        assert_eq!(windows(t, -1), vec![(-600_000, 0)]);
    }

    #[test]
    fn hopping() {
        let h = WindowSpec::Hopping {
            size_ms: 10,
            every_ms: 5,
        };
        assert_eq!(windows(h, 12), vec![(5, 15), (10, 20)]);
        assert_eq!(windows(h, 10), vec![(5, 15), (10, 20)]);
        assert_eq!(windows(h, 9), vec![(0, 10), (5, 15)]);
        let h3 = WindowSpec::Hopping {
            size_ms: 10,
            every_ms: 3,
        };
        for ts in -20..40 {
            let w = windows(h3, ts);
            let expect: Vec<(i64, i64)> = (-40..40)
                .map(|k| (k * 3, k * 3 + 10))
                .filter(|(s, e)| *s <= ts && ts < *e)
                .collect();
            assert_eq!(w, expect, "ts {ts}");
        }
        let same = WindowSpec::Hopping {
            size_ms: 10,
            every_ms: 10,
        };
        assert_eq!(windows(same, 12), vec![(10, 20)]);
    }
}
