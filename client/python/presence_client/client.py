"""PresenceClient: typed calls to presence.v1.PresenceService, of one
presenced or of a sharded deployment (routed by the shard map).

One class, kept whole (~560 lines): a method per RPC with its docstring, the
one place Python callers read the API; the sharded routing is in
sharded.py, the watch in watch.py, the result types in model.py."""

from __future__ import annotations

import collections
import datetime
import json
import operator
import os
from typing import (Any, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from ._proto import pb, pb_grpc
from .errors import InvalidArgument
from .model import (Availability, HeartbeatResult, MarkOfflineResult,
                    OnlinePage, OnlineUsers, PresenceLookup, StatusResult,
                    heartbeat_result, to_datetime, user_presence)
from .sharded import BatchItem, ShardRouter, check_viewer
from .shards import ShardMap
from .watch import (DEFAULT_MAX_BATCH, DisconnectCallback, PresenceWatch,
                    ShardedWatch)

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 5.0

# An item of batch_heartbeat(): a user id (the user's default session),
# (user_id, session_id), or (user_id, session_id, idle).
HeartbeatItem = Union[int, Tuple[int, str], Tuple[int, str, bool]]

# An end given to set_status(): a moment (a timezone-aware datetime) or a
# time from the server's now (a timedelta).
End = Union[datetime.datetime, datetime.timedelta]

# The C++ client's service config (client/client.cc). Retries only what can
# safely happen twice: a repeated heartbeat re-stamps the session with the
# server's clock, a repeated MarkOffline ends nothing more, a repeated
# SetStatus sets the same status (a relative end counts from the later
# attempt), reads change nothing. UNAVAILABLE means the call did not
# complete (connection lost, or presenced could not make the change
# durable). WatchPresence is not retried by gRPC: PresenceWatch resumes it.
SERVICE_CONFIG = json.dumps({
    "methodConfig": [{
        "name": [
            {"service": "presence.v1.PresenceService", "method": method}
            for method in ("Heartbeat", "BatchHeartbeat", "MarkOffline",
                           "SetStatus", "ListOnline", "GetPresence")
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
    BatchHeartbeat, MarkOffline, ListOnline and GetPresence are retried by
    gRPC on UNAVAILABLE with backoff (SERVICE_CONFIG). Failures raise a
    PresenceError subclass carrying the gRPC code and the server's message.

    Not fork-safe: create it in the process that uses it (e.g. lazily, after
    a pre-forking server has forked its workers).

    Given a sharded deployment ("s0=HOST:PORT,s1=HOST:PORT,..." or a DNS
    pattern, see ShardMap), it keeps a channel per shard and routes each
    call by the rendezvous hash of the user id, as presenced's --shards
    does: heartbeat and mark_offline go to the user's shard;
    batch_heartbeat, get_presence and list_online ask the shards concerned
    at once and merge their answers; watch() merges one stream per shard
    (ShardedWatch). The routing and merging are sharded.ShardRouter's. An
    error of one shard is raised as its PresenceError subclass, with a
    message that names it ("shard s1 (10.0.0.7:50051): ...") and `.shard`
    set; a shard being down does not affect calls about other shards'
    users.
    """

    def __init__(self, target: Union[str, ShardMap] = DEFAULT_TARGET, *,
                 timeout: float = DEFAULT_TIMEOUT,
                 credentials: Optional[grpc.ChannelCredentials] = None,
                 token: Optional[str] = None,
                 options: Sequence[Tuple[str, Any]] = ()) -> None:
        """`target` is presenced's HOST:PORT (any gRPC target works), or a
        sharded deployment in any form of ShardMap.parse:
        "NAME=HOST:PORT,NAME=HOST:PORT,..." or a DNS pattern such as
        "presenced-{0..2}.presenced.NS.svc:50051" (or a ShardMap);
        ValueError if it cannot be one. A sharded client has a channel per
        shard, each with the same credentials, token and options.

        `credentials` None means plaintext; `token` is sent as
        `authorization: Bearer <token>` with every call (presenced's
        --auth_tokens_file; None: the PRESENCE_TOKEN environment variable,
        if set); `options` are extra gRPC channel arguments, applied after
        CHANNEL_OPTIONS."""
        shard_map = (target if isinstance(target, ShardMap)
                     else ShardMap.parse(target))
        channel_options = list(CHANNEL_OPTIONS) + list(options)
        if token is None:
            token = os.environ.get("PRESENCE_TOKEN") or None

        def open_channel(address: str) -> grpc.Channel:
            if credentials is None:
                channel = grpc.insecure_channel(address,
                                                options=channel_options)
            else:
                channel = grpc.secure_channel(address, credentials,
                                              options=channel_options)
            if token:
                # Call credentials would be the gRPC way, but gRPC sends
                # them only over TLS; presenced may use tokens on plaintext
                # loopback.
                channel = grpc.intercept_channel(channel, _BearerToken(token))
            return channel

        channels = [open_channel(shard.target) for shard in shard_map.shards]
        self._init(shard_map, channels, timeout)

    @classmethod
    def from_channel(cls, channel: grpc.Channel, *,
                     timeout: float = DEFAULT_TIMEOUT) -> "PresenceClient":
        """For a channel built by the caller; pass SERVICE_CONFIG in its
        options (`grpc.service_config`) to keep the retries."""
        client = cls.__new__(cls)
        client._init(ShardMap.single(""), [channel], timeout)
        return client

    @classmethod
    def from_channels(cls, shard_map: Union[str, ShardMap],
                      channels: Mapping[str, grpc.Channel], *,
                      timeout: float = DEFAULT_TIMEOUT) -> "PresenceClient":
        """A sharded client over channels built by the caller, one per
        shard of `shard_map` (a ShardMap or its text), by shard name."""
        if not isinstance(shard_map, ShardMap):
            shard_map = ShardMap.parse(shard_map)
        if not shard_map.sharded:
            raise ValueError("from_channels() is for a sharded map; use "
                             "from_channel() for one presenced")
        names = [shard.name for shard in shard_map.shards]
        if set(channels) != set(names):
            raise ValueError(f"one channel per shard: the map has {names}, "
                             f"the channels are for {sorted(channels)}")
        client = cls.__new__(cls)
        client._init(shard_map, [channels[name] for name in names], timeout)
        return client

    def _init(self, shard_map: ShardMap, channels: List[grpc.Channel],
              timeout: float) -> None:
        self._channels = channels
        self._router = ShardRouter(
            shard_map, [pb_grpc.PresenceServiceStub(c) for c in channels])
        self.timeout = timeout

    @property
    def shard_map(self) -> ShardMap:
        """The shards this client routes to (one unsharded entry for a plain
        target)."""
        return self._router.shard_map

    @property
    def sharded(self) -> bool:
        return self._router.sharded

    @property
    def channels(self) -> Dict[str, grpc.Channel]:
        """Each shard's channel by name ({"": channel} unsharded)."""
        return {shard.name: channel for shard, channel
                in zip(self.shard_map.shards, self._channels)}

    @property
    def channel(self) -> grpc.Channel:
        """The channel to presenced; ValueError for a sharded client, which
        has one per shard (`channels`)."""
        if self.sharded:
            raise ValueError("a sharded client has a channel per shard: use "
                             ".channels")
        return self._channels[0]

    def _deadline(self, timeout: Optional[float]) -> float:
        return self.timeout if timeout is None else timeout

    def heartbeat(self, user_id: int, session_id: str = "",
                  idle: bool = False, *,
                  timeout: Optional[float] = None) -> HeartbeatResult:
        """Stamps the session with the server's clock: the user is online
        until `online_until`. Call again within `heartbeat_interval`. An
        empty session_id is the user's default session.

        `idle`: the user did not use this session (no input, window not
        focused, tab hidden) since its previous heartbeat. The user is AWAY
        once every live session has been idle for presenced's
        --away_after (10 minutes by default); a heartbeat without it is
        activity (ONLINE again). A session's first heartbeat is activity
        either way."""
        request = pb.HeartbeatRequest(user_id=user_id, session_id=session_id,
                                      idle=_flag("idle", idle))
        request.client_time.CopyFrom(_now())  # informational only
        return heartbeat_result(self._router.call_owner(
            "Heartbeat", user_id, request, self._deadline(timeout)))

    def batch_heartbeat(self, heartbeats: Iterable[HeartbeatItem], *,
                        timeout: Optional[float] = None) -> List[BatchItem]:
        """Many heartbeats in one call (BatchHeartbeat), e.g. from a gateway
        that collects them: each item is a user id (the user's default
        session), a (user_id, session_id) pair or a (user_id, session_id,
        idle) triple (heartbeat()'s `idle`), checked and applied on its
        own, as heartbeat() does.

        Returns one result per item, in order: a HeartbeatResult, or, for
        an item presenced refused (e.g. user_id 0), a PresenceError
        subclass instance (InvalidArgument("heartbeats[2].user_id must be
        > 0, got 0")), which is returned, not raised: the other items are
        applied. An error of the whole call raises (InvalidArgument for
        more items than presenced takes in one call, 10,000 by default;
        Unavailable when the changes could not be made durable). Retried
        on UNAVAILABLE, like heartbeat(): a repeated heartbeat is harmless.

        Sharded: the items are split by owner, one call per shard, all at
        once, and the results put back in order; an item's error names its
        shard, and its "heartbeats[K]" is the item's index in `heartbeats`.
        If one shard's whole call fails, each of its items gets that error
        (naming the shard) and the others are still applied; only if every
        shard's call fails does it raise, the first failure."""
        now = _now()
        requests = [_heartbeat_request(item, now) for item in heartbeats]
        return self._router.batch_heartbeat(requests, self._deadline(timeout))

    def mark_offline(self, user_id: int, session_id: str = "", *,
                     timeout: Optional[float] = None) -> MarkOfflineResult:
        """Ends the session now. An empty session_id ends every session of
        the user (logout everywhere). The user stays online while another
        session is live (`still_online`)."""
        request = pb.MarkOfflineRequest(user_id=user_id, session_id=session_id)
        response = self._router.call_owner("MarkOffline", user_id, request,
                                           self._deadline(timeout))
        return MarkOfflineResult(
            server_time=to_datetime(response.server_time),
            still_online=response.still_online,
            sessions_ended=response.sessions_ended)

    def set_status(self, user_id: int, availability: Union[
                       Availability, str, None] = None, *,
                   until: Optional[End] = None,
                   text: Optional[str] = None, emoji: Optional[str] = None,
                   expires: Optional[End] = None, clear: bool = False,
                   timeout: Optional[float] = None) -> StatusResult:
        """Sets what the user chose (SetStatus); returns their own view
        after the change (`presence`, the truth even while invisible) and
        the server's time of the change. Both parts persist in presenced
        and end on time by themselves.

        `availability`: "auto", "dnd" or "invisible" (or an Availability);
        None leaves it (and its end) as it is. `until`, with "dnd" or
        "invisible": when it returns to AUTO, a timezone-aware datetime or
        a timedelta from the server's now (the server's clock decides);
        None: until changed.

        `text` and/or `emoji` replace the custom status (the one not given
        is empty): text up to 100 characters, emoji a :short_code: or one
        emoji. `expires`: when it clears itself (a datetime or a timedelta
        from the server's now; None: never). `clear=True` removes it.

        InvalidArgument for an availability that is none of those, a naive
        datetime, `expires` without text or emoji, or, from presenced, a
        bad user_id, text or emoji, an end not in the future, clear with
        text or emoji, or nothing to set. TypeError for an end that is no
        datetime or timedelta. Retried on UNAVAILABLE (it is safe to
        repeat). Sharded: sent to the shard that owns the user."""
        request = pb.SetStatusRequest(user_id=user_id)
        if availability is not None:
            try:
                request.availability = Availability.parse(availability)
            except ValueError as error:
                raise _invalid(str(error)) from None
        if until is not None:
            if isinstance(until, datetime.timedelta):
                request.availability_for.CopyFrom(_duration("until", until))
            else:
                request.availability_until.CopyFrom(
                    _timestamp("until", until))
        if text is not None or emoji is not None:
            request.custom_status.text = _text("text", text)
            request.custom_status.emoji = _text("emoji", emoji)
            if isinstance(expires, datetime.timedelta):
                request.custom_status_for.CopyFrom(
                    _duration("expires", expires))
            elif expires is not None:
                request.custom_status.expires_at.CopyFrom(
                    _timestamp("expires", expires))
        elif expires is not None:
            raise _invalid("expires needs text or emoji: it is when the "
                           "custom status they set clears itself")
        request.clear_custom_status = _flag("clear", clear)
        response = self._router.call_owner("SetStatus", user_id, request,
                                           self._deadline(timeout))
        return StatusResult(presence=user_presence(response.presence),
                            server_time=to_datetime(response.server_time))

    def list_online_page(self, user_ids: Iterable[int] = (), *,
                         page_size: int = 0, page_token: str = "",
                         timeout: Optional[float] = None) -> OnlinePage:
        """One page of online users (of `user_ids`, if not empty),
        ascending. page_size 0 is the server's default (1,000). Pass
        `next_page_token` as `page_token` for the next page.

        Sharded: every shard concerned is asked at once for a page after
        the previous page's last id, and the smallest `page_size` ids of
        their merged answers make the page; total_online is the sum of the
        shards'. Every shard concerned must answer: one that fails raises
        its error, naming it (Unavailable for a shard that is down); a
        later call with the same page_token picks up where it was. There
        is no partial page: use list_online(partial=True) to list the
        shards that answer. An id <= 0 raises InvalidArgument
        ("user_ids[I] must be > 0, got X") before any shard is asked."""
        user_ids = list(user_ids)
        if self.sharded:
            return self._router.list_online_page(
                user_ids, page_size, page_token, self._deadline(timeout))
        request = pb.ListOnlineRequest(user_ids=user_ids,
                                       page_size=page_size,
                                       page_token=page_token)
        response = self._router.call(0, "ListOnline", request,
                                     self._deadline(timeout))
        return OnlinePage(
            online_users=list(response.online_users),
            next_page_token=response.next_page_token,
            server_time=to_datetime(response.server_time),
            total_online=response.total_online)

    def list_online(self, user_ids: Iterable[int] = (), *, page_size: int = 0,
                    timeout: Optional[float] = None,
                    partial: bool = False) -> List[int]:
        """Every online user (of `user_ids`, if not empty), ascending,
        following the pages. Each page is one call with its own deadline,
        taken at its own moment.

        Sharded: each shard concerned is listed page by page, all at once,
        and the lists merged. A shard that fails raises its error, naming
        it (Unavailable for a shard that is down). With `partial=True` the
        answer is an OnlineUsers (a list) of the shards that answered, and
        its `missing_shards` names the shards that were down or too slow
        (their users are left out); other errors, or every shard down,
        still raise. An id <= 0 raises InvalidArgument ("user_ids[I] must
        be > 0, got X") before any shard is asked. Unsharded,
        `partial=True` also returns an OnlineUsers, and every error
        raises."""
        user_ids = list(user_ids)
        if self.sharded:
            return self._router.list_online(user_ids, page_size,
                                            self._deadline(timeout), partial)
        online: List[int] = []
        token = ""
        while True:
            page = self.list_online_page(user_ids, page_size=page_size,
                                         page_token=token, timeout=timeout)
            online.extend(page.online_users)
            token = page.next_page_token
            if not token:
                return OnlineUsers(online) if partial else online

    def get_presence(self, user_ids: Iterable[int], *,
                     viewer_user_id: Optional[int] = None,
                     timeout: Optional[float] = None) -> PresenceLookup:
        """The presence of each user, in request order, including offline
        and never-seen users: status ONLINE, AWAY, DND or OFFLINE (`.online`
        is true for the first three), availability and its end, and custom
        status, as others see them. `viewer_user_id`: the user asking, whose
        own entry is then their own view, the truth also while invisible
        (None: nobody in particular; InvalidArgument if < 0).

        Sharded: each shard is asked for its users at once; server_time is
        the latest of theirs. A shard that fails raises its error, naming
        it: e.g. Unavailable("shard s1 (10.0.0.7:50051): ..."); if several
        fail, the error of the shard of the earliest id in `user_ids`. An
        id <= 0 raises InvalidArgument ("user_ids[I] must be > 0, got X",
        I counted in `user_ids`) before any shard is asked."""
        user_ids = list(user_ids)
        viewer = check_viewer(viewer_user_id)
        if self.sharded:
            return self._router.get_presence(user_ids, viewer,
                                             self._deadline(timeout))
        request = pb.GetPresenceRequest(user_ids=user_ids,
                                        viewer_user_id=viewer,
                                        rich_status=True)
        response = self._router.call(0, "GetPresence", request,
                                     self._deadline(timeout))
        return PresenceLookup(
            users=[user_presence(user) for user in response.users],
            server_time=to_datetime(response.server_time))

    def watch(self, user_ids: Iterable[int] = (), *,
              initial_backoff: float = 0.1, max_backoff: float = 5.0,
              on_disconnect: Optional[DisconnectCallback] = None,
              max_batch: int = DEFAULT_MAX_BATCH,
              rich_status: bool = False
              ) -> Union[PresenceWatch, ShardedWatch]:
        """Follows presence changes of `user_ids` (empty: everyone): an
        iterator of a Snapshot, then PresenceChanges, resuming by itself
        after a broken stream (see PresenceWatch). Close it when done.

        Without `rich_status`, only online/offline transitions, with status
        ONLINE or OFFLINE and reasons HEARTBEAT, MARK_OFFLINE and EXPIRED
        (an invisible user appearing is a HEARTBEAT, disappearing a
        MARK_OFFLINE). With it, also ONLINE <-> AWAY (ACTIVITY), DND and
        custom status changes (STATUS_SET, STATUS_EXPIRED), each change
        with its custom_status and DND end, and a Snapshot whose `users`
        holds each online user's presence.

        `max_batch`: how many changes presenced may send in one message
        (it caps this at 1,000; 0 or 1: one per message, as presenced sent
        them before batches). Batches let a watch of many users keep up
        with a busy server; the iterator yields one PresenceChange per
        change either way.

        Sharded: a ShardedWatch, one stream per shard (only the shards that
        own `user_ids`, if given) merged into one: a Snapshot of the union,
        then the changes of every shard, and a new merged Snapshot when one
        shard re-snapshots. on_disconnect is then called from the shard's
        own thread, with an error naming the shard. An id <= 0 in
        `user_ids` is InvalidArgument ("user_ids[I] must be > 0, got X"),
        raised from the first next() without opening any stream, as one
        presenced's refusal is."""
        user_ids = list(user_ids)
        rich_status = _flag("rich_status", rich_status)
        if self.sharded:
            return self._router.watch(user_ids, initial_backoff, max_backoff,
                                      on_disconnect, max_batch, rich_status)
        return PresenceWatch(self._router.stubs[0], user_ids, initial_backoff,
                             max_backoff, on_disconnect, max_batch=max_batch,
                             rich_status=rich_status)

    def close(self) -> None:
        """Closes the channels; calls in flight are cancelled."""
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> "PresenceClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _now() -> timestamp_pb2.Timestamp:
    timestamp = timestamp_pb2.Timestamp()
    timestamp.GetCurrentTime()
    return timestamp


def _heartbeat_request(item: HeartbeatItem,
                       now: timestamp_pb2.Timestamp) -> Any:
    """The HeartbeatRequest of a batch_heartbeat() item."""
    if isinstance(item, (tuple, list)) and len(item) in (2, 3):
        user_id, session_id, idle = (*item, False)[:3]
    else:
        user_id, session_id, idle = item, "", False
    try:
        if not isinstance(session_id, str):
            raise TypeError(f"session_id {session_id!r} is not a str")
        request = pb.HeartbeatRequest(user_id=operator.index(user_id),
                                      session_id=session_id,
                                      idle=_flag("idle", idle))
    except TypeError as error:
        raise TypeError("batch_heartbeat() takes user ids, (user_id, "
                        "session_id) pairs and (user_id, session_id, idle) "
                        f"triples, got {item!r}") from error
    request.client_time.CopyFrom(now)  # informational only
    return request


def _invalid(message: str) -> InvalidArgument:
    """An InvalidArgument found by the client, as presenced would say it."""
    return InvalidArgument(grpc.StatusCode.INVALID_ARGUMENT, message)


def _flag(name: str, value: Any) -> bool:
    """A bool argument; TypeError for anything else (a string "false" is
    true to Python)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def _text(name: str, value: Optional[str]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r}")
    return value


def _timestamp(name: str, moment: Any) -> timestamp_pb2.Timestamp:
    """The Timestamp of an end given as a datetime."""
    if not isinstance(moment, datetime.datetime):
        raise TypeError(f"{name} must be a datetime or a timedelta, got "
                        f"{moment!r}")
    if moment.utcoffset() is None:
        raise _invalid(f"{name} must be a timezone-aware datetime (e.g. "
                       "with tzinfo=datetime.timezone.utc), got the naive "
                       f"{moment.isoformat()}")
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromDatetime(moment.astimezone(datetime.timezone.utc))
    return timestamp


def _duration(name: str, length: datetime.timedelta) -> duration_pb2.Duration:
    """The Duration of an end given as a timedelta from the server's now."""
    if abs(length) > _MAX_DURATION:
        raise _invalid(f"{name} must be within {_MAX_DURATION.days} days "
                       f"(protobuf's Duration), got {length}")
    duration = duration_pb2.Duration()
    duration.FromTimedelta(length)
    return duration


# google.protobuf.Duration's range: about 10,000 years.
_MAX_DURATION = datetime.timedelta(seconds=315_576_000_000)
