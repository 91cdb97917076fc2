"""PresenceWatch: WatchPresence as an iterator that survives broken streams."""

from __future__ import annotations

import threading
from typing import Callable, Iterator, List, Optional

import grpc

from ._proto import pb, pb_grpc
from .errors import PERMANENT_CODES, PresenceError, error_for
from .model import WatchEvent, watch_event

# Called with the error that ended a stream and the seconds until the next
# attempt, or None when the watch gives up (the error is then raised).
DisconnectCallback = Callable[[PresenceError, Optional[float]], None]


class PresenceWatch(Iterator[WatchEvent]):
    """Yields a Snapshot first, then one PresenceChange per transition.

    On a broken stream it reconnects with backoff (doubling from
    `initial_backoff` to `max_backoff` seconds, back to the start once a
    stream delivers a message) and resumes after the last (epoch, sequence)
    it yielded. presenced then replays what was missed, or, if it cannot
    (it restarted, or the gap left its ring), sends a fresh Snapshot that
    replaces everything known before. So the consumer sees every change
    once, or a snapshot: it never silently diverges from presenced.

    Errors a retry cannot fix (INVALID_ARGUMENT, UNAUTHENTICATED,
    PERMISSION_DENIED, UNIMPLEMENTED) are raised from next(). Iterate from
    one thread; close() may be called from any thread and ends the
    iteration (StopIteration). Use it as a context manager to close it.
    """

    def __init__(self, stub: pb_grpc.PresenceServiceStub, user_ids: List[int],
                 initial_backoff: float, max_backoff: float,
                 on_disconnect: Optional[DisconnectCallback]) -> None:
        self._stub = stub
        self._user_ids = list(user_ids)
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._backoff = initial_backoff
        self._on_disconnect = on_disconnect
        # Where to resume: the last message yielded.
        self._epoch = ""
        self._sequence = 0
        self._delivered_since_connect = False
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._call = None  # guarded by _lock

    @property
    def epoch(self) -> str:
        """The epoch of the last message received ("" before the first)."""
        return self._epoch

    @property
    def sequence(self) -> int:
        """The sequence of the last message received."""
        return self._sequence

    def __iter__(self) -> "PresenceWatch":
        return self

    def __next__(self) -> WatchEvent:
        while True:
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
                self._epoch = message.epoch
                self._sequence = message.sequence
                self._delivered_since_connect = True
                event = watch_event(message)
                if event is not None:  # else a kind newer than this client
                    return event
                continue
            self._disconnected(error)

    def _connect(self):
        """The current stream, opened if needed; None once closed."""
        with self._lock:
            if self._closed.is_set():
                return None
            if self._call is None:
                request = pb.WatchPresenceRequest(user_ids=self._user_ids)
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
