// The console's Funnel page: cart-to-order conversion per retailer and drop-off per stage
// over the last 7, 30 or 90 days, drawn as SVG bar charts (built with DOM calls: the CSP
// allows no inline script or style) with the numbers beside them.
"use strict";
(() => {
  const { el, api, number, showError, go } = Console;
  const PERIODS = [7, 30, 90];

  function render(container, _args, params) {
    const days = PERIODS.includes(Number(params.get("days"))) ? Number(params.get("days")) : 30;
    container.append(el("h1", {}, "Funnel"),
      el("div", { class: "row", role: "group", "aria-label": "Period" }, PERIODS.map((d) =>
        el("button", { type: "button", class: "secondary period", "aria-pressed": d === days ? "true" : "false", onclick: () => go("#/funnel?days=" + d) }, `${d} days`))));
    const body = el("div", { id: "funnel" }, el("p", { class: "muted" }, "Loading…"));
    container.append(body);
    load(body, days);
  }

  async function load(body, days) {
    let reply;
    try { reply = await api("funnel?days=" + days); } catch (error) { body.textContent = ""; showError(body, error); return; }
    body.textContent = "";
    const stages = reply.funnel.stages;
    const carts = stages.length ? stages[0].orders : 0;
    body.append(el("p", { class: "muted" }, `${number(reply.events)} order events since ${reply.since.slice(0, 10)} (UTC).`));
    const stageRows = stages.map((s) => [s.stage, s.orders, s.pct_of_carts === null ? "–" : `${s.pct_of_carts}%`, s.drop_off_pct === null ? "–" : `−${number(s.drop_off)} (${s.drop_off_pct}%)`]);
    body.append(el("section", { class: "card" }, el("h2", {}, "Drop-off per stage (every retailer)"),
      el("div", { class: "chart-grid" },
        bars(stages.map((s) => ({ label: s.stage, value: s.orders, text: number(s.orders) })), Math.max(carts, 1), "stage-chart", ""),
        table(["stage", "orders", "of carts", "lost"], stageRows, "stage-table"))));
    const conv = reply.conversion;
    const convRows = conv.map((c) => [c.retailer_id, c.carts, c.orders, c.conversion_pct === null ? "–" : `${c.conversion_pct}%`]);
    body.append(el("section", { class: "card" }, el("h2", {}, "Cart-to-order conversion per retailer"),
      conv.length === 0 ? el("p", { class: "muted" }, "No carts in this period.") :
        el("div", { class: "chart-grid" },
          bars(conv.map((c) => ({ label: c.retailer_id, value: c.conversion_pct || 0, text: c.conversion_pct === null ? "–" : `${c.conversion_pct}%` })), 100, "conversion-chart", "conv"),
          table(["retailer", "carts", "orders", "conversion"], convRows, "conversion-table"))));
  }

  /** A horizontal bar chart: one row per item, the label above its bar, the value after it. */
  function bars(items, max, id, cls) {
    const row = 34; const width = 420; const labelHeight = 14; const barHeight = 14;
    const svg = el("svg:svg", { class: "chart", id, viewBox: `0 0 ${width} ${Math.max(items.length, 1) * row}`, role: "img", "aria-label": "bar chart" });
    items.forEach((item, i) => {
      const y = i * row;
      const w = Math.max(0, Math.round((item.value / max) * (width - 70)));
      svg.append(el("svg:text", { x: 0, y: y + labelHeight - 2 }, item.label));
      svg.append(el("svg:rect", { class: "bar " + cls, x: 0, y: y + labelHeight, width: Math.max(w, 1), height: barHeight, rx: 2 }));
      svg.append(el("svg:text", { class: "value", x: w + 6, y: y + labelHeight + barHeight - 2 }, item.text));
    });
    return el("div", {}, svg);
  }

  function table(headings, rows, id) {
    return el("div", { class: "scroll" }, el("table", { id },
      el("thead", {}, el("tr", {}, headings.map((h, i) => el("th", { class: i ? "num" : null }, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, r.map((v, i) => el("td", { class: i ? "num" : null }, typeof v === "number" ? number(v) : v)))))));
  }

  Console.register({ id: "funnel", title: "Funnel", render });
})();
