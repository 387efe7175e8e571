// Live countdowns to SLA deadlines, and the audit page's time slider. No framework: htmx
// does the partial updates; this only ticks clocks and maps the slider to an instant.
(function () {
  "use strict";

  function left(ms) {
    const s = Math.abs(Math.round(ms / 1000));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), sec = s % 60;
    const text = d ? `${d}d ${h}h ${m}m` : h ? `${h}h ${m}m` : `${m}m ${sec}s`;
    return ms >= 0 ? `${text} left` : `overdue by ${text}`;
  }

  function tick() {
    const now = Date.now();
    document.querySelectorAll("time.countdown").forEach(function (el) {
      const due = Date.parse(el.getAttribute("datetime"));
      if (Number.isNaN(due)) return;
      el.textContent = left(due - now);
      el.classList.toggle("overdue", due < now);
      el.title = "due " + new Date(due).toISOString();
    });
  }

  function slider() {
    const range = document.getElementById("as-of-slider");
    if (!range) return;
    const instants = (range.dataset.instants || "").split(" ");
    range.addEventListener("input", function () {
      const i = Number(range.value) - 1;
      document.getElementById("as-of").value = instants[i] || "";
      document.getElementById("as-of-label").textContent = range.value;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    slider();
    setInterval(tick, 1000);
  });
  document.addEventListener("htmx:afterSwap", tick);
})();
