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

import datetime
import json
import logging
import re
from typing import Any, Dict, List, Mapping, Optional

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils.dateparse import parse_datetime
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

from presence_client import (Availability, Cancelled, DeadlineExceeded,
                             InvalidArgument, PresenceError, Status,
                             Unavailable, UserPresence)

from .client import get_client
from .sessions import presence_session_id

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


class BadRequest(exceptions.APIException):
    """A request whose body or query is wrong; the message says what to
    change."""

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


_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0", ""})


def _bool(name: str, value: Any) -> bool:
    """A JSON true/false, or a form's "true"/"false"/"1"/"0"; null is
    false."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BadRequest(f"{name} must be true or false, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A value of the caller's as an error message quotes it: as JSON,
    shortened."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str) and len(value) > 40:
        value = value[:40] + "..."
    return json.dumps(value, ensure_ascii=False)


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
        return _bool("idle", (body or {}).get("idle"))


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


STATUS_FIELDS = ("availability", "until", "for", "text", "emoji",
                 "expires_at", "expires_in", "clear")
# Also taken for expires_at.
_EXPIRES_ALIAS = "expires"
# Characters of a custom status text (presenced's limit).
MAX_TEXT = 100
# A duration: "90m", "2h", "1h30m", "45s", "1d", "1.5h"; a bare number is
# seconds.
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# presenced's limit of a duration.
MAX_DURATION = datetime.timedelta(days=366)


def _duration(name: str, value: Any) -> datetime.timedelta:
    """A positive duration: seconds as a JSON number or digits, or a
    string such as "90m", "2h", "1h30m", "45s", "1d"."""
    example = (f'{name} must be a duration such as "90m", "2h", "1h30m" or '
               f"a number of seconds")
    if isinstance(value, bool) or value is None:
        raise BadRequest(f"{example}, got {_shown(value)}")
    seconds: Optional[float] = None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        elif text and _DURATION_PART.sub("", text) == "":
            seconds = sum(float(number) * _UNIT_SECONDS[unit]
                          for number, unit in _DURATION_PART.findall(text))
    if seconds is None or seconds != seconds:  # not a duration, or NaN
        raise BadRequest(f"{example}, got {_shown(value)}")
    if seconds <= 0:
        raise BadRequest(f"{name} must be longer than 0, got "
                         f"{_shown(value)}")
    if seconds > MAX_DURATION.total_seconds():
        raise BadRequest(f"{name} must be at most {MAX_DURATION.days} days, "
                         f"got {_shown(value)}")
    return datetime.timedelta(seconds=seconds)


def _moment(name: str, value: Any) -> datetime.datetime:
    """An RFC 3339 time with its UTC offset."""
    example = (f"{name} must be an RFC 3339 time with a UTC offset, e.g. "
               '"2026-11-30T17:00:00Z"')
    moment = None
    if isinstance(value, str):
        try:
            moment = parse_datetime(value.strip())
        except ValueError:  # well formed, but e.g. month 13
            moment = None
    if moment is None or moment.utcoffset() is None:
        raise BadRequest(f"{example}, got {_shown(value)}")
    return moment


def _string(name: str, value: Any) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    raise BadRequest(f"{name} must be a string, got {_shown(value)}")


def _status_arguments(body: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """PresenceClient.set_status()'s arguments of a status/ body, or a
    BadRequest saying what is wrong with it."""
    if body is None:
        raise BadRequest("the body must be a JSON object, e.g. "
                         '{"availability": "dnd", "for": "90m"}')
    unknown = sorted(set(body) - set(STATUS_FIELDS) - {_EXPIRES_ALIAS})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; the fields are "
                         + ", ".join(STATUS_FIELDS))
    arguments: Dict[str, Any] = {}
    availability = body.get("availability")
    if availability is not None:
        try:
            if not isinstance(availability, str):
                raise ValueError
            arguments["availability"] = Availability.parse(availability)
        except ValueError:
            raise BadRequest("availability must be \"auto\", \"dnd\" or "
                             f"\"invisible\", got {_shown(availability)}")
    until, length = body.get("until"), body.get("for")
    if until is not None and length is not None:
        raise BadRequest("give until (a time) or for (a duration), not both")
    if until is not None or length is not None:
        if arguments.get("availability") not in (Availability.DND,
                                                 Availability.INVISIBLE):
            raise BadRequest(
                f"{'until' if until is not None else 'for'} is when dnd or "
                "invisible ends: give it with availability \"dnd\" or "
                "\"invisible\"")
        arguments["until"] = (_moment("until", until) if until is not None
                              else _duration("for", length))

    text = _string("text", body.get("text"))
    emoji = _string("emoji", body.get("emoji"))
    if text is not None and len(text) > MAX_TEXT:
        raise BadRequest(f"text must be at most {MAX_TEXT} characters, got "
                         f"{len(text)}")
    expires_name = "expires_at"
    expires, expires_in = body.get("expires_at"), body.get("expires_in")
    if body.get(_EXPIRES_ALIAS) is not None:
        if expires is not None:
            raise BadRequest("give expires_at or expires (the same), not "
                             "both")
        expires_name, expires = _EXPIRES_ALIAS, body.get(_EXPIRES_ALIAS)
    if expires is not None and expires_in is not None:
        raise BadRequest(f"give {expires_name} (a time) or expires_in (a "
                         "duration), not both")
    clear = _bool("clear", body.get("clear"))
    if text is not None or emoji is not None:
        if clear:
            raise BadRequest("clear removes the custom status: give it "
                             "without text and emoji")
        if not text and not emoji:
            raise BadRequest("a custom status needs text or emoji (to "
                             "remove it, send {\"clear\": true})")
        arguments.update(text=text, emoji=emoji)
        if expires is not None:
            arguments["expires"] = _moment(expires_name, expires)
        elif expires_in is not None:
            arguments["expires"] = _duration("expires_in", expires_in)
    elif expires is not None or expires_in is not None:
        raise BadRequest(
            f"{expires_name if expires is not None else 'expires_in'} is "
            "when the custom status clears itself: give it with text or "
            "emoji")
    if clear:
        arguments["clear"] = True
    if not arguments:
        raise BadRequest("nothing to set: give availability (\"auto\", "
                         "\"dnd\" or \"invisible\"), text and/or emoji, or "
                         "clear")
    return arguments


class StatusView(PresenceView):
    """The caller's availability and custom status (SetStatus)."""

    def post(self, request: Request) -> Response:
        arguments = _status_arguments(_body(request))

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
            raise BadRequest(f"user_ids: {_shown(item)} is not a user id (an "
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
