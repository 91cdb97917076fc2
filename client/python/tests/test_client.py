"""presence_client against a real presenced (started per test)."""

from __future__ import annotations

import datetime
import json
import os
import queue
import re
import threading
import time
import unittest
from typing import List, Optional

import grpc

import presence_client
from presence_client import (DeadlineExceeded, InvalidArgument,
                             PresenceChange, PresenceClient, PresenceError,
                             Reason, Snapshot, Status, Unavailable)
from presenced import Presenced, Proxy, SilentServer, closed_port_address

WAIT = 30  # seconds: the longest any expected event may take


class WatchRecorder:
    """Runs a PresenceWatch on a thread and queues what it yields, what
    ends its streams (on_disconnect) and how it ends."""

    def __init__(self, client: PresenceClient, user_ids: List[int]) -> None:
        self.entries: "queue.Queue[tuple]" = queue.Queue()
        self.disconnects: List[tuple] = []
        self.watch = client.watch(
            user_ids, initial_backoff=0.05, max_backoff=0.5,
            on_disconnect=lambda error, retry_in: self.entries.put(
                ("disconnect", error, retry_in)))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.watch:
                self.entries.put(("event", event))
            self.entries.put(("end",))
        except Exception as error:  # handed to the test's thread
            self.entries.put(("error", error))

    def next_entry(self) -> tuple:
        try:
            return self.entries.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"the watch yielded nothing for {WAIT} s")

    def next_event(self):
        """The next Snapshot or PresenceChange; disconnects are recorded."""
        while True:
            entry = self.next_entry()
            if entry[0] == "disconnect":
                self.disconnects.append(entry[1:])
                continue
            if entry[0] == "event":
                return entry[1]
            if entry[0] == "error":
                raise entry[1]
            raise AssertionError(f"the watch ended: {entry}")

    def next_disconnect(self) -> tuple:
        entry = self.next_entry()
        if entry[0] != "disconnect":
            raise AssertionError(f"expected a disconnect, got {entry}")
        self.disconnects.append(entry[1:])
        return entry[1:]

    def close(self) -> None:
        self.watch.close()
        self.thread.join(WAIT)
        if self.thread.is_alive():
            raise AssertionError("the watch did not end after close()")


class PresencedTestCase(unittest.TestCase):
    FLAGS: List[str] = []

    def setUp(self) -> None:
        self.server = Presenced(self.FLAGS).start()
        self.addCleanup(self.server.close)
        self.client = PresenceClient(self.server.address)
        self.addCleanup(self.client.close)

    def record_watch(self, user_ids: List[int],
                     client: Optional[PresenceClient] = None) -> WatchRecorder:
        recorder = WatchRecorder(client or self.client, user_ids)
        self.addCleanup(recorder.close)
        return recorder

    def assert_change(self, event, user_id: int, status: Status,
                      reason: Reason) -> PresenceChange:
        self.assertIsInstance(event, PresenceChange)
        self.assertEqual((event.user_id, event.status, event.reason),
                         (user_id, status, reason))
        return event


class UnaryCallsTest(PresencedTestCase):
    def test_heartbeat_makes_user_online_until_the_window_ends(self) -> None:
        first = self.client.heartbeat(42, "tab-1")
        self.assertTrue(first.became_online)
        self.assertEqual(first.online_until - first.server_time,
                         datetime.timedelta(minutes=5))
        self.assertEqual(first.heartbeat_interval,
                         datetime.timedelta(minutes=2))
        self.assertEqual(first.server_time.tzinfo, datetime.timezone.utc)
        second = self.client.heartbeat(42, "tab-1")
        self.assertFalse(second.became_online)
        self.assertGreaterEqual(second.online_until, first.online_until)
        self.assertEqual(self.client.list_online(), [42])

    def test_mark_offline_of_one_session_keeps_the_user_online(self) -> None:
        self.client.heartbeat(7, "laptop")
        self.client.heartbeat(7, "phone")
        ended = self.client.mark_offline(7, "laptop")
        self.assertTrue(ended.still_online)
        self.assertEqual(ended.sessions_ended, 1)
        self.assertEqual(self.client.list_online(), [7])
        again = self.client.mark_offline(7, "laptop")
        self.assertEqual(again.sessions_ended, 0)
        everywhere = self.client.mark_offline(7)
        self.assertFalse(everywhere.still_online)
        self.assertEqual(everywhere.sessions_ended, 1)
        self.assertEqual(self.client.list_online(), [])

    def test_list_online_follows_every_page(self) -> None:
        for user_id in (9, 3, 5, 1, 7, 11, 13):
            self.client.heartbeat(user_id)
        self.assertEqual(self.client.list_online(),
                         [1, 3, 5, 7, 9, 11, 13])
        self.assertEqual(self.client.list_online(page_size=3),
                         [1, 3, 5, 7, 9, 11, 13])
        self.assertEqual(self.client.list_online([13, 2, 5]), [5, 13])

        pages = []
        token = ""
        while True:
            page = self.client.list_online_page(page_size=3, page_token=token)
            self.assertEqual(page.total_online, 7)
            pages.append(page.online_users)
            token = page.next_page_token
            if not token:
                break
        self.assertEqual(pages, [[1, 3, 5], [7, 9, 11], [13]])

    def test_get_presence_in_request_order_keeping_last_seen(self) -> None:
        beat = self.client.heartbeat(5, "tab")
        lookup = self.client.get_presence([5, 6, 5])
        self.assertEqual([u.user_id for u in lookup.users], [5, 6, 5])
        online, never_seen = lookup.users[0], lookup.users[1]
        self.assertTrue(online.online)
        self.assertEqual(online.status, Status.ONLINE)
        self.assertEqual(online.live_sessions, 1)
        self.assertEqual(online.last_seen, beat.server_time)
        self.assertEqual(online.online_until, beat.online_until)
        self.assertEqual(never_seen.status, Status.OFFLINE)
        self.assertIsNone(never_seen.last_seen)
        self.assertIsNone(never_seen.online_until)
        self.assertEqual(never_seen.live_sessions, 0)
        self.assertGreaterEqual(lookup.server_time, beat.server_time)

        ended = self.client.mark_offline(5, "tab")
        gone = self.client.get_presence([5]).users[0]
        self.assertEqual(gone.status, Status.OFFLINE)
        self.assertEqual(gone.last_seen, ended.server_time)
        self.assertIsNone(gone.online_until)

    def test_invalid_arguments_raise_invalid_argument(self) -> None:
        with self.assertRaises(InvalidArgument) as caught:
            self.client.heartbeat(0)
        self.assertIsInstance(caught.exception, PresenceError)
        self.assertEqual(caught.exception.code,
                         grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(caught.exception.message,
                         "user_id must be > 0, got 0")
        self.assertIn("user_id must be > 0", str(caught.exception))

        cases = [
            (lambda: self.client.heartbeat(1, "x" * 129), "session_id"),
            (lambda: self.client.mark_offline(-3), "user_id"),
            (lambda: self.client.get_presence([1, -5]),
             "user_ids[1] must be > 0, got -5"),
            (lambda: self.client.list_online([0]), "user_ids[0]"),
            (lambda: self.client.list_online_page(page_size=-1), "page_size"),
            (lambda: self.client.list_online_page(page_token="bogus"),
             "page_token"),
        ]
        for call, field in cases:
            with self.subTest(field=field):
                with self.assertRaises(InvalidArgument) as caught:
                    call()
                self.assertIn(field, caught.exception.message)


class ConnectionErrorsTest(unittest.TestCase):
    def test_default_deadline_ends_a_call_to_a_silent_server(self) -> None:
        silent = SilentServer()
        self.addCleanup(silent.close)
        with PresenceClient(silent.address, timeout=1.0) as client:
            started = time.monotonic()
            with self.assertRaises(DeadlineExceeded) as caught:
                client.heartbeat(1)
            elapsed = time.monotonic() - started
            self.assertEqual(caught.exception.code,
                             grpc.StatusCode.DEADLINE_EXCEEDED)
            self.assertGreaterEqual(elapsed, 0.95)
            self.assertLess(elapsed, 5)
            # A per-call timeout overrides the client's.
            started = time.monotonic()
            with self.assertRaises(DeadlineExceeded):
                client.list_online(timeout=0.1)
            self.assertLess(time.monotonic() - started, 0.9)

    def test_default_deadline_is_five_seconds(self) -> None:
        client = PresenceClient(closed_port_address())
        self.addCleanup(client.close)
        self.assertEqual(client.timeout, 5.0)

    def test_unreachable_server_raises_unavailable(self) -> None:
        with PresenceClient(closed_port_address(), timeout=10) as client:
            with self.assertRaises(Unavailable) as caught:
                client.get_presence([1])
            self.assertEqual(caught.exception.code,
                             grpc.StatusCode.UNAVAILABLE)

    def test_service_config_matches_the_cpp_client(self) -> None:
        # The installed-package test runs a copy of this file elsewhere.
        source = os.environ.get("PRESENCE_CPP_CLIENT_SOURCE") or os.path.join(
            os.path.dirname(__file__), "..", "..", "client.cc")
        with open(source) as f:
            cpp = re.search(r'R"json\((.*?)\)json"', f.read(), re.S)
        self.assertIsNotNone(cpp, "kServiceConfig not found in client.cc")
        self.assertEqual(json.loads(presence_client.SERVICE_CONFIG),
                         json.loads(cpp.group(1)))


class WatchTest(PresencedTestCase):
    def test_snapshot_then_one_change_per_transition(self) -> None:
        self.client.heartbeat(10)
        recorder = self.record_watch([10, 11])
        snapshot = recorder.next_event()
        self.assertIsInstance(snapshot, Snapshot)
        self.assertEqual(snapshot.online_users, [10])
        self.assertTrue(snapshot.epoch)

        beat = self.client.heartbeat(11, "tab")
        self.client.heartbeat(11, "tab")  # already online: no event
        self.client.heartbeat(12)  # not watched
        self.client.mark_offline(10)
        online = self.assert_change(recorder.next_event(), 11, Status.ONLINE,
                                    Reason.HEARTBEAT)
        self.assertEqual(online.at, beat.server_time)
        offline = self.assert_change(recorder.next_event(), 10,
                                     Status.OFFLINE, Reason.MARK_OFFLINE)
        self.assertEqual(offline.epoch, snapshot.epoch)
        self.assertGreater(offline.sequence, online.sequence)
        self.assertGreater(online.sequence, snapshot.sequence)
        self.assertEqual((recorder.watch.epoch, recorder.watch.sequence),
                         (offline.epoch, offline.sequence))

    def test_resumes_without_a_gap_after_a_broken_stream(self) -> None:
        proxy = Proxy(self.server.address)
        self.addCleanup(proxy.close)
        watching = PresenceClient(proxy.address)
        self.addCleanup(watching.close)
        recorder = self.record_watch([], client=watching)
        snapshot = recorder.next_event()
        self.assertEqual(snapshot.online_users, [])
        self.client.heartbeat(20)
        first = self.assert_change(recorder.next_event(), 20, Status.ONLINE,
                                   Reason.HEARTBEAT)

        proxy.refuse(True)
        proxy.break_connections()
        error, retry_in = recorder.next_disconnect()
        self.assertIsInstance(error, Unavailable)
        self.assertIsNotNone(retry_in)
        # Changes while the watcher is cut off.
        self.client.heartbeat(21)
        self.client.mark_offline(20)
        proxy.refuse(False)

        # Replayed from presenced's ring: same epoch, no snapshot, no gap.
        replayed = [recorder.next_event(), recorder.next_event()]
        self.assert_change(replayed[0], 21, Status.ONLINE, Reason.HEARTBEAT)
        self.assert_change(replayed[1], 20, Status.OFFLINE,
                           Reason.MARK_OFFLINE)
        self.assertEqual([(e.epoch, e.sequence) for e in replayed],
                         [(first.epoch, first.sequence + 1),
                          (first.epoch, first.sequence + 2)])

    def test_fresh_snapshot_after_presenced_restarts(self) -> None:
        recorder = self.record_watch([])
        before = recorder.next_event()
        self.assertIsInstance(before, Snapshot)
        self.client.heartbeat(30, "tab")
        self.assert_change(recorder.next_event(), 30, Status.ONLINE,
                           Reason.HEARTBEAT)

        self.server.restart()  # same address and database, a new epoch
        after = recorder.next_event()
        self.assertIsInstance(after, Snapshot)
        self.assertNotEqual(after.epoch, before.epoch)
        self.assertEqual(after.online_users, [30])  # the session persisted
        # The stream ended (UNAVAILABLE on shutdown), then attempts failed
        # while presenced was down: each reported with a retry.
        self.assertTrue(recorder.disconnects)
        for error, retry_in in recorder.disconnects:
            self.assertIsInstance(error, PresenceError)
            self.assertIsNotNone(retry_in)

        self.client.heartbeat(31)
        change = self.assert_change(recorder.next_event(), 31, Status.ONLINE,
                                    Reason.HEARTBEAT)
        self.assertEqual((change.epoch, change.sequence),
                         (after.epoch, after.sequence + 1))

    def test_invalid_watch_raises_and_ends(self) -> None:
        recorder = self.record_watch([1, 0])
        entry = recorder.next_entry()
        self.assertEqual(entry[0], "disconnect")
        self.assertIsInstance(entry[1], InvalidArgument)
        self.assertIsNone(entry[2])  # no retry
        entry = recorder.next_entry()
        self.assertEqual(entry[0], "error")
        self.assertIsInstance(entry[1], InvalidArgument)
        self.assertIn("user_ids[1]", entry[1].message)

    def test_close_ends_the_iteration(self) -> None:
        recorder = WatchRecorder(self.client, [])
        self.assertIsInstance(recorder.next_event(), Snapshot)
        recorder.close()  # fails if the iterating thread does not end
        self.assertEqual(recorder.next_entry(), ("end",))


class TokenTest(unittest.TestCase):
    """presenced with --auth_tokens_file: the token goes with every call,
    the watch included."""

    TOKEN = "django-3f9c2b7e5a1d4c8f"

    def setUp(self) -> None:
        self.tokens = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                   f"tokens-{os.getpid()}-{id(self)}")
        with open(self.tokens, "w") as f:
            f.write(f"django {self.TOKEN}\n")
        self.addCleanup(os.remove, self.tokens)
        self.server = Presenced(["--auth_tokens_file=" + self.tokens]).start()
        self.addCleanup(self.server.close)

    def client(self, **kwargs) -> PresenceClient:
        client = PresenceClient(self.server.address, **kwargs)
        self.addCleanup(client.close)
        return client

    def test_calls_without_the_token_are_refused(self) -> None:
        with self.assertRaises(presence_client.Unauthenticated) as refused:
            self.client(token="").heartbeat(42)
        self.assertIn("authorization: Bearer TOKEN", refused.exception.message)
        with self.assertRaises(presence_client.Unauthenticated):
            self.client(token="not-the-token-123456").list_online()

    def test_the_token_goes_with_every_call_and_the_watch(self) -> None:
        client = self.client(token=self.TOKEN)
        self.assertTrue(client.heartbeat(42).became_online)
        self.assertEqual(client.list_online(), [42])
        with client.watch() as watch:
            snapshot = next(watch)
            self.assertIsInstance(snapshot, presence_client.Snapshot)
            self.assertEqual(snapshot.online_users, [42])

    def test_the_token_comes_from_the_environment(self) -> None:
        os.environ["PRESENCE_TOKEN"] = self.TOKEN
        self.addCleanup(os.environ.pop, "PRESENCE_TOKEN")
        self.assertEqual(self.client().list_online(), [])


class ExpiryTest(PresencedTestCase):
    FLAGS = ["--online_window=2s", "--heartbeat_interval=1s"]

    def test_watch_sees_expiry_at_the_end_of_the_window(self) -> None:
        recorder = self.record_watch([50])
        self.assertEqual(recorder.next_event().online_users, [])
        beat = self.client.heartbeat(50)
        self.assertEqual(beat.heartbeat_interval, datetime.timedelta(seconds=1))
        self.assert_change(recorder.next_event(), 50, Status.ONLINE,
                           Reason.HEARTBEAT)
        expired = self.assert_change(recorder.next_event(), 50,
                                     Status.OFFLINE, Reason.EXPIRED)
        self.assertEqual(expired.at, beat.online_until)
        self.assertEqual(self.client.list_online(), [])


if __name__ == "__main__":
    unittest.main()
