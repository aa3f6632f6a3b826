//! `orders` (semicolon-delimited): order status changes. Every order is `purchased`, then
//! most are `shipped` minutes later and `delivered` hours later; some are `cancelled`.

use chrono::{DateTime, Duration, Utc};

use crate::common::{
    assemble, between, chance, int_between, money, skewed, weighted, Layout, Rng, Row, Span,
    TsFormat,
};
use crate::{GenOptions, GeneratedFile, UseCase};

pub(crate) const LAYOUT: Layout = Layout {
    use_case: UseCase::Orders,
    prefix: "orders",
    header: &["ts", "order_id", "status", "region", "amount"],
    delimiter: b';',
    ts_format: TsFormat::Rfc3339,
    numeric: &[4],
    hours: 6,
};

const REGIONS: &[(&str, u32)] = &[("eu", 40), ("us", 40), ("apac", 20)];

struct Order {
    region: &'static str,
    amount: f64,
    /// (time, status), in time order, all inside the range.
    events: Vec<(DateTime<Utc>, &'static str)>,
}

fn minutes(rng: &mut Rng, lo: f64, hi: f64) -> Duration {
    Duration::seconds((between(rng, lo, hi) * 60.0) as i64)
}

fn order(rng: &mut Rng, purchased: DateTime<Utc>) -> Order {
    let mut events = vec![(purchased, "purchased")];
    if chance(rng, 0.08) {
        events.push((purchased + minutes(rng, 2.0, 90.0), "cancelled"));
    } else {
        let shipped = purchased + minutes(rng, 8.0, 150.0);
        events.push((shipped, "shipped"));
        if chance(rng, 0.9) {
            events.push((shipped + minutes(rng, 40.0, 240.0), "delivered"));
        }
    }
    let amount = if chance(rng, 0.05) {
        between(rng, 400.0, 2500.0)
    } else {
        skewed(rng, 9.99, 400.0)
    };
    let region = *weighted(rng, REGIONS);
    Order {
        region,
        amount,
        events,
    }
}

fn fields(id: u64, status: &str, order: &Order) -> Vec<String> {
    vec![
        format!("ORD-{id}"),
        status.to_owned(),
        order.region.to_owned(),
        money(order.amount),
    ]
}

pub(crate) fn generate(opts: &GenOptions, rng: &mut Rng) -> Vec<GeneratedFile> {
    let spans = LAYOUT.spans(opts);
    let whole = Span::union(&spans);
    let mut orders = Vec::new();
    let mut budget = opts.rows;
    while budget > 0 {
        let purchased = whole.random_time(rng);
        let mut o = order(rng, purchased);
        // Later steps of orders placed near the end happen after the range.
        o.events.retain(|(ts, _)| whole.contains(*ts));
        o.events.truncate(budget);
        budget -= o.events.len();
        orders.push(o);
    }
    // Order numbers go up with purchase time.
    orders.sort_by_key(|o| o.events[0].0);
    let first_id = int_between(rng, 1_000_000, 8_000_000) as u64;
    let mut rows = Vec::with_capacity(opts.rows);
    for (i, o) in orders.iter().enumerate() {
        for (ts, status) in &o.events {
            rows.push(Row::new(*ts, fields(first_id + i as u64, status, o)));
        }
    }
    // Bad and late rows: purchases of new orders.
    let mut next_id = first_id + orders.len() as u64;
    assemble(&LAYOUT, &spans, rows, opts, rng, &mut |rng, ts| {
        next_id += 1;
        fields(next_id, "purchased", &order(rng, ts))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testkit::small_runs;

    const UC: UseCase = UseCase::Orders;

    #[test]
    fn orders_move_through_their_statuses_in_order() {
        for rows in small_runs(UC) {
            let mut by_order: BTreeMap<String, Vec<_>> = BTreeMap::new();
            for r in &rows {
                by_order
                    .entry(r.get("order_id", UC).to_owned())
                    .or_default()
                    .push(r);
            }
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for (id, events) in &by_order {
                let statuses: Vec<_> = events.iter().map(|r| r.get("status", UC)).collect();
                assert_eq!(statuses[0], "purchased", "{id}");
                let allowed: &[&[&str]] = &[
                    &["purchased"],
                    &["purchased", "cancelled"],
                    &["purchased", "shipped"],
                    &["purchased", "shipped", "delivered"],
                ];
                assert!(allowed.contains(&statuses.as_slice()), "{id}: {statuses:?}");
                assert!(events.windows(2).all(|w| w[0].ts <= w[1].ts));
                assert!(events
                    .iter()
                    .all(|r| r.get("amount", UC) == events[0].get("amount", UC)));
                for s in statuses {
                    *counts.entry(s).or_default() += 1;
                }
            }
            let n = |s| counts.get(s).copied().unwrap_or(0);
            assert!(
                n("purchased") > n("shipped") && n("shipped") > n("delivered"),
                "{counts:?}"
            );
            assert!(
                n("delivered") > n("cancelled") && n("cancelled") > 0,
                "{counts:?}"
            );
            for r in &rows {
                assert!(["eu", "us", "apac"].contains(&r.get("region", UC)));
            }
        }
    }

    #[test]
    fn semicolons_delimit() {
        let files = crate::generate(UC, &crate::testkit::opts(20, 1));
        let text = String::from_utf8(files[0].bytes.clone()).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("ts;order_id;status;region;amount"));
        assert_eq!(lines.next().unwrap().split(';').count(), 5);
    }
}
