//! Fuzzes `process_file` (and merging, alerts and output) on arbitrary bytes; the first
//! byte picks one of several dialects.
#![no_main]

use csvflow_core::{process_file, write_windows, Catalog, FileInput, OutputFormat, WindowState};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const BASE: &str = r#"
[[pipeline]]
name = "p"
[pipeline.csv]
CSV
[pipeline.time]
column = "ts"
TIME
allowed_lateness = "10m"
[pipeline.columns]
ts = "timestamp"
k = "string"
amount = "float"
n = "int"
ok = "bool"
[[pipeline.aggregate]]
name = "t"
group_by = ["k"]
window = { tumbling = "10m" }
[pipeline.aggregate.metrics]
c = "count()"
s = "sum(amount)"
m = "max(n)"
d = "distinct(k)"
p = "p99(amount)"
f = "first(ok)"
[[pipeline.aggregate]]
name = "s"
group_by = ["k"]
window = { session_gap = "5m" }
[pipeline.aggregate.metrics]
c = "count_if(ok && amount * 2 > n)"
[[pipeline.alert]]
name = "w"
aggregate = "t"
when = "c >= 2"
[[pipeline.alert]]
name = "r"
row = "amount > 10.0 || lower(k) in [\"a\", \"b\"]"
"#;

fn catalogs() -> &'static Vec<Catalog> {
    static C: OnceLock<Vec<Catalog>> = OnceLock::new();
    C.get_or_init(|| {
        [
            ("on_bad_row = \"quarantine\"", "format = \"rfc3339\""),
            (
                "header = false\ndelimiter = \";\"\nquote = \"'\"\nescape = \"\\\\\"\ncomment = \"#\"\nnull = \"NA\"\ncolumns = [\"ts\",\"k\",\"amount\",\"n\",\"ok\"]",
                "format = \"epoch_ms\"\nlate = \"update\"",
            ),
            ("on_bad_row = \"fail\"\ndelimiter = \"\\t\"", "format = \"%d/%m/%Y %H:%M\"\ntimezone = \"Europe/Paris\""),
            ("compression = \"auto\"\non_bad_row = \"skip\"", "format = \"epoch_s\""),
        ]
        .iter()
        .filter_map(|(csv, time)| Catalog::from_toml(&BASE.replace("CSV", csv).replace("TIME", time)).ok())
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let cats = catalogs();
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Some(cat) = cats.get(usize::from(sel) % cats.len().max(1)) else {
        return;
    };
    let p = &cat.pipelines()[0];
    let wm = if sel & 0x80 != 0 { Some(1_795_132_800_000) } else { None };
    if let Ok(r) = process_file(p, FileInput { name: "fuzz.csv", watermark_ms: wm }, rest) {
        let mut st = WindowState::new();
        for ch in st.apply(p, &r) {
            let _ = p.window_alerts(&ch, None);
        }
        let _ = st.apply(p, &r);
        for a in p.aggregates() {
            let _ = write_windows(a, st.cells(), OutputFormat::Csv, std::io::sink());
        }
    }
});
