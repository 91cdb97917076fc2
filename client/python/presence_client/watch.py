"""PresenceWatch: WatchPresence as an iterator that survives broken streams."""

from __future__ import annotations

import collections
import threading
from typing import Callable, Deque, Iterator, List, Optional

import grpc

from ._proto import pb, pb_grpc
from .errors import PERMANENT_CODES, PresenceError, error_for
from .model import WatchEvent, watch_events

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

    Errors a retry cannot fix (INVALID_ARGUMENT, UNAUTHENTICATED,
    PERMISSION_DENIED, UNIMPLEMENTED) are raised from next(). Iterate from
    one thread; close() may be called from any thread and ends the
    iteration (StopIteration), dropping changes received but not yielded.
    Use it as a context manager to close it.
    """

    def __init__(self, stub: pb_grpc.PresenceServiceStub, user_ids: List[int],
                 initial_backoff: float, max_backoff: float,
                 on_disconnect: Optional[DisconnectCallback],
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if not 0 <= max_batch < 2**32:
            raise ValueError(
                f"max_batch must be in [0, 2^32), got {max_batch}")
        self._stub = stub
        self._user_ids = list(user_ids)
        self._max_batch = max_batch
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
                    user_ids=self._user_ids, max_batch=self._max_batch)
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
