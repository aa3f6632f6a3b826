//! Throughput of `process_file` on a synthetic card-transaction file generated in memory
//! (the README example pipeline). Run: `cargo run --release -p csvflow-core --example throughput [rows] [cards]`.

use std::fmt::Write as _;
use std::time::Instant;

use csvflow_core::{process_file, Catalog, FileInput};

const DEF: &str = r#"
[[pipeline]]
name = "card-transactions"
match = "transactions/**"
[pipeline.csv]
header = true
delimiter = ","
on_bad_row = "quarantine"
[pipeline.time]
column = "ts"
format = "rfc3339"
allowed_lateness = "1h"
[pipeline.columns]
ts = "timestamp"
txn_id = "string"
card_id = "string"
merchant = "string"
amount = "float"
currency = "string"
country = "string"
home_country = "string"
channel = "string"
[[pipeline.aggregate]]
name = "per_card_10m"
group_by = ["card_id"]
window = { tumbling = "10m" }
[pipeline.aggregate.metrics]
n = "count()"
total = "sum(amount)"
mx = "max(amount)"
xborder = "count_if(country != home_country)"
[[pipeline.alert]]
name = "cross_border_burst"
aggregate = "per_card_10m"
when = "xborder >= 3"
[[pipeline.alert]]
name = "very_high_amount"
row = "amount > 5000"
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let cards: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let cat = Catalog::from_toml(DEF)?;
    let p = cat
        .pipeline("card-transactions")
        .ok_or("pipeline missing")?;

    let mut data = String::with_capacity(rows as usize * 100);
    data.push_str("ts,txn_id,card_id,merchant,amount,currency,country,home_country,channel\n");
    let countries = ["FR", "DE", "US", "GB", "ES"];
    let mut x: u64 = 42;
    for i in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // One day of events over `cards` cards.
        let secs = i * 86_400 / rows.max(1);
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let card = x % cards.max(1);
        // Mostly small amounts; about one in a thousand above 5000.
        let cents = if x.is_multiple_of(1000) {
            500_000 + x % 200_000
        } else {
            x % 30_000
        };
        let c = countries[(x >> 20) as usize % 5];
        writeln!(
            data,
            "2026-11-20T{h:02}:{m:02}:{s:02}.{:03}Z,t{i},card{card:05},merchant{},{}.{:02},EUR,{c},FR,{}",
            x % 1000,
            (x >> 8) % 500,
            cents / 100,
            cents % 100,
            if x & 1 == 0 { "web" } else { "pos" }
        )?;
    }
    let bytes = data.len() as f64;

    let mut best = f64::MAX;
    let mut report = None;
    for _ in 0..3 {
        let t = Instant::now();
        let r = process_file(
            p,
            FileInput {
                name: "mem://synthetic.csv",
                watermark_ms: None,
            },
            data.as_bytes(),
        )?;
        best = best.min(t.elapsed().as_secs_f64());
        report = Some(r);
    }
    let r = report.ok_or("no run")?;
    println!(
        "rows={} bad={} cells={} row_alerts={} bytes={} best_of_3={:.3}s => {:.1} MB/s, {:.2} M rows/s",
        r.stats.rows,
        r.stats.bad,
        r.stats.cells,
        r.row_alerts.len(),
        r.stats.bytes,
        best,
        bytes / best / 1e6,
        rows as f64 / best / 1e6
    );
    Ok(())
}
