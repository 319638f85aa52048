// Draws the review charts from the data inlined in the report (see livemon.recording.review).
"use strict";

(function () {
  const { shows, catalogue } = JSON.parse(document.getElementById("review-data").textContent);
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
    const s = shows[0], x = s.ts, cdns = Object.keys(s.cdn);
    for (const chart of catalogue.charts.filter((c) => c.review)) {
      const series = LM.chartSeries(catalogue, chart, cdns, P).map((one) => ({
        ...one, color: one.color || "#1b2330", dash: one.dash ? [5, 4] : undefined,
        data: one.cdn ? s.cdn[one.cdn][one.metric] : s.series[one.metric] }));
      LM.chart(figure(chart.en), series, [x, ...series.map((one) => one.data)], { markers: () => allMarkers, height: 260 });
    }
  }

  function side() {
    for (const metric of catalogue.room.filter((m) => m.compare)) {
      const joined = uPlot.join(shows.map((s) => [s.minutes, s.series[metric.name]]));
      const series = shows.map((s, i) => ({ label: (i + 1) + ": " + s.key, kind: metric.format, color: P[i],
                                            dash: i ? [8, 5] : undefined }));
      LM.chart(figure(LM.label(metric) + " (minutes since show start)"), series, joined,
               { markers: () => allMarkers, height: 260, xTime: false });
    }
  }

  if (compare) side(); else single();
  document.body.dataset.charts = String(holder.querySelectorAll("canvas").length);
})();
