"""PresenceWatch: WatchPresence as an iterator that survives broken streams;
ShardedWatch: one merged stream from the shards of a sharded deployment."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import threading
from typing import (Callable, Deque, Dict, Iterator, List, Optional, Set,
                    Tuple)

import grpc

from ._proto import pb, pb_grpc
from .errors import PERMANENT_CODES, PresenceError, error_for, shard_error
from .model import (Availability, PresenceChange, Snapshot, Status,
                    UserPresence, WatchEvent, watch_events)

# Called with the error that ended a stream and the seconds until the next
# attempt, or None when the watch gives up (the error is then raised).
DisconnectCallback = Callable[[PresenceError, Optional[float]], None]

# Changes per message a watch asks for (presenced's cap).
DEFAULT_MAX_BATCH = 1000


class PresenceWatch(Iterator[WatchEvent]):
    """Yields a Snapshot first, then one PresenceChange per transition.

    It asks presenced for up to `max_batch` changes per message (0 or 1: one
    per message; presenced caps it at 1,000), so that a watch that fell
    behind catches up in few messages. Each change of a batch is still
    yielded on its own, in order, with its own sequence. The changes of a
    message not yielded yet wait in the watch and are yielded before it
    reads the stream again, even if the stream has broken meanwhile.

    On a broken stream it reconnects with backoff (doubling from
    `initial_backoff` to `max_backoff` seconds, back to the start once a
    stream delivers a message) and resumes after the last (epoch, sequence)
    it received, which by then it has yielded. presenced then replays what
    was missed, or, if it cannot (it restarted, or the gap left its ring),
    sends a fresh Snapshot that replaces everything known before. So the
    consumer sees every change once, or a snapshot: it never silently
    diverges from presenced.

    With `rich_status` it asks for status transitions too (see
    PresenceClient.watch), on every stream, the resumed ones included.

    Errors a retry cannot fix (INVALID_ARGUMENT, UNAUTHENTICATED,
    PERMISSION_DENIED, UNIMPLEMENTED) are raised from next(). Iterate from
    one thread; close() may be called from any thread and ends the
    iteration (StopIteration), dropping changes received but not yielded.
    Use it as a context manager to close it.
    """

    def __init__(self, stub: pb_grpc.PresenceServiceStub, user_ids: List[int],
                 initial_backoff: float, max_backoff: float,
                 on_disconnect: Optional[DisconnectCallback],
                 max_batch: int = DEFAULT_MAX_BATCH,
                 rich_status: bool = False) -> None:
        if not 0 <= max_batch < 2**32:
            raise ValueError(
                f"max_batch must be in [0, 2^32), got {max_batch}")
        self._stub = stub
        self._user_ids = list(user_ids)
        self._max_batch = max_batch
        self._rich_status = bool(rich_status)
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._backoff = initial_backoff
        self._on_disconnect = on_disconnect
        # Where to resume: the last message received.
        self._epoch = ""
        self._sequence = 0
        # Events received and not yet yielded, oldest first.
        self._pending: Deque[WatchEvent] = collections.deque()
        # The last event yielded.
        self._yielded_epoch = ""
        self._yielded_sequence = 0
        self._delivered_since_connect = False
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._call = None  # guarded by _lock

    @property
    def epoch(self) -> str:
        """The epoch of the last event yielded ("" before the first)."""
        return self._yielded_epoch

    @property
    def sequence(self) -> int:
        """The sequence of the last event yielded: its own for a change."""
        return self._yielded_sequence

    def __iter__(self) -> "PresenceWatch":
        return self

    def __next__(self) -> WatchEvent:
        while True:
            if self._pending:
                if self._closed.is_set():
                    raise StopIteration
                event = self._pending.popleft()
                self._yielded_epoch = event.epoch
                self._yielded_sequence = event.sequence
                return event
            call = self._connect()
            if call is None:
                raise StopIteration
            try:
                message = next(call)
            except StopIteration:
                # The server ended the stream without an error (it should
                # not): follow it again like after any other break.
                error = PresenceError(grpc.StatusCode.OK,
                                      "presenced ended the stream")
            except grpc.RpcError as rpc_error:
                error = error_for(rpc_error.code(), rpc_error.details() or "")
            else:
                # A batch's sequence is its last change's.
                self._epoch = message.epoch
                self._sequence = message.sequence
                self._delivered_since_connect = True
                # Nothing for a kind newer than this client.
                self._pending.extend(watch_events(message))
                continue
            self._disconnected(error)

    def _connect(self):
        """The current stream, opened if needed; None once closed."""
        with self._lock:
            if self._closed.is_set():
                return None
            if self._call is None:
                request = pb.WatchPresenceRequest(
                    user_ids=self._user_ids, max_batch=self._max_batch,
                    rich_status=self._rich_status)
                if self._epoch:
                    # presenced replays what came after, or sends a snapshot
                    # if it cannot.
                    request.epoch = self._epoch
                    request.resume_after = self._sequence
                else:
                    request.send_snapshot = True
                # No deadline: the stream lasts as long as the watch.
                self._call = self._stub.WatchPresence(request)
                self._delivered_since_connect = False
            return self._call

    def _disconnected(self, error: PresenceError) -> None:
        """After a stream ended: waits out the backoff, or raises `error`."""
        with self._lock:
            self._call = None
        if self._closed.is_set():
            return  # _connect() ends the iteration
        if self._delivered_since_connect:
            self._backoff = self._initial_backoff
        if error.code in PERMANENT_CODES:
            self._closed.set()
            if self._on_disconnect is not None:
                self._on_disconnect(error, None)
            raise error
        if self._on_disconnect is not None:
            self._on_disconnect(error, self._backoff)
        self._closed.wait(self._backoff)
        self._backoff = min(self._backoff * 2, self._max_backoff)

    def close(self) -> None:
        """Ends the stream; the iteration stops. Idempotent."""
        self._closed.set()
        with self._lock:
            call, self._call = self._call, None
        if call is not None:
            call.cancel()

    def __enter__(self) -> "PresenceWatch":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class _ShardPart:
    """One shard's stream of a ShardedWatch, and what the merge knows of it."""

    def __init__(self, name: str, target: str, watch: PresenceWatch) -> None:
        self.name = name
        self.target = target
        self.watch = watch
        self.thread: Optional[threading.Thread] = None
        # Who of its watched users is online; None until its first snapshot.
        self.online: Optional[Set[int]] = None
        # Rich watches: their presence as others see it, by user id.
        self.presences: Dict[int, UserPresence] = {}
        self.snapshot_time: Optional[datetime.datetime] = None
        # The last event of this shard the merge has taken in.
        self.epoch = ""
        self.sequence = 0


class ShardedWatch(Iterator[WatchEvent]):
    """WatchPresence of a sharded deployment, as one stream: what
    PresenceClient.watch() returns for a shard map.

    It follows one stream per shard (for a watch of given users, only the
    shards that own them), each a PresenceWatch that resumes by its own
    (epoch, sequence) after a break, on a thread of its own, and yields:

      - first one Snapshot, the union of every shard's: changes that arrive
        before the last shard's snapshot are folded into it;
      - then each PresenceChange as it arrives, with `shard` naming the
        shard whose epoch and sequence it carries;
      - whenever a shard sends a new snapshot (it restarted, or this watch
        fell behind it), a Snapshot of everyone again, that shard's part
        replaced: a Snapshot still replaces everything known before.

    With `rich_status`, ONLINE, AWAY and DND all count as online in the
    merged snapshots, and their `users` hold each online user's presence:
    from the user's shard's snapshot, updated by the user's later changes
    (status, custom status, DND end; availability DND for status DND, else
    AUTO, as others see it). What a change does not carry stays as that
    snapshot had it; for a user who came online after it, last_seen is the
    change's time, live_sessions 1 (at least one) and online_until None
    (not known).

    The merged Snapshot's epoch is "NAME:EPOCH,..." over the shards and its
    sequence the sum of theirs; `positions` gives each shard's own.

    While a shard is down its stream is retried with backoff and the others
    keep flowing; on_disconnect(error, retry_in) reports each break, from
    that shard's thread, with an error whose message names the shard
    ("shard s1 (10.0.0.7:50051): ...") and whose `.shard` is its name.
    Errors a retry cannot fix are raised from next() and end the watch;
    so is InvalidArgument for an id <= 0 in user_ids, found before any
    stream is opened ("user_ids[I] must be > 0, got X", I counted in the
    caller's list). Until every shard has sent its first snapshot, nothing
    is yielded.

    Received events wait in a buffer of BUFFER events; when it is full the
    shards' streams are not read (a watcher that falls that far behind gets
    a fresh snapshot from the shard, as from one presenced). Iterate from one
    thread; close() may be called from any thread and ends the iteration.
    """

    BUFFER = 10_000

    def __init__(self, parts: List[tuple], initial_backoff: float,
                 max_backoff: float,
                 on_disconnect: Optional[DisconnectCallback],
                 max_batch: int = DEFAULT_MAX_BATCH, *,
                 failure: Optional[PresenceError] = None,
                 rich_status: bool = False) -> None:
        """`parts`: (name, target, stub, user_ids) per shard to follow.
        `failure`: see failed()."""
        if not parts and failure is None:
            raise ValueError("a sharded watch needs at least one shard")
        self._failure = failure
        self._rich_status = bool(rich_status)
        self._on_disconnect = on_disconnect
        self._parts: List[_ShardPart] = []
        for name, target, stub, user_ids in parts:
            watch = PresenceWatch(
                stub, list(user_ids), initial_backoff, max_backoff,
                self._reporter(name, target, on_disconnect),
                max_batch=max_batch, rich_status=rich_status)
            self._parts.append(_ShardPart(name, target, watch))
        self._cond = threading.Condition()
        # (part index, "event" | "error" | "end", payload), oldest first.
        self._queue: Deque[tuple] = collections.deque()  # guarded by _cond
        self._closed = False  # guarded by _cond
        self._started = False
        self._all_snapshots = False
        self._yielded_epoch = ""
        self._yielded_sequence = 0

    @classmethod
    def failed(cls, error: PresenceError,
               on_disconnect: Optional[DisconnectCallback]
               ) -> "ShardedWatch":
        """A watch refused before any stream was opened (e.g. an id <= 0):
        it follows no shard, and its first next() reports `error` to
        on_disconnect (retry_in None) and raises it, as a PresenceWatch does
        with presenced's refusal; the watch is then over."""
        return cls([], 0.0, 0.0, on_disconnect, failure=error)

    @staticmethod
    def _reporter(name: str, target: str,
                  on_disconnect: Optional[DisconnectCallback]):
        if on_disconnect is None:
            return None

        def report(error: PresenceError, retry_in: Optional[float]) -> None:
            on_disconnect(shard_error(error, name, target), retry_in)
        return report

    @property
    def shards(self) -> List[str]:
        """The names of the shards this watch follows."""
        return [part.name for part in self._parts]

    @property
    def positions(self) -> Dict[str, Tuple[str, int]]:
        """Each shard's (epoch, sequence) of the last of its events taken
        into what was yielded ("", 0 before its first)."""
        return {part.name: (part.epoch, part.sequence)
                for part in self._parts}

    @property
    def epoch(self) -> str:
        """The epoch of the last event yielded ("" before the first): a
        change's shard's, or the merged snapshot's "NAME:EPOCH,..."."""
        return self._yielded_epoch

    @property
    def sequence(self) -> int:
        """The sequence of the last event yielded."""
        return self._yielded_sequence

    def __iter__(self) -> "ShardedWatch":
        return self

    def _start(self) -> None:
        self._started = True
        for index, part in enumerate(self._parts):
            part.thread = threading.Thread(
                target=self._pump, args=(index,), daemon=True,
                name=f"presence-watch-{part.name}")
            part.thread.start()

    def _pump(self, index: int) -> None:
        """A shard's thread: its PresenceWatch's events into the queue."""
        part = self._parts[index]
        try:
            for event in part.watch:
                if not self._put((index, "event", event)):
                    return
            self._put((index, "end", None))
        except PresenceError as error:
            self._put((index, "error",
                       shard_error(error, part.name, part.target)), True)
        except Exception as error:  # handed to the iterating thread
            self._put((index, "error", error), True)

    def _put(self, item: tuple, always: bool = False) -> bool:
        with self._cond:
            while (not always and not self._closed
                   and len(self._queue) >= self.BUFFER):
                self._cond.wait()
            if self._closed:
                return False
            self._queue.append(item)
            self._cond.notify_all()
            return True

    def _take(self) -> Optional[tuple]:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            item = self._queue.popleft()
            self._cond.notify_all()
            return item

    def __next__(self) -> WatchEvent:
        if self._failure is not None:
            error, self._failure = self._failure, None
            with self._cond:
                closed = self._closed
            self.close()
            if closed:
                raise StopIteration
            if self._on_disconnect is not None:
                self._on_disconnect(error, None)
            raise error
        if not self._started:
            self._start()
        while True:
            item = self._take()
            if item is None:
                raise StopIteration
            index, kind, payload = item
            if kind == "error":
                self.close()
                raise payload
            if kind == "end":
                continue  # only after close(), which _take() reports
            part = self._parts[index]
            if isinstance(payload, Snapshot):
                part.online = set(payload.online_users)
                part.presences = {user.user_id: user
                                  for user in payload.users}
                part.snapshot_time = payload.server_time
                part.epoch, part.sequence = payload.epoch, payload.sequence
                if not self._all_snapshots:
                    self._all_snapshots = all(p.online is not None
                                              for p in self._parts)
                if self._all_snapshots:
                    return self._yield(self._merged_snapshot())
                continue
            change: PresenceChange = payload
            if part.online is None:
                part.online = set()  # a resumed stream; not seen in practice
            if change.status.online:
                part.online.add(change.user_id)
                if self._rich_status:
                    part.presences[change.user_id] = _presence_after(
                        part.presences.get(change.user_id), change)
            else:
                part.online.discard(change.user_id)
                part.presences.pop(change.user_id, None)
            part.epoch, part.sequence = change.epoch, change.sequence
            if self._all_snapshots:
                return self._yield(dataclasses.replace(change,
                                                       shard=part.name))
            # Folded into the first snapshot, still to come.

    def _merged_snapshot(self) -> Snapshot:
        online: Set[int] = set()
        presences: Dict[int, UserPresence] = {}
        for part in self._parts:
            online |= part.online or set()
            presences.update(part.presences)
        online_users = sorted(online)
        users: List[UserPresence] = []
        if self._rich_status:
            users = [presences.get(user_id) or UserPresence(
                         user_id=user_id, status=Status.ONLINE,
                         last_seen=None, live_sessions=1, online_until=None)
                     for user_id in online_users]
        return Snapshot(
            online_users=online_users,
            server_time=max(p.snapshot_time for p in self._parts
                            if p.snapshot_time is not None),
            epoch=",".join(f"{p.name}:{p.epoch}" for p in self._parts),
            sequence=sum(p.sequence for p in self._parts),
            users=users)

    def _yield(self, event: WatchEvent) -> WatchEvent:
        self._yielded_epoch = event.epoch
        self._yielded_sequence = event.sequence
        return event

    def close(self) -> None:
        """Ends every shard's stream; the iteration stops. Idempotent."""
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        for part in self._parts:
            part.watch.close()

    def __enter__(self) -> "ShardedWatch":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _presence_after(before: Optional[UserPresence],
                    change: PresenceChange) -> UserPresence:
    """An online user's presence as others see it, after `change`, from
    what it was (None: not known, the user came online since)."""
    seen = dict(user_id=change.user_id, last_seen=change.at,
                live_sessions=1, online_until=None)
    if before is not None:
        seen = dict(user_id=before.user_id, last_seen=before.last_seen,
                    live_sessions=before.live_sessions,
                    online_until=before.online_until)
    dnd = change.status == Status.DND
    return UserPresence(
        status=change.status,
        availability=Availability.DND if dnd else Availability.AUTO,
        availability_until=change.availability_until if dnd else None,
        custom_status=change.custom_status, **seen)
