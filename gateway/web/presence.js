// presence.js: the browser side of presenced, through presence-rest (or any
// backend serving the same /api/chat/ endpoints). No dependencies; an ES
// module.
//
//   import { Presence } from '/presence.js';
//   const presence = new Presence({ token: () => localStorage.access });
//   presence.start();                      // heartbeats for this tab
//   const stream = presence.subscribe({    // live dots, no polling
//     onSnapshot: (onlineIds) => ..., onChange: (change) => ... });
//   await presence.logout();               // on logout: this tab offline
//
// What it does that a plain setInterval does not:
// - beats at once on start, then at the interval the server asks for
//   (heartbeat_interval_seconds in every answer), not a hard-coded one;
// - pauses while the tab is hidden and beats at once when it is shown again;
// - each tab is its own session (a random id kept in sessionStorage), so
//   logging out or closing one tab leaves the user's other tabs online;
// - on page unload, marks the tab's session offline with
//   navigator.sendBeacon, which the browser delivers after the page is gone;
// - follows Server-Sent Events instead of polling the online list.

const SESSION_KEY = 'presence.session_id';

function newSessionId() {
  if (globalThis.crypto && crypto.randomUUID) return 'tab-' + crypto.randomUUID();
  return 'tab-' + Math.random().toString(36).slice(2) + Date.now().toString(36);
}

function tabSessionId() {
  try {
    let id = sessionStorage.getItem(SESSION_KEY);
    if (!id) {
      id = newSessionId();
      sessionStorage.setItem(SESSION_KEY, id);
    }
    return id;
  } catch (e) {
    return newSessionId();  // storage disabled: one session per page load
  }
}

export class Presence {
  // options:
  //   token: the caller's JWT, or a function returning it (called before
  //          every request, so a refreshed token is picked up);
  //   baseUrl: where presence-rest is ('' for the page's own origin; it
  //            answers no CORS preflight, so serve it on the page's origin);
  //   sessionId: this tab's session (default: a random id per tab);
  //   intervalSeconds: heartbeat period until the server names one (120);
  //   onHeartbeat(answer), onError(error): optional observers.
  constructor(options = {}) {
    this.token = typeof options.token === 'function' ? options.token : () => options.token;
    this.baseUrl = options.baseUrl || '';
    this.sessionId = options.sessionId || tabSessionId();
    this.intervalMs = (options.intervalSeconds || 120) * 1000;
    this.onHeartbeat = options.onHeartbeat || (() => {});
    this.onError = options.onError || ((error) => console.warn('presence:', error));
    this.timer = null;
    this.running = false;
    this.lastBeat = 0;
    this.inflight = null;  // the heartbeat being sent, if any
    this.streams = new Set();
    this.onVisibility = () => this.visibilityChanged();
    this.onPageHide = () => this.markOfflineBeacon();
    // A page restored from the back/forward cache was marked offline when
    // it was hidden: online again at once.
    this.onPageShow = (event) => { if (event.persisted && this.running) this.beat(); };
  }

  // Starts heartbeats: one now, then every interval while the tab is visible.
  start() {
    if (this.running) return;
    this.running = true;
    document.addEventListener('visibilitychange', this.onVisibility);
    window.addEventListener('pagehide', this.onPageHide);
    window.addEventListener('pageshow', this.onPageShow);
    if (document.visibilityState !== 'hidden') this.beat();
  }

  // Stops heartbeats (the session stays online until its window ends).
  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = null;
    document.removeEventListener('visibilitychange', this.onVisibility);
    window.removeEventListener('pagehide', this.onPageHide);
    window.removeEventListener('pageshow', this.onPageShow);
  }

  // Logout: stops everything and marks this tab's session offline now
  // (everywhere: true ends every session of the user).
  async logout({ everywhere = false } = {}) {
    this.stop();
    for (const stream of [...this.streams]) stream.close();
    // A heartbeat still on its way could land after the logout and make the
    // session online again for a whole window: let it finish first.
    if (this.inflight) await this.inflight.catch(() => {});
    const body = everywhere ? {} : { session_id: this.sessionId };
    return this.post('/api/chat/mark-offline/', body, { keepalive: true });
  }

  // Follows /api/chat/presence/stream. options: userIds (default: everyone),
  // onSnapshot(onlineIds, serverTime) (first, and whenever the server could
  // not replay what was missed: replace what you know), onChange({user_id,
  // status: 'online'|'offline', reason, at}). Returns {close()}.
  subscribe(options = {}) {
    const presence = this;
    let source = null;
    let retry = null;
    let closed = false;
    const stream = {
      close() {
        closed = true;
        clearTimeout(retry);
        if (source) source.close();
        presence.streams.delete(stream);
      },
    };
    const open = () => {
      let url = this.baseUrl + '/api/chat/presence/stream?access_token=' +
          encodeURIComponent(this.token() || '');
      if (options.userIds && options.userIds.length) url += '&user_ids=' + options.userIds.join(',');
      source = new EventSource(url);
      source.addEventListener('snapshot', (event) => {
        const data = JSON.parse(event.data);
        if (options.onSnapshot) options.onSnapshot(data.online_users, data.server_time);
      });
      source.addEventListener('change', (event) => {
        if (options.onChange) options.onChange(JSON.parse(event.data));
      });
      source.onerror = () => {
        // EventSource retries a dropped stream by itself; an answer other
        // than 200 (an expired token: 401) closes it for good, so open a new
        // one, which asks token() again.
        if (source.readyState === EventSource.CLOSED && !closed) {
          this.onError(new Error('event stream closed; reopening'));
          retry = setTimeout(open, 2000);
        }
      };
    };
    this.streams.add(stream);
    open();
    return stream;
  }

  async beat() {
    clearTimeout(this.timer);
    this.timer = null;
    let delay = this.intervalMs;
    try {
      this.inflight = this.post('/api/chat/heartbeat/', { session_id: this.sessionId });
      const answer = await this.inflight;
      if (!this.running) return;  // logged out meanwhile
      this.lastBeat = Date.now();
      if (answer.heartbeat_interval_seconds > 0) {
        this.intervalMs = answer.heartbeat_interval_seconds * 1000;
        delay = this.intervalMs;
      }
      this.onHeartbeat(answer);
    } catch (error) {
      if (!this.running) return;  // logged out meanwhile
      this.onError(error);
      if (error.status === 401) {
        // A new token is needed; try again at the normal pace.
      } else {
        delay = Math.min(this.intervalMs, 15000);  // presence-rest or presenced down
      }
    } finally {
      this.inflight = null;
    }
    if (this.running && document.visibilityState !== 'hidden') {
      this.timer = setTimeout(() => this.beat(), delay);
    }
  }

  visibilityChanged() {
    if (!this.running) return;
    if (document.visibilityState === 'hidden') {
      clearTimeout(this.timer);  // paused: the window runs out on its own
      this.timer = null;
    } else if (this.timer === null || Date.now() - this.lastBeat > 1000) {
      this.beat();  // back: online again at once
    }
  }

  markOfflineBeacon() {
    if (!this.running || !navigator.sendBeacon) return;
    // A beacon cannot carry headers: the token goes in the query (RFC 6750
    // 2.3). text/plain keeps it a simple request; the body is JSON all the same.
    const url = this.baseUrl + '/api/chat/mark-offline/?access_token=' +
        encodeURIComponent(this.token() || '');
    const body = new Blob([JSON.stringify({ session_id: this.sessionId })], { type: 'text/plain' });
    navigator.sendBeacon(url, body);
  }

  async post(path, body, extra = {}) {
    const response = await fetch(this.baseUrl + path, {
      method: 'POST',
      headers: { 'Authorization': 'Bearer ' + (this.token() || ''), 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      ...extra,
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(answer.error || ('HTTP ' + response.status));
      error.status = response.status;
      throw error;
    }
    return answer;
  }
}
