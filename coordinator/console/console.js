// Loom console: plain JavaScript, no libraries. Every value that came from a prompt, a model or
// a device goes into the page as text (textContent, setAttribute), never as markup.
"use strict";

const state = { key: null, who: null, view: "mesh", selected: null, timer: null };
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

// An element with attributes and children (strings become text nodes).
function el(tag, attrs = {}, ...children) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4))
                                   : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.setAttribute("class", v);
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fill(tbody, rows) { tbody.replaceChildren(...rows); }
const credits = (micro) => (Number(micro || 0) / 1e6).toFixed(6);
const short = (name, prefix) => String(name || "").replace(prefix, "").toLowerCase();
const category = (c) => short(c, "TASK_CATEGORY_");
const subTask = (id) => (String(id).length >= 32 ? String(id).slice(0, 8) : String(id));  // UUIDs cut

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.key) headers.Authorization = "Bearer " + state.key;
  const res = await fetch("/console/api/" + path, Object.assign({}, options, { headers }));
  const text = await res.text();
  let body = null;
  try { body = JSON.parse(text); } catch (_) { body = text; }
  if (!res.ok) {
    const message = body && body.error ? body.error.message : String(text).slice(0, 200);
    const err = new Error(message || ("HTTP " + res.status));
    err.status = res.status;
    throw err;
  }
  return body;
}

// ---- Log in ----

async function login(key) {
  state.key = key;
  try {
    state.who = await api("whoami");
  } catch (e) {
    state.key = null;
    sessionStorage.removeItem("loom-key");
    $("login-error").textContent = "Not accepted: " + e.message;
    show("login");
    return;
  }
  sessionStorage.setItem("loom-key", key);
  $("login-error").textContent = "";
  $("who").textContent = state.who.role + (state.who.name ? " " + state.who.name : "");
  $("tabs").hidden = false;
  $("logout").hidden = false;
  document.querySelector('[data-view="requests"]').hidden = state.who.role === "provider";
  document.querySelector('[data-view="explorer"]').hidden = state.who.role === "provider";
  show(state.view === "login" ? "mesh" : state.view);
}

function show(view) {
  state.view = view;
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== view;
  for (const b of document.querySelectorAll("nav button")) {
    b.classList.toggle("active", b.dataset.view === view);
  }
  clearTimeout(state.timer);
  refresh();
}

async function refresh() {
  clearTimeout(state.timer);
  const view = state.view;
  try {
    if (view === "mesh") await drawMesh();
    else if (view === "requests") await drawRequests();
    else if (view === "money") await drawMoney();
    else if (view === "affinities") await drawAffinities();
  } catch (e) {
    if (e.status === 401) { state.key = null; show("login"); return; }
    console.warn(view, e.message);
  }
  // Live views poll (no page reloads); the explorer only answers when asked.
  const every = { mesh: 1000, requests: 1000, money: 5000, affinities: 5000 }[view];
  if (every && state.view === view) state.timer = setTimeout(refresh, every);
}

// ---- Mesh ----

async function drawMesh() {
  const mesh = await api("mesh");
  $("mesh-count").textContent = mesh.devices.length + " device" + (mesh.devices.length === 1 ? "" : "s");
  fill($("devices").tBodies[0], mesh.devices.map((d) => {
    const load = d.load || {};
    const ago = ((mesh.nowMs - Number(d.lastHeartbeatUnixMs)) / 1000).toFixed(1) + " s ago";
    const st = short(d.state, "DEVICE_STATE_");
    return el("tr", { "data-device": d.deviceId },
      el("td", {}, d.deviceId),
      el("td", { class: "state-" + st }, st, load.upstreamProblem ? " (" + load.upstreamProblem + ")" : ""),
      el("td", {}, d.providerId),
      el("td", {}, (d.models || []).map((m) => m.name + " (" + m.family + ")").join(", ")),
      el("td", {}, `${load.active || 0} / ${load.queued || 0} / ${load.maxConcurrency || 0}`),
      el("td", {}, load.tokensPerSecond ? Number(load.tokensPerSecond).toFixed(1) : "-"),
      el("td", {}, ago),
      el("td", {}, d.simulated ? "simulated" : "real"));
  }));
}

// ---- Requests ----

async function drawRequests() {
  const list = await api("requests");
  fill($("request-list").tBodies[0], list.requests.map((r) => el("tr", {
      class: "clickable" + (r.id === state.selected ? " selected" : ""), "data-request": r.id,
      onclick: () => { state.selected = r.id; drawRequests(); } },
    el("td", {}, new Date(r.startedMs).toLocaleTimeString()),
    el("td", {}, r.displayId),
    el("td", {}, r.client),
    el("td", {}, r.prompt.length > 80 ? r.prompt.slice(0, 80) + "…" : r.prompt),
    el("td", {}, r.planKind || "-"),
    el("td", {}, r.categories.map(category).join(", ")),
    el("td", {}, credits(r.costMicro)),
    el("td", {}, Math.round(r.latencyMs) + " ms"),
    el("td", { class: "outcome-" + r.outcome, title: r.error || "" }, r.outcome))));
  if (state.selected) await drawDetail(state.selected);
}

async function drawDetail(id) {
  const r = await api("requests/" + encodeURIComponent(id));
  $("request-detail").hidden = false;
  $("detail-id").textContent = r.displayId;
  $("detail-state").textContent = r.outcome + (r.error ? ": " + r.error : "");
  $("detail-prompt").textContent = r.prompt;
  const resp = r.response || {};
  drawGraph($("detail-graph"), resp.plan || {}, resp, r.events || []);
  fill($("detail-attempts").tBodies[0], (resp.attempts || []).map((a) => el("tr", {},
    el("td", {}, subTask(a.subTaskId)), el("td", {}, a.attempt), el("td", {}, a.deviceId),
    el("td", {}, a.model), el("td", { class: "outcome-" + a.outcome }, short(a.outcome, "ATTEMPT_OUTCOME_")),
    el("td", {}, a.reason), el("td", {}, a.tokens), el("td", {}, a.latencyMs))));
  fill($("detail-contributions").tBodies[0], (resp.contributions || []).map((c) => el("tr", {},
    el("td", {}, c.deviceId), el("td", {}, c.providerId), el("td", {}, c.model),
    el("td", {}, short(c.role, "CONTRIBUTION_ROLE_")), el("td", {}, c.tokenCount),
    el("td", {}, Number(c.weight).toFixed(3)), el("td", {}, credits(c.creditsMicro)))));
  $("detail-output").textContent = resp.output || "";
}

// ---- The plan as a graph: sub-tasks in columns by dependency depth, edges from each
// dependency, then synthesis (compiled) fed by the parts nothing else depends on. ----

function drawGraph(box, plan, resp, events) {
  const attempts = resp.attempts || [];
  const compete = plan.kind === "PLAN_KIND_COMPETE";
  let tasks = plan.subTasks || [];
  if (compete) {
    // Candidates: as the verdict lists them, else as they ran, else as assigned (explorer).
    const candidates = resp.compete && resp.compete.candidates ? resp.compete.candidates.map((c) => c.subTaskId)
      : attempts.length ? attempts.map((a) => a.subTaskId).filter((id) => id !== "judge")
      : (plan.assignments || []).map((a) => a.subTaskId);
    const first = (plan.categories || [])[0];
    tasks = [...new Set(candidates)].map((id) => ({ id, category: first ? first.category : "",
                                                    dependsOn: [], prompt: "compete candidate " + id }));
  }
  const assigned = {};
  for (const a of plan.assignments || []) assigned[a.subTaskId] = a;
  for (const e of events) if (e.kind === "KIND_STARTED") assigned[e.subTaskId] = e;
  const contributed = {};
  for (const c of resp.contributions || []) contributed[c.subTaskId] = (contributed[c.subTaskId] || 0) + Number(c.creditsMicro);
  const winner = resp.compete && resp.compete.winnerSubTaskId;
  const depth = {};
  const depthOf = (t, seen = new Set()) => {
    if (depth[t.id] !== undefined) return depth[t.id];
    if (seen.has(t.id)) return 0;
    seen.add(t.id);
    const deps = (t.dependsOn || []).map((d) => tasks.find((x) => x.id === d)).filter(Boolean);
    depth[t.id] = deps.length ? 1 + Math.max(...deps.map((d) => depthOf(d, seen))) : 0;
    return depth[t.id];
  };
  tasks.forEach((t) => depthOf(t));
  const columns = {};
  const pos = {};
  // Edges that skip a column run along a lane above the nodes, so none passes behind one.
  const W = 190, H = 62, GX = 60, GY = 24, LANE = 12, TOP = 36;
  for (const t of tasks) {
    const d = depth[t.id];
    columns[d] = (columns[d] || 0) + 1;
    pos[t.id] = { x: 20 + d * (W + GX), y: TOP + (columns[d] - 1) * (H + GY) };
  }
  const isCompiled = plan.kind === "PLAN_KIND_COMPILED";
  const dependedOn = new Set(tasks.flatMap((t) => t.dependsOn || []));
  const leaves = tasks.filter((t) => !dependedOn.has(t.id));
  // The node the parts end in: synthesis (compiled), or the verdict among candidates (compete).
  const last = compete && tasks.length ? "verdict" : isCompiled && tasks.length > 1 ? "synthesis" : null;
  if (last) {
    const d = Math.max(0, ...Object.values(depth)) + 1;
    pos[last] = { x: 20 + d * (W + GX), y: TOP };
  }
  const width = 40 + Math.max(0, ...Object.values(pos).map((p) => p.x)) + W;
  const height = 40 + Math.max(0, ...Object.values(pos).map((p) => p.y)) + H;
  const svg = el("svg:svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
                              "aria-label": "plan graph" },
    el("svg:defs", {}, el("svg:marker", { id: box.id + "-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" },
      el("svg:path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#98a2b3" }))));
  const edge = (from, to) => {
    const a = pos[from], b = pos[to];
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    const d = x2 - x1 > GX + 1
      ? `M ${x1} ${y1} C ${x1 + GX / 2} ${y1}, ${x1 + GX / 2} ${LANE}, ${x1 + GX} ${LANE} ` +
        `L ${x2 - GX} ${LANE} C ${x2 - GX / 2} ${LANE}, ${x2 - GX / 2} ${y2}, ${x2} ${y2}`
      : `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`;
    svg.appendChild(el("svg:path", { class: "edge", "data-from": from, "data-to": to, d,
                                     "marker-end": `url(#${box.id}-arrow)` }));
  };
  for (const t of tasks) for (const d of t.dependsOn || []) if (pos[d]) edge(d, t.id);
  if (last) for (const t of leaves) edge(t.id, last);
  const node = (id, cls, lines, tip) => {
    const p = pos[id];
    const g = el("svg:g", { class: "node " + cls, "data-sub-task": id, transform: `translate(${p.x} ${p.y})` },
      el("svg:title", {}, tip),
      el("svg:rect", { width: W, height: H, rx: 6 }));
    lines.forEach((line, i) => g.appendChild(el("svg:text", { x: 8, y: 17 + i * 15 },
      line.length > 28 ? line.slice(0, 27) + "…" : line)));
    svg.appendChild(g);
  };
  for (const t of tasks) {
    const tried = attempts.filter((a) => a.subTaskId === t.id);
    const failed = tried.filter((a) => a.outcome === "ATTEMPT_OUTCOME_FAILED");
    const ok = tried.find((a) => a.outcome === "ATTEMPT_OUTCOME_OK");
    const candidate = ((resp.compete || {}).candidates || []).find((c) => c.subTaskId === t.id);
    const who = ok || candidate || assigned[t.id] || {};
    const cls = (t.id === winner ? "winner" : "") + (failed.length ? " failed" : "");
    const paid = contributed[t.id] ? " · " + credits(contributed[t.id]) : "";
    node(t.id, cls, [category(t.category) + (t.id === winner ? " ★ winner" : ""),
                     (who.deviceId || "unassigned") + paid, who.model || ""],
         t.prompt + failed.map((a) => `\nattempt ${a.attempt} on ${a.deviceId} failed: ${a.reason}`).join(""));
  }
  if (last === "synthesis") {
    const wove = attempts.find((a) => a.subTaskId === "synthesis" && a.outcome === "ATTEMPT_OUTCOME_OK");
    node("synthesis", "synthesis", ["synthesis of " + leaves.length + " parts",
                                    wove ? wove.deviceId : "", wove ? wove.model : ""],
         plan.synthesisPrompt || "synthesis");
  } else if (last === "verdict") {
    const verdict = resp.compete || {};
    const judge = attempts.find((a) => a.subTaskId === "judge" && a.outcome === "ATTEMPT_OUTCOME_OK");
    node("verdict", "synthesis", ["verdict: " + (verdict.method || "pending"),
                                  judge ? "judge " + judge.deviceId : "",
                                  verdict.winnerSubTaskId ? "winner " + verdict.winnerSubTaskId : ""],
         verdict.reason || "the best candidate's answer is the answer");
  }
  box.replaceChildren(tasks.length ? svg : el("p", {}, "No plan yet."));
}

// ---- Explorer ----

async function explain(ev) {
  ev.preventDefault();
  $("explain-error").textContent = "";
  try {
    const r = await api("explain", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ prompt: $("explain-prompt").value, mode: $("explain-mode").value }) });
    const plan = r.plan;
    drawGraph($("explain-graph"), plan, {}, []);
    fill($("explain-reasons"), (plan.reasons || []).map((x) => el("li", {}, x)));
    fill($("explain-assignments").tBodies[0], (plan.assignments || []).map((a) => el("tr", {},
      el("td", {}, subTask(a.subTaskId)), el("td", {}, a.deviceId), el("td", {}, a.model),
      el("td", {}, Number(a.score).toFixed(3)), el("td", {}, a.reason))));
  } catch (e) {
    $("explain-error").textContent = e.message;
  }
}

// ---- Money ----

async function drawMoney() {
  const m = await api("money");
  const role = state.who.role;
  $("money-client").hidden = role !== "client";
  $("money-payouts").hidden = role === "client";
  $("money-operator").hidden = role !== "operator";
  if (role === "client") {
    $("client-balance").textContent = credits(m.balanceMicro);
    $("client-available").textContent = credits(m.availableMicro);
    return;
  }
  fill($("payouts").tBodies[0], m.payouts.map((p) => el("tr", {},
    el("td", {}, p.provider), el("td", {}, credits(p.earnedMicro)), el("td", {}, p.tokens),
    el("td", {}, p.requests), el("td", {}, p.devices), el("td", {}, credits(p.paidOutMicro)),
    el("td", {}, credits(p.unpaidMicro)))));
  if (role !== "operator") return;
  fill($("accounts").tBodies[0], m.accounts.map((a) => el("tr", {},
    el("td", {}, a.id), el("td", {}, a.kind), el("td", {}, credits(a.balanceMicro)),
    el("td", {}, credits(a.reservedMicro)))));
  fill($("transactions").tBodies[0], m.recentTransactions.map((t) => el("tr", {},
    el("td", {}, t.id), el("td", {}, new Date(t.createdMs).toLocaleTimeString()),
    el("td", {}, t.kind), el("td", {}, t.reference), el("td", {}, credits(t.amountMicro)))));
  fill($("records").tBodies[0], m.recentRecords.map((r) => el("tr", {},
    el("td", {}, r.requestId), el("td", {}, r.deviceId), el("td", {}, r.providerId),
    el("td", {}, r.model), el("td", {}, short(r.role, "CONTRIBUTION_ROLE_")),
    el("td", {}, r.tokenCount), el("td", {}, credits(r.creditsMicro)))));
}

async function verify() {
  $("verify-result").textContent = "verifying…";
  try {
    const v = await api("verify");
    $("verify-result").textContent = v.ok ? `ok: ${v.transactions} transactions, chain intact`
                                          : `FAILED at transaction ${v.firstBadTransaction}: ${v.problem}`;
    $("verify-result").className = v.ok ? "outcome-ok" : "error";
  } catch (e) {
    $("verify-result").textContent = e.message;
  }
}

async function downloadCsv(ev) {
  ev.preventDefault();
  const res = await fetch("/console/api/payouts.csv", { headers: { Authorization: "Bearer " + state.key } });
  const blob = await res.blob();
  const a = el("a", { href: URL.createObjectURL(blob), download: "loom-payouts.csv" });
  document.body.appendChild(a);
  a.click();
  a.remove();
}

// ---- Affinities ----

async function drawAffinities() {
  const a = await api("affinities");
  const families = [...new Set(a.affinities.map((x) => x.family))].sort();
  const cell = {};
  for (const x of a.affinities) cell[x.family + "/" + x.category] = x;
  // Colour spread over the table's own range (affinities sit between about 0.5 and 1).
  const values = a.affinities.map((x) => Number(x.blended));
  const lo = Math.min(...values), hi = Math.max(...values);
  const shade = (v) => (hi > lo ? 0.1 + 0.85 * (v - lo) / (hi - lo) : 0.5);
  $("heatmap").tHead.replaceChildren(el("tr", {}, el("th", {}, "family"),
    a.categories.map((c) => el("th", {}, category(c)))));
  fill($("heatmap").tBodies[0], families.map((f) => el("tr", {}, el("th", {}, f),
    a.categories.map((c) => {
      const x = cell[f + "/" + category(c)] || cell[f + "/" + c];
      if (!x) return el("td", {}, "-");
      const v = Number(x.blended);
      const alpha = shade(v);
      const learnt = Number(x.good) + Number(x.bad) > 0;
      return el("td", { style: `background: rgba(47, 95, 208, ${alpha.toFixed(2)}); color: ${alpha > 0.55 ? "#fff" : "#1d2330"}`,
                        title: `prior ${Number(x.prior).toFixed(2)}, observed ${x.good} good / ${x.bad} bad` },
                v.toFixed(2) + (learnt ? " *" : ""));
    }))));
}

// ---- Start ----

for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.view));
$("login-form").addEventListener("submit", (ev) => { ev.preventDefault(); login($("key").value.trim()); });
$("logout").addEventListener("click", () => { sessionStorage.removeItem("loom-key"); location.hash = ""; location.reload(); });
$("explain-form").addEventListener("submit", explain);
$("verify").addEventListener("click", verify);
$("payouts-csv").addEventListener("click", downloadCsv);

// /console/#key=...: a fragment never reaches the server; it is taken out of the address bar.
// (Also when one is pasted into an open page.)
function keyFromFragment() {
  const key = new URLSearchParams(location.hash.slice(1)).get("key");
  if (!key) return false;
  history.replaceState(null, "", location.pathname);
  state.selected = null;
  login(key);
  return true;
}
window.addEventListener("hashchange", keyFromFragment);
if (keyFromFragment()) {
  // logging in
} else if (sessionStorage.getItem("loom-key")) {
  login(sessionStorage.getItem("loom-key"));
} else {
  // No key: with --allow_anonymous the server may still accept the page as a client.
  login("").catch(() => show("login"));
}
