"""The body of POST status/: PresenceClient.set_status()'s arguments from
a JSON object or a form, and a 400 saying what to change for one that is
wrong. presence-rest reads the same body (gateway/status_body.cc)."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any, Dict, Mapping, Optional

from django.utils.dateparse import parse_datetime
from rest_framework import exceptions, status

from presence_client import Availability


class BadRequest(exceptions.APIException):
    """A request whose body or query is wrong; the message says what to
    change."""

    status_code = status.HTTP_400_BAD_REQUEST



_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0", ""})


def parse_bool(name: str, value: Any) -> bool:
    """A JSON true/false, or a form's "true"/"false"/"1"/"0"; null is
    false."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BadRequest(f"{name} must be true or false, got {shown(value)}")


def shown(value: Any) -> str:
    """A value of the caller's as an error message quotes it: as JSON,
    shortened."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str) and len(value) > 40:
        value = value[:40] + "..."
    return json.dumps(value, ensure_ascii=False)


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
        raise BadRequest(f"{example}, got {shown(value)}")
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
        raise BadRequest(f"{example}, got {shown(value)}")
    if seconds <= 0:
        raise BadRequest(f"{name} must be longer than 0, got "
                         f"{shown(value)}")
    if seconds > MAX_DURATION.total_seconds():
        raise BadRequest(f"{name} must be at most {MAX_DURATION.days} days, "
                         f"got {shown(value)}")
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
        raise BadRequest(f"{example}, got {shown(value)}")
    return moment


def _string(name: str, value: Any) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    raise BadRequest(f"{name} must be a string, got {shown(value)}")


def status_arguments(body: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
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
                             f"\"invisible\", got {shown(availability)}")
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
    clear = parse_bool("clear", body.get("clear"))
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
