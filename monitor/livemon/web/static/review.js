// Draws the review charts from the data inlined in the report (see livemon.recording.review).
"use strict";

(function () {
  // The report holds both languages; the reader's choice (or the report's default) shows.
  document.documentElement.dataset.lang = LM.lang;
  document.documentElement.lang = LM.lang === "zh" ? "zh-CN" : "en";
  const button = document.getElementById("lang");
  button.textContent = LM.t("switchTo");
  button.addEventListener("click", () => LM.setLang(LM.lang === "zh" ? "en" : "zh"));
  // Times in the reader's own zone (the report was written in the writer's).
  for (const node of document.querySelectorAll("time[data-ts]")) {
    const ts = +node.dataset.ts, part = node.dataset.part;
    node.textContent = part === "dt" ? LM.dateTime(ts)
      : new Date(ts * 1000).toLocaleTimeString(LM.lang === "zh" ? "zh-CN" : "en-US",
                                               part === "hm" ? { hour: "2-digit", minute: "2-digit", hour12: false } : { hour12: false });
  }
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
      LM.chart(figure(chart[LM.lang] || chart.en), series, [x, ...series.map((one) => one.data)], { markers: () => allMarkers, height: 260 });
    }
  }

  function side() {
    for (const metric of catalogue.room.filter((m) => m.compare)) {
      const joined = uPlot.join(shows.map((s) => [s.minutes, s.series[metric.name]]));
      const series = shows.map((s, i) => ({ label: (i + 1) + ": " + s.key, kind: metric.format, color: P[i],
                                            dash: i ? [8, 5] : undefined }));
      LM.chart(figure(LM.label(metric) + LM.t("minutesSince")), series, joined,
               { markers: () => allMarkers, height: 260, xTime: false });
    }
  }

  if (compare) side(); else single();
  document.body.dataset.charts = String(holder.querySelectorAll("canvas").length);
})();
