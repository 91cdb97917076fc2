"""What the client returns: plain dataclasses, no protobuf messages.

Times are timezone-aware UTC datetimes from the server's clock. Compare them
with the `server_time` of the same result, never with the local clock.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Union

from google.protobuf import timestamp_pb2

from ._proto import pb


class Status(enum.IntEnum):
    """What others see of a user (the user's own view: the truth). ONLINE,
    AWAY and DND all count as online (`online`); an INVISIBLE user is
    OFFLINE to everyone else. `label` is the lower-case name ("online",
    "away", "dnd", "offline"), as the Django app answers it."""

    UNSPECIFIED = pb.STATUS_UNSPECIFIED
    # Online and active: some live session was used within --away_after.
    ONLINE = pb.STATUS_ONLINE
    # No live session, or invisible.
    OFFLINE = pb.STATUS_OFFLINE
    # Online, but every live session has been idle for --away_after.
    AWAY = pb.STATUS_AWAY
    # Online, availability DND.
    DND = pb.STATUS_DND

    @classmethod
    def _missing_(cls, value):
        # A status added to the API after this client was built.
        return cls.UNSPECIFIED

    @property
    def online(self) -> bool:
        """ONLINE, AWAY or DND: what ListOnline lists."""
        return self in (Status.ONLINE, Status.AWAY, Status.DND)

    @property
    def label(self) -> str:
        return self.name.lower()


class Availability(enum.IntEnum):
    """What a user chose (set_status). `label`: "auto", "dnd",
    "invisible"; `parse()` takes those or a member."""

    # Only in a request: leave it as it is.
    UNSPECIFIED = pb.AVAILABILITY_UNSPECIFIED
    # Status follows presence and activity: ONLINE, AWAY or OFFLINE.
    AUTO = pb.AVAILABILITY_AUTO
    # Do not disturb: DND to others whenever the user is online.
    DND = pb.AVAILABILITY_DND
    # OFFLINE to everyone else; others see AUTO.
    INVISIBLE = pb.AVAILABILITY_INVISIBLE

    @classmethod
    def _missing_(cls, value):
        return cls.UNSPECIFIED

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: Union["Availability", str]) -> "Availability":
        """An Availability of a member or of its label ("auto", "dnd",
        "invisible", any case); ValueError for anything else."""
        if isinstance(value, cls):
            if value == cls.UNSPECIFIED:
                raise ValueError("availability must be 'auto', 'dnd' or "
                                 "'invisible', got Availability.UNSPECIFIED")
            return value
        if isinstance(value, str):
            member = cls.__members__.get(value.strip().upper())
            if member is not None and member != cls.UNSPECIFIED:
                return member
        raise ValueError("availability must be 'auto', 'dnd' or 'invisible' "
                         f"(or an Availability), got {value!r}")


class Reason(enum.IntEnum):
    UNSPECIFIED = pb.REASON_UNSPECIFIED
    # Came online by a heartbeat (plain watches: also an invisible user
    # becoming visible).
    HEARTBEAT = pb.REASON_HEARTBEAT
    # Went offline by MarkOffline (plain watches: also a user turning
    # invisible).
    MARK_OFFLINE = pb.REASON_MARK_OFFLINE
    # The last live session left the online window.
    EXPIRED = pb.REASON_EXPIRED
    # Rich watches only: ONLINE <-> AWAY, by a heartbeat's activity or by
    # --away_after passing.
    ACTIVITY = pb.REASON_ACTIVITY
    # Rich watches only: SetStatus changed what others see.
    STATUS_SET = pb.REASON_STATUS_SET
    # Rich watches only: an availability or custom status reached its end.
    STATUS_EXPIRED = pb.REASON_STATUS_EXPIRED

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
class CustomStatus:
    """A user's custom status, e.g. CustomStatus("In a meeting",
    ":calendar:")."""

    # Up to 100 characters; may be empty if emoji is not.
    text: str = ""
    # A :short_code: or one emoji; may be empty if text is not.
    emoji: str = ""
    # When it clears itself; None: until replaced or cleared.
    expires_at: Optional[datetime.datetime] = None


@dataclass(frozen=True)
class UserPresence:
    """A user's presence as the viewer sees it: as others see it, or, for
    the viewer's own entry (get_presence(viewer_user_id=...), set_status),
    the truth, also while invisible."""

    user_id: int
    # ONLINE, AWAY, DND or OFFLINE (from a presenced older than rich
    # presence: ONLINE or OFFLINE).
    status: Status
    # None if never seen. As others see it, it stops while the user is
    # invisible.
    last_seen: Optional[datetime.datetime]
    live_sessions: int
    # None while offline.
    online_until: Optional[datetime.datetime]
    # What the user chose: AUTO, DND or INVISIBLE (others see an invisible
    # user as AUTO; a presenced older than rich presence sends none: AUTO).
    availability: "Availability" = Availability.AUTO
    # When a DND or INVISIBLE availability returns to AUTO; None: until
    # changed.
    availability_until: Optional[datetime.datetime] = None
    # None if the user has none, or appears offline to the viewer.
    custom_status: Optional[CustomStatus] = None

    @property
    def online(self) -> bool:
        """ONLINE, AWAY or DND: online in the sense of list_online()."""
        return self.status.online


@dataclass(frozen=True)
class StatusResult:
    """set_status(): the user's own view after the change."""

    presence: UserPresence
    # The server's clock the change was applied at.
    server_time: datetime.datetime


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
    # Watches with rich_status: each online user's presence as others see
    # it, in the order of online_users; empty otherwise.
    users: List[UserPresence] = field(default_factory=list)


@dataclass(frozen=True)
class PresenceChange:
    """One transition, after the latest Snapshot: online/offline, and, in a
    watch with rich_status, ONLINE/AWAY/DND and custom status changes."""

    user_id: int
    # Plain watches: ONLINE or OFFLINE; rich: also AWAY and DND.
    status: Status
    at: datetime.datetime
    reason: Reason
    epoch: str
    # This change's own sequence, also when it came in a batch of several.
    sequence: int
    # The shard it came from, whose epoch and sequence these are (a watch of
    # a sharded deployment); "" from one unsharded presenced.
    shard: str = ""
    # Rich watches: the custom status after the change (None: none, or
    # offline).
    custom_status: Optional[CustomStatus] = None
    # Rich watches, status DND: when the DND ends (None: until changed).
    availability_until: Optional[datetime.datetime] = None

    @property
    def online(self) -> bool:
        """ONLINE, AWAY or DND."""
        return self.status.online


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


def custom_status(message, field_name: str = "custom_status"
                  ) -> Optional[CustomStatus]:
    """The CustomStatus in `message`'s field, None if unset."""
    if not message.HasField(field_name):
        return None
    status = getattr(message, field_name)
    return CustomStatus(text=status.text, emoji=status.emoji,
                        expires_at=optional_datetime(status, "expires_at"))


def user_presence(message) -> UserPresence:
    availability = Availability(message.availability)
    return UserPresence(
        user_id=message.user_id,
        status=Status(message.status),
        last_seen=optional_datetime(message, "last_seen"),
        live_sessions=message.live_sessions,
        online_until=optional_datetime(message, "online_until"),
        # Unset only from a presenced that predates availability.
        availability=(Availability.AUTO
                      if availability == Availability.UNSPECIFIED
                      else availability),
        availability_until=optional_datetime(message, "availability_until"),
        custom_status=custom_status(message))


def _change(change, epoch: str, sequence: int) -> PresenceChange:
    return PresenceChange(
        user_id=change.user_id, status=Status(change.status),
        at=to_datetime(change.at), reason=Reason(change.reason),
        epoch=epoch, sequence=sequence,
        custom_status=custom_status(change),
        availability_until=optional_datetime(change, "availability_until"))


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
            epoch=message.epoch, sequence=message.sequence,
            users=[user_presence(user) for user in message.snapshot.users])]
    if kind == "change":
        return [_change(message.change, message.epoch,
                        message.change.sequence or message.sequence)]
    if kind == "changes":
        return [_change(change, message.epoch,
                        change.sequence or message.sequence)
                for change in message.changes.changes]
    return []
