// The room grid: one tile per live room, sorted by online viewers, redrawn on every stream frame.
"use strict";

(function () {
  const tiles = document.getElementById("tiles");
  const empty = document.getElementById("empty");
  const summary = document.getElementById("summary");
  let tileMetrics = [];   // the catalogue's tile metrics but online (the tile's headline)

  function tile(room) {
    const m = room.metrics;
    const canvas = LM.el("canvas", { "aria-hidden": "true" });
    const title = room.show && room.show.title ? room.show.title : null;
    const node = LM.el("a", { class: "tile " + room.alert, href: "/room/" + encodeURIComponent(room.room_id),
                              "data-room": room.room_id, "data-alert": room.alert },
      LM.el("div", { class: "head" },
        LM.el("span", { class: "name", text: room.room_id }),
        LM.el("span", { class: "badge " + room.alert,
                        text: room.alert === "ok" ? "ok" : room.alert + (room.alerts ? " · " + room.alerts : "") })),
      title ? LM.el("div", { class: "show-title", text: title }) : null,
      LM.el("div", { class: "online" }, LM.el("span", { class: "value", text: LM.int(m.online) }), " ",
            LM.el("small", { text: "online" })),
      canvas,
      LM.el("dl", {}, ...tileMetrics.map((metric) => LM.el("div", { class: "metric" },
        LM.el("dt", { text: LM.label(metric) }), LM.el("dd", { text: LM.fmt(metric, m[metric.name]) })))));
    return [node, canvas];
  }

  function render(grid) {
    const drawn = [];
    const nodes = grid.rooms.map((room) => {
      const [node, canvas] = tile(room);
      drawn.push([canvas, room.spark, LM.STATE_COLOR[room.alert]]);
      return node;
    });
    tiles.replaceChildren(...nodes);
    for (const [canvas, values, color] of drawn) LM.sparkline(canvas, values, color);
    empty.classList.toggle("hidden", grid.rooms.length > 0);
    const online = grid.rooms.reduce((sum, r) => sum + (r.metrics.online || 0), 0);
    const shown = grid.rooms.length < grid.total_rooms ? ` (top ${grid.rooms.length} shown)` : "";
    summary.textContent = `${grid.total_rooms} rooms${shown} · ${LM.int(online)} online · ${grid.alerts_active} active alerts` +
      ` · ${grid.workers.length} workers · updated ${LM.time(grid.now)}` +
      (grid.broker_error ? " · broker unreachable: " + grid.broker_error : "");
  }

  LM.loadCatalogue().then((catalogue) => {
    tileMetrics = catalogue.room.filter((m) => m.tile && m.name !== "online");
    fetch("/api/rooms").then((r) => r.json()).then(render);
    LM.stream("/api/stream", { grid: render });
  });
})();
