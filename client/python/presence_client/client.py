"""PresenceClient: typed calls to presence.v1.PresenceService."""

from __future__ import annotations

import collections
import json
import os
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import grpc
from google.protobuf import timestamp_pb2

from ._proto import pb, pb_grpc
from .errors import from_rpc_error
from .model import (HeartbeatResult, MarkOfflineResult, OnlinePage,
                    PresenceLookup, to_datetime, user_presence)
from .watch import DEFAULT_MAX_BATCH, DisconnectCallback, PresenceWatch

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 5.0

# The C++ client's service config (client/client.cc). Retries only what can
# safely happen twice: a repeated heartbeat re-stamps the session with the
# server's clock, a repeated MarkOffline ends nothing more, reads change
# nothing. UNAVAILABLE means the call did not complete (connection lost, or
# presenced could not make the change durable). WatchPresence is not retried
# by gRPC: PresenceWatch resumes it.
SERVICE_CONFIG = json.dumps({
    "methodConfig": [{
        "name": [
            {"service": "presence.v1.PresenceService", "method": method}
            for method in ("Heartbeat", "BatchHeartbeat", "MarkOffline",
                           "ListOnline", "GetPresence")
        ],
        "retryPolicy": {
            "maxAttempts": 4,
            "initialBackoff": "0.05s",
            "maxBackoff": "1s",
            "backoffMultiplier": 3,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]
})

CHANNEL_OPTIONS: Tuple[Tuple[str, Any], ...] = (
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    # A snapshot of everyone online can exceed gRPC's default 4 MB limit.
    ("grpc.max_receive_message_length", -1),
    # After presenced was down a while, try again within 10 s of it being
    # back, not gRPC's default of up to 2 minutes.
    ("grpc.max_reconnect_backoff_ms", 10_000),
)


class _BearerToken(grpc.UnaryUnaryClientInterceptor,
                   grpc.UnaryStreamClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", "Bearer " + token)

    def _with_token(self, details):
        metadata = list(details.metadata or []) + [self._header]
        return _CallDetails(details.method, details.timeout, metadata,
                            details.credentials, details.wait_for_ready,
                            details.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)


class _CallDetails(
        collections.namedtuple(
            "_CallDetails", ("method", "timeout", "metadata", "credentials",
                             "wait_for_ready", "compression")),
        grpc.ClientCallDetails):
    pass


class PresenceClient:
    """A typed client for presenced. Thread-safe: one per process.

    Every call has a deadline of `timeout` seconds (per call, retries
    included; each method takes a `timeout` to override it). Heartbeat,
    MarkOffline, ListOnline and GetPresence are retried by gRPC on
    UNAVAILABLE with backoff (SERVICE_CONFIG). Failures raise a
    PresenceError subclass carrying the gRPC code and the server's message.

    Not fork-safe: create it in the process that uses it (e.g. lazily, after
    a pre-forking server has forked its workers).
    """

    def __init__(self, target: str = DEFAULT_TARGET, *,
                 timeout: float = DEFAULT_TIMEOUT,
                 credentials: Optional[grpc.ChannelCredentials] = None,
                 token: Optional[str] = None,
                 options: Sequence[Tuple[str, Any]] = ()) -> None:
        """`target` is presenced's HOST:PORT (any gRPC target works);
        `credentials` None means plaintext; `token` is sent as
        `authorization: Bearer <token>` with every call (presenced's
        --auth_tokens_file; None: the PRESENCE_TOKEN environment variable,
        if set); `options` are extra gRPC channel arguments, applied after
        CHANNEL_OPTIONS."""
        channel_options = list(CHANNEL_OPTIONS) + list(options)
        if credentials is None:
            channel = grpc.insecure_channel(target, options=channel_options)
        else:
            channel = grpc.secure_channel(target, credentials,
                                          options=channel_options)
        if token is None:
            token = os.environ.get("PRESENCE_TOKEN") or None
        if token:
            # Call credentials would be the gRPC way, but gRPC sends them
            # only over TLS; presenced may use tokens on plaintext loopback.
            channel = grpc.intercept_channel(channel, _BearerToken(token))
        self._init(channel, timeout)

    @classmethod
    def from_channel(cls, channel: grpc.Channel, *,
                     timeout: float = DEFAULT_TIMEOUT) -> "PresenceClient":
        """For a channel built by the caller; pass SERVICE_CONFIG in its
        options (`grpc.service_config`) to keep the retries."""
        client = cls.__new__(cls)
        client._init(channel, timeout)
        return client

    def _init(self, channel: grpc.Channel, timeout: float) -> None:
        self._channel = channel
        self._stub = pb_grpc.PresenceServiceStub(channel)
        self.timeout = timeout

    @property
    def channel(self) -> grpc.Channel:
        return self._channel

    def _call(self, method, request, timeout: Optional[float]):
        try:
            return method(request,
                          timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    def heartbeat(self, user_id: int, session_id: str = "", *,
                  timeout: Optional[float] = None) -> HeartbeatResult:
        """Stamps the session with the server's clock: the user is online
        until `online_until`. Call again within `heartbeat_interval`. An
        empty session_id is the user's default session."""
        request = pb.HeartbeatRequest(user_id=user_id, session_id=session_id)
        request.client_time.CopyFrom(_now())  # informational only
        response = self._call(self._stub.Heartbeat, request, timeout)
        return HeartbeatResult(
            server_time=to_datetime(response.server_time),
            online_until=to_datetime(response.online_until),
            heartbeat_interval=response.heartbeat_interval.ToTimedelta(),
            became_online=response.became_online)

    def mark_offline(self, user_id: int, session_id: str = "", *,
                     timeout: Optional[float] = None) -> MarkOfflineResult:
        """Ends the session now. An empty session_id ends every session of
        the user (logout everywhere). The user stays online while another
        session is live (`still_online`)."""
        request = pb.MarkOfflineRequest(user_id=user_id, session_id=session_id)
        response = self._call(self._stub.MarkOffline, request, timeout)
        return MarkOfflineResult(
            server_time=to_datetime(response.server_time),
            still_online=response.still_online,
            sessions_ended=response.sessions_ended)

    def list_online_page(self, user_ids: Iterable[int] = (), *,
                         page_size: int = 0, page_token: str = "",
                         timeout: Optional[float] = None) -> OnlinePage:
        """One page of online users (of `user_ids`, if not empty),
        ascending. page_size 0 is the server's default (1,000). Pass
        `next_page_token` as `page_token` for the next page."""
        request = pb.ListOnlineRequest(user_ids=list(user_ids),
                                       page_size=page_size,
                                       page_token=page_token)
        response = self._call(self._stub.ListOnline, request, timeout)
        return OnlinePage(
            online_users=list(response.online_users),
            next_page_token=response.next_page_token,
            server_time=to_datetime(response.server_time),
            total_online=response.total_online)

    def list_online(self, user_ids: Iterable[int] = (), *, page_size: int = 0,
                    timeout: Optional[float] = None) -> List[int]:
        """Every online user (of `user_ids`, if not empty), ascending,
        following the pages. Each page is one call with its own deadline,
        taken at its own moment."""
        user_ids = list(user_ids)
        online: List[int] = []
        token = ""
        while True:
            page = self.list_online_page(user_ids, page_size=page_size,
                                         page_token=token, timeout=timeout)
            online.extend(page.online_users)
            token = page.next_page_token
            if not token:
                return online

    def get_presence(self, user_ids: Iterable[int], *,
                     timeout: Optional[float] = None) -> PresenceLookup:
        """The presence of each user, in request order, including offline
        and never-seen users."""
        request = pb.GetPresenceRequest(user_ids=list(user_ids))
        response = self._call(self._stub.GetPresence, request, timeout)
        return PresenceLookup(
            users=[user_presence(user) for user in response.users],
            server_time=to_datetime(response.server_time))

    def watch(self, user_ids: Iterable[int] = (), *,
              initial_backoff: float = 0.1, max_backoff: float = 5.0,
              on_disconnect: Optional[DisconnectCallback] = None,
              max_batch: int = DEFAULT_MAX_BATCH) -> PresenceWatch:
        """Follows presence changes of `user_ids` (empty: everyone): an
        iterator of a Snapshot, then PresenceChanges, resuming by itself
        after a broken stream (see PresenceWatch). Close it when done.

        `max_batch`: how many changes presenced may send in one message
        (it caps this at 1,000; 0 or 1: one per message, as presenced sent
        them before batches). Batches let a watch of many users keep up
        with a busy server; the iterator yields one PresenceChange per
        change either way."""
        return PresenceWatch(self._stub, list(user_ids), initial_backoff,
                             max_backoff, on_disconnect, max_batch=max_batch)

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> "PresenceClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _now() -> timestamp_pb2.Timestamp:
    timestamp = timestamp_pb2.Timestamp()
    timestamp.GetCurrentTime()
    return timestamp
