"""PresenceClient: typed calls to presence.v1.PresenceService, of one
presenced or of a sharded deployment (routed by the shard map)."""

from __future__ import annotations

import base64
import binascii
import bisect
import collections
import heapq
import json
import os
from typing import (Any, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import grpc
from google.protobuf import timestamp_pb2

from ._proto import pb, pb_grpc
from .errors import (InvalidArgument, PresenceError, from_rpc_error,
                     shard_error)
from .model import (HeartbeatResult, MarkOfflineResult, OnlinePage,
                    OnlineUsers, PresenceLookup, to_datetime, user_presence)
from .shards import ShardMap
from .watch import (DEFAULT_MAX_BATCH, DisconnectCallback, PresenceWatch,
                    ShardedWatch)

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


# ListOnline's page size when the request gives none (presenced's default),
# and its largest.
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000

# A shard that failed with one of these is left out of a partial=True
# listing (it is down, shutting down, overloaded or too slow); any other
# error is about the request and is raised.
_SHARD_DOWN_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
})

_SERVER_TOKEN_PREFIX = "after:"
_SHARDED_TOKEN_PREFIX = "sharded-after:"


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

    Given a sharded deployment ("s0=HOST:PORT,s1=HOST:PORT,..." or a DNS
    pattern, see ShardMap), it keeps a channel per shard and routes each
    call by the rendezvous hash of the user id, as presenced's --shards
    does: heartbeat and mark_offline go to the user's shard; get_presence
    and list_online ask the shards concerned at once and merge their
    answers; watch() merges one stream per shard (ShardedWatch). An error
    of one shard is raised as its PresenceError subclass, with a message
    that names it ("shard s1 (10.0.0.7:50051): ...") and `.shard` set; a
    shard being down does not affect calls about other shards' users.
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
        self._shard_map = shard_map
        self._channels = channels
        self._stubs = [pb_grpc.PresenceServiceStub(c) for c in channels]
        self._channel = channels[0]
        self._stub = self._stubs[0]
        self.timeout = timeout

    @property
    def shard_map(self) -> ShardMap:
        """The shards this client routes to (one unsharded entry for a plain
        target)."""
        return self._shard_map

    @property
    def sharded(self) -> bool:
        return self._shard_map.sharded

    @property
    def channels(self) -> Dict[str, grpc.Channel]:
        """Each shard's channel by name ({"": channel} unsharded)."""
        return {shard.name: channel for shard, channel
                in zip(self._shard_map.shards, self._channels)}

    @property
    def channel(self) -> grpc.Channel:
        """The channel to presenced; ValueError for a sharded client, which
        has one per shard (`channels`)."""
        if self.sharded:
            raise ValueError("a sharded client has a channel per shard: use "
                             ".channels")
        return self._channel

    def _call(self, method, request, timeout: Optional[float]):
        try:
            return method(request,
                          timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    # --- sharded routing -------------------------------------------------

    def _shard_error(self, index: int, error: PresenceError) -> PresenceError:
        shard = self._shard_map.shards[index]
        return shard_error(error, shard.name, shard.target)

    def _call_owner(self, method: str, user_id: int, request,
                    timeout: Optional[float]):
        """`method` of the shard that owns `user_id`; errors name it."""
        if not self.sharded:
            return self._call(getattr(self._stub, method), request, timeout)
        index = self._shard_map.owner_index(user_id)
        try:
            return self._call(getattr(self._stubs[index], method), request,
                              timeout)
        except PresenceError as error:
            raise self._shard_error(index, error) from error.__cause__

    def _split(self, user_ids: Sequence[int]) -> Dict[int, List[int]]:
        """The ids by owning shard's index (shards in map order), each
        shard's in request order."""
        owner = self._shard_map.owner_index
        groups: Dict[int, List[int]] = {}
        for user_id in user_ids:
            groups.setdefault(owner(user_id), []).append(user_id)
        return dict(sorted(groups.items()))

    def _fan_out(self, method: str, requests: Mapping[int, Any],
                 timeout: Optional[float]) -> Dict[int, Any]:
        """`method` on each shard (by index) at once, with one deadline;
        each shard's response, or its error (naming the shard)."""
        deadline = self.timeout if timeout is None else timeout
        futures = {index: getattr(self._stubs[index], method).future(
                       request, timeout=deadline)
                   for index, request in requests.items()}
        results: Dict[int, Any] = {}
        for index, future in futures.items():
            try:
                results[index] = future.result()
            except grpc.RpcError as rpc_error:
                error = self._shard_error(index, from_rpc_error(rpc_error))
                error.__cause__ = rpc_error
                results[index] = error
        return results

    @staticmethod
    def _raise_first(results: Mapping[int, Any]) -> None:
        for result in results.values():
            if isinstance(result, PresenceError):
                raise result

    def heartbeat(self, user_id: int, session_id: str = "", *,
                  timeout: Optional[float] = None) -> HeartbeatResult:
        """Stamps the session with the server's clock: the user is online
        until `online_until`. Call again within `heartbeat_interval`. An
        empty session_id is the user's default session."""
        request = pb.HeartbeatRequest(user_id=user_id, session_id=session_id)
        request.client_time.CopyFrom(_now())  # informational only
        response = self._call_owner("Heartbeat", user_id, request, timeout)
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
        response = self._call_owner("MarkOffline", user_id, request,
                                    timeout)
        return MarkOfflineResult(
            server_time=to_datetime(response.server_time),
            still_online=response.still_online,
            sessions_ended=response.sessions_ended)

    def list_online_page(self, user_ids: Iterable[int] = (), *,
                         page_size: int = 0, page_token: str = "",
                         timeout: Optional[float] = None,
                         partial: bool = False) -> OnlinePage:
        """One page of online users (of `user_ids`, if not empty),
        ascending. page_size 0 is the server's default (1,000). Pass
        `next_page_token` as `page_token` for the next page.

        Sharded: every shard concerned is asked at once for a page after
        the previous page's last id, and the smallest `page_size` ids of
        their merged answers make the page; total_online is the sum of the
        shards'. A shard that fails raises its error, naming it; with
        `partial=True` a shard that is down or too slow is left out instead,
        named in the page's `missing_shards`, and left out of the later
        pages of this listing too (they ask it for its count only). If no
        shard answers, the error raises. An unsharded client ignores
        `partial`."""
        if self.sharded:
            return self._list_online_page_sharded(
                list(user_ids), page_size, page_token, timeout, partial)
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
        still raise. Unsharded, `partial=True` also returns an
        OnlineUsers, and every error raises."""
        user_ids = list(user_ids)
        if self.sharded:
            return self._list_online_sharded(user_ids, page_size, timeout,
                                             partial)
        online: List[int] = []
        token = ""
        while True:
            page = self.list_online_page(user_ids, page_size=page_size,
                                         page_token=token, timeout=timeout)
            online.extend(page.online_users)
            token = page.next_page_token
            if not token:
                return OnlineUsers(online) if partial else online

    def _list_online_sharded(self, user_ids: List[int], page_size: int,
                             timeout: Optional[float],
                             partial: bool) -> List[int]:
        if user_ids:
            groups = self._split(user_ids)
        else:
            groups = {index: [] for index in range(len(self._shard_map))}
        tokens = {index: "" for index in groups}  # shards not done yet
        lists: Dict[int, List[int]] = {index: [] for index in groups}
        missing: List[int] = []
        while tokens:
            results = self._fan_out("ListOnline", {
                index: pb.ListOnlineRequest(user_ids=groups[index],
                                            page_size=page_size,
                                            page_token=token)
                for index, token in tokens.items()}, timeout)
            for index, result in results.items():
                if isinstance(result, PresenceError):
                    if not partial or result.code not in _SHARD_DOWN_CODES:
                        raise result
                    missing.append(index)
                    del tokens[index], lists[index]
                    if not lists:  # no shard answered: no partial answer
                        raise result
                    continue
                lists[index].extend(result.online_users)
                if result.next_page_token:
                    tokens[index] = result.next_page_token
                else:
                    del tokens[index]
        online = sorted(set(heapq.merge(*lists.values())))
        if not partial:
            return online
        return OnlineUsers(online, [self._shard_map.shards[index].name
                                    for index in sorted(missing)])

    def _list_online_page_sharded(self, user_ids: List[int], page_size: int,
                                  page_token: str, timeout: Optional[float],
                                  partial: bool) -> OnlinePage:
        """The sharded page (list_online_page), as the C++ client makes it.

        Every shard that takes part (owns some of user_ids, or all of them
        without) and is not done lists page_size users after the token's
        cursor; the page is the smallest ids of their union, up to the
        smallest last id of a shard that has more (beyond it, that shard's
        next ids are unknown). Every id up to the page's last one has then
        been listed by every shard: the next page starts after it
        everywhere. A shard that answered everything it has after the
        cursor, and whose ids all made the page, is done. Done shards are
        asked for one id only: their count still belongs in total_online.
        """
        shards = self._shard_map.shards
        after, done_names = _decode_sharded_token(page_token)
        done = set()
        for name in done_names:
            index = self._shard_map.index_of(name)
            if index is None:
                raise InvalidArgument(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f'page_token names shard "{name}", which is not in the '
                    "shard map")
            done.add(index)
        if user_ids:
            groups = self._split(user_ids)
            # Nothing of the others is asked for.
            done |= set(range(len(shards))) - set(groups)
        else:
            groups = {index: [] for index in range(len(shards))}
        server_token = _server_token(after) if after else ""
        results = self._fan_out("ListOnline", {
            index: pb.ListOnlineRequest(
                user_ids=ids, page_size=1 if index in done else page_size,
                page_token=server_token)
            for index, ids in groups.items()}, timeout)

        total = 0
        times = []
        missing: List[str] = []
        pages: Dict[int, Tuple[List[int], bool]] = {}  # ids, has more
        for index, result in results.items():
            if isinstance(result, PresenceError):
                if not partial or result.code not in _SHARD_DOWN_CODES:
                    raise result
                missing.append(shards[index].name)
                # Left out of the rest of this listing too: pages that kept
                # asking a shard that stays down would never end.
                done.add(index)
                continue
            total += result.total_online
            times.append(to_datetime(result.server_time))
            if index not in done:
                pages[index] = (list(result.online_users),
                                bool(result.next_page_token))
        if not times:  # partial, and no shard answered
            raise results[min(results)]

        bound = min((ids[-1] for ids, more in pages.values() if more and ids),
                    default=None)
        users = sorted(set(heapq.merge(*(ids for ids, _ in pages.values()))))
        if bound is not None:
            users = users[:bisect.bisect_right(users, bound)]
        limit = min(page_size, MAX_PAGE_SIZE) if page_size > 0 else \
            DEFAULT_PAGE_SIZE
        del users[limit:]
        if users:
            after = users[-1]
        for index, (ids, more) in pages.items():
            # A shard with "more" but no id cannot say where: done.
            if not ids or (not more and ids[-1] <= after):
                done.add(index)
        next_token = ""
        if len(done) < len(shards):
            next_token = _sharded_token(after, [
                shards[index].name for index in sorted(done)])
        return OnlinePage(online_users=users, next_page_token=next_token,
                          server_time=max(times), total_online=total,
                          missing_shards=tuple(missing))

    def get_presence(self, user_ids: Iterable[int], *,
                     timeout: Optional[float] = None) -> PresenceLookup:
        """The presence of each user, in request order, including offline
        and never-seen users.

        Sharded: each shard is asked for its users at once; server_time is
        the latest of theirs. A shard that fails raises its error, naming
        it: e.g. Unavailable("shard s1 (10.0.0.7:50051): ...")."""
        user_ids = list(user_ids)
        if self.sharded:
            return self._get_presence_sharded(user_ids, timeout)
        request = pb.GetPresenceRequest(user_ids=user_ids)
        response = self._call(self._stub.GetPresence, request, timeout)
        return PresenceLookup(
            users=[user_presence(user) for user in response.users],
            server_time=to_datetime(response.server_time))

    def _get_presence_sharded(self, user_ids: List[int],
                              timeout: Optional[float]) -> PresenceLookup:
        owners = [self._shard_map.owner_index(u) for u in user_ids]
        groups: Dict[int, List[int]] = {}
        for user_id, owner in zip(user_ids, owners):
            groups.setdefault(owner, []).append(user_id)
        if not groups:
            groups[0] = []  # still a server_time, from one shard
        results = self._fan_out("GetPresence", {
            index: pb.GetPresenceRequest(user_ids=ids)
            for index, ids in sorted(groups.items())}, timeout)
        self._raise_first(results)
        for index, response in results.items():
            if len(response.users) != len(groups[index]):
                raise self._shard_error(index, PresenceError(
                    grpc.StatusCode.INTERNAL,
                    f"GetPresence answered {len(response.users)} users for "
                    f"{len(groups[index])} ids"))
        answers = {index: iter(response.users)
                   for index, response in results.items()}
        return PresenceLookup(
            users=[user_presence(next(answers[owner])) for owner in owners],
            server_time=max(to_datetime(response.server_time)
                            for response in results.values()))

    def watch(self, user_ids: Iterable[int] = (), *,
              initial_backoff: float = 0.1, max_backoff: float = 5.0,
              on_disconnect: Optional[DisconnectCallback] = None,
              max_batch: int = DEFAULT_MAX_BATCH
              ) -> Union[PresenceWatch, ShardedWatch]:
        """Follows presence changes of `user_ids` (empty: everyone): an
        iterator of a Snapshot, then PresenceChanges, resuming by itself
        after a broken stream (see PresenceWatch). Close it when done.

        `max_batch`: how many changes presenced may send in one message
        (it caps this at 1,000; 0 or 1: one per message, as presenced sent
        them before batches). Batches let a watch of many users keep up
        with a busy server; the iterator yields one PresenceChange per
        change either way.

        Sharded: a ShardedWatch, one stream per shard (only the shards that
        own `user_ids`, if given) merged into one: a Snapshot of the union,
        then the changes of every shard, and a new merged Snapshot when one
        shard re-snapshots. on_disconnect is then called from the shard's
        own thread, with an error naming the shard."""
        user_ids = list(user_ids)
        if not self.sharded:
            return PresenceWatch(self._stub, user_ids, initial_backoff,
                                 max_backoff, on_disconnect,
                                 max_batch=max_batch)
        if not 0 <= max_batch < 2**32:
            raise ValueError(
                f"max_batch must be in [0, 2^32), got {max_batch}")
        if user_ids:
            groups = self._split(user_ids)
        else:
            groups = {index: [] for index in range(len(self._shard_map))}
        parts = [(self._shard_map.shards[index].name,
                  self._shard_map.shards[index].target, self._stubs[index],
                  ids) for index, ids in groups.items()]
        return ShardedWatch(parts, initial_backoff, max_backoff,
                            on_disconnect, max_batch=max_batch)

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


def _server_token(after: int) -> str:
    """presenced's ListOnline page_token for the page after user `after`."""
    raw = f"{_SERVER_TOKEN_PREFIX}{after}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _sharded_token(after: int, done: Sequence[str]) -> str:
    """A sharded client's page_token: the global cursor and the shards with
    nothing after it, as urlsafe base64 (no padding) of
    "sharded-after:<after>;done:<name>,<name>". The C++ client's is the
    same."""
    raw = f"{_SHARDED_TOKEN_PREFIX}{after};done:{','.join(done)}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_sharded_token(token: str) -> Tuple[int, List[str]]:
    """(after, done shard names) of a sharded page_token; (0, []) for the
    first page. InvalidArgument for anything else, as presenced says of its
    tokens."""
    if not token:
        return 0, []
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        text = raw.decode("ascii")
        if not text.startswith(_SHARDED_TOKEN_PREFIX):
            raise ValueError(text)
        cursor, separator, done = text[len(_SHARDED_TOKEN_PREFIX):].partition(
            ";done:")
        if not separator or not cursor.isdigit() or int(cursor) <= 0:
            raise ValueError(text)
        return int(cursor), done.split(",") if done else []
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument(
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token is not a token from a previous ListOnline response "
            "of this sharded deployment; pass next_page_token unchanged, or "
            "empty for the first page") from None
