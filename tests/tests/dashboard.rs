//! The dashboard against LocalStack: windows go in through the real ingest, the real
//! router is served in-process, and its API is read over HTTP as a browser would.
//! No token -> 401 and no data; with the token -> the windows exactly as
//! `csvflow_core::write_windows` renders the stored ones; ETag + If-None-Match -> 304.

use anyhow::Result;
use csvflow_core::ports::ObjectRef;
use csvflow_core::{write_windows, Catalog, OutputFormat};
use csvflow_integration::dashboard_fixture::http_get;
use csvflow_integration::{require_localstack, TestStack};
use serde_json::json;

const PIPELINES: &str = r#"
[[pipeline]]
name = "cards"
match = "cards/**"

[pipeline.csv]
header = true

[pipeline.time]
column = "ts"
format = "rfc3339"
allowed_lateness = "1h"

[pipeline.columns]
ts = "timestamp"
card = "string"
amount = "float"

[[pipeline.aggregate]]
name = "per_card"
group_by = ["card"]
window = { tumbling = "1m" }

[pipeline.aggregate.metrics]
n = "count()"
total = "sum(amount)"
mx = "max(amount)"

[[pipeline.aggregate]]
name = "per_minute"
group_by = []
window = { tumbling = "1m" }

[pipeline.aggregate.metrics]
n = "count()"

[[pipeline.alert]]
name = "big"
row = "amount > 500"
"#;

// Card names are data: one of them looks like markup and must come back as text.
const CSV: &str = "ts,card,amount\n\
2026-11-20T10:00:01Z,c1,10\n\
2026-11-20T10:00:02Z,c1,20.5\n\
2026-11-20T10:00:03Z,c2,5\n\
2026-11-20T10:01:00Z,c1,1\n\
2026-11-20T10:01:10Z,<b>c3</b>,700\n\
2026-11-20T10:01:20Z,<b>c3</b>,1\n\
2026-11-20T10:01:30Z,c2,2\n";

const TOKEN: &str = "test-token-0123456789abcdef";

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[tokio::test]
async fn dashboard_api_needs_the_token_and_serves_windows_with_etags() -> Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("dashboard-api").await?;
    let ingest = stack.ingest(PIPELINES).await?;
    stack.upload("cards/day.csv", CSV).await?;
    let summary = ingest
        .ingest_object(&ObjectRef::new(&stack.landing_bucket, "cards/day.csv"))
        .await?;
    assert_eq!(summary.rows, 7, "{summary:?}");
    let uri = format!("s3://{}/config/pipelines.toml", stack.output_bucket);
    let server = stack.serve_dashboard(&uri, TOKEN).await?;
    let auth = bearer();

    // No token, a wrong token, another scheme: 401 and no data.
    let windows_path = "/api/windows?pipeline=cards&aggregate=per_card&key=c1";
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong-token-0123456789")],
        vec![("Authorization", "Basic dGVzdDp0ZXN0")],
    ] {
        for path in [
            windows_path,
            "/api/pipelines",
            "/api/top?pipeline=cards&aggregate=per_card",
            "/api/series?pipeline=cards&aggregate=per_minute",
            "/api/alerts?pipeline=cards",
        ] {
            let response = http_get(server.addr, path, &headers).await?;
            assert_eq!(response.status, 401, "{path} with {headers:?}");
            let body = response.text();
            assert!(
                !body.contains("c1") && !body.contains("window_start") && !body.contains("cards"),
                "{path}: {body}"
            );
            assert!(response.header("etag").is_none());
            assert!(response
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")));
        }
    }

    // With the token: one key's windows, exactly as write_windows renders the stored ones.
    let catalog = Catalog::from_toml(PIPELINES)?;
    let aggregate = catalog
        .pipeline("cards")
        .and_then(|p| p.aggregate("per_card"))
        .expect("aggregate");
    let stored = stack.windows("cards", "per_card").await?;
    let c1: Vec<_> = stored.iter().filter(|(k, _)| k.group == ["c1"]).collect();
    assert_eq!(c1.len(), 2);
    let mut expected = Vec::new();
    write_windows(
        aggregate,
        c1.iter().map(|(k, s)| (k, s)),
        OutputFormat::Json,
        &mut expected,
    )?;
    let response = http_get(server.addr, windows_path, &[("Authorization", &auth)]).await?;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.text(), String::from_utf8(expected)?);
    assert_eq!(response.json()?[0]["total"], json!(30.5));

    // ETag + If-None-Match -> 304 with no body; Cache-Control allows a few seconds.
    let etag = response.header("etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let cache = response.header("cache-control").unwrap_or_default();
    assert!(
        cache.contains("max-age=") && cache.contains("private"),
        "{cache}"
    );
    let again = http_get(
        server.addr,
        windows_path,
        &[("Authorization", &auth), ("If-None-Match", &etag)],
    )
    .await?;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let stale = http_get(
        server.addr,
        windows_path,
        &[("Authorization", &auth), ("If-None-Match", "\"stale\"")],
    )
    .await?;
    assert_eq!(stale.status, 200);
    // A key with markup comes back as a JSON string (the page sets it as text).
    let odd = http_get(
        server.addr,
        "/api/windows?pipeline=cards&aggregate=per_card&key=%3Cb%3Ec3%3C%2Fb%3E",
        &[("Authorization", &auth)],
    )
    .await?;
    assert_eq!(odd.json()?[0]["card"], json!("<b>c3</b>"));

    // The catalog.
    let pipelines = http_get(server.addr, "/api/pipelines", &[("Authorization", &auth)])
        .await?
        .json()?;
    let cards = &pipelines["pipelines"][0];
    assert_eq!(cards["name"], json!("cards"));
    assert_eq!(cards["aggregates"][0]["name"], json!("per_card"));
    assert_eq!(cards["aggregates"][0]["metrics"][1]["name"], json!("total"));
    assert_eq!(
        cards["aggregates"][0]["window"],
        json!({"kind": "tumbling", "size_ms": 60_000})
    );

    // Top keys of the latest window (10:01), highest total first.
    let top = http_get(
        server.addr,
        "/api/top?pipeline=cards&aggregate=per_card&metric=total&n=2",
        &[("Authorization", &auth)],
    )
    .await?
    .json()?;
    assert_eq!(top["window_start"], json!("2026-11-20T10:01:00Z"));
    assert_eq!(top["keys"], json!(3));
    let keys: Vec<_> = top["top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["card"].clone(), r["total"].clone()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (json!("<b>c3</b>"), json!(701.0)),
            (json!("c2"), json!(2.0))
        ]
    );

    // Series: all keys merged per window, oldest first.
    let series = http_get(
        server.addr,
        "/api/series?pipeline=cards&aggregate=per_card",
        &[("Authorization", &auth)],
    )
    .await?
    .json()?;
    let points: Vec<_> = series["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["window_start"].clone(), w["n"].clone(), w["mx"].clone()))
        .collect();
    assert_eq!(
        points,
        vec![
            (json!("2026-11-20T10:00:00Z"), json!(3), json!(20.5)),
            (json!("2026-11-20T10:01:00Z"), json!(4), json!(700.0)),
        ]
    );
    assert_eq!(series["keys"], json!([2, 3]));

    // Bad requests are 4xx with a reason, not 500.
    let unknown = http_get(
        server.addr,
        "/api/windows?pipeline=nope&aggregate=x&key=y",
        &[("Authorization", &auth)],
    )
    .await?;
    assert_eq!(unknown.status, 404);
    let missing_key = http_get(
        server.addr,
        "/api/windows?pipeline=cards&aggregate=per_card",
        &[("Authorization", &auth)],
    )
    .await?;
    assert_eq!(missing_key.status, 400, "{}", missing_key.text());
    Ok(())
}

#[tokio::test]
async fn dashboard_lists_recent_alerts_newest_first() -> Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("dashboard-alerts").await?;
    let uri = stack.put_pipelines(PIPELINES).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let alert = |id: &str, at: i64| {
        json!({
            "id": id, "kind": "row", "pipeline": "cards", "rule": "big",
            "row": {"card": "<img src=x onerror=alert(1)>", "amount": 700.0}, "line": 6,
            "files": ["s3://b/cards/day.csv"], "event_time": "2026-11-20T10:01:10Z", "detected_at": at,
        })
    };
    stack
        .put_alert(
            "cards",
            "a-old",
            now - 3 * 3_600_000,
            "resolved",
            &alert("a-old", now - 3 * 3_600_000),
        )
        .await?;
    stack
        .put_alert(
            "cards",
            "a-1",
            now - 60_000,
            "open",
            &alert("a-1", now - 60_000),
        )
        .await?;
    stack
        .put_alert(
            "cards",
            "a-2",
            now - 1_000,
            "open",
            &alert("a-2", now - 1_000),
        )
        .await?;
    let server = stack.serve_dashboard(&uri, TOKEN).await?;
    let response = http_get(
        server.addr,
        "/api/alerts?pipeline=cards&since=1h",
        &[("Authorization", &bearer())],
    )
    .await?;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json()?;
    let ids: Vec<_> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alert"]["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("a-2"), json!("a-1")]);
    assert_eq!(body["alerts"][0]["status"], json!("open"));
    assert_eq!(
        body["alerts"][0]["alert"]["row"]["card"],
        json!("<img src=x onerror=alert(1)>")
    );
    let unauthorized = http_get(server.addr, "/api/alerts?pipeline=cards&since=1h", &[]).await?;
    assert_eq!(unauthorized.status, 401);
    assert!(!unauthorized.text().contains("a-2"));
    let bad = http_get(
        server.addr,
        "/api/alerts?pipeline=cards&since=soon",
        &[("Authorization", &bearer())],
    )
    .await?;
    assert_eq!(bad.status, 400);
    Ok(())
}

#[tokio::test]
async fn dashboard_page_is_served_without_data_and_with_a_strict_policy() -> Result<()> {
    require_localstack().await?;
    let stack = TestStack::create("dashboard-page").await?;
    let uri = stack.put_pipelines(PIPELINES).await?;
    let server = stack.serve_dashboard(&uri, TOKEN).await?;
    let page = http_get(server.addr, "/", &[]).await?;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/html"));
    assert!(page.text().contains("/assets/uPlot.iife.min.js"));
    assert!(
        !page.text().contains("cards"),
        "the page itself carries no data"
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let etag = page.header("etag").expect("an ETag").to_owned();
    assert_eq!(
        http_get(server.addr, "/", &[("If-None-Match", &etag)])
            .await?
            .status,
        304
    );
    let uplot = http_get(server.addr, "/assets/uPlot.iife.min.js", &[]).await?;
    assert_eq!(uplot.status, 200);
    assert!(uplot.text().contains("uPlot"));
    let app = http_get(server.addr, "/assets/app.js", &[]).await?.text();
    assert!(
        !app.contains("innerHTML"),
        "the page never parses data as markup"
    );
    assert_eq!(
        http_get(server.addr, "/assets/nope.js", &[]).await?.status,
        404
    );
    assert_eq!(
        http_get(server.addr, "/api/nope", &[("Authorization", &bearer())])
            .await?
            .status,
        404
    );
    Ok(())
}
