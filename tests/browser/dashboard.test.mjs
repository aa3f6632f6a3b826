// The dashboard in headless Chromium (Debian's /usr/bin/chromium via playwright-core):
// the page loads with the token from the URL fragment, charts render with data (lines on
// the canvas, the chart's own legend reads the stored values), a new CSV dropped into the
// landing bucket shows up without a reload (figures, chart, its alert with a readable
// status, CSV markup shown as text), and a screenshot is saved. Run through
// tests/browser/run, which starts LocalStack's stack, `csvflow local` and `csvflow
// dashboard` and passes DASHBOARD_URL, LANDING_BUCKET, SCREENSHOT, CHROMIUM_PROFILE.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import assert from "node:assert/strict";

const url = process.env.DASHBOARD_URL;
const bucket = process.env.LANDING_BUCKET;
const screenshot = process.env.SCREENSHOT;
const aws = process.env.AWS_CLI || "aws";
assert.ok(url && url.includes("#token="), "DASHBOARD_URL with #token= is required");
assert.ok(bucket, "LANDING_BUCKET is required");
const base = url.split("#")[0].replace(/\/$/, "");
const token = new URLSearchParams(url.split("#")[1]).get("token");
const PIPELINE = "card-transactions";

const log = (...a) => console.error("browser test:", ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function api(path) {
  const res = await fetch(base + path, { headers: { Authorization: "Bearer " + token } });
  assert.equal(res.status, 200, path + " -> " + res.status);
  return res.json();
}

function upload(key, body) {
  const dir = mkdtempSync(join(tmpdir(), "csvflow-upload-"));
  const file = join(dir, "data.csv");
  writeFileSync(file, body);
  execFileSync(aws, ["--endpoint-url", process.env.AWS_ENDPOINT_URL, "s3", "cp", "--only-show-errors", file, `s3://${bucket}/${key}`], { stdio: "inherit" });
  rmSync(dir, { recursive: true, force: true });
  log("uploaded", `s3://${bucket}/${key}`);
}

async function latestMinute() {
  const s = await api(`/api/series?pipeline=${PIPELINE}&aggregate=per_minute`);
  return s.windows.length ? s.windows[s.windows.length - 1] : null;
}

// Row 0 is over 5000 (the `very_high_amount` row alert) and its merchant is markup, which
// the page must show as text.
const MARKUP = "<img src=x onerror=window.__xss=1>";
const amountOf = (i) => (i === 0 ? 6200 : 20 + i * 7.25);
function csv(startMs, rows) {
  const lines = ["ts,txn_id,card_id,merchant,amount,currency,country,home_country,channel"];
  for (let i = 0; i < rows; i++) {
    const ts = new Date(startMs + 5000 + i * 3000).toISOString().replace(".000Z", "Z");
    lines.push([ts, `browser-${startMs}-${i}`, `card-${String(i % 3).padStart(3, "0")}`, i === 0 ? MARKUP : "m01",
      amountOf(i).toFixed(2), "EUR", i % 2 ? "US" : "FR", "FR", "web"].join(","));
  }
  return lines.join("\n") + "\n";
}

// Pixels of the chart's line colour on a chart's canvas (uPlot draws series on it).
async function linePixels(page, selector, rgb) {
  return page.evaluate(([selector, rgb]) => {
    const canvas = document.querySelector(selector);
    if (!canvas || !canvas.width || !canvas.height) return -1;
    const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (px[i + 3] > 200 && Math.abs(px[i] - rgb[0]) < 24 && Math.abs(px[i + 1] - rgb[1]) < 24 &&
        Math.abs(px[i + 2] - rgb[2]) < 24) n++;
    }
    return n;
  }, [selector, rgb]);
}

// Hovers the right edge of a chart (its latest window) and reads the chart's own legend:
// what uPlot has in its data, not what the stat line says.
async function chartLatest(page, chart) {
  const over = page.locator(`${chart} .u-over`);
  const box = await over.boundingBox();
  await page.mouse.move(box.x + box.width - 1, box.y + box.height / 2);
  const value = await page.locator(`${chart} .u-legend .u-series`).nth(1).locator(".u-value").textContent();
  await page.mouse.move(0, 0);
  return value;
}
const num = (text) => Number(String(text).replace(/,/g, ""));

// 0. Data to show: seed the stack with the sample file when it has no windows yet.
if (!(await latestMinute())) {
  upload(`transactions/browser-seed-${Date.now()}.csv`, (await import("node:fs")).readFileSync(new URL("../../examples/data/transactions-2026-11-20.csv", import.meta.url)));
  for (let i = 0; i < 120 && !(await latestMinute()); i++) await sleep(500);
  assert.ok(await latestMinute(), "the seed file was not ingested (is `csvflow local` running?)");
}

const ownProfile = !process.env.CHROMIUM_PROFILE;
const profile = process.env.CHROMIUM_PROFILE || mkdtempSync(join(tmpdir(), "csvflow-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  locale: "en-US",
  timezoneId: "UTC",
  viewport: { width: 1360, height: 900 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const failures = [];
try {
  // 1. Without a token: no data, a clear message.
  const anonymous = context.pages()[0] || (await context.newPage());
  await anonymous.goto(base + "/");
  await anonymous.locator("#error").filter({ hasText: "Not authorized" }).waitFor({ timeout: 10000 });
  await anonymous.close();
  log("without a token: 'Not authorized' shown");

  const page = await context.newPage();
  page.on("pageerror", (e) => failures.push("page error: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") failures.push("console error: " + m.text()); });
  const requests = [];
  page.on("request", (r) => requests.push(r));

  // 2. With the token (fragment): charts render with data.
  await page.goto(url + "&poll=1");
  const card = page.locator('[data-aggregate="per_minute"]');
  await card.locator("canvas").first().waitFor({ timeout: 20000 });
  await page.waitForFunction(() => {
    const dd = document.querySelector('[data-aggregate="per_minute"] dd[data-role="latest-window"]');
    return dd && dd.textContent !== "–";
  }, null, { timeout: 20000 });
  const box = await card.locator("canvas").first().boundingBox();
  assert.ok(box && box.width > 100 && box.height > 50, "chart canvas has a size: " + JSON.stringify(box));
  const labels = await card.locator(".u-legend .u-series .u-label").allTextContents();
  assert.ok(labels.includes("n") && labels.includes("total"), "legend labels: " + labels);
  // The charts are drawn with the stored windows: line pixels on the canvas, and the chart's
  // latest point is the latest window the API has.
  const nChart = '[data-aggregate="per_minute"] [data-chart="n"]';
  const blue = [0x2f, 0x6f, 0xde]; // the first series colour in app.js
  const drawn = await linePixels(page, `${nChart} canvas`, blue);
  assert.ok(drawn > 50, "the n chart has a drawn line: " + drawn + " pixels of its colour");
  const stored = await latestMinute();
  assert.equal(num(await chartLatest(page, nChart)), stored.n, "the n chart's latest point is the stored window's n");
  assert.ok(!page.url().includes("token="), "the token is removed from the address bar");
  const auth = requests.filter((r) => r.url().includes("/api/")).map((r) => r.headers()["authorization"]);
  assert.ok(auth.length > 0 && auth.every((h) => h === "Bearer " + token), "API requests carry the bearer token");
  await page.locator('[data-aggregate="per_card_10m"] .bars .key').first().waitFor({ timeout: 20000 });
  const topRows = await page.locator('[data-aggregate="per_card_10m"] .bars .key').count();
  assert.ok(topRows > 0, "top keys are listed");
  const before = {
    latest: await card.locator('dd[data-role="latest-window"]').textContent(),
    n: await card.locator('dd[data-metric="n"]').textContent(),
  };
  log("rendered: per_minute latest window", before.latest, "n =", before.n, "; top keys:", topRows);

  // 3. A new file lands; the page updates in place (no reload).
  await page.evaluate(() => { window.__noReload = true; });
  const last = await latestMinute();
  const next = Date.parse(last.window_start) + 60000;
  const rows = 7;
  upload(`transactions/browser-${Date.now()}.csv`, csv(next, rows));
  await page.waitForFunction(([rows, latest]) => {
    const c = document.querySelector('[data-aggregate="per_minute"]');
    return c && c.querySelector('dd[data-role="latest-window"]').textContent !== latest &&
      c.querySelector('dd[data-metric="n"]').textContent === String(rows);
  }, [rows, before.latest], { timeout: 60000, polling: 250 });
  const after = {
    latest: await card.locator('dd[data-role="latest-window"]').textContent(),
    n: await card.locator('dd[data-metric="n"]').textContent(),
  };
  assert.notEqual(after.latest, before.latest, "the latest window moved");
  assert.equal(await page.evaluate(() => window.__noReload), true, "the page was not reloaded");
  // Unchanged data comes back as 304s (counted in the status line).
  await page.waitForFunction(() => /[1-9]\d* not modified/.test(document.getElementById("status").textContent),
    null, { timeout: 20000 });
  const status = await page.locator("#status").textContent();
  log("updated without reload: latest window", after.latest, "n =", after.n, "; status:", status);
  // The new window is the test's file: the figures and the chart's latest point.
  const total = Array.from({ length: rows }, (_, i) => amountOf(i)).reduce((a, b) => a + b, 0);
  assert.equal(num(after.n), rows, "n of the new window");
  assert.equal(num(await card.locator('dd[data-metric="total"]').textContent()), total, "total of the new window");
  assert.equal(num(await chartLatest(page, nChart)), rows, "the n chart's latest point is the new window");
  assert.equal(num(await chartLatest(page, '[data-aggregate="per_minute"] [data-chart="total"]')), total,
    "the total chart's latest point is the new window");

  // Its row alert: in the table, status in words, the CSV's markup shown as text.
  const txn = `browser-${next}-0`;
  const alertRow = page.locator("#alerts tbody tr").filter({ hasText: `txn_id=${txn}` });
  await alertRow.waitFor({ timeout: 30000 });
  await page.waitForFunction((txn) => [...document.querySelectorAll("#alerts tbody tr")]
    .some((tr) => tr.textContent.includes(txn) && tr.querySelector('[data-role="status"]').textContent === "published"),
  txn, { timeout: 30000, polling: 250 });
  const cells = await alertRow.locator("td").allTextContents();
  assert.equal(cells[1], "very_high_amount", "alert rule: " + cells);
  assert.equal(cells[2], "row", "alert kind: " + cells);
  assert.ok(cells[5].includes(`merchant=${MARKUP}`), "the merchant's markup is shown as text: " + cells[5]);
  assert.equal(await page.locator("#alerts img").count(), 0, "no element made from CSV markup");
  assert.equal(await page.evaluate(() => window.__xss), undefined, "no script ran from CSV markup");
  log("alert:", cells.join(" | "));
  await sleep(1500); // let the charts and alerts settle for the picture
  if (screenshot) {
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    log("screenshot:", screenshot);
  }
  assert.deepEqual(failures, [], "no errors in the page");
} catch (err) {
  const page = context.pages().at(-1);
  if (page) {
    console.error("browser test: page status:", await page.locator("#status").textContent().catch(() => "?"),
      "; error box:", await page.locator("#error").textContent().catch(() => "?"));
    if (screenshot) await page.screenshot({ path: screenshot.replace(/\.png$/, "") + ".failed.png", fullPage: true }).catch(() => {});
  }
  console.error("browser test: page errors:", failures);
  throw err;
} finally {
  await context.close();
  if (ownProfile) rmSync(profile, { recursive: true, force: true });
}
log("ok");
