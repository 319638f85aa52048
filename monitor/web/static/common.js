// Helpers shared by the control-room pages. All text from the data goes through textContent
// (never innerHTML), so room names, titles and alert summaries cannot inject markup.
"use strict";

const LM = {};

LM.el = function (tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const nf2 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
LM.int = (v) => (v === null || v === undefined ? "–" : nf.format(v));
LM.num = (v) => (v === null || v === undefined ? "–" : nf1.format(v));
LM.pct = (v) => (v === null || v === undefined ? "–" : (v * 100 < 10 ? nf2 : nf1).format(v * 100) + "%");
LM.money = (v) => (v === null || v === undefined ? "–" : "¥" + nf.format(v));
LM.secs = (v) => (v === null || v === undefined ? "–" : nf.format(v) + " s");
LM.ms = (v) => (v === null || v === undefined ? "–" : nf.format(v) + " ms");
LM.val = (v) => (v === null || v === undefined ? "–" : Math.abs(v) < 10 ? String(+v.toPrecision(3)) : nf1.format(v));
LM.time = (ts) => (ts ? new Date(ts * 1000).toLocaleTimeString([], { hour12: false }) : "–");

// The metric catalogue (livemon.catalogue): names, labels, formats, charts, tiles.
LM.FORMAT = { int: LM.int, num: LM.num, pct: LM.pct, money: LM.money, ms: LM.ms, s: LM.secs };
LM.fmt = (metric, v) => (LM.FORMAT[metric.format] || LM.val)(v);
LM.label = (metric) => metric.en;
LM.loadCatalogue = () => fetch("/api/catalogue").then((r) => r.json());

// The series of one catalogue chart: its room metrics, then (for a per-CDN chart) one series
// per CDN of its CDN metric. `at(series)` is given each series to fetch its data.
LM.chartSeries = function (catalogue, chart, cdnNames, palette) {
  const P = palette || LM.PALETTE;
  const series = catalogue.room.filter((m) => m.charts.includes(chart.id)).map((m, i) => ({
    metric: m.name, label: chart.cdn ? "room" : LM.label(m), kind: m.format, scale: m.axis || undefined,
    color: chart.cdn ? null : P[i % P.length], dash: chart.cdn ? [4, 4] : undefined }));
  const perCdn = chart.cdn ? catalogue.cdn.find((m) => m.charts.includes(chart.id)) : null;
  if (perCdn) {
    cdnNames.forEach((c, i) => series.push({ cdn: c, metric: perCdn.name, label: c, kind: perCdn.format,
                                             color: P[(i + 1) % P.length] }));
  }
  return series;
};

LM.clear = function (node) { while (node.firstChild) node.removeChild(node.firstChild); };

// A server-sent-event stream with its state shown in the header dot.
LM.stream = function (url, handlers) {
  const dot = document.getElementById("conn");
  const source = new EventSource(url);
  source.onopen = () => { if (dot) { dot.className = "conn live"; dot.title = "live"; } };
  source.onerror = () => {
    if (dot) { dot.className = "conn down"; dot.title = "reconnecting…"; }
    // The browser gives up after an error answer (503: too many streams): try again in a while.
    if (source.readyState === EventSource.CLOSED) setTimeout(() => LM.stream(url, handlers), 5000);
  };
  for (const [name, fn] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => fn(JSON.parse(event.data)));
  }
  return source;
};

// A small line drawn on a canvas: enough for a tile, no chart library needed.
LM.sparkline = function (canvas, values, color) {
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth * ratio, height = canvas.clientHeight * ratio;
  if (!width || !height) return;
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  const pts = values.filter((v) => v !== null && v !== undefined);
  if (pts.length < 2) return;
  const max = Math.max(...pts), min = Math.min(...pts), span = max - min || 1;
  ctx.strokeStyle = color; ctx.lineWidth = 2 * ratio; ctx.beginPath();
  values.forEach((v, i) => {
    if (v === null || v === undefined) return;
    const x = (i / (values.length - 1)) * width;
    const y = height - ((v - min) / span) * (height - 4 * ratio) - 2 * ratio;
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
};

LM.STATE_COLOR = { ok: "#39d98a", pending: "#e0b400", warning: "#ff9f43", critical: "#ff6b6b" };
LM.PALETTE = ["#4aa3ff", "#ff9f43", "#39d98a", "#c77dff", "#ff6b6b", "#f1d37a", "#5ce1e6", "#b0b8c1"];
