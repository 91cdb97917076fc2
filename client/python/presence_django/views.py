"""The chat frontend's presence endpoints, answered by presenced.

Django REST framework views: the caller is authenticated by the project's
REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] (SimpleJWT's Bearer tokens,
DRF's TokenAuthentication, SessionAuthentication...), or by the classes named
in PRESENCE_AUTHENTICATION_CLASSES. CSRF follows DRF: checked for callers
authenticated by their session cookie, not for token callers.

    POST heartbeat/     {"online": true, "became_online": ..., "server_time":
                         ..., "online_until": ...,
                         "heartbeat_interval_seconds": 120.0}
    POST mark-offline/  {"still_online": ..., "sessions_ended": ...,
                         "server_time": ...}
    GET  online-users/  {"online_users": [1, 5, 12]}  (online, away or dnd)
    POST status/        the caller's availability and custom status:
                        {"availability": "auto" | "dnd" | "invisible",
                         "until": RFC 3339 | "for": "90m" (or "2h",
                         "1h30m", seconds), "text": ..., "emoji": ...,
                         "expires_at" (or "expires"): RFC 3339 |
                         "expires_in": "1h", "clear": true}, each
                        optional -> the caller's own view,
                        PRESENCE_FIELDS and "server_time"
    GET  presence/?user_ids=1,2,3
                        {"users": [{PRESENCE_FIELDS}, ...], "server_time":
                         ...}, the caller's own entry as they see
                        themselves, the others' as everyone sees them

PRESENCE_FIELDS: "user_id", "status" ("online", "away", "dnd" or
"offline"), "last_seen" (null: never), "availability" ("auto", "dnd" or
"invisible"), "availability_until" (null: until changed), "custom_status"
({"text", "emoji", "expires_at"}, or null).

The heartbeat's body may say {"idle": true}: the user did not use this
page since its previous heartbeat (the user turns away once every session
has been idle for presenced's --away_after). The rest of the POST bodies of
heartbeat/ and mark-offline/ ({"timestamp": "...Z"} from the chat product)
is not read: presenced's clock decides. Which session in presenced a call
is about:

  - session-cookie callers: their Django session (a digest of its key), so
    each browser is a session of its own;
  - token callers: the one named by the X-Presence-Session header, else the
    user's default session; mark-offline without the header ends every
    session of the user (logging out means offline).

Every error is JSON {"error": "..."}: 400 bad X-Presence-Session, bad
idle, a bad status/ body or presence/ query (saying what to change), 401 not
authenticated (with WWW-Authenticate), 403 CSRF or permission, 404 unknown
path (urls.py), 405 wrong method (with Allow), 503 presenced unreachable,
shutting down or too slow (PRESENCE_TIMEOUT), 502 any other error from
presenced (logged).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Mapping, Optional

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.authentication import (BaseAuthentication,
                                           SessionAuthentication)
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView, exception_handler

from presence_client import (Cancelled, DeadlineExceeded, InvalidArgument,
                             PresenceError, Status, Unavailable,
                             UserPresence)

from .client import get_client
from .sessions import presence_session_id
from .status_body import BadRequest, parse_bool, shown, status_arguments

logger = logging.getLogger("presence_django")

SESSION_HEADER = "X-Presence-Session"
# A tab or device id chosen by the frontend (a UUID, a random base64url
# string). Stricter than presenced's limit (128 bytes of printable ASCII):
# no spaces, quotes or separators, so it is safe in logs and headers.
_SESSION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class _AlwaysJson(DefaultContentNegotiation):
    """Answers JSON whatever the Accept header says: a browser's
    "Accept: text/html" must not turn an error into a 406 or an HTML page.
    A body is read by its Content-Type (JSON, or a form), as DRF does."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class BadSessionHeader(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST


def _message(detail: Any) -> str:
    """DRF's error detail as one line: SimpleJWT's InvalidToken carries a
    dict ({"detail": ..., "messages": [...]}), validation errors lists."""
    if isinstance(detail, dict):
        return _message(detail.get("detail", "; ".join(
            f"{key}: {_message(value)}" for key, value in detail.items())))
    if isinstance(detail, (list, tuple)):
        return "; ".join(_message(item) for item in detail)
    return str(detail)


def _json_errors(exc: Exception, context: dict) -> Optional[Response]:
    """DRF's handler (status, WWW-Authenticate, Retry-After), with the body
    these endpoints always answer: {"error": "..."}."""
    response = exception_handler(exc, context)
    if response is not None:
        response.data = {"error": _message(response.data)}
    return response


class PresenceView(APIView):
    """Authentication, permission, JSON errors and presenced's failures for
    the three endpoints."""

    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _AlwaysJson

    def get_authenticators(self) -> List[BaseAuthentication]:
        # Read per request, so that override_settings() and projects that
        # change settings at start-up are honoured.
        names = getattr(settings, "PRESENCE_AUTHENTICATION_CLASSES", None)
        if names is None:
            classes = api_settings.DEFAULT_AUTHENTICATION_CLASSES
        else:
            classes = [import_string(name) if isinstance(name, str) else name
                       for name in names]
        return [auth() for auth in classes]

    def get_authenticate_header(self, request: Request) -> Optional[str]:
        # DRF asks only the first class and answers 403 if it has no
        # challenge (SessionAuthentication): an unauthenticated caller gets
        # 401 from any class that can challenge.
        for authenticator in self.get_authenticators():
            header = authenticator.authenticate_header(request)
            if header:
                return header
        return None

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if (isinstance(exc, (exceptions.NotAuthenticated,
                             exceptions.AuthenticationFailed))
                and response.status_code == status.HTTP_403_FORBIDDEN):
            # Only session authentication is configured: still 401, the
            # caller is not authenticated, nothing is forbidden to it.
            response.status_code = status.HTTP_401_UNAUTHORIZED
        return response

    def get_exception_handler(self):
        return _json_errors

    def presence_call(self, call, invalid_is_400: bool = False):
        """Runs `call()` against presenced and maps its failures: never a
        500 with a stack trace. `invalid_is_400`: presenced's
        INVALID_ARGUMENT is about the caller's input (a status text, an end
        in the past): a 400 with presenced's message."""
        try:
            return Response(call())
        except InvalidArgument as error:
            if not invalid_is_400:
                logger.error("presenced refused %s: %s", self.request.path,
                             error)
                return Response({"error": "presence service error"},
                                status=status.HTTP_502_BAD_GATEWAY)
            return Response({"error": _in_body_terms(error.message)},
                            status=status.HTTP_400_BAD_REQUEST)
        # Cancelled: presenced cancels the calls that race its shutdown.
        except (Unavailable, DeadlineExceeded, Cancelled) as error:
            logger.warning("presenced unavailable: %s", error)
            return Response({"error": "presence service unavailable"},
                            status=status.HTTP_503_SERVICE_UNAVAILABLE)
        except PresenceError as error:
            logger.error("presenced refused %s: %s", self.request.path, error)
            return Response({"error": "presence service error"},
                            status=status.HTTP_502_BAD_GATEWAY)

    def session_id(self, request: Request) -> str:
        """The presence session of this call ("" is the user's default
        session, or for mark-offline every session of the user)."""
        if isinstance(request.successful_authenticator, SessionAuthentication):
            # A session login always has a key; a custom backend that
            # authenticated without one gets one, so that each browser
            # is still a session of its own.
            django_session = request._request.session
            if not django_session.session_key:
                django_session.save()
            return presence_session_id(django_session.session_key)
        named = request.headers.get(SESSION_HEADER)
        if named is None:
            return ""
        if not _SESSION_ID.fullmatch(named):
            raise BadSessionHeader(
                f"{SESSION_HEADER} must be 1 to 128 characters of A-Z, a-z, "
                f"0-9, '.', '_', ':' or '-'; {_what_is_wrong(named)}")
        return named


def _what_is_wrong(session: str) -> str:
    if not 1 <= len(session) <= 128:
        return f"got {len(session)} characters"
    position, bad = next((i, c) for i, c in enumerate(session)
                         if not _SESSION_ID.fullmatch(c))
    return f"character {position + 1} is {bad!r}"


# presenced's names of status/'s fields, as its messages start.
_FIELD_PREFIXES = (("custom_status.text ", "text "),
                   ("custom_status.emoji ", "emoji "))


def _in_body_terms(message: str) -> str:
    """presenced's message about a status/ request, naming the field as the
    caller sent it ("text must be ...", not "custom_status.text ...")."""
    for ours, theirs in _FIELD_PREFIXES:
        if message.startswith(ours):
            return theirs + message[len(ours):]
    return message


def _body(request: Request) -> Optional[Mapping[str, Any]]:
    """The request's body as a mapping (a JSON object, or a form's fields,
    each its last value); None for a body that is neither. A malformed
    JSON body raises DRF's ParseError (a 400)."""
    data = request.data
    if hasattr(data, "getlist"):  # a QueryDict: form fields
        return {key: data.get(key) for key in data}
    return data if isinstance(data, dict) else None


class HeartbeatView(PresenceView):
    def post(self, request: Request) -> Response:
        session = self.session_id(request)
        idle = self.idle(request)

        def call():
            beat = get_client().heartbeat(request.user.id, session, idle)
            return {
                "online": True,
                "became_online": beat.became_online,
                "server_time": beat.server_time,
                "online_until": beat.online_until,
                "heartbeat_interval_seconds":
                    beat.heartbeat_interval.total_seconds(),
            }

        return self.presence_call(call)

    @staticmethod
    def idle(request: Request) -> bool:
        """The body's "idle" (false without it). The rest of the body is
        not read, and a body that cannot be read is none, as before "idle"
        existed: only a readable "idle" that is not a boolean is a 400."""
        try:
            body = _body(request)
        except (exceptions.ParseError, exceptions.UnsupportedMediaType):
            return False
        return parse_bool("idle", (body or {}).get("idle"))


class MarkOfflineView(PresenceView):
    def post(self, request: Request) -> Response:
        session = self.session_id(request)

        def call():
            ended = get_client().mark_offline(request.user.id, session)
            return {
                "still_online": ended.still_online,
                "sessions_ended": ended.sessions_ended,
                "server_time": ended.server_time,
            }

        return self.presence_call(call)


class OnlineUsersView(PresenceView):
    def get(self, request: Request) -> Response:
        return self.presence_call(
            lambda: {"online_users": get_client().list_online()})


def presence_json(user: UserPresence) -> Dict[str, Any]:
    """A user's entry in the answers of status/ and presence/."""
    custom = user.custom_status
    return {
        "user_id": user.user_id,
        # UNSPECIFIED: none sent, or a status newer than this client.
        "status": ("offline" if user.status == Status.UNSPECIFIED
                   else user.status.label),
        "last_seen": user.last_seen,
        "availability": user.availability.label,
        "availability_until": user.availability_until,
        "custom_status": None if custom is None else {
            "text": custom.text,
            "emoji": custom.emoji,
            "expires_at": custom.expires_at,
        },
    }


class StatusView(PresenceView):
    """The caller's availability and custom status (SetStatus)."""

    def post(self, request: Request) -> Response:
        arguments = status_arguments(_body(request))

        def call():
            result = get_client().set_status(request.user.id, **arguments)
            return {**presence_json(result.presence),
                    "server_time": result.server_time}

        return self.presence_call(call, invalid_is_400=True)


# Ids per presence/ request: a URL's worth.
MAX_PRESENCE_IDS = 1000
_USER_ID = re.compile(r"[0-9]{1,18}")


def _user_ids(request: Request) -> List[int]:
    """presence/'s ?user_ids=1,2,3 (or user_ids=1&user_ids=2), in order."""
    values = request.query_params.getlist("user_ids")
    items = [item.strip() for value in values for item in value.split(",")]
    if not values or items == [""]:
        raise BadRequest("user_ids is required: the users to look up, e.g. "
                         "?user_ids=1,2,3")
    ids = []
    for item in items:
        if not _USER_ID.fullmatch(item) or int(item) <= 0:
            raise BadRequest(f"user_ids: {shown(item)} is not a user id (an "
                             "integer > 0); e.g. ?user_ids=1,2,3")
        ids.append(int(item))
    if len(ids) > MAX_PRESENCE_IDS:
        raise BadRequest(f"user_ids has {len(ids)} ids; at most "
                         f"{MAX_PRESENCE_IDS} per request")
    return ids


class UserPresenceView(PresenceView):
    """The presence of a list of users, as the caller sees them."""

    def get(self, request: Request) -> Response:
        user_ids = _user_ids(request)

        def call():
            lookup = get_client().get_presence(
                user_ids, viewer_user_id=request.user.id)
            return {"users": [presence_json(user) for user in lookup.users],
                    "server_time": lookup.server_time}

        return self.presence_call(call, invalid_is_400=True)


heartbeat = HeartbeatView.as_view()
mark_offline = MarkOfflineView.as_view()
online_users = OnlineUsersView.as_view()
set_status = StatusView.as_view()
presence = UserPresenceView.as_view()


@csrf_exempt  # a 404 must not turn into Django's HTML CSRF page
def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    return JsonResponse(
        {"error": f"no presence endpoint at {request.path}; there are "
                  "heartbeat/, mark-offline/, online-users/, status/ and "
                  "presence/"},
        status=404)
