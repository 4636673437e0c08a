// The chat page: plain fetch() against the sidecar's HTTP/JSON rules of chat.proto (same
// origin: the chat binary passes /presence/ and /friends/ on to the sidecar). Server streams are
// read as newline-delimited JSON, one message per line; a line {"error": "..."} ends a stream
// with a failure.
"use strict";

const $ = (id) => document.getElementById(id);
const NAME = /^[A-Za-z0-9_-]{1,32}$/;

// readStream calls onMessage with every message of the server stream at path until the stream
// ends or signal aborts. It rejects on an HTTP error or a failure in the stream.
async function readStream(path, init, signal, onMessage) {
  const resp = await fetch(path, { ...init, signal, headers: { Accept: "application/x-ndjson" } });
  if (!resp.ok) {
    throw new Error(`${resp.status}: ${(await resp.text()) || resp.statusText}`);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line);
      if (typeof msg.error === "string" && Object.keys(msg).length === 1) {
        throw new Error(msg.error);
      }
      onMessage(msg);
    }
  }
}

// keepReading reads the stream again whenever it ends or fails, with a growing pause, until
// signal aborts. onDown is told of every interruption.
async function keepReading(path, init, signal, onMessage, onDown) {
  let pause = 500;
  while (!signal.aborted) {
    let got = false;
    try {
      await readStream(path, init, signal, (m) => { got = true; pause = 500; onMessage(m); });
      if (signal.aborted) return;
      onDown(null);
    } catch (err) {
      if (signal.aborted) return;
      onDown(err);
    }
    if (!got) pause = Math.min(pause * 2, 5000);
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
}

async function call(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await resp.text();
  if (!resp.ok) throw new Error(text || `${resp.status} ${resp.statusText}`);
  return text ? JSON.parse(text) : {};
}

function showError(err) {
  const el = $("error");
  el.textContent = err ? String(err.message || err) : "";
  el.hidden = !err;
}

// session is the signed-in user: their Connect stream and a Monitor stream per friend.
let session = null;

function signIn(name) {
  showError(null);
  session = { name, ctl: new AbortController(), friends: new Map() };
  $("signin").hidden = true;
  $("session").hidden = false;
  $("me-name").textContent = name;
  setMe("connecting");
  const s = session;
  const path = `/presence/${encodeURIComponent(name)}/connect`;
  keepReading(path, { method: "POST" }, s.ctl.signal,
    () => setMe("online"),
    (err) => { setMe("reconnecting"); if (err) console.warn("connect:", err); });
  refreshFriends().catch(showError);
}

function signOut() {
  if (!session) return;
  session.ctl.abort();
  for (const f of session.friends.values()) f.ctl.abort();
  session = null;
  $("friends").replaceChildren();
  $("session").hidden = true;
  $("signin").hidden = false;
  $("name").focus();
}

function setMe(state) {
  const el = $("me-state");
  el.dataset.state = state;
  el.textContent = { connecting: "connecting…", online: "online", reconnecting: "reconnecting…" }[state];
  $("me-dot").className = "dot" + (state === "online" ? " online" : " unknown");
}

// refreshFriends lists the user's friends and starts or stops their Monitor streams.
async function refreshFriends() {
  const s = session;
  const list = await call("GET", `/friends/${encodeURIComponent(s.name)}`);
  if (s !== session) return;
  const names = list.friends || [];
  for (const [name, f] of s.friends) {
    if (!names.includes(name)) {
      f.ctl.abort();
      f.el.remove();
      s.friends.delete(name);
    }
  }
  for (const name of names) {
    if (!s.friends.has(name)) s.friends.set(name, monitor(name));
  }
  // Sorted by the server; keep the DOM in that order.
  $("friends").replaceChildren(...names.map((n) => s.friends.get(n).el));
  $("no-friends").hidden = names.length > 0;
}

// monitor makes a friend's row and keeps it up to date from their Monitor stream.
function monitor(name) {
  const el = document.createElement("li");
  el.dataset.friend = name;
  el.dataset.online = "unknown";
  const dot = document.createElement("span");
  dot.className = "dot unknown";
  const label = document.createElement("span");
  label.className = "name";
  label.textContent = name;
  const status = document.createElement("span");
  status.className = "status";
  status.textContent = "…";
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "link";
  remove.title = `Remove ${name}`;
  remove.textContent = "✕";
  remove.addEventListener("click", () => {
    call("POST", `/friends/${encodeURIComponent(session.name)}/remove`, { friend: name })
      .then(refreshFriends).catch(showError);
  });
  el.append(dot, label, status, remove);

  const set = (online) => {
    el.dataset.online = online === null ? "unknown" : String(online);
    dot.className = "dot" + (online === null ? " unknown" : online ? " online" : "");
    status.textContent = online === null ? "…" : online ? "online" : "offline";
  };
  const ctl = new AbortController();
  keepReading(`/presence/${encodeURIComponent(name)}`, { method: "GET" }, ctl.signal,
    (m) => set(m.online === true),
    (err) => { set(null); if (err) console.warn(`monitor ${name}:`, err); });
  return { el, ctl };
}

$("signin-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = $("name").value.trim();
  if (!NAME.test(name)) return showError("A name is 1 to 32 letters, digits, - or _.");
  signIn(name);
});

$("add-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const friend = $("friend").value.trim();
  if (!NAME.test(friend)) return showError("A name is 1 to 32 letters, digits, - or _.");
  showError(null);
  call("POST", `/friends/${encodeURIComponent(session.name)}/add`, { friend })
    .then(() => { $("friend").value = ""; return refreshFriends(); })
    .catch(showError);
});

$("signout").addEventListener("click", signOut);
