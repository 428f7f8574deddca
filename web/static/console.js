// The operators' console: renders the snapshots the server pushes (server-sent events) and calls the actions.
// Nothing here polls the server: the picture arrives on /console/api/stream when it changes; a conversation's
// messages are fetched when it is picked and again when the pushed picture shows it moved.
"use strict";

const state = { csrf: "", operator: "", snapshot: null, selected: "", selectedKey: "", source: null, retry: 1000 };
const $ = (id) => document.getElementById(id);

// -- small DOM helpers: text always goes in as text, never as HTML (customers write what they like) ---------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const badge = (text, st) => h("span", { class: "badge", "data-state": st || text, text: text });

function clock(epoch) {
  if (!epoch) return "";
  const d = new Date(epoch * 1000);
  const same = d.toDateString() === new Date().toDateString();
  const hm = d.toLocaleTimeString("zh-CN", { hour12: false });
  return same ? hm : `${d.toLocaleDateString("zh-CN")} ${hm}`;
}
function ago(epoch) {
  if (!epoch) return "";
  const s = Math.max(0, Date.now() / 1000 - epoch);
  if (s < 60) return `${Math.round(s)}秒前 / ${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}分钟前 / ${Math.round(s / 60)}m ago`;
  return clock(epoch);
}
function until(epoch) {
  const m = Math.max(0, Math.round((epoch - Date.now() / 1000) / 60));
  return `${clock(epoch)} (${m}分钟 / ${m} min)`;
}

// -- talking to the server -------------------------------------------------------------------------------
function toast(message, kind) {
  const t = $("toast");
  t.textContent = message;
  t.dataset.kind = kind;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, kind === "error" ? 8000 : 4000);
}

async function api(method, url, body) {
  const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") {
    opts.headers["Content-Type"] = "application/json";
    opts.headers["X-CSRF-Token"] = state.csrf;
    opts.body = JSON.stringify(body || {});
  }
  let resp, env;
  try {
    resp = await fetch(url, opts);
    env = await resp.json();
  } catch (err) {
    return { ok: false, code: 0, message: `网络错误 / network error: ${err.message}`, data: null };
  }
  if (resp.status === 401 && !url.endsWith("/me")) location.href = "/console/login";
  return { ok: resp.ok, code: env.code, message: env.message || resp.statusText, data: env.data };
}

async function act(button, method, url, body, done) {
  if (button) button.disabled = true;
  const r = await api(method, url, body);
  if (button) button.disabled = false;
  toast(r.message, r.ok ? "ok" : "error");
  if (r.ok && done) done(r.data);
  return r;
}

async function whoami() {
  const r = await api("GET", "/console/api/me");
  if (r.code === 401) { location.href = "/console/login"; return false; }
  if (!r.ok) { toast(r.message, "error"); return false; }
  state.csrf = r.data.csrf;
  state.operator = r.data.operator;
  $("operator").textContent = r.data.operator;
  $("btn-logout").hidden = !r.data.accounts;
  return true;
}

function connect() {
  const live = $("live-status");
  live.dataset.state = "connecting";
  live.textContent = "连接中 / connecting";
  const es = new EventSource("/console/api/stream");
  state.source = es;
  es.addEventListener("open", () => {
    state.retry = 1000;
    live.dataset.state = "live";
    live.textContent = "实时 / live";
  });
  es.addEventListener("snapshot", (ev) => render(JSON.parse(ev.data)));
  es.addEventListener("error", async () => {
    live.dataset.state = es.readyState === EventSource.CLOSED ? "down" : "connecting";
    live.textContent = es.readyState === EventSource.CLOSED ? "已断开 / disconnected" : "重连中 / reconnecting";
    if (es.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
    // The server refused the stream (logged out, restarted): see why, then try again with a growing pause.
    if (!(await whoami())) return;
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 30000);
  });
}

// -- rendering the snapshot ------------------------------------------------------------------------------
function fill(tbodyOrList, rows, emptyText, cols) {
  tbodyOrList.replaceChildren(...rows);
  if (!rows.length) {
    const cell = cols ? h("tr", {}, h("td", { colspan: cols, class: "empty", text: emptyText }))
      : h("li", { class: "empty", text: emptyText });
    tbodyOrList.append(cell);
  }
}
const count = (id, n) => { $(id).textContent = String(n); };

function render(snap) {
  state.snapshot = snap;
  renderConversations(snap.conversations);
  renderJobs(snap.jobs);
  renderTasks(snap.tasks, snap.task_counts);
  renderQueue(snap.render_queue, snap.queue_counts);
  renderHandoffs(snap.handoffs, snap.designers, snap.designer_load);
  renderTakeovers(snap.takeovers);
  renderActors(snap.actors);
  renderErrors(snap.errors, snap.failures);
  renderAudit(snap.audit);
}

function renderConversations(convs) {
  count("count-conversations", convs.length);
  fill($("conv-list"), convs.map((c) => h("li", {
    "data-customer-id": c.customer_id, "aria-selected": c.customer_id === state.selected ? "true" : "false",
    tabindex: 0, onclick: () => select(c.customer_id),
    onkeydown: (e) => { if (e.key === "Enter") select(c.customer_id); },
  },
  h("div", {}, h("span", { class: "name", text: c.name || c.customer_id }), " ",
    h("span", { class: "mono", text: c.name ? c.customer_id : "" }), " ",
    c.paused ? h("span", { class: "badge", "data-paused": "true", text: `人工 / staff (${c.paused_by})` }) : null),
  h("div", { class: "line", text: c.last_in ? `← ${c.last_in.text}` : "" }),
  h("div", {
    class: "line",
    text: c.last_out ? `→ ${c.last_out.text}${c.last_out.status === "suppressed" ? " (未发 / held)" : ""}` : "",
  }),
  h("div", { class: "line", text: ago(c.last_seen) }))), "还没有会话 / no conversations yet");
  const sel = convs.find((c) => c.customer_id === state.selected);
  if (sel) {
    const key = JSON.stringify([sel.last_in, sel.last_out, sel.paused, sel.paused_until, sel.messages]);
    if (key !== state.selectedKey) { state.selectedKey = key; loadDetail(); }
  }
}

function select(customerId) {
  state.selected = customerId;
  state.selectedKey = "";
  for (const li of $("conv-list").children) {
    li.setAttribute("aria-selected", li.dataset.customerId === customerId ? "true" : "false");
  }
  if (state.snapshot) renderConversations(state.snapshot.conversations);
  loadDetail();
}

async function loadDetail() {
  const id = state.selected;
  if (!id) return;
  const r = await api("GET", `/console/api/conversations/${encodeURIComponent(id)}`);
  if (id !== state.selected) return; // another one was picked meanwhile
  if (!r.ok) { toast(r.message, "error"); return; }
  const d = r.data;
  $("conv-detail").dataset.customerId = id;
  $("conv-empty").hidden = true;
  $("conv-body").hidden = false;
  $("conv-title").textContent = d.name ? `${d.name} (${id})` : id;
  const t = d.takeover;
  const ts = $("takeover-state");
  ts.dataset.paused = t.paused ? "true" : "false";
  ts.textContent = t.paused ? `AI已暂停 / AI paused · ${t.paused_by} · ${until(t.paused_until)}` : "AI回复中 / AI answering";
  const tl = $("conv-timeline");
  const atBottom = tl.scrollTop + tl.clientHeight >= tl.scrollHeight - 30;
  const from = { staff: "店员 staff", task: "天网 task", ai: "AI" };
  fill(tl, d.timeline.map((m) => h("li", {
    "data-dir": m.dir, "data-kind": m.kind, "data-status": m.status || "", "data-by": m.by || "",
  }, m.text, h("span", {
    class: "meta",
    text: [clock(m.at), m.by && `${from[m.by]}${m.by_name ? ` ${m.by_name}` : ""}`,
      m.status && m.status !== "delivered" && m.status].filter(Boolean).join(" · "),
  }))), "没有消息 / no messages");
  if (atBottom || !tl.dataset.shown || tl.dataset.shown !== id) tl.scrollTop = tl.scrollHeight;
  tl.dataset.shown = id;
}

// The customer's data is gone: close their conversation; the next pushed picture no longer lists them.
function forgotten(customerId) {
  if (state.selected !== customerId) return;
  state.selected = "";
  state.selectedKey = "";
  $("conv-detail").dataset.customerId = "";
  $("conv-body").hidden = true;
  $("conv-empty").hidden = false;
}

function thumb(j) {
  if (j.has_result || j.has_source) {
    const which = j.has_result ? "result" : "source";
    return h("img", {
      class: "thumb", loading: "lazy", "data-job-id": j.job_id, "data-which": which,
      alt: j.has_result ? "结果 / result" : "原图 / photo",
      src: `/console/api/thumb/${encodeURIComponent(j.job_id)}?which=${which}&v=${j.updated_at}`,
    });
  }
  return h("div", { class: "thumb none", text: "无图 / no image" });
}

function renderJobs(jobs) {
  count("count-jobs", jobs.length);
  const ended = new Set(["completed", "transferred", "cancelled"]);
  fill($("job-list"), jobs.map((j) => h("li", { class: "job", "data-job-id": j.job_id, "data-state": j.state },
    thumb(j),
    h("div", { class: "facts" },
      h("div", {}, badge(j.state), " ", h("span", { class: "mono", text: j.job_id })),
      h("div", { text: `${j.customer_id} · ${j.operation || ""}` }),
      h("div", { text: `${j.price != null ? `${j.price}元` : "未报价 / no quote"} · ${j.paid ? "已付 / paid" : "未付 / unpaid"}` }),
      j.order && j.order.photos > 1 ? h("div", { class: "order", "data-order": j.order.order_key,
        text: `订单 / order: 第${j.order.number}张 / ${j.order.photos} · 应付 / owed ${j.order.owed ?? "—"}元 · ` +
          `已付 / paid ${j.order.paid}元` }) : null,
      j.risk && j.risk !== "accept" ? h("div", {}, badge(`风险 / risk: ${j.risk}`, j.risk), " ", j.risk_reason) : null,
      j.handoff ? h("div", { text: `设计师 / designer: ${j.handoff.designer || "—"} (${j.handoff.status})` }) : null,
      !ended.has(j.state) && !(j.handoff && j.handoff.status !== "completed")
        ? h("button", {
          type: "button", "data-action": "handoff", "data-job-id": j.job_id,
          onclick: (e) => act(e.target, "POST", `/console/api/jobs/${encodeURIComponent(j.job_id)}/handoff`,
            { reason: "控制台转交 / handed over in the console" }),
        }, "转设计师 / hand to designer") : null))), "还没有图片任务 / no image jobs yet");
}

function renderTasks(tasks, counts) {
  count("count-tasks", tasks.length);
  $("task-counts").textContent = Object.entries(counts || {}).map(([k, v]) => `${k} ${v}`).join(" · ");
  fill($("task-list").tBodies[0], tasks.map((t) => h("tr", { "data-task-id": t.task_id, "data-status": t.status },
    h("td", {}, h("div", { class: "mono", text: t.task_id }),
      h("div", { class: "summary", text: `${t.type} · ${t.trigger} · ${t.priority}` })),
    h("td", { text: t.customer_name ? `${t.customer_name} (${t.customer_id})` : t.customer_id }),
    h("td", {}, badge(t.status),
      t.error && t.status === "failed" ? h("div", { class: "summary clip", title: t.error, text: t.error }) : null),
    h("td", {}, t.finished ? null : h("button", {
      type: "button", class: "danger", "data-action": "cancel-task", "data-task-id": t.task_id,
      onclick: (e) => act(e.target, "POST", `/console/api/tasks/${encodeURIComponent(t.task_id)}/cancel`,
        { reason: "控制台取消 / cancelled in the console" }),
    }, "取消 / cancel")))), "没有任务 / no tasks", 4);
}

function renderQueue(rows, counts) {
  count("count-queue", rows.length);
  $("queue-counts").textContent = "待处理 / pending: " +
    (Object.entries(counts || {}).map(([k, v]) => `${k} ${v}`).join(" · ") || "0");
  fill($("render-queue").tBodies[0], rows.map((r) => h("tr", { "data-key": r.key, "data-in-flight": r.in_flight },
    h("td", { text: `${r.kind}${r.operation ? ` · ${r.operation}` : ""}` }),
    h("td", { class: "mono", text: r.job_id || r.key }),
    h("td", {}, r.in_flight ? badge(`进行中 / rendering #${r.attempt}`, "processing") : badge("排队 / queued", "queued"),
      r.error ? h("div", { class: "summary", text: r.error }) : null),
    h("td", { text: ago(r.created_at) }))), "队列是空的 / nothing waiting", 4);
}

function renderHandoffs(rows, designers, load) {
  count("count-handoffs", rows.filter((r) => r.status !== "completed").length);
  const box = $("designers");
  if (designers && designers.online) {
    box.replaceChildren(...designers.online.map((n) => h("span", { class: "chip", "data-designer": n,
      text: `${n} (${(load || {})[n] || 0})` })));
    if (!designers.online.length) box.textContent = "没有人在线 / nobody online";
  } else {
    box.textContent = designers && designers.error ? designers.error : "—";
  }
  fill($("handoff-list").tBodies[0], rows.map((r) => h("tr", { "data-handoff": r.key, "data-status": r.status },
    h("td", { text: r.customer_id }),
    h("td", { text: `${r.rule}${r.reason ? `: ${r.reason}` : ""}` }),
    h("td", {}, badge(r.status), r.error ? h("div", { class: "summary", text: r.error }) : null),
    h("td", { text: r.designer || "—" }))), "没有转交 / no hand-offs", 4);
}

function renderTakeovers(rows) {
  count("count-takeovers", rows.length);
  fill($("takeover-list").tBodies[0], rows.map((t) => h("tr", { "data-customer-id": t.customer_id },
    h("td", { text: t.name ? `${t.name} (${t.customer_id})` : t.customer_id }),
    h("td", { text: t.by }), h("td", { text: until(t.paused_until) }), h("td", { text: t.reason }))),
  "AI 正在回复所有客户 / the AI answers everyone", 4);
}

function renderActors(health) {
  const ok = $("actors-ok");
  ok.textContent = health.ok === null ? "…" : health.ok ? "正常 / ok" : "异常 / degraded";
  ok.dataset.state = health.ok ? "ok" : "bad";
  fill($("actor-list").tBodies[0], health.actors.map((a) => h("tr", { "data-actor": a.name, "data-state": a.state },
    h("td", { text: a.name === a.kind ? a.name : `${a.name} (${a.kind})` }),
    h("td", {}, badge(a.state)), h("td", { class: "mono", text: a.pid ?? "—" }),
    h("td", { text: a.restarts }))), health.message || "—", 4);
}

function renderErrors(logged, failures) {
  const items = [
    ...logged.map((e) => h("li", { "data-source": "log" },
      h("div", { class: "meta", text: `${e.at} · ${e.level} · ${e.logger}` }), e.message,
      e.detail ? h("div", { class: "mono", text: e.detail }) : null)),
    ...failures.map((f) => h("li", { "data-source": f.source },
      h("div", { class: "meta", text: `${clock(f.at)} · ${f.source} · ${f.ref}` }), f.message)),
  ];
  count("count-errors", items.length);
  fill($("error-list"), items, "没有错误 / no errors");
}

function brief(value) {
  if (value === null || value === undefined) return "—";
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 120 ? `${text.slice(0, 119)}…` : text;
}

// What an action changed: the fields that differ, each as before → after (times as clock times).
function changes(before, after) {
  const plain = (o) => o !== null && typeof o === "object" && !Array.isArray(o);
  if (!plain(before) || !plain(after)) return before === null && after === null ? "" : `${brief(before)} → ${brief(after)}`;
  const show = (k, v) => (typeof v === "number" && v > 1e9 && /(_at|until)$/.test(k) ? clock(v) : brief(v));
  return Object.keys({ ...before, ...after })
    .filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]))
    .map((k) => `${k}: ${show(k, before[k])} → ${show(k, after[k])}`).join("; ");
}

function renderAudit(rows) {
  count("count-audit", rows.length);
  fill($("audit-list").tBodies[0], rows.map((a) => h("tr", { "data-action": a.action, "data-target": a.target },
    h("td", { text: clock(a.at) }), h("td", { text: a.operator }), h("td", { text: a.action }),
    h("td", { class: "mono", text: a.target }),
    h("td", { class: "mono", text: changes(a.before, a.after) }))), "还没有操作 / no actions yet", 5);
}

// -- the conversation's controls ---------------------------------------------------------------------------
function wireControls() {
  const path = (what) => `/console/api/conversations/${encodeURIComponent(state.selected)}/${what}`;
  $("btn-pause").addEventListener("click", (e) => {
    const minutes = Number($("pause-minutes").value) || undefined;
    act(e.target, "POST", path("pause"), { minutes, reason: "控制台暂停 / paused in the console" }, loadDetail);
  });
  $("btn-resume").addEventListener("click", (e) => act(e.target, "POST", path("resume"), {}, loadDetail));
  $("btn-forget").addEventListener("click", async (e) => {
    const id = state.selected;
    const who = $("conv-title").textContent || id;
    // Deleting cannot be undone: the operator confirms, reading whose data goes.
    if (!id || !confirm(`删除客户 ${who} 的全部数据?照片、结果、邮件、消息、资料和邮箱都会删除,无法恢复。\n` +
      `Delete everything kept of customer ${who}? Photos, results, mails, messages, profile and e-mail go for good.`)) return;
    const r = await act(e.target, "POST", path("forget"), {});
    if (r.ok) forgotten(id);
  });
  $("staff-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const box = $("staff-text");
    if (!box.value.trim()) { toast("先写点什么 / write something first", "error"); return; }
    const r = await act($("btn-send-staff"), "POST", path("message"), { text: box.value }, loadDetail);
    if (r.ok) box.value = "";
  });
  $("btn-logout").addEventListener("click", async () => {
    await api("POST", "/console/logout", {});
    location.href = "/console/login";
  });
  // Relative times ("2m ago") age in place; this redraws from the last picture and asks the server nothing.
  setInterval(() => { if (state.snapshot) render(state.snapshot); }, 30000);
}

window.addEventListener("DOMContentLoaded", async () => {
  wireControls();
  if (await whoami()) connect();
});
