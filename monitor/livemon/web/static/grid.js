// The room grid for the big screen: one tile per room, kept by room id and updated in place
// (a node a user may be clicking is never replaced), sorted, filtered and paged by the server so a
// frame holds one page of latest values whatever the number of rooms.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const tiles = $("tiles");
  const PAGE = 48;          // tiles per page
  const SPARK = 120;        // online values kept per tile for its sparkline
  const nodes = new Map();  // room id -> {node, parts}
  const sparks = new Map(); // room id -> {ts, values}
  let catalogue = null, metrics = [], T = {}, stream = null, holding = false, lastGrid = null;
  let view = Object.assign({ sort: "online", desc: true, q: "", state: "", offset: 0 },
                           JSON.parse(localStorage.getItem("livemon-grid-view") || "{}"));
  view.offset = 0;

  LM.translate();

  // A tile is not moved while a pointer is down on the grid: the click lands where it started.
  tiles.addEventListener("pointerdown", () => { holding = true; });
  window.addEventListener("pointerup", () => { holding = false; });
  window.addEventListener("pointercancel", () => { holding = false; });

  // ---- controls --------------------------------------------------------------------------------
  function query(extra) {
    const p = new URLSearchParams({ sort: view.sort, desc: view.desc ? "1" : "0", offset: String(view.offset),
                                    limit: String(PAGE) });
    if (view.q) p.set("q", view.q);
    if (view.state) p.set("state", view.state);
    return p.toString() + (extra || "");
  }

  function reconnect() {
    localStorage.setItem("livemon-grid-view", JSON.stringify({ sort: view.sort, desc: view.desc, q: view.q,
                                                               state: view.state }));
    $("dir").textContent = LM.t(view.desc ? "desc" : "asc");
    if (stream) stream.close();
    fetch("/api/rooms?" + query()).then((r) => r.json()).then((grid) => {
      for (const room of grid.rooms) if (room.spark) sparks.set(room.room_id, { ts: room.ts, values: room.spark.slice(-SPARK) });
      render(grid);
      stream = LM.stream("/api/stream?" + query(), { grid: render });
    });
  }

  function changed(patch) { Object.assign(view, patch); reconnect(); }

  function controls(colours) {
    T = colours.targets;   // target name -> the metric it applies to
    const names = new Set(colours.tile);
    metrics = catalogue.room.filter((m) => names.has(m.name));
    const sort = $("sort");
    sort.replaceChildren(...metrics.map((m) => LM.el("option", { value: m.name, text: LM.label(m) })),
                         LM.el("option", { value: "gmv_progress", text: LM.t("gmvProgress") }),
                         LM.el("option", { value: "alert", text: LM.t("alertState") }),
                         LM.el("option", { value: "room_id", text: LM.t("roomId") }));
    if (![...sort.options].some((o) => o.value === view.sort)) view.sort = "online";
    sort.value = view.sort;
    sort.addEventListener("change", () => changed({ sort: sort.value, offset: 0 }));
    $("dir").addEventListener("click", () => changed({ desc: !view.desc, offset: 0 }));
    $("state").value = view.state;
    $("state").addEventListener("change", () => changed({ state: $("state").value, offset: 0 }));
    const q = $("q");
    q.value = view.q;
    let typing = null;
    q.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => changed({ q: q.value.trim().slice(0, 64), offset: 0 }), 300);
    });
    $("prev").addEventListener("click", () => changed({ offset: Math.max(0, view.offset - PAGE) }));
    $("next").addEventListener("click", () => changed({ offset: view.offset + PAGE }));
  }

  // ---- sound for new critical alerts (off unless switched on; remembered) -------------------------
  let soundOn = localStorage.getItem("livemon-sound") === "1", audio = null;
  const heard = new Set();
  function soundButton() {
    const b = $("sound");
    b.textContent = LM.t(soundOn ? "soundOn" : "soundOff");
    b.setAttribute("aria-pressed", String(soundOn));
  }
  $("sound").addEventListener("click", () => {
    soundOn = !soundOn;
    localStorage.setItem("livemon-sound", soundOn ? "1" : "0");
    if (soundOn && !audio) audio = new AudioContext();   // made on a click: browsers allow it then
    soundButton();
  });
  soundButton();

  function beep() {
    if (!soundOn) return;
    audio = audio || new AudioContext();
    audio.resume();
    const osc = audio.createOscillator(), gain = audio.createGain();
    osc.frequency.value = 880; gain.gain.value = 0.15;
    osc.connect(gain).connect(audio.destination);
    osc.start(); osc.stop(audio.currentTime + 0.4);
  }

  // ---- the banner of firing critical alerts ------------------------------------------------------
  let bannerKey = "";
  function banner(grid) {
    const alerts = grid.critical || [];
    const key = alerts.map((a) => [a.room_id, a.rule, a.cdn].join("|")).join(",") + "#" + grid.critical_count;
    let fresh = false;
    for (const a of alerts) {
      const id = [a.room_id, a.rule, a.cdn].join("|");
      if (!heard.has(id)) { heard.add(id); fresh = true; }
    }
    if (fresh && lastGrid) beep();   // not for the alerts already firing when the page opened
    if (key === bannerKey) return;   // unchanged: its links stay the same nodes
    bannerKey = key;
    const node = $("banner");
    node.classList.toggle("hidden", !alerts.length);
    node.replaceChildren(LM.el("strong", { text: LM.t("banner", grid.critical_count) }),
      ...alerts.slice(0, 6).map((a) => LM.el("a", { href: "/room/" + encodeURIComponent(a.room_id), class: "banner-alert",
                                                    text: `${a.room_id} · ${a.rule}${a.cdn ? " (" + a.cdn + ")" : ""}` })),
      ...(grid.critical_count > 6 ? [LM.el("span", { text: LM.t("more", grid.critical_count - 6) })] : []));
  }

  // ---- tiles -----------------------------------------------------------------------------------
  function mark(node, level) {
    // Colour, symbol and word: a level reads without colour too.
    node.dataset.level = level || "none";
    node.title = level ? LM.t("level")[level] : "";
  }

  function makeTile(room) {
    const p = {};
    p.name = LM.el("span", { class: "name", text: room.room_id });
    p.badge = LM.el("span", { class: "badge" });
    p.title = LM.el("div", { class: "show-title" });
    p.online = LM.el("span", { class: "value" });
    p.onlineMark = LM.el("span", { class: "mark" });
    p.fill = LM.el("div", { class: "fill" });
    p.progressText = LM.el("span", { class: "progress-text" });
    p.progress = LM.el("div", { class: "progress" }, LM.el("div", { class: "track" }, p.fill), p.progressText);
    // The product presented now (讲解中) with its window CTR and conversion, and the top traffic source.
    p.pinName = LM.el("span", { class: "pin-name" });
    p.pinFigures = LM.el("span", { class: "pin-figures" });
    p.pin = LM.el("div", { class: "pin hidden" }, LM.el("span", { class: "pin-badge", text: LM.t("pinned") }), " ", p.pinName, " ",
                  p.pinFigures);
    p.sourceName = LM.el("span", { class: "source-name" });
    p.source = LM.el("div", { class: "top-source hidden" }, LM.el("span", { class: "label", text: LM.t("topSource") }), " ",
                     p.sourceName);
    p.canvas = LM.el("canvas", { "aria-hidden": "true" });
    p.dl = LM.el("dl", {});
    p.cells = {};
    const node = LM.el("a", { class: "tile", href: "/room/" + encodeURIComponent(room.room_id), "data-room": room.room_id },
      LM.el("div", { class: "head" }, p.name, p.badge), p.title,
      LM.el("div", { class: "online" }, p.online, " ", LM.el("small", { text: LM.t("online") }), " ", p.onlineMark),
      p.pin, p.source, p.progress, p.canvas, p.dl);
    return { node, parts: p };
  }

  function cell(p, metric) {
    let c = p.cells[metric.name];
    if (!c) {
      c = p.cells[metric.name] = { value: LM.el("span", { class: "v" }), markNode: LM.el("span", { class: "mark" }) };
      c.box = LM.el("div", { class: "metric", "data-metric": metric.name },
                    LM.el("dt", { text: LM.label(metric) }), LM.el("dd", {}, c.value, c.markNode));
      p.dl.append(c.box);
    }
    return c;
  }

  function setText(node, text) { if (node.textContent !== text) node.textContent = text; }

  function update(entry, room) {
    const { node, parts: p } = entry, m = room.metrics, levels = room.levels || {};
    node.className = "tile " + room.alert;
    node.dataset.alert = room.alert;
    node.dataset.ts = String(room.ts);   // the instant of the tile's figures
    setText(p.badge, LM.t("state")[room.alert] + (room.alert !== "ok" && room.alerts ? " · " + room.alerts : ""));
    p.badge.className = "badge " + room.alert;
    const title = room.show && room.show.title ? room.show.title : "";
    setText(p.title, title);
    p.title.classList.toggle("hidden", !title);
    setText(p.online, LM.int(m.online));
    setText(p.onlineMark, levels.online ? LM.LEVEL_MARK[levels.online] : "");
    mark(p.online.parentNode, levels.online);
    const pin = room.pinned;
    p.pin.classList.toggle("hidden", !pin);
    if (pin) {
      setText(p.pinName, pin.product_id);
      setText(p.pinFigures, `${LM.t("ctrShort")} ${LM.pct(pin.ctr)} · ${LM.t("convShort")} ${LM.pct(pin[T.conversion])}`);
    }
    const source = room.top_source;
    p.source.classList.toggle("hidden", !source);
    if (source) setText(p.sourceName, LM.valueName("source", source.source) + (source.share === null ? "" : " " + LM.pct(source.share)));
    // GMV of the show against its target.
    const goal = room.target && room.target.gmv;
    p.progress.classList.toggle("hidden", !goal);
    if (goal) {
      const share = room.gmv_progress || 0;
      p.fill.style.width = Math.min(100, share * 100) + "%";
      setText(p.progressText, `${LM.money(m[T.gmv])} / ${LM.t("target")} ${LM.money(goal)} · ${LM.t("ofTarget", LM.pct(share))}`);
      mark(p.progress, levels[T.gmv]);
    }
    for (const metric of metrics) {
      if (metric.name === "online" || !(metric.name in m)) continue;
      const c = cell(p, metric), level = levels[metric.name];
      const goalOf = metric.name === T.conversion && room.target ? room.target.conversion : null;
      setText(c.value, LM.fmt(metric, m[metric.name]) + (goalOf ? ` / ${LM.pct(goalOf)}` : ""));
      setText(c.markNode, level && level !== "ok" ? " " + LM.LEVEL_MARK[level] : "");
      mark(c.box, level);
    }
    // The sparkline: the page keeps the history; frames carry the latest value only.
    const spark = sparks.get(room.room_id) || { ts: -Infinity, values: [] };
    if (room.ts > spark.ts) {
      spark.ts = room.ts; spark.values.push(m.online);
      if (spark.values.length > SPARK) spark.values.shift();
      sparks.set(room.room_id, spark);
    }
    LM.sparkline(p.canvas, spark.values, LM.STATE_COLOR[room.alert]);
  }

  function render(grid) {
    const keep = new Set();
    grid.rooms.forEach((room, i) => {
      keep.add(room.room_id);
      let entry = nodes.get(room.room_id);
      if (!entry) { entry = makeTile(room); nodes.set(room.room_id, entry); }
      update(entry, room);
      // Move (never rebuild) a node whose rank changed; not while a pointer is down.
      if (tiles.children[i] !== entry.node && !(holding && entry.node.parentNode)) {
        tiles.insertBefore(entry.node, tiles.children[i] || null);
      }
    });
    for (const [id, entry] of nodes) {
      if (!keep.has(id) && !(holding && entry.node.matches(":hover"))) {
        entry.node.remove(); nodes.delete(id); sparks.delete(id);
      }
    }
    const none = grid.rooms.length === 0;
    $("empty").classList.toggle("hidden", !none);
    $("empty").textContent = grid.total_rooms && none ? LM.t("noMatch") : LM.t("waiting");
    const online = grid.rooms.reduce((sum, r) => sum + (r.metrics.online || 0), 0);
    $("summary").textContent = LM.t("summary", grid.total_rooms, LM.int(online), grid.alerts_active, grid.workers.length) +
      " · " + LM.t("updated", LM.time(grid.now)) + (grid.broker_error ? " · " + LM.t("broker", grid.broker_error) : "");
    const first = grid.matched ? grid.offset + 1 : 0, last = Math.min(grid.offset + grid.limit, grid.matched);
    $("page-info").textContent = LM.t("page", first, last, grid.matched);
    $("prev").disabled = grid.offset <= 0;
    $("next").disabled = grid.offset + grid.limit >= grid.matched;
    banner(grid);
    lastGrid = grid;
    document.body.dataset.frames = String(+(document.body.dataset.frames || 0) + 1);
  }

  Promise.all([LM.loadCatalogue(), fetch("/api/thresholds").then((r) => r.json())]).then(([c, colours]) => {
    catalogue = c;
    controls(colours);
    reconnect();
  });
})();
