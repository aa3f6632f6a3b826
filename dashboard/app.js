// csvflow dashboard: polls the JSON API (with If-None-Match, so unchanged data costs a
// 304) and redraws charts, top keys and alerts in place. Every value from the data is
// set with textContent / text nodes, never parsed as markup. The bearer token comes from
// the URL fragment (#token=...), which browsers never send to servers.
"use strict";
(() => {
  const fragment = new URLSearchParams(location.hash.slice(1));
  let token = fragment.get("token");
  if (token) sessionStorage.setItem("csvflow-dashboard-token", token);
  else token = sessionStorage.getItem("csvflow-dashboard-token");
  const pollMs = Math.max(1, Number(fragment.get("poll")) || 5) * 1000;
  // Keep the token out of the address bar, bookmarks and screenshots.
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  // A URL with a new token pasted into this tab: take it and start over.
  window.addEventListener("hashchange", () => {
    const t = new URLSearchParams(location.hash.slice(1)).get("token");
    if (t) {
      sessionStorage.setItem("csvflow-dashboard-token", t);
      location.replace(location.pathname + location.search);
    }
  });

  const $ = (id) => document.getElementById(id);
  const colors = ["#2f6fde", "#e07b24", "#2a9d62", "#9b4dca", "#c8372d", "#1f9aa8"];
  const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
  const cache = new Map(); // url -> { etag, data }
  const stats = { requests: 0, notModified: 0 };
  let views = []; // one per aggregate of the selected pipeline
  let pipelines = [];
  let timer = null;

  /** Builds an element; string/number children become text nodes (never markup). */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) {
      if (c == null) continue;
      node.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  class AuthError extends Error {}

  async function getJSON(path) {
    const cached = cache.get(path);
    const headers = { Authorization: "Bearer " + (token || "") };
    if (cached) headers["If-None-Match"] = cached.etag;
    stats.requests++;
    const res = await fetch(path, { headers, cache: "no-store" });
    if (res.status === 304 && cached) {
      stats.notModified++;
      return { data: cached.data, changed: false };
    }
    if (res.status === 401) throw new AuthError("missing or invalid token");
    if (!res.ok) {
      let message = res.status + " " + res.statusText;
      try { message = (await res.json()).error || message; } catch (_) { /* not JSON */ }
      throw new Error(path.split("?")[0] + ": " + message);
    }
    const data = await res.json();
    const etag = res.headers.get("ETag");
    if (etag) cache.set(path, { etag, data });
    return { data, changed: true };
  }

  const query = (path, params) => path + "?" + new URLSearchParams(params).toString();
  const fmt = (v) => (typeof v === "number" ? number.format(v) : v == null ? "–" : String(v));
  const seconds = (rfc3339) => Date.parse(rfc3339) / 1000;
  const shortTime = (rfc3339) => {
    const d = new Date(rfc3339);
    return isNaN(d) ? String(rfc3339) : d.toISOString().replace("T", " ").replace(/:00\.000Z$|\.000Z$/, "Z").replace(/Z$/, " UTC");
  };
  function duration(ms) {
    for (const [unit, size] of [["d", 864e5], ["h", 36e5], ["m", 6e4], ["s", 1e3]]) {
      if (ms % size === 0) return ms / size + unit;
    }
    return ms + "ms";
  }
  function windowText(w) {
    if (w.kind === "tumbling") return "tumbling " + duration(w.size_ms);
    if (w.kind === "hopping") return "hopping " + duration(w.size_ms) + " every " + duration(w.every_ms);
    return "session gap " + duration(w.gap_ms);
  }

  function showError(err) {
    const box = $("error");
    if (!err) { box.hidden = true; return; }
    box.hidden = false;
    box.textContent = err instanceof AuthError
      ? "Not authorized: open the dashboard with the URL csvflow printed (…/#token=…)."
      : String(err.message || err);
  }

  // ------------------------------------------------------------------ aggregates ----
  function buildView(pipeline, agg) {
    const metrics = agg.metrics.map((m) => m.name);
    const grouped = agg.group_by.length > 0;
    const latest = el("dd", { "data-role": "latest-window", text: "–" });
    const values = new Map(metrics.map((m) => [m, el("dd", { "data-metric": m, text: "–" })]));
    const windowsCount = el("dd", { "data-role": "windows", text: "–" });
    const statList = el("dl", { class: "stats" },
      el("div", {}, el("dt", { text: "latest window" }), latest),
      ...metrics.map((m) => el("div", {}, el("dt", { text: m }), values.get(m))),
      el("div", {}, el("dt", { text: "windows shown" }), windowsCount));
    const charts = el("div", { class: "charts" });
    const card = el("section", { class: "card", "data-aggregate": agg.name },
      el("h2", {}, agg.name + " ",
        el("small", { text: windowText(agg.window) + (grouped ? " · by " + agg.group_by.join(", ") : "") +
          (grouped ? " · charts: all keys combined" : "") })),
      statList, charts);
    const view = { pipeline, agg, metrics, grouped, card, charts, latest, values, windowsCount, plots: new Map(), top: null };
    if (grouped) {
      const select = el("select", { "aria-label": "top metric" },
        ...metrics.map((m) => el("option", { value: m, text: m })));
      const bars = el("div", { class: "bars" });
      const title = el("span", { text: "" });
      const section = el("div", { class: "top" }, el("h3", {}, "Top " + agg.group_by.join(", ") + " by ", select, " ", title), bars);
      select.addEventListener("change", () => refreshTop(view).catch(showError));
      card.append(section);
      view.top = { select, bars, title };
    }
    return view;
  }

  function plotFor(view, name, label, color, legend = name) {
    let plot = view.plots.get(name);
    if (plot) return plot;
    const box = el("div", { class: "chart", "data-chart": name });
    box.append(el("h3", { text: label }));
    view.charts.append(box);
    const width = Math.max(280, box.clientWidth || 320);
    // One window alone would get a range of years around it: show a window either side.
    const pad = (view.agg.window.size_ms || view.agg.window.gap_ms || 60000) / 1000;
    const u = new uPlot({
      width, height: 170,
      scales: { x: { time: true, range: (_, min, max) => (min != null && min === max ? [min - pad, max + pad] : [min, max]) } },
      series: [{}, { label: legend, stroke: color, width: 2, fill: color + "22", points: { size: 5 } }],
      axes: [{ stroke: "#6b7385" }, { stroke: "#6b7385", size: 56 }],
      cursor: { drag: { x: false, y: false } },
    }, [[], []], box);
    plot = { u, box };
    view.plots.set(name, plot);
    return plot;
  }

  function renderSeries(view, data) {
    const xs = data.windows.map((w) => seconds(w.window_start));
    const numeric = view.metrics.filter((m) => data.windows.some((w) => typeof w[m] === "number"));
    numeric.forEach((m, i) => {
      const plot = plotFor(view, m, m + " per window", colors[i % colors.length]);
      plot.u.setData([xs, data.windows.map((w) => (typeof w[m] === "number" ? w[m] : null))]);
    });
    if (view.grouped) {
      const plot = plotFor(view, "__keys", "keys per window", "#6b7385", "keys");
      plot.u.setData([xs, data.keys]);
    }
    const last = data.windows[data.windows.length - 1];
    view.windowsCount.textContent = String(data.windows.length);
    view.latest.textContent = last ? shortTime(last.window_start) : "–";
    for (const m of view.metrics) view.values.get(m).textContent = last ? fmt(last[m]) : "–";
  }

  async function refreshTop(view) {
    const metric = view.top.select.value;
    const { data, changed } = await getJSON(query("/api/top",
      { pipeline: view.pipeline, aggregate: view.agg.name, metric, n: 10 }));
    if (!changed && view.top.bars.dataset.metric === metric) return;
    view.top.bars.dataset.metric = metric;
    view.top.title.textContent = data.window_start
      ? "in the window from " + shortTime(data.window_start) + " (" + data.keys + " keys)"
      : "(no windows yet)";
    const max = Math.max(0, ...data.top.map((r) => (typeof r[metric] === "number" ? r[metric] : 0)));
    const rows = [];
    for (const r of data.top) {
      const key = view.agg.group_by.map((g) => r[g]).join(", ");
      const v = typeof r[metric] === "number" ? r[metric] : 0;
      const bar = el("div", { class: "bar" });
      bar.style.width = (max > 0 ? (100 * v) / max : 0).toFixed(1) + "%";
      rows.push(el("span", { class: "key", title: key, text: key }), el("div", { class: "track" }, bar),
        el("span", { class: "value", text: fmt(r[metric]) }));
    }
    view.top.bars.replaceChildren(...rows);
  }

  async function refreshView(view) {
    const { data, changed } = await getJSON(query("/api/series", { pipeline: view.pipeline, aggregate: view.agg.name }));
    if (changed) renderSeries(view, data);
    if (view.top) await refreshTop(view);
  }

  // ------------------------------------------------------------------ alerts --------
  // Window alerts: the metrics after the file that crossed the threshold; row alerts: the
  // row's columns (all of them up to 12: the payload's order is alphabetical, not the file's).
  function alertValues(a) {
    const values = Object.entries(a.after || a.row || {});
    const shown = values.slice(0, 12).map(([k, v]) => k + "=" + fmt(v)).join(", ");
    return values.length > 12 ? shown + ", … (" + (values.length - 12) + " more)" : shown;
  }

  // The outbox status of an alert (ledger item `status`), in words.
  const alertStatus = {
    published: ["published", "sent to the alerts topic"],
    publishing: ["publishing", "being sent to the alerts topic"],
    pending: ["pending", "recorded, not sent to the alerts topic yet"],
  };

  function renderAlerts(data) {
    const rows = data.alerts.map(({ detected_at, status, alert }) => {
      const a = alert && typeof alert === "object" ? alert : {};
      const key = Array.isArray(a.key) ? a.key.join(", ")
        : a.key && typeof a.key === "object" ? Object.entries(a.key).map(([k, v]) => k + "=" + fmt(v)).join(", ")
        : a.key;
      const where = a.window ? shortTime(a.window.start) : a.line != null ? "line " + a.line : "";
      const [word, hint] = Object.hasOwn(alertStatus, String(status)) ? alertStatus[status]
        : [status == null ? "unknown" : String(status), ""];
      return el("tr", { class: status === "published" ? "" : "unpublished", "data-alert-id": fmt(a.id) },
        el("td", { text: detected_at ? shortTime(new Date(detected_at).toISOString()) : "–" }),
        el("td", { text: fmt(a.rule) }),
        el("td", { text: fmt(a.kind) + (a.aggregate ? " · " + a.aggregate : "") }),
        el("td", { text: key == null ? "" : String(key) }),
        el("td", { text: where }),
        el("td", { text: typeof alert === "string" ? alert : alertValues(a) }),
        el("td", { "data-role": "status", title: hint, text: word }));
    });
    $("alerts").tBodies[0].replaceChildren(...rows);
    $("no-alerts").hidden = rows.length > 0;
  }

  // ------------------------------------------------------------------ loop ----------
  function selectPipeline(name) {
    const p = pipelines.find((x) => x.name === name) || pipelines[0];
    if (!p) return;
    views = p.aggregates.map((a) => buildView(p.name, a));
    $("aggregates").replaceChildren(...views.map((v) => v.card));
  }

  async function tick() {
    clearTimeout(timer);
    try {
      const name = $("pipeline").value;
      await Promise.all(views.map(refreshView));
      const { data, changed } = await getJSON(query("/api/alerts", { pipeline: name, since: "24h" }));
      if (changed) renderAlerts(data);
      showError(null);
      $("status").textContent = "updated " + new Date().toLocaleTimeString() + " · " + stats.requests +
        " requests, " + stats.notModified + " not modified";
    } catch (err) {
      showError(err);
      $("status").textContent = "error at " + new Date().toLocaleTimeString();
    }
    timer = setTimeout(tick, pollMs);
  }

  async function start() {
    try {
      const { data } = await getJSON("/api/pipelines");
      pipelines = data.pipelines;
    } catch (err) {
      showError(err);
      $("status").textContent = "not connected";
      return;
    }
    const select = $("pipeline");
    select.replaceChildren(...pipelines.map((p) => el("option", { value: p.name, text: p.name })));
    const wanted = fragment.get("pipeline");
    if (wanted && pipelines.some((p) => p.name === wanted)) select.value = wanted;
    select.addEventListener("change", () => { selectPipeline(select.value); tick(); });
    selectPipeline(select.value);
    window.addEventListener("resize", () => {
      for (const v of views) for (const p of v.plots.values()) p.u.setSize({ width: Math.max(280, p.box.clientWidth), height: 170 });
    });
    tick();
  }

  start();
})();
