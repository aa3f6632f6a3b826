//! `sentiment`: short customer posts from app stores, Twitter and support tickets, mostly
//! positive; plants one source's negative spike (an outage) in one UTC-aligned 15-minute
//! window of the middle file. Sentiment words are lower case: positive `love`, `great`,
//! `excellent`; negative `terrible`, `broken`, `hate`, `refund`; neutral posts have none.

use chrono::{DateTime, Duration, Utc};

use crate::common::{
    aligned_starts, assemble, chance, hex_id, pick, weighted, window_start, Layout, Rng, Row, Span,
    TsFormat,
};
use crate::{GenOptions, GeneratedFile, UseCase};

pub(crate) const LAYOUT: Layout = Layout {
    use_case: UseCase::Sentiment,
    prefix: "posts",
    header: &["ts", "post_id", "source", "text"],
    delimiter: b',',
    ts_format: TsFormat::Rfc3339,
    numeric: &[],
    hours: 6,
};

const SOURCES: &[(&str, u32)] = &[("app_store", 35), ("twitter", 45), ("support", 20)];

#[cfg(test)]
const POSITIVE_WORDS: [&str; 3] = ["love", "great", "excellent"];
#[cfg(test)]
const NEGATIVE_WORDS: [&str; 4] = ["terrible", "broken", "hate", "refund"];

const FEATURES: &[&str] = &[
    "checkout",
    "search",
    "dark mode",
    "sync",
    "login",
    "notifications",
    "widget",
    "export",
    "offline mode",
    "photo upload",
];

/// `{}` is a feature.
const POSITIVE: &[&str] = &[
    "I love the new {}!",
    "The {} is great, thanks team.",
    "excellent update, {} feels much faster",
    "Support was excellent and sorted out my {} question in minutes.",
    "Five stars. The \"{}\" feature is great!",
    "Really love how simple {} is now, great job",
    "great app, I use the {} every day",
    "Just tried \"{}\" - excellent work.",
];

const NEGATIVE: &[&str] = &[
    "The {} is broken again.",
    "terrible update, {} crashes every time",
    "I hate the new {}, please bring back the old one",
    "{} broken since this morning, I want a refund",
    "Why is \"{}\" still broken? terrible.",
    "Third time contacting support: {} is broken, refund or I cancel",
    "terrible, the {} lost my data",
];

const NEUTRAL: &[&str] = &[
    "How do I turn on {}?",
    "Is {} available on Android, or only on iOS?",
    "Any plans for \"{}\" on the web app?",
    "Using the {} for the first time today.",
    "Where is the {} setting in version 4.2?",
    "Does {} work without an account?",
];

/// What people post during an outage of `{}`.
const OUTAGE: &[&str] = &[
    "{} is broken, cannot pay for anything",
    "terrible, {} has been broken for 10 minutes",
    "Charged twice, {} is broken. I want a refund!",
    "I hate this, \"{}\" keeps failing, refund please",
    "{} broken again?? terrible",
];
const OUTAGE_NEUTRAL: &[&str] = &[
    "Is {} down for everyone?",
    "Anyone else seeing errors on {}?",
];

const SPIKE_WINDOW: Duration = Duration::minutes(15);

#[derive(Clone, Copy)]
enum Mood {
    Positive,
    Neutral,
    Negative,
}

fn text(rng: &mut Rng, templates: &[&str], feature: &str) -> String {
    pick(rng, templates).replace("{}", feature)
}

fn post(rng: &mut Rng, source: &str, mood: Mood) -> Vec<String> {
    let feature = pick(rng, FEATURES);
    let templates = match mood {
        Mood::Positive => POSITIVE,
        Mood::Neutral => NEUTRAL,
        Mood::Negative => NEGATIVE,
    };
    vec![
        hex_id(rng, "post-"),
        source.to_owned(),
        text(rng, templates, feature),
    ]
}

/// Everyday mix: mostly positive.
fn everyday(rng: &mut Rng) -> (&'static str, Mood) {
    let source = *weighted(rng, SOURCES);
    let mood = *weighted(
        rng,
        &[
            (Mood::Positive, 55),
            (Mood::Neutral, 25),
            (Mood::Negative, 20),
        ],
    );
    (source, mood)
}

pub(crate) fn generate(opts: &GenOptions, rng: &mut Rng) -> Vec<GeneratedFile> {
    let spans = LAYOUT.spans(opts);
    let whole = Span::union(&spans);
    let mut rows = Vec::with_capacity(opts.rows);

    // The outage: one source, one window in the middle file.
    let source = *weighted(rng, SOURCES);
    let share = SOURCES.iter().find(|s| s.0 == source).map_or(0, |s| s.1) as usize;
    let feature = *pick(rng, &["checkout", "login", "sync"]);
    let middle = spans.len() / 2;
    let window = aligned_starts(
        rng,
        &spans[middle..=middle],
        SPIKE_WINDOW,
        Duration::zero(),
        Duration::zero(),
        1,
    )
    .first()
    .copied()
    .unwrap_or(whole.start);
    // As many outage posts as that source usually posts in the window (and at least 24),
    // so the window is mostly negative at any size.
    let usual = opts.rows * share / 100 * SPIKE_WINDOW.num_minutes() as usize
        / (LAYOUT.hours as usize * 60);
    let outage = usual.max(24);
    if outage <= opts.rows / 3 {
        for _ in 0..outage {
            let ts = crate::common::time_between(rng, window, window + SPIKE_WINDOW);
            let templates = if chance(rng, 0.9) {
                OUTAGE
            } else {
                OUTAGE_NEUTRAL
            };
            let fields = vec![
                hex_id(rng, "post-"),
                source.to_owned(),
                text(rng, templates, feature),
            ];
            rows.push(Row::new(ts, fields));
        }
    }
    let in_outage =
        |ts: DateTime<Utc>, s: &str| s == source && window_start(ts, SPIKE_WINDOW) == window;

    while rows.len() < opts.rows {
        let ts = whole.random_time(rng);
        let (s, mut mood) = everyday(rng);
        if in_outage(ts, s) && chance(rng, 0.85) {
            mood = Mood::Negative;
        }
        rows.push(Row::new(ts, post(rng, s, mood)));
    }
    assemble(&LAYOUT, &spans, rows, opts, rng, &mut |rng, _| {
        let source = *weighted(rng, SOURCES);
        post(rng, source, Mood::Neutral)
    })
}

/// +1 positive, -1 negative, 0 neutral, by keyword; `None` if both kinds appear.
#[cfg(test)]
pub(crate) fn mood_of(text: &str) -> Option<i32> {
    let pos = POSITIVE_WORDS.iter().any(|w| text.contains(w));
    let neg = NEGATIVE_WORDS.iter().any(|w| text.contains(w));
    match (pos, neg) {
        (true, true) => None,
        (true, false) => Some(1),
        (false, true) => Some(-1),
        (false, false) => Some(0),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testkit::small_runs;

    const UC: UseCase = UseCase::Sentiment;

    #[test]
    fn templates_carry_exactly_their_own_mood() {
        let check = |templates: &[&str], mood| {
            for t in templates {
                for f in FEATURES {
                    let text = t.replace("{}", f);
                    assert_eq!(mood_of(&text), Some(mood), "{text}");
                    assert_eq!(mood_of(&text.to_lowercase()), Some(mood), "{text}");
                }
            }
        };
        check(POSITIVE, 1);
        check(NEUTRAL, 0);
        check(OUTAGE_NEUTRAL, 0);
        check(NEGATIVE, -1);
        check(OUTAGE, -1);
    }

    #[test]
    fn one_source_has_a_negative_spike_otherwise_mixed_positive() {
        for rows in small_runs(UC) {
            // (source, 15-minute window) -> (file, posts, negative)
            let mut windows: BTreeMap<(String, i64), (usize, usize, usize)> = BTreeMap::new();
            let (mut pos, mut neg) = (0, 0);
            for r in &rows {
                let mood = mood_of(r.get("text", UC)).unwrap();
                let key = (r.get("source", UC).to_owned(), r.ts.timestamp() / 900);
                let entry = windows.entry(key).or_insert((r.file, 0, 0));
                entry.1 += 1;
                if mood < 0 {
                    entry.2 += 1;
                    neg += 1;
                } else if mood > 0 {
                    pos += 1;
                }
            }
            let spikes: Vec<_> = windows
                .values()
                .filter(|(_, posts, negative)| *posts >= 20 && *negative * 10 >= *posts * 7)
                .collect();
            assert_eq!(spikes.len(), 1, "{spikes:?}");
            assert_eq!(spikes[0].0, 1, "in the middle file");
            assert!(pos > 2 * neg, "{pos} positive, {neg} negative");
            // Only the spike: no other busy window is even half negative.
            let half_negative = windows
                .values()
                .filter(|(_, p, n)| *p >= 20 && 2 * *n > *p)
                .count();
            assert_eq!(half_negative, 1);
        }
    }

    #[test]
    fn quotes_and_commas_survive_the_round_trip() {
        for rows in small_runs(UC) {
            assert!(rows.iter().any(|r| r.get("text", UC).contains('"')));
            assert!(rows.iter().any(|r| r.get("text", UC).contains(',')));
            let files = crate::generate(UC, &crate::testkit::opts(300, 1));
            let raw = String::from_utf8(files[0].bytes.clone()).unwrap();
            assert!(
                raw.contains("\"\""),
                "quotes are doubled inside quoted fields"
            );
        }
    }
}
