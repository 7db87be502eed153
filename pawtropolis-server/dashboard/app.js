// The dashboard: sign in (Discord login or an API token), a stacked bar chart of actions per
// bucket with response-time lines, and the live action list fed by /api/logs/stream.
// Plain DOM and SVG, no framework. Text from the API only ever goes through textContent.

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const SERIES = [
  ["submitted", "submitted", "var(--submitted)"],
  ["claim", "claimed", "var(--claim)"],
  ["accept", "accepted", "var(--accept)"],
  ["reject", "rejected", "var(--reject)"],
];
const MAX_ROWS = 200;

const state = {
  token: sessionStorage.getItem("paw_token"),
  // The guild on screen and everything that belongs to it (see openGuild).
  view: null,
};

class ApiError extends Error {
  constructor(status, message, retryAfterS) {
    super(message);
    this.status = status;
    this.retryAfterS = retryAfterS;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

async function api(path, query = {}, signal = undefined) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  const r = await fetch(url, { headers: authHeaders(), credentials: "same-origin", signal });
  if (!r.ok) throw await apiError(r);
  return r.json();
}

async function apiError(r) {
  let message = r.statusText;
  try {
    message = (await r.json()).error.message;
  } catch {}
  return new ApiError(r.status, message, Number(r.headers.get("Retry-After")) || 0);
}

// ---- sign-in ----

async function boot() {
  // `#token=…&guild_id=…` (printed by `serve --demo --dashboard`) signs in at once; the
  // fragment never reaches the server and is removed from the address bar. Anyone can send
  // such a link: someone signed in with Discord is asked before it replaces their session.
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    history.replaceState(null, "", location.pathname + location.search);
    const signedIn = (await fetch("/auth/me", { credentials: "same-origin" })).ok;
    if (!signedIn || confirm("This link signs in with an API token instead of your Discord account. Use it?")) {
      sessionStorage.setItem("paw_token", hash.get("token"));
      if (hash.get("guild_id")) sessionStorage.setItem("paw_guild", hash.get("guild_id"));
      state.token = hash.get("token");
    }
  }
  const wanted = new URLSearchParams(location.search).get("guild_id") || sessionStorage.getItem("paw_guild");
  if (wanted) $("token-guild").value = wanted;
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token-secret").value.trim();
    sessionStorage.setItem("paw_token", state.token);
    sessionStorage.setItem("paw_guild", $("token-guild").value.trim());
    signInWithToken($("token-guild").value.trim());
  });
  $("sign-out").addEventListener("click", signOut);

  if (state.token && wanted) return signInWithToken(wanted);
  const me = await fetch("/auth/me", { credentials: "same-origin" });
  if (me.ok) {
    const user = await me.json();
    $("who-avatar").src = user.avatar_url;
    $("who-name").textContent = user.display_name;
    let guilds = user.guild_ids;
    if (guilds.length === 0 && user.all_guilds) {
      const g = wanted || prompt("Guild id to open");
      guilds = g ? [g] : [];
    }
    return showDashboard(guilds, wanted);
  }
  showSignIn(me.status === 401, "");
}

async function signInWithToken(guild) {
  try {
    await api("/api/logs", { guild_id: guild, limit: 1 });
  } catch (e) {
    sessionStorage.removeItem("paw_token");
    state.token = null;
    const login = (await fetch("/auth/me")).status === 401;
    return showSignIn(login, `That token cannot read guild ${guild}: ${e.message}`);
  }
  $("who-avatar").hidden = true;
  $("who-name").textContent = "API token";
  showDashboard([guild], guild);
}

function showSignIn(loginAvailable, error) {
  closeView();
  $("dashboard").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("login-row").hidden = !loginAvailable;
  $("sign-in-error").textContent = error;
}

async function signOut() {
  if (state.token) {
    sessionStorage.removeItem("paw_token");
  } else {
    await fetch("/auth/logout", { method: "POST", credentials: "same-origin" });
  }
  location.reload();
}

function showDashboard(guilds, wanted) {
  $("sign-in").hidden = true;
  $("who").hidden = false;
  $("dashboard").hidden = false;
  const select = $("guild");
  select.replaceChildren(...guilds.map((g) => new Option(g, g)));
  if (wanted && guilds.includes(wanted)) select.value = wanted;
  select.onchange = () => openGuild(select.value);
  $("window").onchange = () => loadChart(state.view);
  $("bucket").onchange = () => loadChart(state.view);
  if (select.value) openGuild(select.value);
}

// A guild's view: its requests share one AbortController, so opening another guild (or
// signing out) abandons them all, and nothing of the old guild reaches the screen.
function openGuild(guild) {
  closeView();
  const view = {
    guild,
    controller: new AbortController(),
    lastId: null,
    listSynced: false,
    listShown: false,
    shown: new Set(),
    identities: new Map(),
    pending: new Set(),
    resolveTimer: null,
    resolveAt: 0,
    resolveNotBefore: 0,
    chartSeq: 0,
    chartTimer: null,
  };
  state.view = view;
  $("actions").replaceChildren();
  view.chartTimer = setInterval(() => loadChart(view), 60_000);
  loadChart(view);
  // The stream first, the page when it opens (see `onFrame`): on PostgreSQL ids can commit out
  // of order, so the newest row of a page is no safe point to resume from (a row below it may
  // still be committing), while every row up to the id a stream opens with is in the log.
  follow(view);
}

function closeView() {
  const view = state.view;
  if (!view) return;
  view.controller.abort();
  clearInterval(view.chartTimer);
  clearTimeout(view.resolveTimer);
  state.view = null;
}

const live = (view) => state.view === view && !view.controller.signal.aborted;

function setStatus(text) {
  $("status").textContent = text;
}

// ---- chart ----

async function loadChart(view) {
  if (!view || !live(view)) return;
  // Replies can come back out of order when the pickers change quickly: only the latest counts.
  const seq = ++view.chartSeq;
  const query = { guild_id: view.guild, window: $("window").value, bucket: $("bucket").value };
  const signal = view.controller.signal;
  try {
    const [counts, latency] = await Promise.all([
      api("/api/metrics/timeseries", query, signal),
      api("/api/metrics/latency", query, signal),
    ]);
    if (!live(view) || seq !== view.chartSeq) return;
    drawChart(counts, latency);
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    if (live(view) && seq === view.chartSeq) setStatus(`chart: ${e.message}`);
  }
}

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= v);
}

function drawChart(counts, latency) {
  $("legend").replaceChildren(
    ...SERIES.map(([, label, color]) => legendItem(label, color)),
    legendItem("p50", "var(--p50)"),
    legendItem("p95", "var(--p95)"),
  );
  const W = Math.max($("chart").clientWidth, 600);
  const H = 280;
  const m = { l: 44, r: 48, t: 10, b: 26 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const buckets = counts.buckets;
  const n = buckets.length;
  const bw = pw / n;
  const totals = buckets.map((b) => SERIES.reduce((s, [k]) => s + b.counts[k], 0));
  const maxCount = niceMax(Math.max(...totals));
  const hours = new Map(latency.buckets.map((b) => [b.timestamp, b]));
  const p95s = latency.buckets.map((b) => b.p95_response_time_s).filter((v) => v !== null);
  const maxHours = niceMax(Math.max(0, ...p95s) / 3600);

  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "data-buckets": n });
  for (let i = 0; i <= 4; i++) {
    const y = m.t + ph - (ph * i) / 4;
    svg.append(el("line", { class: "grid", x1: m.l, x2: m.l + pw, y1: y, y2: y }));
    svg.append(el("text", { x: m.l - 6, y: y + 4, "text-anchor": "end" }, String(Math.round((maxCount * i) / 4))));
    svg.append(el("text", { x: m.l + pw + 6, y: y + 4 }, `${+((maxHours * i) / 4).toFixed(1)}h`));
  }
  const bars = el("g", { class: "bars" });
  buckets.forEach((b, i) => {
    let y = m.t + ph;
    const x = m.l + i * bw;
    for (const [k, label, color] of SERIES) {
      const v = b.counts[k];
      if (!v) continue;
      const h = (v / maxCount) * ph;
      y -= h;
      const rect = el("rect", { class: `bar bar-${k}`, x: x + bw * 0.1, y, width: Math.max(bw * 0.8, 0.5), height: h, fill: color });
      rect.append(el("title", {}, `${b.timestamp}: ${v} ${label}`));
      bars.append(rect);
    }
  });
  svg.append(bars);
  for (const [key, cls] of [["p50_response_time_s", "line-p50"], ["p95_response_time_s", "line-p95"]]) {
    let d = "";
    let pen = false;
    buckets.forEach((b, i) => {
      const v = hours.get(b.timestamp)?.[key];
      if (v === null || v === undefined) {
        pen = false;
        return;
      }
      const x = m.l + (i + 0.5) * bw;
      const y = m.t + ph - (v / 3600 / maxHours) * ph;
      d += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
      pen = true;
    });
    if (d) svg.append(el("path", { class: cls, d }));
  }
  const ticks = Math.min(n, 7);
  for (let t = 0; t < ticks; t++) {
    const i = Math.round((t * (n - 1)) / Math.max(ticks - 1, 1));
    const date = new Date(buckets[i].timestamp);
    const label = counts.bucket === "1d"
      ? date.toLocaleDateString(undefined, { month: "short", day: "numeric" })
      : date.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit" });
    svg.append(el("text", { x: m.l + (i + 0.5) * bw, y: H - 8, "text-anchor": "middle" }, label));
  }
  $("chart").replaceChildren(svg);
}

function legendItem(label, color) {
  const span = document.createElement("span");
  const swatch = document.createElement("i");
  swatch.style.background = color;
  span.append(swatch, label);
  return span;
}

// ---- live list ----

// The newest page of the log, merged by id with what the stream brought; retried until it
// loads (or the view is closed).
async function loadList(view) {
  let page;
  for (let delay = 1000; ; delay = Math.min(delay * 2, 30_000)) {
    try {
      page = await api("/api/logs", { guild_id: view.guild, limit: 50, expand: "identity" }, view.controller.signal);
      break;
    } catch (e) {
      if (!live(view)) return;
      if (e.status === 401 || e.status === 403) {
        showSignIn(false, "The session ended; sign in again.");
        return;
      }
      setStatus(`log: ${e.message}; retrying`);
      await sleep(Math.max(delay, e.retryAfterS * 1000));
    }
  }
  if (!live(view)) return;
  for (const item of page.items) {
    if (item.display_name) {
      view.identities.set(userKey(item.moderator_id), { name: item.display_name, avatar: item.avatar_url });
    }
  }
  [...page.items].reverse().forEach((item) => addAction(view, item, false));
}

// The page of the log before the stream has opened, once: it is loaded again when it opens.
function showListOnce(view) {
  if (live(view) && !view.listShown) {
    view.listShown = true;
    loadList(view);
  }
}

function addAction(view, item, fresh) {
  if (!live(view) || view.shown.has(item.id)) return;
  view.shown.add(item.id);
  const li = document.createElement("li");
  li.dataset.id = item.id;
  li.dataset.moderator = item.moderator_id;
  li.dataset.action = item.action;
  if (fresh) li.className = "new";
  const avatar = document.createElement("span");
  avatar.className = "avatar";
  const body = document.createElement("div");
  const who = document.createElement("span");
  who.className = "who";
  const badge = document.createElement("span");
  badge.className = `badge ${item.action}`;
  badge.textContent = item.action;
  const what = document.createElement("span");
  what.className = "what";
  what.textContent = [item.subject_id && `→ ${item.subject_id}`, item.reason && `“${item.reason}”`]
    .filter(Boolean)
    .join(" ");
  body.append(who, " ", badge, what);
  const time = document.createElement("time");
  time.dateTime = item.created_at;
  time.textContent = new Date(item.created_at).toLocaleString();
  li.append(avatar, body, time);
  paintIdentity(view, li);
  const list = $("actions");
  // Newest first: the stream delivers in id order, the initial page is added oldest first.
  const after = [...list.children].find((c) => Number(c.dataset.id) < item.id);
  list.insertBefore(li, after ?? null);
  while (list.children.length > MAX_ROWS) {
    view.shown.delete(Number(list.lastElementChild.dataset.id));
    list.lastElementChild.remove();
  }
  const key = userKey(item.moderator_id);
  if (!view.identities.has(key) && isSnowflake(key)) queueResolve(view, key);
}

// Older rows of the bot's log can hold an actor id with spaces around it, or one that is not a
// Discord id at all ("system"). Resolve answers under the trimmed id and refuses a batch with a
// non-snowflake in it, so identities are kept under the trimmed id and only snowflakes are asked.
const userKey = (id) => String(id).trim();
const MAX_SNOWFLAKE = 18446744073709551615n;
const isSnowflake = (id) => /^[1-9][0-9]{16,19}$/.test(id) && BigInt(id) <= MAX_SNOWFLAKE;

function paintIdentity(view, li) {
  const id = li.dataset.moderator;
  const known = view.identities.get(userKey(id));
  li.querySelector(".who").textContent = known ? known.name : id;
  const box = li.querySelector(".avatar");
  const initials = (known ? known.name : "?").slice(0, 2).toUpperCase();
  if (known?.avatar) {
    const img = document.createElement("img");
    img.alt = known.name;
    img.src = known.avatar;
    // Offline or blocked CDN: show initials instead of a broken image.
    img.onerror = () => img.replaceWith(initials);
    box.replaceChildren(img);
  } else {
    box.replaceChildren(initials);
  }
}

function queueResolve(view, id) {
  view.pending.add(id);
  scheduleResolve(view, 300);
}

// One resolve call for the ids gathered meanwhile, never before the rate limit allows.
function scheduleResolve(view, ms) {
  const at = Math.max(Date.now() + ms, view.resolveNotBefore);
  if (view.resolveAt && view.resolveAt <= at) return;
  clearTimeout(view.resolveTimer);
  view.resolveAt = at;
  view.resolveTimer = setTimeout(() => {
    view.resolveAt = 0;
    resolvePending(view);
  }, at - Date.now());
}

async function resolvePending(view) {
  const ids = [...view.pending].slice(0, 100);
  if (!ids.length || !live(view)) return;
  try {
    const reply = await api("/api/users/resolve", { guild_id: view.guild, ids: ids.join(",") }, view.controller.signal);
    if (!live(view)) return;
    // A fallback (Discord slow, down or limiting us) is shown for now and asked again later.
    const unsure = new Set(reply.warnings.filter((w) => w.code !== "not_found").map((w) => w.id));
    for (const u of reply.users) {
      view.identities.set(u.id, { name: u.display_name, avatar: u.avatar_url });
      view.pending.delete(u.id);
    }
    for (const li of $("actions").children) {
      if (ids.includes(userKey(li.dataset.moderator))) paintIdentity(view, li);
    }
    if (unsure.size) {
      setTimeout(() => {
        if (!live(view)) return;
        unsure.forEach((id) => view.pending.add(id));
        scheduleResolve(view, 0);
      }, 30_000);
    }
    if (view.pending.size) scheduleResolve(view, 300);
  } catch (e) {
    if (!live(view)) return;
    // Rate limited or unavailable: the ids stay shown as ids; try again later.
    view.resolveNotBefore = Date.now() + (e.retryAfterS ? e.retryAfterS * 1000 : e.status === 429 ? 15_000 : 5_000);
    scheduleResolve(view, 0);
  }
}

function setLive(on, text) {
  const pill = $("live");
  pill.classList.toggle("on", on);
  pill.textContent = text;
}

// EventSource cannot send an Authorization header, so the stream is read with fetch; it
// reconnects like EventSource does, resuming with Last-Event-ID.
async function follow(view) {
  const signal = view.controller.signal;
  let retryMs = 2000;
  while (live(view)) {
    let wait = retryMs;
    try {
      const headers = { Accept: "text/event-stream", ...authHeaders() };
      if (view.lastId !== null) headers["Last-Event-ID"] = String(view.lastId);
      const r = await fetch(`/api/logs/stream?guild_id=${encodeURIComponent(view.guild)}`, {
        headers,
        signal,
        credentials: "same-origin",
      });
      if (r.status === 401 || r.status === 403) {
        setLive(false, "signed out");
        return showSignIn(false, "The session ended; sign in again.");
      }
      if (!r.ok) throw await apiError(r);
      setLive(true, "live");
      // A proxy that buffers the stream would hold back its opening block, and with it the
      // page: show the page anyway after a while (it is loaded again when the block comes).
      setTimeout(() => showListOnce(view), 3000);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        // A "\r" at the very end may be half of a "\r\n" still on its way.
        const cut = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
        buffer = buffer.slice(0, cut).replace(/\r\n?/g, "\n") + buffer.slice(cut);
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const hint = onFrame(view, frame);
          if (hint) retryMs = hint;
        }
      }
    } catch (e) {
      if (!live(view)) return;
      // Too many streams (429) or a full server (503): wait as long as it asks.
      if (e instanceof ApiError && e.retryAfterS) wait = e.retryAfterS * 1000;
      // Show the log meanwhile; it is loaded again when the stream opens.
      showListOnce(view);
    }
    if (!live(view)) return;
    setLive(false, "reconnecting…");
    await sleep(wait);
  }
}

function onFrame(view, frame) {
  let event = "message";
  let id = null;
  let retry = null;
  const data = [];
  for (const line of frame.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
    else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
  }
  if (!live(view)) return retry;
  // As EventSource does, any block's id is the one to resume from, also one without data:
  // the block a stream opens with and a resync carry the id the live events go on from.
  if (id !== null && /^\d+$/.test(id)) view.lastId = Number(id);
  if (event === "action" && data.length) {
    addAction(view, JSON.parse(data.join("\n")), true);
  } else if (event === "resync") {
    // More was missed than the server replays: start again from the newest page.
    $("actions").replaceChildren();
    view.shown.clear();
    loadList(view);
  } else if (!view.listSynced && view.lastId !== null) {
    // The stream opened: every row up to its id is in the log now, and the stream brings every
    // later one, so the page loaded now leaves no gap (rows in both are shown once, by id).
    view.listSynced = true;
    view.listShown = true;
    loadList(view);
  }
  return retry;
}

boot();
