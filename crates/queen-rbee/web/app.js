// rbee's web dashboard: the lab live, models, logs and a chat, all through the queen's own
// API (docs/api.md). The key, when the queen has one, is kept for this tab only and sent
// as a bearer header; it never goes into a URL.
"use strict";

const KEY_STORE = "rbee-api-key";
const HISTORY_POINTS = 150; // five minutes of snapshots two seconds apart

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

// ---- Calls to the queen ------------------------------------------------------------------

class KeyRefused extends Error {}

function headers(extra = {}) {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

/// The error envelope's message, or the status line when the body is not one.
async function failure(resp) {
  const text = await resp.text();
  try {
    const body = JSON.parse(text);
    if (body.error && body.error.message) return `${body.error.message} (${body.error.code || resp.status})`;
  } catch (_) { /* not JSON */ }
  return `${resp.status} ${resp.statusText} ${text}`.trim();
}

async function call(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const resp = await fetch(path, init);
  if (resp.status === 401) {
    const message = await failure(resp);
    askForKey(`The queen refused ${sessionStorage.getItem(KEY_STORE) ? "this key" : "to answer without a key"}: ${message}`);
    throw new KeyRefused(message);
  }
  if (!resp.ok) throw new Error(await failure(resp));
  return resp;
}

async function json(path, options) {
  return (await call(path, options)).json();
}

/// Reads a server-sent event stream, calling `onEvent(name, data)` for each message until
/// the stream's `[DONE]` or its end.
async function events(path, options, onEvent) {
  const resp = await call(path, options);
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      // Lines may end in \r\n or \r too; a \r at a chunk's end waits for what follows it.
      buffer += decoder.decode(value, { stream: true });
      const held = buffer.endsWith("\r") ? "\r" : "";
      buffer = buffer.slice(0, buffer.length - held.length).replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of frame.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (!data.length) continue;
        const text = data.join("\n");
        if (text === "[DONE]") return;
        onEvent(name, text);
      }
      buffer += held;
    }
  } finally {
    // Ended, failed or abandoned: the connection goes back either way.
    reader.cancel().catch(() => {});
  }
}

// ---- The key ---------------------------------------------------------------------------

function askForKey(message) {
  $("key-message").textContent = message;
  $("key-gate").hidden = false;
  for (const view of document.querySelectorAll("main > section:not(#key-gate)")) view.hidden = true;
  $("live").textContent = "key needed";
  $("key-input").focus();
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY_STORE, $("key-input").value);
  $("key-input").value = "";
  $("key-gate").hidden = true;
  show(currentView);
  followLab();
});

// ---- Views -----------------------------------------------------------------------------

let currentView = "lab";

function show(view) {
  currentView = view;
  for (const tab of document.querySelectorAll("nav button")) {
    const selected = tab.dataset.view === view;
    if (selected) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
    $(tab.dataset.view).hidden = !selected;
  }
  if (view === "models") loadCatalogs();
  if (view === "chat") loadChatModels();
}

for (const tab of document.querySelectorAll("nav button")) {
  tab.addEventListener("click", () => show(tab.dataset.view));
}

// ---- Lab -------------------------------------------------------------------------------

const history = [];
let previous = null;
let labRunning = false;

function megabytes(mb) {
  return mb == null ? "–" : mb >= 1024 ? `${(mb / 1024).toFixed(1)} GiB` : `${mb} MiB`;
}

function renderLab(lab) {
  const seconds = previous ? (lab.unix_ms - previous.unix_ms) / 1000 : 0;
  const perWorker = new Map((previous ? previous.workers : []).map((w) => [w.id, w.tokens_total]));
  if (seconds > 0) {
    history.push({
      tokens: Math.max(0, (lab.tokens_total - previous.tokens_total) / seconds),
      requests: Math.max(0, ((lab.tasks_total - previous.tasks_total) / seconds) * 60),
    });
    while (history.length > HISTORY_POINTS) history.shift();
  }
  syncRows($("nodes").tBodies[0], lab.nodes.map((node) => {
    const r = node.resources;
    // A hive that does not run: what the registry last saw of the node.
    const seen = r || node.registered;
    const devices = seen && seen.backends.length
      ? seen.backends.map((b) => `${b}${seen.devices[b] > 1 ? ` ×${seen.devices[b]}` : ""}`).join(", ") : "–";
    const vram = r && r.vram_free_mb ? Object.entries(r.vram_free_mb).map(([b, l]) => `${b}: ${l.map(megabytes).join(", ")}`).join("; ") : "–";
    const error = node.last_error;
    const stop = el("button", { type: "button", onclick: () => stopHive(node.node_name) }, "Stop hive");
    stop.disabled = !node.hive_running;
    stop.setAttribute("aria-label", `Stop the hive on ${node.node_name}`);
    return el("tr", { "data-key": node.node_name, "data-node": node.node_name },
      el("th", { scope: "row" }, node.node_name),
      el("td", { class: node.hive_running ? "good" : "" }, node.hive_running ? "running" : node.registered ? node.registered.status : "not started"),
      el("td", {}, devices),
      el("td", {}, megabytes(r && r.ram_available_mb)),
      el("td", {}, vram),
      el("td", { class: error ? "bad" : "" }, error || ""),
      el("td", {}, stop));
  }));
  syncRows($("workers").tBodies[0], lab.workers.map((w) => {
    const before = perWorker.get(w.id);
    const rate = seconds > 0 && before != null ? Math.max(0, (w.tokens_total - before) / seconds) : 0;
    const stop = el("button", { type: "button", onclick: () => stopWorker(w.id) }, "Stop");
    stop.setAttribute("aria-label", `Stop the worker of ${w.model_ref} on ${w.node}`);
    const compute = w.compute ? ` (${w.compute.engine}${w.compute.kernels ? ` ${w.compute.kernels}` : ""})` : "";
    return el("tr", { "data-key": w.id, "data-worker": w.id },
      el("td", {}, w.node),
      el("th", { scope: "row" }, w.model_ref),
      el("td", {}, `${w.backend}:${w.device}${compute}`),
      el("td", {}, w.state),
      el("td", {}, `${w.slots_total - w.slots_available}/${w.slots_total}`),
      el("td", {}, rate.toFixed(1)),
      el("td", {}, w.rss_bytes ? megabytes(Math.round(w.rss_bytes / 1048576)) : "–"),
      el("td", {}, stop));
  }));
  $("no-workers").hidden = lab.workers.length > 0;
  const last = history[history.length - 1];
  $("rate-now").textContent = last ? `now ${last.tokens.toFixed(1)} tokens/s, ${lab.busy_slots} busy slots, ${lab.queued_tasks} queued` : "";
  drawChart();
  $("chart").dataset.points = String(history.length);
  fillNodeSelects(lab.nodes.map((n) => n.node_name));
  previous = lab;
}

/// Puts `rows` (each with a `data-key`) into `body`, updating a row already there in place
/// rather than replacing it, so a button that has the keyboard focus keeps it.
function syncRows(body, rows) {
  const old = new Map([...body.rows].map((r) => [r.dataset.key, r]));
  rows.forEach((row, i) => {
    const kept = old.get(row.dataset.key);
    old.delete(row.dataset.key);
    if (kept) {
      [...row.cells].forEach((cell, c) => {
        const target = kept.cells[c];
        const button = cell.querySelector("button");
        if (button) target.querySelector("button").disabled = button.disabled;
        else if (target.textContent !== cell.textContent || target.className !== cell.className) {
          target.textContent = cell.textContent;
          target.className = cell.className;
        }
      });
      row = kept;
    }
    if (body.rows[i] !== row) body.insertBefore(row, body.rows[i] || null);
  });
  for (const gone of old.values()) gone.remove();
}

function drawChart() {
  const canvas = $("chart");
  const g = canvas.getContext("2d");
  const { width, height } = canvas;
  g.clearRect(0, 0, width, height);
  const style = getComputedStyle(document.documentElement);
  const line = (key, color) => {
    const top = Math.max(1, ...history.map((p) => p[key]));
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    history.forEach((p, i) => {
      const x = width - (history.length - 1 - i) * (width / (HISTORY_POINTS - 1));
      const y = height - 8 - (p[key] / top) * (height - 24);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
    g.fillStyle = color;
    g.fillText(`max ${top.toFixed(1)}`, key === "tokens" ? 6 : 96, 12);
  };
  line("tokens", style.getPropertyValue("--tokens").trim());
  line("requests", style.getPropertyValue("--requests").trim());
  const peak = (key) => Math.max(0, ...history.map((p) => p[key])).toFixed(1);
  canvas.setAttribute("aria-label", "Tokens per second and requests answered per minute over the last five minutes: "
    + `peak ${peak("tokens")} tokens/s, peak ${peak("requests")} requests/min`);
}

function fillNodeSelects(names) {
  for (const select of document.querySelectorAll(".node-select")) {
    const chosen = select.value;
    const have = [...select.options].map((o) => o.value).join("\n");
    if (have === names.join("\n")) continue;
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(chosen)) select.value = chosen;
  }
}

async function followLab() {
  if (labRunning) return;
  labRunning = true;
  try {
    for (;;) {
      // Rates are differences between consecutive snapshots of one stream.
      previous = null;
      try {
        await events("/v2/lab/events", {}, (name, data) => {
          if (name !== "lab") return;
          $("live").textContent = `live · ${new Date().toLocaleTimeString()}`;
          $("live").dataset.state = "live";
          renderLab(JSON.parse(data));
        });
      } catch (e) {
        if (e instanceof KeyRefused) return;
        $("live").textContent = `reconnecting: ${e.message}`;
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  } finally {
    labRunning = false;
  }
}

async function stopHive(node) {
  try {
    const stopped = await json("/v2/registry/beehives/stop", { method: "POST", body: { node_name: node } });
    $("notice").textContent = `Stopped the hive on ${node} (${stopped.workers_stopped} workers).`;
  } catch (e) {
    if (!(e instanceof KeyRefused)) $("notice").textContent = `Cannot stop the hive on ${node}: ${e.message}`;
  }
}

async function stopWorker(id) {
  try {
    await json("/v2/workers/shutdown", { method: "POST", body: { worker_id: id } });
    $("notice").textContent = `Stopped worker ${id}.`;
  } catch (e) {
    if (!(e instanceof KeyRefused)) $("notice").textContent = `Cannot stop worker ${id}: ${e.message}`;
  }
}

// ---- Models ----------------------------------------------------------------------------

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

async function loadCatalogs() {
  const out = $("catalogs");
  try {
    // Reading a catalog would start a stopped hive: those are read on request only.
    const list = await json("/v2/models/list?start=false");
    out.replaceChildren(...list.nodes.map((node) => {
      if (!node.hive_running && !node.error) {
        const start = el("button", { type: "button", onclick: () => readCatalog(node.node) }, "Start its hive and read its models");
        start.setAttribute("aria-label", `Start the hive on ${node.node} and read its models`);
        return el("div", { "data-catalog": node.node },
          el("h3", {}, node.node),
          el("p", { class: "hint" }, "Its hive is not running. ", start));
      }
      const rows = node.models.map((m) => {
        const remove = el("button", { type: "button", onclick: () => removeModel(node.node, m.reference) }, "Remove");
        remove.setAttribute("aria-label", `Remove ${m.reference} from ${node.node}`);
        return el("tr", { "data-model": m.reference },
          el("th", { scope: "row" }, m.reference),
          el("td", {}, m.quantization || "–"),
          el("td", {}, bytes(m.size_bytes)),
          el("td", {}, remove));
      });
      const free = node.disk_free_bytes != null ? ` · ${bytes(node.disk_free_bytes)} free` : "";
      return el("div", { "data-catalog": node.node },
        el("h3", {}, `${node.node}${free}`),
        node.error ? el("p", { class: "bad" }, node.error)
          : rows.length ? el("table", {},
            el("thead", {}, el("tr", {}, ...["Model", "Quantization", "Size", ""].map((h) => el("th", { scope: "col" }, h)))),
            el("tbody", {}, ...rows))
            : el("p", { class: "hint" }, "No model yet."));
    }));
  } catch (e) {
    if (!(e instanceof KeyRefused)) out.replaceChildren(el("p", { class: "bad" }, `Cannot list the models: ${e.message}`));
  }
}

async function readCatalog(node) {
  $("pull-text").textContent = `Starting the hive on ${node}…`;
  try {
    const read = await json(`/v2/models/list?node=${encodeURIComponent(node)}`);
    const error = read.nodes[0] && read.nodes[0].error;
    $("pull-text").textContent = error ? `Cannot read the models of ${node}: ${error}` : "";
  } catch (e) {
    if (!(e instanceof KeyRefused)) $("pull-text").textContent = `Cannot read the models of ${node}: ${e.message}`;
  }
  loadCatalogs();
}

async function removeModel(node, model) {
  try {
    await json("/v2/models/remove", { method: "POST", body: { node, model } });
    $("pull-text").textContent = `Removed ${model} from ${node}.`;
  } catch (e) {
    if (!(e instanceof KeyRefused)) $("pull-text").textContent = `Cannot remove ${model}: ${e.message}`;
  }
  loadCatalogs();
}

$("pull-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const node = $("pull-node").value;
  const model = $("pull-model").value.trim();
  const progress = $("pull-progress");
  const text = $("pull-text");
  progress.hidden = false;
  progress.removeAttribute("value");
  $("pull-status").setAttribute("aria-busy", "true");
  text.textContent = `Pulling ${model} to ${node}…`;
  try {
    await events("/v2/models/pull", { method: "POST", body: { node, model } }, (name, data) => {
      const body = JSON.parse(data);
      if (name === "narration") text.textContent = body.human;
      else if (name === "download" && body.stage === "downloading") {
        progress.max = body.bytes_total || 1;
        progress.value = body.bytes_downloaded;
        text.textContent = `${bytes(body.bytes_downloaded)} of ${bytes(body.bytes_total)} · ${body.speed_mbps.toFixed(1)} MB/s`;
      } else if (name === "end") {
        progress.max = 1;
        progress.value = 1;
        text.textContent = `Pulled ${model} to ${node}.`;
      } else if (name === "error") {
        text.textContent = `Pull failed: ${body.message} (${body.code})`;
      }
    });
  } catch (err) {
    if (!(err instanceof KeyRefused)) text.textContent = `Pull failed: ${err.message}`;
  }
  $("pull-status").removeAttribute("aria-busy");
  loadCatalogs();
});

// ---- Logs ------------------------------------------------------------------------------

let logs = null;

$("logs-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (logs) logs.abort();
  const here = new AbortController();
  logs = here;
  const node = $("logs-node").value;
  const out = $("log-lines");
  out.textContent = "";
  $("logs-stop").disabled = false;
  try {
    await events(`/v2/logs?node=${encodeURIComponent(node)}&follow=true`, { signal: here.signal }, (name, data) => {
      if (name !== "log") return;
      const line = JSON.parse(data);
      const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      out.append(`[${line.source}] ${line.line}\n`);
      if (atBottom) out.scrollTop = out.scrollHeight;
    });
  } catch (err) {
    if (err.name !== "AbortError" && !(err instanceof KeyRefused)) out.append(`\n(${err.message})\n`);
  }
  if (logs === here) $("logs-stop").disabled = true;
});

$("logs-stop").addEventListener("click", () => {
  if (logs) logs.abort();
  $("logs-stop").disabled = true;
});

// ---- Chat ------------------------------------------------------------------------------

const conversation = [];
let answering = null;
/// Counts the chats begun ("New chat"), so an answer that ends after one is not added to it.
let chatNumber = 0;

/// The models the queen can place, each with the nodes whose catalogs have it.
const chatModels = new Map();

async function loadChatModels() {
  const select = $("chat-model");
  try {
    const list = await json("/v1/models");
    chatModels.clear();
    for (const m of list.data) {
      // `rbee` owns the queen's default model; the others are node names.
      const nodes = m.owned_by.split(",").filter((n) => n !== "rbee");
      // Each model is listed bare (placed) and as `<node>/<ref>` (pinned): keep the bare one.
      if (!nodes.some((n) => m.id.startsWith(`${n}/`))) chatModels.set(m.id, nodes);
    }
    const chosen = select.value;
    select.replaceChildren(...[...chatModels.keys()].map((id) => el("option", { value: id }, id)));
    if (chatModels.has(chosen)) select.value = chosen;
    fillChatNodes();
    $("chat-error").textContent = chatModels.size ? "" : "No model in any node's catalog yet: pull one under Models.";
  } catch (e) {
    if (!(e instanceof KeyRefused)) $("chat-error").textContent = `Cannot list the models: ${e.message}`;
  }
}

function fillChatNodes() {
  const select = $("chat-node");
  const chosen = select.value;
  const nodes = chatModels.get($("chat-model").value) || [];
  select.replaceChildren(el("option", { value: "" }, "any (the queen places it)"),
    ...nodes.map((n) => el("option", { value: n }, n)));
  if (nodes.includes(chosen)) select.value = chosen;
}

$("chat-model").addEventListener("change", fillChatNodes);

function addMessage(role, content) {
  const who = el("span", { class: "sr-only" }, role === "user" ? "You: " : "Assistant: ");
  const item = el("li", { class: role }, who, el("span", { class: "text" }, content));
  $("messages").append(item);
  return item;
}

async function send() {
  const input = $("chat-input");
  const content = input.value.trim();
  if (!content || answering) return;
  input.value = "";
  $("chat-error").textContent = "";
  const chat = chatNumber;
  const question = { role: "user", content };
  conversation.push(question);
  const asked = addMessage("user", content);
  const item = addMessage("assistant", "");
  const text = item.querySelector(".text");
  const meta = el("span", { class: "meta" }, "waiting for the first token…");
  item.append(meta);
  const messages = [...conversation];
  const system = $("chat-system").value.trim();
  if (system) messages.unshift({ role: "system", content: system });
  const body = {
    model: $("chat-node").value ? `${$("chat-node").value}/${$("chat-model").value}` : $("chat-model").value,
    messages,
    stream: true,
    temperature: Number($("chat-temperature").value),
    top_p: Number($("chat-top-p").value),
  };
  if ($("chat-max-tokens").value) body.max_tokens = Number($("chat-max-tokens").value);
  answering = new AbortController();
  $("chat-send").disabled = true;
  $("chat-stop").disabled = false;
  const started = performance.now();
  let first = null;
  let tokens = 0;
  let finish = "";
  let failed = false;
  $("messages").setAttribute("aria-busy", "true");
  const rate = () => {
    const seconds = first === null ? 0 : (performance.now() - first) / 1000;
    return tokens > 1 && seconds > 0 ? `${((tokens - 1) / seconds).toFixed(1)} tokens/s` : "";
  };
  try {
    await events("/v1/chat/completions", { method: "POST", body, signal: answering.signal }, (name, data) => {
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices && chunk.choices[0];
      if (!choice) return;
      if (choice.delta && choice.delta.content) {
        if (first === null) first = performance.now();
        tokens += 1;
        text.textContent += choice.delta.content;
        meta.textContent = `${tokens} tokens · ${rate()}`;
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    });
  } catch (e) {
    if (e.name === "AbortError") finish = "stopped";
    else {
      failed = true;
      if (!(e instanceof KeyRefused)) $("chat-error").textContent = `The answer failed: ${e.message}`;
    }
  }
  $("messages").removeAttribute("aria-busy");
  const ttft = first === null ? "" : ` · first token after ${Math.round(first - started)} ms`;
  meta.textContent = `${tokens} tokens · ${rate()}${ttft}${finish ? ` · ${finish}` : ""}`;
  item.dataset.done = "true";
  if (chat === chatNumber) {
    if (failed || !text.textContent) {
      // What failed is not part of the conversation: the question can be asked again.
      conversation.splice(conversation.indexOf(question), 1);
      asked.remove();
      item.remove();
      input.value = content;
    } else {
      conversation.push({ role: "assistant", content: text.textContent });
    }
  }
  answering = null;
  $("chat-send").disabled = false;
  $("chat-stop").disabled = true;
  input.focus();
}

$("chat-form").addEventListener("submit", (e) => { e.preventDefault(); send(); });
$("chat-input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
});
$("chat-stop").addEventListener("click", () => { if (answering) answering.abort(); });
$("chat-clear").addEventListener("click", () => {
  if (answering) answering.abort();
  chatNumber += 1;
  conversation.length = 0;
  $("messages").replaceChildren();
});

// ---- Start -----------------------------------------------------------------------------

show("lab");
followLab();
