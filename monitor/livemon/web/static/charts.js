// uPlot wrappers for the room page and the review report: dark axes, formatted legends, width that
// follows the container, and vertical markers for alerts and failovers.
"use strict";

LM.AXIS = { stroke: "#93a1b0", grid: { stroke: "#2b3a4a", width: 1 }, ticks: { stroke: "#2b3a4a", width: 1 } };

function axisValues(kind) {
  if (kind === "pct") return (u, vals) => vals.map((v) => (v === null ? "" : +(v * 100).toFixed(1) + "%"));
  if (kind === "money") return (u, vals) => vals.map((v) => (v === null ? "" : "¥" + LM.val(v)));
  return (u, vals) => vals.map((v) => (v === null ? "" : LM.num(v)));
}

// Whole seconds at least: the data has one point per step.
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

// Clock times on the x axis: HH:MM:SS over short spans, HH:MM over long ones (one line, no date).
function clockTicks(u, vals) {
  const long = u.scales.x.max - u.scales.x.min > 3 * 3600;
  return vals.map((v) => new Date(v * 1000).toLocaleTimeString([], long ? { hour: "2-digit", minute: "2-digit", hour12: false }
                                                                           : { hour12: false }));
}

// markers: [{ts, label, color, dash, end}] drawn as vertical lines with a short label at the top;
// one with an `end` key is a band from `ts` to `end` (null: to the right edge, still going). The
// labels drawn (those inside the plot) are listed in the chart's `data-marks`, for readers and tests.
LM.markerPlugin = function (getMarkers) {
  return {
    hooks: {
      draw: [(u) => {
        const markers = getMarkers() || [];
        const ctx = u.ctx, top = u.bbox.top, bottom = u.bbox.top + u.bbox.height;
        const left = u.bbox.left, right = u.bbox.left + u.bbox.width;
        const drawn = [];
        ctx.save();
        ctx.font = `${Math.round(12 * devicePixelRatio)}px sans-serif`;
        let lastX = -1e9, row = 0;
        for (const m of markers) {
          let x = Math.round(u.valToPos(m.ts, "x", true));
          if ("end" in m) {
            const x1 = m.end === null || m.end === undefined ? right : Math.round(u.valToPos(m.end, "x", true));
            if (x1 < left || x > right) continue;
            x = Math.max(x, left);
            ctx.globalAlpha = 0.16;
            ctx.fillStyle = m.color;
            ctx.fillRect(x, top, Math.max(2, Math.min(x1, right) - x), bottom - top);
            ctx.globalAlpha = 1;
          } else if (x < left || x > right) continue;
          ctx.strokeStyle = m.color; ctx.lineWidth = 2 * devicePixelRatio;
          ctx.setLineDash(m.dash ? [6, 4] : []);
          ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, bottom); ctx.stroke();
          row = x - lastX < 80 * devicePixelRatio ? (row + 1) % 4 : 0;
          lastX = x;
          ctx.fillStyle = m.color;
          // A label that would run past the plot's right edge goes on the left of its line.
          const width = ctx.measureText(m.label).width, gap = 3 * devicePixelRatio;
          const tx = x + gap + width > right && x - gap - width >= left ? x - gap - width : x + gap;
          ctx.fillText(m.label, tx, top + (12 + 13 * row) * devicePixelRatio);
          drawn.push(m.label);
        }
        ctx.restore();
        const text = JSON.stringify(drawn);
        if (u.root.dataset.marks !== text) u.root.dataset.marks = text;
      }],
    },
  };
};

// series: [{label, color, kind, scale, dash}]; data: [xs, ys1, ys2...]; opts: {height, markers, xTime}
LM.chart = function (container, series, data, opts = {}) {
  const scales = {};
  const axes = [Object.assign({}, LM.AXIS, { space: 70 },
                              opts.xTime === false ? { values: (u, v) => v.map((m) => m + " min") }
                                                   : { values: clockTicks, incrs: TIME_STEPS })];
  const seen = {};
  for (const s of series) {
    const scale = s.scale || "y";
    if (seen[scale]) continue;
    seen[scale] = true;
    scales[scale] = { range: (u, min, max) => [Math.min(0, min ?? 0), max > 0 ? max * 1.1 : 1] };
    axes.push(Object.assign({}, LM.AXIS, { scale, side: Object.keys(seen).length === 1 ? 3 : 1,
                                            values: axisValues(s.kind), size: 70,
                                            grid: Object.keys(seen).length === 1 ? LM.AXIS.grid : { show: false } }));
  }
  if (opts.xTime === false) scales.x = { time: false };
  const width = () => Math.max(280, container.clientWidth - 10);
  const height = opts.height || Math.round(parseFloat(getComputedStyle(document.documentElement).fontSize) * 14);
  const plot = new uPlot({
    width: width(), height,
    scales, axes,
    cursor: { drag: { x: true, y: false } },
    legend: { live: true },
    plugins: opts.markers ? [LM.markerPlugin(opts.markers)] : [],
    series: [
      opts.xTime === false ? { label: "minute", value: (u, v) => (v === null ? "–" : LM.num(v)) } : {},
      ...series.map((s) => ({
        label: s.label, stroke: s.color, width: 2, scale: s.scale || "y", spanGaps: false,
        dash: s.dash, value: (u, v) => (LM.FORMAT[s.kind] || LM.num)(v),
      })),
    ],
  }, data, container);
  new ResizeObserver(() => { const w = width(); if (Math.abs(w - plot.width) > 4) plot.setSize({ width: w, height }); })
    .observe(container);
  return plot;
};
