// The list of recorded shows, each linking to its review; two ticked open the comparison.
"use strict";

(function () {
  LM.translate();
  document.title = LM.t("shows") + " · livemon";
  const body = document.getElementById("shows");
  const button = document.getElementById("compare");
  const ticked = () => [...body.querySelectorAll("input:checked")].map((i) => i.value);

  function duration(s) {
    const secs = Math.max(0, (s.ended || s.last_ts) - s.start);
    return LM.t("durationText", Math.floor(secs / 60), Math.round(secs % 60));
  }

  const more = document.getElementById("more");
  let loaded = 0;

  // One page at a time, newest first; "Older shows" appends the next page.
  function load() {
    fetch("/api/shows?offset=" + loaded).then((r) => r.json()).then(({ shows, total }) => {
      loaded += shows.length;
      document.getElementById("empty").classList.toggle("hidden", total > 0);
      more.classList.toggle("hidden", loaded >= total);
      more.textContent = LM.t("older", total - loaded);
      body.append(...shows.map((s) => LM.el("tr", {},
        LM.el("td", {}, LM.el("input", { type: "checkbox", value: s.key, "aria-label": "compare " + s.key,
                                         onchange: () => { button.disabled = ticked().length !== 2; } })),
        // A key made from the start time is in UTC: the local start time goes beside it.
        LM.el("td", {}, LM.el("a", { href: "/review/" + encodeURIComponent(s.key), text: s.key }),
              LM.el("span", { class: "local", text: LM.t("startedAt", LM.dateTime(s.start)) })),
        LM.el("td", { text: s.room_id }), LM.el("td", { text: s.title || "" }),
        LM.el("td", { text: LM.dateTime(s.start) }),
        LM.el("td", { text: duration(s) + (s.ended ? "" : LM.t("liveNow")) }),
        LM.el("td", { text: String(s.alerts) }), LM.el("td", { text: String(s.failovers) }))));
    });
  }
  more.addEventListener("click", load);
  load();

  button.addEventListener("click", () => {
    const [a, b] = ticked();
    location.href = "/review/" + encodeURIComponent(a) + "?compare=" + encodeURIComponent(b);
  });
})();
