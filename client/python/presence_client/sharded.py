"""How PresenceClient talks to its shards: each call sent to the owner of
its user, calls about several users split by owner and sent to the shards
at once, and their answers merged into what one presenced would have
answered (as the C++ client does, client/sharded_calls.cc). Also the
sharded page token.

An unsharded client has one "shard" (named "") and goes through the same
calls; its errors are then not renamed.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import heapq
import operator
from typing import (Any, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import grpc

from ._proto import pb
from .errors import (InvalidArgument, PresenceError, error_for,
                     from_rpc_error, shard_error, status_code)
from .model import (HeartbeatResult, OnlinePage, OnlineUsers, PresenceLookup,
                    heartbeat_result, to_datetime, user_presence)
from .shards import ShardMap
from .watch import DisconnectCallback, ShardedWatch

# ListOnline's page size when the request gives none (presenced's default),
# and its largest.
DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000

# A shard that failed with one of these is left out of a
# list_online(partial=True) (it is down, shutting down, overloaded or too
# slow); any other error is about the request and is raised.
_SHARD_DOWN_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
})

_SERVER_TOKEN_PREFIX = "after:"
_SHARDED_TOKEN_PREFIX = "sharded-after:"

# One item of batch_heartbeat's answer: its result, or why it was refused.
BatchItem = Union[HeartbeatResult, PresenceError]


class ShardRouter:
    """The stubs of a shard map's shards (one per shard, in map order),
    and the calls that route to them. Every `timeout` here is the call's
    deadline in seconds, already resolved by the client."""

    def __init__(self, shard_map: ShardMap, stubs: Sequence[Any]) -> None:
        self.shard_map = shard_map
        self.stubs = list(stubs)

    @property
    def sharded(self) -> bool:
        return self.shard_map.sharded

    def name_error(self, index: int, error: PresenceError) -> PresenceError:
        """`error` of shard `index` as the client raises it: naming the
        shard if sharded (see errors.shard_error), unchanged if not."""
        if not self.sharded:
            return error
        shard = self.shard_map.shards[index]
        return shard_error(error, shard.name, shard.target)

    def call(self, index: int, method: str, request, timeout: float):
        """`method` of shard `index`; a failure raises its PresenceError,
        naming the shard."""
        try:
            return getattr(self.stubs[index], method)(request,
                                                      timeout=timeout)
        except grpc.RpcError as rpc_error:
            error = self.name_error(index, from_rpc_error(rpc_error))
            raise error from rpc_error

    def call_owner(self, method: str, user_id: int, request,
                   timeout: float):
        """`method` of the shard that owns `user_id`."""
        index = self.shard_map.owner_index(user_id) if self.sharded else 0
        return self.call(index, method, request, timeout)

    def split(self, user_ids: Sequence[int]) -> Dict[int, List[int]]:
        """The ids by owning shard's index (shards in map order), each
        shard's in request order."""
        groups = self.positions(user_ids)
        return {index: [user_ids[p] for p in positions]
                for index, positions in sorted(groups.items())}

    def positions(self, user_ids: Sequence[int]) -> Dict[int, List[int]]:
        """The positions in `user_ids` by owning shard's index, shards in
        the order of their first user, each shard's positions ascending."""
        owner = self.shard_map.owner_index
        groups: Dict[int, List[int]] = {}
        for position, user_id in enumerate(user_ids):
            groups.setdefault(owner(user_id), []).append(position)
        return groups

    def fan_out(self, method: str, requests: Mapping[int, Any],
                timeout: float) -> Dict[int, Any]:
        """`method` on each shard (by index) at once, with one deadline;
        each shard's response, or its error (naming the shard), in the
        order of `requests`."""
        futures = {index: getattr(self.stubs[index], method).future(
                       request, timeout=timeout)
                   for index, request in requests.items()}
        results: Dict[int, Any] = {}
        for index, future in futures.items():
            try:
                results[index] = future.result()
            except grpc.RpcError as rpc_error:
                error = self.name_error(index, from_rpc_error(rpc_error))
                error.__cause__ = rpc_error
                results[index] = error
        return results

    def _miscount(self, index: int, method: str, got: int, wanted: str
                  ) -> PresenceError:
        """A shard answered the wrong number of items: its error."""
        return self.name_error(index, PresenceError(
            grpc.StatusCode.INTERNAL, f"{method} answered {got} {wanted}"))

    # --- calls about several users ----------------------------------------

    def batch_heartbeat(self, requests: List[Any],
                        timeout: float) -> List[BatchItem]:
        """BatchHeartbeat of `requests` (HeartbeatRequests), split by owner
        and sent to the shards at once; one result per request, in order.

        The items of a shard whose whole call failed get its error (the
        same instance each); each refused item gets its own error, with
        the server's code and message, and, sharded, the shard named and
        "heartbeats[K]" counted in the caller's request. If every shard's
        call failed (unsharded: the call failed), the first failure, in the
        order of the shards' first items, is raised. No request: one shard
        is asked, to answer (or fail) as one presenced would."""
        parts = self.positions([r.user_id for r in requests]) or {0: []}
        answers = self.fan_out("BatchHeartbeat", {
            index: pb.BatchHeartbeatRequest(
                heartbeats=[requests[p] for p in positions])
            for index, positions in parts.items()}, timeout)
        results: List[Any] = [None] * len(requests)
        failures: List[PresenceError] = []
        for index, answer in answers.items():
            positions = parts[index]
            if (not isinstance(answer, PresenceError) and
                    len(answer.results) != len(positions)):
                answer = self._miscount(
                    index, "BatchHeartbeat", len(answer.results),
                    f"results to {len(positions)} heartbeats")
            if isinstance(answer, PresenceError):
                failures.append(answer)
                for position in positions:
                    results[position] = answer
                continue
            for k, (position, item) in enumerate(zip(positions,
                                                     answer.results)):
                results[position] = self._batch_item(index, item, k,
                                                     position)
        if len(failures) == len(answers):
            raise failures[0]
        return results

    def _batch_item(self, index: int, item, shard_position: int,
                    position: int) -> BatchItem:
        """One BatchHeartbeatResult of shard `index`, whose request had it
        at `shard_position` and the caller's at `position`."""
        kind = item.WhichOneof("result")
        if kind == "heartbeat":
            return heartbeat_result(item.heartbeat)
        if kind == "error":
            error = error_for(status_code(item.error.code),
                              _reindexed(item.error.message, shard_position,
                                         position))
        else:  # a kind of result newer than this client
            error = PresenceError(grpc.StatusCode.UNKNOWN,
                                  f"heartbeats[{position}]: no result")
        return self.name_error(index, error)

    def get_presence(self, user_ids: List[int], viewer_user_id: int,
                     timeout: float) -> PresenceLookup:
        """GetPresence (rich_status) split by owner, all shards at once,
        merged back in request order. An id <= 0 raises InvalidArgument
        before any shard is asked; a shard failing raises its error, the
        first in the order of the shards' first ids if several fail (as the
        C++ client). viewer_user_id goes only to the shard that owns the
        viewer, the one shard that can have the viewer's own entry."""
        check_user_ids(user_ids)
        # Shards in the order of their first id: the order failures count in.
        parts = self.positions(user_ids) or {0: []}
        viewer_shard = (self.shard_map.owner_index(viewer_user_id)
                        if viewer_user_id else None)
        results = self.fan_out("GetPresence", {
            index: pb.GetPresenceRequest(
                user_ids=[user_ids[p] for p in positions],
                viewer_user_id=(viewer_user_id if index == viewer_shard
                                else 0),
                rich_status=True)
            for index, positions in parts.items()}, timeout)
        users: List[Any] = [None] * len(user_ids)
        for index, response in results.items():
            positions = parts[index]
            if (not isinstance(response, PresenceError) and
                    len(response.users) != len(positions)):
                response = self._miscount(index, "GetPresence",
                                          len(response.users),
                                          f"users for {len(positions)} ids")
            if isinstance(response, PresenceError):
                raise response
            for position, user in zip(positions, response.users):
                users[position] = user_presence(user)
        return PresenceLookup(
            users=users,
            server_time=max(to_datetime(response.server_time)
                            for response in results.values()))

    def _listed_shards(self, user_ids: List[int]) -> Dict[int, List[int]]:
        """The shards a listing or watch asks (those owning some of
        user_ids, or all without, in map order), with their ids."""
        if user_ids:
            return self.split(user_ids)
        return {index: [] for index in range(len(self.shard_map))}

    def list_online(self, user_ids: List[int], page_size: int,
                    timeout: float, partial: bool) -> List[int]:
        """Every online user: each shard concerned is listed page by page,
        all at once, and the lists merged (PresenceClient.list_online).
        An id <= 0 raises InvalidArgument before any shard is asked."""
        check_user_ids(user_ids)
        groups = self._listed_shards(user_ids)
        tokens = {index: "" for index in groups}  # shards not done yet
        lists: Dict[int, List[int]] = {index: [] for index in groups}
        missing: List[int] = []
        while tokens:
            results = self.fan_out("ListOnline", {
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
        return OnlineUsers(online, [self.shard_map.shards[index].name
                                    for index in sorted(missing)])

    def list_online_page(self, user_ids: List[int], page_size: int,
                         page_token: str, timeout: float) -> OnlinePage:
        """The sharded page (PresenceClient.list_online_page), as the C++
        client makes it.

        Every shard that takes part (owns some of user_ids, or all of them
        without) and is not done lists page_size users after the token's
        cursor; the page is the smallest ids of their union, up to the
        smallest last id of a shard that has more (beyond it, that shard's
        next ids are unknown). Every id up to the page's last one has then
        been listed by every shard: the next page starts after it
        everywhere. A shard that answered everything it has after the
        cursor, and whose ids all made the page, is done. Done shards are
        asked for one id only: their count still belongs in total_online.

        Every shard taking part must answer: one that fails raises its
        error (the first in map order), as the C++ client does. There is
        no partial page: a shard left out of one page could not be listed
        on the later ones without listing again from the start.
        """
        shards = self.shard_map.shards
        check_user_ids(user_ids)
        after, done_names = decode_sharded_token(page_token)
        done = set()
        for name in done_names:
            index = self.shard_map.index_of(name)
            if index is None:
                raise InvalidArgument(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f'page_token names shard "{name}", which is not in the '
                    "shard map")
            done.add(index)
        groups = self._listed_shards(user_ids)
        # Nothing of the others is asked for.
        done |= set(range(len(shards))) - set(groups)
        server_token = server_page_token(after) if after else ""
        results = self.fan_out("ListOnline", {
            index: pb.ListOnlineRequest(
                user_ids=ids, page_size=1 if index in done else page_size,
                page_token=server_token)
            for index, ids in groups.items()}, timeout)

        total = 0
        times = []
        pages: Dict[int, Tuple[List[int], bool]] = {}  # ids, has more
        for index, result in results.items():
            if isinstance(result, PresenceError):
                raise result
            total += result.total_online
            times.append(to_datetime(result.server_time))
            if index not in done:
                pages[index] = (list(result.online_users),
                                bool(result.next_page_token))

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
            next_token = sharded_page_token(after, [
                shards[index].name for index in sorted(done)])
        return OnlinePage(online_users=users, next_page_token=next_token,
                          server_time=max(times), total_online=total)

    def watch(self, user_ids: List[int], initial_backoff: float,
              max_backoff: float,
              on_disconnect: Optional[DisconnectCallback],
              max_batch: int, rich_status: bool = False) -> ShardedWatch:
        """One stream per shard concerned, merged (ShardedWatch)."""
        if not 0 <= max_batch < 2**32:
            raise ValueError(
                f"max_batch must be in [0, 2^32), got {max_batch}")
        shards = self.shard_map.shards
        try:
            check_user_ids(user_ids)
        except InvalidArgument as error:
            # Raised from the watch's next(), as one presenced's would be;
            # no stream is opened.
            return ShardedWatch.failed(error, on_disconnect)
        parts = [(shards[index].name, shards[index].target,
                  self.stubs[index], ids)
                 for index, ids in self._listed_shards(user_ids).items()]
        return ShardedWatch(parts, initial_backoff, max_backoff,
                            on_disconnect, max_batch=max_batch,
                            rich_status=rich_status)


def check_user_ids(user_ids: Sequence[int]) -> None:
    """presenced's check of user_ids, made before they are split by shard
    so that the index it names is the caller's (as the C++ client's
    CheckUserIds): InvalidArgument("user_ids[I] must be > 0, got X")."""
    for index, user_id in enumerate(user_ids):
        if user_id <= 0:
            raise InvalidArgument(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"user_ids[{index}] must be > 0, got {user_id}")


def check_viewer(viewer_user_id: Optional[int]) -> int:
    """GetPresence's viewer_user_id of get_presence()'s argument: 0 for
    None; InvalidArgument for an id < 0, TypeError for no integer."""
    if viewer_user_id is None:
        return 0
    try:
        viewer = operator.index(viewer_user_id)
    except TypeError:
        raise TypeError("viewer_user_id must be a user id (an int) or None, "
                        f"got {viewer_user_id!r}") from None
    if viewer < 0:
        raise InvalidArgument(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"viewer_user_id must be > 0 (or None: nobody in particular), "
            f"got {viewer}")
    return viewer


def _reindexed(message: str, shard_position: int, position: int) -> str:
    """A per-item error's message with the item's index in the shard's
    request ("heartbeats[K]...") replaced by its index in the caller's."""
    prefix = f"heartbeats[{shard_position}]"
    if not message.startswith(prefix):
        return message
    return f"heartbeats[{position}]{message[len(prefix):]}"


# --- page tokens ----------------------------------------------------------


def server_page_token(after: int) -> str:
    """presenced's ListOnline page_token for the page after user `after`."""
    raw = f"{_SERVER_TOKEN_PREFIX}{after}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def sharded_page_token(after: int, done: Iterable[str]) -> str:
    """A sharded client's page_token: the global cursor and the shards with
    nothing after it, as urlsafe base64 (no padding) of
    "sharded-after:<after>;done:<name>,<name>". The C++ client's is the
    same."""
    raw = f"{_SHARDED_TOKEN_PREFIX}{after};done:{','.join(done)}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_sharded_token(token: str) -> Tuple[int, List[str]]:
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
