"""Scale-out in presence_client: the shard map (against the test vectors the
C++ library checks too), and a sharded PresenceClient against three real
presenced shards (--shard=sN --shards=s0,s1,s2) on loopback."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import queue
import threading
import time
import unittest
from typing import Dict, List, Optional, Set

import grpc

import presence_client
from presence_client import (FailedPrecondition, HeartbeatResult,
                             InvalidArgument, OnlineUsers, PresenceChange,
                             PresenceClient, Reason, ShardedWatch, ShardMap,
                             Snapshot, Status, Unavailable)
from presence_client._proto import pb
from presence_client.sharded import (decode_sharded_token,
                                     server_page_token, sharded_page_token)
from presence_client.shards import shard_name_hash, shard_weight
from presenced import Presenced
from test_client import FakeRpcError, WatchRecorder

WAIT = 30  # seconds: the longest any expected event may take
NAMES = ("s0", "s1", "s2")
USERS = 30_000
VECTORS = os.environ.get("SHARD_VECTORS") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests",
    "testdata", "shard_vectors.txt")


class ShardMapTest(unittest.TestCase):
    def test_agrees_with_the_shared_test_vectors(self) -> None:
        checked = 0
        with open(VECTORS) as f:
            for line in f:
                line = line.rstrip("\n")
                if not line or line.startswith("#"):
                    continue
                fields = line.split(" ")
                name = "" if fields[1] == "-" else fields[1]
                with self.subTest(line=line):
                    if fields[0] == "hash":
                        self.assertEqual(len(fields), 3)
                        self.assertEqual(f"{shard_name_hash(name):016x}",
                                         fields[2])
                    elif fields[0] == "weight":
                        self.assertEqual(len(fields), 4)
                        weight = shard_weight(shard_name_hash(name),
                                              int(fields[2]))
                        self.assertEqual(f"{weight:016x}", fields[3])
                    else:
                        self.assertEqual(fields[0], "owner")
                        self.assertEqual(len(fields), 4)
                        shard_map = ShardMap.parse_names(fields[1])
                        self.assertEqual(
                            shard_map.owner(int(fields[2])).name, fields[3])
                checked += 1
        self.assertGreater(checked, 100)

    def test_a_plain_target_is_one_unsharded_server(self) -> None:
        shard_map = ShardMap.parse(" 127.0.0.1:50051 ")
        self.assertFalse(shard_map.sharded)
        self.assertEqual(len(shard_map), 1)
        self.assertEqual(shard_map.shards[0].target, "127.0.0.1:50051")
        self.assertEqual(shard_map.owner_index(42), 0)
        self.assertEqual(str(shard_map), "127.0.0.1:50051")
        self.assertFalse(ShardMap.parse("dns:///presenced.example:50051")
                         .sharded)
        client = PresenceClient("127.0.0.1:1")
        self.addCleanup(client.close)
        self.assertFalse(client.sharded)
        self.assertIs(client.channels[""], client.channel)

    def test_names_with_addresses(self) -> None:
        shard_map = ShardMap.parse("s0=127.0.0.1:1, s1 = [::1]:2,s2=dns:///h:3")
        self.assertTrue(shard_map.sharded)
        self.assertEqual([s.name for s in shard_map.shards],
                         ["s0", "s1", "s2"])
        self.assertEqual(shard_map.shards[1].target, "[::1]:2")
        self.assertEqual(shard_map.index_of("s2"), 2)
        self.assertIsNone(shard_map.index_of("s3"))
        self.assertEqual(str(shard_map),
                         "s0=127.0.0.1:1,s1=[::1]:2,s2=dns:///h:3")
        # The client takes the same string, and a ShardMap.
        for target in (str(shard_map), shard_map):
            client = PresenceClient(target)
            self.addCleanup(client.close)
            self.assertTrue(client.sharded)
            self.assertEqual(sorted(client.channels), ["s0", "s1", "s2"])
            with self.assertRaises(ValueError):
                client.channel  # one per shard

    def test_a_statefulset_dns_pattern(self) -> None:
        shard_map = ShardMap.parse("presenced-{0..2}.presenced.chat.svc:50051")
        self.assertEqual([s.name for s in shard_map.shards],
                         ["presenced-0", "presenced-1", "presenced-2"])
        self.assertEqual(shard_map.shards[2].target,
                         "presenced-2.presenced.chat.svc:50051")

    def test_owner_does_not_depend_on_the_order_shards_are_listed(self) -> None:
        a = ShardMap.parse_names("x,y,z")
        b = ShardMap.parse_names("z,x,y")
        for user_id in range(-500, 501):
            self.assertEqual(a.owner(user_id).name, b.owner(user_id).name)

    def test_spreads_users_evenly(self) -> None:
        shard_map = ShardMap.parse_names("presenced-{0..2}")
        counts = [0, 0, 0]
        for user_id in range(1, 30_001):
            counts[shard_map.owner_index(user_id)] += 1
        for count in counts:
            self.assertGreater(count, 9_000)
            self.assertLess(count, 11_000)

    def test_rejects_what_cannot_be_a_shard_map_with_a_reason(self) -> None:
        for spec, says in [
                ("", "no address"),
                ("a=h:1,b", "NAME=HOST:PORT"),
                ("a=h:1,a=h:2", "named twice"),
                ("=h:1", "a name is 1 to 63"),
                ("a b=h:1", "a name is 1 to 63"),
                ("p-{2..0}.x:1", "FIRST <= LAST"),
                ("p-{0..x}.x:1", "FIRST..LAST"),
                ("p-{0..1}-{0..1}.x:1", "one range"),
                ("p-{0..5000}.x:1", "at most 1024"),
                ("127.0.0.1:{1..3}", "host's first label")]:
            with self.subTest(spec=spec):
                with self.assertRaises(ValueError) as caught:
                    ShardMap.parse(spec)
                self.assertIn(says, str(caught.exception))
                # The client says the same when it is made.
                with self.assertRaises(ValueError):
                    PresenceClient(spec)
        for names in ("a,,b", ""):
            with self.assertRaises(ValueError):
                ShardMap.parse_names(names)

    def test_page_tokens(self) -> None:
        # presenced's own, for the page after user 42, and the sharded
        # client's, both urlsafe base64 without padding.
        self.assertEqual(server_page_token(42), "YWZ0ZXI6NDI")
        self.assertEqual(base64.urlsafe_b64decode("YWZ0ZXI6NDI="), b"after:42")
        token = sharded_page_token(1234, ["s0", "s2"])
        self.assertNotIn("=", token)
        self.assertEqual(
            base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)),
            b"sharded-after:1234;done:s0,s2")
        self.assertEqual(decode_sharded_token(token), (1234, ["s0", "s2"]))
        self.assertEqual(decode_sharded_token(sharded_page_token(7, [])),
                         (7, []))
        self.assertEqual(decode_sharded_token(""), (0, []))
        no_done = base64.urlsafe_b64encode(b"sharded-after:5").decode()
        for bad in ("bogus", server_page_token(42), sharded_page_token(0, []),
                    "!!!!", no_done):
            with self.subTest(token=bad):
                with self.assertRaises(InvalidArgument) as caught:
                    decode_sharded_token(bad)
                self.assertIn("page_token", caught.exception.message)


# --- the merged watch over scripted streams ------------------------------


class _FedStream:
    """A WatchPresence stream whose messages (or error) the test feeds."""

    def __init__(self, request) -> None:
        self.request = request
        self._items: "queue.Queue" = queue.Queue()
        self._cond = threading.Condition()
        self._fed = 0
        self._asked = 0  # calls of __next__ so far

    def feed(self, *items) -> None:
        with self._cond:
            self._fed += len(items)
        for item in items:
            self._items.put(item)

    def drained(self) -> None:
        """Waits until the reader has asked for the item after the last one
        fed: it has handed every fed item on (PresenceWatch passes a message
        on before it reads the next)."""
        with self._cond:
            assert self._cond.wait_for(lambda: self._asked > self._fed,
                                       timeout=WAIT), "stream not drained"

    def __iter__(self):
        return self

    def __next__(self):
        with self._cond:
            self._asked += 1
            self._cond.notify_all()
        item = self._items.get()
        if isinstance(item, Exception):
            raise item
        return item

    def cancel(self) -> None:
        self._items.put(FakeRpcError(grpc.StatusCode.CANCELLED, "cancelled"))


class FedChannel:
    """A grpc.Channel whose WatchPresence calls are _FedStreams."""

    def __init__(self) -> None:
        self._streams: "queue.Queue[_FedStream]" = queue.Queue()

    def unary_stream(self, method, *args, **kwargs):
        def watch(request, *call_args, **call_kwargs):
            stream = _FedStream(request)
            self._streams.put(stream)
            return stream
        return watch

    def unary_unary(self, *args, **kwargs):
        def unexpected(*call_args, **call_kwargs):
            raise AssertionError("only WatchPresence is scripted")
        return unexpected

    def next_stream(self) -> _FedStream:
        return self._streams.get(timeout=WAIT)

    def close(self) -> None:
        pass


def snapshot(epoch: str, sequence: int, online: List[int]):
    return pb.WatchPresenceResponse(epoch=epoch, sequence=sequence,
                                    snapshot=pb.Snapshot(online_users=online))


def change(epoch: str, sequence: int, user_id: int, online: bool):
    return pb.WatchPresenceResponse(
        epoch=epoch, sequence=sequence, change=pb.PresenceChange(
            user_id=user_id, sequence=sequence,
            status=pb.STATUS_ONLINE if online else pb.STATUS_OFFLINE,
            reason=pb.REASON_HEARTBEAT if online else pb.REASON_EXPIRED))


class MergedWatchTest(unittest.TestCase):
    def setUp(self) -> None:
        self.channels = {"a": FedChannel(), "b": FedChannel()}
        self.client = PresenceClient.from_channels("a=h:1,b=h:2",
                                                   self.channels)

    def record(self, user_ids=()) -> WatchRecorder:
        recorder = WatchRecorder(self.client, list(user_ids))
        self.addCleanup(recorder.close)
        return recorder

    def test_one_merged_stream(self) -> None:
        recorder = self.record()
        self.assertIsInstance(recorder.watch, ShardedWatch)
        a, b = (self.channels[n].next_stream() for n in ("a", "b"))
        self.assertTrue(a.request.send_snapshot and b.request.send_snapshot)
        self.assertEqual(a.request.max_batch, 1000)

        # a's change before b's snapshot is folded into the first snapshot.
        a.feed(snapshot("ea", 5, [1, 3]), change("ea", 6, 7, True),
               change("ea", 7, 3, False))
        a.drained()  # else b's snapshot may overtake a's changes
        b.feed(snapshot("eb", 2, [2, 4]))
        first = recorder.next_event()
        self.assertIsInstance(first, Snapshot)
        self.assertEqual(first.online_users, [1, 2, 4, 7])
        self.assertEqual((first.epoch, first.sequence), ("a:ea,b:eb", 9))
        self.assertEqual(recorder.watch.positions,
                         {"a": ("ea", 7), "b": ("eb", 2)})

        b.feed(change("eb", 3, 2, False))
        gone = recorder.next_event()
        self.assertIsInstance(gone, PresenceChange)
        self.assertEqual((gone.user_id, gone.status, gone.reason, gone.shard,
                          gone.epoch, gone.sequence),
                         (2, Status.OFFLINE, Reason.EXPIRED, "b", "eb", 3))

        # a starts over (a new epoch): everyone again, a's part replaced.
        a.feed(snapshot("ea2", 1, [9]))
        again = recorder.next_event()
        self.assertIsInstance(again, Snapshot)
        self.assertEqual(again.online_users, [4, 9])
        self.assertEqual(again.epoch, "a:ea2,b:eb")

        # A break of a is reported naming it; a resumes where it was.
        a.feed(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection reset"))
        error, retry_in = recorder.next_disconnect()
        self.assertIsInstance(error, Unavailable)
        self.assertEqual(error.message, "shard a (h:1): connection reset")
        self.assertEqual(error.shard, "a")
        self.assertIsNotNone(retry_in)
        resumed = self.channels["a"].next_stream()
        self.assertEqual((resumed.request.epoch, resumed.request.resume_after,
                          resumed.request.send_snapshot), ("ea2", 1, False))
        b.feed(change("eb", 4, 5, True))
        resumed.feed(change("ea2", 2, 10, True))
        later = [recorder.next_event(), recorder.next_event()]
        self.assertEqual(sorted((e.shard, e.user_id) for e in later),
                         [("a", 10), ("b", 5)])

        # An error no retry can fix ends the whole watch, naming the shard.
        b.feed(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "bad"))
        error, retry_in = recorder.next_disconnect()
        self.assertIsNone(retry_in)
        entry = recorder.next_entry()
        self.assertEqual(entry[0], "error")
        self.assertIsInstance(entry[1], InvalidArgument)
        self.assertEqual(entry[1].message, "shard b (h:2): bad")

    def test_a_filtered_watch_streams_from_the_owners_only(self) -> None:
        shard_map = self.client.shard_map
        of_b = [u for u in range(1, 50) if shard_map.owner(u).name == "b"]
        recorder = self.record(of_b[:3])
        self.assertEqual(recorder.watch.shards, ["b"])
        b = self.channels["b"].next_stream()
        self.assertEqual(list(b.request.user_ids), of_b[:3])
        b.feed(snapshot("eb", 1, [of_b[0]]))
        self.assertEqual(recorder.next_event().online_users, [of_b[0]])
        self.assertTrue(self.channels["a"]._streams.empty())


class UserIdCheckTest(unittest.TestCase):
    """An id <= 0 is refused before any shard is asked (the channels here
    answer no call), naming its index in the caller's list, as one presenced
    and the C++ client say it."""

    def setUp(self) -> None:
        self.channels = {"a": FedChannel(), "b": FedChannel()}
        self.client = PresenceClient.from_channels("a=h:1,b=h:2",
                                                   self.channels)

    def assert_refused(self, call, message: str) -> None:
        with self.assertRaises(InvalidArgument) as caught:
            call()
        self.assertEqual(caught.exception.code,
                         grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(caught.exception.message, message)
        self.assertIsNone(caught.exception.shard)  # no shard's

    def test_id_lists(self) -> None:
        for ids, message in (
                ([0], "user_ids[0] must be > 0, got 0"),
                ([5, 9, -3, 0], "user_ids[2] must be > 0, got -3"),
                ([7] * 20 + [0], "user_ids[20] must be > 0, got 0")):
            with self.subTest(ids=ids):
                self.assert_refused(lambda: self.client.get_presence(ids),
                                    message)
                self.assert_refused(lambda: self.client.list_online(ids),
                                    message)
                self.assert_refused(
                    lambda: self.client.list_online(ids, partial=True),
                    message)
                self.assert_refused(
                    lambda: self.client.list_online_page(ids, page_size=3),
                    message)
        # Before the page token is looked at, as the C++ client.
        self.assert_refused(
            lambda: self.client.list_online_page([1, -1],
                                                 page_token="bogus"),
            "user_ids[1] must be > 0, got -1")

    def test_a_watch_raises_it_from_its_loop(self) -> None:
        recorder = WatchRecorder(self.client, [3, 4, 0])
        self.addCleanup(recorder.close)
        error, retry_in = recorder.next_disconnect()
        self.assertIsNone(retry_in)  # it gives up
        self.assertIsInstance(error, InvalidArgument)
        self.assertEqual(error.message, "user_ids[2] must be > 0, got 0")
        self.assertIsNone(error.shard)
        entry = recorder.next_entry()
        self.assertEqual(entry[0], "error")
        self.assertIs(entry[1], error)
        self.assertEqual(recorder.watch.shards, [])
        for channel in self.channels.values():  # no stream opened
            self.assertTrue(channel._streams.empty())
        # Over, like any watch that raised.
        with self.assertRaises(StopIteration):
            next(recorder.watch)


# --- three real shards ----------------------------------------------------


def start_shards(flags: Optional[List[str]] = None) -> List[Presenced]:
    servers = []
    try:
        for name in NAMES:
            servers.append(Presenced([f"--shard={name}",
                                      "--shards=" + ",".join(NAMES),
                                      *(flags or [])]).start())
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers


def start_sharded(test: unittest.TestCase):
    """Three shards and a sharded client over them, both closed when `test`
    ends: (servers, client)."""
    servers = start_shards()
    for server in servers:
        test.addCleanup(server.close)
    client = PresenceClient(spec(servers))
    test.addCleanup(client.close)
    return servers, client


def spec(servers: List[Presenced]) -> str:
    return ",".join(f"{name}={server.address}"
                    for name, server in zip(NAMES, servers))


def owner(user_id: int) -> str:
    return ShardMap.parse_names(",".join(NAMES)).owner(user_id).name


def drive(client: PresenceClient, user_ids, batch: int = 500,
          threads: int = 2) -> None:
    """A heartbeat of each user: BatchHeartbeats of `batch` users (each
    split over the shards by the client), `threads` at a time."""
    user_ids = list(user_ids)
    batches = [user_ids[i:i + batch] for i in range(0, len(user_ids), batch)]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for results in pool.map(client.batch_heartbeat, batches):
            for result in results:
                if not isinstance(result, HeartbeatResult):
                    raise result


class ShardedDeploymentTest(unittest.TestCase):
    """30,000 users over three shards, through one sharded client, watched
    from the start by one merged watch."""

    @classmethod
    def setUpClass(cls) -> None:
        # async: the 30,000 heartbeats need not wait for fsyncs here.
        cls.servers = start_shards(["--durability=async"])
        cls.client = PresenceClient(spec(cls.servers))
        cls.direct = {name: PresenceClient(server.address)
                      for name, server in zip(NAMES, cls.servers)}
        cls.recorder = WatchRecorder(cls.client, [])
        first = cls.recorder.next_event()
        assert isinstance(first, Snapshot) and first.online_users == [], first
        started = time.monotonic()
        drive(cls.client, range(1, USERS + 1))
        cls.drive_seconds = time.monotonic() - started

    @classmethod
    def tearDownClass(cls) -> None:
        cls.recorder.close()
        for client in (cls.client, *cls.direct.values()):
            client.close()
        for server in cls.servers:
            server.close()

    def test_each_shard_holds_its_share_and_only_its_own(self) -> None:
        everyone: Set[int] = set()
        for name, direct in self.direct.items():
            held = direct.list_online()
            with self.subTest(shard=name):
                self.assertGreaterEqual(len(held), USERS * 25 // 100)
                self.assertLessEqual(len(held), USERS * 42 // 100)
                self.assertEqual({owner(u) for u in held}, {name})
            everyone.update(held)
        self.assertEqual(everyone, set(range(1, USERS + 1)))

    def test_merged_list_online(self) -> None:
        everyone = list(range(1, USERS + 1))
        self.assertEqual(self.client.list_online(), everyone)
        self.assertEqual(self.client.list_online(page_size=997), everyone)
        partial = self.client.list_online(partial=True)
        self.assertIsInstance(partial, OnlineUsers)
        self.assertEqual((partial, partial.missing_shards), (everyone, []))

        # Page by page: the sharded token, every page full but the last.
        for page_size in (0, 4_000):
            with self.subTest(page_size=page_size):
                listed, token, pages = [], "", 0
                while True:
                    page = self.client.list_online_page(
                        page_size=page_size, page_token=token)
                    self.assertEqual(page.total_online, USERS)
                    listed += page.online_users
                    pages += 1
                    token = page.next_page_token
                    if not token:
                        break
                    raw = base64.urlsafe_b64decode(token + "=" *
                                                   (-len(token) % 4))
                    self.assertTrue(raw.startswith(
                        f"sharded-after:{listed[-1]};done:".encode()), raw)
                self.assertEqual(listed, everyone)
                self.assertEqual(pages, -(-USERS // (page_size or 1000)))

        # Of given users: split by shard, merged ascending, small pages.
        wanted = [29_999, 40_000, 5, 17, 3, 12_345, 60_001, 8, 1, 2, 4]
        online = sorted(u for u in wanted if u <= USERS)
        self.assertEqual(self.client.list_online(wanted), online)
        self.assertEqual(self.client.list_online(wanted, page_size=2), online)
        listed, token = [], ""
        while True:
            page = self.client.list_online_page(wanted, page_size=3,
                                                page_token=token)
            self.assertLessEqual(len(page.online_users), 3)
            self.assertEqual(page.total_online, len(online))
            listed += page.online_users
            token = page.next_page_token
            if not token:
                break
        self.assertEqual(listed, online)

        # A token of presenced itself is no token of the sharded client.
        with self.assertRaises(InvalidArgument):
            self.client.list_online_page(page_token=server_page_token(10))

    def test_the_servers_page_token_is_after_the_last_id(self) -> None:
        page = self.direct["s0"].list_online_page(page_size=2)
        self.assertEqual(page.next_page_token,
                         server_page_token(page.online_users[-1]))

    def test_get_presence_across_shards_in_request_order(self) -> None:
        # Online and never seen, of every shard, mixed, one twice.
        wanted = []
        for name in ("s2", "s0", "s1"):
            wanted += [u for u in range(1, 40) if owner(u) == name][:2]
            wanted += [u for u in range(40_000, 40_100)
                       if owner(u) == name][:1]
        wanted.append(wanted[1])
        self.assertEqual(len({owner(u) for u in wanted}), 3)
        lookup = self.client.get_presence(wanted)
        self.assertEqual([u.user_id for u in lookup.users], wanted)
        self.assertEqual([u.online for u in lookup.users],
                         [u <= USERS for u in wanted])
        for user in lookup.users:
            if user.online:
                self.assertEqual(user.live_sessions, 1)
                self.assertLessEqual(user.last_seen, lookup.server_time)
            else:
                self.assertIsNone(user.last_seen)
        self.assertEqual(self.client.get_presence([]).users, [])

    def test_the_merged_watch_saw_every_change(self) -> None:
        seen: Dict[int, PresenceChange] = {}
        while len(seen) < USERS:
            event = self.recorder.next_event()
            self.assertIsInstance(event, PresenceChange)
            self.assertFalse(event.user_id in seen,
                             f"user {event.user_id} came online twice")
            self.assertEqual((event.status, event.reason),
                             (Status.ONLINE, Reason.HEARTBEAT))
            self.assertEqual(event.shard, owner(event.user_id))
            seen[event.user_id] = event
        self.assertEqual(set(seen), set(range(1, USERS + 1)))
        # Each shard's changes arrive in its own order: `seen` is in
        # arrival order, and each shard's sequences rise strictly in it.
        for name in NAMES:
            sequences = [e.sequence for e in seen.values() if e.shard == name]
            self.assertGreater(len(sequences), 0, name)
            for before, after in zip(sequences, sequences[1:]):
                self.assertLess(before, after,
                                f"shard {name}: change {after} arrived "
                                f"after {before}")

    def test_a_misrouted_call_names_the_owner(self) -> None:
        user = next(u for u in range(1, 100) if owner(u) == "s1")
        for call in (lambda c: c.heartbeat(user),
                     lambda c: c.mark_offline(user),
                     lambda c: c.get_presence([user]),
                     lambda c: c.list_online([user])):
            with self.assertRaises(FailedPrecondition) as caught:
                call(self.direct["s0"])
            self.assertEqual(caught.exception.code,
                             grpc.StatusCode.FAILED_PRECONDITION)
            self.assertIn("belongs to shard s1", caught.exception.message)
        # The sharded client routes it right.
        self.assertTrue(self.client.get_presence([user]).users[0].online)

    def test_the_drive_is_not_slow(self) -> None:
        # A generous bound (CI runs on 2 busy cores): it takes a few
        # seconds; a minute means something waits that should not.
        self.assertLess(self.drive_seconds, 60.0,
                        f"{USERS} heartbeats over 3 shards took "
                        f"{self.drive_seconds:.1f} s")


class ShardedBatchHeartbeatTest(unittest.TestCase):
    """batch_heartbeat split over three shards and merged back in order."""

    def setUp(self) -> None:
        self.servers, self.client = start_sharded(self)
        self.users = {name: [u for u in range(1, 100) if owner(u) == name][:3]
                      for name in NAMES}

    def test_split_by_owner_and_merged_in_request_order(self) -> None:
        s0, s1, s2 = (self.users[name] for name in NAMES)
        items = [s2[0], (s0[0], "tab-a"), 0, (s1[0], "tab-b"), s0[1], -4,
                 (s0[0], "tab-c"), s2[0]]
        results = self.client.batch_heartbeat(items)
        self.assertEqual(len(results), len(items))
        applied = [0, 1, 3, 4, 6, 7]
        for index in applied:
            self.assertIsInstance(results[index], HeartbeatResult, index)
        # Each shard applies its items in request order: the second
        # heartbeat of s0[0] and of s2[0] finds the user online.
        self.assertEqual([results[i].became_online for i in applied],
                         [True, True, True, True, False, False])

        # A refused item is its error, naming its shard and counted in the
        # caller's request, not in the shard's part of it.
        for index, user_id in ((2, 0), (5, -4)):
            with self.subTest(user_id=user_id):
                error = results[index]
                name = owner(user_id)
                address = self.servers[NAMES.index(name)].address
                self.assertIsInstance(error, InvalidArgument)
                self.assertEqual(error.code, grpc.StatusCode.INVALID_ARGUMENT)
                self.assertEqual(error.shard, name)
                self.assertEqual(
                    error.message,
                    f"shard {name} ({address}): heartbeats[{index}].user_id "
                    f"must be > 0, got {user_id}")

        self.assertEqual(self.client.list_online(),
                         sorted([s0[0], s0[1], s1[0], s2[0]]))
        self.assertEqual(
            self.client.get_presence([s0[0]]).users[0].live_sessions, 2)
        self.assertEqual(self.client.batch_heartbeat([]), [])

    def test_a_misrouted_item_to_one_shard_directly(self) -> None:
        direct = PresenceClient(self.servers[0].address)
        self.addCleanup(direct.close)
        s0, s1, s2 = (self.users[name] for name in NAMES)
        results = direct.batch_heartbeat([s0[2], s1[1], (s2[1], "tab")])
        self.assertIsInstance(results[0], HeartbeatResult)
        self.assertTrue(results[0].became_online)
        for index, name in ((1, "s1"), (2, "s2")):
            with self.subTest(shard=name):
                error = results[index]
                self.assertIsInstance(error, FailedPrecondition)
                self.assertEqual(error.code,
                                 grpc.StatusCode.FAILED_PRECONDITION)
                self.assertTrue(error.message.startswith(
                    f"heartbeats[{index}]."), error.message)
                self.assertIn(f"belongs to shard {name}", error.message)
                self.assertIsNone(error.shard)  # an unsharded client's
        # Nothing of the misrouted items was applied anywhere.
        self.assertEqual(self.client.list_online(), [s0[2]])

    def test_a_shard_down_fails_its_items_only(self) -> None:
        s0, s1, s2 = (self.users[name] for name in NAMES)
        down = self.servers[1]
        address = down.address
        down.kill()
        started = time.monotonic()
        results = self.client.batch_heartbeat([s0[0], s1[0], s2[0], s1[1]])
        self.assertLess(time.monotonic() - started, 3.0)
        self.assertIsInstance(results[0], HeartbeatResult)
        self.assertIsInstance(results[2], HeartbeatResult)
        error = results[1]
        self.assertIsInstance(error, Unavailable)
        self.assertEqual(error.shard, "s1")
        self.assertTrue(error.message.startswith(f"shard s1 ({address}): "),
                        error.message)
        self.assertIs(results[3], error)  # that call's one error
        self.assertEqual(self.client.list_online(partial=True),
                         sorted([s0[0], s2[0]]))

        # Every shard down: the first failure, in request order, raises.
        self.servers[0].kill()
        self.servers[2].kill()
        with self.assertRaises(Unavailable) as caught:
            self.client.batch_heartbeat([s2[0], s0[0], s1[0]])
        self.assertEqual(caught.exception.shard, "s2")
        # So does get_presence: the shard of the earliest id, not the first
        # in the map.
        for ids, first in (([s2[0], s0[0], s1[0]], "s2"),
                           ([s1[1], s2[1], s0[1], s1[0]], "s1"),
                           ([s0[2], s2[2]], "s0")):
            with self.subTest(ids=ids):
                with self.assertRaises(Unavailable) as caught:
                    self.client.get_presence(ids)
                self.assertEqual(caught.exception.shard, first)


class ShardedTokenTest(unittest.TestCase):
    """Every shard's channel carries the token, the watch's included."""

    TOKEN = "sharded-7c1e9a2b4d6f8e0a"

    def setUp(self) -> None:
        tokens = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                              f"tokens-{os.getpid()}-{id(self)}")
        with open(tokens, "w") as f:
            f.write(f"django {self.TOKEN}\n")
        self.addCleanup(os.remove, tokens)
        self.servers = start_shards(["--auth_tokens_file=" + tokens])
        for server in self.servers:
            self.addCleanup(server.close)

    def test_the_token_goes_to_every_shard(self) -> None:
        client = PresenceClient(spec(self.servers), token=self.TOKEN)
        self.addCleanup(client.close)
        users = [next(u for u in range(1, 100) if owner(u) == name)
                 for name in NAMES]
        for user_id in users:
            self.assertTrue(client.heartbeat(user_id).became_online)
        self.assertEqual(client.list_online(), sorted(users))
        self.assertEqual(client.list_online_page().online_users,
                         sorted(users))
        self.assertTrue(all(u.online for u in
                            client.get_presence(users).users))
        with client.watch() as watch:
            self.assertEqual(next(watch).online_users, sorted(users))

        without = PresenceClient(spec(self.servers), token="")
        self.addCleanup(without.close)
        with self.assertRaises(presence_client.Unauthenticated) as caught:
            without.heartbeat(users[1])
        self.assertEqual(caught.exception.shard, "s1")


class ShardDownTest(unittest.TestCase):
    """kill -9 of one shard: its users fail fast, the others do not notice,
    partial listings say who is missing, pages wait for it, and the merged
    watch carries on and picks it up again by itself."""

    def setUp(self) -> None:
        self.servers, self.client = start_sharded(self)
        self.users = {name: [u for u in range(1, 301) if owner(u) == name]
                      for name in NAMES}
        drive(self.client, range(1, 301))

    def test_one_shard_down_and_back(self) -> None:
        recorder = WatchRecorder(self.client, [])
        self.addCleanup(recorder.close)
        first = recorder.next_event()
        self.assertEqual(first.online_users, list(range(1, 301)))
        # A listing page by page, begun while every shard is up.
        begun = self.client.list_online_page(page_size=50)
        self.assertEqual(begun.online_users, list(range(1, 51)))
        self.assertTrue(begun.next_page_token)

        down = self.servers[1]
        address = down.address
        down.kill()  # SIGKILL

        # Its users' calls fail fast, naming the shard.
        for call in (lambda: self.client.heartbeat(self.users["s1"][0]),
                     lambda: self.client.mark_offline(self.users["s1"][1]),
                     lambda: self.client.get_presence(
                         [self.users["s0"][0], self.users["s1"][0]])):
            started = time.monotonic()
            with self.assertRaises(Unavailable) as caught:
                call()
            self.assertLess(time.monotonic() - started, 3.0)
            self.assertTrue(caught.exception.message.startswith(
                f"shard s1 ({address}): "), caught.exception.message)
            self.assertEqual(caught.exception.shard, "s1")

        # The others' are not affected.
        started = time.monotonic()
        self.assertFalse(self.client.heartbeat(self.users["s0"][0])
                         .became_online)
        lookup = self.client.get_presence(self.users["s0"][:3] +
                                          self.users["s2"][:3])
        self.assertTrue(all(u.online for u in lookup.users))
        self.assertLess(time.monotonic() - started, 3.0)

        # Listing everyone needs every shard, unless partial is asked for.
        with self.assertRaises(Unavailable) as caught:
            self.client.list_online()
        self.assertIn(f"shard s1 ({address})", caught.exception.message)
        partial = self.client.list_online(partial=True)
        self.assertEqual(partial.missing_shards, ["s1"])
        self.assertFalse(partial.complete)
        self.assertEqual(partial, sorted(self.users["s0"] + self.users["s2"]))
        # A page always needs every shard concerned, a listing's first page
        # or a later one: there is no partial page.
        for token in ("", begun.next_page_token):
            with self.subTest(page_token=token):
                with self.assertRaises(Unavailable) as caught:
                    self.client.list_online_page(page_size=50,
                                                 page_token=token)
                self.assertEqual(caught.exception.shard, "s1")
                self.assertTrue(caught.exception.message.startswith(
                    f"shard s1 ({address}): "), caught.exception.message)
        # Of given users, only the shards concerned are asked.
        self.assertEqual(self.client.list_online(self.users["s2"][:4]),
                         self.users["s2"][:4])

        # The merged watch reports s1's breaks and still follows the others.
        error, retry_in = recorder.next_disconnect()
        self.assertEqual(error.shard, "s1")
        self.assertIn("shard s1", error.message)
        new_s0 = next(u for u in range(1000, 2000) if owner(u) == "s0")
        self.client.heartbeat(new_s0)
        event = recorder.next_event()
        self.assertEqual((event.user_id, event.status, event.shard),
                         (new_s0, Status.ONLINE, "s0"))

        # Back on the same port and database: a new epoch, so s1's stream
        # starts with a fresh snapshot and the merged watch yields everyone.
        # Nothing else calls s1 meanwhile: the watch reconnects by itself.
        down.start(listen=address)
        epoch_before = first.epoch.split(",")[1]
        online = set(first.online_users) | {new_s0}
        deadline = time.monotonic() + WAIT
        while True:
            event = recorder.next_event(timeout=deadline - time.monotonic())
            if isinstance(event, Snapshot):
                break
            if event.status == Status.ONLINE:
                online.add(event.user_id)
            else:
                online.discard(event.user_id)
        self.assertNotEqual(event.epoch.split(",")[1], epoch_before)
        online = set(event.online_users)
        self.assertEqual(online, set(range(1, 301)) | {new_s0})

        # s1 answers again, and its changes reach the watch.
        new_s1 = next(u for u in range(1000, 2000) if owner(u) == "s1")
        self.assertTrue(self.client.heartbeat(new_s1).became_online)
        event = recorder.next_event()
        self.assertEqual((event.user_id, event.status, event.shard),
                         (new_s1, Status.ONLINE, "s1"))
        online.add(new_s1)
        # Nothing lost: what the watch says is what the shards hold.
        self.assertEqual(sorted(online), self.client.list_online())
        self.assertEqual(sorted(online),
                         sorted(set(range(1, 301)) | {new_s0, new_s1}))
        # The listing begun before s1 went down goes on where it was, and
        # lists s1's users too.
        listed, token = list(begun.online_users), begun.next_page_token
        while token:
            page = self.client.list_online_page(page_size=50,
                                                page_token=token)
            self.assertEqual(page.total_online, len(online))
            listed += page.online_users
            token = page.next_page_token
        self.assertEqual(listed, sorted(online))


if __name__ == "__main__":
    unittest.main()
