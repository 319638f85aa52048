// The room view: KPIs, live charts, alerts, failovers and the operator's control actions.
"use strict";

(function () {
  const roomId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  const $ = (id) => document.getElementById(id);
  const KEEP = 600;   // seconds of history on the charts
  let columns = [], points = [], cdnPoints = [], cdnNames = [], charts = {}, latest = null, catalogue = null;

  document.title = roomId + " · livemon control room";
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
    body.room_id = roomId;
    body.by = "web";
    let response;
    try {
      response = await fetch("/api/actions", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": "Bearer " + tokenInput.value.trim() },
        body: JSON.stringify(body),
      });
    } catch (error) {
      status("Not sent: the monitor is unreachable", false);
      return;
    }
    const answer = await response.json().catch(() => ({}));
    if (response.status === 401) status("Refused: enter a valid operator token", false);
    else if (!response.ok) status("Refused: " + (answer.error || response.status), false);
    else status(`Sent: ${body.action}` + (body.rule ? " " + body.rule : "") + (body.to_cdn ? " → " + body.to_cdn : ""), true);
  }

  $("failover-form").addEventListener("submit", (event) => {
    event.preventDefault();
    act({ action: "failover", cdn: $("fo-from").value || null, to_cdn: $("fo-to").value });
  });
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
        $("charts").insertBefore(LM.el("figure", { class: "chart" }, LM.el("figcaption", { text: chart.en }), holder),
                                 $("funnel"));
      }
      if (charts[chart.id] && !chart.cdn) continue;   // only the per-CDN charts change with the CDNs
      if (charts[chart.id]) charts[chart.id].destroy();
      LM.clear(holder);
      seriesOf[chart.id] = LM.chartSeries(catalogue, chart, cdnNames).map((s) => ({ ...s, color: s.color || "#e8edf2" }));
      charts[chart.id] = LM.chart(holder, seriesOf[chart.id], data(chart.id));
    }
  }

  function kpis(m) {
    $("kpis").replaceChildren(...catalogue.room.map((metric) =>
      LM.el("div", { class: "kpi" }, LM.el("div", { class: "label", text: LM.label(metric) }),
            LM.el("div", { class: "value", text: LM.fmt(metric, m[metric.name]) }))));
  }

  function funnel(m) {
    const viewers = m.viewers || 0;
    const clickers = Math.round((m.product_ctr || 0) * viewers);
    const steps = [["Viewers", viewers], ["Interacting", Math.round((m.interaction_rate || 0) * viewers)],
                   ["Product clicks", clickers], ["Paid", Math.round((m.conversion_rate || 0) * clickers)]];
    $("c-funnel").replaceChildren(...steps.map(([label, n]) => {
      const fill = LM.el("div", { class: "fill" });
      fill.style.width = (viewers ? (100 * n) / viewers : 0) + "%";
      return LM.el("div", { class: "step" }, LM.el("span", { text: label }),
                   LM.el("div", { class: "track" }, fill),
                   LM.el("span", { class: "num", text: LM.int(n) + (viewers && label !== "Viewers" ? ` (${LM.pct(n / viewers)})` : "") }));
    }));
  }

  function alertItem(a, withButtons) {
    const what = `${a.state || ""} ${a.rule || ""}${a.cdn ? " on " + a.cdn : ""}` +
                 (a.value !== undefined && a.value !== null ? ` = ${LM.val(a.value)}` : "");
    const li = LM.el("li", { class: a.state || "" }, LM.el("span", { class: "when", text: LM.time(a.ts) }),
                     LM.el("strong", { text: what }), a.severity ? ` [${a.severity}]` : "",
                     a.summary ? LM.el("div", { text: a.summary }) : null,
                     a.acknowledged ? LM.el("div", { text: "acknowledged" + (a.acknowledged_by ? " by " + a.acknowledged_by : "") }) : null,
                     a.silenced_until ? LM.el("div", { text: "silenced until " + LM.time(a.silenced_until) }) : null);
    if (withButtons) {
      li.append(LM.el("button", { type: "button", class: "ack", text: "Acknowledge",
                                  onclick: () => act({ action: "ack", rule: a.rule, cdn: a.cdn || null }) }),
                LM.el("button", { type: "button", class: "silence", text: "Silence 1 h",
                                  onclick: () => act({ action: "silence", rule: a.rule, cdn: a.cdn || null, duration: 3600 }) }));
    }
    return li;
  }

  function lists(view) {
    const active = view.alerts_active;
    $("active-alerts").replaceChildren(...(active.length ? active.map((a) => alertItem(a, a.state === "firing"))
                                                         : [LM.el("li", { text: "none" })]));
    $("alert-feed").replaceChildren(...view.alert_feed.slice(0, 50).map((a) => alertItem(a, false)));
    $("failovers").replaceChildren(...view.failovers.slice(0, 50).map((f) =>
      LM.el("li", { class: f.decision || "" }, LM.el("span", { class: "when", text: LM.time(f.ts) }),
            LM.el("strong", { text: `${f.decision || ""} ${f.from_cdn || "?"} → ${f.to_cdn || "?"}` }),
            f.reason ? LM.el("div", { text: f.reason }) : null)));
    const mins = (s) => (s === null || s === undefined ? "–" : LM.num(s / 60) + " min");
    $("incidents").replaceChildren(...view.incidents.slice().reverse().slice(0, 20).map((i) =>
      LM.el("li", { class: i.status === "resolved" ? "resolved" : "firing" },
            LM.el("span", { class: "when", text: LM.time(i.fired_ts) }),
            LM.el("strong", { text: `${i.status} ${i.rule || ""}${i.cdn ? " on " + i.cdn : ""}` }),
            LM.el("div", { text: `detect ${mins(i.time_to_detect)} · acknowledge ${mins(i.time_to_acknowledge)} · ` +
                                 `resolve ${mins(i.time_to_resolve)}` + (i.acked_by ? " · acked by " + i.acked_by : "") }))));
    $("operator").replaceChildren(...view.operator.slice(0, 20).map((o) =>
      LM.el("li", {}, LM.el("span", { class: "when", text: LM.time(o.ts) }),
            `${o.action} ${o.rule || ""} ${o.cdn || ""}${o.to_cdn ? " → " + o.to_cdn : ""} by ${o.by || "?"}`)));
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
    const names = cdnSet();
    if (names.join() !== cdnNames.join() || !charts.online) {
      cdnNames = names; makeCharts(); fillCdnSelects();
    } else {
      for (const name of Object.keys(charts)) charts[name].setData(data(name));
    }
    if (latest) {
      const m = latest.metrics || {};
      kpis(m); funnel(m);
      const title = latest.show && latest.show.title;
      $("room-summary").textContent = (title ? title + " · " : "") + `${LM.int(m.online)} online · data at ${LM.time(latest.ts)}` +
        (view.worker ? " · worker " + view.worker : "");
    }
    const badge = $("room-state");
    badge.textContent = view.alert; badge.className = "badge " + view.alert;
    lists(view);
    document.body.dataset.points = String(points.length);
  }

  LM.loadCatalogue().then((c) => { catalogue = c; return fetch("/api/rooms/" + encodeURIComponent(roomId)); }).then((r) => {
    if (r.status === 404) { $("room-summary").textContent = "no live data for this room yet"; return null; }
    return r.json();
  }).then((view) => {
    if (view) apply(view, false);
    LM.stream("/api/stream?room=" + encodeURIComponent(roomId), { room: (v) => apply(v, columns.length > 0) });
  });
})();
