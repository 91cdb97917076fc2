"""The chat frontend's presence endpoints, answered by presenced.

The user is request.user.id; the session is the Django session (a digest
of request.session.session_key), so two browsers of one user are two sessions
and logging out in one leaves the other online. Every answer is JSON:

    POST heartbeat/     {"online": true, "became_online": ..., "server_time":
                         ..., "online_until": ...,
                         "heartbeat_interval_seconds": 120.0}
    POST mark-offline/  {"still_online": ..., "sessions_ended": ...,
                         "server_time": ...}
    GET  online-users/  {"online_users": [1, 5, 12]}

Errors, as {"error": "..."}: 401 not logged in, 405 wrong method, 503
presenced unreachable, shutting down or too slow (PRESENCE_TIMEOUT), 502
presenced refused the request (logged).
"""

from __future__ import annotations

import functools
import logging
from typing import Callable

from django.http import HttpRequest, JsonResponse

from presence_client import (Cancelled, DeadlineExceeded, PresenceError,
                             Unavailable)

from .client import get_client
from .sessions import presence_session_id

logger = logging.getLogger("presence_django")

View = Callable[[HttpRequest], JsonResponse]


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def presence_endpoint(method: str) -> Callable[[View], View]:
    """Only `method`, only for a logged-in user, presenced's errors as JSON
    (never a 500 with a stack trace)."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest) -> JsonResponse:
            if request.method != method:
                response = _error(405, f"method {request.method} not allowed")
                response["Allow"] = method
                return response
            if not request.user.is_authenticated:
                return _error(401, "authentication required")
            try:
                return view(request)
            # Cancelled: presenced cancels the calls that race its shutdown.
            except (Unavailable, DeadlineExceeded, Cancelled) as error:
                logger.warning("presenced unavailable: %s", error)
                return _error(503, "presence service unavailable")
            except PresenceError as error:
                logger.error("presenced refused %s: %s", request.path, error)
                return _error(502, "presence service error")

        return wrapper

    return decorate


def session_id(request: HttpRequest) -> str:
    """The presence session of the request's Django session (a digest of
    its key, see sessions.py). A heartbeat creates the Django session if
    there is none yet, so that each browser is a session of its own."""
    if not request.session.session_key:
        request.session.save()
    return presence_session_id(request.session.session_key)


@presence_endpoint("POST")
def heartbeat(request: HttpRequest) -> JsonResponse:
    beat = get_client().heartbeat(request.user.id, session_id(request))
    return JsonResponse({
        "online": True,
        "became_online": beat.became_online,
        "server_time": beat.server_time,
        "online_until": beat.online_until,
        "heartbeat_interval_seconds": beat.heartbeat_interval.total_seconds(),
    })


@presence_endpoint("POST")
def mark_offline(request: HttpRequest) -> JsonResponse:
    ended = get_client().mark_offline(request.user.id, session_id(request))
    return JsonResponse({
        "still_online": ended.still_online,
        "sessions_ended": ended.sessions_ended,
        "server_time": ended.server_time,
    })


@presence_endpoint("GET")
def online_users(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"online_users": get_client().list_online()})
