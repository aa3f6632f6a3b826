//! Deterministic generator of synthetic card-transaction CSVs for `make bench`.
//!
//! Columns: ts,txn_id,card_id,merchant,amount,currency,country,home_country,channel
//! (ts RFC3339 UTC with a `Z`; amount with 2 decimals). Rows are in event-time order with
//! a few seconds of jitter (far inside the pipeline's 1h allowed lateness, so no row is
//! late). Each card has a fixed home country; about 20% of rows are cross-border.
//! The same seed and arguments always give byte-identical output. No dependencies.
//! `make bench` generates 1M and 10M rows over the same 6 hours and 10k cards: more rows
//! make the file denser (more rows per card and window), not longer, so both files have
//! the same (card, 10-minute window) cells.
//!
//! usage: csvflow-bench-gen --rows N --hours H [--cards 10000] [--seed 42]
//!        [--start 2026-11-20] --out FILE

use std::io::{BufWriter, Write};
use std::process::ExitCode;

/// (country, currency, weight of cards whose home is this country)
const COUNTRIES: &[(&str, &str, u32)] = &[
    ("US", "USD", 30),
    ("GB", "GBP", 12),
    ("DE", "EUR", 10),
    ("FR", "EUR", 9),
    ("ES", "EUR", 6),
    ("IT", "EUR", 6),
    ("NL", "EUR", 4),
    ("CA", "CAD", 5),
    ("JP", "JPY", 5),
    ("AU", "AUD", 3),
    ("BR", "BRL", 3),
    ("MX", "MXN", 2),
    ("IN", "INR", 2),
    ("SG", "SGD", 1),
    ("CH", "CHF", 1),
    ("SE", "SEK", 1),
];

/// (channel, weight)
const CHANNELS: &[(&str, u32)] = &[("pos", 55), ("ecom", 35), ("atm", 7), ("moto", 3)];

const MERCHANTS: u64 = 5_000;
const CROSS_BORDER_PER_MILLE: u64 = 200;

/// SplitMix64: tiny, fast and good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (multiply-shift; the bias is negligible here).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn weighted(rng: &mut Rng, total: u32, weights: impl Iterator<Item = u32>) -> usize {
    let mut pick = rng.below(total as u64) as u32;
    for (i, w) in weights.enumerate() {
        if pick < w {
            return i;
        }
        pick -= w;
    }
    unreachable!("weights sum to total")
}

/// Days since 1970-01-01 -> (year, month, day); Howard Hinnant's civil_from_days.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) -> days since 1970-01-01; Howard Hinnant's days_from_civil.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Append `v` as exactly `width` decimal digits (zero padded).
fn push_digits(buf: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = buf.len();
    buf.resize(start + width, b'0');
    for i in (0..width).rev() {
        buf[start + i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Append `v` in decimal, no padding.
fn push_uint(buf: &mut Vec<u8>, v: u64) {
    let width = v.checked_ilog10().unwrap_or(0) as usize + 1;
    push_digits(buf, v, width);
}

/// Amount in cents: log-normal-ish around ~25.00, long tail, and a rare very high amount.
fn amount_cents(rng: &mut Rng) -> u64 {
    if rng.below(10_000) == 0 {
        return 500_000 + rng.below(1_500_000); // 5,000.00 .. 20,000.00
    }
    // Approximately normal z from the sum of 4 uniforms (Irwin-Hall), scaled to unit variance.
    let z = ((0..4).map(|_| rng.unit()).sum::<f64>() - 2.0) * 3f64.sqrt();
    let amount = (3.2 + 1.1 * z).exp();
    ((amount * 100.0).round() as u64).max(1)
}

struct Args {
    rows: u64,
    hours: u64,
    cards: u64,
    seed: u64,
    start_day: i64,
    out: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rows: 0,
        hours: 0,
        cards: 10_000,
        seed: 42,
        start_day: days_from_civil(2026, 11, 20),
        out: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--rows" => args.rows = num()?,
            "--hours" => args.hours = num()?,
            "--cards" => args.cards = num()?,
            "--seed" => args.seed = num()?,
            "--out" => args.out = value,
            "--start" => {
                let p: Vec<&str> = value.split('-').collect();
                let bad = || format!("--start {value}: want YYYY-MM-DD");
                if p.len() != 3 {
                    return Err(bad());
                }
                let y = p[0].parse().map_err(|_| bad())?;
                let m = p[1].parse().map_err(|_| bad())?;
                let d = p[2].parse().map_err(|_| bad())?;
                args.start_day = days_from_civil(y, m, d);
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.rows == 0 || args.hours == 0 || args.cards == 0 || args.out.is_empty() {
        return Err("usage: csvflow-bench-gen --rows N --hours H [--cards N] [--seed N] [--start YYYY-MM-DD] --out FILE".into());
    }
    if args.cards > 100_000 || args.rows > 99_999_999 {
        return Err("at most 100000 cards and 99999999 rows (fixed-width ids)".into());
    }
    Ok(args)
}

fn generate(a: &Args) -> std::io::Result<u64> {
    let file = std::fs::File::create(&a.out)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(b"ts,txn_id,card_id,merchant,amount,currency,country,home_country,channel\n")?;

    // Per-card home country, drawn from its own stream so it does not depend on row count.
    let mut card_rng = Rng(a.seed ^ 0xC0FF_EE00_D15E_A5E5);
    let country_total: u32 = COUNTRIES.iter().map(|c| c.2).sum();
    let homes: Vec<u8> = (0..a.cards)
        .map(|_| weighted(&mut card_rng, country_total, COUNTRIES.iter().map(|c| c.2)) as u8)
        .collect();
    let channel_total: u32 = CHANNELS.iter().map(|c| c.1).sum();

    let mut rng = Rng(a.seed);
    let span = a.hours * 3600;
    let start = a.start_day * 86_400;
    let mut line = Vec::with_capacity(128);
    let mut day_cache: (i64, [u8; 11]) = (i64::MIN, [0; 11]); // "YYYY-MM-DDT"
    let mut bytes = 0u64;
    for i in 0..a.rows {
        // Even spread over the span, minus 0-3 s of jitter on a quarter of the rows.
        let base = start + (i as u128 * span as u128 / a.rows as u128) as i64;
        let jitter = if rng.below(4) == 0 {
            rng.below(4) as i64
        } else {
            0
        };
        let t = (base - jitter).max(start);
        let (day, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400) as u64);
        if day != day_cache.0 {
            let (y, m, d) = civil_from_days(day);
            let s = format!("{y:04}-{m:02}-{d:02}T");
            day_cache.1.copy_from_slice(s.as_bytes());
            day_cache.0 = day;
        }

        let card = rng.below(a.cards);
        let home = homes[card as usize] as usize;
        let country = if rng.below(1000) < CROSS_BORDER_PER_MILLE {
            // Any other country, uniformly.
            let other = rng.below(COUNTRIES.len() as u64 - 1) as usize;
            if other >= home {
                other + 1
            } else {
                other
            }
        } else {
            home
        };
        let merchant = rng.below(MERCHANTS);
        let cents = amount_cents(&mut rng);
        let channel = weighted(&mut rng, channel_total, CHANNELS.iter().map(|c| c.1));

        line.clear();
        line.extend_from_slice(&day_cache.1);
        push_digits(&mut line, secs / 3600, 2);
        line.push(b':');
        push_digits(&mut line, secs / 60 % 60, 2);
        line.push(b':');
        push_digits(&mut line, secs % 60, 2);
        line.extend_from_slice(b"Z,tx");
        push_digits(&mut line, i + 1, 8);
        line.extend_from_slice(b",card-");
        push_digits(&mut line, card, 5);
        line.extend_from_slice(b",m");
        push_digits(&mut line, merchant, 5);
        line.push(b',');
        push_uint(&mut line, cents / 100);
        line.push(b'.');
        push_digits(&mut line, cents % 100, 2);
        line.push(b',');
        line.extend_from_slice(COUNTRIES[country].1.as_bytes());
        line.push(b',');
        line.extend_from_slice(COUNTRIES[country].0.as_bytes());
        line.push(b',');
        line.extend_from_slice(COUNTRIES[home].0.as_bytes());
        line.push(b',');
        line.extend_from_slice(CHANNELS[channel].0.as_bytes());
        line.push(b'\n');
        w.write_all(&line)?;
        bytes += line.len() as u64;
    }
    w.flush()?;
    Ok(bytes)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("csvflow-bench-gen: {e}");
            return ExitCode::from(2);
        }
    };
    let t0 = std::time::Instant::now();
    match generate(&args) {
        Ok(bytes) => {
            eprintln!(
                "csvflow-bench-gen: {} rows, {} cards, {} h, {:.1} MB -> {} in {:.2} s",
                args.rows,
                args.cards,
                args.hours,
                bytes as f64 / 1e6,
                args.out,
                t0.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("csvflow-bench-gen: {}: {e}", args.out);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for d in [-1000, 0, 365, 20_000, days_from_civil(2026, 11, 20)] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(
            civil_from_days(days_from_civil(2026, 11, 20)),
            (2026, 11, 20)
        );
    }
}
