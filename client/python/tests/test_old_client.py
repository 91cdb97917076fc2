"""Clients built before rich presence keep working against today's
presenced (issue 14, "Compatibility").

Two old clients, each in a process of its own (old_client_probe.py) with
only old code on its path: the gRPC stubs generated from the proto as it
was before rich presence (tests/testdata/before_rich/presence/v1/presence.proto, the
proto of commit 495496e), used directly, and presence_client as it was at
that commit (exported from git), on those stubs. Against a presenced with
--away_after=500ms, with users set up by today's client:

  - a heartbeat works;
  - GetPresence of an AWAY, a DND and an INVISIBLE user answers ONLINE,
    ONLINE and OFFLINE, and the rich fields the old proto does not know
    (availability, custom status) neither break the parse nor get lost;
  - ListOnline lists the away and DND users, not the invisible one;
  - a watch without rich_status sees only ONLINE/OFFLINE changes with
    reasons 1-3: nothing for away, DND, a custom status or their ends, an
    invisible user leaving as MARK_OFFLINE and coming back as HEARTBEAT.

Needs $PROTOC and $GRPC_PYTHON_PLUGIN (ctest sets them) for the old stubs,
and the git history (commit 495496e) for the old package: without it that
part is skipped, saying so.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import Dict, List, Optional

from presence_client import Availability, PresenceClient, Status
from presence_client._proto import pb
from presenced import Presenced

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
OLD_COMMIT = "495496e"
# Shared with tests/old_client_compat_test.cc; its first three lines are a
# header of ours, the rest that commit's file unchanged.
OLD_PROTO = os.path.join(SOURCE, "tests", "testdata", "before_rich",
                         "presence", "v1", "presence.proto")
OLD_PROTO_HEADER_LINES = 3
PROBE = os.path.join(HERE, "old_client_probe.py")
WAIT = 15  # seconds: the longest any expected step may take

# Users.
AWAY, DND, INVISIBLE = 11, 12, 13
W1, W2 = 21, 22  # watched: W1 goes through every status, W2's DND ends
SENTINEL = 29
BEAT = {"stubs": 31, "package": 32}  # each probe's own heartbeat
LOOKUP = [AWAY, DND, INVISIBLE]
WATCHED = [AWAY, DND, INVISIBLE, W1, W2, SENTINEL]

# The only changes a watch without rich_status may see, in order.
EXPECTED_CHANGES = [
    [W1, pb.STATUS_ONLINE, "STATUS_ONLINE", pb.REASON_HEARTBEAT,
     "REASON_HEARTBEAT"],
    # Turned invisible: gone, as if logged out.
    [W1, pb.STATUS_OFFLINE, "STATUS_OFFLINE", pb.REASON_MARK_OFFLINE,
     "REASON_MARK_OFFLINE"],
    # Visible again: back, as if by a heartbeat.
    [W1, pb.STATUS_ONLINE, "STATUS_ONLINE", pb.REASON_HEARTBEAT,
     "REASON_HEARTBEAT"],
    [W1, pb.STATUS_OFFLINE, "STATUS_OFFLINE", pb.REASON_MARK_OFFLINE,
     "REASON_MARK_OFFLINE"],
    [SENTINEL, pb.STATUS_ONLINE, "STATUS_ONLINE", pb.REASON_HEARTBEAT,
     "REASON_HEARTBEAT"],
]


def git(*args: str) -> Optional[bytes]:
    """git's output in the source tree; None if git or the history is not
    there."""
    try:
        return subprocess.run(["git", "-C", SOURCE, *args], check=True,
                              capture_output=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def generate_old_stubs(into: str) -> str:
    """The old proto's Python stubs under `into`/gen (package presence.v1,
    as the build makes today's); that directory."""
    proto_root = os.path.join(into, "proto")
    os.makedirs(os.path.join(proto_root, "presence", "v1"))
    shutil.copy(OLD_PROTO, os.path.join(proto_root, "presence", "v1",
                                        "presence.proto"))
    gen = os.path.join(into, "gen")
    os.makedirs(os.path.join(gen, "presence", "v1"))
    protoc = os.environ.get("PROTOC") or shutil.which("protoc")
    plugin = (os.environ.get("GRPC_PYTHON_PLUGIN")
              or shutil.which("grpc_python_plugin"))
    if not protoc or not plugin:
        raise RuntimeError("set PROTOC and GRPC_PYTHON_PLUGIN (ctest does)")
    subprocess.run([protoc, f"-I{proto_root}", f"--python_out={gen}",
                    f"--grpc_python_out={gen}",
                    f"--plugin=protoc-gen-grpc_python={plugin}",
                    "presence/v1/presence.proto"], check=True, cwd=into)
    for package in ("presence", os.path.join("presence", "v1")):
        open(os.path.join(gen, package, "__init__.py"), "w").close()
    return gen


def export_old_package(into: str) -> Optional[str]:
    """presence_client of commit 495496e under `into`/old; None without
    the history."""
    archive = git("archive", "--format=tar", OLD_COMMIT,
                  "client/python/presence_client")
    if archive is None:
        return None
    target = os.path.join(into, "old")
    os.makedirs(target)
    subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    return os.path.join(target, "client", "python")


class Probe:
    """old_client_probe.py in a process of its own, its JSON lines read by
    a thread into a queue."""

    def __init__(self, mode: str, address: str, path: List[str]) -> None:
        self.mode = mode
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("PYTHON")}
        env["PYTHONPATH"] = os.pathsep.join(path)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-s", PROBE, mode, address,
             str(BEAT[mode]), ",".join(map(str, LOOKUP)),
             ",".join(map(str, WATCHED)), str(SENTINEL)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env, cwd=path[0])
        self.lines: "queue.Queue[Optional[dict]]" = queue.Queue()
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def next(self, key: str) -> object:
        """The value of the next line, which must have `key`."""
        try:
            line = self.lines.get(timeout=WAIT)
        except queue.Empty:
            line = {"timeout": f"nothing for {WAIT} s"}
        if line is None or key not in line:
            self.kill()
            raise AssertionError(
                f"the {self.mode} probe: expected {key!r}, got {line!r}; "
                f"its stderr:\n{self.stderr}")
        return line[key]

    def finish(self) -> None:
        try:
            code = self.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the {self.mode} probe did not end")
        self._collect()
        if code != 0:
            raise AssertionError(f"the {self.mode} probe exited {code}:\n"
                                 f"{self.stderr}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._collect()

    def _collect(self) -> None:
        if not self.process.stderr.closed:
            self.stderr = self.process.stderr.read()
            self.process.stderr.close()
        self._reader.join(WAIT)
        if not self.process.stdout.closed:
            self.process.stdout.close()


class OldClientTest(unittest.TestCase):
    def setUp(self) -> None:
        self.server = Presenced(["--away_after=500ms"]).start()
        self.addCleanup(self.server.close)
        self.client = PresenceClient(self.server.address)
        self.addCleanup(self.client.close)
        self.dir = tempfile.mkdtemp(prefix="presence_old_client_")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def wait_for(self, user_id: int, what: str, predicate) -> None:
        deadline = time.monotonic() + WAIT
        while not predicate(self.client.get_presence([user_id]).users[0]):
            if time.monotonic() > deadline:
                self.fail(f"user {user_id} not {what} within {WAIT} s")
            time.sleep(0.02)

    def test_the_vendored_proto_is_the_old_one(self) -> None:
        old = git("show", f"{OLD_COMMIT}:proto/presence/v1/presence.proto")
        if old is None:
            self.skipTest(f"no git history with {OLD_COMMIT} in {SOURCE}")
        with open(OLD_PROTO, "rb") as f:
            vendored = f.read().split(b"\n", OLD_PROTO_HEADER_LINES)[-1]
        self.assertEqual(vendored, old)

    def test_old_stubs_and_old_package_against_todays_server(self) -> None:
        # Set up with today's client, while the old code is prepared: the
        # away user needs --away_after to pass.
        for user_id in (AWAY, DND, INVISIBLE, W2):
            self.client.heartbeat(user_id, "tab")
        self.client.set_status(DND, "dnd", text="Focus", emoji=":x:")
        self.client.set_status(INVISIBLE, "invisible", text="Hidden")
        w2_dnd = self.client.set_status(W2, "dnd", until=datetime.timedelta(
            seconds=1), text="Short").presence
        gen = generate_old_stubs(self.dir)
        package = export_old_package(self.dir)
        # Keep the others active: only AWAY goes away.
        self.wait_for(AWAY, "away", lambda u: u.status == Status.AWAY)
        for user_id in (DND, INVISIBLE):
            self.client.heartbeat(user_id, "tab")

        probes: Dict[str, Probe] = {}
        probes["stubs"] = Probe("stubs", self.server.address, [gen])
        if package is not None:
            probes["package"] = Probe("package", self.server.address,
                                      [package, gen])
        for probe in probes.values():
            self.addCleanup(probe.kill)

        for mode, probe in probes.items():
            with self.subTest(mode=mode, step="unary calls"):
                if mode == "package":
                    self.assertEqual(
                        probe.next("package"),
                        os.path.join(package, "presence_client",
                                     "__init__.py"))
                self.assertEqual(probe.next("heartbeat"),
                                 {"became_online": True})
                presence = probe.next("presence")
                if mode == "stubs":
                    self.assertEqual(presence, [
                        [AWAY, 1, "STATUS_ONLINE", True],
                        [DND, 1, "STATUS_ONLINE", True],
                        [INVISIBLE, 2, "STATUS_OFFLINE", False]])
                else:
                    self.assertEqual(presence, [
                        [AWAY, 1, "ONLINE", True],
                        [DND, 1, "ONLINE", True],
                        [INVISIBLE, 2, "OFFLINE", False]])
                if mode == "stubs":
                    self.assert_rich_fields_kept(probe.next("wire"))
                self.assertEqual(probe.next("online"), [AWAY, DND])
                # The watch's snapshot: the invisible user is not online.
                self.assertEqual(probe.next("ready"), [AWAY, DND, W2])
        if package is None:
            print(f"\nthe old package was not tested: no git history with "
                  f"{OLD_COMMIT} in {SOURCE}", file=sys.stderr)

        # What a plain watch must not see: away, DND, a custom status, and
        # their ends (W2's DND ends by itself meanwhile).
        beat = self.client.heartbeat(W1, "tab")
        self.assertTrue(beat.became_online)
        self.client.set_status(W1, text="Coffee", emoji="\u2615")
        self.wait_for(W1, "away", lambda u: u.status == Status.AWAY)
        self.client.set_status(W1, "dnd", clear=True)
        self.client.heartbeat(W1, "tab")  # activity, while DND
        self.wait_for(W2, "back from DND",
                      lambda u: u.availability == Availability.AUTO)
        self.assertGreater(datetime.datetime.now(datetime.timezone.utc),
                           w2_dnd.availability_until)
        # What it must see, as it knows it.
        self.client.set_status(W1, "invisible")
        self.client.set_status(W1, "auto")
        self.client.mark_offline(W1)
        self.client.heartbeat(SENTINEL)

        for mode, probe in probes.items():
            with self.subTest(mode=mode, step="watch"):
                changes = []
                while True:
                    change = probe.next("change")
                    if mode == "package":  # the package's own names
                        change[2] = "STATUS_" + change[2]
                        change[4] = "REASON_" + change[4]
                    changes.append(change)
                    if change[0] == SENTINEL:
                        break
                self.assertEqual(changes, EXPECTED_CHANGES)
                self.assertIs(probe.next("done"), True)
                probe.finish()

    def assert_rich_fields_kept(self, wire: str) -> None:
        """The old client's copy of the GetPresence answer, read with
        today's proto: the fields it did not know were received and kept."""
        response = pb.GetPresenceResponse.FromString(base64.b64decode(wire))
        dnd = next(u for u in response.users if u.user_id == DND)
        self.assertEqual(dnd.availability, pb.AVAILABILITY_DND)
        self.assertEqual((dnd.custom_status.text, dnd.custom_status.emoji),
                         ("Focus", ":x:"))
        invisible = next(u for u in response.users
                         if u.user_id == INVISIBLE)
        self.assertEqual(invisible.availability, pb.AVAILABILITY_AUTO)
        self.assertFalse(invisible.HasField("custom_status"))


if __name__ == "__main__":
    unittest.main()
