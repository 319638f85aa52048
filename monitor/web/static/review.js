// Draws the review charts from the data inlined in the report (see livemon.recording.review).
"use strict";

(function () {
  const { shows } = JSON.parse(document.getElementById("review-data").textContent);
  const holder = document.getElementById("charts");
  const compare = shows.length === 2;
  const P = ["#1f6fd1", "#e07b00", "#17a35a", "#8e44ad", "#d62828", "#b8860b", "#0097a7", "#555"];
  LM.AXIS = { stroke: "#3a4450", grid: { stroke: "#e6e9ee", width: 1 }, ticks: { stroke: "#cfd5dc", width: 1 } };

  function figure(caption) {
    const div = LM.el("div", {});
    holder.append(LM.el("figure", { class: "chart" }, LM.el("figcaption", { text: caption }), div));
    return div;
  }

  function markersOf(show, index) {
    return show.markers.map((m) => Object.assign({}, m, {
      ts: compare ? (m.ts - show.start) / 60 : m.ts,
      label: (compare ? index + 1 + ": " : "") + m.label,
    }));
  }
  const allMarkers = compare ? [...markersOf(shows[0], 0), ...markersOf(shows[1], 1)] : markersOf(shows[0], 0);

  function single() {
    const s = shows[0], x = s.ts, v = s.series, cdns = Object.keys(s.cdn);
    const charts = [
      ["Online viewers, entries and leaves (1-minute window)",
       [["online", "int"], ["entries", "int", "flow"], ["leaves", "int", "flow"]].map(([k, kind, scale], i) =>
         ({ label: k, kind, scale, color: P[i], data: v[k] }))],
      ["Retention by horizon", ["retention_30s", "retention_60s", "retention_180s"].map((k, i) =>
         ({ label: k.replace("retention_", ""), kind: "pct", color: P[i], data: v[k] }))],
      ["Interaction, product CTR and conversion", [["interaction_rate", "interaction"], ["product_ctr", "CTR"],
         ["conversion_rate", "conversion"]].map(([k, label], i) => ({ label, kind: "pct", color: P[i], data: v[k] }))],
      ["GMV: running total and last minute", [{ label: "GMV total", kind: "money", color: P[0], data: v.gmv_total },
         { label: "GMV 1 min", kind: "money", scale: "win", color: P[1], data: v.gmv }]],
      ["Stall ratio, room and per CDN", [{ label: "room", kind: "pct", color: "#1b2330", dash: [5, 4], data: v.stall_ratio },
         ...cdns.map((c, i) => ({ label: c, kind: "pct", color: P[i + 1], data: s.cdn[c].stall_ratio }))]],
      ["Live latency p95, room and per CDN", [{ label: "room", kind: "ms", color: "#1b2330", dash: [5, 4], data: v.latency_p95_ms },
         ...cdns.map((c, i) => ({ label: c, kind: "ms", color: P[i + 1], data: s.cdn[c].latency_p95_ms }))]],
    ];
    for (const [caption, series] of charts) {
      LM.chart(figure(caption), series, [x, ...series.map((s) => s.data)], { markers: () => allMarkers, height: 260 });
    }
  }

  function side() {
    const metrics = [["online", "Online viewers", "int"], ["retention_60s", "Retention 60 s", "pct"],
                     ["interaction_rate", "Interaction rate", "pct"], ["product_ctr", "Product CTR", "pct"],
                     ["conversion_rate", "Conversion", "pct"], ["gmv_total", "GMV running total", "money"],
                     ["stall_ratio", "Stall ratio", "pct"], ["latency_p95_ms", "Live latency p95", "ms"]];
    for (const [key, caption, kind] of metrics) {
      const joined = uPlot.join(shows.map((s) => [s.minutes, s.series[key]]));
      const series = shows.map((s, i) => ({ label: (i + 1) + ": " + s.key, kind, color: P[i], dash: i ? [8, 5] : undefined }));
      LM.chart(figure(caption + " (minutes since show start)"), series, joined,
               { markers: () => allMarkers, height: 260, xTime: false });
    }
  }

  if (compare) side(); else single();
  document.body.dataset.charts = String(holder.querySelectorAll("canvas").length);
})();
