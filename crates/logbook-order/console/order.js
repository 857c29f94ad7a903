// The console's Order page: find an order by id or a unique prefix, show where it is now
// (status header), the time between its milestones, and its timeline (date headings, time,
// type, key fields, actor), each event expandable to its data and metadata.
// Every value is the client's data: rendered with textContent only (Console.el).
"use strict";
(() => {
  const { el, api, duration, json, showError, go } = Console;

  function render(container, args) {
    const id = args.join("/");
    const input = el("input", { type: "search", id: "order-id", placeholder: "order id, or the start of one", value: id, "aria-label": "Order id" });
    const form = el("form", { class: "row", onsubmit: (e) => { e.preventDefault(); if (input.value.trim()) go("#/order/" + encodeURIComponent(input.value.trim())); } },
      input, el("button", { type: "submit" }, "Find"));
    container.append(el("h1", {}, "Order"), form);
    const body = el("div", { id: "order" });
    container.append(body);
    if (id) showOrder(body, id); else showRecent(body);
  }

  async function showRecent(body) {
    const card = el("div", { class: "card" }, el("h2", {}, "Orders"), el("p", { class: "muted" }, "Loading…"));
    body.append(card);
    try {
      const reply = await api("streams?" + new URLSearchParams({ prefix: "order-", count: "25" }));
      card.lastChild.remove();
      if (reply.streams.length === 0) { card.append(el("p", { class: "muted" }, "No orders yet.")); return; }
      card.append(el("ul", { class: "orders" }, reply.streams.map((s) => {
        const orderId = s.name.slice("order-".length);
        return el("li", {}, el("a", { href: "#/order/" + encodeURIComponent(orderId) }, orderId), el("span", { class: "muted" }, ` · ${s.version} events`));
      })));
    } catch (error) { card.lastChild.remove(); showError(card, error); }
  }

  async function showOrder(body, id) {
    body.append(el("p", { class: "muted" }, "Loading…"));
    let order;
    try {
      order = await api("order?" + new URLSearchParams({ id }));
    } catch (error) {
      body.textContent = "";
      showError(body, error);
      return;
    }
    body.textContent = "";
    const status = order.status || {};
    const field = (label, value, cls) => el("div", {}, el("dt", {}, label), el("dd", { class: cls || null }, value));
    const paid = status.paid ? (status.refunded ? `${status.paid} (refunded ${status.refunded})` : status.paid) : "not paid";
    body.append(el("section", { class: "card", id: "order-status" },
      el("h2", {}, "Order ", el("span", { id: "order-id-shown" }, order.order_id)),
      el("dl", { class: "status" },
        field("state", el("span", { class: "state " + (status.state || ""), id: "order-state" }, status.state || "no events")),
        field("items", String(status.items ?? 0)),
        field("amount paid", paid),
        field("carrier", status.carrier || (status.tracking ? "not recorded" : "not shipped")),
        field("tracking", status.tracking || "not shipped"),
        field("last change", (status.last_change || "").replace("T", " ").replace(/\.\d+Z$/, " UTC"))),
      order.steps.length ? el("ul", { class: "steps", id: "order-steps" }, order.steps.map((s) => el("li", {}, s.text))) : null,
      order.not_stored > 0 ? el("p", { class: "muted" }, `${order.not_stored} earlier events are no longer in the hot store (archived or removed by retention).`) : null,
      order.truncated ? el("p", { class: "muted" }, "Only the first events are shown.") : null));

    const heading = el("h2", {}, "");
    const list = el("div", { class: "card timeline", id: "timeline" }, heading);
    let day = null; let previous = null; let shown = 0;
    // Replies stop at the daemon's reply size: `next` is where the following events start.
    const add = (page) => {
      for (const entry of page.entries) {
        const entryDay = entry.at.slice(0, 10);
        if (entryDay !== day) { list.append(el("div", { class: "day" }, entryDay)); day = entryDay; }
        const gap = previous === null ? null : "+" + duration(entry.timestamp_us - previous);
        previous = entry.timestamp_us;
        const event = { stream: order.stream, version: entry.version, position: entry.position, id: entry.event_id, at: entry.at, data: entry.data, metadata: entry.metadata };
        list.append(Console.eventDetails([
          el("span", { class: "time" }, entry.time),
          el("span", { class: "type" }, entry.event_type),
          entry.summary ? el("span", { class: "fields" }, entry.summary) : null,
          entry.actor ? el("span", { class: "actor" }, "(" + entry.actor + ")") : null,
          gap ? el("span", { class: "gap" }, gap) : null,
        ], event));
      }
      shown += page.entries.length;
      heading.textContent = `Timeline (${shown}${page.next ? "+" : ""} events, times in UTC)`;
      if (page.next) {
        const more = el("button", { class: "secondary more", type: "button", id: "timeline-more", onclick: async () => {
          more.disabled = true;
          try {
            const next = await api("order?" + new URLSearchParams({ id, from: String(page.next) }));
            more.remove();
            add(next);
          } catch (error) { more.remove(); showError(list, error); }
        } }, "More events");
        list.append(more);
      }
    };
    add(order);
    body.append(list);
  }

  Console.register({ id: "order", title: "Order", render });
})();
