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
from presence_client import (DeadlineExceeded, HeartbeatResult,
                             InvalidArgument, PresenceChange, PresenceClient,
                             PresenceError, Reason, Snapshot, Status,
                             Unavailable)
from presence_client._proto import pb
from presence_client.model import watch_events
from presenced import Presenced, Proxy, SilentServer, closed_port_address

WAIT = 30  # seconds: the longest any expected event may take
WATCH_METHOD = "/presence.v1.PresenceService/WatchPresence"


class WatchRecorder:
    """Runs a PresenceWatch on a thread and queues what it yields, what
    ends its streams (on_disconnect) and how it ends."""

    def __init__(self, client: PresenceClient, user_ids: List[int],
                 **watch_options) -> None:
        self.entries: "queue.Queue[tuple]" = queue.Queue()
        self.disconnects: List[tuple] = []
        self.watch = client.watch(
            user_ids, initial_backoff=0.05, max_backoff=0.5,
            on_disconnect=lambda error, retry_in: self.entries.put(
                ("disconnect", error, retry_in)), **watch_options)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for event in self.watch:
                self.entries.put(("event", event))
            self.entries.put(("end",))
        except Exception as error:  # handed to the test's thread
            self.entries.put(("error", error))

    def next_entry(self, timeout: float = WAIT) -> tuple:
        try:
            return self.entries.get(timeout=max(timeout, 0))
        except queue.Empty:
            raise AssertionError(
                f"the watch yielded nothing for {timeout:.1f} s") from None

    def next_event(self, timeout: float = WAIT):
        """The next Snapshot or PresenceChange, within `timeout` seconds;
        disconnects are recorded."""
        deadline = time.monotonic() + timeout
        while True:
            entry = self.next_entry(deadline - time.monotonic())
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


class RecordingChannel:
    """A grpc.Channel that records WatchPresence's requests and every
    message its streams receive, to see what went over the wire."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel
        self.requests: list = []
        self.messages: list = []

    def unary_stream(self, method, *args, **kwargs):
        call = self._channel.unary_stream(method, *args, **kwargs)
        if method != WATCH_METHOD:
            return call

        def watch(request, *call_args, **call_kwargs):
            self.requests.append(request)
            return _RecordedStream(call(request, *call_args, **call_kwargs),
                                   self.messages)
        return watch

    def __getattr__(self, name):
        return getattr(self._channel, name)


class _RecordedStream:
    def __init__(self, call, messages: list) -> None:
        self._call = call
        self._messages = messages

    def __iter__(self):
        return self

    def __next__(self):
        message = next(self._call)
        self._messages.append(message)
        return message

    def cancel(self) -> None:
        self._call.cancel()


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__()
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class _ScriptedStream:
    """Its messages, then its error (or the end of the stream)."""

    def __init__(self, messages: list, error: Optional[Exception]) -> None:
        self._messages = iter(messages)
        self._error = error

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._messages)
        except StopIteration:
            if self._error is not None:
                raise self._error
            raise

    def cancel(self) -> None:
        pass


class ScriptedChannel:
    """A grpc.Channel whose WatchPresence calls answer with `streams` in
    turn, each (messages, error), recording their requests. Other calls
    fail the test."""

    def __init__(self, streams: list) -> None:
        self._streams = list(streams)
        self.requests: list = []

    def _watch(self, request, *args, **kwargs):
        self.requests.append(request)
        if not self._streams:
            raise AssertionError("a WatchPresence call beyond the script")
        return _ScriptedStream(*self._streams.pop(0))

    @staticmethod
    def _unexpected(*args, **kwargs):
        raise AssertionError("only WatchPresence is scripted")

    def unary_stream(self, method, *args, **kwargs):
        return self._watch if method == WATCH_METHOD else self._unexpected

    def unary_unary(self, *args, **kwargs):
        return self._unexpected

    def close(self) -> None:
        pass


def snapshot_message(epoch: str, sequence: int, online: List[int]):
    return pb.WatchPresenceResponse(
        epoch=epoch, sequence=sequence,
        snapshot=pb.Snapshot(online_users=online))


def change_message(epoch: str, user_id: int, sequence: int,
                   own_sequence: bool = True):
    """The single form; without `own_sequence` as an older presenced sends
    it."""
    return pb.WatchPresenceResponse(
        epoch=epoch, sequence=sequence,
        change=pb.PresenceChange(
            user_id=user_id, status=pb.STATUS_ONLINE,
            reason=pb.REASON_HEARTBEAT,
            sequence=sequence if own_sequence else 0))


def batch_message(epoch: str, changes: List[tuple]):
    """A ChangeBatch of (user_id, sequence), oldest first."""
    return pb.WatchPresenceResponse(
        epoch=epoch, sequence=changes[-1][1],
        changes=pb.ChangeBatch(changes=[
            pb.PresenceChange(user_id=user_id, status=pb.STATUS_OFFLINE,
                              reason=pb.REASON_EXPIRED, sequence=sequence)
            for user_id, sequence in changes]))


class WatchMessagesTest(unittest.TestCase):
    """PresenceWatch over scripted streams: what it makes of each form of
    message, and where it resumes."""

    def watch(self, streams: list, **kwargs):
        channel = ScriptedChannel(streams)
        client = PresenceClient.from_channel(channel)
        disconnects: List[tuple] = []
        watch = client.watch(
            initial_backoff=0.001, max_backoff=0.001,
            on_disconnect=lambda error, retry_in: disconnects.append(
                (error, watch.sequence)),
            **kwargs)
        self.addCleanup(watch.close)
        return watch, channel, disconnects

    def test_each_change_of_a_batch_once_in_order(self) -> None:
        watch, channel, _ = self.watch([([
            snapshot_message("e1", 4, [1]),
            batch_message("e1", [(1, 5), (2, 6), (3, 7)]),
            change_message("e1", 9, 8),
        ], None)])
        events = [next(watch) for _ in range(5)]
        self.assertIsInstance(events[0], Snapshot)
        self.assertEqual([(e.user_id, e.sequence) for e in events[1:]],
                         [(1, 5), (2, 6), (3, 7), (9, 8)])
        self.assertEqual(events[1].status, Status.OFFLINE)
        self.assertEqual(events[1].reason, Reason.EXPIRED)
        self.assertEqual({e.epoch for e in events}, {"e1"})
        self.assertEqual((watch.epoch, watch.sequence), ("e1", 8))
        self.assertEqual(len(channel.requests), 1)
        self.assertEqual(channel.requests[0].max_batch, 1000)
        self.assertTrue(channel.requests[0].send_snapshot)

    def test_old_single_changes_take_the_messages_sequence(self) -> None:
        watch, channel, _ = self.watch([([
            snapshot_message("e1", 10, []),
            change_message("e1", 5, 11, own_sequence=False),
            change_message("e1", 6, 12, own_sequence=False),
        ], None)], max_batch=0)
        events = [next(watch) for _ in range(3)]
        self.assertEqual([(e.user_id, e.sequence) for e in events[1:]],
                         [(5, 11), (6, 12)])
        self.assertEqual(channel.requests[0].max_batch, 0)

    def test_a_break_after_a_batch_loses_none_of_it(self) -> None:
        unavailable = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "cut")
        watch, channel, disconnects = self.watch([
            ([snapshot_message("e1", 10, []),
              batch_message("e1", [(1, 11), (2, 12), (3, 13)])], unavailable),
            ([batch_message("e1", [(4, 14), (5, 15)])], None),
        ], max_batch=50)
        self.assertIsInstance(next(watch), Snapshot)
        self.assertEqual(next(watch).sequence, 11)
        self.assertEqual((watch.epoch, watch.sequence), ("e1", 11))
        self.assertEqual([next(watch).sequence for _ in range(4)],
                         [12, 13, 14, 15])
        # The break was seen once the batch had been yielded, and the next
        # stream resumed after its last change.
        self.assertEqual([(type(e), at) for e, at in disconnects],
                         [(Unavailable, 13)])
        self.assertEqual(len(channel.requests), 2)
        resumed = channel.requests[1]
        self.assertEqual((resumed.epoch, resumed.resume_after,
                          resumed.send_snapshot, resumed.max_batch),
                         ("e1", 13, False, 50))

    def test_close_ends_the_iteration_with_changes_pending(self) -> None:
        watch, _, _ = self.watch([([
            snapshot_message("e1", 1, []),
            batch_message("e1", [(1, 2), (2, 3)]),
        ], None)])
        next(watch)
        self.assertEqual(next(watch).sequence, 2)
        watch.close()
        with self.assertRaises(StopIteration):
            next(watch)

    def test_max_batch_must_fit_the_field(self) -> None:
        with self.assertRaises(ValueError):
            self.watch([], max_batch=-1)

    def test_watch_events_of_each_kind(self) -> None:
        batch = watch_events(batch_message("e2", [(7, 20), (8, 21)]))
        self.assertEqual([(e.user_id, e.epoch, e.sequence) for e in batch],
                         [(7, "e2", 20), (8, "e2", 21)])
        single = watch_events(change_message("e2", 9, 22))
        self.assertEqual([(e.user_id, e.sequence) for e in single],
                         [(9, 22)])
        self.assertEqual(watch_events(pb.WatchPresenceResponse(sequence=3)),
                         [])  # a kind newer than this client


class PresencedFixture(unittest.TestCase):
    """A real presenced started with FLAGS for each test, and a
    PresenceClient of it (self.server, self.client), both closed after it.
    No tests of its own: test_rich.py builds on it too."""

    FLAGS: List[str] = []

    def setUp(self) -> None:
        self.server = Presenced(self.FLAGS).start()
        self.addCleanup(self.server.close)
        self.client = PresenceClient(self.server.address)
        self.addCleanup(self.client.close)


class PresencedTestCase(PresencedFixture):
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


class BatchHeartbeatTest(PresencedTestCase):
    def test_one_result_per_item_in_request_order(self) -> None:
        results = self.client.batch_heartbeat(
            [5, (7, "laptop"), 0, (7, "phone"), (9, "x" * 129), [5, ""]])
        self.assertEqual(len(results), 6)
        applied = [results[i] for i in (0, 1, 3, 5)]
        for result in applied:
            self.assertIsInstance(result, HeartbeatResult)
            self.assertEqual(result.online_until - result.server_time,
                             datetime.timedelta(minutes=5))
            self.assertEqual(result.heartbeat_interval,
                             datetime.timedelta(minutes=2))
        # Applied in order: the second of a user (or of a session) finds
        # it online.
        self.assertEqual([r.became_online for r in applied],
                         [True, True, False, False])

        # A refused item is returned as its error, not raised, and the
        # others are applied.
        for index, field, message in [
                (2, "user_id", "heartbeats[2].user_id must be > 0, got 0"),
                (4, "session_id", "heartbeats[4].session_id must be at most "
                 "128 bytes, got 129")]:
            with self.subTest(field=field):
                error = results[index]
                self.assertIsInstance(error, InvalidArgument)
                self.assertEqual(error.code, grpc.StatusCode.INVALID_ARGUMENT)
                self.assertEqual(error.message, message)
                self.assertIsNone(error.shard)
        self.assertEqual(self.client.list_online(), [5, 7])
        self.assertEqual(self.client.get_presence([7]).users[0].live_sessions,
                         2)

        self.assertEqual(self.client.batch_heartbeat([]), [])
        again = self.client.batch_heartbeat(iter([(7, "phone")]))
        self.assertFalse(again[0].became_online)

    def test_the_watch_sees_a_batch_come_online(self) -> None:
        recorder = self.record_watch([])
        self.assertEqual(recorder.next_event().online_users, [])
        self.client.batch_heartbeat([3, 1, 0, 2])
        for user_id in (3, 1, 2):
            self.assert_change(recorder.next_event(), user_id, Status.ONLINE,
                               Reason.HEARTBEAT)

    def test_errors_of_the_whole_call_raise(self) -> None:
        # More items than presenced takes in one call (10,000).
        with self.assertRaises(InvalidArgument) as caught:
            self.client.batch_heartbeat(range(1, 10_002))
        self.assertIn("heartbeats has 10001 items", caught.exception.message)
        self.assertEqual(self.client.list_online(), [])
        # Items that are neither a user id nor (user_id, session_id).
        for bad in ("42", (1, 2), (1, "a", "b"), None):
            with self.subTest(item=bad):
                with self.assertRaises(TypeError) as caught:
                    self.client.batch_heartbeat([1, bad])
                self.assertIn(repr(bad), str(caught.exception))
        self.assertEqual(self.client.list_online(), [])


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
            started = time.monotonic()
            with self.assertRaises(DeadlineExceeded):
                client.batch_heartbeat([1, 2], timeout=0.1)
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
            # A batch whose whole call fails raises, unsharded.
            with self.assertRaises(Unavailable):
                client.batch_heartbeat([1, (2, "tab")])

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

    def recording_client(self, proxy: Proxy):
        channel = RecordingChannel(grpc.insecure_channel(
            proxy.address, options=presence_client.CHANNEL_OPTIONS))
        client = PresenceClient.from_channel(channel)
        self.addCleanup(client.close)
        return client, channel

    def test_changes_missed_while_cut_off_come_as_one_batch(self) -> None:
        proxy = Proxy(self.server.address)
        self.addCleanup(proxy.close)
        watching, channel = self.recording_client(proxy)
        # Read on this thread: the test decides when the watch reads.
        watch = watching.watch(initial_backoff=0.05, max_backoff=0.5)
        self.addCleanup(watch.close)
        snapshot = next(watch)
        self.assertIsInstance(snapshot, Snapshot)
        base = snapshot.sequence

        # Five changes while the watcher is cut off: the resumed stream
        # finds them waiting, and presenced sends them in one batch.
        proxy.refuse(True)
        proxy.break_connections()
        for user_id in (60, 61, 62, 63, 64):
            self.client.heartbeat(user_id)
        proxy.refuse(False)
        changes = [next(watch) for _ in range(3)]
        self.assertEqual((watch.epoch, watch.sequence),
                         (snapshot.epoch, base + 3))

        # Cut off again with two of that batch not yet yielded: they still
        # come, then what happened meanwhile, once.
        proxy.refuse(True)
        proxy.break_connections()
        self.client.mark_offline(60)
        self.client.heartbeat(65)
        proxy.refuse(False)
        changes += [next(watch) for _ in range(4)]

        self.assertEqual(
            [(c.user_id, c.status) for c in changes],
            [(60, Status.ONLINE), (61, Status.ONLINE), (62, Status.ONLINE),
             (63, Status.ONLINE), (64, Status.ONLINE), (60, Status.OFFLINE),
             (65, Status.ONLINE)])
        self.assertEqual([(c.epoch, c.sequence) for c in changes],
                         [(snapshot.epoch, base + i) for i in range(1, 8)])
        self.assertEqual((watch.epoch, watch.sequence),
                         (snapshot.epoch, base + 7))

        # On the wire: every request asked for batches; the streams resumed
        # after the snapshot, then after the first batch's last change.
        self.assertTrue(channel.requests[0].send_snapshot)
        self.assertEqual({r.max_batch for r in channel.requests}, {1000})
        resumed = [(r.epoch, r.resume_after) for r in channel.requests[1:]]
        self.assertEqual(sorted(set(resumed)), [(snapshot.epoch, base),
                                                (snapshot.epoch, base + 5)])
        batches = [m for m in channel.messages
                   if m.WhichOneof("event") == "changes"]
        self.assertEqual(
            [[c.sequence for c in m.changes.changes] for m in batches],
            [list(range(base + 1, base + 6)), [base + 6, base + 7]])
        self.assertEqual([m.sequence for m in batches], [base + 5, base + 7])

    def test_max_batch_0_gets_single_changes(self) -> None:
        proxy = Proxy(self.server.address)
        self.addCleanup(proxy.close)
        watching, channel = self.recording_client(proxy)
        watch = watching.watch(initial_backoff=0.05, max_backoff=0.5,
                               max_batch=0)
        self.addCleanup(watch.close)
        snapshot = next(watch)
        proxy.refuse(True)
        proxy.break_connections()
        for user_id in (70, 71, 72):
            self.client.heartbeat(user_id)
        proxy.refuse(False)
        changes = [next(watch) for _ in range(3)]
        self.assertEqual([(c.user_id, c.sequence) for c in changes],
                         [(70 + i, snapshot.sequence + 1 + i)
                          for i in range(3)])
        self.assertEqual({r.max_batch for r in channel.requests}, {0})
        self.assertEqual(
            [m.WhichOneof("event") for m in channel.messages],
            ["snapshot", "change", "change", "change"])

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
