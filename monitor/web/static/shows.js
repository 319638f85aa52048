// The list of recorded shows, each linking to its review; two ticked open the comparison.
"use strict";

(function () {
  const body = document.getElementById("shows");
  const button = document.getElementById("compare");
  const ticked = () => [...body.querySelectorAll("input:checked")].map((i) => i.value);

  function duration(s) {
    const secs = Math.max(0, (s.ended || s.last_ts) - s.start);
    return `${Math.floor(secs / 60)} min ${Math.round(secs % 60)} s`;
  }

  fetch("/api/shows").then((r) => r.json()).then(({ shows }) => {
    document.getElementById("empty").classList.toggle("hidden", shows.length > 0);
    body.replaceChildren(...shows.map((s) => LM.el("tr", {},
      LM.el("td", {}, LM.el("input", { type: "checkbox", value: s.key, "aria-label": "compare " + s.key,
                                       onchange: () => { button.disabled = ticked().length !== 2; } })),
      LM.el("td", {}, LM.el("a", { href: "/review/" + encodeURIComponent(s.key), text: s.key })),
      LM.el("td", { text: s.room_id }), LM.el("td", { text: s.title || "" }),
      LM.el("td", { text: new Date(s.start * 1000).toLocaleString() }),
      LM.el("td", { text: duration(s) + (s.ended ? "" : " (live)") }),
      LM.el("td", { text: String(s.alerts) }), LM.el("td", { text: String(s.failovers) }))));
  });

  button.addEventListener("click", () => {
    const [a, b] = ticked();
    location.href = "/review/" + encodeURIComponent(a) + "?compare=" + encodeURIComponent(b);
  });
})();
