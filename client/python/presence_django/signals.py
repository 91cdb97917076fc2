"""Ends the session in presenced when its user logs out."""

from __future__ import annotations

import logging

from django.conf import settings

from presence_client import PresenceError

from .client import get_client
from .sessions import presence_session_id

logger = logging.getLogger("presence_django")


def mark_offline_on_logout(sender, request=None, user=None, **kwargs) -> None:
    if not getattr(settings, "PRESENCE_MARK_OFFLINE_ON_LOGOUT", True):
        return
    if user is None or request is None:
        return
    session_key = getattr(getattr(request, "session", None), "session_key",
                          None)
    if not session_key:
        return  # never "" here: that would end every session of the user
    try:
        get_client().mark_offline(user.id, presence_session_id(session_key))
    except PresenceError as error:
        # Logging out must work without presenced; the session expires.
        logger.warning("presenced: could not end the session of user %s "
                       "on logout: %s", user.id, error)
