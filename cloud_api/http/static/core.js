// Console core: sign-in (tokens in memory only), API calls, hash routing, and the live link (SSE, no polling).
let session = null, renewTimer = null;
const PAGES = {};  // name -> {render(arg), onLive(event)} registered by the page scripts

function esc(value) { const d = document.createElement("div"); d.textContent = value ?? ""; return d.innerHTML; }
const time = v => v ? String(v).replace("T", " ").slice(0, 19) : "";
const pct = v => v === null || v === undefined ? "—" : `${(100 * v).toFixed(1)}%`;
const $ = id => document.getElementById(id);
function bar(percent) { return `<span class="bar"><span style="width:${percent}%"></span></span> ${percent}%`; }
function table(headers, rows, empty) {
  const head = headers.map(h => `<th${h.num ? ' class="num"' : ""}>${esc(h.label ?? h)}</th>`).join("");
  const body = rows.length ? rows.join("") : `<tr><td colspan="${headers.length}" class="muted">${esc(empty || t("none"))}</td></tr>`;
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}
function setMessage(text, isError) { const box = $("message"); box.textContent = text || ""; box.className = isError ? "error" : ""; }

function headers(token, json = true) {
  const h = {"Accept-Language": lang};
  if (json) h["Content-Type"] = "application/json";
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}
async function call(path, options, token) {
  const response = await fetch(path, {...options, headers: headers(token)});
  let body = {};
  try { body = await response.json(); } catch (e) { body = {message: response.statusText}; }
  return {status: response.status, body};
}
async function api(path, options = {}) {
  if (!session) return {status: 401, body: {message: "", data: null}};
  let answer = await call(path, options, session.access_token);
  if (answer.status === 401 && await refresh()) answer = await call(path, options, session.access_token);
  if (answer.status === 401) signedOut();
  if (answer.status === 403 && answer.body.data && answer.body.data.password_change_required) showChange();
  return answer;
}
// A file (CSV, PDF) through fetch, so the token travels in the header and never in a link.
async function download(path, filename, open) {
  let response = await fetch(path, {headers: headers(session && session.access_token, false)});
  if (response.status === 401 && await refresh()) response = await fetch(path, {headers: headers(session.access_token, false)});
  if (!response.ok) { setMessage(`${response.status} ${response.statusText}`, true); return false; }
  const url = URL.createObjectURL(await response.blob());
  if (open) { window.open(url, "_blank"); return true; }
  const link = document.createElement("a");
  link.href = url; link.download = filename; document.body.appendChild(link); link.click(); link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  return true;
}
const canManage = () => session && ["manager", "admin"].includes(session.user.role);
const canOperate = () => session && ["operator", "manager", "admin"].includes(session.user.role);

function start(data) {
  session = data;
  clearTimeout(renewTimer);  // renew a minute before the access token runs out
  renewTimer = setTimeout(refresh, Math.max(5, data.expires_in - 60) * 1000);
  $("whoName").textContent = `${data.user.username} (${data.user.role})`;
  $("who").hidden = false;
  if (data.user.must_change_password) { showChange(); return; }
  $("auth").hidden = true; $("app").hidden = false; $("nav").hidden = false;
  if (!live.source) live.connect();
  route();
}
async function refresh() {
  if (!session) return false;
  const answer = await call("/api/v1/auth/refresh", {method: "POST", body: JSON.stringify({refresh_token: session.refresh_token})});
  if (answer.status !== 200) return false;
  session = answer.body.data;
  clearTimeout(renewTimer);
  renewTimer = setTimeout(refresh, Math.max(5, session.expires_in - 60) * 1000);
  return true;
}
function signedOut(text) {
  session = null; clearTimeout(renewTimer); live.close();
  $("app").hidden = true; $("who").hidden = true; $("nav").hidden = true; $("auth").hidden = false;
  $("login").hidden = false; $("change").hidden = true; $("authMessage").textContent = text || "";
}
function showChange() { $("app").hidden = true; $("auth").hidden = false; $("login").hidden = true; $("change").hidden = false; }

// Live link: one EventSource; the token goes as a query parameter (EventSource sends no headers). The server
// ends the stream when the token expires; we reopen it with the renewed token and the last event id.
const live = {
  source: null, lastId: null, retry: null, count: 0, debounce: null, pending: [],
  connect() {
    this.close();
    if (!session) return;
    const params = new URLSearchParams({access_token: session.access_token});
    if (this.lastId) params.set("last_event_id", this.lastId);
    const source = this.source = new EventSource(`/api/v1/events?${params}`);
    const handle = event => {
      if (event.lastEventId) this.lastId = event.lastEventId;
      if (event.type === "expired") { this.connect(); return; }
      if (event.type === "hello") { this.state(true); return; }
      this.count += 1; document.body.dataset.liveEvents = String(this.count);
      this.pending.push({kind: event.type, data: JSON.parse(event.data || "{}")});
      clearTimeout(this.debounce);  // a burst of events (a batch of completions) redraws once
      this.debounce = setTimeout(() => this.deliver(), 150);
    };
    for (const kind of ["hello", "lot", "run", "result", "serial", "alert", "reset", "expired", "message"]) source.addEventListener(kind, handle);
    source.onerror = () => {
      this.state(false);
      if (source.readyState === EventSource.CLOSED) { clearTimeout(this.retry); this.retry = setTimeout(() => this.connect(), 2000); }
    };
  },
  deliver() {
    const events = this.pending; this.pending = [];
    const page = PAGES[currentPage()];
    if (page && page.onLive) page.onLive(events);
  },
  close() { if (this.source) this.source.close(); this.source = null; clearTimeout(this.retry); this.state(false); },
  state(on) { const box = $("live"); box.className = on ? "on" : "off"; box.title = on ? new Date().toLocaleTimeString() : ""; },
};
const mentions = (events, lot) => events.some(e => e.kind === "reset" || e.data.truncated || (e.data.items || []).some(i => i.lot === lot));

function currentPage() { return (location.hash.slice(1) || "board").split("/")[0]; }
function route() {
  if (!session || $("app").hidden) return;
  const [name, ...rest] = (location.hash.slice(1) || "board").split("/");
  const page = PAGES[name] ? name : "board";
  document.querySelectorAll("section.page").forEach(s => { s.hidden = s.id !== `page-${page}`; });
  document.querySelectorAll("nav a").forEach(a => a.classList.toggle("active", a.getAttribute("href") === `#${page}` || (page === "lot" && a.getAttribute("href") === "#lots")));
  setMessage("");
  PAGES[page].render(decodeURIComponent(rest.join("/")));
}
window.addEventListener("hashchange", route);

$("lang").value = lang;
$("lang").onchange = event => { lang = event.target.value; translateStatic(); route(); };
$("login").onsubmit = async event => {
  event.preventDefault();
  const form = new FormData(event.target);
  const answer = await call("/api/v1/auth/login", {method: "POST", body: JSON.stringify({username: form.get("username"), password: form.get("password")})});
  event.target.reset();
  if (answer.status === 200) { $("authMessage").textContent = ""; start(answer.body.data); }
  else $("authMessage").textContent = answer.body.message || answer.status;
};
$("change").onsubmit = async event => {
  event.preventDefault();
  const form = new FormData(event.target);
  const answer = await call("/api/v1/auth/password", {method: "POST", body: JSON.stringify({
    current_password: form.get("current"), new_password: form.get("next")})}, session && session.access_token);
  event.target.reset();
  if (answer.status === 200) { $("authMessage").textContent = ""; start(answer.body.data); return; }
  const errors = answer.body.data && answer.body.data.errors ? `: ${answer.body.data.errors.join(", ")}` : "";
  $("authMessage").textContent = `${answer.body.message}${errors}`;
  if (answer.status === 401 && answer.body.error_code === "UNAUTHORIZED") signedOut();
};
$("logout").onclick = async () => {
  if (session) await call("/api/v1/auth/logout", {method: "POST"}, session.access_token);
  signedOut();
};
translateStatic();
