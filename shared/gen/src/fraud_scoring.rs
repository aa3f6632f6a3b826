//! `fraud-scoring`: transactions without the home country (it comes from the
//! `card_id,home_country,segment` lookup); plants fraud-like rows: large amount, foreign
//! country, night hours (UTC), risky merchant category (7995 gambling, 4829 wire transfer).

use chrono::{DateTime, Timelike, Utc};
use rand::SeedableRng;

use crate::card_fraud::HOME_COUNTRIES;
use crate::common::{
    assemble, below, between, chance, csv_string, hex_id, pick, skewed, weighted, Layout, Rng, Row,
    Span, TsFormat,
};
use crate::{GenOptions, GeneratedFile, UseCase};

pub(crate) const LAYOUT: Layout = Layout {
    use_case: UseCase::FraudScoring,
    prefix: "scoring",
    header: &[
        "ts", "txn_id", "card_id", "amount", "mcc", "country", "channel",
    ],
    delimiter: b',',
    ts_format: TsFormat::Rfc3339,
    numeric: &[3],
    hours: 6,
};

/// Cards in the lookup table: `card-0001` ..= `card-2000`.
pub(crate) const CARDS: usize = 2000;

/// The risky merchant categories.
pub(crate) const RISKY_MCC: [&str; 2] = ["7995", "4829"];

/// (mcc, min amount, max amount), weighted. 6011 is ATM cash; 7995 and 4829 show up in
/// everyday use too, with small amounts.
const MCCS: &[((&str, f64, f64), u32)] = &[
    (("5411", 5.0, 180.0), 18),  // grocery
    (("5812", 8.0, 120.0), 14),  // restaurants
    (("5814", 3.0, 25.0), 10),   // fast food
    (("5541", 20.0, 110.0), 10), // fuel
    (("5311", 15.0, 300.0), 6),  // department stores
    (("5691", 15.0, 250.0), 6),  // clothing
    (("5732", 25.0, 1500.0), 5), // electronics
    (("5912", 4.0, 80.0), 6),    // pharmacies
    (("4121", 6.0, 70.0), 8),    // taxis
    (("4511", 60.0, 1200.0), 3), // airlines
    (("7011", 80.0, 900.0), 4),  // hotels
    (("5999", 5.0, 200.0), 6),   // misc retail
    (("6011", 20.0, 400.0), 5),  // ATM cash
    (("7995", 10.0, 300.0), 1),  // gambling
    (("4829", 20.0, 800.0), 1),  // wire transfers
];

const TRAVEL: &[&str] = &[
    "US", "GB", "FR", "ES", "IT", "DE", "NL", "PT", "CA", "CH", "IE",
];
/// Countries that fraud-like rows come from.
const FAR_AWAY: &[&str] = &["NG", "RO", "UA", "BR", "VN", "ID", "PH", "KZ"];

const FRAUD_SHARE: f64 = 0.01;

/// The lookup table's rows: (home_country, segment) of `card-0001`.. in order.
/// Fixed: independent of the options.
fn cards() -> Vec<(&'static str, &'static str)> {
    let mut rng = Rng::seed_from_u64(0xCA4D_5EED);
    let segments = [("standard", 70), ("gold", 20), ("business", 10)];
    (0..CARDS)
        .map(|_| {
            (
                *weighted(&mut rng, HOME_COUNTRIES),
                *weighted(&mut rng, &segments),
            )
        })
        .collect()
}

fn card_id(i: usize) -> String {
    format!("card-{:04}", i + 1)
}

/// The card lookup table as CSV (`card_id,home_country,segment`, `card-0001`..`card-2000`);
/// the same bytes as `examples/lookups/cards.csv`.
pub fn cards_lookup_csv() -> String {
    let rows = cards()
        .into_iter()
        .enumerate()
        .map(|(i, (home, segment))| vec![card_id(i), home.to_owned(), segment.to_owned()]);
    csv_string(&["card_id", "home_country", "segment"], rows)
}

fn everyday(rng: &mut Rng, homes: &[(&'static str, &'static str)]) -> Vec<String> {
    let card = below(rng, homes.len());
    let home = homes[card].0;
    let &(mcc, lo, hi) = weighted(rng, MCCS);
    let country = if chance(rng, 0.04) {
        abroad(rng, TRAVEL, home)
    } else {
        home
    };
    let channel = match mcc {
        "6011" => "atm",
        "4511" | "7011" | "4829" | "7995" if chance(rng, 0.85) => "web",
        "4511" | "7011" | "4829" | "7995" => "pos",
        _ if chance(rng, 0.3) => "web",
        _ => "pos",
    };
    let amount = if mcc == "6011" {
        (below(rng, 20) as f64 + 1.0) * 20.0
    } else {
        skewed(rng, lo, hi)
    };
    row(rng, card, amount, mcc, country, channel)
}

fn abroad(rng: &mut Rng, countries: &[&'static str], home: &str) -> &'static str {
    loop {
        let country = pick(rng, countries);
        if *country != home {
            return country;
        }
    }
}

fn row(
    rng: &mut Rng,
    card: usize,
    amount: f64,
    mcc: &str,
    country: &str,
    channel: &str,
) -> Vec<String> {
    vec![
        hex_id(rng, "tx-"),
        card_id(card),
        format!("{amount:.2}"),
        mcc.to_owned(),
        country.to_owned(),
        channel.to_owned(),
    ]
}

/// A time in `span` at night (UTC hour 0-5) when the span has one.
fn night_time(rng: &mut Rng, span: &Span) -> DateTime<Utc> {
    let mut ts = span.random_time(rng);
    for _ in 0..30 {
        if ts.hour() < 6 {
            break;
        }
        ts = span.random_time(rng);
    }
    ts
}

pub(crate) fn generate(opts: &GenOptions, rng: &mut Rng) -> Vec<GeneratedFile> {
    let spans = LAYOUT.spans(opts);
    let whole = Span::union(&spans);
    let homes = cards();
    let mut rows = Vec::with_capacity(opts.rows);

    // Fraud-like: ~1 %, at least two per file, never more than a tenth of the rows.
    let fraud = ((opts.rows as f64 * FRAUD_SHARE) as usize)
        .max(2 * spans.len())
        .min(opts.rows / 10);
    for i in 0..fraud {
        let ts = night_time(rng, &spans[i % spans.len()]);
        let card = below(rng, homes.len());
        let country = abroad(rng, FAR_AWAY, homes[card].0);
        let mcc = if chance(rng, 0.8) {
            *pick(rng, &RISKY_MCC)
        } else {
            "5732"
        };
        let amount = between(rng, 1500.0, 9500.0);
        rows.push(Row::new(ts, row(rng, card, amount, mcc, country, "web")));
    }
    while rows.len() < opts.rows {
        let ts = whole.random_time(rng);
        rows.push(Row::new(ts, everyday(rng, &homes)));
    }
    assemble(&LAYOUT, &spans, rows, opts, rng, &mut |rng, _| {
        everyday(rng, &homes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::small_runs;

    const UC: UseCase = UseCase::FraudScoring;

    #[test]
    fn lookup_is_fixed_and_matches_the_checked_in_file() {
        let csv = cards_lookup_csv();
        assert_eq!(csv, cards_lookup_csv());
        let lines: Vec<_> = csv.lines().collect();
        assert_eq!(lines[0], "card_id,home_country,segment");
        assert_eq!(lines.len(), CARDS + 1);
        assert!(lines[1].starts_with("card-0001,"));
        assert!(lines[CARDS].starts_with("card-2000,"));
        for segment in ["standard", "gold", "business"] {
            assert!(csv.contains(segment));
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/lookups/cards.csv"
        );
        if std::env::var_os("CSVFLOW_GEN_BLESS").is_some() {
            std::fs::write(path, &csv).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            csv,
            "run with CSVFLOW_GEN_BLESS=1"
        );
    }

    #[test]
    fn fraud_like_rows_stand_out_in_every_file() {
        let homes = cards();
        for rows in small_runs(UC) {
            let is_fraud_like = |r: &crate::testkit::Parsed| {
                let card: usize = r.get("card_id", UC)[5..].parse().unwrap();
                r.get("amount", UC).parse::<f64>().unwrap() > 1000.0
                    && r.get("country", UC) != homes[card - 1].0
                    && RISKY_MCC.contains(&r.get("mcc", UC))
                    && r.ts.hour() < 6
            };
            for f in 0..3 {
                let n = rows
                    .iter()
                    .filter(|r| r.file == f && is_fraud_like(r))
                    .count();
                assert!(n >= 2, "file {f}: {n}");
            }
            let total = rows.iter().filter(|r| is_fraud_like(r)).count();
            assert!(
                total * 25 < rows.len(),
                "{total} fraud-like rows is not a small share"
            );
            for r in &rows {
                assert_eq!(r.get("mcc", UC).len(), 4);
                let card: usize = r.get("card_id", UC)[5..].parse().unwrap();
                assert!((1..=CARDS).contains(&card));
            }
        }
    }
}
