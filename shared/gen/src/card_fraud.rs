//! `card-fraud`: card transactions with the card's home country; plants amounts over
//! 5000 and bursts of cross-border use (>= 3 abroad in one UTC-aligned 10-minute window).

use chrono::{DateTime, Duration, Utc};

use crate::common::{
    aligned_starts, assemble, below, between, chance, hex_id, int_between, money, pick, skewed,
    time_between, weighted, Layout, Rng, Row, Span, TsFormat,
};
use crate::{GenOptions, GeneratedFile, UseCase};

pub(crate) const LAYOUT: Layout = Layout {
    use_case: UseCase::CardFraud,
    prefix: "transactions",
    header: &[
        "ts",
        "txn_id",
        "card_id",
        "merchant",
        "amount",
        "currency",
        "country",
        "home_country",
        "channel",
    ],
    delimiter: b',',
    ts_format: TsFormat::Rfc3339,
    numeric: &[4],
    hours: 6,
};

/// Where cards are issued (weighted), shared with `fraud-scoring`.
pub(crate) const HOME_COUNTRIES: &[(&str, u32)] = &[
    ("US", 30),
    ("GB", 12),
    ("DE", 12),
    ("FR", 10),
    ("CA", 6),
    ("ES", 7),
    ("IT", 7),
    ("NL", 5),
    ("IE", 3),
    ("BE", 3),
    ("AT", 2),
    ("PT", 2),
    ("CH", 1),
];

/// Where travellers use their cards.
const TRAVEL: &[&str] = &[
    "US", "GB", "FR", "ES", "IT", "DE", "NL", "PT", "CA", "CH", "IE",
];

/// Where stolen card details get used: online, far from home.
const BURST: &[&str] = &["LT", "LV", "EE", "CY", "MT", "SG", "AU"];

/// Currencies with roughly dollar-sized units, so one amount threshold fits all.
pub(crate) fn currency(country: &str) -> &'static str {
    match country {
        "US" => "USD",
        "CA" => "CAD",
        "GB" => "GBP",
        "CH" => "CHF",
        "SG" => "SGD",
        "AU" => "AUD",
        _ => "EUR",
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Channel {
    Pos,
    Web,
    Atm,
    /// In a shop or online.
    Either,
}

/// (name, channel, min amount, max amount).
type Merchant = (&'static str, Channel, f64, f64);

/// Weighted by how common they are.
const MERCHANTS: &[(Merchant, u32)] = &[
    (("Amazon", Channel::Web, 8.0, 350.0), 14),
    (("Tesco", Channel::Pos, 4.0, 140.0), 10),
    (("Carrefour", Channel::Pos, 5.0, 160.0), 8),
    (("Starbucks", Channel::Pos, 3.0, 18.0), 10),
    (("Shell", Channel::Pos, 25.0, 110.0), 8),
    (("Uber", Channel::Web, 7.0, 65.0), 8),
    (("Netflix", Channel::Web, 7.99, 19.99), 4),
    (("Zara", Channel::Either, 15.0, 240.0), 5),
    (("IKEA", Channel::Either, 15.0, 900.0), 3),
    (("Apple Store", Channel::Either, 20.0, 2400.0), 3),
    (("MediaMarkt", Channel::Either, 25.0, 1800.0), 3),
    (("Booking.com", Channel::Web, 60.0, 1400.0), 3),
    (("Ryanair", Channel::Web, 30.0, 400.0), 2),
    (("Joe's Diner, Main St", Channel::Pos, 9.0, 60.0), 3),
    (("ATM withdrawal", Channel::Atm, 20.0, 500.0), 8),
];

/// Where amounts over 5000 happen.
const LUXURY: &[(&str, &str)] = &[
    ("Rolex Boutique", "pos"),
    ("Cartier", "pos"),
    ("Louis Vuitton", "pos"),
    ("Emirates", "web"),
    ("Apple Store", "web"),
];

/// What a burst of stolen-card use buys.
const BURST_MERCHANTS: &[&str] = &[
    "Steam",
    "Gift Card Hub",
    "ElectroWorld",
    "Amazon",
    "CryptoPay",
];

const LARGE_SHARE: f64 = 0.003;
const BURSTS_PER_FILE: usize = 3;
const BURST_WINDOW: Duration = Duration::minutes(10);

struct Cards {
    homes: Vec<&'static str>,
}

impl Cards {
    fn new(rng: &mut Rng, rows: usize) -> Self {
        let n = (rows / 4).clamp(50, 9999);
        Cards {
            homes: (0..n).map(|_| *weighted(rng, HOME_COUNTRIES)).collect(),
        }
    }

    fn id(i: usize) -> String {
        format!("card-{:04}", i + 1)
    }

    /// An everyday purchase, mostly at home.
    fn everyday(&self, rng: &mut Rng) -> Vec<String> {
        let card = below(rng, self.homes.len());
        let home = self.homes[card];
        let &(name, channel, lo, hi) = weighted(rng, MERCHANTS);
        let country = if chance(rng, 0.025) {
            abroad(rng, TRAVEL, home)
        } else {
            home
        };
        let (amount, channel) = match channel {
            Channel::Atm => ((int_between(rng, 1, 25) * 20) as f64, "atm"),
            Channel::Pos => (skewed(rng, lo, hi), "pos"),
            Channel::Web => (skewed(rng, lo, hi), "web"),
            Channel::Either => (
                skewed(rng, lo, hi),
                if chance(rng, 0.6) { "pos" } else { "web" },
            ),
        };
        txn(rng, card, name, amount, country, home, channel)
    }
}

fn abroad(rng: &mut Rng, countries: &[&'static str], home: &str) -> &'static str {
    loop {
        let country = pick(rng, countries);
        if *country != home {
            return country;
        }
    }
}

fn txn(
    rng: &mut Rng,
    card: usize,
    merchant: &str,
    amount: f64,
    country: &str,
    home: &str,
    channel: &str,
) -> Vec<String> {
    vec![
        hex_id(rng, "tx-"),
        Cards::id(card),
        merchant.to_owned(),
        money(amount),
        currency(country).to_owned(),
        country.to_owned(),
        home.to_owned(),
        channel.to_owned(),
    ]
}

pub(crate) fn generate(opts: &GenOptions, rng: &mut Rng) -> Vec<GeneratedFile> {
    let spans = LAYOUT.spans(opts);
    let whole = Span::union(&spans);
    let cards = Cards::new(rng, opts.rows);
    let mut rows = Vec::with_capacity(opts.rows);
    // Patterns take at most a quarter of the rows, so tiny runs stay mostly normal.
    let pattern_budget = opts.rows / 4;

    // Amounts over 5000: ~0.3 %, at least one per file.
    let large = ((opts.rows as f64 * LARGE_SHARE) as usize)
        .max(spans.len())
        .min(pattern_budget / 2);
    for i in 0..large {
        let ts = spans[i % spans.len()].random_time(rng);
        let card = below(rng, cards.homes.len());
        let home = cards.homes[card];
        let country = if chance(rng, 0.7) {
            home
        } else {
            abroad(rng, TRAVEL, home)
        };
        let &(merchant, channel) = pick(rng, LUXURY);
        let amount = between(rng, 5200.0, 14_000.0);
        rows.push(Row::new(
            ts,
            txn(rng, card, merchant, amount, country, home, channel),
        ));
    }

    // Cross-border bursts: a few cards per file, 3-5 uses abroad inside one window.
    let windows = aligned_starts(
        rng,
        &spans,
        BURST_WINDOW,
        Duration::zero(),
        Duration::zero(),
        BURSTS_PER_FILE,
    );
    let mut used = Vec::new();
    for window in windows {
        let size = int_between(rng, 3, 5) as usize;
        if rows.len() + size > pattern_budget {
            break;
        }
        let card = loop {
            let card = below(rng, cards.homes.len());
            if !used.contains(&card) || used.len() >= cards.homes.len() {
                break card;
            }
        };
        used.push(card);
        let home = cards.homes[card];
        let country = abroad(rng, BURST, home);
        for _ in 0..size {
            let ts = time_between(rng, window, window + BURST_WINDOW - Duration::seconds(1));
            let merchant = pick(rng, BURST_MERCHANTS);
            let channel = if chance(rng, 0.85) { "web" } else { "pos" };
            let amount = skewed(rng, 40.0, 700.0);
            rows.push(Row::new(
                ts,
                txn(rng, card, merchant, amount, country, home, channel),
            ));
        }
    }

    while rows.len() < opts.rows {
        let ts = whole.random_time(rng);
        rows.push(Row::new(ts, cards.everyday(rng)));
    }
    assemble(&LAYOUT, &spans, rows, opts, rng, &mut |rng,
                                                     _ts: DateTime<
        Utc,
    >| {
        cards.everyday(rng)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testkit::small_runs;

    const UC: UseCase = UseCase::CardFraud;

    #[test]
    fn large_amounts_are_rare_but_in_every_file() {
        for rows in small_runs(UC) {
            let large: Vec<_> = rows
                .iter()
                .filter(|r| r.get("amount", UC).parse::<f64>().unwrap() > 5000.0)
                .collect();
            assert!((3..=20).contains(&large.len()), "{}", large.len());
            for f in 0..3 {
                assert!(
                    large.iter().any(|r| r.file == f),
                    "no large amount in file {f}"
                );
            }
        }
    }

    #[test]
    fn mostly_domestic_with_cross_border_bursts_in_every_file() {
        for rows in small_runs(UC) {
            let abroad = rows
                .iter()
                .filter(|r| r.get("country", UC) != r.get("home_country", UC))
                .count();
            assert!(abroad * 10 < rows.len(), "{abroad} of {}", rows.len());
            // card, 10-minute window -> (file, cross-border count)
            let mut windows: BTreeMap<(String, i64), (usize, usize)> = BTreeMap::new();
            for r in rows
                .iter()
                .filter(|r| r.get("country", UC) != r.get("home_country", UC))
            {
                let key = (r.get("card_id", UC).to_owned(), r.ts.timestamp() / 600);
                windows.entry(key).or_insert((r.file, 0)).1 += 1;
            }
            for f in 0..3 {
                let bursts = windows
                    .values()
                    .filter(|(file, n)| *file == f && *n >= 3)
                    .count();
                assert!(bursts >= 2, "file {f}: {bursts} bursts");
            }
        }
    }

    #[test]
    fn fields_look_right() {
        for r in small_runs(UC).into_iter().flatten() {
            let amount = r.get("amount", UC);
            assert_eq!(amount.split('.').nth(1).map(str::len), Some(2), "{amount}");
            assert!(["web", "pos", "atm"].contains(&r.get("channel", UC)));
            assert_eq!(r.get("country", UC).len(), 2);
            assert!(r.get("card_id", UC).starts_with("card-"));
            assert!(r.fields[0].ends_with('Z'));
        }
    }
}
