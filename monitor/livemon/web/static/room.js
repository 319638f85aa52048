// The room view: KPIs, live charts, alerts, failovers and the operator's control actions.
"use strict";

(function () {
  const roomId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  const $ = (id) => document.getElementById(id);
  const KEEP = 600;   // seconds of history on the charts
  let columns = [], points = [], cdnPoints = [], cdnNames = [], charts = {}, latest = null, catalogue = null;

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
      charts[chart.id] = LM.chart(holder, seriesOf[chart.id], data(chart.id));
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

  function funnel(m) {
    const viewers = m.viewers || 0;
    const clickers = Math.round((m.product_ctr || 0) * viewers);
    const counts = [viewers, Math.round((m.interaction_rate || 0) * viewers), clickers,
                    Math.round((m.conversion_rate || 0) * clickers)];
    $("c-funnel").replaceChildren(...counts.map((n, i) => {
      const fill = LM.el("div", { class: "fill" });
      fill.style.width = (viewers ? (100 * n) / viewers : 0) + "%";
      return LM.el("div", { class: "step" }, LM.el("span", { text: LM.t("steps")[i] }),
                   LM.el("div", { class: "track" }, fill),
                   LM.el("span", { class: "num", text: LM.int(n) + (viewers && i ? ` (${LM.pct(n / viewers)})` : "") }));
    }));
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
      if (item.key !== key) { item.key = key; item.info.replaceChildren(...alertInfo(a)); }
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
            `${o.action} ${o.rule || ""} ${o.cdn || ""}${o.to_cdn ? " → " + o.to_cdn : ""} · ${LM.t("by")} ${o.by || "?"}`)));
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
      $("room-summary").textContent = (title ? title + " · " : "") + LM.t("roomSummary", LM.int(m.online), LM.time(latest.ts)) +
        (view.worker ? " · " + LM.t("worker") + " " + view.worker : "");
    }
    const badge = $("room-state");
    badge.textContent = LM.t("state")[view.alert] || view.alert; badge.className = "badge " + view.alert;
    badge.dataset.state = view.alert;
    if (view.alerts_active) lists(view);   // stream frames carry the lists only when an alert came in
    document.body.dataset.points = String(points.length);
  }

  LM.loadCatalogue().then((c) => { catalogue = c; return fetch("/api/rooms/" + encodeURIComponent(roomId)); }).then((r) => {
    if (r.status === 404) { $("room-summary").textContent = LM.t("noData"); return null; }
    return r.json();
  }).then((view) => {
    if (view) apply(view, false);
    LM.stream("/api/stream?room=" + encodeURIComponent(roomId), { room: (v) => apply(v, columns.length > 0) });
  });
})();
