"use strict";
// AgentR1-Gym episode viewer. Every string from the data is shown with textContent or a text node,
// never parsed as HTML. The view's state (filter, search, sort, page, open episodes) lives in the
// URL fragment, e.g. #filter=wrong&q=paris&sort=reward-desc&page=2&open=all&size=all.
(function () {
  const started = performance.now();
  const data = JSON.parse(document.getElementById("episode-data").textContent);
  const episodes = data.episodes;
  const strings = data.strings;
  const PAGE_SIZE = 50;
  const FOLD_CHARS = 1600;
  const FOLD_LINES = 30;
  const has = (ep, flag) => ep.flags.indexOf(flag) >= 0;
  const FILTERS = [
    ["all", "All", () => true],
    ["correct", "Correct", (ep) => ep.success === true],
    ["wrong", "Wrong answers", (ep) => has(ep, "wrong")],
    ["cut", "Cut (no answer)", (ep) => has(ep, "cut")],
    ["env_error", "Env errors", (ep) => has(ep, "env_error")],
    ["suspect_reward", "Suspects: high-reward, not correct", (ep) => has(ep, "suspect_reward")],
    ["suspect_spam", "Suspects: tool spam", (ep) => has(ep, "suspect_spam")],
  ];
  const SORTS = [
    ["order", "file order", null],
    ["reward-desc", "reward, highest first", (a, b) => b.reward - a.reward],
    ["reward-asc", "reward, lowest first", (a, b) => a.reward - b.reward],
    ["tools-desc", "tool calls, most first", (a, b) => b.tool_calls - a.tool_calls],
    ["turns-desc", "turns, most first", (a, b) => b.turns.length - a.turns.length],
  ];
  const FLAG_TEXT = { wrong: "wrong", cut: "cut", env_error: "env error", suspect_reward: "suspect: reward",
    suspect_spam: "suspect: tool spam" };
  const state = { filter: "all", q: "", sort: "order", page: 1, size: PAGE_SIZE, open: new Set(), openAll: false };
  let haystacks = null;

  // ------------------------------------------------------------------ small helpers
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function signed(x) {
    if (x === null || x === undefined) return "–";
    return (x > 0 ? "+" : x < 0 ? "−" : "±") + Math.abs(x).toFixed(3);
  }
  function number(x, digits) {
    if (x === null || x === undefined) return "–";
    return Number.isInteger(x) ? String(x) : x.toFixed(digits === undefined ? 3 : digits);
  }
  function percent(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%"; }
  function preview(ep) {
    const item = ep.item || {};
    let text = item.question || item.problem || item.prompt || "";
    if (!text) {
      const user = ep.prompt.find((m) => m[0] === "user");
      text = user ? strings[user[1]] : "";
    }
    text = String(text).replace(/\s+/g, " ");
    return text.length > 200 ? text.slice(0, 200) + "…" : text;
  }

  // Long text: the first lines, and a button that shows the rest. ``render`` turns text into nodes.
  function block(text, cls, render) {
    const wrap = el("div", cls);
    const pre = el("pre");
    const paint = (t) => { pre.replaceChildren(...(render ? render(t) : [document.createTextNode(t)])); };
    const lines = text.split("\n");
    const long = text.length > FOLD_CHARS || lines.length > FOLD_LINES;
    wrap.appendChild(pre);
    if (!long) { paint(text); return wrap; }
    let short = lines.slice(0, Math.min(FOLD_LINES / 2, lines.length)).join("\n");
    if (short.length > FOLD_CHARS / 2) short = short.slice(0, FOLD_CHARS / 2);
    let folded = true;
    const button = el("button", "fold");
    button.type = "button";
    const update = () => {
      paint(folded ? short + " …" : text);
      button.textContent = folded ? "show all " + text.length.toLocaleString("en") + " characters" : "fold";
      wrap.dataset.folded = folded ? "1" : "0";
    };
    button.addEventListener("click", () => { folded = !folded; update(); });
    update();
    wrap.appendChild(button);
    return wrap;
  }

  // The model's text with its tool calls and answer marked (spans of plain text nodes).
  function marked(text, toolNames) {
    const names = toolNames.filter((n) => /^[A-Za-z0-9_.-]+$/.test(n));
    const tags = ["tool_call", "answer"].concat(names).map((n) => n.replace(/[.-]/g, "\\$&"));
    const pattern = new RegExp("<(" + tags.join("|") + ")>[\\s\\S]*?</\\1>", "g");
    const nodes = [];
    let last = 0;
    for (const m of text.matchAll(pattern)) {
      if (m.index > last) nodes.push(document.createTextNode(text.slice(last, m.index)));
      nodes.push(el("span", m[1] === "answer" ? "answer" : "call", m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) nodes.push(document.createTextNode(text.slice(last)));
    return nodes;
  }

  function chips(components, into) {
    for (const name of Object.keys(components || {})) {
      const value = components[name];
      into.appendChild(el("span", "chip " + (value > 0 ? "pos" : value < 0 ? "neg" : ""), name + " " + signed(value)));
    }
  }

  function table(rows, head) {
    const t = el("table", "kv");
    if (head) {
      const tr = el("tr");
      for (const h of head) tr.appendChild(el("th", null, h));
      t.appendChild(tr);
    }
    for (const row of rows) {
      const tr = el("tr");
      for (const cell of row) tr.appendChild(el("td", null, cell));
      t.appendChild(tr);
    }
    return t;
  }

  function valueText(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "number") return number(v, 4);
    if (typeof v === "string") return v;
    return JSON.stringify(v);
  }

  // ------------------------------------------------------------------ summary and controls
  function renderSummary() {
    document.getElementById("files").textContent =
      episodes.length.toLocaleString("en") + " episodes from " + data.files.join(", ");
    const comps = [];
    for (const row of data.summary) for (const c of Object.keys(row.components)) if (comps.indexOf(c) < 0) comps.push(c);
    const head = ["file", "env", "source", "episodes", "success", "mean reward", "turns", "tool calls", "wrong", "cut",
      "env errors", "suspects"].concat(comps.map((c) => "mean " + c));
    const t = el("table");
    const tr = el("tr");
    for (const h of head) tr.appendChild(el("th", null, h));
    t.appendChild(tr);
    for (const row of data.summary) {
      const r = el("tr");
      const cells = [row.file, row.env, row.kind, row.episodes, percent(row.success), signed(row.reward),
        number(row.turns, 2), number(row.tool_calls, 2), row.wrong, row.cut, row.env_error,
        row.suspect_reward + row.suspect_spam].concat(comps.map((c) => (c in row.components ? signed(row.components[c]) : "–")));
      cells.forEach((c, k) => r.appendChild(el("td", k < 3 ? "text" : null, c)));
      t.appendChild(r);
    }
    document.getElementById("summary").replaceChildren(t);
  }

  function renderControls() {
    const box = document.getElementById("filters");
    box.replaceChildren();
    for (const [key, label, test] of FILTERS) {
      const b = el("button", null, label + " (" + episodes.filter(test).length.toLocaleString("en") + ")");
      b.type = "button";
      b.dataset.filter = key;
      b.setAttribute("aria-pressed", String(state.filter === key));
      b.addEventListener("click", () => { state.filter = key; state.page = 1; commit(); });
      box.appendChild(b);
    }
    const sort = document.getElementById("sort");
    if (!sort.options.length) {
      for (const [key, label] of SORTS) {
        const o = el("option", null, label);
        o.value = key;
        sort.appendChild(o);
      }
      sort.addEventListener("change", () => { state.sort = sort.value; state.page = 1; commit(); });
      const search = document.getElementById("search");
      let timer = 0;
      search.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(() => { state.q = search.value; state.page = 1; commit(); }, 150);
      });
      document.getElementById("expand-page").addEventListener("click", () => {
        for (const ep of pageOf(visible())) state.open.add(ep.id);
        commit();
      });
      document.getElementById("collapse-all").addEventListener("click", () => {
        state.open.clear(); state.openAll = false; commit();
      });
    }
    sort.value = state.sort;
    const search = document.getElementById("search");
    if (search.value !== state.q) search.value = state.q;
  }

  // ------------------------------------------------------------------ which episodes
  function haystack(ep) {
    const parts = [ep.env, ep.label, JSON.stringify(ep.item || {})];
    for (const m of ep.prompt) if (m[0] !== "system") parts.push(strings[m[1]]);
    for (const t of ep.turns) { parts.push(t.action || ""); parts.push(t.observation || ""); }
    return parts.join("\n").toLowerCase();
  }
  function visible() {
    const test = (FILTERS.find((f) => f[0] === state.filter) || FILTERS[0])[2];
    let list = episodes.filter(test);
    const q = state.q.trim().toLowerCase();
    if (q) {
      if (!haystacks) haystacks = episodes.map(haystack);
      list = list.filter((ep) => haystacks[ep.id].indexOf(q) >= 0);
    }
    const sort = (SORTS.find((s) => s[0] === state.sort) || SORTS[0])[2];
    if (sort) list = list.slice().sort(sort);
    return list;
  }
  function pageOf(list) {
    if (state.size === Infinity) return list;
    const start = (state.page - 1) * state.size;
    return list.slice(start, start + state.size);
  }

  // ------------------------------------------------------------------ one episode
  function renderHead(ep) {
    const head = el("div", "ep-head");
    head.tabIndex = 0;
    head.setAttribute("role", "button");
    head.appendChild(el("span", "ep-id", "#" + ep.id));
    const verdict = ep.success === true ? "correct" : has(ep, "wrong") ? "wrong" : has(ep, "cut") ? "cut"
      : ep.success === false ? "wrong" : "unjudged";
    head.appendChild(el("span", "badge " + verdict, verdict));
    for (const f of ep.flags) if (f !== verdict) head.appendChild(el("span", "badge " + f, FLAG_TEXT[f] || f));
    head.appendChild(el("span", "reward", "reward " + signed(ep.reward)));
    head.appendChild(el("span", "muted", [ep.env, ep.kind, ep.label].filter(Boolean).join(" · ")));
    const plural = (n, word) => n + " " + word + (n === 1 ? "" : "s");
    head.appendChild(el("span", "muted", plural(ep.turns_taken, "turn") + " · " + plural(ep.tool_calls, "tool call") +
      (ep.tokens !== null && ep.tokens !== undefined ? " · " + ep.tokens + " tokens" : "")));
    head.appendChild(el("span", "ep-preview", preview(ep)));
    return head;
  }

  function renderBody(ep) {
    const body = el("div", "ep-body");
    const item = ep.item || {};
    const shown = Object.keys(item).filter((k) => ["question", "problem", "prompt"].indexOf(k) < 0);
    if (shown.length) {
      const d = el("details");
      d.appendChild(el("summary", null, "item: " + shown.join(", ")));
      d.appendChild(table(shown.map((k) => [k, valueText(item[k])])));
      body.appendChild(d);
    }
    for (const [role, ref] of ep.prompt) {
      const text = strings[ref];
      if (role === "system") {
        const d = el("details", "msg system");
        d.appendChild(el("summary", "role", "system prompt (" + text.length.toLocaleString("en") + " characters)"));
        d.appendChild(block(text, "content"));
        body.appendChild(d);
      } else {
        const m = el("div", "msg " + (role === "user" ? "user" : "other"));
        m.appendChild(el("div", "role", role));
        m.appendChild(block(text, "content"));
        body.appendChild(m);
      }
    }
    ep.turns.forEach((t, k) => {
      const turn = el("div", "turn");
      turn.dataset.turn = String(k);
      if (t.action === null) {
        const m = el("div", "msg cut");
        m.appendChild(el("div", "role", "episode ended without an answer (" + (ep.end || "unfinished") + ")"));
        turn.appendChild(m);
      } else {
        const m = el("div", "msg assistant");
        m.appendChild(el("div", "role", "assistant · turn " + (k + 1)));
        const names = (t.tool_calls || []).map((c) => String(c.name || ""));
        m.appendChild(block(t.action, "content", (text) => marked(text, names)));
        if (t.tool_calls && t.tool_calls.length) {
          const calls = el("div", "calls");
          for (const c of t.tool_calls) {
            const args = c.arguments === null || c.arguments === undefined ? "" : JSON.stringify(c.arguments);
            calls.appendChild(el("span", "chip call-chip", (c.name || "(unparsed call)") + "(" + args + ") → " + (c.status || "?")));
          }
          m.appendChild(calls);
        }
        turn.appendChild(m);
      }
      if (t.observation) {
        const o = el("div", "msg observation");
        o.appendChild(el("div", "role", "observation"));
        o.appendChild(block(t.observation, "content"));
        turn.appendChild(o);
      }
      const r = el("div", "rewards");
      r.appendChild(el("span", "reward", "reward " + signed(t.reward)));
      chips(t.components, r);
      if (t.env_error) r.appendChild(el("span", "badge env_error", "env error"));
      turn.appendChild(r);
      body.appendChild(turn);
    });
    const final = el("div", "final");
    const metrics = el("div", "metrics");
    metrics.appendChild(el("h3", null, "final metrics · ended: " + (ep.end || "–")));
    metrics.appendChild(table(Object.keys(ep.metrics).map((k) => [k, number(ep.metrics[k], 4)])));
    final.appendChild(metrics);
    const comps = el("div", "components");
    comps.appendChild(el("h3", null, "reward components (episode)"));
    comps.appendChild(table(Object.keys(ep.components).map((k) => [k, signed(ep.components[k])])
      .concat([["total", signed(ep.reward)]])));
    final.appendChild(comps);
    const source = el("div", "source");
    source.appendChild(el("h3", null, "source · " + data.files[ep.file]));
    source.appendChild(table(Object.keys(ep.source).map((k) => [k, valueText(ep.source[k])])));
    final.appendChild(source);
    body.appendChild(final);
    return body;
  }

  function renderEpisode(ep) {
    const card = el("article", "ep");
    card.id = "ep-" + ep.id;
    card.dataset.id = String(ep.id);
    const head = renderHead(ep);
    const open = state.openAll || state.open.has(ep.id);
    head.setAttribute("aria-expanded", String(open));
    const toggle = () => {
      if (state.open.has(ep.id) || state.openAll) {
        state.open.delete(ep.id);
        if (state.openAll) { state.openAll = false; for (const e of pageOf(visible())) if (e.id !== ep.id) state.open.add(e.id); }
      } else state.open.add(ep.id);
      commit(true);
      const body = card.querySelector(".ep-body");
      const nowOpen = state.open.has(ep.id);
      head.setAttribute("aria-expanded", String(nowOpen));
      if (nowOpen && !body) card.appendChild(renderBody(ep));
      if (!nowOpen && body) body.remove();
    };
    head.addEventListener("click", toggle);
    head.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } });
    card.appendChild(head);
    if (open) card.appendChild(renderBody(ep));
    return card;
  }

  // ------------------------------------------------------------------ list, pager, URL state
  function renderList() {
    const list = visible();
    const pages = state.size === Infinity ? 1 : Math.max(1, Math.ceil(list.length / state.size));
    state.page = Math.min(Math.max(1, state.page), pages);
    const shown = pageOf(list);
    document.getElementById("episodes").replaceChildren(...shown.map(renderEpisode));
    document.getElementById("count").textContent = list.length.toLocaleString("en") + " of " +
      episodes.length.toLocaleString("en") + " episodes" + (pages > 1 ? " · page " + state.page + " of " + pages : "");
    const pager = document.getElementById("pager");
    pager.replaceChildren();
    if (pages > 1) {
      const go = (p, label) => {
        const b = el("button", null, label || String(p));
        b.type = "button";
        b.setAttribute("aria-pressed", String(p === state.page && !label));
        b.addEventListener("click", () => { state.page = p; commit(); window.scrollTo(0, 0); });
        pager.appendChild(b);
      };
      if (state.page > 1) go(state.page - 1, "‹ previous");
      const near = new Set([1, pages, state.page - 2, state.page - 1, state.page, state.page + 1, state.page + 2]);
      let last = 0;
      for (const p of Array.from(near).filter((p) => p >= 1 && p <= pages).sort((a, b) => a - b)) {
        if (p - last > 1) pager.appendChild(el("span", "muted", "…"));
        go(p);
        last = p;
      }
      if (state.page < pages) go(state.page + 1, "next ›");
    }
  }

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    state.filter = FILTERS.some((f) => f[0] === params.get("filter")) ? params.get("filter") : "all";
    state.q = params.get("q") || "";
    state.sort = SORTS.some((s) => s[0] === params.get("sort")) ? params.get("sort") : "order";
    state.page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
    const size = params.get("size");
    state.size = size === "all" ? Infinity : Math.max(1, parseInt(size || String(PAGE_SIZE), 10) || PAGE_SIZE);
    const open = params.get("open") || "";
    state.openAll = open === "all";
    state.open = new Set(state.openAll ? [] : open.split(",").filter(Boolean).map(Number));
  }
  function writeHash() {
    const params = new URLSearchParams();
    if (state.filter !== "all") params.set("filter", state.filter);
    if (state.q) params.set("q", state.q);
    if (state.sort !== "order") params.set("sort", state.sort);
    if (state.page !== 1) params.set("page", String(state.page));
    if (state.size !== PAGE_SIZE) params.set("size", state.size === Infinity ? "all" : String(state.size));
    if (state.openAll) params.set("open", "all");
    else if (state.open.size) params.set("open", Array.from(state.open).join(","));
    const hash = params.toString();
    history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
  }
  // ``quiet``: only the URL changes (an episode opened or closed in place).
  function commit(quiet) {
    writeHash();
    if (quiet) return;
    renderControls();
    renderList();
  }

  window.addEventListener("hashchange", () => { readHash(); renderControls(); renderList(); });
  readHash();
  renderSummary();
  renderControls();
  renderList();
  document.documentElement.dataset.renderMs = String(Math.round(performance.now() - started));
  document.documentElement.dataset.readyAt = String(Math.round(performance.now()));
  document.documentElement.dataset.ready = "1";
})();
