// The logbook console: a page shell (sign-in, navigation, hash routes) and the daemon's own
// pages (streams, one stream, live tail, health). Crates above the daemon add pages with
// Console.register (see crates/logbook-server/src/console.rs).
//
// Event data is the clients': everything shown goes through textContent (the el() helper),
// never innerHTML, and the Content-Security-Policy allows no inline script.
"use strict";

const Console = (() => {
  const TOKEN_KEY = "logbook-token";
  const pages = [];
  let identity = null;

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const node = tag.startsWith("svg:")
      ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
      : document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const t = token();
    if (t) h.Authorization = "Bearer " + t;
    return h;
  }

  /** GET /api/<path> as JSON; throws an Error with the API's message (and .status, .code). */
  async function api(path) {
    const response = await fetch("/api/" + path, { headers: headers() });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) {
      const error = new Error((body && body.error && body.error.message) || ("HTTP " + response.status));
      error.status = response.status;
      error.code = body && body.error && body.error.code;
      if (response.status === 401) showLogin(error.message);
      throw error;
    }
    return body;
  }

  /** `2 d 4 h`, `3 h 12 min`, `5 min 3 s`, `42 s` from microseconds. */
  function duration(us) {
    let s = Math.max(0, Math.round(us / 1e6));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d > 0) return h > 0 ? `${d} d ${h} h` : `${d} d`;
    if (h > 0) return m > 0 ? `${h} h ${m} min` : `${h} h`;
    if (m > 0) return s > 0 ? `${m} min ${s} s` : `${m} min`;
    return `${s} s`;
  }

  function number(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0; let v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
  }

  function json(value) {
    return value === null || value === undefined ? "(none)" : JSON.stringify(value, null, 2);
  }

  /** An event's data and metadata, folded under its summary line. */
  function eventDetails(summaryChildren, event) {
    return el("details", { class: "event" },
      el("summary", {}, summaryChildren),
      el("div", { class: "muted" }, `stream ${event.stream} · version ${event.version} · position ${event.position} · id ${event.id} · ${event.at}`),
      el("div", {}, "data"), el("pre", { class: "data" }, json(event.data)),
      el("div", {}, "metadata"), el("pre", { class: "metadata" }, json(event.metadata)));
  }

  function register(page) {
    pages.push(page);
  }

  function main() {
    return document.getElementById("main");
  }

  function showError(container, error) {
    container.append(el("p", { class: "error", role: "alert" }, error.message));
  }

  // ---- sign-in -------------------------------------------------------------------------
  function showLogin(message) {
    document.getElementById("login").hidden = false;
    main().hidden = true;
    document.getElementById("login-error").textContent = message && token() ? message : "";
  }

  async function start() {
    document.getElementById("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const input = document.getElementById("token");
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      input.value = "";
      boot();
    });
    document.getElementById("signout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      location.hash = "#/";
      location.reload();
    });
    window.addEventListener("hashchange", render);
    boot();
  }

  async function boot() {
    try {
      identity = await api("whoami");
    } catch (error) {
      if (error.status !== 401) { main().textContent = ""; showError(main(), error); }
      return;
    }
    document.getElementById("login").hidden = true;
    main().hidden = false;
    document.getElementById("who").textContent =
      identity.identity === "tenant" ? `tenant ${identity.name}` : identity.identity === "admin" ? "admin" : "open (no auth)";
    document.getElementById("signout").hidden = identity.identity === "open";
    render();
  }

  // ---- routing -------------------------------------------------------------------------
  /** `#/order/6f1c?x=1` -> { id: "order", args: ["6f1c"], params } */
  function route() {
    const hash = location.hash.replace(/^#\/?/, "");
    const [path, search] = hash.split("?");
    const parts = path.split("/").filter((p) => p !== "").map(decodeURIComponent);
    return { id: parts[0] || pages[0].id, args: parts.slice(1), params: new URLSearchParams(search || "") };
  }

  let cleanup = null;

  function render() {
    if (!identity) return;
    if (cleanup) { cleanup(); cleanup = null; }
    const { id, args, params } = route();
    const nav = document.getElementById("nav");
    nav.textContent = "";
    for (const page of pages) {
      if (page.hidden || (page.adminOnly && identity.identity === "tenant")) continue;
      nav.append(el("a", { href: "#/" + page.id, class: page.id === id || page.id === (findPage(id) || {}).nav ? "active" : null }, page.title));
    }
    const page = findPage(id) || pages[0];
    const container = main();
    container.textContent = "";
    document.title = `${page.title} · logbook console`;
    const result = page.render(container, args, params);
    if (typeof result === "function") cleanup = result;
  }

  function findPage(id) {
    return pages.find((p) => p.id === id);
  }

  function go(hash) {
    location.hash = hash;
  }

  document.addEventListener("DOMContentLoaded", () => {
    // The daemon's own pages follow the extensions' (which registered while loading).
    registerBuiltIns();
    start();
  });

  // ---- the daemon's own pages ----------------------------------------------------------
  function registerBuiltIns() {
    register({ id: "streams", title: "Streams", render: streamsPage });
    register({ id: "stream", title: "Stream", hidden: true, nav: "streams", render: streamPage });
    register({ id: "tail", title: "Live tail", render: tailPage });
    // A tenant's token gets 403 there (the counters are every tenant's): not in its navigation.
    register({ id: "health", title: "Health", adminOnly: true, render: healthPage });
  }

  function streamsPage(container, _args, params) {
    const prefix = params.get("prefix") || "";
    const input = el("input", { type: "search", id: "stream-prefix", placeholder: "stream name prefix, e.g. order-", value: prefix, "aria-label": "Stream prefix" });
    const form = el("form", { class: "row", onsubmit: (e) => { e.preventDefault(); go("#/streams?prefix=" + encodeURIComponent(input.value)); } },
      input, el("button", { type: "submit" }, "Browse"));
    const list = el("div", { class: "card" }, el("p", { class: "muted" }, "Loading…"));
    container.append(el("h1", {}, "Streams"), form, list);
    const load = async (after) => {
      const q = new URLSearchParams({ prefix, count: "50" });
      if (after) q.set("after", after);
      try {
        const reply = await api("streams?" + q);
        if (!after) list.textContent = "";
        let table = list.querySelector("table");
        if (!table) {
          table = el("table", { class: "streams" }, el("thead", {}, el("tr", {}, el("th", {}, "stream"), el("th", { class: "num" }, "version"))), el("tbody", {}));
          list.append(el("div", { class: "scroll" }, table));
        }
        const body = table.querySelector("tbody");
        for (const s of reply.streams) {
          body.append(el("tr", {}, el("td", {}, el("a", { href: "#/stream/" + encodeURIComponent(s.name) }, s.name)), el("td", { class: "num" }, number(s.version))));
        }
        if (reply.streams.length === 0 && !after) list.append(el("p", { class: "muted" }, "No streams start with this prefix."));
        const more = list.querySelector("button.more");
        if (more) more.remove();
        if (reply.next_after) list.append(el("button", { class: "secondary more", type: "button", onclick: () => load(reply.next_after) }, "More"));
      } catch (error) { list.textContent = ""; showError(list, error); }
    };
    load(null);
  }

  function streamPage(container, args) {
    const name = args.join("/");
    const list = el("div", { class: "card" }, el("p", { class: "muted" }, "Loading…"));
    container.append(el("h1", {}, "Stream ", el("span", { class: "stream-name" }, name)), list);
    const load = async (from) => {
      const q = new URLSearchParams({ name, count: "100" });
      if (from) q.set("from", String(from));
      try {
        const reply = await api("stream?" + q);
        if (!from) { list.textContent = ""; list.append(el("p", { class: "muted" }, `version ${reply.version}`)); }
        const more = list.querySelector("button.more");
        if (more) more.remove();
        for (const e of reply.events) {
          list.append(eventDetails([el("span", { class: "time" }, e.at), el("span", { class: "type" }, e.type), el("span", { class: "muted" }, `v${e.version}`)], e));
        }
        if (reply.next) list.append(el("button", { class: "secondary more", type: "button", onclick: () => load(reply.next) }, "More"));
      } catch (error) { list.textContent = ""; showError(list, error); }
    };
    load(null);
  }

  /** Reads server-sent events from a fetch (EventSource cannot send the bearer token). */
  function tailPage(container, _args, params) {
    const prefix = el("input", { type: "text", id: "tail-prefix", placeholder: "stream prefix", value: params.get("prefix") || "", "aria-label": "Stream prefix" });
    const types = el("input", { type: "text", id: "tail-types", placeholder: "event types, comma-separated", value: params.get("types") || "", "aria-label": "Event types" });
    const state = el("span", { class: "muted", id: "tail-state" }, "connecting…");
    const list = el("ul", { class: "tail-list", id: "tail-events" });
    const form = el("form", { class: "row", onsubmit: (e) => {
      e.preventDefault();
      go("#/tail?" + new URLSearchParams({ prefix: prefix.value, types: types.value }));
    } }, prefix, types, el("button", { type: "submit" }, "Filter"));
    container.append(el("h1", {}, "Live tail of $all"), form, el("p", {}, state), el("div", { class: "card" }, list));
    const controller = new AbortController();
    let lastId = null;
    const query = new URLSearchParams();
    if (prefix.value) query.set("prefix", prefix.value);
    for (const t of types.value.split(",").map((s) => s.trim()).filter((s) => s)) query.append("type", t);
    const show = (event) => {
      list.prepend(el("li", {}, eventDetails([el("span", { class: "time" }, event.at), el("span", { class: "type" }, event.type), el("span", { class: "stream" }, event.stream), el("span", { class: "muted" }, `#${event.position}`)], event)));
      while (list.children.length > 200) list.lastChild.remove();
    };
    const connect = async () => {
      while (!controller.signal.aborted) {
        try {
          const extra = lastId !== null ? { "Last-Event-ID": String(lastId) } : {};
          const response = await fetch("/api/tail?" + query, { headers: headers(extra), signal: controller.signal });
          if (!response.ok) {
            const body = await response.json().catch(() => null);
            state.textContent = (body && body.error && body.error.message) || ("HTTP " + response.status);
            if (response.status === 401) { showLogin(state.textContent); return; }
          } else {
            state.textContent = "live";
            const reader = response.body.getReader();
            const decoder = new TextDecoder();
            let buffer = "";
            for (;;) {
              const { value, done } = await reader.read();
              if (done) break;
              buffer += decoder.decode(value, { stream: true });
              let end;
              while ((end = buffer.indexOf("\n\n")) >= 0) {
                const frame = buffer.slice(0, end); buffer = buffer.slice(end + 2);
                let id = null; let kind = "message"; let data = "";
                for (const line of frame.split("\n")) {
                  if (line.startsWith("id: ")) id = line.slice(4);
                  else if (line.startsWith("event: ")) kind = line.slice(7);
                  else if (line.startsWith("data: ")) data += line.slice(6);
                }
                if (id !== null) lastId = id;
                if (kind === "event") show(JSON.parse(data));
                if (kind === "error") state.textContent = JSON.parse(data).error.message;
              }
            }
            state.textContent = "reconnecting…";
          }
        } catch (error) {
          if (controller.signal.aborted) return;
          state.textContent = "reconnecting…";
        }
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    };
    connect();
    return () => controller.abort();
  }

  function healthPage(container) {
    const grid = el("div", { class: "kpis", id: "health" });
    const note = el("p", { class: "muted" }, "Updated every 2 s.");
    container.append(el("h1", {}, "Health"), grid, note);
    let previous = null;
    const kpi = (label, value) => el("div", { class: "kpi" }, el("div", { class: "label" }, label), el("div", { class: value.length > 14 ? "value small" : "value" }, value));
    const refresh = async () => {
      try {
        const h = await api("health");
        const now = performance.now();
        let rate = `${h.fsync.per_sec_since_start.toFixed(1)}/s since start`;
        if (previous) {
          const seconds = (now - previous.at) / 1000;
          rate = `${((h.fsync.total - previous.fsyncs) / seconds).toFixed(1)}/s now · ${h.fsync.per_sec_since_start.toFixed(1)}/s since start`;
        }
        previous = { at: now, fsyncs: h.fsync.total };
        const latency = h.fsync.total === 0 ? "no fsyncs yet" : `mean ${h.fsync.mean_us} µs · p99 ≤ ${h.fsync.p99_us_at_most} µs`;
        grid.textContent = "";
        grid.append(
          kpi("head position", number(h.head_position)),
          kpi("streams", number(h.streams)),
          kpi("segments", number(h.segments)),
          kpi("segment bytes", bytes(h.segment_bytes)),
          kpi("archive", h.archive ? `${number(h.archive.events)} events in ${number(h.archive.files)} files` : "none"),
          kpi("fsync rate", rate),
          kpi("fsync latency", latency),
          kpi("appends", number(h.appends_total)),
          kpi("RESP connections", number(h.connections)),
          kpi("uptime", duration(h.uptime_secs * 1e6)),
          kpi("version", h.version));
      } catch (error) { grid.textContent = ""; showError(grid, error); }
    };
    refresh();
    const timer = setInterval(refresh, 2000);
    return () => clearInterval(timer);
  }

  return { register, el, api, duration, number, json, eventDetails, showError, go };
})();
window.Console = Console;
