// avscene's status page: the status from /api/events (server-sent, every second), the
// timelines from /api/timeline (every 15 s), recordings through /api/streams/<name>/record.
"use strict";

const PALETTE = ["#2f6fde", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599",
  "#e67700", "#5c940d", "#d6336c", "#1864ab", "#862e9c", "#495057"];
const TOKEN_KEY = "avscene-token";
const cards = new Map();
let classes = [];
let timelines = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function colour(index) { return PALETTE[index % PALETTE.length]; }
function percent(p) { return (100 * p).toFixed(1) + " %"; }
function duration(s) {
  if (s < 90) return Math.round(s) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

function pair(list, name, cls) {
  const dd = el("dd", { class: cls || "" });
  list.append(el("div", {}, el("dt", { text: name }), dd));
  return dd;
}

// The header: the daemon's own figures.
const daemon = {};
function showDaemon(d) {
  const list = document.getElementById("daemon");
  if (!daemon.model) {
    daemon.model = pair(list, "model");
    daemon.rate = pair(list, "windows/s");
    daemon.mqtt = pair(list, "MQTT");
    daemon.queue = pair(list, "queue");
    daemon.uptime = pair(list, "up");
  }
  daemon.model.textContent = `${d.model_id} on ${d.device}`;
  daemon.rate.textContent = d.windows_per_s.toFixed(2);
  daemon.mqtt.textContent = d.mqtt.connected
    ? `connected, outbox ${d.mqtt.outbox}` : `disconnected, outbox ${d.mqtt.outbox}`;
  daemon.mqtt.className = d.mqtt.connected ? "good" : "badtext";
  daemon.queue.textContent = `${d.queue.depth}/${d.queue.capacity}, dropped ${d.queue.dropped}`;
  daemon.uptime.textContent = duration(d.uptime_s);
  document.getElementById("token").hidden = !d.token_required;
}

// One card per stream, made once and updated in place.
function makeCard(name) {
  const card = el("article", { class: "card", "data-stream": name });
  const title = el("h2", {}, el("span", { text: name }), el("span", { class: "badge" }));
  const problem = el("div", { class: "problem" });
  const frame = el("img", { class: "frame", alt: `what the model saw of ${name}`, width: "224", height: "224" });
  const now = el("div", { class: "now" },
    el("div", { class: "label", text: "…" }),
    el("div", { class: "confidence" }),
    el("div", { class: "small level-text" }),
    el("div", { class: "meter level" }, el("span")),
    el("div", { class: "small latency" }));
  const top = el("div", { class: "top" }, frame, now);
  const bars = el("div", { class: "bars" });
  const canvas = el("canvas", { class: "timeline", width: "720", height: "22" });
  const legend = el("div", { class: "legend" });
  const counters = el("dl", { class: "counters" });
  const c = {};
  for (const [key, name] of [["windows", "windows"], ["restarts", "restarts"], ["dropped", "dropped"],
    ["filled_frames", "filled frames"], ["filled_s", "filled sound"], ["faults", "faults"]]) {
    c[key] = pair(counters, name);
  }
  const record = makeRecordForm(name);
  card.append(title, problem, top, bars, canvas, legend, counters, record.form);
  document.getElementById("streams").append(card);
  return { card, title, problem, frame, now, bars, canvas, legend, counters: c, record, rows: [] };
}

function makeRecordForm(stream) {
  const label = el("input", { name: "label", placeholder: "label, e.g. parcel", required: "", pattern: "[A-Za-z0-9_.\\-]+" });
  const minutes = el("input", { name: "minutes", type: "number", min: "0.17", max: "10080", step: "any", value: "1" });
  const start = el("button", { type: "submit", class: "primary start", text: "Record" });
  const stop = el("button", { type: "button", class: "stop", text: "Stop" });
  const progress = el("div", { class: "meter progress" }, el("span"));
  const said = el("div", { class: "said" });
  const form = el("form", { class: "record" }, el("strong", { text: "Record" }), label,
    el("span", { text: "for" }), minutes, el("span", { text: "min" }), start, stop, progress, said);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(stream, { label: label.value.trim(), minutes: Number(minutes.value) }, said);
  });
  stop.addEventListener("click", () => send(stream, { action: "stop" }, said));
  return { form, label, minutes, start, stop, progress, said };
}

async function send(stream, body, said) {
  const headers = { "Content-Type": "application/json" };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  said.className = "said";
  said.textContent = "…";
  try {
    const response = await fetch(`/api/streams/${encodeURIComponent(stream)}/record`,
      { method: "POST", headers, body: JSON.stringify(body) });
    const answer = await response.json();
    if (!response.ok) {
      said.className = "said error";
      said.textContent = answer.error || `refused (${response.status})`;
    } else {
      said.textContent = "";
    }
  } catch (e) {
    said.className = "said error";
    said.textContent = "the daemon does not answer: " + e;
  }
}

function showStream(s) {
  let c = cards.get(s.name);
  if (!c) { c = makeCard(s.name); cards.set(s.name, c); }
  c.card.dataset.state = s.state;
  if (s.seq !== null) c.card.dataset.seq = s.seq;
  const badge = c.title.querySelector(".badge");
  badge.className = "badge " + s.state;
  badge.textContent = s.state === "restarting" && s.retry_in_s !== null
    ? `restarting in ${Math.ceil(s.retry_in_s)} s` : s.state;
  c.problem.textContent = s.error || "";
  const [label, confidence, levelText, level, latency] = c.now.children;
  label.textContent = s.label || "no label yet";
  confidence.textContent = s.confidence !== null ? `confidence ${percent(s.confidence)}` : "";
  if (s.audio_dbfs !== null) {
    levelText.textContent = `sound ${s.audio_dbfs.toFixed(1)} dBFS`;
    level.firstChild.style.width = Math.max(0, Math.min(100, (s.audio_dbfs + 90) / 90 * 100)) + "%";
  }
  latency.textContent = s.latency_ms !== null
    ? `latency ${Math.round(s.latency_ms)} ms · label ${duration(s.label_age_s)} old` : "";
  if (s.frame && c.frame.dataset.src !== s.frame) {
    c.frame.dataset.src = s.frame;
    c.frame.src = s.frame;
  }
  showBars(c, s);
  const k = c.counters;
  k.windows.textContent = s.windows;
  k.restarts.textContent = s.restarts;
  k.dropped.textContent = s.dropped;
  k.filled_frames.textContent = s.filled_frames;
  k.filled_s.textContent = (s.filled_samples / 48000).toFixed(1) + " s";
  k.faults.textContent = s.faults;
  showRecording(c.record, s.recording);
}

function showBars(c, s) {
  if (c.rows.length !== classes.length) {
    c.bars.replaceChildren();
    c.rows = classes.map((name, i) => {
      const row = { name: el("span", { class: "class", text: name }), bar: el("div", { class: "bar", "data-class": name }, el("span")), value: el("span", { class: "value" }) };
      row.bar.firstChild.style.background = colour(i);
      c.bars.append(row.name, row.bar, row.value);
      return row;
    });
  }
  const probabilities = s.probabilities || {};
  classes.forEach((name, i) => {
    const p = probabilities[name] ?? 0;
    const row = c.rows[i];
    row.bar.firstChild.style.width = (100 * p).toFixed(1) + "%";
    row.bar.dataset.p = p;
    row.value.textContent = percent(p);
    row.name.classList.toggle("top-class", name === s.label);
  });
}

function showRecording(r, state) {
  const recording = state.state === "recording";
  r.start.hidden = recording;
  r.stop.hidden = !recording;
  r.label.disabled = recording;
  r.minutes.disabled = recording;
  r.form.dataset.state = state.state;
  r.form.dataset.clips = state.clips;
  r.progress.hidden = state.state === "idle";
  r.progress.firstChild.style.width = state.target ? (100 * state.clips / state.target) + "%" : "0";
  if (r.said.classList.contains("error") && r.said.textContent) return;
  const skipped = state.skipped ? `, ${state.skipped} left out (source stalled)` : "";
  const texts = {
    idle: "",
    recording: `recording '${state.label}': ${state.clips} of ${state.target} clips${skipped}; the first takes 10 s`,
    done: `recorded ${state.clips} clips of '${state.label}' into ${state.folder}${skipped}`,
    stopped: `stopped: ${state.clips} of ${state.target} clips of '${state.label}' kept in ${state.folder}`,
    failed: `failed after ${state.clips} clips: ${state.error}`,
  };
  r.said.textContent = texts[state.state] || "";
}

function showTimelines() {
  if (!timelines) return;
  for (const [name, c] of cards) {
    const segments = timelines.streams[name] || [];
    const ctx = c.canvas.getContext("2d");
    const width = c.canvas.width, height = c.canvas.height;
    const from = timelines.now - 3600;
    ctx.clearRect(0, 0, width, height);
    const seen = new Set();
    for (const seg of segments) {
      const x0 = Math.max(0, (seg.start - from) / 3600 * width);
      const x1 = Math.min(width, (seg.end - from) / 3600 * width);
      ctx.fillStyle = colour(seg.class);
      ctx.fillRect(x0, 0, Math.max(1, x1 - x0), height);
      seen.add(seg.class);
    }
    c.legend.replaceChildren(el("span", { text: "last hour:" }),
      ...[...seen].sort((a, b) => a - b).map((i) => {
        const swatch = el("i");
        swatch.style.background = colour(i);
        return el("span", {}, swatch, timelines.classes[i]);
      }));
  }
}

async function loadTimelines() {
  try {
    const response = await fetch("/api/timeline");
    if (response.ok) { timelines = await response.json(); showTimelines(); }
  } catch (e) { /* the feed says when the daemon is away */ }
}

function show(status) {
  classes = status.classes;
  showDaemon(status.daemon);
  const names = new Set(status.streams.map((s) => s.name));
  for (const [name, c] of cards) {
    if (!names.has(name)) { c.card.remove(); cards.delete(name); }
  }
  status.streams.forEach(showStream);
  if (!timelines) loadTimelines();
}

function connect() {
  const feed = document.getElementById("feed");
  const events = new EventSource("/api/events");
  events.addEventListener("status", (event) => {
    feed.className = "feed live";
    feed.textContent = "live";
    show(JSON.parse(event.data));
  });
  events.onerror = () => {
    feed.className = "feed lost";
    feed.textContent = "the daemon does not answer; retrying";
  };
}

function setUpToken() {
  const input = document.getElementById("token-input");
  const said = document.getElementById("token-said");
  input.value = localStorage.getItem(TOKEN_KEY) || "";
  document.getElementById("token-save").addEventListener("click", () => {
    localStorage.setItem(TOKEN_KEY, input.value.trim());
    said.textContent = "kept in this browser";
  });
}

setUpToken();
connect();
setInterval(loadTimelines, 15000);
