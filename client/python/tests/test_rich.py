"""Rich presence in presence_client (issue 14): heartbeat's idle,
set_status, get_presence's statuses and viewer, rich watches.

First what the client sends and makes of the answers, over channels that
record the requests (no server); then against real presenced processes on
loopback, with short --away_after and status ends, waiting on conditions
(watch events, or GetPresence polled against a deadline), never on fixed
sleeps."""

from __future__ import annotations

import datetime
import threading
import time
import unittest
from typing import Callable, Dict, List, Optional

import grpc
from google.protobuf import timestamp_pb2

from presence_client import (Availability, CustomStatus, FailedPrecondition,
                             HeartbeatResult, InvalidArgument, PresenceChange,
                             PresenceClient, Reason, Snapshot, Status,
                             StatusResult, UserPresence)
from presence_client._proto import pb
from presence_client.model import watch_events
from test_client import (FakeRpcError, PresencedFixture, ScriptedChannel,
                         WatchRecorder)
from test_sharding import FedChannel, NAMES, owner, spec, start_shards

WAIT = 10  # seconds: the longest any expected event may take
UTC = datetime.timezone.utc
SECOND = datetime.timedelta(seconds=1)


def wait_until(test: unittest.TestCase, predicate: Callable[[], object],
               what: str, timeout: float = WAIT):
    """Polls `predicate` until it is true (and returns it), failing the test
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            test.fail(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def ts(moment: datetime.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


# --- no server: requests and answers --------------------------------------


class _Unary:
    """A unary multi-callable of a RecordingUnaryChannel."""

    def __init__(self, channel: "RecordingUnaryChannel", method: str) -> None:
        self._channel = channel
        self._method = method.rsplit("/", 1)[1]

    def __call__(self, request, *args, **kwargs):
        with self._channel.lock:
            self._channel.calls.append((self._method, request))
        return self._channel.answer(self._method, request)

    def future(self, request, *args, **kwargs):
        response = self(request)

        class Done:
            def result(self_inner):
                return response
        return Done()


class RecordingUnaryChannel:
    """A grpc.Channel that records unary calls and answers them with
    `answers[method](request)`."""

    def __init__(self, answers: Dict[str, Callable]) -> None:
        self.answers = answers
        self.calls: List[tuple] = []
        self.lock = threading.Lock()

    def answer(self, method: str, request):
        return self.answers[method](request)

    def unary_unary(self, method, *args, **kwargs):
        return _Unary(self, method)

    def unary_stream(self, *args, **kwargs):
        def unexpected(*call_args, **call_kwargs):
            raise AssertionError("no stream expected")
        return unexpected

    def requests(self, method: str) -> list:
        return [request for name, request in self.calls if name == method]

    def close(self) -> None:
        pass


NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def own_view(request):
    """A SetStatusResponse as presenced might answer `request`."""
    presence = pb.UserPresence(user_id=request.user_id,
                               status=pb.STATUS_DND, live_sessions=2,
                               availability=pb.AVAILABILITY_DND)
    presence.last_seen.CopyFrom(ts(NOW - SECOND))
    presence.online_until.CopyFrom(ts(NOW + 300 * SECOND))
    presence.availability_until.CopyFrom(ts(NOW + 3600 * SECOND))
    presence.custom_status.text = "Focus"
    presence.custom_status.emoji = ":headphones:"
    presence.custom_status.expires_at.CopyFrom(ts(NOW + 60 * SECOND))
    response = pb.SetStatusResponse(presence=presence)
    response.server_time.CopyFrom(ts(NOW))
    return response


def lookup_of(request):
    """A GetPresenceResponse: everyone AWAY, with no availability (as a
    presenced that predates it would send)."""
    response = pb.GetPresenceResponse(users=[
        pb.UserPresence(user_id=user_id, status=pb.STATUS_AWAY,
                        live_sessions=1)
        for user_id in request.user_ids])
    response.server_time.CopyFrom(ts(NOW))
    return response


def beat_of(request):
    response = pb.HeartbeatResponse(became_online=True)
    response.server_time.CopyFrom(ts(NOW))
    response.online_until.CopyFrom(ts(NOW + 300 * SECOND))
    return response


def batch_of(request):
    return pb.BatchHeartbeatResponse(results=[
        pb.BatchHeartbeatResult(heartbeat=beat_of(item))
        for item in request.heartbeats])


ANSWERS = {"SetStatus": own_view, "GetPresence": lookup_of,
           "Heartbeat": beat_of, "BatchHeartbeat": batch_of}


class RequestsTest(unittest.TestCase):
    """What set_status, heartbeat and get_presence send, and what they make
    of the answers."""

    def setUp(self) -> None:
        self.channel = RecordingUnaryChannel(ANSWERS)
        self.client = PresenceClient.from_channel(self.channel)

    def sent(self, method: str):
        requests = self.channel.requests(method)
        self.assertEqual(len(requests), 1, requests)
        return requests[0]

    def test_set_status_with_durations_leaves_the_clock_to_the_server(
            self) -> None:
        result = self.client.set_status(
            7, "dnd", until=datetime.timedelta(minutes=90), text="Focus",
            emoji=":headphones:", expires=datetime.timedelta(hours=1))
        request = self.sent("SetStatus")
        self.assertEqual(request.user_id, 7)
        self.assertEqual(request.availability, pb.AVAILABILITY_DND)
        self.assertEqual(request.WhichOneof("availability_end"),
                         "availability_for")
        self.assertEqual(request.availability_for.ToTimedelta(),
                         datetime.timedelta(minutes=90))
        self.assertEqual((request.custom_status.text,
                          request.custom_status.emoji),
                         ("Focus", ":headphones:"))
        self.assertFalse(request.custom_status.HasField("expires_at"))
        self.assertEqual(request.custom_status_for.ToTimedelta(),
                         datetime.timedelta(hours=1))
        self.assertFalse(request.clear_custom_status)

        self.assertIsInstance(result, StatusResult)
        self.assertEqual(result.server_time, NOW)
        own = result.presence
        self.assertEqual((own.user_id, own.status, own.availability,
                          own.live_sessions),
                         (7, Status.DND, Availability.DND, 2))
        self.assertTrue(own.online)
        self.assertEqual(own.last_seen, NOW - SECOND)
        self.assertEqual(own.online_until, NOW + 300 * SECOND)
        self.assertEqual(own.availability_until, NOW + 3600 * SECOND)
        self.assertEqual(own.custom_status,
                         CustomStatus("Focus", ":headphones:",
                                      NOW + 60 * SECOND))

    def test_set_status_with_moments(self) -> None:
        # Any timezone; sent as the same instant.
        berlin = datetime.timezone(datetime.timedelta(hours=1))
        until = datetime.datetime(2026, 11, 30, 18, 30, 0, 250000,
                                  tzinfo=berlin)
        expires = datetime.datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
        self.client.set_status(8, Availability.INVISIBLE, until=until,
                               emoji="\u2615", expires=expires)
        request = self.sent("SetStatus")
        self.assertEqual(request.availability, pb.AVAILABILITY_INVISIBLE)
        self.assertEqual(request.WhichOneof("availability_end"),
                         "availability_until")
        self.assertEqual(request.availability_until.ToJsonString(),
                         "2026-11-30T17:30:00.250Z")
        self.assertEqual((request.custom_status.text,
                          request.custom_status.emoji), ("", "\u2615"))
        self.assertEqual(request.custom_status.expires_at.ToJsonString(),
                         "2026-11-30T17:00:00Z")
        self.assertFalse(request.HasField("custom_status_for"))

    def test_set_status_sends_only_what_is_given(self) -> None:
        self.client.set_status(9, "AUTO")
        self.client.set_status(9, clear=True)
        self.client.set_status(9, text="Lunch")
        auto, clear, text = self.channel.requests("SetStatus")
        self.assertEqual(auto.availability, pb.AVAILABILITY_AUTO)
        self.assertFalse(auto.HasField("custom_status"))
        self.assertIsNone(auto.WhichOneof("availability_end"))
        self.assertEqual(clear.availability, pb.AVAILABILITY_UNSPECIFIED)
        self.assertTrue(clear.clear_custom_status)
        self.assertFalse(clear.HasField("custom_status"))
        self.assertEqual(text.availability, pb.AVAILABILITY_UNSPECIFIED)
        self.assertEqual((text.custom_status.text, text.custom_status.emoji),
                         ("Lunch", ""))

    def test_bad_arguments_are_refused_before_sending(self) -> None:
        naive = datetime.datetime(2030, 1, 1)
        for kwargs, error, message in (
                (dict(availability="busy"), InvalidArgument,
                 "availability must be 'auto', 'dnd' or 'invisible' (or an "
                 "Availability), got 'busy'"),
                (dict(availability=Availability.UNSPECIFIED),
                 InvalidArgument, "availability must be"),
                (dict(availability=2), InvalidArgument,
                 "availability must be"),
                (dict(availability="dnd", until=naive), InvalidArgument,
                 "until must be a timezone-aware datetime"),
                (dict(text="x", expires=naive), InvalidArgument,
                 "expires must be a timezone-aware datetime"),
                (dict(expires=datetime.timedelta(hours=1)), InvalidArgument,
                 "expires needs text or emoji"),
                (dict(availability="dnd", until="2030-01-01T00:00:00Z"),
                 TypeError, "until must be a datetime or a timedelta"),
                (dict(text=5), TypeError, "text must be a str"),
                (dict(clear="yes"), TypeError, "clear must be a bool"),
                (dict(availability="dnd",
                      until=datetime.timedelta(days=10**8)),
                 InvalidArgument, "until")):
            with self.subTest(**{k: repr(v) for k, v in kwargs.items()}):
                with self.assertRaises(error) as caught:
                    self.client.set_status(1, **kwargs)
                self.assertIn(message, str(caught.exception))
                if error is InvalidArgument:
                    self.assertEqual(caught.exception.code,
                                     grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(self.channel.calls, [])

    def test_heartbeat_idle(self) -> None:
        self.client.heartbeat(3, "tab", idle=True)
        self.client.heartbeat(3, "tab", True)
        self.client.heartbeat(3, "tab")
        self.assertEqual([r.idle for r in self.channel.requests("Heartbeat")],
                         [True, True, False])
        with self.assertRaises(TypeError):
            self.client.heartbeat(3, "tab", idle="false")

        results = self.client.batch_heartbeat(
            [3, (4, "a"), (5, "b", True), [6, "c", False]])
        self.assertTrue(all(isinstance(r, HeartbeatResult) for r in results))
        (batch,) = self.channel.requests("BatchHeartbeat")
        self.assertEqual([(h.user_id, h.session_id, h.idle)
                          for h in batch.heartbeats],
                         [(3, "", False), (4, "a", False), (5, "b", True),
                          (6, "c", False)])
        for bad in ((1, "a", "b"), (1, "a", 1), (1, "a", True, 4)):
            with self.subTest(item=bad):
                with self.assertRaises(TypeError) as caught:
                    self.client.batch_heartbeat([bad])
                self.assertIn(repr(bad), str(caught.exception))

    def test_get_presence_asks_for_rich_status_and_names_the_viewer(
            self) -> None:
        lookup = self.client.get_presence([5, 6], viewer_user_id=6)
        self.client.get_presence([5])
        with_viewer, without = self.channel.requests("GetPresence")
        self.assertTrue(with_viewer.rich_status and without.rich_status)
        self.assertEqual((with_viewer.viewer_user_id,
                          without.viewer_user_id), (6, 0))
        away = lookup.users[0]
        self.assertEqual(away.status, Status.AWAY)
        self.assertEqual(away.status.label, "away")
        self.assertTrue(away.online)
        # None sent (an older presenced): AUTO, no end, no custom status.
        self.assertEqual(away.availability, Availability.AUTO)
        self.assertIsNone(away.availability_until)
        self.assertIsNone(away.custom_status)
        with self.assertRaises(InvalidArgument) as caught:
            self.client.get_presence([5], viewer_user_id=-1)
        self.assertIn("viewer_user_id must be > 0", caught.exception.message)
        with self.assertRaises(TypeError):
            self.client.get_presence([5], viewer_user_id="6")
        self.assertEqual(len(self.channel.requests("GetPresence")), 2)


class ShardedRequestsTest(unittest.TestCase):
    """A sharded client: set_status to the owner, the viewer to its shard
    only."""

    def setUp(self) -> None:
        self.channels = {name: RecordingUnaryChannel(ANSWERS)
                         for name in NAMES}
        self.client = PresenceClient.from_channels(
            ",".join(f"{n}=h:{i}" for i, n in enumerate(NAMES)),
            self.channels)

    def test_set_status_goes_to_the_owner(self) -> None:
        for user_id in range(1, 13):
            result = self.client.set_status(user_id, "dnd")
            self.assertEqual(result.presence.user_id, user_id)
            self.assertEqual(
                [name for name, channel in self.channels.items()
                 if channel.requests("SetStatus")], [owner(user_id)])
            for channel in self.channels.values():
                channel.calls.clear()

    def test_the_viewer_goes_to_its_shard_only(self) -> None:
        ids = list(range(1, 13))
        viewer = 4
        lookup = self.client.get_presence(ids, viewer_user_id=viewer)
        self.assertEqual([u.user_id for u in lookup.users], ids)
        asked = {name: channel.requests("GetPresence")[0]
                 for name, channel in self.channels.items()}
        self.assertEqual(set(asked), set(NAMES))
        for name, request in asked.items():
            with self.subTest(shard=name):
                self.assertTrue(request.rich_status)
                self.assertEqual(request.viewer_user_id,
                                 viewer if name == owner(viewer) else 0)


def rich_change(epoch: str, sequence: int, user_id: int, status: int,
                reason: int, text: str = "",
                dnd_until: Optional[datetime.datetime] = None):
    change = pb.PresenceChange(user_id=user_id, status=status, reason=reason,
                               sequence=sequence)
    if text:
        change.custom_status.text = text
        change.custom_status.emoji = ":x:"
    if dnd_until is not None:
        change.availability_until.CopyFrom(ts(dnd_until))
    return pb.WatchPresenceResponse(epoch=epoch, sequence=sequence,
                                    change=change)


def rich_snapshot(epoch: str, sequence: int, users: List[tuple]):
    """users: (user_id, status, text)."""
    snapshot = pb.Snapshot(online_users=[u for u, _, _ in users])
    for user_id, status, text in users:
        presence = snapshot.users.add(user_id=user_id, status=status,
                                      live_sessions=3,
                                      availability=pb.AVAILABILITY_AUTO)
        presence.last_seen.CopyFrom(ts(NOW))
        if status == pb.STATUS_DND:
            presence.availability = pb.AVAILABILITY_DND
        if text:
            presence.custom_status.text = text
    return pb.WatchPresenceResponse(epoch=epoch, sequence=sequence,
                                    snapshot=snapshot)


class RichWatchMessagesTest(unittest.TestCase):
    """Rich watches over scripted streams: the request, the events, and the
    merge of a sharded watch."""

    def test_the_request_asks_for_rich_status_every_time(self) -> None:
        unavailable = FakeRpcError(grpc.StatusCode.UNAVAILABLE, "cut")
        channel = ScriptedChannel([
            ([rich_snapshot("e1", 1, [(5, pb.STATUS_DND, "Busy")])],
             unavailable),
            ([rich_change("e1", 2, 5, pb.STATUS_AWAY, pb.REASON_ACTIVITY)],
             None)])
        client = PresenceClient.from_channel(channel)
        with client.watch(rich_status=True, initial_backoff=0.001,
                          max_backoff=0.001) as watch:
            snapshot = next(watch)
            change = next(watch)
        self.assertEqual([r.rich_status for r in channel.requests],
                         [True, True])
        self.assertEqual(snapshot.online_users, [5])
        (user,) = snapshot.users
        self.assertEqual((user.user_id, user.status, user.availability,
                          user.custom_status, user.live_sessions),
                         (5, Status.DND, Availability.DND,
                          CustomStatus("Busy"), 3))
        self.assertEqual((change.status, change.reason, change.online),
                         (Status.AWAY, Reason.ACTIVITY, True))
        plain = ScriptedChannel([([rich_snapshot("e1", 1, [])], None)])
        with PresenceClient.from_channel(plain).watch() as watch:
            next(watch)
        self.assertFalse(plain.requests[0].rich_status)

    def test_rich_events(self) -> None:
        until = NOW + 90 * 60 * SECOND
        (dnd,) = watch_events(rich_change(
            "e", 7, 3, pb.STATUS_DND, pb.REASON_STATUS_SET, "Focus", until))
        self.assertEqual((dnd.status, dnd.reason, dnd.availability_until,
                          dnd.custom_status, dnd.sequence),
                         (Status.DND, Reason.STATUS_SET, until,
                          CustomStatus("Focus", ":x:"), 7))
        (ended,) = watch_events(rich_change("e", 8, 3, pb.STATUS_ONLINE,
                                            pb.REASON_STATUS_EXPIRED))
        self.assertEqual((ended.status, ended.reason, ended.custom_status,
                          ended.availability_until),
                         (Status.ONLINE, Reason.STATUS_EXPIRED, None, None))
        # Values newer than this client.
        (future,) = watch_events(rich_change("e", 9, 3, 17, 42))
        self.assertEqual((future.status, future.reason),
                         (Status.UNSPECIFIED, Reason.UNSPECIFIED))
        self.assertFalse(future.online)
        (plain,) = watch_events(rich_snapshot("e", 1, []))
        self.assertEqual(plain.users, [])

    def test_sharded_merge_keeps_away_and_dnd_users_online(self) -> None:
        channels = {"a": FedChannel(), "b": FedChannel()}
        client = PresenceClient.from_channels("a=h:1,b=h:2", channels)
        recorder = WatchRecorder(client, [], rich_status=True)
        self.addCleanup(recorder.close)
        a, b = (channels[n].next_stream() for n in ("a", "b"))
        self.assertTrue(a.request.rich_status and b.request.rich_status)
        a.feed(rich_snapshot("ea", 1, [(1, pb.STATUS_ONLINE, "")]),
               rich_change("ea", 2, 1, pb.STATUS_AWAY, pb.REASON_ACTIVITY),
               rich_change("ea", 3, 3, pb.STATUS_ONLINE, pb.REASON_HEARTBEAT))
        a.drained()
        b.feed(rich_snapshot("eb", 1, [(2, pb.STATUS_DND, "Busy")]))
        first = recorder.next_event()
        self.assertIsInstance(first, Snapshot)
        self.assertEqual(first.online_users, [1, 2, 3])
        self.assertEqual([(u.user_id, u.status) for u in first.users],
                         [(1, Status.AWAY), (2, Status.DND),
                          (3, Status.ONLINE)])
        self.assertEqual(first.users[0].live_sessions, 3)  # a's snapshot
        self.assertEqual(first.users[1].custom_status, CustomStatus("Busy"))
        self.assertEqual(first.users[1].availability, Availability.DND)
        self.assertEqual((first.users[2].live_sessions,
                          first.users[2].online_until), (1, None))

        until = NOW + 60 * SECOND
        b.feed(rich_change("eb", 2, 2, pb.STATUS_DND, pb.REASON_STATUS_SET,
                           "Deep work", until))
        change = recorder.next_event()
        self.assertEqual((change.user_id, change.status, change.shard),
                         (2, Status.DND, "b"))
        a.feed(rich_change("ea", 4, 1, pb.STATUS_OFFLINE, pb.REASON_EXPIRED))
        self.assertEqual(recorder.next_event().status, Status.OFFLINE)
        # b starts over: everyone again; a's users as its changes left them.
        b.feed(rich_snapshot("eb2", 1, [(4, pb.STATUS_ONLINE, "")]))
        again = recorder.next_event()
        self.assertEqual(again.online_users, [3, 4])
        self.assertEqual([(u.user_id, u.status) for u in again.users],
                         [(3, Status.ONLINE), (4, Status.ONLINE)])
        # Before it, b's DND user as the change left it.
        a.feed(rich_change("ea", 5, 3, pb.STATUS_DND, pb.REASON_STATUS_SET,
                           "Deep work", until))
        self.assertEqual(recorder.next_event().user_id, 3)
        a.feed(rich_snapshot("ea2", 1, [(1, pb.STATUS_AWAY, "")]))
        last = recorder.next_event()
        self.assertEqual([(u.user_id, u.status) for u in last.users],
                         [(1, Status.AWAY), (4, Status.ONLINE)])



# --- a real presenced -----------------------------------------------------


class RichPresencedTestCase(PresencedFixture):
    def watch(self, user_ids: List[int], rich: bool) -> WatchRecorder:
        recorder = WatchRecorder(self.client, user_ids, rich_status=rich)
        self.addCleanup(recorder.close)
        first = recorder.next_event()
        self.assertIsInstance(first, Snapshot)
        recorder.snapshot = first
        return recorder

    def seen(self, user_id: int, viewer: Optional[int] = None
             ) -> UserPresence:
        return self.client.get_presence([user_id],
                                        viewer_user_id=viewer).users[0]

    def assert_change(self, recorder: WatchRecorder, user_id: int,
                      status: Status, reason: Reason) -> PresenceChange:
        event = recorder.next_event(WAIT)
        self.assertIsInstance(event, PresenceChange)
        self.assertEqual((event.user_id, event.status, event.reason),
                         (user_id, status, reason))
        return event

    def assert_only_sentinel(self, sentinel: int,
                             *recorders: WatchRecorder) -> None:
        """Brings `sentinel` online and checks it is the next event of each
        recorder: they saw nothing in between."""
        self.client.heartbeat(sentinel)
        for recorder in recorders:
            self.assert_change(recorder, sentinel, Status.ONLINE,
                               Reason.HEARTBEAT)


AWAY_AFTER = datetime.timedelta(milliseconds=500)


class AwayTest(RichPresencedTestCase):
    FLAGS = ["--away_after=500ms"]

    def test_idle_sessions_turn_away_and_activity_comes_back(self) -> None:
        rich = self.watch([1, 2, 9], rich=True)
        plain = self.watch([1, 2, 9], rich=False)
        beat = self.client.heartbeat(1, "tab")
        self.client.batch_heartbeat([(2, "a")])
        for recorder in (rich, plain):
            for user_id in (1, 2):
                self.assert_change(recorder, user_id, Status.ONLINE,
                                   Reason.HEARTBEAT)
        # No heartbeat needed: --away_after passing turns them away.
        away = {}
        for _ in range(2):
            event = rich.next_event(WAIT)
            self.assertEqual((event.status, event.reason),
                             (Status.AWAY, Reason.ACTIVITY))
            away[event.user_id] = event
        self.assertEqual(sorted(away), [1, 2])
        self.assertEqual(away[1].at, beat.server_time + AWAY_AFTER)
        seen = self.seen(1)
        self.assertEqual((seen.status, seen.online, seen.availability),
                         (Status.AWAY, True, Availability.AUTO))
        self.assertEqual(self.client.list_online(), [1, 2])

        # Idle heartbeats keep them online and away.
        self.assertFalse(self.client.heartbeat(1, "tab", idle=True)
                         .became_online)
        self.client.batch_heartbeat([(2, "a", True)])
        self.assertEqual([self.seen(u).status for u in (1, 2)],
                         [Status.AWAY, Status.AWAY])
        # A session's first heartbeat is activity; so is one without idle.
        self.client.heartbeat(1, "phone", idle=True)
        self.client.batch_heartbeat([(2, "a")])
        back = {e.user_id: e for e in (rich.next_event(WAIT),
                                       rich.next_event(WAIT))}
        for user_id in (1, 2):
            self.assertEqual((back[user_id].status, back[user_id].reason),
                             (Status.ONLINE, Reason.ACTIVITY))
            self.assertEqual(self.seen(user_id).status, Status.ONLINE)

        # The plain watch saw none of it, the rich one nothing more.
        self.assert_only_sentinel(9, plain, rich)


class StatusTest(RichPresencedTestCase):
    # Away only after the test: an online user stays ONLINE here.

    def test_dnd_and_custom_status_end_on_time(self) -> None:
        # Both at once: one second of waiting for the two.
        for user_id in (10, 20):
            self.client.heartbeat(user_id, "tab")
        rich = self.watch([10, 20, 11], rich=True)
        plain = self.watch([10, 20, 11], rich=False)
        result = self.client.set_status(10, "dnd", until=SECOND)
        set_custom = self.client.set_status(
            20, text="In a meeting", emoji=":calendar:", expires=SECOND)

        own = result.presence
        self.assertEqual((own.status, own.availability, own.online),
                         (Status.DND, Availability.DND, True))
        self.assertEqual(own.availability_until, result.server_time + SECOND)
        others = self.seen(10)
        self.assertEqual((others.status, others.availability,
                          others.availability_until),
                         (Status.DND, Availability.DND,
                          own.availability_until))
        custom = set_custom.presence.custom_status
        self.assertEqual((custom.text, custom.emoji, custom.expires_at),
                         ("In a meeting", ":calendar:",
                          set_custom.server_time + SECOND))
        self.assertEqual(set_custom.presence.status, Status.ONLINE)
        self.assertEqual(self.seen(20).custom_status, custom)
        self.assertEqual(self.client.list_online(), [10, 20])

        dnd = self.assert_change(rich, 10, Status.DND, Reason.STATUS_SET)
        self.assertEqual(dnd.availability_until, own.availability_until)
        self.assertEqual(dnd.at, result.server_time)
        shown = self.assert_change(rich, 20, Status.ONLINE,
                                   Reason.STATUS_SET)
        self.assertEqual(shown.custom_status, custom)
        self.assertIsNone(shown.availability_until)
        # The ends, in the order they were set.
        ended = self.assert_change(rich, 10, Status.ONLINE,
                                   Reason.STATUS_EXPIRED)
        self.assertEqual(ended.at, own.availability_until)
        self.assertIsNone(ended.availability_until)
        gone = self.assert_change(rich, 20, Status.ONLINE,
                                  Reason.STATUS_EXPIRED)
        self.assertIsNone(gone.custom_status)
        self.assertEqual(gone.at, custom.expires_at)

        after = self.seen(10)
        self.assertEqual((after.status, after.availability,
                          after.availability_until),
                         (Status.ONLINE, Availability.AUTO, None))
        self.assertIsNone(self.seen(20).custom_status)
        self.assert_only_sentinel(11, plain, rich)

    def test_dnd_of_an_offline_user_shows_once_online(self) -> None:
        until = datetime.datetime.now(UTC).replace(microsecond=0) + \
            datetime.timedelta(hours=1)
        result = self.client.set_status(12, Availability.DND, until=until)
        self.assertEqual((result.presence.status,
                          result.presence.availability,
                          result.presence.availability_until),
                         (Status.OFFLINE, Availability.DND, until))
        self.assertEqual(self.seen(12).status, Status.OFFLINE)
        self.client.heartbeat(12)
        self.assertEqual(self.seen(12).status, Status.DND)
        # Back to AUTO before its end.
        result = self.client.set_status(12, "auto")
        self.assertEqual((result.presence.status,
                          result.presence.availability,
                          result.presence.availability_until),
                         (Status.ONLINE, Availability.AUTO, None))

    def test_custom_status_replaced_and_cleared(self) -> None:
        self.client.heartbeat(22)
        later = datetime.datetime.now(UTC).replace(microsecond=0) + \
            datetime.timedelta(hours=2)
        first = self.client.set_status(22, text="Lunch", emoji="\u2615",
                                       expires=later).presence
        self.assertEqual(first.custom_status,
                         CustomStatus("Lunch", "\u2615", later))
        # Replaced whole: the emoji not given is empty, no expiry.
        second = self.client.set_status(22, text="Back soon").presence
        self.assertEqual(second.custom_status, CustomStatus("Back soon"))
        # One emoji grapheme of several code points.
        thumbs = "\U0001F44D\U0001F3FD"
        third = self.client.set_status(22, emoji=thumbs).presence
        self.assertEqual(third.custom_status, CustomStatus("", thumbs))
        self.assertEqual(self.seen(22, viewer=5).custom_status,
                         CustomStatus("", thumbs))
        cleared = self.client.set_status(22, clear=True).presence
        self.assertIsNone(cleared.custom_status)
        self.assertIsNone(self.seen(22).custom_status)

    def test_invisible_is_offline_to_others_and_the_truth_to_oneself(
            self) -> None:
        self.client.heartbeat(30, "tab")
        rich = self.watch([30, 31], rich=True)
        plain = self.watch([30, 31], rich=False)
        result = self.client.set_status(30, "invisible", text="Hiding",
                                        emoji=":ghost:")
        own = result.presence
        self.assertEqual((own.status, own.availability, own.live_sessions),
                         (Status.ONLINE, Availability.INVISIBLE, 1))
        self.assertEqual(own.custom_status, CustomStatus("Hiding",
                                                         ":ghost:"))
        self.assert_change(plain, 30, Status.OFFLINE, Reason.MARK_OFFLINE)
        self.assert_change(rich, 30, Status.OFFLINE, Reason.STATUS_SET)

        for viewer in (None, 31):
            with self.subTest(viewer=viewer):
                others = self.seen(30, viewer)
                self.assertEqual(
                    (others.status, others.online, others.availability,
                     others.availability_until, others.custom_status,
                     others.online_until),
                    (Status.OFFLINE, False, Availability.AUTO, None, None,
                     None))
        self.assertEqual(self.client.list_online(), [])
        hidden_seen = self.seen(30).last_seen
        # Seen again while invisible: the truth to themself only.
        beat = self.client.heartbeat(30, "tab")
        self.assertEqual(self.seen(30).last_seen, hidden_seen,
                         "others' last_seen moved while invisible: it shows "
                         "that the user was active")
        truth = self.seen(30, viewer=30)
        self.assertEqual((truth.status, truth.availability, truth.last_seen,
                          truth.custom_status),
                         (Status.ONLINE, Availability.INVISIBLE,
                          beat.server_time, own.custom_status))

        visible = self.client.set_status(30, "auto").presence
        self.assertEqual(visible.status, Status.ONLINE)
        self.assert_change(plain, 30, Status.ONLINE, Reason.HEARTBEAT)
        back = self.assert_change(rich, 30, Status.ONLINE, Reason.STATUS_SET)
        self.assertEqual(back.custom_status, own.custom_status)
        self.assertEqual(self.client.list_online(), [30])
        self.assert_only_sentinel(31, plain, rich)

    def test_rich_snapshot_carries_each_online_users_presence(self) -> None:
        for user_id in (40, 41, 42):
            self.client.heartbeat(user_id)
        self.client.set_status(41, "dnd", text="Focus")
        self.client.set_status(42, "invisible")
        rich = self.watch([], rich=True)
        plain = self.watch([], rich=False)
        self.assertEqual(rich.snapshot.online_users, [40, 41])
        self.assertEqual(plain.snapshot.online_users, [40, 41])
        self.assertEqual(plain.snapshot.users, [])
        self.assertEqual([(u.user_id, u.status, u.availability,
                           u.custom_status) for u in rich.snapshot.users],
                         [(40, Status.ONLINE, Availability.AUTO, None),
                          (41, Status.DND, Availability.DND,
                           CustomStatus("Focus"))])

    def test_status_survives_a_restart(self) -> None:
        self.client.heartbeat(50)
        until = datetime.datetime.now(UTC).replace(microsecond=0) + \
            datetime.timedelta(hours=1)
        set_ = self.client.set_status(50, "dnd", until=until, text="Away",
                                      emoji=":palm_tree:").presence
        self.server.restart()
        again = self.seen(50)
        self.assertEqual((again.status, again.availability,
                          again.availability_until, again.custom_status),
                         (Status.DND, Availability.DND, until,
                          set_.custom_status))

    def test_invalid_arguments(self) -> None:
        past = datetime.datetime.now(UTC) - datetime.timedelta(minutes=1)
        for name, kwargs, message in (
                ("user id", dict(user_id=0, availability="dnd"),
                 "user_id must be > 0, got 0"),
                ("nothing", dict(user_id=1), "the request sets nothing"),
                ("long text", dict(user_id=1, text="x" * 101),
                 "custom_status.text must be at most 100 characters"),
                ("bad emoji", dict(user_id=1, emoji="coffee"),
                 "custom_status.emoji must be a short code"),
                ("two graphemes", dict(user_id=1, emoji="\u2615\u2615"),
                 "custom_status.emoji must be"),
                ("past until", dict(user_id=1, availability="dnd",
                                    until=past), "the availability's end"),
                ("negative for", dict(user_id=1, availability="dnd",
                                      until=-SECOND),
                 "availability_for must be positive"),
                ("end of auto", dict(user_id=1, availability="auto",
                                     until=SECOND), "AUTO has no end"),
                ("past expiry", dict(user_id=1, text="x", expires=past),
                 "the custom status's expiry"),
                ("clear and text", dict(user_id=1, text="x", clear=True),
                 "exclude each other")):
            with self.subTest(name):
                with self.assertRaises(InvalidArgument) as caught:
                    self.client.set_status(**kwargs)
                self.assertIn(message, caught.exception.message)
        # 100 characters (not bytes) is the limit.
        text = "\u00e9" * 100
        self.assertEqual(self.client.set_status(1, text=text).presence
                         .custom_status.text, text)
        # Hidden from others while offline; there, without an expiry.
        self.assertIsNone(self.seen(1).custom_status)
        self.assertIsNone(self.seen(1, viewer=1).custom_status.expires_at)


class ShardedRichTest(unittest.TestCase):
    """set_status and the viewer routed over three real shards, and a
    merged rich watch."""

    def setUp(self) -> None:
        self.servers = start_shards()
        for server in self.servers:
            self.addCleanup(server.close)
        self.client = PresenceClient(spec(self.servers))
        self.addCleanup(self.client.close)

    def test_set_status_and_own_view_across_shards(self) -> None:
        users = {}
        for user_id in range(1, 40):
            users.setdefault(owner(user_id), user_id)
            if len(users) == len(NAMES):
                break
        recorder = WatchRecorder(self.client, [], rich_status=True)
        self.addCleanup(recorder.close)
        self.assertEqual(recorder.next_event().online_users, [])
        ids = [users[name] for name in NAMES]
        for user_id in ids:
            self.client.heartbeat(user_id)
            self.assertEqual(recorder.next_event().user_id, user_id)
            own = self.client.set_status(user_id, "invisible",
                                         text=f"user {user_id}").presence
            self.assertEqual((own.user_id, own.availability),
                             (user_id, Availability.INVISIBLE))
            change = recorder.next_event()
            self.assertEqual((change.user_id, change.status, change.reason,
                              change.shard),
                             (user_id, Status.OFFLINE, Reason.STATUS_SET,
                              owner(user_id)))
        for viewer in ids:
            lookup = self.client.get_presence(ids, viewer_user_id=viewer)
            self.assertEqual(
                [(u.user_id, u.status, u.availability) for u in lookup.users],
                [(u, Status.ONLINE, Availability.INVISIBLE) if u == viewer
                 else (u, Status.OFFLINE, Availability.AUTO) for u in ids])
        dnd = self.client.set_status(ids[1], "dnd").presence
        self.assertEqual(dnd.status, Status.DND)
        change = recorder.next_event()
        self.assertEqual((change.user_id, change.status, change.online),
                         (ids[1], Status.DND, True))

        # A shard that does not own the user refuses, naming its owner.
        other = next(s for n, s in zip(NAMES, self.servers)
                     if n != owner(ids[0]))
        with PresenceClient(other.address) as direct:
            with self.assertRaises(FailedPrecondition) as caught:
                direct.set_status(ids[0], "dnd")
        self.assertIn(owner(ids[0]), caught.exception.message)


if __name__ == "__main__":
    unittest.main()
