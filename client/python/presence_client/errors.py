"""Exceptions: one class per gRPC status code that presenced answers with."""

from __future__ import annotations

from typing import Dict, Optional, Type

import grpc


class PresenceError(Exception):
    """A call to presenced failed.

    `code` is the gRPC status code (a grpc.StatusCode) and `message` the
    server's message, e.g. "user_id must be > 0, got 0". Subclasses name the
    codes a caller may want to tell apart; any other code is a plain
    PresenceError.
    """

    # The shard that answered (or failed to), for a client of a sharded
    # deployment; None for one unsharded presenced.
    shard: Optional[str] = None

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class InvalidArgument(PresenceError):
    """The request is wrong (e.g. user_id <= 0); retrying cannot help."""


class DeadlineExceeded(PresenceError):
    """No answer within the call's deadline (retries included)."""


class Unavailable(PresenceError):
    """presenced could not be reached, is shutting down, or could not make
    the change durable; retries were exhausted. Safe to try again later."""


class ResourceExhausted(PresenceError):
    """A limit was hit, e.g. too many WatchPresence streams."""


class Cancelled(PresenceError):
    """The call was cancelled on the client's side."""


class Unauthenticated(PresenceError):
    pass


class PermissionDenied(PresenceError):
    pass


class FailedPrecondition(PresenceError):
    """The call cannot be answered in the server's present state; from a
    sharded presenced: the call named a user of another shard ("user 42
    belongs to shard presenced-2, ..."), i.e. the client's shard map differs
    from the servers' --shards."""


class Unimplemented(PresenceError):
    """presenced does not know this RPC (an older server)."""


class Internal(PresenceError):
    pass


_BY_CODE: Dict[grpc.StatusCode, Type[PresenceError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.INTERNAL: Internal,
}


def error_for(code: grpc.StatusCode, message: str) -> PresenceError:
    """The exception for a gRPC status."""
    return _BY_CODE.get(code, PresenceError)(code, message)


_BY_NUMBER: Dict[int, grpc.StatusCode] = {
    code.value[0]: code for code in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a code's number (e.g. 3: INVALID_ARGUMENT), as
    BatchHeartbeat's per-item errors give it; UNKNOWN for a number that is
    none."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def from_rpc_error(error: grpc.RpcError) -> PresenceError:
    """The exception for a failed call (a grpc.RpcError that is a grpc.Call)."""
    code: Optional[grpc.StatusCode] = error.code()  # type: ignore[attr-defined]
    message: Optional[str] = error.details()  # type: ignore[attr-defined]
    return error_for(code or grpc.StatusCode.UNKNOWN, message or "")


def shard_error(error: PresenceError, name: str,
                target: str = "") -> PresenceError:
    """`error` (same class and code) as a sharded client raises it: its
    message names the shard, "shard s1 (10.0.0.7:50051): <server's message>",
    and `.shard` is the shard's name."""
    where = f"shard {name} ({target})" if target else f"shard {name}"
    named = error_for(error.code, f"{where}: {error.message}")
    named.shard = name
    named.__cause__ = error.__cause__ or error
    return named


# Errors about the request itself: the same request fails again.
PERMANENT_CODES = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
})
