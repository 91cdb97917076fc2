#!/usr/bin/env python3
"""The status page and presence.js in a real browser (headless Chromium).

Starts presenced, presence-rest and chromedriver, then drives the page over
the W3C WebDriver protocol with nothing but the standard library:

- the page says who you are, shows others live through the SSE stream
  ("online", "last seen just now" with the exact time as a title), and
  counts who is online;
- logout ends this browser's session in every tab, and only it: the user's
  other device stays online; the other tabs stop beating;
- closing one of two tabs keeps the browser online; closing the last sends
  the mark-offline beacon;
- a tab shown again beats by the product's rule (more than 1 minute since
  the last heartbeat), else resumes its schedule: checked with a fake clock
  and fake timers injected into presence.js, against the real servers;
- a hidden tab keeps beating, saying idle (as does a visible tab without
  focus or input), so the user shows away (yellow) rather than offline,
  and is back (green) on input;
- statuses: dnd shows a red dot, away a yellow one, invisible a grey one,
  and a custom status's emoji and text show until cleared; the page's own
  form sets the viewer's status through presence.js's setStatus;
- the page shows "reconnecting" when presence-rest loses presenced (its
  `stale` event) or the page loses presence-rest, and live again after;
- user ids beyond 2^53 stay exact.

Where only presence.js may make a user offline, presenced runs with a 60 s
window, so that expiry cannot pass for it.

Usage: page_test.py PRESENCED PRESENCE_REST [unittest args]
"""
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

SECRET = b"page-test-secret-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
GREEN = "rgb(34, 170, 34)"
GRAY = "rgb(170, 170, 170)"
YELLOW = "rgb(230, 184, 0)"
RED = "rgb(221, 51, 51)"


def token(user_id, valid_for=300):
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"token_type": "access", "user_id": user_id,
                              "exp": int(time.time()) + valid_for}).encode())
    signature = hmac.new(SECRET, f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{b64(signature.digest())}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout, what):
    """Polls `condition` (a browser or HTTP query: neither can notify us)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def start(argv, banner, log_path, timeout=30):
    """Starts a server that logs `banner` followed by HOST:PORT on stderr,
    which goes to `log_path` (a file: a pipe nobody drains would block it)."""
    log = open(log_path, "w")
    process = subprocess.Popen(argv, stderr=log)
    log.close()

    def address():
        if process.poll() is not None:
            with open(log_path) as log:
                raise AssertionError(f"{argv[0]} exited: {log.read()}")
        with open(log_path) as log:
            match = re.search(banner + r" ([0-9.]+:[0-9]+)", log.read())
        return match and match.group(1)
    return process, wait_for(address, timeout, f"{argv[0]} to serve")


def http(method, url, body=None, bearer=None):
    request = urllib.request.Request(url, method=method,
                                     data=None if body is None else json.dumps(body).encode())
    if bearer:
        request.add_header("Authorization", "Bearer " + bearer)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


class WebDriver:
    """The few W3C WebDriver commands the test needs."""

    def __init__(self, port, profile):
        self.base = f"http://127.0.0.1:{port}"
        capabilities = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--user-data-dir=" + profile]}}}}
        self.session = self.call("POST", "/session", capabilities)["sessionId"]

    def call(self, method, path, body=None):
        request = urllib.request.Request(self.base + path, method=method,
                                         data=json.dumps(body or {}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["value"]

    def get(self, url):
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def run(self, script, *args):
        return self.call("POST", f"/session/{self.session}/execute/sync",
                         {"script": script, "args": list(args)})

    def run_async(self, script, *args):
        """Runs `script`, which calls arguments[arguments.length - 1] when done."""
        return self.call("POST", f"/session/{self.session}/execute/async",
                         {"script": script, "args": list(args)})

    def window(self):
        return self.call("GET", f"/session/{self.session}/window")

    def new_tab(self):
        """Opens a tab of the same browser (same profile, same localStorage)
        and switches to it; returns its handle."""
        handle = self.call("POST", f"/session/{self.session}/window/new",
                           {"type": "tab"})["handle"]
        self.switch(handle)
        return handle

    def switch(self, handle):
        self.call("POST", f"/session/{self.session}/window", {"handle": handle})

    def quit(self):
        self.call("DELETE", f"/session/{self.session}")


DOT_COLOR = """
const li = document.querySelector(`li[data-user="${arguments[0]}"]`);
return li ? getComputedStyle(li.querySelector('.dot')).backgroundColor : null;
"""

ROW = """
const li = document.querySelector(`li[data-user="${arguments[0]}"]`);
if (!li) return null;
const time = li.querySelector('time');
return {name: li.querySelector('.name').textContent, seen: time.textContent,
        datetime: time.getAttribute('datetime'), title: time.getAttribute('title')};
"""

CUSTOM_STATUS = """
const li = document.querySelector(`li[data-user="${arguments[0]}"]`);
return li ? li.querySelector('.custom').textContent : null;
"""

TEXT = "return document.getElementById(arguments[0]).textContent"

# Records the `idle` of this tab's heartbeats, in order.
SPY_IDLE = """
window.idleSent = [];
const fetch = window.fetch;
window.fetch = (url, init, ...rest) => {
  if (String(url).includes('/heartbeat/')) window.idleSent.push(JSON.parse(init.body).idle);
  return fetch(url, init, ...rest);
};
"""

# Whether the window has focus, as presence.js asks (document.hasFocus()),
# with the focus or blur event that goes with it.
SET_FOCUS = """
document.hasFocus = () => arguments[0];
window.dispatchEvent(new Event(arguments[0] ? 'focus' : 'blur'));
"""

SET_VISIBILITY = """
Object.defineProperty(document, 'visibilityState', {value: arguments[0], configurable: true});
document.dispatchEvent(new Event('visibilitychange'));
"""

# Counts this tab's heartbeat requests; fetch is called synchronously from
# presence.js's beat(), so a check right after an event is not racy.
SPY_HEARTBEATS = """
window.heartbeatsSent = 0;
const fetch = window.fetch;
window.fetch = (url, ...rest) => {
  if (String(url).includes('/heartbeat/')) window.heartbeatsSent++;
  return fetch(url, ...rest);
};
"""

# A Presence with a fake clock and fake timers, talking to the real servers.
FAKE_CLOCK_PRESENCE = """
const [token, done] = arguments;
import('/presence.js').then(({ Presence }) => {
  window.fakeNow = 1000000;
  window.timers = new Map();
  let next = 0;
  window.beats = 0;
  window.presence = new Presence({
    token, sessionId: 'clock-test',
    now: () => window.fakeNow,
    setTimeout: (fn, ms) => { timers.set(++next, { fn, at: window.fakeNow + ms }); return next; },
    clearTimeout: (id) => timers.delete(id),
    onHeartbeat: () => window.beats++,
  });
  done(true);
});
"""

# In one script: the heartbeat may be answered before a second one runs.
SHOW_AND_SAY_IF_BEATING = SET_VISIBILITY.replace("arguments[0]", "'visible'") + """
return presence.inflight !== null;
"""

PENDING_TIMERS = "return [...window.timers.values()].map((t) => t.at)"


class PageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.presenced_path, cls.rest_path = sys.argv[1], sys.argv[2]

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.processes = []
        self.browser = None
        with open(os.path.join(self.dir, "secret"), "wb") as f:
            f.write(SECRET)

    def start_presenced(self, listen="127.0.0.1:0"):
        away_after = ["--away_after=" + self.away_after] if self.away_after else []
        self.presenced, self.presenced_address = start(
            [self.presenced_path, "--listen=" + listen, "--db=" + os.path.join(self.dir, "p.db"),
             "--heartbeat_interval=" + self.heartbeat_interval,
             "--online_window=" + self.online_window] + away_after,
            "serving on", os.path.join(self.dir, "presenced.log"))
        self.processes.append(self.presenced)

    def start_rest(self, listen="127.0.0.1:0"):
        self.rest_process, rest_address = start(
            [self.rest_path, "--listen=" + listen, "--server=" + self.presenced_address,
             "--jwt_secret_file=" + os.path.join(self.dir, "secret")], "serving on",
            os.path.join(self.dir, "presence-rest.log"))
        self.processes.append(self.rest_process)
        self.rest_address = rest_address
        self.rest = "http://" + rest_address

    def start_servers(self, heartbeat_interval, online_window, away_after=None):
        self.heartbeat_interval, self.online_window = heartbeat_interval, online_window
        self.away_after = away_after
        self.start_presenced()
        self.start_rest()
        driver_port = free_port()
        self.processes.append(subprocess.Popen(
            [CHROMEDRIVER, f"--port={driver_port}"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        wait_for(lambda: self.driver_ready(driver_port), 30, "chromedriver")
        self.browser = WebDriver(driver_port, os.path.join(self.dir, "profile"))

    def stop(self, process):
        process.terminate()
        process.wait(timeout=30)
        self.processes.remove(process)

    def driver_ready(self, port):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as r:
                return json.loads(r.read())["value"]["ready"]
        except OSError:
            return False

    def tearDown(self):
        try:
            if self.browser:
                self.browser.quit()
        except Exception:  # the browser may be gone already; stop the rest anyway
            pass
        for process in reversed(self.processes):
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def online_users(self):
        status, body = http("GET", self.rest + "/api/chat/online-users/", bearer=token(1))
        self.assertEqual(status, 200, body)
        return body["online_users"]

    def post(self, path, user, body=None):
        status, answer = http("POST", self.rest + path, body or {}, bearer=token(user))
        self.assertEqual(status, 200, answer)
        return answer

    def dot(self, user):
        return self.browser.run(DOT_COLOR, str(user))

    def text(self, element_id):
        return self.browser.run(TEXT, element_id)

    def test_page_shows_live_presence_with_presence_js(self):
        # A long window: only presence.js's own calls can make anyone offline.
        self.start_servers("20s", "60s")
        self.browser.get(f"{self.rest}/#token={token(7)}")
        self.assertEqual(self.text("me-name"), "user 7")
        # presence.js beat at once: the viewer is online, and sees it.
        wait_for(lambda: self.dot(7) == GREEN, 10, "the viewer's dot to turn green")
        self.assertIn(7, self.online_users())
        self.assertEqual(self.browser.run(ROW, "7")["name"], "user 7 (you)")
        wait_for(lambda: self.text("status") == "You are online.", 10, "the viewer's status")
        wait_for(lambda: self.text("count") == "1 person online", 10, "the count of 1")

        # Someone else's heartbeat turns their dot green, live; their logout
        # turns it gray, "last seen just now", with the exact time on hover.
        self.assertIsNone(self.dot(42))
        self.post("/api/chat/heartbeat/", 42)
        wait_for(lambda: self.dot(42) == GREEN, 10, "user 42's dot to turn green")
        row = self.browser.run(ROW, "42")
        self.assertEqual(row["seen"], "online")
        self.assertTrue(row["title"].startswith("online since "), row)
        self.assertEqual(self.text("count"), "2 people online")
        self.post("/api/chat/mark-offline/", 42)
        wait_for(lambda: self.dot(42) == GRAY, 10, "user 42's dot to turn gray")
        row = self.browser.run(ROW, "42")
        self.assertEqual(row["seen"], "last seen just now")
        self.assertTrue(row["title"].startswith("last seen "), row)
        self.assertRegex(row["datetime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(self.text("count"), "1 person online")
        self.assertEqual(self.text("connection"), "· live")

        # The Log out button marks this browser's session offline now (and
        # stops the page's heartbeats and stream).
        self.browser.run("document.getElementById('logout').click();")
        wait_for(lambda: 7 not in self.online_users(), 10, "user 7 offline after logout")
        wait_for(lambda: self.text("status") == "Logged out.", 10, "the page to say it logged out")

    def test_logout_ends_every_tab_of_this_browser_and_no_other_device(self):
        self.start_servers("20s", "60s")
        first = self.browser.window()
        self.browser.get(f"{self.rest}/#token={token(7)}")
        wait_for(lambda: self.text("status") == "You are online.", 10, "tab 1 online")
        session = self.browser.run("return JSON.parse(localStorage['presence.session']).id")
        second = self.browser.new_tab()
        self.browser.get(f"{self.rest}/#token={token(7)}")
        wait_for(lambda: self.text("status") == "You are online.", 10, "tab 2 online")
        # One session for the browser: tab 2 beats on tab 1's.
        self.assertEqual(
            self.browser.run("return JSON.parse(localStorage['presence.session']).id"), session)
        self.browser.run(SPY_HEARTBEATS)
        # The user's phone.
        self.post("/api/chat/heartbeat/", 7, {"session_id": "phone"})

        self.browser.switch(first)
        self.browser.run("document.getElementById('logout').click();")
        wait_for(lambda: self.text("status") == "Logged out.", 10, "tab 1 logged out")
        # The phone keeps the user online.
        self.assertIn(7, self.online_users())

        # Tab 2 heard of it, and stopped: shown again, it does not beat.
        self.browser.switch(second)
        wait_for(lambda: self.text("status") == "Logged out in another tab.", 10,
                 "tab 2 to learn of the logout")
        self.browser.run(SET_VISIBILITY, "hidden")
        self.browser.run(SET_VISIBILITY, "visible")
        self.assertEqual(self.browser.run("return window.heartbeatsSent"), 0)

        # Without the phone, the user is offline: the browser's session
        # (both tabs) was ended, and the 60 s window cannot have passed.
        answer = self.post("/api/chat/mark-offline/", 7, {"session_id": "phone"})
        self.assertEqual(answer["sessions_ended"], 1, answer)
        self.assertFalse(answer["still_online"], answer)
        self.assertNotIn(7, self.online_users())

    def test_leaving_the_last_tab_marks_the_browser_offline(self):
        # A long window: user 8 goes offline within the test only if the
        # pagehide beacon arrives.
        self.start_servers("20s", "60s")
        first = self.browser.window()
        self.browser.get(f"{self.rest}/#token={token(8)}")
        wait_for(lambda: self.text("status") == "You are online.", 10, "tab 1 online")
        self.browser.new_tab()
        self.browser.get(f"{self.rest}/#token={token(8)}")
        wait_for(lambda: self.text("status") == "You are online.", 10, "tab 2 online")
        # Leaving tab 2 while tab 1 is open: no beacon (pagehide runs before
        # the navigation ends, so the mark is there when get() returns).
        self.browser.run("""
            const send = navigator.sendBeacon.bind(navigator);
            navigator.sendBeacon = (...args) => {
              localStorage.setItem('test.beacon', 'sent');
              return send(...args);
            };""")
        self.browser.get(f"{self.rest}/nothing-here")
        self.assertIsNone(self.browser.run("return localStorage.getItem('test.beacon')"))
        self.assertIn(8, self.online_users())
        # Leaving tab 1, the last: the beacon ends the session. An unload
        # handler keeps the page out of the back/forward cache, so this
        # navigation is a close (pagehide with persisted false); a page
        # kept in that cache sends nothing, it may come back.
        self.browser.switch(first)
        self.browser.run("window.addEventListener('unload', () => {});")
        self.browser.get("about:blank")
        wait_for(lambda: 8 not in self.online_users(), 10, "user 8 offline by the beacon")

    def test_a_tab_shown_again_beats_by_the_products_rule(self):
        # The product's timings, on a fake clock: nothing waits for them.
        self.start_servers("2m", "5m")
        self.browser.get(f"{self.rest}/")
        self.assertTrue(self.browser.run_async(FAKE_CLOCK_PRESENCE, token(9)))
        self.browser.run("presence.start()")
        wait_for(lambda: self.browser.run("return beats") == 1, 10, "the first heartbeat")
        self.assertIn(9, self.online_users())
        # The server's interval (120 s) sets the next beat.
        self.assertEqual(self.browser.run(PENDING_TIMERS), [1000000 + 120000])

        # Hidden, the tab keeps its schedule (its heartbeats say idle).
        self.browser.run(SET_VISIBILITY, "hidden")
        self.assertEqual(self.browser.run(PENDING_TIMERS), [1000000 + 120000])

        # Shown 30 s after the last heartbeat: no heartbeat now, the next one
        # where it was due.
        self.browser.run("fakeNow += 30000")
        self.assertFalse(self.browser.run(SHOW_AND_SAY_IF_BEATING))
        self.assertEqual(self.browser.run("return beats"), 1)
        self.assertEqual(self.browser.run(PENDING_TIMERS), [1000000 + 120000])

        # Shown 61 s after it: a heartbeat at once. The session was ended
        # meanwhile, so only that heartbeat can bring the user back.
        self.browser.run(SET_VISIBILITY, "hidden")
        self.browser.run("fakeNow += 31000")
        self.post("/api/chat/mark-offline/", 9)
        self.assertNotIn(9, self.online_users())
        self.assertTrue(self.browser.run(SHOW_AND_SAY_IF_BEATING))
        wait_for(lambda: self.browser.run("return beats") == 2, 10, "the heartbeat on show")
        self.assertIn(9, self.online_users())
        self.assertEqual(self.browser.run(PENDING_TIMERS), [1061000 + 120000])

        # The timer, when due, beats.
        self.post("/api/chat/mark-offline/", 9)
        self.browser.run("""
            fakeNow = 1061000 + 120000;
            const [id, timer] = [...timers.entries()][0];
            timers.delete(id);
            timer.fn();""")
        wait_for(lambda: self.browser.run("return beats") == 3, 10, "the scheduled heartbeat")
        self.assertIn(9, self.online_users())

        # Idle: hidden, without input, the scheduled heartbeat says so. But
        # not while another tab of the browser beat the session lately: it
        # waits until a little over an interval after that one.
        self.browser.run(SPY_IDLE)
        self.browser.run(SET_VISIBILITY, "hidden")
        fire_timer = """
            const [id, timer] = [...timers.entries()][0];
            timers.delete(id);
            timer.fn();"""
        self.browser.run("""
            fakeNow += 120000;
            localStorage.setItem('presence.beat', JSON.stringify(
                { id: 'clock-test', tab: 'another-tab', at: Date.now() }));""" + fire_timer)
        self.assertEqual(self.browser.run("return idleSent"), [])
        [due] = self.browser.run(PENDING_TIMERS)
        fake_now = self.browser.run("return fakeNow")
        self.assertAlmostEqual(due - fake_now, 132000, delta=1000)
        self.browser.run("localStorage.removeItem('presence.beat');" + fire_timer)
        self.assertEqual(self.browser.run("return idleSent"), [True])
        wait_for(lambda: self.browser.run("return beats") == 4, 10, "the idle heartbeat")
        # Shown in a window without focus: still idle.
        self.browser.run(SET_FOCUS, False)
        self.browser.run(SET_VISIBILITY, "visible")
        self.assertEqual(self.browser.run("return idleSent"), [True])
        self.assertTrue(self.browser.run("""
            window.dispatchEvent(new KeyboardEvent('keydown', { key: 'a' }));
            return presence.inflight !== null;"""))
        self.assertEqual(self.browser.run("return idleSent"), [True, False])

    def test_a_tab_not_in_use_beats_idle_and_the_user_shows_away(self):
        # Away after 1 s of no use; a window (1.2 s) that only heartbeats
        # (every 0.4 s) keep open.
        self.start_servers("400ms", "1200ms", away_after="1s")
        self.browser.get(f"{self.rest}/#token={token(7)}")
        self.browser.run(SPY_IDLE)
        self.browser.run(SET_FOCUS, True)
        # Visible and focused: in use, without input.
        wait_for(lambda: len(self.browser.run("return idleSent")) >= 2, 10, "heartbeats")
        self.assertNotIn(True, self.browser.run("return idleSent"))
        wait_for(lambda: self.dot(7) == GREEN, 10, "the viewer's dot to turn green")

        # Hidden: heartbeats go on, idle; the viewer is away, not offline.
        self.browser.run(SET_VISIBILITY, "hidden")
        wait_for(lambda: self.browser.run("return idleSent").count(True) >= 4, 10,
                 "four idle heartbeats (is a hidden tab beating, with idle=true?)")
        wait_for(lambda: self.dot(7) == YELLOW, 10, "the hidden viewer to show away")
        self.assertEqual(self.browser.run(ROW, "7")["seen"], "away")
        self.assertIn(7, self.online_users())  # more than a window after hiding

        # Shown, and used: back at once.
        self.browser.run(SET_VISIBILITY, "visible")
        self.browser.run("window.dispatchEvent(new MouseEvent('mousemove'));")
        wait_for(lambda: self.dot(7) == GREEN, 10, "the viewer back from away")
        self.assertFalse(self.browser.run("return idleSent")[-1])

        # Visible, but another window has focus and there is no input: idle.
        self.browser.run(SET_FOCUS, False)
        wait_for(lambda: self.dot(7) == YELLOW, 10, "the unfocused viewer to show away")
        self.assertTrue(self.browser.run("return idleSent")[-1])
        self.browser.run(SET_FOCUS, True)
        wait_for(lambda: self.dot(7) == GREEN, 10, "the viewer focused again")

    def test_statuses_show_as_dots_and_text(self):
        self.start_servers("20s", "60s", away_after="1s")
        self.browser.get(f"{self.rest}/#token={token(7)}")
        wait_for(lambda: self.text("status") == "You are online.", 10, "the viewer online")

        # Do not disturb: red.
        self.post("/api/chat/heartbeat/", 42)
        self.post("/api/chat/status/", 42, {"availability": "dnd", "for": "1h"})
        wait_for(lambda: self.dot(42) == RED, 10, "user 42's dot to turn red (dnd)")
        self.assertEqual(self.browser.run(ROW, "42")["seen"], "do not disturb")
        # Away (its heartbeats say idle): yellow.
        self.post("/api/chat/heartbeat/", 43, {"idle": True})
        wait_for(lambda: self.dot(43) == YELLOW, 10, "user 43's dot to turn yellow (away)")
        # A custom status shows, and goes when cleared.
        self.post("/api/chat/heartbeat/", 44)
        self.post("/api/chat/status/", 44, {"text": "Lunch", "emoji": ":pizza:"})
        wait_for(lambda: self.browser.run(CUSTOM_STATUS, "44") == ":pizza: Lunch", 10,
                 "user 44's custom status")
        self.post("/api/chat/status/", 44, {"clear": True})
        wait_for(lambda: self.browser.run(CUSTOM_STATUS, "44") == "", 10,
                 "user 44's custom status to go")
        # Invisible: grey, as offline, with its custom status hidden.
        self.post("/api/chat/heartbeat/", 45)
        self.post("/api/chat/status/", 45, {"text": "secret"})
        wait_for(lambda: self.dot(45) in (GREEN, YELLOW), 10, "user 45 online")
        self.assertEqual(self.browser.run(CUSTOM_STATUS, "45"), "secret")
        self.post("/api/chat/status/", 45, {"availability": "invisible"})
        wait_for(lambda: self.dot(45) == GRAY, 10, "user 45's dot to turn grey (invisible)")
        self.assertEqual(self.browser.run(CUSTOM_STATUS, "45"), "")
        self.assertNotIn(45, self.online_users())
        self.assertEqual(self.text("count"), "4 people online")

        # A page loaded now gets the same from the snapshot.
        self.browser.get("about:blank")
        self.browser.get(f"{self.rest}/#token={token(7)}")
        wait_for(lambda: self.dot(42) == RED and self.dot(43) == YELLOW, 10,
                 "the snapshot's statuses")
        self.assertIsNone(self.dot(45))  # never seen online by this page

        # The viewer's own status, through the page's form (setStatus).
        self.browser.run("""
            document.getElementById('availability').value = 'dnd';
            document.getElementById('status-text').value = 'Focus time';
            document.querySelector('#status-form button[type=submit]').click();""")
        wait_for(lambda: self.dot(7) == RED, 10, "the viewer's own dot to turn red")
        wait_for(lambda: self.browser.run(CUSTOM_STATUS, "7") == "Focus time", 10,
                 "the viewer's custom status")
        self.assertEqual(self.text("my-status"), "Do not disturb · Focus time")
        self.browser.run("""
            document.getElementById('availability').value = 'invisible';
            document.querySelector('#status-form button[type=submit]').click();""")
        wait_for(lambda: self.dot(7) == GRAY, 10, "the invisible viewer grey, as others see")
        wait_for(lambda: self.text("my-status").startswith("Invisible: others see you offline"),
                 10, "the page to say the viewer is invisible")
        # Refused input: presenced's message, on the page.
        self.browser.run("""
            document.getElementById('status-emoji').value = 'not an emoji';
            document.querySelector('#status-form button[type=submit]').click();""")
        wait_for(lambda: self.text("my-status").startswith("Could not set your status: "),
                 10, "the page to show why the status was refused")
        self.assertIn("emoji", self.text("my-status"))

    def connection(self):
        return self.browser.run("""
            const c = document.getElementById('connection');
            return c.dataset.state + ' ' + c.textContent;""")

    def test_reconnecting_while_presence_rest_has_lost_presenced(self):
        self.start_servers("20s", "60s")
        self.browser.get(f"{self.rest}/#token={token(7)}")
        wait_for(lambda: self.dot(7) == GREEN, 10, "the viewer online")
        self.assertEqual(self.connection(), "live · live")
        self.stop(self.presenced)
        # presence-rest's `event: stale` on losing its upstream.
        wait_for(lambda: self.connection() == "stale · reconnecting…", 15,
                 "the page to show reconnecting (is presence-rest sending `event: stale`?)")
        self.assertIn("stale", self.browser.run("return document.body.className"))
        self.start_presenced(self.presenced_address)
        wait_for(lambda: self.connection() == "live · live", 30, "the page live again")
        self.assertEqual(self.dot(7), GREEN)

    def test_reconnecting_while_the_page_has_lost_presence_rest(self):
        self.start_servers("20s", "60s")
        self.browser.get(f"{self.rest}/#token={token(7)}")
        wait_for(lambda: self.dot(7) == GREEN, 10, "the viewer online")
        self.stop(self.rest_process)
        wait_for(lambda: self.connection() == "stale · reconnecting…", 15,
                 "the page to show reconnecting")
        self.start_rest(self.rest_address)
        # EventSource reconnects by itself and gets a fresh snapshot.
        wait_for(lambda: self.connection() == "live · live", 30, "the page live again")
        self.post("/api/chat/heartbeat/", 42)
        wait_for(lambda: self.dot(42) == GREEN, 10, "changes flowing again")

    def test_ids_beyond_2_53_stay_exact(self):
        self.start_servers("20s", "60s")
        self.browser.get(f"{self.rest}/")
        # presence.js's parser, on the text presence-rest writes.
        parsed = self.browser.run_async("""
            const done = arguments[0];
            import('/presence.js').then(({ parseJSON }) => done(parseJSON(
                '{"online_users":[5,9007199254740993,9223372036854775807],"at":"12345678901234567"}')));
        """)
        self.assertEqual(parsed, {"online_users": [5, "9007199254740993", "9223372036854775807"],
                                  "at": "12345678901234567"})
        # End to end: 2^53 + 1 as a string claim (a JSON number would be
        # rounded by any JSON parser on the way).
        big = "9007199254740993"
        self.browser.get("about:blank")  # else only the fragment changes: no reload
        self.browser.get(f"{self.rest}/#token={token(big)}")
        self.assertEqual(self.text("me-name"), "user " + big)
        wait_for(lambda: self.text("status") == "You are online.", 10, "the big id online")
        status, body = urllib_raw(self.rest + "/api/chat/online-users/", token(1))
        self.assertIn(big.encode(), body, "presence-rest rounds ids beyond 2^53 in JSON")
        wait_for(lambda: self.dot(big) == GREEN, 10,
                 "the row of user 9007199254740993 (does presence-rest write exact ids?)")


def urllib_raw(url, bearer):
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + bearer})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
