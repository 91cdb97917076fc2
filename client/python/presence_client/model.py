"""What the client returns: plain dataclasses, no protobuf messages.

Times are timezone-aware UTC datetimes from the server's clock. Compare them
with the `server_time` of the same result, never with the local clock.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Iterable, List, Optional, Union

from google.protobuf import timestamp_pb2

from ._proto import pb


class Status(enum.IntEnum):
    UNSPECIFIED = pb.STATUS_UNSPECIFIED
    ONLINE = pb.STATUS_ONLINE
    OFFLINE = pb.STATUS_OFFLINE


    @classmethod
    def _missing_(cls, value):
        # A status added to the API after this client was built.
        return cls.UNSPECIFIED


class Reason(enum.IntEnum):
    UNSPECIFIED = pb.REASON_UNSPECIFIED
    HEARTBEAT = pb.REASON_HEARTBEAT
    MARK_OFFLINE = pb.REASON_MARK_OFFLINE
    EXPIRED = pb.REASON_EXPIRED

    @classmethod
    def _missing_(cls, value):
        return cls.UNSPECIFIED


@dataclass(frozen=True)
class HeartbeatResult:
    server_time: datetime.datetime
    # Online until then unless another heartbeat arrives.
    online_until: datetime.datetime
    # Send the next heartbeat within this.
    heartbeat_interval: datetime.timedelta
    # The user was offline before this heartbeat.
    became_online: bool


@dataclass(frozen=True)
class MarkOfflineResult:
    server_time: datetime.datetime
    # Another live session keeps the user online.
    still_online: bool
    # Live sessions this call ended (0 if they had already ended).
    sessions_ended: int


@dataclass(frozen=True)
class OnlinePage:
    """One page of ListOnline."""

    # Ascending.
    online_users: List[int]
    # Pass as page_token for the next page; empty on the last page.
    next_page_token: str
    server_time: datetime.datetime
    # Online users matching the request over all pages (sharded: the sum
    # over the shards).
    total_online: int


class OnlineUsers(list):
    """list_online(partial=True): the online users (ascending) of the shards
    that answered, a list; `missing_shards` names the shards that did not
    (down, or too slow), whose users it lacks."""

    def __init__(self, users: Iterable[int] = (),
                 missing_shards: Iterable[str] = ()) -> None:
        super().__init__(users)
        self.missing_shards: List[str] = list(missing_shards)

    @property
    def complete(self) -> bool:
        return not self.missing_shards

    def __repr__(self) -> str:
        return (f"OnlineUsers({list.__repr__(self)}, "
                f"missing_shards={self.missing_shards!r})")


@dataclass(frozen=True)
class UserPresence:
    user_id: int
    status: Status
    # None if never seen.
    last_seen: Optional[datetime.datetime]
    live_sessions: int
    # None while offline.
    online_until: Optional[datetime.datetime]

    @property
    def online(self) -> bool:
        return self.status == Status.ONLINE


@dataclass(frozen=True)
class PresenceLookup:
    """GetPresence: one entry per requested id, in request order."""

    users: List[UserPresence]
    server_time: datetime.datetime


@dataclass(frozen=True)
class Snapshot:
    """Who of the watched users is online: replaces everything known before.

    From a watch of a sharded deployment it is the union over the shards;
    its epoch then names every shard's ("s0:EPOCH,s1:EPOCH,...") and its
    sequence is the sum of theirs."""

    # Ascending.
    online_users: List[int]
    server_time: datetime.datetime
    epoch: str
    sequence: int


@dataclass(frozen=True)
class PresenceChange:
    """One online/offline transition, after the latest Snapshot."""

    user_id: int
    status: Status
    at: datetime.datetime
    reason: Reason
    epoch: str
    # This change's own sequence, also when it came in a batch of several.
    sequence: int
    # The shard it came from, whose epoch and sequence these are (a watch of
    # a sharded deployment); "" from one unsharded presenced.
    shard: str = ""


WatchEvent = Union[Snapshot, PresenceChange]


def to_datetime(timestamp: timestamp_pb2.Timestamp) -> datetime.datetime:
    return timestamp.ToDatetime(tzinfo=datetime.timezone.utc)


def optional_datetime(message, field: str) -> Optional[datetime.datetime]:
    if not message.HasField(field):
        return None
    return to_datetime(getattr(message, field))


def heartbeat_result(message) -> HeartbeatResult:
    """Of a HeartbeatResponse."""
    return HeartbeatResult(
        server_time=to_datetime(message.server_time),
        online_until=to_datetime(message.online_until),
        heartbeat_interval=message.heartbeat_interval.ToTimedelta(),
        became_online=message.became_online)


def user_presence(message) -> UserPresence:
    return UserPresence(
        user_id=message.user_id,
        status=Status(message.status),
        last_seen=optional_datetime(message, "last_seen"),
        live_sessions=message.live_sessions,
        online_until=optional_datetime(message, "online_until"))


def _change(change, epoch: str, sequence: int) -> PresenceChange:
    return PresenceChange(
        user_id=change.user_id, status=Status(change.status),
        at=to_datetime(change.at), reason=Reason(change.reason),
        epoch=epoch, sequence=sequence)


def watch_events(message) -> List[WatchEvent]:
    """The events of a WatchPresenceResponse, in order: its Snapshot, its one
    change, or each change of its ChangeBatch. Each change has its own
    sequence (a presenced older than PresenceChange.sequence sends only
    single changes, with the message's). Empty for a kind newer than this
    client."""
    kind = message.WhichOneof("event")
    if kind == "snapshot":
        return [Snapshot(
            online_users=list(message.snapshot.online_users),
            server_time=to_datetime(message.snapshot.server_time),
            epoch=message.epoch, sequence=message.sequence)]
    if kind == "change":
        return [_change(message.change, message.epoch,
                        message.change.sequence or message.sequence)]
    if kind == "changes":
        return [_change(change, message.epoch,
                        change.sequence or message.sequence)
                for change in message.changes.changes]
    return []
