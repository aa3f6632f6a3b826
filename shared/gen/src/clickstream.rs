//! `clickstream`: shop events (view, cart, purchase) from users browsing in sessions
//! (events seconds to minutes apart, sessions more than 45 minutes apart). Funnel: many
//! views, some carts, fewer purchases; every purchase follows a cart of the same product
//! in the session; some sessions end on a cart without a purchase (abandoned).

use chrono::{DateTime, Duration, Utc};

use crate::common::{
    assemble, below, between, chance, int_between, pick, unit, weighted, Layout, Rng, Row, Span,
    TsFormat,
};
use crate::{GenOptions, GeneratedFile, UseCase};

pub(crate) const LAYOUT: Layout = Layout {
    use_case: UseCase::Clickstream,
    prefix: "clicks",
    header: &["ts", "user_id", "event", "product_id", "price"],
    delimiter: b',',
    ts_format: TsFormat::Rfc3339,
    numeric: &[4],
    hours: 6,
};

/// Sessions are at least this far apart (the pipeline's session gap is 45 minutes).
const MIN_SESSION_GAP_MINUTES: f64 = 46.0;
/// Events inside a session are at most this far apart.
const MAX_EVENT_GAP_SECONDS: f64 = 600.0;

#[derive(Clone, Copy, PartialEq)]
enum Intent {
    Browse,
    Buy,
    Abandon,
}

struct Shop {
    prices: Vec<String>,
}

impl Shop {
    fn new(rng: &mut Rng, rows: usize) -> Self {
        let n = (rows / 10).clamp(50, 500);
        let bands = [((4.0, 50.0), 60), ((50.0, 200.0), 30), ((200.0, 900.0), 10)];
        let prices = (0..n)
            .map(|_| {
                let &(lo, hi) = weighted(rng, &bands);
                // Shop prices end in .99.
                format!("{}.99", between(rng, lo, hi) as u64)
            })
            .collect();
        Shop { prices }
    }

    fn event(&self, user: usize, event: &str, product: usize) -> Vec<String> {
        vec![
            format!("u-{:05}", user + 1),
            event.to_owned(),
            format!("p-{:04}", product + 1001),
            self.prices[product].clone(),
        ]
    }

    /// One session's (offset from its start, event, product), in order.
    fn session(&self, rng: &mut Rng) -> Vec<(Duration, &'static str, usize)> {
        let intent = *weighted(
            rng,
            &[
                (Intent::Browse, 55),
                (Intent::Buy, 25),
                (Intent::Abandon, 20),
            ],
        );
        let length = 2 + (unit(rng) * unit(rng) * 14.0) as usize;
        let mut at = Duration::zero();
        let mut viewed = Vec::new();
        let mut cart: Vec<usize> = Vec::new();
        let mut events = Vec::new();
        let gap = |rng: &mut Rng| {
            // Mostly seconds, sometimes minutes.
            let u = unit(rng);
            Duration::milliseconds(
                ((3.0 + u * u * u * (MAX_EVENT_GAP_SECONDS - 3.0)) * 1000.0) as i64,
            )
        };
        for i in 0..length {
            if i > 0 {
                at += gap(rng);
            }
            let carts = intent != Intent::Browse && !viewed.is_empty();
            if intent == Intent::Buy && !cart.is_empty() && chance(rng, 0.35) {
                let product = cart.remove(below(rng, cart.len()));
                events.push((at, "purchase", product));
            } else if carts && chance(rng, 0.3) {
                let product = *pick(rng, &viewed);
                cart.push(product);
                events.push((at, "cart", product));
            } else {
                let product = below(rng, self.prices.len());
                viewed.push(product);
                events.push((at, "view", product));
            }
        }
        let purchased = events.iter().any(|(_, e, _)| *e == "purchase");
        match intent {
            Intent::Abandon => {
                at += gap(rng);
                events.push((at, "cart", *pick(rng, &viewed)));
            }
            Intent::Buy if !purchased => {
                if cart.is_empty() {
                    at += gap(rng);
                    let product = *pick(rng, &viewed);
                    cart.push(product);
                    events.push((at, "cart", product));
                }
                at += gap(rng);
                events.push((at, "purchase", cart[0]));
            }
            _ => {}
        }
        events
    }

    /// One user's events across the range: sessions separated by 46 minutes to 3 hours.
    fn user(&self, rng: &mut Rng, user: usize, whole: Span) -> Vec<Row> {
        // Spread over one session cycle so the range fills evenly from the start.
        let mut start = whole.start + Duration::minutes(int_between(rng, 0, 150));
        let mut rows = Vec::new();
        while start < whole.end {
            let mut last = start;
            for (offset, event, product) in self.session(rng) {
                last = start + offset;
                if last >= whole.end {
                    break;
                }
                rows.push(Row::new(last, self.event(user, event, product)));
            }
            let gap = between(rng, MIN_SESSION_GAP_MINUTES, 180.0);
            start = last + Duration::seconds((gap * 60.0) as i64);
        }
        rows
    }
}

pub(crate) fn generate(opts: &GenOptions, rng: &mut Rng) -> Vec<GeneratedFile> {
    let spans = LAYOUT.spans(opts);
    let whole = Span::union(&spans);
    let shop = Shop::new(rng, opts.rows);
    let mut rows = Vec::with_capacity(opts.rows);
    let mut users = 0;
    while rows.len() < opts.rows {
        let mut events = shop.user(rng, users, whole);
        // The last user's day is cut short to hit the row count.
        events.truncate(opts.rows - rows.len());
        rows.extend(events);
        users += 1;
    }
    // Bad and late rows: product views by known users.
    assemble(
        &LAYOUT,
        &spans,
        rows,
        opts,
        rng,
        &mut |rng, _: DateTime<Utc>| {
            let product = below(rng, shop.prices.len());
            shop.event(below(rng, users.max(1)), "view", product)
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testkit::{small_runs, Parsed};

    const UC: UseCase = UseCase::Clickstream;

    /// Good rows cut into sessions (per user, split at gaps over 45 minutes).
    fn sessions(rows: &[Parsed]) -> Vec<Vec<&Parsed>> {
        let mut by_user: BTreeMap<&str, Vec<&Parsed>> = BTreeMap::new();
        for r in rows {
            by_user.entry(r.get("user_id", UC)).or_default().push(r);
        }
        let mut sessions = Vec::new();
        for mut events in by_user.into_values() {
            events.sort_by_key(|r| r.ts);
            let mut current: Vec<&Parsed> = Vec::new();
            for r in events {
                if let Some(prev) = current.last() {
                    if r.ts - prev.ts > Duration::minutes(45) {
                        sessions.push(std::mem::take(&mut current));
                    }
                }
                current.push(r);
            }
            sessions.push(current);
        }
        sessions
    }

    #[test]
    fn sessions_follow_the_funnel() {
        for rows in small_runs(UC) {
            let count = |e: &str| rows.iter().filter(|r| r.get("event", UC) == e).count();
            let (views, carts, purchases) = (count("view"), count("cart"), count("purchase"));
            assert!(
                views > 2 * carts && carts > purchases && purchases > 20,
                "{views} {carts} {purchases}"
            );
            let sessions = sessions(&rows);
            let mut abandoned = 0;
            let mut users_with_several = 0;
            let mut per_user: BTreeMap<&str, usize> = BTreeMap::new();
            for session in &sessions {
                *per_user.entry(session[0].get("user_id", UC)).or_default() += 1;
                for (i, r) in session.iter().enumerate() {
                    if r.get("event", UC) == "purchase" {
                        let product = r.get("product_id", UC);
                        let carted = session[..i].iter().any(|c| {
                            c.get("event", UC) == "cart" && c.get("product_id", UC) == product
                        });
                        assert!(carted, "purchase of {product} without a cart");
                    }
                    if i > 0 {
                        assert!(r.ts - session[i - 1].ts <= Duration::seconds(601));
                    }
                }
                let last = session[session.len() - 1];
                let bought = session.iter().any(|r| r.get("event", UC) == "purchase");
                if last.get("event", UC) == "cart" && !bought {
                    abandoned += 1;
                }
            }
            users_with_several += per_user.values().filter(|n| **n >= 2).count();
            assert!(abandoned >= 10, "{abandoned}");
            assert!(users_with_several >= 10, "{users_with_several}");
        }
    }

    #[test]
    fn every_event_has_the_products_price() {
        for rows in small_runs(UC) {
            let mut prices: BTreeMap<&str, &str> = BTreeMap::new();
            for r in &rows {
                let price = r.get("price", UC);
                assert!(price.ends_with(".99"));
                let known = prices.entry(r.get("product_id", UC)).or_insert(price);
                assert_eq!(*known, price);
            }
        }
    }
}
