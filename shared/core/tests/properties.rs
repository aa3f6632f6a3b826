//! Property tests: merging per-file partials equals processing all rows at once (any
//! split, any merge order, every window kind and metric), and no input makes the engine
//! or the definition parser panic.

use csvflow_core::*;
use proptest::prelude::*;

const DEF: &str = r#"
[[pipeline]]
name = "p"
match = "**"
[pipeline.time]
column = "ts"
format = "epoch_s"
[pipeline.columns]
ts = "timestamp"
k = "string"
amount = "float"
n = "int"
c = "string"

[[pipeline.aggregate]]
name = "tumbling"
group_by = ["k"]
window = { tumbling = "10m" }
[pipeline.aggregate.metrics]
cnt = "count()"
ci = "count_if(c != \"FR\")"
s = "sum(amount)"
si = "sum(n)"
mn = "min(amount)"
mx = "max(c)"
av = "avg(amount)"
fi = "first(c)"
la = "last(n)"
di = "distinct(c)"
p90 = "p90(amount)"
x2 = "sum(amount * 2 + n)"

[[pipeline.aggregate]]
name = "hopping"
group_by = ["k", "c"]
window = { hopping = "10m", every = "3m" }
[pipeline.aggregate.metrics]
cnt = "count()"
s = "sum(amount)"
la = "last(c)"

[[pipeline.aggregate]]
name = "session"
group_by = ["k"]
window = { session_gap = "7m" }
[pipeline.aggregate.metrics]
cnt = "count()"
s = "sum(amount)"
fi = "first(amount)"
di = "distinct(n)"
"#;

fn row_strategy() -> impl Strategy<Value = String> {
    (
        0i64..240,
        0usize..3,
        -100_000i64..100_000,
        prop::option::weighted(0.9, -50i64..50),
        0usize..4,
    )
        .prop_map(|(min, k, cents, n, c)| {
            let n = n.map_or(String::new(), |n| n.to_string());
            format!(
                "{},{},{}.{:02},{},{}\n",
                1_795_132_800 + min * 60 + (cents.rem_euclid(60)),
                ["a", "b", "c"][k],
                cents / 100,
                cents.unsigned_abs() % 100,
                n,
                ["FR", "DE", "US", ""][c],
            )
        })
}

fn process(p: &Pipeline, rows: &[String]) -> FileReport {
    let mut data = String::from("ts,k,amount,n,c\n");
    for r in rows {
        data.push_str(r);
    }
    process_file(
        p,
        FileInput {
            name: "f",
            watermark_ms: None,
        },
        data.as_bytes(),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn merge_of_file_partials_equals_whole(
        rows in prop::collection::vec(row_strategy(), 0..120),
        cuts in prop::collection::vec(0usize..120, 0..4),
        order in any::<u64>(),
    ) {
        let cat = Catalog::from_toml(DEF).unwrap();
        let p = &cat.pipelines()[0];
        let whole = process(p, &rows);
        let mut whole_state = WindowState::new();
        whole_state.apply(p, &whole);

        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(rows.len())).collect();
        cuts.push(0);
        cuts.push(rows.len());
        cuts.sort_unstable();
        let mut reports: Vec<FileReport> = cuts
            .windows(2)
            .map(|w| process(p, &rows[w[0]..w[1]]))
            .collect();
        // Apply in a pseudo-random order: merging must not depend on it.
        let mut seed = order;
        for i in (1..reports.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            reports.swap(i, (seed >> 33) as usize % (i + 1));
        }
        let mut state = WindowState::new();
        for r in &reports {
            state.apply(p, r);
        }
        let a: Vec<_> = whole_state.cells().collect();
        let b: Vec<_> = state.cells().collect();
        prop_assert_eq!(a.len(), b.len());
        for ((ka, ca), (kb, cb)) in a.into_iter().zip(b) {
            prop_assert_eq!(ka, kb);
            prop_assert_eq!(ca.values(), cb.values(), "{:?}", ka);
            prop_assert_eq!(ca, cb);
        }
        prop_assert_eq!(whole_state.max_event_ms(), state.max_event_ms());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600), dialect in 0usize..4) {
        check_bytes(&data, dialect);
    }

    #[test]
    fn csv_like_bytes_never_panic(
        data in prop::collection::vec(prop::sample::select(b"a1-:.,;\"'\\#\n\r \t\xff\xef\xbb\xbfTZ2026".to_vec()), 0..600),
        dialect in 0usize..4,
    ) {
        check_bytes(&data, dialect);
    }

    #[test]
    fn expressions_never_panic(src in "[a-z0-9 ()!<>=&|+*/%.,\\[\\]\"?:-]{0,40}") {
        let names = vec![("amount".to_string(), expr::Type::Float), ("c".to_string(), expr::Type::Str)];
        let scope = expr::ListScope { names: &names, kind: "column" };
        let _ = expr::Expr::compile(&src, &scope);
        let _ = metrics::MetricSpec::compile("m", &src, &scope);
    }
}

pub fn check_bytes(data: &[u8], dialect: usize) {
    let text = match dialect {
        0 => DEF.to_string(),
        1 => DEF.replace(
            "[pipeline.time]",
            "[pipeline.csv]\nheader = false\ndelimiter = \";\"\nquote = \"'\"\nescape = \"\\\\\"\ncomment = \"#\"\nnull = \"NA\"\non_bad_row = \"skip\"\n[pipeline.time]",
        ),
        2 => DEF.replace("[pipeline.time]", "[pipeline.csv]\non_bad_row = \"fail\"\n[pipeline.time]"),
        _ => DEF
            .replace("[pipeline.time]", "[pipeline.csv]\ncompression = \"gzip\"\n[pipeline.time]")
            .replace("format = \"epoch_s\"", "format = \"rfc3339\"\ntimezone = \"Europe/Paris\""),
    };
    let cat = Catalog::from_toml(&text).unwrap();
    let p = &cat.pipelines()[0];
    for wm in [None, Some(1_795_132_800_000)] {
        if let Ok(r) = process_file(
            p,
            FileInput {
                name: "x.gz",
                watermark_ms: wm,
            },
            data,
        ) {
            let mut st = WindowState::new();
            for ch in st.apply(p, &r) {
                let _ = p.window_alerts(&ch, None);
            }
            for a in p.aggregates() {
                write_windows(a, st.cells(), OutputFormat::Json, std::io::sink()).unwrap();
            }
        }
    }
}
