//! Engine tests through the public API: dialects, types, bad rows, windows, late data,
//! alerts, output, and merge-equals-whole.

use std::io::Write;

use csvflow_core::*;

const EXAMPLE: &str = r#"
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

const HEADER: &str = "ts,txn_id,card_id,merchant,amount,currency,country,home_country,channel\n";
/// 2026-11-20T00:00:00Z
const T0: i64 = 1_795_132_800_000;
const MIN: i64 = 60_000;

fn catalog(text: &str) -> Catalog {
    Catalog::from_toml(text).unwrap()
}

fn run_file(p: &Pipeline, data: &[u8]) -> FileReport {
    process_file(
        p,
        FileInput {
            name: "s3://b/transactions/f.csv",
            watermark_ms: None,
        },
        data,
    )
    .unwrap()
}

fn txn(min: i64, card: &str, amount: &str, country: &str) -> String {
    let ts = csvflow_core::types::format_ts(T0 + min * MIN);
    format!("{ts},t{min}{card},{card},shop,{amount},EUR,{country},FR,web\n")
}

fn values(r: &FileReport, group: &str, start: i64) -> Vec<MetricValue> {
    let (_, c) = r
        .cells
        .iter()
        .find(|(k, _)| k.group == [group.to_string()] && k.start_ms == start)
        .unwrap_or_else(|| panic!("no cell {group} {start}: {:?}", r.cells.keys()));
    c.values()
}

use MetricValue::{Float as F, Int as I};

#[test]
fn example_end_to_end() {
    let cat = catalog(EXAMPLE);
    let p = cat.route("transactions/2026/11/20/x.csv").unwrap();
    let mut data = HEADER.to_string();
    data += &txn(1, "c1", "10.10", "FR");
    data += &txn(2, "c1", "20.20", "DE");
    data += &txn(3, "c1", "6000", "US");
    data += &txn(4, "c2", "1", "FR");
    data += &txn(12, "c1", "0.30", "FR");
    let r = run_file(p, data.as_bytes());
    assert_eq!(r.stats.rows, 5);
    assert_eq!(r.stats.bad, 0);
    assert_eq!(r.stats.cells, 3);
    assert_eq!(r.stats.bytes, data.len() as u64);
    assert_eq!(values(&r, "c1", T0), vec![I(3), F(6030.3), F(6000.0), I(2)]);
    assert_eq!(values(&r, "c2", T0), vec![I(1), F(1.0), F(1.0), I(0)]);
    assert_eq!(
        values(&r, "c1", T0 + 10 * MIN),
        vec![I(1), F(0.3), F(0.3), I(0)]
    );
    assert_eq!(r.max_event_ms, Some(T0 + 12 * MIN));
    assert_eq!(r.row_alerts.len(), 1);
    let a = &r.row_alerts[0];
    assert_eq!(
        (a.rule.as_str(), a.line, a.event_ms),
        ("very_high_amount", 4, T0 + 3 * MIN)
    );
    assert_eq!(a.row[4], ("amount".to_string(), "6000".to_string()));
    let key = r.cells.keys().next().unwrap();
    assert_eq!(
        (key.aggregate.as_str(), key.end_ms - key.start_ms),
        ("per_card_10m", 10 * MIN)
    );

    // Window alert: fires when crossing, once.
    let mut st = WindowState::new();
    let changes = st.apply(p, &r);
    assert!(changes.iter().all(|c| p.window_alerts(c, None).is_empty()));
    let mut d2 = HEADER.to_string();
    d2 += &txn(5, "c1", "1", "IT");
    let r2 = process_file(
        p,
        FileInput {
            name: "f2",
            watermark_ms: st.watermark_ms(p),
        },
        d2.as_bytes(),
    )
    .unwrap();
    let ch = st.apply(p, &r2);
    assert_eq!(ch.len(), 1);
    let alerts = p.window_alerts(&ch[0], None);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule, "cross_border_burst");
    assert_eq!(alerts[0].before[3], ("xborder".to_string(), I(2)));
    assert_eq!(alerts[0].after[3], ("xborder".to_string(), I(3)));
    let r3 = process_file(
        p,
        FileInput {
            name: "f3",
            watermark_ms: st.watermark_ms(p),
        },
        d2.as_bytes(),
    )
    .unwrap();
    let ch = st.apply(p, &r3);
    assert!(
        p.window_alerts(&ch[0], None).is_empty(),
        "already above: no second alert"
    );
    let json = serde_json::to_string(&alerts[0]).unwrap();
    assert!(json.contains("\"rule\":\"cross_border_burst\""), "{json}");
}

fn variant(csv: &str) -> Catalog {
    catalog(&EXAMPLE.replace(
        "header = true\ndelimiter = \",\"\non_bad_row = \"quarantine\"",
        csv,
    ))
}

#[test]
fn dialect_header_false_semicolon_quote_escape_comment_null() {
    let cat = variant(
        "header = false\ndelimiter = \";\"\nquote = \"'\"\nescape = \"\\\\\"\ncomment = \"#\"\nnull = \"NA\"\ncolumns = [\"ts\",\"txn_id\",\"card_id\",\"merchant\",\"amount\",\"currency\",\"country\",\"home_country\",\"channel\",\"extra\"]",
    );
    let p = &cat.pipelines()[0];
    let ts = csvflow_core::types::format_ts(T0);
    let data = format!(
        "# a comment line\n{ts};1;c1;'Joe\\'s; shop';NA;EUR;FR;FR;web;x\n{ts};2;c1;'multi\nline';2.5;EUR;FR;FR;web;y\n"
    );
    let r = run_file(p, data.as_bytes());
    assert_eq!(r.stats.bad, 0, "{:?}", r.bad_rows);
    // count() counts the null amount; sum/max skip it.
    assert_eq!(values(&r, "c1", T0), vec![I(2), F(2.5), F(2.5), I(0)]);
}

#[test]
fn dialect_bom_crlf_quoted_fields_tab() {
    let cat = variant("delimiter = \"\\t\"");
    let p = &cat.pipelines()[0];
    let ts = csvflow_core::types::format_ts(T0);
    let data = format!(
        "\u{feff}{}\r\n{ts}\t1\tc1\t\"a\t\"\"quoted\"\"\r\nshop\"\t1.5\tEUR\tFR\tFR\tweb\r\n",
        HEADER.trim_end().replace(',', "\t")
    );
    let r = run_file(p, data.as_bytes());
    assert_eq!(r.stats.bad, 0, "{:?}", r.bad_rows);
    assert_eq!(values(&r, "c1", T0), vec![I(1), F(1.5), F(1.5), I(0)]);
    assert_eq!(r.stats.bytes, data.len() as u64);
}

#[test]
fn header_order_extra_columns_and_missing_column() {
    let cat = catalog(EXAMPLE);
    let p = &cat.pipelines()[0];
    let ts = csvflow_core::types::format_ts(T0);
    let data = format!(
        "extra,channel,home_country,country,currency,amount,merchant,card_id,txn_id,ts\nz,web,FR,DE,EUR,5,shop,c9,t1,{ts}\n"
    );
    let r = run_file(p, data.as_bytes());
    assert_eq!(values(&r, "c9", T0), vec![I(1), F(5.0), F(5.0), I(1)]);
    let e = process_file(
        p,
        FileInput {
            name: "s3://b/k.csv",
            watermark_ms: None,
        },
        "ts,txn_id,card_id\n".as_bytes(),
    )
    .unwrap_err();
    assert!(matches!(e, FileError::MissingColumn { ref column, .. } if column == "merchant"));
    assert_eq!(
        e.to_string(),
        "s3://b/k.csv: header lacks declared column \"merchant\""
    );
    // An empty file is an empty report.
    let r = run_file(p, b"");
    assert_eq!(r.stats, FileStats::default());
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn compression_gzip_zstd_auto_and_explicit() {
    let mut data = HEADER.to_string();
    data += &txn(1, "c1", "2", "FR");
    let gzd = gz(data.as_bytes());
    let zsd = zstd::encode_all(data.as_bytes(), 3).unwrap();
    for (csv, bytes, name) in [
        ("compression = \"auto\"", &gzd, "x.csv.gz"),
        ("compression = \"auto\"", &gzd, "x.csv"),
        ("compression = \"gzip\"", &gzd, "x"),
        ("compression = \"auto\"", &zsd, "x.csv.zst"),
        ("compression = \"zstd\"", &zsd, "x"),
    ] {
        let cat = variant(csv);
        let p = &cat.pipelines()[0];
        let r = process_file(
            p,
            FileInput {
                name,
                watermark_ms: None,
            },
            &bytes[..],
        )
        .unwrap();
        assert_eq!(r.stats.rows, 1, "{csv} {name}");
        assert_eq!(r.stats.bytes, data.len() as u64);
    }
    // Corrupt archive: a Decompress error naming the file.
    let cat = catalog(EXAMPLE);
    let p = &cat.pipelines()[0];
    let mut bad = gzd.clone();
    bad.truncate(gzd.len() - 12);
    let e = process_file(
        p,
        FileInput {
            name: "f.gz",
            watermark_ms: None,
        },
        &bad[..],
    )
    .unwrap_err();
    assert!(
        matches!(e, FileError::Decompress { codec: "gzip", .. }),
        "{e}"
    );
    assert!(
        e.to_string().starts_with("f.gz: gzip decompression failed"),
        "{e}"
    );
    assert!(!e.is_retryable());
}

#[test]
fn bad_rows_quarantine_skip_fail() {
    let ts = csvflow_core::types::format_ts(T0);
    let mut data = HEADER.as_bytes().to_vec();
    data.extend(txn(1, "c1", "1", "FR").as_bytes()); // line 2: good
    data.extend(format!("{ts},t,c1,shop,1,EUR,FR\n").as_bytes()); // 3: short
    data.extend(format!("{ts},t,c1,shop,abc,EUR,FR,FR,web\n").as_bytes()); // 4: bad float
    data.extend(b"yesterday,t,c1,shop,1,EUR,FR,FR,web\n"); // 5: bad ts
    data.extend(b",t,c1,shop,1,EUR,FR,FR,web\n"); // 6: missing ts
    data.extend(format!("{ts},t,c1,sh").as_bytes()); // 7: bad UTF-8
    data.extend(b"\xffop,1,EUR,FR,FR,web\n");
    data.extend(format!("{ts},t,c1,shop,1,EUR,FR,FR,web,extra\n").as_bytes()); // 8: long
    data.extend(txn(2, "c1", "2", "FR").as_bytes()); // 9: good
    let cat = catalog(EXAMPLE);
    let p = &cat.pipelines()[0];
    let r = run_file(p, &data);
    assert_eq!(r.stats.rows, 2);
    assert_eq!(r.stats.bad, 6);
    let lines: Vec<u64> = r.bad_rows.iter().map(|b| b.line).collect();
    assert_eq!(lines, vec![3, 4, 5, 6, 7, 8]);
    let reasons: Vec<&str> = r.bad_rows.iter().map(|b| b.reason.as_str()).collect();
    assert_eq!(reasons[0], "expected 9 fields, found 7");
    assert_eq!(reasons[1], "column \"amount\": bad float: \"abc\"");
    assert_eq!(
        reasons[2],
        "column \"ts\": bad rfc3339 timestamp: \"yesterday\""
    );
    assert_eq!(reasons[3], "missing timestamp in column \"ts\"");
    assert_eq!(
        reasons[4],
        "column \"merchant\": invalid UTF-8: \"sh\u{fffd}op\""
    );
    let b = &r.bad_rows[1];
    assert_eq!(b.file, "s3://b/transactions/f.csv");
    let off = b.byte_offset as usize;
    assert!(data[off..].starts_with(format!("{ts},t,c1,shop,abc").as_bytes()));
    assert_eq!(b.record, format!("{ts},t,c1,shop,abc,EUR,FR,FR,web"));
    assert!(r.bad_rows[4].record.contains("sh\u{fffd}op"));
    let json = serde_json::to_string(b).unwrap();
    assert!(
        json.contains("\"line\":4") && json.contains("\"byte_offset\""),
        "{json}"
    );
    assert_eq!(values(&r, "c1", T0), vec![I(2), F(3.0), F(2.0), I(0)]);

    let skip = variant("on_bad_row = \"skip\"");
    let r = run_file(&skip.pipelines()[0], &data);
    assert_eq!((r.stats.rows, r.stats.bad, r.bad_rows.len()), (2, 6, 0));

    let fail = variant("on_bad_row = \"fail\"");
    let e = process_file(
        &fail.pipelines()[0],
        FileInput {
            name: "f.csv",
            watermark_ms: None,
        },
        &data[..],
    )
    .unwrap_err();
    assert!(matches!(e, FileError::BadRowFail { line: 3, .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "f.csv: line 3: bad row (expected 9 fields, found 7) and on_bad_row = \"fail\""
    );
}

fn typed_pipeline(columns: &str, time: &str, metrics: &str, window: &str) -> Catalog {
    catalog(&format!(
        r#"
[[pipeline]]
name = "p"
[pipeline.time]
column = "ts"
{time}
[pipeline.columns]
{columns}
[[pipeline.aggregate]]
name = "a"
group_by = ["k"]
window = {window}
[pipeline.aggregate.metrics]
{metrics}
"#
    ))
}

#[test]
fn columns_nobody_reads_are_validated_like_the_others() {
    // Only ts and k are read: the unread typed and string columns still make bad rows,
    // with the same reasons (invalid UTF-8 first).
    let cat = typed_pipeline(
        "ts = \"timestamp\"\nk = \"string\"\nx = \"float\"\nn = \"int\"\nb = \"bool\"\ns = \"string\"",
        "format = \"epoch_s\"",
        "c = \"count()\"",
        "{ tumbling = \"1h\" }",
    );
    let p = &cat.pipelines()[0];
    let mut data = b"ts,k,x,n,b,s\n".to_vec();
    data.extend(b"1795132800,a,1.5,7,yes,caf\xc3\xa9\n"); // good, not ASCII
    data.extend(b"1795132800,a,1e400,7,yes,s\n"); // bad float (infinite)
    data.extend(b"1795132800,a,1.5,7.5,yes,s\n"); // bad int
    data.extend(b"1795132800,a,1.5,7,maybe,s\n"); // bad bool
    data.extend(b"1795132800,a,\xff,7,yes,s\n"); // invalid UTF-8 in a float
    data.extend(b"1795132800,a,1.5,7,yes,\xe9t\xe9\n"); // invalid UTF-8 in a string
    data.extend(b"1795132800,a,,,,\n"); // nulls: good
    let r = run_file(p, &data);
    let reasons: Vec<&str> = r.bad_rows.iter().map(|b| b.reason.as_str()).collect();
    assert_eq!(
        reasons,
        vec![
            "column \"x\": bad float: \"1e400\"",
            "column \"n\": bad int: \"7.5\"",
            "column \"b\": bad bool: \"maybe\"",
            "column \"x\": invalid UTF-8: \"\u{fffd}\"",
            "column \"s\": invalid UTF-8: \"\u{fffd}t\u{fffd}\"",
        ]
    );
    assert_eq!(r.stats.rows, 2);
}

#[test]
fn types_int_bool_and_time_formats() {
    let cat = typed_pipeline(
        "ts = \"timestamp\"\nk = \"string\"\nn = \"int\"\nok = \"bool\"",
        "format = \"epoch_s\"",
        "c = \"count()\"\ns = \"sum(n)\"\nt = \"count_if(ok)\"\nlo = \"min(ts)\"",
        "{ tumbling = \"1h\" }",
    );
    let p = &cat.pipelines()[0];
    let data = "ts,k,n,ok\n1795132800,a,5,true\n1795132801.5,a,-2,no\n1795132802,a,1.5,yes\n1795132803,a,1,maybe\n";
    let r = run_file(p, data.as_bytes());
    assert_eq!(r.stats.bad, 2);
    assert!(r.bad_rows[0].reason.contains("bad int"), "{:?}", r.bad_rows);
    assert!(r.bad_rows[1].reason.contains("bad bool"));
    assert_eq!(
        values(&r, "a", T0),
        vec![
            I(2),
            I(3),
            I(1),
            MetricValue::Str("2026-11-20T00:00:00Z".into())
        ]
    );

    let cat = typed_pipeline(
        "ts = \"timestamp\"\nk = \"string\"",
        "format = \"epoch_ms\"",
        "c = \"count()\"",
        "{ tumbling = \"1h\" }",
    );
    let r = run_file(
        &cat.pipelines()[0],
        b"ts,k\n1795132800000,a\n1795136400000,a\n",
    );
    assert_eq!(r.cells.len(), 2);

    let cat = typed_pipeline(
        "ts = \"timestamp\"\nk = \"string\"",
        "format = \"%d/%m/%Y %H:%M\"\ntimezone = \"Europe/Paris\"",
        "c = \"count()\"",
        "{ tumbling = \"1h\" }",
    );
    let r = run_file(&cat.pipelines()[0], b"ts,k\n20/11/2026 01:30,a\n");
    assert_eq!(values(&r, "a", T0), vec![I(1)]);
}

#[test]
fn hopping_and_session_windows() {
    let cat = typed_pipeline(
        "ts = \"timestamp\"\nk = \"string\"",
        "format = \"epoch_s\"",
        "c = \"count()\"",
        "{ hopping = \"10m\", every = \"5m\" }",
    );
    let r = run_file(&cat.pipelines()[0], b"ts,k\n1795133100,a\n"); // T0 + 5m
    let starts: Vec<i64> = r.cells.keys().map(|k| k.start_ms - T0).collect();
    assert_eq!(starts, vec![0, 5 * MIN]);

    let cat = typed_pipeline(
        "ts = \"timestamp\"\nk = \"string\"",
        "format = \"epoch_s\"",
        "c = \"count()\"\nl = \"last(ts)\"",
        "{ session_gap = \"30m\" }",
    );
    let p = &cat.pipelines()[0];
    let s = |m: i64| (T0 / 1000 + m * 60).to_string();
    // a: 0, 20, 50 (one session: gaps of 20 and 30 = touching), 100 (new); b: 10.
    let data = format!(
        "ts,k\n{},a\n{},a\n{},b\n{},a\n{},a\n",
        s(50),
        s(0),
        s(10),
        s(100),
        s(20)
    );
    let r = run_file(p, data.as_bytes());
    let cells: Vec<(String, i64, i64, MetricValue)> = r
        .cells
        .iter()
        .map(|(k, c)| {
            (
                k.group[0].clone(),
                (k.start_ms - T0) / MIN,
                (k.end_ms - T0) / MIN,
                c.values()[0].clone(),
            )
        })
        .collect();
    assert_eq!(
        cells,
        vec![
            ("a".into(), 0, 80, I(3)),
            ("a".into(), 100, 130, I(1)),
            ("b".into(), 10, 40, I(1)),
        ]
    );
    // Across files: a session at 70 bridges [0,80) and [100,130).
    let mut st = WindowState::new();
    st.apply(p, &r);
    let r2 = run_file(p, format!("ts,k\n{},a\n", s(70)).as_bytes());
    let ch = st.apply(p, &r2);
    assert_eq!(ch.len(), 1);
    assert_eq!((ch[0].key.start_ms - T0) / MIN, 0);
    assert_eq!((ch[0].key.end_ms - T0) / MIN, 130);
    assert_eq!(ch[0].after.values()[0], I(5));
    assert_eq!(
        ch[0].removed.len(),
        2,
        "both old keys differ from the merged key"
    );
    assert_eq!(ch[0].before.as_ref().unwrap().values()[0], I(3));
    assert_eq!(st.cells().filter(|(k, _)| k.group == ["a"]).count(), 1);
}

#[test]
fn late_rows_drop_and_update() {
    let mut data = HEADER.to_string();
    data += &txn(0, "c1", "1", "FR"); // late vs watermark T0 + 5m
    data += &txn(10, "c1", "2", "FR");
    let cat = catalog(EXAMPLE);
    let p = &cat.pipelines()[0];
    let input = FileInput {
        name: "f",
        watermark_ms: Some(T0 + 5 * MIN),
    };
    let r = process_file(p, input, data.as_bytes()).unwrap();
    assert_eq!((r.stats.rows, r.stats.late), (1, 1));
    assert_eq!(r.cells.len(), 1);
    assert!(!r.cells.values().next().unwrap().reopened());

    let upd = catalog(&EXAMPLE.replace(
        "allowed_lateness = \"1h\"",
        "allowed_lateness = \"1h\"\nlate = \"update\"",
    ));
    let p = &upd.pipelines()[0];
    let r = process_file(p, input, data.as_bytes()).unwrap();
    assert_eq!((r.stats.rows, r.stats.late), (2, 1));
    let flags: Vec<bool> = r.cells.values().map(CellState::reopened).collect();
    assert_eq!(flags, vec![true, false]);

    // The watermark from state: max event − lateness.
    let mut st = WindowState::new();
    st.apply(p, &r);
    assert_eq!(st.watermark_ms(p), Some(T0 + 10 * MIN - 60 * MIN));
}

#[test]
fn write_windows_csv_and_json() {
    let cat = catalog(EXAMPLE);
    let p = &cat.pipelines()[0];
    let mut data = HEADER.to_string();
    data += &txn(12, "c2", "0.1", "FR");
    data += &txn(1, "c1", "0.1", "FR");
    data += &txn(2, "c1", "0.2", "DE");
    let r = run_file(p, data.as_bytes());
    let agg = p.aggregate("per_card_10m").unwrap();
    let mut out = Vec::new();
    write_windows(agg, &r.cells, OutputFormat::Csv, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "card_id,window_start,window_end,n,total,mx,xborder\n\
         c1,2026-11-20T00:00:00Z,2026-11-20T00:10:00Z,2,0.3,0.2,1\n\
         c2,2026-11-20T00:10:00Z,2026-11-20T00:20:00Z,1,0.1,0.1,0\n"
    );
    let mut out = Vec::new();
    write_windows(agg, &r.cells, OutputFormat::Json, &mut out).unwrap();
    let s = String::from_utf8(out).unwrap();
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v[0]["card_id"], "c1");
    assert_eq!(v[0]["total"], 0.3);
    assert_eq!(v[1]["n"], 1);
    assert!(
        s.starts_with("[\n{\"card_id\":\"c1\",\"window_start\""),
        "{s}"
    );
    let mut out = Vec::new();
    write_windows(agg, std::iter::empty(), OutputFormat::Json, &mut out).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out).unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn run_over_files() {
    let dir = std::env::temp_dir().join(format!("csvflow-core-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("p.toml");
    std::fs::write(&cfg, EXAMPLE).unwrap();
    let f1 = dir.join("a.csv");
    let f2 = dir.join("b.csv.gz");
    let mut d1 = HEADER.to_string();
    d1 += &txn(1, "c1", "1.5", "FR");
    d1 += &txn(90, "c1", "1", "FR");
    d1 += "garbage\n";
    std::fs::write(&f1, &d1).unwrap();
    let mut d2 = HEADER.to_string();
    d2 += &txn(2, "c1", "1", "FR"); // late: watermark = 90m - 1h = 30m
    d2 += &txn(91, "c1", "2", "FR");
    std::fs::write(&f2, gz(d2.as_bytes())).unwrap();
    let q = dir.join("bad.jsonl");
    let _ = std::fs::remove_file(&q);
    let opts = RunOptions {
        config_path: cfg.clone(),
        pipeline: "card-transactions".into(),
        aggregate: None,
        format: OutputFormat::Csv,
        quarantine: Some(q.clone()),
        inputs: vec![f1.display().to_string(), f2.display().to_string()],
        threads: 0,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    run(&opts, &mut out, &mut err).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out,
        "card_id,window_start,window_end,n,total,mx,xborder\n\
         c1,2026-11-20T00:00:00Z,2026-11-20T00:10:00Z,1,1.5,1.5,0\n\
         c1,2026-11-20T01:30:00Z,2026-11-20T01:40:00Z,2,3,2,0\n"
    );
    let err = String::from_utf8(err).unwrap();
    assert!(
        err.starts_with("rows=3 bad=1 late=1 cells=2 bytes="),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    let bad = std::fs::read_to_string(&q).unwrap();
    assert!(
        bad.contains("\"reason\":\"expected 9 fields, found 1\""),
        "{bad}"
    );

    let e = run(
        &RunOptions {
            pipeline: "nope".into(),
            ..opts.clone()
        },
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown pipeline \"nope\" (defined: card-transactions)"
    );
    let e = run(
        &RunOptions {
            inputs: vec![dir.join("missing.csv").display().to_string()],
            ..opts.clone()
        },
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("cannot open input"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Every row lands in its own group's window, whatever the batch it is read in: the
/// engine looks up a batch's keys before typing its rows (new keys, null keys, keys too
/// long to pack, non-ASCII keys, quoted keys read by the full CSV rules, bad rows and
/// rows out of time order all mixed in), and the counts and sums agree with a plain
/// tally per (key, window).
#[test]
fn rows_land_in_their_groups_across_batches() {
    let cat = catalog(
        r#"
[[pipeline]]
name = "p"
[pipeline.csv]
null = "NA"
[pipeline.time]
column = "ts"
format = "epoch_s"
[pipeline.columns]
ts = "timestamp"
k = "string"
n = "int"
[[pipeline.aggregate]]
name = "a"
group_by = ["k"]
window = { tumbling = "10m" }
[pipeline.aggregate.metrics]
c = "count()"
s = "sum(n)"
"#,
    );
    let p = &cat.pipelines()[0];
    // (field as written, the group it belongs to)
    let keys = [
        ("a", "a"),
        ("b", "b"),
        ("NA", ""),
        ("", ""),
        (
            "a-key-longer-than-fifteen-bytes",
            "a-key-longer-than-fifteen-bytes",
        ),
        ("é", "é"),
        ("\"q,1\"", "q,1"),
    ];
    let mut state = 7u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut data = b"ts,k,n\n".to_vec();
    let mut want: std::collections::BTreeMap<(String, i64), (i64, i64)> = Default::default();
    for i in 0..700 {
        if i % 97 == 0 {
            data.extend(b"1795132800,a\n"); // bad: too few fields
            continue;
        }
        // New keys keep appearing: `k<i/50>` is new every 50 rows.
        let fresh = format!("k{}", i / 50);
        let (field, group) = match next() % 9 {
            7 | 8 => (fresh.as_str(), fresh.as_str()),
            x => keys[x as usize % keys.len()],
        };
        let secs = 1_795_132_800 + (next() % 2400) as i64;
        let n = (next() % 100) as i64;
        data.extend(format!("{secs},{field},{n}\n").as_bytes());
        let start = (secs * 1000).div_euclid(600_000) * 600_000;
        let cell = want.entry((group.to_string(), start)).or_default();
        cell.0 += 1;
        cell.1 += n;
    }
    let r = run_file(p, &data);
    assert_eq!(r.stats.bad, 8);
    let got: std::collections::BTreeMap<(String, i64), (i64, i64)> = (r.cells.iter())
        .map(|(k, c)| match c.values().as_slice() {
            [I(count), I(sum)] => ((k.group[0].clone(), k.start_ms), (*count, *sum)),
            v => panic!("{k:?}: {v:?}"),
        })
        .collect();
    assert_eq!(got, want);
}
