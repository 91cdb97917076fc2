#!/usr/bin/env python3
"""The status page and presence.js in a real browser (headless Chromium).

Starts presenced, presence-rest and chromedriver, then drives the page over
the W3C WebDriver protocol with nothing but the standard library:

- presence.js beats at once on start: the viewer's own dot turns green;
- a heartbeat of another user (over REST) turns that user's dot green, live,
  through the SSE stream; a logout turns it gray;
- a tab shown again after being hidden beats at once, not at its next
  interval; a hidden tab stops beating (with a 2 s window, it expires);
- the page's Log out button marks the tab offline;
- leaving the page sends the mark-offline beacon.

Where only presence.js may make a user offline, presenced runs with a 60 s
window, so that expiry cannot pass for it.

Usage: page_test.py PRESENCED PRESENCE_REST
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
            raise AssertionError(f"{argv[0]} exited: {open(log_path).read()}")
        match = re.search(banner + r" ([0-9.]+:[0-9]+)", open(log_path).read())
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

    def quit(self):
        self.call("DELETE", f"/session/{self.session}")


DOT_COLOR = """
const li = document.querySelector(`li[data-user="${arguments[0]}"]`);
return li ? getComputedStyle(li.querySelector('.dot')).backgroundColor : null;
"""

SET_VISIBILITY = """
Object.defineProperty(document, 'visibilityState', {value: arguments[0], configurable: true});
document.dispatchEvent(new Event('visibilitychange'));
"""


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

    def start_servers(self, heartbeat_interval, online_window):
        presenced, address = start(
            [self.presenced_path, "--listen=127.0.0.1:0", "--db=" + os.path.join(self.dir, "p.db"),
             "--heartbeat_interval=" + heartbeat_interval, "--online_window=" + online_window],
            "serving on", os.path.join(self.dir, "presenced.log"))
        self.processes.append(presenced)
        rest, rest_address = start(
            [self.rest_path, "--listen=127.0.0.1:0", "--server=" + address,
             "--jwt_secret_file=" + os.path.join(self.dir, "secret")], "serving on",
            os.path.join(self.dir, "presence-rest.log"))
        self.processes.append(rest)
        self.rest = "http://" + rest_address
        driver_port = free_port()
        self.processes.append(subprocess.Popen(
            [CHROMEDRIVER, f"--port={driver_port}"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
        wait_for(lambda: self.driver_ready(driver_port), 30, "chromedriver")
        self.browser = WebDriver(driver_port, os.path.join(self.dir, "profile"))

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

    def dot(self, user):
        return self.browser.run(DOT_COLOR, user)

    def test_page_shows_live_presence_with_presence_js(self):
        # A long window: only presence.js's own calls can make anyone offline.
        self.start_servers("20s", "60s")
        self.browser.get(f"{self.rest}/#token={token(7)}")
        # presence.js beat at once: the viewer is online, and sees it.
        wait_for(lambda: self.dot(7) == GREEN, 10, "the viewer's dot to turn green")
        self.assertIn(7, self.online_users())

        # Someone else's heartbeat turns their dot green, live; their logout
        # turns it gray.
        self.assertIsNone(self.dot(42))
        status, body = http("POST", self.rest + "/api/chat/heartbeat/", {}, bearer=token(42))
        self.assertEqual(status, 200, body)
        wait_for(lambda: self.dot(42) == GREEN, 10, "user 42's dot to turn green")
        status, body = http("POST", self.rest + "/api/chat/mark-offline/", bearer=token(42))
        self.assertEqual(status, 200, body)
        wait_for(lambda: self.dot(42) == GRAY, 10, "user 42's dot to turn gray")

        # Shown again after being hidden, the tab beats at once, not at its
        # next interval (20 s away): end the viewer's sessions while the tab
        # is hidden, and it must come back within seconds when shown.
        self.browser.run(SET_VISIBILITY, "hidden")
        status, body = http("POST", self.rest + "/api/chat/mark-offline/", bearer=token(7))
        self.assertEqual(status, 200, body)
        wait_for(lambda: self.dot(7) == GRAY, 10, "the viewer gray while hidden")
        self.browser.run(SET_VISIBILITY, "visible")
        wait_for(lambda: self.dot(7) == GREEN, 5, "the viewer back online at once")

        # The Log out button marks this tab's session offline now (and stops
        # the page's heartbeats and stream).
        self.browser.run("document.getElementById('logout').click();")
        wait_for(lambda: 7 not in self.online_users(), 10, "user 7 offline after logout")
        wait_for(lambda: self.browser.run(
            "return document.getElementById('status').textContent") == "Logged out.",
            10, "the page to say it logged out")

    def test_a_hidden_tab_stops_beating(self):
        # A short window, so that a tab that stopped beating expires in the test.
        self.start_servers("1s", "2s")
        self.browser.get(f"{self.rest}/#token={token(7)}")
        wait_for(lambda: self.dot(7) == GREEN, 10, "the viewer's dot to turn green")
        self.browser.run(SET_VISIBILITY, "hidden")
        wait_for(lambda: self.dot(7) == GRAY, 10, "the hidden viewer to expire")
        self.assertNotIn(7, self.online_users())
        self.browser.run(SET_VISIBILITY, "visible")
        wait_for(lambda: self.dot(7) == GREEN, 10, "the viewer back online")

    def test_leaving_the_page_marks_the_tab_offline(self):
        # A long window: user 8 goes offline within the test only if the
        # pagehide beacon arrives.
        self.start_servers("20s", "60s")
        self.browser.get(f"{self.rest}/#token={token(8)}")
        wait_for(lambda: 8 in self.online_users(), 10, "user 8 online")
        self.browser.get("about:blank")
        wait_for(lambda: 8 not in self.online_users(), 10, "user 8 offline by the beacon")


if __name__ == "__main__":
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:], verbosity=2)
