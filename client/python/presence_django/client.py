"""The one PresenceClient of this process, configured from Django settings.

Settings:
    PRESENCE_SERVER   presenced's HOST:PORT (default "127.0.0.1:50051"), or
                      a sharded deployment in any form PresenceClient takes
                      (presence_client.ShardMap.parse):
                      "s0=10.0.0.5:50051,s1=10.0.0.6:50051" or
                      "presenced-{0..2}.presenced.chat.svc:50051". Calls
                      are routed to the shard that owns the user; the
                      online-users list is merged from every shard.
    PRESENCE_TOKEN    bearer token for presenced's --auth_tokens_file
                      (default: the PRESENCE_TOKEN environment variable)
    PRESENCE_TIMEOUT  deadline of each call in seconds, retries included
                      (default 2: a page should not wait longer).
"""

from __future__ import annotations

import threading
from typing import Optional

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from presence_client import PresenceClient

DEFAULT_SERVER = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 2.0

_lock = threading.Lock()
_client: Optional[PresenceClient] = None


def get_client() -> PresenceClient:
    """The shared client, created at first use: after a pre-forking server
    (gunicorn, uWSGI) has forked, since gRPC channels do not survive fork."""
    global _client
    with _lock:
        if _client is None:
            _client = PresenceClient(
                getattr(settings, "PRESENCE_SERVER", DEFAULT_SERVER),
                timeout=float(getattr(settings, "PRESENCE_TIMEOUT",
                                      DEFAULT_TIMEOUT)),
                token=getattr(settings, "PRESENCE_TOKEN", None))
        return _client


def reset_client() -> None:
    """Closes the shared client; the next get_client() makes a new one."""
    global _client
    with _lock:
        client, _client = _client, None
    if client is not None:
        client.close()


@receiver(setting_changed)
def _on_setting_changed(setting: str, **kwargs) -> None:
    # override_settings() in tests points the app at another presenced.
    if setting in ("PRESENCE_SERVER", "PRESENCE_TIMEOUT", "PRESENCE_TOKEN"):
        reset_client()
