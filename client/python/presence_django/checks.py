"""System checks (`manage.py check`, registered by the app's ready()):
PRESENCE_SERVER must be an address PresenceClient takes, or every request
would fail when it first makes the client."""

from __future__ import annotations

from django.conf import settings
from django.core import checks

from presence_client import ShardMap

from .client import DEFAULT_SERVER


def check_presence_server(app_configs=None, **kwargs):
    server = getattr(settings, "PRESENCE_SERVER", DEFAULT_SERVER)
    if isinstance(server, ShardMap):
        return []
    try:
        ShardMap.parse(server)
    except (ValueError, TypeError, AttributeError) as error:
        return [checks.Error(
            f"PRESENCE_SERVER {server!r} is not presenced's address: {error}",
            hint="HOST:PORT, NAME=HOST:PORT,... for a sharded deployment, "
                 "or a pattern such as "
                 "presenced-{0..2}.presenced.NAMESPACE.svc:50051",
            id="presence_django.E001")]
    return []
