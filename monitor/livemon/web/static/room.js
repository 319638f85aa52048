// The room view: KPIs, live charts, alerts, failovers and the operator's control actions.
"use strict";

(function () {
  const roomId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  const $ = (id) => document.getElementById(id);
  const KEEP = 600;   // seconds of history on the charts
  let columns = [], points = [], cdnPoints = [], cdnNames = [], charts = {}, latest = null, salesView = null, catalogue = null;

  LM.translate();
  document.title = roomId + " · livemon";
  $("room-title").textContent = roomId;

  // ---- token and actions --------------------------------------------------------------------
  const tokenInput = $("token");
  tokenInput.value = sessionStorage.getItem("livemon-token") || "";
  tokenInput.addEventListener("change", () => sessionStorage.setItem("livemon-token", tokenInput.value.trim()));

  function status(text, ok) {
    const node = $("action-status");
    node.textContent = text;
    node.className = "status " + (ok ? "ok" : "error");
  }

  async function act(body) {
    body.room_id = roomId;   // who acts is the token's operator, named by the server
    let response;
    try {
      response = await fetch("/api/actions", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": "Bearer " + tokenInput.value.trim() },
        body: JSON.stringify(body),
      });
    } catch (error) {
      status(LM.t("unreachable"), false);
      return;
    }
    const answer = await response.json().catch(() => ({}));
    if (response.status === 401) status(LM.t("badToken"), false);
    else if (!response.ok) status(LM.t("refused", answer.error || response.status), false);
    else status(LM.t("sent", body.action + (body.rule ? " " + body.rule : "") + (body.to_cdn ? " → " + body.to_cdn : "")), true);
  }

  // A manual failover moves every viewer of the room: it is confirmed in a dialog naming both CDNs.
  const dialog = $("fo-dialog");
  let pending = null;
  $("failover-form").addEventListener("submit", (event) => {
    event.preventDefault();
    pending = { action: "failover", cdn: $("fo-from").value || null, to_cdn: $("fo-to").value };
    $("fo-question").textContent = LM.t("confirmText", roomId, pending.cdn || "?", pending.to_cdn || "?");
    dialog.showModal();
  });
  $("fo-confirm").addEventListener("click", () => {
    dialog.close();
    if (pending) act(pending);
    pending = null;
  });
  $("fo-abort").addEventListener("click", () => { pending = null; dialog.close(); });
  $("fo-cancel").addEventListener("click", () => act({ action: "cancel_failover", cdn: $("fo-from").value || null }));

  // ---- data ---------------------------------------------------------------------------------
  const col = (name) => { const i = columns.indexOf(name); return points.map((p) => p[i]); };
  const cdnCol = (cdn, field) => cdnPoints.map((c) => (c.cdn[cdn] ? c.cdn[cdn][field] : null));
  const xs = () => points.map((p) => p[0]);

  function cdnSet() {
    const names = new Set();
    for (const c of cdnPoints) for (const name of Object.keys(c.cdn)) names.add(name);
    return [...names].sort();
  }

  const pageCharts = () => catalogue.charts.filter((c) => c.page);
  const seriesOf = {};   // chart id -> its series (LM.chartSeries)

  function data(id) {
    return [xs(), ...seriesOf[id].map((s) => (s.cdn ? cdnCol(s.cdn, s.metric) : col(s.metric)))];
  }

  function makeCharts() {
    for (const chart of pageCharts()) {
      let holder = $("c-" + chart.id);
      if (!holder) {
        holder = LM.el("div", { id: "c-" + chart.id });
        $("charts").insertBefore(LM.el("figure", { class: "chart" }, LM.el("figcaption", { text: chart[LM.lang] || chart.en }), holder),
                                 $("funnel"));
      }
      if (charts[chart.id] && !chart.cdn) continue;   // only the per-CDN charts change with the CDNs
      if (charts[chart.id]) charts[chart.id].destroy();
      LM.clear(holder);
      seriesOf[chart.id] = LM.chartSeries(catalogue, chart, cdnNames).map((s) => ({ ...s, color: s.color || "#e8edf2" }));
      charts[chart.id] = LM.chart(holder, seriesOf[chart.id], data(chart.id), { markers: () => chartMarks });
    }
  }

  const kpiValues = {};   // metric -> its value node, made once and updated in place
  function kpis(m) {
    for (const metric of catalogue.room) {
      if (!kpiValues[metric.name]) {
        kpiValues[metric.name] = LM.el("div", { class: "value" });
        $("kpis").append(LM.el("div", { class: "kpi", "data-metric": metric.name },
                               LM.el("div", { class: "label", text: LM.label(metric) }), kpiValues[metric.name]));
      }
      const text = LM.fmt(metric, m[metric.name]);
      if (kpiValues[metric.name].textContent !== text) kpiValues[metric.name].textContent = text;
    }
  }

  // The show's funnel as the engine summed it (the provisional show summary, SPEC §10): viewers,
  // stayed 60 s, clicked, ordered, paid; each stage's bar against the viewers, and its conversion
  // from the stage before.
  function funnel(f) {
    const counts = (f && f.counts) || [];
    const viewers = counts[0] || 0;
    LM.setText($("funnel-note"), f ? LM.t("funnelAsOf", LM.time(f.end)) : LM.t("funnelWaiting"));
    const stages = f ? f.stages.map((key, i) => ({ key, i, n: counts[i] })) : [];
    LM.keyed($("c-funnel"), stages, (s) => s.key,
             (s) => LM.el("div", { class: "step", "data-stage": s.key }, LM.el("span", { class: "name" }),
                          LM.el("div", { class: "track" }, LM.el("div", { class: "fill" })),
                          LM.el("span", { class: "num" }), LM.el("span", { class: "conv" })),
             (node, s) => {
               LM.setText(node.children[0], LM.t("steps")[s.i] || s.key);
               node.querySelector(".fill").style.width = (viewers ? (100 * (s.n || 0)) / viewers : 0) + "%";
               LM.setText(node.children[2], LM.int(s.n));
               const before = s.i ? counts[s.i - 1] : null;
               LM.setText(node.children[3], s.i ? LM.t("stepConv", before ? LM.pct((s.n || 0) / before) : "–") : "");
             });
  }

  // ---- chart markers: pinned stretches, promotions, alerts and failovers (from the server) --------
  const MARK_COLORS = { pin: "#f5a623", promo: "#b07cff", firing: "#ff5c5c", resolved: "#39d98a", failover: "#4aa3ff" };
  let chartMarks = [];
  function marks(list) {
    const promoName = (type) => (LM.t("promoTypes")[type] || type || "");
    chartMarks = (list || []).map((m) => {
      if (m.kind === "pin") return { ts: m.ts, end: m.end, color: MARK_COLORS.pin, label: LM.t("markPin", m.product_id) };
      if (m.kind === "promo") {
        return { ts: m.ts, end: m.end, color: MARK_COLORS.promo,
                 label: LM.t("markPromo", promoName(m.promo_type), m.promo_id) + (m.product_id ? " · " + m.product_id : "") };
      }
      if (m.kind === "alert") {
        const state = m.state === "resolved" ? "resolved" : "firing";
        const what = (m.rule || "") + (m.cdn ? " " + LM.t("on") + " " + m.cdn : "");
        return { ts: m.ts, color: MARK_COLORS[state], dash: state === "resolved",
                 label: LM.t(state === "resolved" ? "markResolved" : "markFiring", what) };
      }
      return { ts: m.ts, color: MARK_COLORS.failover, label: LM.t("markFailover", m.from_cdn || "?", m.to_cdn || "?") };
    });
    const legend = $("marks-legend");
    if (!legend.children.length) {
      legend.append(...Object.entries(MARK_COLORS).map(([kind, color]) => {
        const swatch = LM.el("span", { class: "swatch" });
        swatch.style.background = color;
        return LM.el("span", { class: "mark", "data-kind": kind }, swatch, LM.t("marks")[kind]);
      }));
    }
  }

  // ---- sales and start-up (SPEC §8, §9, §11): tables and bars kept by key, updated in place -------
  const AGES = ["18-23", "24-30", "31-40", "41-50", "50+", "unknown"];
  const STARTUP = ["startup_p50_ms", "fast_start_ratio", "slow_start_ratio"];
  const find = (list, name) => (list || []).find((m) => m.name === name);
  // A column: from a catalogue metric (its label and format) or, where it has none, a message and a format.
  function column(key, metric, label, format) {
    return { key, label: metric ? LM.label(metric) : LM.t(label) || label,
             fmt: (item) => (metric ? LM.fmt(metric, item[key]) : LM.FORMAT[format](item[key])) };
  }

  function tableRows(id, columns, items, keyOf, decorate) {
    const table = $(id);
    if (!table.tHead.rows.length) {
      table.tHead.append(LM.el("tr", {}, ...columns.map((c) => LM.el("th", { "data-col": c.key, text: c.label }))));
    }
    LM.keyed(table.tBodies[0], items, keyOf,
             () => LM.el("tr", {}, ...columns.map((c) => LM.el("td", { "data-col": c.key }, ...(c.make ? c.make() : [])))),
             (tr, item, i) => {
               columns.forEach((c, j) => (c.set ? c.set(tr.cells[j], item) : LM.setText(tr.cells[j], c.fmt(item))));
               if (decorate) decorate(tr, item, i);
             });
  }

  function figures(id, entries) {   // entries: [{key, label, text}]
    LM.keyed($(id), entries, (e) => e.key,
             (e) => LM.el("div", { class: "figure", "data-metric": e.key }, LM.el("dt", { text: e.label }), LM.el("dd", {})),
             (node, e) => LM.setText(node.lastChild, e.text));
  }

  function bars(id, dim, rows, viewers) {
    const max = Math.max(1, ...rows.map(([, f]) => f.viewers || 0));
    LM.keyed($(id), rows, (r) => r[0],
             () => LM.el("div", { class: "bar" }, LM.el("span", { class: "name" }),
                         LM.el("div", { class: "track" }, LM.el("div", { class: "fill" })), LM.el("span", { class: "num" })),
             (node, [value, f]) => {
               LM.setText(node.children[0], LM.valueName(dim, value));
               node.querySelector(".fill").style.width = (100 * (f.viewers || 0)) / max + "%";
               LM.setText(node.children[2], LM.int(f.viewers) + (viewers ? ` (${LM.pct((f.viewers || 0) / viewers)})` : ""));
               node.title = LM.money(f.gmv);
             });
  }

  function sales(snap, cut) {
    const m = snap.metrics || {}, show = snap.show || {}, by = (cut && cut.by) || {}, count = (cut && cut.by_count) || {};
    const room = (name) => find(catalogue.room, name), showMetric = (name) => find(catalogue.show, name);
    const gmvShow = catalogue.room.find((metric) => metric.target === "gmv");   // the show's running GMV
    const conversion = catalogue.room.find((metric) => metric.target === "conversion").name;  // a product's too
    // The show so far and the product presented now.
    const products = (cut && cut.products) || [];
    const pin = products.find((p) => p.pinned);
    LM.setText($("pin-now"), pin ? `${LM.t("pinned")} ${pin.product_id} · ${LM.t("ctrShort")} ${LM.pct(pin.ctr)} · ` +
                                   `${LM.t("convShort")} ${LM.pct(pin[conversion])}` : LM.t("noPin"));
    $("pin-now").classList.toggle("on", !!pin);
    const total = (key, metric, label, format, value) => ({ key, label: metric ? LM.label(metric) : LM.t(label) || label || key,
      text: metric ? LM.fmt(metric, value) : LM.FORMAT[format](value) });
    figures("show-totals", [
      total("gmv", gmvShow, "gmv", "money", show.gmv !== undefined ? show.gmv : gmvShow && m[gmvShow.name]),
      total("spend_total", null, "spend", "money", show.spend_total),
      total("roi", showMetric("roi"), "ROI", "num", show.roi),
      total("refund_rate", showMetric("refund_rate"), null, "pct", show.refund_rate),
      total("top10_share", showMetric("top10_share"), null, "pct", show.top10_share),
    ]);
    // The product ranking: the pinned product first (marked), then by window GMV.
    const P = (name) => find(catalogue.products, name);
    tableRows("products", [
      { key: "product_id", label: LM.t("product"),
        make: () => [LM.el("span", { class: "name" }), LM.el("span", { class: "pin-badge", text: LM.t("pinned") })],
        set: (td, p) => { LM.setText(td.firstChild, p.product_id); td.lastChild.classList.toggle("hidden", !p.pinned); } },
      column("clickers", P("clickers"), "clickers", "int"), column("carts", null, "carts", "int"),
      column("orders", P("orders"), "orders", "int"), column("gmv", P("gmv"), "gmv", "money"),
      column("ctr", null, "productCtr", "pct"), column(conversion, P(conversion), "convShort", "pct"),
    ], products, (p) => p.product_id, (tr, p) => tr.classList.toggle("pinned", p.pinned));
    LM.setText($("products-note"), !products.length ? LM.t("noProducts")
      : cut.products_count > products.length ? LM.t("shownOf", products.length, cut.products_count) : "");
    // Traffic sources: the catalogue's per-source figures.
    tableRows("sources", [
      { key: "source", label: LM.t("source"), fmt: ([value]) => LM.valueName("source", value) },
      ...catalogue.by.filter((metric) => metric.scope === "source").map((metric) =>
        ({ key: metric.name, label: LM.label(metric),
           fmt: ([, f]) => (metric.format === "money" ? LM.moneyFine(f[metric.name]) : LM.fmt(metric, f[metric.name])) })),
    ], by.source || [], (r) => r[0]);
    // Audience.
    const viewers = m.viewers;
    bars("devices", "device", by.device || [], viewers);
    bars("regions", "region", by.region || [], viewers);
    LM.setText($("regions-note"), count.region > (by.region || []).length ? LM.t("shownOf", by.region.length, count.region) : "");
    const age = (v) => (AGES.indexOf(v) < 0 ? AGES.length : AGES.indexOf(v));
    bars("ages", "age_band", (by.age_band || []).slice().sort((a, b) => age(a[0]) - age(b[0])), viewers);
    bars("genders", "gender", by.gender || [], viewers);
    bars("followers", "follower", by.follower || [], viewers);
    // Start-up quality: the room, then each CDN.
    figures("startup", STARTUP.map((name) => room(name)).filter(Boolean).map((metric) =>
      ({ key: metric.name, label: LM.label(metric), text: LM.fmt(metric, m[metric.name]) })));
    const cdnMetrics = ["viewers", ...STARTUP].map((name) => find(catalogue.cdn, name)).filter(Boolean);
    tableRows("startup-cdn", [
      { key: "cdn", label: LM.t("cdn"), fmt: ([name]) => name },
      ...cdnMetrics.map((metric) => ({ key: metric.name, label: LM.label(metric), fmt: ([, r]) => LM.fmt(metric, r[metric.name]) })),
    ], Object.entries(snap.cdn || {}).sort((a, b) => (a[0] < b[0] ? -1 : 1)), (r) => r[0]);
  }

  function alertInfo(a) {
    const what = `${a.state || ""} ${a.rule || ""}${a.cdn ? " " + LM.t("on") + " " + a.cdn : ""}` +
                 (a.value !== undefined && a.value !== null ? ` = ${LM.val(a.value)}` : "");
    return [LM.el("span", { class: "when", text: LM.time(a.ts) }),
            LM.el("strong", { text: what }), a.severity ? ` [${a.severity}]` : "",
            a.summary ? LM.el("div", { text: a.summary }) : null,
            a.acknowledged ? LM.el("div", { text: LM.t("acked", a.acknowledged_by) }) : null,
            a.silenced_until ? LM.el("div", { text: LM.t("silenced", LM.time(a.silenced_until)) }) : null];
  }

  function alertItem(a) {
    return LM.el("li", { class: a.state || "" }, ...alertInfo(a));
  }

  // Active alerts are kept by identity: their text is refreshed, their buttons stay the same nodes,
  // so an Acknowledge click lands whatever the stream does meanwhile.
  const activeItems = new Map();   // "rule|cdn" -> {li, info, buttons}
  function activeAlerts(active) {
    const list = $("active-alerts"), keep = new Set();
    for (const a of active) {
      const id = (a.rule || "") + "|" + (a.cdn || "");
      keep.add(id);
      let item = activeItems.get(id);
      if (!item) {
        item = { li: LM.el("li", {}), info: LM.el("div", { class: "info" }),
                 buttons: LM.el("div", { class: "buttons" },
                   LM.el("button", { type: "button", class: "ack", text: LM.t("ack"),
                                     onclick: () => act({ action: "ack", rule: a.rule, cdn: a.cdn || null }) }),
                   LM.el("button", { type: "button", class: "silence", text: LM.t("silence"),
                                     onclick: () => act({ action: "silence", rule: a.rule, cdn: a.cdn || null, duration: 3600 }) })) };
        item.li.append(item.info, item.buttons);
        activeItems.set(id, item);
        list.append(item.li);
      }
      const key = JSON.stringify([a.state, a.ts, a.value, a.summary, a.acknowledged, a.acknowledged_by, a.silenced_until]);
      if (item.key !== key) { item.key = key; item.info.replaceChildren(...alertInfo(a).filter((x) => x !== null)); }
      item.li.className = a.state || "";
      item.buttons.classList.toggle("hidden", a.state !== "firing");
    }
    for (const [id, item] of activeItems) if (!keep.has(id)) { item.li.remove(); activeItems.delete(id); }
    let none = list.querySelector("li.none");
    if (!active.length && !none) list.append(LM.el("li", { class: "none", text: LM.t("none") }));
    if (active.length && none) none.remove();
  }

  function lists(view) {
    activeAlerts(view.alerts_active);
    $("alert-feed").replaceChildren(...view.alert_feed.slice(0, 50).map(alertItem));
    $("failovers").replaceChildren(...view.failovers.slice(0, 50).map((f) =>
      LM.el("li", { class: f.decision || "" }, LM.el("span", { class: "when", text: LM.time(f.ts) }),
            LM.el("strong", { text: `${f.decision || ""} ${f.from_cdn || "?"} → ${f.to_cdn || "?"}` }),
            f.reason ? LM.el("div", { text: f.reason }) : null)));
    const mins = (s) => (s === null || s === undefined ? "–" : LM.num(s / 60) + " " + LM.t("min"));
    $("incidents").replaceChildren(...view.incidents.slice().reverse().slice(0, 20).map((i) =>
      LM.el("li", { class: i.status === "resolved" ? "resolved" : "firing" },
            LM.el("span", { class: "when", text: LM.time(i.fired_ts) }),
            LM.el("strong", { text: `${i.status} ${i.rule || ""}${i.cdn ? " " + LM.t("on") + " " + i.cdn : ""}` }),
            LM.el("div", { text: LM.t("incident", mins(i.time_to_detect), mins(i.time_to_acknowledge), mins(i.time_to_resolve)) +
                                 (i.acked_by ? LM.t("ackedBy", i.acked_by) : "") }))));
    $("operator").replaceChildren(...view.operator.slice(0, 20).map((o) =>
      LM.el("li", {}, LM.el("span", { class: "when", text: LM.time(o.ts) }),
            (o.action === "target" ? `${LM.t("targetSet")} ${o.show || ""} ${JSON.stringify(o.target || {})}`
                                   : `${o.action} ${o.rule || ""} ${o.cdn || ""}${o.to_cdn ? " → " + o.to_cdn : ""}`) +
            ` · ${LM.t("by")} ${o.by || "?"}`)));
  }

  function fillCdnSelects() {
    for (const id of ["fo-from", "fo-to"]) {
      const select = $(id), keep = select.value;
      select.replaceChildren(...cdnNames.map((c) => LM.el("option", { value: c, text: c })));
      if (cdnNames.includes(keep)) select.value = keep;
    }
    if (cdnNames.length > 1 && $("fo-to").value === $("fo-from").value) $("fo-to").value = cdnNames[1];
  }

  function apply(view, incremental) {
    if (!incremental) { columns = view.columns; points = []; cdnPoints = []; }
    const last = points.length ? points[points.length - 1][0] : -Infinity;
    for (const p of view.points) if (p[0] > last) points.push(p);
    const lastCdn = cdnPoints.length ? cdnPoints[cdnPoints.length - 1].ts : -Infinity;
    for (const c of view.cdn_points) if (c.ts > lastCdn) cdnPoints.push(c);
    const cut = points.length ? points[points.length - 1][0] - KEEP : 0;
    points = points.filter((p) => p[0] > cut);
    cdnPoints = cdnPoints.filter((c) => c.ts > cut);
    latest = view.latest || latest;
    salesView = view.sales || salesView;
    if ("funnel" in view) funnel(view.funnel);
    if (view.marks) marks(view.marks);
    const names = cdnSet();
    if (names.join() !== cdnNames.join() || !charts.online) {
      cdnNames = names; makeCharts(); fillCdnSelects();
    } else {
      for (const name of Object.keys(charts)) charts[name].setData(data(name));
    }
    if (latest) {
      const m = latest.metrics || {};
      kpis(m); sales(latest, salesView);
      const title = latest.show && latest.show.title;
      $("room-summary").textContent = (title ? title + " · " : "") + LM.t("roomSummary", LM.int(m.online), LM.time(latest.ts)) +
        (view.worker ? " · " + LM.t("worker") + " " + view.worker : "");
    }
    const badge = $("room-state");
    badge.textContent = LM.t("state")[view.alert] || view.alert; badge.className = "badge " + view.alert;
    badge.dataset.state = view.alert;
    if (view.alerts_active) lists(view);   // stream frames carry the lists only when an alert came in
    document.body.dataset.points = String(points.length);
    if (latest) document.body.dataset.ts = String(latest.ts);   // the instant of the figures shown
  }

  LM.loadCatalogue().then((c) => { catalogue = c; return fetch("/api/rooms/" + encodeURIComponent(roomId)); }).then((r) => {
    if (r.status === 404) { $("room-summary").textContent = LM.t("noData"); return null; }
    return r.json();
  }).then((view) => {
    if (view) apply(view, false);
    LM.stream("/api/stream?room=" + encodeURIComponent(roomId), { room: (v) => apply(v, columns.length > 0) });
  });
})();
