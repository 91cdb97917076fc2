// presence.js: the browser side of presenced, through presence-rest (or any
// backend serving the same /api/chat/ endpoints). No dependencies; an ES
// module.
//
//   import { Presence, tokenUserId } from '/presence.js';
//   const presence = new Presence({ token: () => localStorage.access,
//                                   onLogout: () => location.assign('/login') });
//   presence.start();                      // heartbeats for this browser
//   const stream = presence.subscribe({    // live dots, no polling
//     onSnapshot: (onlineIds, serverTime, statuses) => ...,
//     onChange: (change) => ...,           // online / offline
//     onStatus: (status) => ...,           // online / away / dnd / offline
//     onStale: (reason) => ... });          // "reconnecting" until onSnapshot
//   await presence.setStatus({ availability: 'dnd', for: '1h',
//                              text: 'In a meeting', emoji: ':calendar:' });
//   await presence.logout();               // this browser offline, all tabs
//
// API
//   new Presence(options)
//     token          the JWT, or a function returning it (asked before every
//                    request, so a refreshed token is picked up)
//     baseUrl        where presence-rest is ('' = this origin; another
//                    origin must be in presence-rest's --cors_origins)
//     sessionId      a fixed session id (default: one per browser, below)
//     intervalSeconds  heartbeat period until the server names one (120)
//     onHeartbeat(answer)  every successful heartbeat's answer
//     onError(error)       failed requests (error.status: the HTTP status)
//     onLogout({ elsewhere })  this browser was logged out (elsewhere: true
//                    when another tab did it); heartbeats and streams stopped
//     now, setTimeout, clearTimeout  the clock and timers (tests inject fakes)
//   presence.start()   beat now, then every interval (idle while not in use)
//   presence.stop()    stop beating (the session runs out on its own)
//   presence.logout({ everywhere = false })  ends this browser's session now
//                    (everywhere: every session of the user, all devices);
//                    resolves to the mark-offline answer
//   presence.setStatus({ availability, until, for, text, emoji, expiresAt,
//                    expiresIn, clear })  what the user chose (POST
//                    /api/chat/status/): availability 'auto' | 'dnd' |
//                    'invisible', ending at `until` (a Date or RFC 3339
//                    string) or after `for` (seconds, or '90m', '2h'); a
//                    custom status `text` and/or `emoji` (':coffee:' or one
//                    emoji), clearing itself at `expiresAt` or after
//                    `expiresIn`; or `clear: true` to remove it. Leave out
//                    what stays as it is. Resolves to the user's own view
//                    ({ user_id, status, availability, availability_until,
//                    custom_status: { text, emoji, expires_at } | null, ... });
//                    rejects with error.status 400 and the server's message
//                    for input it refuses
//   presence.getPresence(userIds)  GET /api/chat/presence/: resolves to
//                    { users: [{ user_id, status, last_seen, availability,
//                    availability_until, custom_status }], server_time };
//                    the caller's own entry is the truth (also invisible)
//   presence.subscribe({ userIds, onSnapshot, onChange, onStatus, onStale })
//                    follows /api/chat/presence/stream; returns a handle with
//                    close() and status: 'connecting' | 'live' | 'stale'.
//                    onSnapshot(onlineIds, serverTime, statuses): statuses
//                    lists each online user's { user_id, status,
//                    custom_status, availability_until }. onChange(change):
//                    { user_id, status: 'online' | 'offline', reason, at }
//                    when a user comes online or goes offline. onStatus(s):
//                    { user_id, status: 'online' | 'away' | 'dnd' |
//                    'offline', reason, at, custom_status,
//                    availability_until } for every change of what others
//                    see (after the change event of the same transition)
//   presence.sessionId  this browser's current session id
//   tokenUserId(token)   the token's user_id claim, exact (see Ids)
//   parseJSON(text)      JSON.parse that keeps integers beyond 2^53 exact
//
// Sessions: one per browser, not per tab. Its id lives in localStorage
// ('presence.session'), so every tab of the browser beats on it (several
// tabs beating on one session is harmless) and one mark-offline ends them
// all, and nothing else: the user's other devices stay online. Logout leaves
// a tombstone in that key; the other tabs see it through the `storage` event,
// stop, and call onLogout({ elsewhere: true }). A tab whose heartbeat was in
// flight at that moment ends the session once more after it lands, so that
// late heartbeat cannot bring the browser back online. The next start()
// (a new login) makes a new session id.
//
// Closing tabs: on pagehide, the last open tab of the browser marks the
// session offline with navigator.sendBeacon (delivered after the page is
// gone) and forgets the id, so a reload starts a new session that the late
// beacon cannot end. Other tabs still open keep it online. Open tabs are
// listed in localStorage ('presence.tabs'), each refreshed every minute
// (hidden tabs too); an entry older than 3 minutes is a crashed tab. If a
// crashed tab is wrongly counted, no beacon is sent and the session simply
// expires at the end of its window. If an open tab is missed, the open tabs
// see the session id go and beat at once on a new one. A page going into
// the back/forward cache (pagehide with persisted) sends nothing. In a
// multi-page app every navigation of the last tab is a close: the session
// ends and the next page starts another (watchers see offline, then online).
// The beacon carries the token in the query, which presence-rest accepts
// and the Django app (SimpleJWT reads headers only) does not: there the
// session ends at the end of its window instead.
//
// Activity: each heartbeat says whether the user used this tab since the
// previous one (the request's {"idle": true|false}). In use means input
// (keys, mouse, pointer, wheel, scroll, touch), or the window focused while
// the tab is visible; a hidden tab, or a visible one in a window without
// focus and without input, is idle. presenced shows a user away once every
// session has been idle for its --away_after (10 minutes by default). A
// focused, visible tab counts as in use even without input: a browser
// cannot tell whether someone is reading it. After a heartbeat that said
// idle, the first input (or focus) beats at once, so that the user is back
// from away within a request, not an interval.
//
// Hidden tabs keep beating, idle, so that a user whose chat is in a
// background tab is away rather than offline. The tabs of a browser share
// one session, so an idle tab whose timer comes when another tab beat the
// session lately waits until a little over an interval after that beat
// (localStorage 'presence.beat'), by which time the other has beaten again:
// about one heartbeat an interval per browser, not per tab. A tab shown again
// beats at once if the last successful heartbeat is more than 1 minute old
// (the product's rule: timers of hidden tabs may be throttled), or if the
// last one said idle and the tab is in use; otherwise it resumes the
// schedule from that last heartbeat (next beat at last + interval, not at
// show + interval). A session that has been beating lives online_window >=
// 2 x interval past its last beat, so on that schedule it never expires
// while the tab is open; only a mark-offline from elsewhere can end it (the
// session then comes back at the next heartbeat, at most one interval
// later).
//
// Stale: the stream's handle is 'stale' when presence-rest lost presenced
// (it sends `event: stale`, data {"reason": ...}) or the connection to
// presence-rest dropped (EventSource error; it reconnects by itself).
// onStale(reason) is called on entering that state. What is shown may be
// out of date until the next onSnapshot, which makes the handle 'live'.
//
// Ids: user ids are int64 and may exceed Number.MAX_SAFE_INTEGER (2^53 - 1).
// JSON.parse would round them, so answers are parsed with parseJSON: an
// integer within the safe range comes as a Number, a larger one as a string
// of its exact digits. String(id) is therefore always the exact id: key maps
// and sets with String(id). userIds may be Numbers, digit strings or BigInts.

const SESSION_KEY = 'presence.session';
const TABS_KEY = 'presence.tabs';
// The browser's latest heartbeat: { id (session), tab, at (Date.now()) }.
const BEAT_KEY = 'presence.beat';
// What counts as using the page.
const INPUT_EVENTS = ['keydown', 'mousemove', 'pointerdown', 'wheel', 'scroll', 'touchstart'];
const TAB_ALIVE_MS = 60 * 1000;
const TAB_DEAD_MS = 3 * 60 * 1000;
// The product's rule: a tab shown again beats at once only after this long.
const STALE_BEAT_MS = 60 * 1000;

const UNSAFE_RUN = /\d{16}/;
const JSON_TOKEN = /"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
const INTEGER = /^-?\d+$/;

// Integers beyond 2^53 are quoted before JSON.parse sees them: a reviver is
// too late, as the number has been rounded by then. The regex walks whole
// tokens, so digits inside strings are left alone.
export function parseJSON(text) {
  if (!UNSAFE_RUN.test(text)) return JSON.parse(text);
  return JSON.parse(text.replace(JSON_TOKEN, (token) =>
    token[0] !== '"' && INTEGER.test(token) && !Number.isSafeInteger(Number(token))
      ? '"' + token + '"' : token));
}

export function tokenUserId(token) {
  try {
    const part = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    const id = parseJSON(new TextDecoder().decode(bytes)).user_id;
    // A string of digits: SimpleJWT may write one, and parseJSON makes one
    // of a number beyond 2^53.
    if (typeof id === 'string' && /^\d+$/.test(id)) {
      return Number.isSafeInteger(Number(id)) ? Number(id) : id;
    }
    return typeof id === 'number' ? id : null;
  } catch (e) {
    return null;
  }
}

function randomId() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

// localStorage may be disabled (privacy settings): then each page load has
// its own session, and tabs cannot coordinate.
function load(key) {
  try {
    return JSON.parse(localStorage.getItem(key));
  } catch (e) {
    return null;
  }
}

function save(key, value) {
  try {
    if (value === undefined) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch (e) {
    // disabled or full: this tab goes on alone
  }
}

export class Presence {
  constructor(options = {}) {
    this.token = typeof options.token === 'function' ? options.token : () => options.token;
    this.baseUrl = options.baseUrl || '';
    this.fixedSessionId = options.sessionId || null;
    this.intervalMs = (options.intervalSeconds || 120) * 1000;
    this.onHeartbeat = options.onHeartbeat || (() => {});
    this.onError = options.onError || ((error) => console.warn('presence:', error));
    this.onLogout = options.onLogout || (() => {});
    this.now = options.now || (() => Date.now());
    this.setTimeout = options.setTimeout || ((fn, ms) => setTimeout(fn, ms));
    this.clearTimeout = options.clearTimeout || ((id) => clearTimeout(id));
    this.tabId = randomId();
    this.localSessionId = null;  // when localStorage is unusable
    this.timer = null;
    this.aliveTimer = null;
    this.running = false;
    this.lastBeat = null;  // this.now() of the last successful heartbeat
    this.inflight = null;  // {sessionId, done} of the heartbeat being sent
    this.used = false;  // input or focus since the last heartbeat was sent
    this.reportedIdle = false;  // the last heartbeat sent said idle
    this.streams = new Set();
    this.onInput = () => this.markUsed();
    this.onFocus = () => { if (document.visibilityState !== 'hidden') this.markUsed(); };
    this.onVisibility = () => this.visibilityChanged();
    this.onPageHide = (event) => this.pageHidden(event);
    this.onPageShow = (event) => this.pageShown(event);
    this.onStorage = (event) => this.storageChanged(event);
  }

  get sessionId() {
    if (this.fixedSessionId) return this.fixedSessionId;
    if (this.localSessionId) return this.localSessionId;
    const stored = load(SESSION_KEY);
    return stored && stored.id ? stored.id : null;
  }

  // A session id for this browser, made if there is none, or none since a
  // logout (a new login gets a new session). null: logged out meanwhile.
  currentSession({ fresh = false } = {}) {
    if (this.fixedSessionId) return this.fixedSessionId;
    if (this.localSessionId) return this.localSessionId;
    const stored = load(SESSION_KEY);
    if (stored && stored.id && !stored.loggedOut) return stored.id;
    if (stored && stored.loggedOut && !fresh) return null;
    const id = 'browser-' + randomId();
    save(SESSION_KEY, { id });
    if (!load(SESSION_KEY)) this.localSessionId = id;  // storage unusable
    return id;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.currentSession({ fresh: true });
    document.addEventListener('visibilitychange', this.onVisibility);
    window.addEventListener('pagehide', this.onPageHide);
    window.addEventListener('pageshow', this.onPageShow);
    window.addEventListener('storage', this.onStorage);
    window.addEventListener('focus', this.onFocus);
    for (const type of INPUT_EVENTS) {
      window.addEventListener(type, this.onInput, { capture: true, passive: true });
    }
    this.registerTab();
    this.beat();
  }

  stop() {
    this.running = false;
    this.clearTimeout(this.timer);
    this.timer = null;
    clearInterval(this.aliveTimer);
    this.aliveTimer = null;
    this.unregisterTab();
    document.removeEventListener('visibilitychange', this.onVisibility);
    window.removeEventListener('pagehide', this.onPageHide);
    window.removeEventListener('pageshow', this.onPageShow);
    window.removeEventListener('storage', this.onStorage);
    window.removeEventListener('focus', this.onFocus);
    for (const type of INPUT_EVENTS) {
      window.removeEventListener(type, this.onInput, { capture: true });
    }
  }

  // The tab is in use right now: visible, in the window that has focus.
  inUse() {
    return document.visibilityState !== 'hidden' && document.hasFocus();
  }

  markUsed() {
    this.used = true;
    // Back from idle: say so now, not an interval later. (A heartbeat in
    // flight says so when it lands.)
    if (this.reportedIdle && this.running && !this.inflight) this.beat();
  }

  async setStatus(status = {}) {
    const body = {};
    const put = (key, value) => {
      if (value !== undefined) body[key] = value instanceof Date ? value.toISOString() : value;
    };
    put('availability', status.availability);
    put('until', status.until);
    put('for', status.for);
    put('text', status.text);
    put('emoji', status.emoji);
    put('expires_at', status.expiresAt);
    put('expires_in', status.expiresIn);
    put('clear', status.clear);
    return this.post('/api/chat/status/', body);
  }

  async getPresence(userIds) {
    const ids = (userIds || []).map(String).join(',');
    return this.request('GET', '/api/chat/presence/?user_ids=' + encodeURIComponent(ids));
  }

  async logout({ everywhere = false } = {}) {
    const sessionId = this.sessionId;
    this.stop();
    this.closeStreams();
    // The other tabs learn of it from this write (the storage event).
    if (!this.fixedSessionId) save(SESSION_KEY, { id: sessionId, loggedOut: true });
    // A heartbeat still on its way could land after the logout and make the
    // session online again for a whole window: let it finish first.
    if (this.inflight) await this.inflight.done.catch(() => {});
    const body = everywhere ? {} : { session_id: sessionId };
    return this.post('/api/chat/mark-offline/', body, { keepalive: true });
  }

  async storageChanged(event) {
    if (event.key !== SESSION_KEY || !this.running || this.fixedSessionId) return;
    if (event.newValue === null) {
      // A closing tab took itself for the last one (the tab list is not
      // updated atomically) and ended the session: this open tab starts a
      // new one now rather than at its next heartbeat.
      this.beat();
      return;
    }
    let stored = null;
    try {
      stored = JSON.parse(event.newValue);
    } catch (e) {
      // not ours
    }
    if (!stored || !stored.loggedOut) return;
    const inflight = this.inflight;
    this.stop();
    this.closeStreams();
    this.onLogout({ elsewhere: true });
    if (inflight) {
      // Sent before the logout, it may land after the other tab's
      // mark-offline: end the session again once it has.
      await inflight.done.catch(() => {});
      this.post('/api/chat/mark-offline/', { session_id: inflight.sessionId })
        .catch((error) => this.onError(error));
    }
  }

  closeStreams() {
    for (const stream of [...this.streams]) stream.close();
  }

  registerTab() {
    const tabs = load(TABS_KEY) || {};
    tabs[this.tabId] = Date.now();
    save(TABS_KEY, tabs);
    if (this.aliveTimer === null) {
      this.aliveTimer = setInterval(() => this.registerTab(), TAB_ALIVE_MS);
    }
  }

  // Returns how many other tabs of this browser are still open.
  unregisterTab() {
    const tabs = load(TABS_KEY) || {};
    delete tabs[this.tabId];
    const now = Date.now();
    for (const [id, seen] of Object.entries(tabs)) {
      if (now - seen > TAB_DEAD_MS) delete tabs[id];
    }
    save(TABS_KEY, tabs);
    return Object.keys(tabs).length;
  }

  pageHidden(event) {
    if (!this.running) return;
    clearInterval(this.aliveTimer);
    this.aliveTimer = null;
    const others = this.unregisterTab();
    // Into the back/forward cache, the page may come back (pageshow
    // registers it again and beats): no beacon; if it never comes back, the
    // session runs out at the end of its window.
    if (event && event.persisted) return;
    if (others > 0 || !navigator.sendBeacon) return;
    const sessionId = this.sessionId;
    // Forgotten, so that a reload beats on a new session, which this beacon,
    // however late, cannot end.
    if (!this.fixedSessionId) save(SESSION_KEY, undefined);
    // A beacon cannot carry headers: the token goes in the query (RFC 6750
    // 2.3). text/plain keeps it a simple request; the body is JSON all the same.
    const url = this.baseUrl + '/api/chat/mark-offline/?access_token=' +
        encodeURIComponent(this.token() || '');
    const body = new Blob([JSON.stringify({ session_id: sessionId })], { type: 'text/plain' });
    navigator.sendBeacon(url, body);
  }

  // Back from the back/forward cache: its pagehide may have ended the
  // session, so online again at once, unless this browser logged out.
  pageShown(event) {
    if (!event.persisted || !this.running) return;
    const stored = this.fixedSessionId ? null : load(SESSION_KEY);
    if (stored && stored.loggedOut) {
      this.stop();
      this.closeStreams();
      this.onLogout({ elsewhere: true });
      return;
    }
    this.registerTab();
    this.beat();
  }

  visibilityChanged() {
    // Hidden: the schedule runs on, and the next heartbeat says idle.
    if (!this.running || document.visibilityState === 'hidden') return;
    this.clearTimeout(this.timer);
    this.timer = null;
    this.registerTab();
    if (document.hasFocus()) this.used = true;
    if (this.inflight) return;  // its answer schedules the next
    const since = this.lastBeat === null ? Infinity : this.now() - this.lastBeat;
    if (since > STALE_BEAT_MS || since >= this.intervalMs || (this.reportedIdle && this.used)) {
      this.beat();
    } else {
      this.schedule(this.intervalMs - since);
    }
  }

  schedule(delay) {
    this.clearTimeout(this.timer);
    this.timer = this.setTimeout(() => this.beat({ scheduled: true }), delay);
  }

  // Another tab of this browser beat the session lately: the delay until a
  // little over an interval after it (so that its next heartbeat comes
  // first), else 0.
  othersBeat(sessionId) {
    const last = load(BEAT_KEY);
    if (!last || last.id !== sessionId || last.tab === this.tabId) return 0;
    const turn = this.intervalMs * 1.1;
    const wait = last.at + turn - Date.now();
    return wait > 0 && wait <= turn ? wait : 0;
  }

  async beat({ scheduled = false } = {}) {
    this.clearTimeout(this.timer);
    this.timer = null;
    const sessionId = this.currentSession();
    if (sessionId === null) {
      // Logged out in another tab, and its storage event not seen yet.
      this.stop();
      this.closeStreams();
      this.onLogout({ elsewhere: true });
      return;
    }
    const idle = !(this.used || this.inUse());
    // An idle tab's turn: another tab that beat lately keeps the session
    // (and says whether it is in use).
    const wait = scheduled && idle ? this.othersBeat(sessionId) : 0;
    if (wait > 0) {
      this.schedule(wait);
      return;
    }
    this.used = false;
    this.reportedIdle = idle;
    let delay = this.intervalMs;
    const done = this.post('/api/chat/heartbeat/', { session_id: sessionId, idle });
    const inflight = { sessionId, done };
    this.inflight = inflight;
    try {
      const answer = await done;
      if (!this.running) return;  // logged out meanwhile
      this.lastBeat = this.now();
      save(BEAT_KEY, { id: sessionId, tab: this.tabId, at: Date.now() });
      if (answer.heartbeat_interval_seconds > 0) {
        this.intervalMs = answer.heartbeat_interval_seconds * 1000;
        delay = this.intervalMs;
      }
      // Used while this idle heartbeat was on its way: say so at once.
      if (this.reportedIdle && this.used) delay = 0;
      this.onHeartbeat(answer);
    } catch (error) {
      if (!this.running) return;
      this.onError(error);
      if (error.status === 401) {
        // A new token is needed; try again at the normal pace.
      } else {
        delay = Math.min(this.intervalMs, 15000);  // presence-rest or presenced down
      }
    } finally {
      if (this.inflight === inflight) this.inflight = null;
    }
    if (this.running) this.schedule(delay);
  }

  subscribe(options = {}) {
    const presence = this;
    let source = null;
    let retry = null;
    let reopenMs = 2000;
    let closed = false;
    const stream = {
      status: 'connecting',
      close() {
        closed = true;
        clearTimeout(retry);
        if (source) source.close();
        presence.streams.delete(stream);
      },
    };
    const stale = (reason) => {
      if (stream.status === 'stale') return;
      stream.status = 'stale';
      if (options.onStale) options.onStale(reason);
    };
    const open = () => {
      let url = this.baseUrl + '/api/chat/presence/stream?access_token=' +
          encodeURIComponent(this.token() || '');
      if (options.userIds && options.userIds.length) {
        url += '&user_ids=' + options.userIds.map(String).join(',');
      }
      source = new EventSource(url);
      source.addEventListener('snapshot', (event) => {
        const data = parseJSON(event.data);
        stream.status = 'live';
        reopenMs = 2000;
        if (options.onSnapshot) {
          options.onSnapshot(data.online_users, data.server_time, data.users || []);
        }
      });
      source.addEventListener('change', (event) => {
        if (options.onChange) options.onChange(parseJSON(event.data));
      });
      source.addEventListener('status', (event) => {
        if (options.onStatus) options.onStatus(parseJSON(event.data));
      });
      source.addEventListener('stale', (event) => {
        let reason = 'presence service unavailable';
        try {
          reason = parseJSON(event.data).reason || reason;
        } catch (e) {
          // keep the generic reason
        }
        stale(reason);
      });
      source.onerror = () => {
        if (closed) return;
        stale('connection to presence-rest lost');
        // EventSource retries a dropped stream by itself; an answer other
        // than 200 (an expired token: 401) closes it for good, so open a new
        // one, which asks token() again.
        if (source.readyState === EventSource.CLOSED) {
          this.onError(new Error('event stream closed; reopening in ' +
                                 reopenMs / 1000 + ' s'));
          retry = setTimeout(open, reopenMs);
          // A token that stays expired must not cost a request every 2 s
          // for ever: 2 s doubling to a minute, back to 2 s on a snapshot.
          reopenMs = Math.min(reopenMs * 2, 60000);
        }
      };
    };
    this.streams.add(stream);
    open();
    return stream;
  }

  async post(path, body, extra = {}) {
    return this.request('POST', path, body, extra);
  }

  async request(method, path, body, extra = {}) {
    const headers = { 'Authorization': 'Bearer ' + (this.token() || '') };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    // The session in a header too: the Django app (presence_django) reads
    // only the header, presence-rest either (the header first).
    if (body && body.session_id) headers['X-Presence-Session'] = body.session_id;
    const response = await fetch(this.baseUrl + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      ...extra,
    });
    const text = await response.text().catch(() => '');
    let answer = {};
    try {
      answer = parseJSON(text);
    } catch (e) {
      // not JSON (a proxy's error page): the status says enough
    }
    if (!response.ok) {
      const error = new Error(answer.error || ('HTTP ' + response.status));
      error.status = response.status;
      throw error;
    }
    return answer;
  }
}
