// ocpp-gateway web console: the /ui WebSocket API (gateway/ui/ui-api.schema.json) in a page.
//
// Everything that comes from the gateway or from a charge point is untrusted text: it is only
// ever shown with textContent. Live events change the model and mark identities dirty; the DOM
// is updated once per animation frame, in place (one <tr> per identity, never a full re-render).

const TOKEN_KEY = "ocpp-gateway.console.token"; // sessionStorage: this tab only
const LOG_LIMIT = 100; // frames kept per charge point, newest first
const FRAME_CHARS = 8192; // longer frames are kept truncated
const SECURITY_LIMIT = 200; // security events shown
const RELIST_DELAY_MS = 1000; // after connection events: re-read the list (security profiles)
const RECONNECT_MAX_MS = 30000;
const FILTER_DELAY_MS = 150;
const CLOSE_POLICY_VIOLATION = 1008; // the gateway refused the token

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("status"),
  signOut: $("sign-out"),
  signIn: $("sign-in"),
  signInForm: $("sign-in-form"),
  token: $("token"),
  signInError: $("sign-in-error"),
  app: $("app"),
  notices: $("notices"),
  count: $("cp-count"),
  filter: $("filter"),
  rows: $("cp-rows"),
  empty: $("cp-empty"),
  detailTitle: $("detail-title"),
  commandForm: $("command-form"),
  viewerNote: $("viewer-note"),
  cmdIdentity: $("cmd-identity"),
  cmdAction: $("cmd-action"),
  cmdPayload: $("cmd-payload"),
  payloadError: $("payload-error"),
  result: $("result"),
  resultSummary: $("result-summary"),
  resultBody: $("result-body"),
  log: $("log"),
  logEmpty: $("log-empty"),
  security: $("security"),
  securityRows: $("security-rows"),
  securityEmpty: $("security-empty"),
};

// -- state ----------------------------------------------------------------------------------

const session = {
  token: null, // the secret, in memory while signed in (and in sessionStorage once accepted)
  socket: null,
  welcomed: false, // the current socket was accepted
  trusted: false, // the token was accepted once: failures to connect are retried
  role: null,
  nextId: 1,
  pending: new Map(), // request id -> function(answer)
  reconnectDelay: 1000,
  reconnectTimer: 0,
  relistTimer: 0,
  commandId: null, // the command whose answer the form waits for
};

const chargePoints = new Map(); // identity -> {subprotocol, profile, connectedAt, lastAt}
const frameLogs = new Map(); // identity -> [{direction, at, frame, summary}] newest first
const rows = new Map(); // identity -> {tr, button, cells, shown}
const order = []; // identities that have a row, sorted (the table's order)
const dirty = new Set(); // identities whose row must be created, updated or removed
const securityQueue = []; // security events not yet shown
let selected = null;
let filterText = "";
let logDirty = false;
let countDirty = true;
let frameRequested = false;
let droppedTotal = 0;
let droppedNotice = null;

// -- rendering, batched per animation frame -----------------------------------------------------

function schedule() {
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(flush);
  }
}

function markDirty(identity) {
  dirty.add(identity);
  schedule();
}

function flush() {
  frameRequested = false;
  for (const identity of dirty) {
    const cp = chargePoints.get(identity);
    if (cp === undefined) {
      removeRow(identity);
    } else {
      renderRow(identity, cp);
    }
  }
  dirty.clear();
  if (countDirty) renderCount();
  if (logDirty) renderLog();
  if (securityQueue.length > 0) renderSecurity();
}

function renderRow(identity, cp) {
  let row = rows.get(identity);
  if (row === undefined) {
    row = createRow(identity);
    insertRow(identity, row);
  }
  setCell(row, "version", cp.subprotocol, (v) => v || "?");
  setCell(row, "profile", cp.profile, (v) => (v === null ? "…" : String(v)));
  setCell(row, "connected", cp.connectedAt, formatTime);
  setCell(row, "last", cp.lastAt, formatTime);
}

function setCell(row, name, value, format) {
  if (row.values[name] === value) return;
  row.values[name] = value;
  row.cells[name].textContent = format(value);
}

function createRow(identity) {
  const tr = document.createElement("tr");
  tr.dataset.identity = identity;
  const first = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "identity";
  button.textContent = identity;
  button.setAttribute("aria-pressed", String(identity === selected));
  first.append(button);
  tr.append(first);
  const cells = {};
  for (const name of ["version", "profile", "connected", "last"]) {
    const td = document.createElement("td");
    if (name === "connected" || name === "last") td.className = "time";
    cells[name] = td;
    tr.append(td);
  }
  if (identity === selected) tr.classList.add("selected");
  const shown = matchesFilter(identity);
  tr.hidden = !shown;
  return { tr, button, cells, values: {}, shown };
}

function position(identity) {
  // Binary search in `order`: the index of `identity`, or where it would go.
  let low = 0;
  let high = order.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (order[middle] < identity) low = middle + 1;
    else high = middle;
  }
  return low;
}

function insertRow(identity, row) {
  const index = position(identity);
  const next = order[index];
  order.splice(index, 0, identity);
  rows.set(identity, row);
  ui.rows.insertBefore(row.tr, next === undefined ? null : rows.get(next).tr);
  countDirty = true;
}

function removeRow(identity) {
  const row = rows.get(identity);
  if (row === undefined) return;
  order.splice(position(identity), 1);
  rows.delete(identity);
  row.tr.remove();
  countDirty = true;
  if (identity === selected) renderDetailTitle();
}

function renderCount() {
  countDirty = false;
  const total = rows.size;
  let shown = total;
  if (filterText) {
    shown = 0;
    for (const row of rows.values()) if (row.shown) shown += 1;
  }
  ui.count.textContent =
    shown === total ? `${total} connected` : `${shown} of ${total} shown`;
  ui.empty.hidden = shown > 0;
  ui.empty.textContent =
    total === 0 ? "No charge point is connected." : "No charge point matches the filter.";
}

const timeOnly = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const dateAndTime = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });

function formatTime(seconds) {
  if (!seconds) return "—";
  const date = new Date(seconds * 1000);
  const today = new Date();
  const sameDay =
    date.getDate() === today.getDate() &&
    date.getMonth() === today.getMonth() &&
    date.getFullYear() === today.getFullYear();
  return (sameDay ? timeOnly : dateAndTime).format(date);
}

// -- filter and selection -----------------------------------------------------------------------

function matchesFilter(identity) {
  return !filterText || identity.toLowerCase().includes(filterText);
}

function applyFilter() {
  filterText = ui.filter.value.trim().toLowerCase();
  for (const [identity, row] of rows) {
    const shown = matchesFilter(identity);
    if (shown !== row.shown) {
      row.shown = shown;
      row.tr.hidden = !shown;
    }
  }
  renderCount();
}

function select(identity) {
  const previous = rows.get(selected);
  if (previous !== undefined) {
    previous.tr.classList.remove("selected");
    previous.button.setAttribute("aria-pressed", "false");
  }
  selected = identity;
  const row = rows.get(identity);
  if (row !== undefined) {
    row.tr.classList.add("selected");
    row.button.setAttribute("aria-pressed", "true");
  }
  ui.cmdIdentity.value = identity;
  renderDetailTitle();
  logDirty = true;
  schedule();
}

function renderDetailTitle() {
  if (selected === null) {
    ui.detailTitle.textContent = "No charge point selected";
  } else {
    const gone = chargePoints.has(selected) ? "" : " (disconnected)";
    ui.detailTitle.textContent = `${selected}${gone}`;
  }
}

// -- message log ------------------------------------------------------------------------------

function remember(identity, direction, at, frame) {
  let frames = frameLogs.get(identity);
  if (frames === undefined) {
    frames = [];
    frameLogs.set(identity, frames);
  }
  const text =
    frame.length > FRAME_CHARS
      ? `${frame.slice(0, FRAME_CHARS)}… (${frame.length} characters, truncated)`
      : frame;
  frames.unshift({ direction, at, frame: text, summary: null });
  if (frames.length > LOG_LIMIT) frames.length = LOG_LIMIT;
  if (identity === selected) {
    logDirty = true;
    schedule();
  }
}

function summarize(frame) {
  // [2, id, action, payload] | [3, id, payload] | [4, id, code, description, details]
  try {
    const message = JSON.parse(frame);
    if (!Array.isArray(message)) return "";
    if (message[0] === 2) return `CALL ${message[2]}`;
    if (message[0] === 3) return "CALLRESULT";
    if (message[0] === 4) return `CALLERROR ${message[2]}`;
  } catch {
    // not JSON (the gateway rejects it): show the frame as it is
  }
  return "";
}

function renderLog() {
  logDirty = false;
  const frames = selected === null ? [] : frameLogs.get(selected) || [];
  const items = document.createDocumentFragment();
  for (const entry of frames) {
    if (entry.summary === null) entry.summary = summarize(entry.frame);
    const item = document.createElement("li");
    const head = document.createElement("div");
    head.className = "frame-head";
    const direction = document.createElement("span");
    direction.className = `direction ${entry.direction}`;
    direction.textContent = entry.direction === "in" ? "← from charge point" : "→ to charge point";
    const time = document.createElement("span");
    time.textContent = formatTime(entry.at);
    const summary = document.createElement("span");
    summary.textContent = entry.summary;
    head.append(direction, time, summary);
    const body = document.createElement("pre");
    body.className = "frame";
    body.textContent = entry.frame;
    item.append(head, body);
    items.append(item);
  }
  ui.log.replaceChildren(items);
  ui.logEmpty.hidden = frames.length > 0;
  ui.logEmpty.textContent =
    selected === null
      ? "Select a charge point to see its messages."
      : "No message since the console connected.";
}

// -- security events --------------------------------------------------------------------------

function renderSecurity() {
  const batch = securityQueue.splice(0).slice(-SECURITY_LIMIT);
  for (const event of batch) {
    const tr = document.createElement("tr");
    const values = [
      formatTime(event.at),
      event.reason || "",
      event.identity || "—",
      event.remote || "",
      event.detail || "",
    ];
    for (const value of values) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    ui.securityRows.prepend(tr);
  }
  while (ui.securityRows.childElementCount > SECURITY_LIMIT) ui.securityRows.lastChild.remove();
  ui.securityEmpty.hidden = ui.securityRows.childElementCount > 0;
}

// -- notices ----------------------------------------------------------------------------------

function notice(text, kind = "warning") {
  const box = document.createElement("div");
  box.className = `notice ${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  const message = document.createElement("span");
  message.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "Dismiss";
  close.className = "dismiss";
  close.addEventListener("click", () => {
    box.remove();
    if (box === droppedNotice) droppedNotice = null;
  });
  box.append(message, " ", close);
  ui.notices.prepend(box);
  while (ui.notices.childElementCount > 5) ui.notices.lastChild.remove();
  return box;
}

function onDropped(count) {
  droppedTotal += count;
  const text =
    `${droppedTotal} live events were dropped because the console read too slowly ` +
    "(last at " + formatTime(Date.now() / 1000) + "); the table was re-read.";
  if (droppedNotice !== null && droppedNotice.isConnected) {
    droppedNotice.firstChild.textContent = text;
  } else {
    droppedNotice = notice(text);
  }
  scheduleRelist(0);
}

// -- the WebSocket session ------------------------------------------------------------------------

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function connect() {
  clearTimeout(session.reconnectTimer);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/ui`);
  session.socket = socket;
  session.welcomed = false;
  setStatus("connecting", "Connecting…");
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ type: "auth", token: session.token }));
  });
  socket.addEventListener("message", (event) => {
    if (socket === session.socket) receive(event.data);
  });
  socket.addEventListener("close", (event) => {
    if (socket === session.socket) closed(event);
  });
}

function send(message) {
  const socket = session.socket;
  if (socket === null || socket.readyState !== WebSocket.OPEN || !session.welcomed) return false;
  socket.send(JSON.stringify(message));
  return true;
}

function request(message, onAnswer) {
  const id = `c${session.nextId++}`;
  if (!send({ ...message, id })) return null;
  session.pending.set(id, onAnswer);
  return id;
}

function receive(data) {
  let message;
  try {
    message = JSON.parse(data);
  } catch {
    notice("The gateway sent a message that is not JSON.", "error");
    return;
  }
  switch (message.type) {
    case "welcome":
      welcomed(message);
      return;
    case "event":
      onEvent(message);
      return;
    case "dropped":
      onDropped(message.count);
      return;
    default:
      break;
  }
  const handler = session.pending.get(message.id);
  if (handler !== undefined) {
    session.pending.delete(message.id);
    handler(message);
  } else if (message.type === "error") {
    notice(`The gateway refused a request: ${message.code}: ${message.reason}`, "error");
  }
}

function welcomed(message) {
  session.welcomed = true;
  session.trusted = true;
  session.reconnectDelay = 1000;
  session.role = message.role;
  sessionStorage.setItem(TOKEN_KEY, session.token);
  const expires = message.expires_at ? `, expires ${formatTime(message.expires_at)}` : "";
  setStatus("connected", `Connected as ${message.role} (token ${message.token_id}${expires})`);
  ui.signIn.hidden = true;
  ui.signInError.hidden = true;
  ui.app.hidden = false;
  ui.signOut.hidden = false;
  const operator = message.role === "operator" || message.role === "admin";
  ui.commandForm.hidden = !operator;
  ui.viewerNote.hidden = operator;
  ui.security.hidden = message.role !== "admin";
  setCommandBusy(false);

  // Subscribe first, then list: events between the two are covered by the list.
  request({ type: "subscribe", identities: ["*"], events: ["connection", "message"] }, failed);
  if (message.role === "admin") {
    request({ type: "subscribe", identities: ["*"], events: ["security"] }, failed);
  }
  relist();
}

function failed(answer) {
  if (answer.type === "error") notice(`${answer.code}: ${answer.reason}`, "error");
}

function closed(event) {
  const wasWelcomed = session.welcomed;
  session.socket = null;
  session.welcomed = false;
  session.pending.clear();
  if (session.commandId !== null) {
    showAnswer({ type: "error", code: "offline", reason: "the console lost its connection" });
  }
  if (session.token === null) return; // signed out
  if (!wasWelcomed && event.code === CLOSE_POLICY_VIOLATION) {
    forgetToken();
    showSignIn("The gateway refused this token: unknown, expired or revoked.");
    setStatus("error", "Sign-in failed");
    return;
  }
  if (!session.trusted) {
    session.token = null; // never accepted: the user signs in again
    showSignIn(`Cannot reach the gateway (WebSocket closed with code ${event.code}).`);
    setStatus("error", "Not connected");
    return;
  }
  const delay = session.reconnectDelay;
  session.reconnectDelay = Math.min(delay * 2, RECONNECT_MAX_MS);
  const reason = event.reason ? `: ${event.reason}` : "";
  setStatus(
    "error",
    `Disconnected (code ${event.code}${reason}); reconnecting in ${Math.round(delay / 1000)} s`,
  );
  session.reconnectTimer = setTimeout(connect, delay);
}

function relist() {
  request({ type: "list" }, (answer) => {
    if (answer.type === "charge_points") synchronize(answer.charge_points);
    else failed(answer);
  });
}

function scheduleRelist(delay = RELIST_DELAY_MS) {
  if (session.relistTimer) return;
  session.relistTimer = setTimeout(() => {
    session.relistTimer = 0;
    relist();
  }, delay);
}

function synchronize(list) {
  // The list is the truth: it was made after every event received before it.
  const connected = new Set();
  for (const item of list) {
    connected.add(item.identity);
    const known = chargePoints.get(item.identity);
    chargePoints.set(item.identity, {
      subprotocol: item.subprotocol,
      profile: item.security_profile,
      connectedAt: item.connected_at,
      lastAt: Math.max(item.last_message_at || 0, known ? known.lastAt : 0),
    });
    dirty.add(item.identity);
  }
  for (const identity of [...chargePoints.keys(), ...rows.keys()]) {
    if (!connected.has(identity)) {
      chargePoints.delete(identity);
      dirty.add(identity);
    }
  }
  for (const identity of frameLogs.keys()) {
    if (!connected.has(identity) && identity !== selected) frameLogs.delete(identity);
  }
  renderDetailTitle();
  schedule();
}

function onEvent(event) {
  const identity = event.identity;
  switch (event.event) {
    case "connected":
      chargePoints.set(identity, {
        subprotocol: event.subprotocol || "",
        profile: null, // not in the event: the next list tells
        connectedAt: event.at,
        lastAt: event.at,
      });
      markDirty(identity);
      scheduleRelist();
      if (identity === selected) renderDetailTitle();
      break;
    case "disconnected":
      chargePoints.delete(identity);
      if (identity !== selected) frameLogs.delete(identity);
      markDirty(identity);
      // A replaced session's late disconnect may follow its successor's connect: re-read.
      scheduleRelist();
      if (identity === selected) renderDetailTitle();
      break;
    case "message": {
      const cp = chargePoints.get(identity);
      if (cp !== undefined && event.direction === "in") {
        cp.lastAt = event.at;
        markDirty(identity);
      }
      remember(identity, event.direction, event.at, event.frame || "");
      break;
    }
    case "security":
      securityQueue.push(event);
      if (securityQueue.length > SECURITY_LIMIT) securityQueue.shift();
      schedule();
      break;
    default:
      break;
  }
}

// -- sign in and out ------------------------------------------------------------------------------

function showSignIn(error) {
  ui.app.hidden = true;
  ui.signOut.hidden = true;
  ui.signIn.hidden = false;
  ui.signInError.hidden = !error;
  ui.signInError.textContent = error || "";
  ui.signInForm.querySelector("button").disabled = false;
  ui.token.setAttribute("aria-invalid", String(Boolean(error)));
  ui.token.focus();
}

function forgetToken() {
  session.token = null;
  session.trusted = false;
  sessionStorage.removeItem(TOKEN_KEY);
}

function resetView() {
  chargePoints.clear();
  frameLogs.clear();
  rows.clear();
  order.length = 0;
  dirty.clear();
  securityQueue.length = 0;
  selected = null;
  ui.rows.replaceChildren();
  ui.log.replaceChildren();
  ui.securityRows.replaceChildren();
  ui.notices.replaceChildren();
  ui.result.hidden = true;
  ui.cmdIdentity.value = "";
  droppedTotal = 0;
  droppedNotice = null;
  renderDetailTitle();
  renderCount();
  logDirty = true;
  ui.securityEmpty.hidden = false;
  schedule();
}

function signIn(event) {
  event.preventDefault();
  const token = ui.token.value.trim();
  ui.token.value = "";
  if (!token) {
    showSignIn("Enter an API token.");
    return;
  }
  resetView();
  session.token = token;
  session.trusted = false;
  ui.signInError.hidden = true;
  ui.signInForm.querySelector("button").disabled = true;
  connect();
}

function signOut() {
  const socket = session.socket;
  forgetToken();
  session.socket = null;
  session.welcomed = false;
  clearTimeout(session.reconnectTimer);
  clearTimeout(session.relistTimer);
  session.relistTimer = 0;
  if (socket !== null) socket.close(1000, "signed out");
  resetView();
  setStatus("signed-out", "Signed out");
  showSignIn("");
}

// -- commands ---------------------------------------------------------------------------------

const ERROR_MEANINGS = {
  offline: "the charge point is not connected",
  timeout: "the charge point did not answer in time",
  invalid: "the gateway refused the payload for this action and OCPP version",
  forbidden: "this token may not do that",
  rate_limited: "too many commands: wait a little",
  bad_request: "the request was malformed",
  too_large: "the request is too large",
};

function payloadProblem(text) {
  let payload;
  try {
    payload = JSON.parse(text);
  } catch (error) {
    return { problem: `The payload is not valid JSON: ${error.message}` };
  }
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    return { problem: "The payload must be a JSON object, for example {}." };
  }
  return { payload };
}

function setCommandBusy(busy) {
  ui.commandForm.querySelector("button[type=submit]").disabled = busy;
  ui.commandForm.setAttribute("aria-busy", String(busy));
}

function sendCommand(event) {
  event.preventDefault();
  const identity = ui.cmdIdentity.value.trim();
  const action = ui.cmdAction.value.trim();
  const { problem, payload } = payloadProblem(ui.cmdPayload.value);
  ui.cmdPayload.setAttribute("aria-invalid", String(Boolean(problem)));
  ui.payloadError.hidden = !problem;
  ui.payloadError.textContent = problem || "";
  if (problem) {
    ui.cmdPayload.focus();
    return;
  }
  if (!identity || !action) {
    (identity ? ui.cmdAction : ui.cmdIdentity).focus();
    return;
  }
  const id = request({ type: "command", identity, action, payload }, showAnswer);
  ui.result.hidden = false;
  if (id === null) {
    showAnswer({ type: "error", code: "offline", reason: "the console is not connected" });
    return;
  }
  session.commandId = id;
  setCommandBusy(true);
  ui.result.dataset.outcome = "pending";
  ui.resultSummary.textContent = `Waiting for ${identity} to answer ${action}…`;
  ui.resultBody.textContent = "";
}

function showAnswer(answer) {
  session.commandId = null;
  setCommandBusy(false);
  ui.result.hidden = false;
  const who = answer.identity ? `${answer.identity} answered ${answer.action}: ` : "";
  if (answer.type === "result" && answer.outcome === "callresult") {
    ui.result.dataset.outcome = "callresult";
    ui.resultSummary.textContent = `${who}CALLRESULT`;
    ui.resultBody.textContent = JSON.stringify(answer.payload ?? {}, null, 2);
  } else if (answer.type === "result") {
    ui.result.dataset.outcome = "callerror";
    ui.resultSummary.textContent =
      `${who}CALLERROR ${answer.error_code}` +
      (answer.description ? `: ${answer.description}` : "");
    ui.resultBody.textContent = JSON.stringify(answer.details ?? {}, null, 2);
  } else {
    ui.result.dataset.outcome = "error";
    const meaning = ERROR_MEANINGS[answer.code];
    ui.resultSummary.textContent =
      `Error ${answer.code}` + (meaning ? ` (${meaning})` : "");
    ui.resultBody.textContent = answer.reason || "";
  }
}

// -- wiring -----------------------------------------------------------------------------------

ui.signInForm.addEventListener("submit", signIn);
ui.signOut.addEventListener("click", signOut);
let filterTimer = 0;
ui.filter.addEventListener("input", () => {
  // Typing re-filters once per pause, not per key: each pass lays out the whole table.
  clearTimeout(filterTimer);
  filterTimer = setTimeout(applyFilter, FILTER_DELAY_MS);
});
ui.rows.addEventListener("click", (event) => {
  const tr = event.target.closest("tr");
  if (tr !== null && tr.dataset.identity !== undefined) select(tr.dataset.identity);
});
ui.commandForm.addEventListener("submit", sendCommand);
ui.cmdPayload.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    ui.commandForm.requestSubmit();
  }
});
ui.cmdPayload.addEventListener("input", () => {
  ui.cmdPayload.removeAttribute("aria-invalid");
  ui.payloadError.hidden = true;
});

const stored = sessionStorage.getItem(TOKEN_KEY);
if (stored) {
  session.token = stored;
  session.trusted = true; // it was accepted before in this tab
  ui.signIn.hidden = true;
  ui.signOut.hidden = false;
  connect();
} else {
  showSignIn("");
}
