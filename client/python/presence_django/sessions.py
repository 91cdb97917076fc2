"""The presence session id of a Django session."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings


def presence_session_id(session_key: str) -> str:
    """A stable id for `session_key` that is not the key itself.

    A Django session key is a credential: whoever holds it is logged in. So
    presenced, its database and its backups get a keyed digest of it (32 hex
    digits, within presenced's 128-byte printable limit), which names the
    same session every time and cannot be turned back into the key.
    """
    digest = hmac.new(settings.SECRET_KEY.encode(), session_key.encode(),
                      hashlib.sha256).hexdigest()
    return "dj-" + digest[:32]
