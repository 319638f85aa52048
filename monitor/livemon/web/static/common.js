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

// ---- language ------------------------------------------------------------------------------
// Chinese first; the English switch is remembered in localStorage. Metric names come from the
// catalogue (zh/en), every other string from this table.
LM.MESSAGES = {
  zh: {
    switchTo: "English", rooms: "直播间", shows: "已录制场次", waiting: "等待直播间数据…", online: "在线",
    connecting: "连接中…", live: "实时", reconnecting: "重新连接中…",
    summary: (n, online, alerts, workers) => `${n} 个直播间 · 在线 ${online} 人 · ${alerts} 条活跃告警 · ${workers} 个 worker`,
    updated: (t) => `更新于 ${t}`, broker: (e) => `消息队列不可达:${e}`,
    search: "搜索直播间 ID 或标题", sortBy: "排序", filter: "筛选", all: "全部直播间", withAlerts: "有告警",
    criticalOnly: "严重告警", desc: "↓ 降序", asc: "↑ 升序", prev: "‹ 上一页", next: "下一页 ›",
    page: (a, b, n) => `${a}–${b} / 共 ${n} 个`, noMatch: "没有符合条件的直播间",
    roomId: "直播间 ID", alertState: "告警状态", gmvProgress: "目标完成度",
    soundOn: "🔔 提示音:开", soundOff: "🔕 提示音:关",
    banner: (n) => `⚠ ${n} 条严重告警待处理:`, more: (n) => `另有 ${n} 条`,
    target: "目标", ofTarget: (p) => `完成 ${p}`,
    level: { ok: "正常", warn: "注意", bad: "异常" },
    state: { ok: "正常", pending: "待定", warning: "警告", critical: "严重" },
    // room page
    back: "← 直播间", token: "操作口令", tokenHint: "操作时需要", funnel: "本场转化漏斗",
    activeAlerts: "活跃告警", failover: "CDN 切换", from: "从", to: "到", failOver: "切换", cancelFailover: "取消切换",
    incidents: "故障", alertFeed: "告警记录", operatorLog: "操作记录", none: "无",
    steps: ["观看人数", "停留 60 秒", "点击商品", "下单", "支付"],
    funnelAsOf: (t) => `本场汇总,截至 ${t}`, funnelWaiting: "等待本场汇总…", stepConv: (p) => `转化 ${p}`,
    marks: { pin: "讲解", promo: "促销", firing: "告警", resolved: "恢复", failover: "CDN 切换" },
    markPin: (p) => `讲解 ${p}`, markPromo: (type, id) => `${type} ${id}`, markFiring: (r) => `告警 ${r}`,
    markResolved: (r) => `恢复 ${r}`, markFailover: (a, b) => `切换 ${a}→${b}`,
    promoTypes: { seckill: "秒杀", discount: "折扣", coupon: "优惠券", gift: "赠品", lottery: "抽奖", other: "促销" },
    targetSet: "设置目标",
    ack: "确认告警", silence: "静默 1 小时", acked: (by) => "已确认" + (by ? ",确认人 " + by : ""),
    silenced: (t) => `静默至 ${t}`, on: "于",
    unreachable: "未发送:监控服务不可达", badToken: "被拒绝:请输入有效的操作口令", refused: (e) => `被拒绝:${e}`,
    sent: (a) => `已发送:${a}`, roomSummary: (online, t) => `在线 ${online} 人 · 数据时间 ${t}`, worker: "worker",
    noData: "该直播间暂无实时数据",
    confirmTitle: "确认 CDN 切换", confirmText: (room, from, to) => `将直播间 ${room} 的观众从 ${from} 切换到 ${to}?`,
    confirm: "确认切换", abort: "取消",
    incident: (d, a, r) => `发现 ${d} · 确认 ${a} · 恢复 ${r}`, ackedBy: (by) => ` · 确认人 ${by}`, by: "操作人", min: "分钟",
    // sales and start-up (SPEC §8, §9, §11)
    pinned: "讲解中", topSource: "主要来源", ctrShort: "点击率", convShort: "转化", productCtr: "点击率",
    carts: "加购人数", product: "商品", source: "来源", value: "值", viewersShort: "观看", cdn: "CDN",
    productsTitle: "商品排行(1 分钟窗口,讲解中置顶)", sourcesTitle: "流量来源(1 分钟窗口)",
    devicesTitle: "终端分布", regionsTitle: "地域 TOP 10", agesTitle: "年龄分布", gendersTitle: "性别分布",
    followersTitle: "粉丝与非粉丝", showTitle: "本场累计", startupTitle: "启播质量(1 分钟窗口)", spend: "投放花费",
    noPin: "当前没有讲解中的商品", noProducts: "窗口内暂无商品点击、加购或订单", shownOf: (k, n) => `显示 ${k} / 共 ${n} 个`,
    values: {
      source: { organic: "自然流量", paid: "付费投放", social: "社交分享", search: "搜索", follow: "关注", other: "其他", unknown: "未知" },
      device: { mobile: "手机", pc: "电脑", tv: "电视", other: "其他", unknown: "未知" },
      gender: { female: "女", male: "男", other: "其他", unknown: "未知" },
      follower: { yes: "粉丝", no: "非粉丝", unknown: "未知" },
      age_band: { unknown: "未知" }, region: { unknown: "未知" },
    },
    // shows list
    showsHint: "打开查看复盘;勾选两场可对比", compare: "对比所选", show: "场次", room: "直播间", title: "标题",
    start: "开始(本地时间)", duration: "时长", alerts: "告警", failovers: "切换", noShows: "还没有录制的场次。",
    older: (n) => `更早的场次(还有 ${n} 场)`, liveNow: "(直播中)", durationText: (m, s) => `${m} 分 ${s} 秒`,
    startedAt: (t) => `本地 ${t} 开始`,
    // review
    minutesSince: "(开播后分钟数)", wholeRoom: "全场",
  },
  en: {
    switchTo: "中文", rooms: "Live rooms", shows: "Recorded shows", waiting: "Waiting for live rooms…", online: "online",
    connecting: "connecting…", live: "live", reconnecting: "reconnecting…",
    summary: (n, online, alerts, workers) => `${n} rooms · ${online} online · ${alerts} active alerts · ${workers} workers`,
    updated: (t) => `updated ${t}`, broker: (e) => `broker unreachable: ${e}`,
    search: "Search room id or title", sortBy: "Sort", filter: "Filter", all: "All rooms", withAlerts: "With alerts",
    criticalOnly: "Critical", desc: "↓ desc", asc: "↑ asc", prev: "‹ Prev", next: "Next ›",
    page: (a, b, n) => `${a}–${b} of ${n}`, noMatch: "No room matches",
    roomId: "Room id", alertState: "Alert state", gmvProgress: "Target progress",
    soundOn: "🔔 Sound on", soundOff: "🔕 Sound off",
    banner: (n) => `⚠ ${n} critical alert${n === 1 ? "" : "s"} to handle:`, more: (n) => `${n} more`,
    target: "target", ofTarget: (p) => `${p} done`,
    level: { ok: "ok", warn: "watch", bad: "bad" },
    state: { ok: "ok", pending: "pending", warning: "warning", critical: "critical" },
    back: "← Rooms", token: "Operator token", tokenHint: "needed for actions", funnel: "Show funnel",
    activeAlerts: "Active alerts", failover: "CDN failover", from: "from", to: "to", failOver: "Fail over",
    cancelFailover: "Cancel failover", incidents: "Incidents", alertFeed: "Alert feed", operatorLog: "Operator actions",
    none: "none", steps: ["Viewers", "Stayed 60 s", "Clicked a product", "Ordered", "Paid"],
    funnelAsOf: (t) => `show summary as of ${t}`, funnelWaiting: "waiting for the show summary…",
    stepConv: (p) => `${p} of previous`,
    marks: { pin: "Presenting", promo: "Promotion", firing: "Alert", resolved: "Resolved", failover: "CDN failover" },
    markPin: (p) => `Presenting ${p}`, markPromo: (type, id) => `${type} ${id}`, markFiring: (r) => `alert ${r}`,
    markResolved: (r) => `resolved ${r}`, markFailover: (a, b) => `failover ${a}→${b}`,
    promoTypes: { seckill: "Flash sale", discount: "Discount", coupon: "Coupon", gift: "Gift", lottery: "Lottery", other: "Promotion" },
    targetSet: "target",
    ack: "Acknowledge", silence: "Silence 1 h", acked: (by) => "acknowledged" + (by ? " by " + by : ""),
    silenced: (t) => `silenced until ${t}`, on: "on",
    unreachable: "Not sent: the monitor is unreachable", badToken: "Refused: enter a valid operator token",
    refused: (e) => `Refused: ${e}`, sent: (a) => `Sent: ${a}`,
    roomSummary: (online, t) => `${online} online · data at ${t}`, worker: "worker", noData: "no live data for this room yet",
    confirmTitle: "Confirm CDN failover", confirmText: (room, from, to) => `Move the viewers of ${room} from ${from} to ${to}?`,
    confirm: "Fail over", abort: "Cancel",
    incident: (d, a, r) => `detect ${d} · acknowledge ${a} · resolve ${r}`, ackedBy: (by) => ` · acked by ${by}`,
    by: "by", min: "min",
    pinned: "Presenting", topSource: "Top source", ctrShort: "CTR", convShort: "conv.", productCtr: "CTR",
    carts: "Carters", product: "Product", source: "Source", value: "Value", viewersShort: "viewers", cdn: "CDN",
    productsTitle: "Products (1-minute window, presenting first)", sourcesTitle: "Traffic sources (1-minute window)",
    devicesTitle: "Devices", regionsTitle: "Top 10 regions", agesTitle: "Age bands", gendersTitle: "Gender",
    followersTitle: "Followers vs not", showTitle: "Show so far", startupTitle: "Start-up quality (1-minute window)",
    spend: "Ad spend", noPin: "No product presented now", noProducts: "No product clicks, carts or orders in the window",
    shownOf: (k, n) => `${k} of ${n} shown`,
    values: {
      source: { organic: "Organic", paid: "Paid", social: "Social", search: "Search", follow: "Following", other: "Other", unknown: "Unknown" },
      device: { mobile: "Mobile", pc: "PC", tv: "TV", other: "Other", unknown: "Unknown" },
      gender: { female: "Female", male: "Male", other: "Other", unknown: "Unknown" },
      follower: { yes: "Followers", no: "Not following", unknown: "Unknown" },
      age_band: { unknown: "Unknown" }, region: { unknown: "Unknown" },
    },
    showsHint: "open one for its review; tick two to compare", compare: "Compare selected", show: "Show", room: "Room",
    title: "Title", start: "Start (local time)", duration: "Duration", alerts: "Alerts", failovers: "Failovers",
    noShows: "No show recorded yet.", older: (n) => `Older shows (${n} more)`, liveNow: " (live)",
    durationText: (m, s) => `${m} min ${s} s`, startedAt: (t) => `started ${t} local`,
    minutesSince: " (minutes since show start)", wholeRoom: "room",
  },
};

LM.lang = (function () {
  let stored = null;
  try { stored = localStorage.getItem("livemon-lang"); } catch (e) { /* storage off: the default */ }
  const given = stored || document.documentElement.dataset.lang || "zh";
  return LM.MESSAGES[given] ? given : "zh";
})();
LM.t = (key, ...args) => {
  const m = LM.MESSAGES[LM.lang][key];
  return typeof m === "function" ? m(...args) : m;
};
LM.setLang = function (lang) {
  try { localStorage.setItem("livemon-lang", lang); } catch (e) { /* not remembered */ }
  location.reload();
};

// Static text of a page: elements marked data-i18n (text), data-i18n-placeholder, data-i18n-title.
LM.translate = function (root) {
  document.documentElement.lang = LM.lang === "zh" ? "zh-CN" : "en";
  for (const node of (root || document).querySelectorAll("[data-i18n]")) node.textContent = LM.t(node.dataset.i18n);
  for (const node of (root || document).querySelectorAll("[data-i18n-placeholder]")) node.placeholder = LM.t(node.dataset.i18nPlaceholder);
  for (const node of (root || document).querySelectorAll("[data-i18n-title]")) node.title = LM.t(node.dataset.i18nTitle);
  const button = document.getElementById("lang");
  if (button) {
    button.textContent = LM.t("switchTo");
    button.onclick = () => LM.setLang(LM.lang === "zh" ? "en" : "zh");
  }
};

// ---- numbers and times ---------------------------------------------------------------------------
const LOCALE = LM.lang === "zh" ? "zh-CN" : "en-US";
const nf = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 0 });
const nf1 = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 1 });
const nf2 = new Intl.NumberFormat(LOCALE, { maximumFractionDigits: 2 });
LM.int = (v) => (v === null || v === undefined ? "–" : nf.format(v));
LM.num = (v) => (v === null || v === undefined ? "–" : nf1.format(v));
LM.pct = (v) => (v === null || v === undefined ? "–" : (v * 100 < 10 ? nf2 : nf1).format(v * 100) + "%");
// Amounts: ¥12.8万 / ¥1.2亿 in Chinese, ¥128K / ¥1.2M / ¥3.4B in English; exact below 10,000.
const MONEY_UNITS = { zh: [[1e8, "亿"], [1e4, "万"]], en: [[1e9, "B"], [1e6, "M"], [1e4, "K", 1e3]] };
LM.money = function (v) {
  if (v === null || v === undefined) return "–";
  const sign = v < 0 ? "-" : "", a = Math.abs(v);
  for (const [from, unit, divisor] of MONEY_UNITS[LM.lang]) {
    if (a >= from) return sign + "¥" + nf1.format(Math.round((a / (divisor || from)) * 10) / 10) + unit;
  }
  return sign + "¥" + nf.format(a);
};
// Small amounts (a UV value, GMV per viewer) keep two decimals: ¥2.35, not ¥2.
LM.moneyFine = (v) => (v !== null && v !== undefined && Math.abs(v) < 100 ? (v < 0 ? "-¥" : "¥") + nf2.format(Math.abs(v)) : LM.money(v));
LM.secs = (v) => (v === null || v === undefined ? "–" : nf.format(v) + (LM.lang === "zh" ? " 秒" : " s"));
LM.ms = (v) => (v === null || v === undefined ? "–" : nf.format(v) + " ms");
LM.val = (v) => (v === null || v === undefined ? "–" : Math.abs(v) < 10 ? String(+v.toPrecision(3)) : nf1.format(v));
// Times in the browser's own zone.
LM.time = (ts) => (ts ? new Date(ts * 1000).toLocaleTimeString(LOCALE, { hour12: false }) : "–");
LM.dateTime = (ts) => (ts ? new Date(ts * 1000).toLocaleString(LOCALE, { hour12: false }) : "–");

// The metric catalogue (livemon.catalogue): names, labels, formats, charts, tiles.
LM.FORMAT = { int: LM.int, num: LM.num, pct: LM.pct, money: LM.money, ms: LM.ms, s: LM.secs };
LM.fmt = (metric, v) => (LM.FORMAT[metric.format] || LM.val)(v);
LM.label = (metric) => metric[LM.lang] || metric.en;
LM.loadCatalogue = () => fetch("/api/catalogue").then((r) => r.json());

// The series of one catalogue chart: its room metrics, then (for a per-CDN chart) one series
// per CDN of its CDN metric. `at(series)` is given each series to fetch its data.
LM.chartSeries = function (catalogue, chart, cdnNames, palette) {
  const P = palette || LM.PALETTE;
  const series = catalogue.room.filter((m) => m.charts.includes(chart.id)).map((m, i) => ({
    metric: m.name, label: chart.cdn ? LM.t("wholeRoom") : LM.label(m), kind: m.format, scale: m.axis || undefined,
    color: chart.cdn ? null : P[i % P.length], dash: chart.cdn ? [4, 4] : undefined }));
  const perCdn = chart.cdn ? catalogue.cdn.find((m) => m.charts.includes(chart.id)) : null;
  if (perCdn) {
    cdnNames.forEach((c, i) => series.push({ cdn: c, metric: perCdn.name, label: c, kind: perCdn.format,
                                             color: P[(i + 1) % P.length] }));
  }
  return series;
};

LM.clear = function (node) { while (node.firstChild) node.removeChild(node.firstChild); };

// The name of a breakdown value (SPEC §8) in the page's language; a region or unknown value as given.
LM.valueName = (dim, value) => ((LM.t("values")[dim] || {})[value]) || String(value);
LM.setText = (node, text) => { if (node.textContent !== text) node.textContent = text; };

// Children kept by key: each made once, moved (never rebuilt) when its rank changes, updated in
// place; those no longer listed are removed. `make(item)` -> node, `update(node, item, index)`.
const KEYED = new WeakMap();
LM.keyed = function (parent, items, keyOf, make, update) {
  let held = KEYED.get(parent);
  if (!held) { held = new Map(); KEYED.set(parent, held); }
  const keep = new Set();
  items.forEach((item, i) => {
    const key = keyOf(item);
    keep.add(key);
    let node = held.get(key);
    if (!node) { node = make(item); node.dataset.key = key; held.set(key, node); }
    update(node, item, i);
    if (parent.children[i] !== node) parent.insertBefore(node, parent.children[i] || null);
  });
  for (const [key, node] of held) if (!keep.has(key)) { node.remove(); held.delete(key); }
};


// A server-sent-event stream with its state shown in the header dot; `close()` ends it for good.
LM.stream = function (url, handlers) {
  const dot = document.getElementById("conn");
  const handle = { source: null, closed: false, close() { this.closed = true; if (this.source) this.source.close(); } };
  function open() {
    if (handle.closed) return;
    const source = handle.source = new EventSource(url);
    source.onopen = () => { if (dot) { dot.className = "conn live"; dot.title = LM.t("live"); } };
    source.onerror = () => {
      if (dot) { dot.className = "conn down"; dot.title = LM.t("reconnecting"); }
      // The browser gives up after an error answer (503: too many streams): try again in a while.
      if (source.readyState === EventSource.CLOSED) setTimeout(open, 5000);
    };
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => fn(JSON.parse(event.data)));
    }
  }
  open();
  return handle;
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
// A level is never told by colour alone: each has a symbol and a word too.
LM.LEVEL_MARK = { ok: "✓", warn: "▲", bad: "✖" };
LM.PALETTE = ["#4aa3ff", "#ff9f43", "#39d98a", "#c77dff", "#ff6b6b", "#f1d37a", "#5ce1e6", "#b0b8c1"];
