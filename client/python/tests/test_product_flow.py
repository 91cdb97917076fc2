"""The chat product's exact requests, replayed against both backends that
serve them: presence_django (through Django's test client) and
presence-rest (over HTTP), each in front of a real presenced.

What the product sends (shared/origin/online-status-flow.md, "Backend
Requirements"): `Authorization: Bearer <SimpleJWT access token>`, POST
bodies `{"timestamp": "...Z"}`, paths with and without the trailing slash.
What it expects: online right after the first heartbeat, offline right
after mark-offline, `{"online_users": [ints]}`. And what presenced must see:
one session per caller however often it beats (GetPresence's
live_sessions), a session per X-Presence-Session, and a mark-offline
without that header ending them all.

Run with $PRESENCED and $PRESENCE_REST set (CTest does):
`python3 -m django test --settings=django_test_settings test_product_flow`
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Dict, Optional, Tuple

from django.contrib.auth.models import User
from django.test import Client, TestCase, override_settings
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from presence_client import PresenceClient, Status
from presenced import Presenced, PresenceRest

BODY = {"timestamp": "2026-11-30T12:00:00Z"}
HEARTBEAT = "/api/chat/heartbeat"
MARK_OFFLINE = "/api/chat/mark-offline"
ONLINE_USERS = "/api/chat/online-users"

Reply = Tuple[int, Any]


class ProductFlow:
    """The scenarios; a subclass says where the requests go (call())."""

    def setUp(self) -> None:
        super().setUp()
        self.server = Presenced().start()
        self.addCleanup(self.server.close)
        self.presence = PresenceClient(self.server.address)
        self.addCleanup(self.presence.close)
        self.alice = User.objects.create_user("alice", password="pw")
        self.bob = User.objects.create_user("bob", password="pw")
        self.carol = User.objects.create_user("carol", password="pw")

    def call(self, method: str, path: str, headers: Dict[str, str],
             body: Optional[bytes]) -> Reply:
        raise NotImplementedError

    # What the product does, request by request.

    @staticmethod
    def token(user: User) -> str:
        return str(RefreshToken.for_user(user).access_token)

    def headers(self, user: User, session: str = "") -> Dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token(user)}"}
        if session:
            headers["X-Presence-Session"] = session
        return headers

    def post(self, path: str, user: User, session: str = "") -> Reply:
        headers = dict(self.headers(user, session),
                       **{"Content-Type": "application/json"})
        return self.call("POST", path, headers, json.dumps(BODY).encode())

    def online_users(self, user: User, slash: str = "/") -> list:
        status, body = self.call("GET", ONLINE_USERS + slash,
                                 self.headers(user), None)
        self.assertEqual(status, 200, body)
        self.assertEqual(list(body), ["online_users"])
        ids = body["online_users"]
        self.assertIsInstance(ids, list)
        for user_id in ids:
            self.assertIs(type(user_id), int, f"not an int: {user_id!r}")
        return ids

    def presence_of(self, user: User):
        return self.presence.get_presence([user.id]).users[0]

    # The scenarios.

    def test_login_heartbeats_then_logout(self) -> None:
        for slash in ("/", ""):
            with self.subTest(trailing_slash=bool(slash)):
                status, body = self.post(HEARTBEAT + slash, self.alice)
                self.assertEqual(status, 200, body)
                self.assertIn(self.alice.id,
                              self.online_users(self.bob, slash))
                self.assertEqual(self.presence_of(self.alice).status,
                                 Status.ONLINE)

                # Every 2 minutes in the product; here at once: the same
                # caller is the same session in presenced.
                for _ in range(3):
                    status, body = self.post(HEARTBEAT + slash, self.alice)
                    self.assertEqual(status, 200, body)
                self.assertEqual(self.presence_of(self.alice).live_sessions,
                                 1)

                status, body = self.post(MARK_OFFLINE + slash, self.alice)
                self.assertEqual(status, 200, body)
                self.assertNotIn(self.alice.id,
                                 self.online_users(self.bob, slash))
                lookup = self.presence_of(self.alice)
                self.assertEqual(lookup.status, Status.OFFLINE)
                self.assertEqual(lookup.live_sessions, 0)

    def test_online_users_lists_who_is_online(self) -> None:
        self.assertEqual(self.online_users(self.alice), [])
        for user in (self.carol, self.alice):
            status, body = self.post(HEARTBEAT + "/", user)
            self.assertEqual(status, 200, body)
        self.assertEqual(sorted(self.online_users(self.bob)),
                         sorted([self.alice.id, self.carol.id]))
        status, body = self.post(MARK_OFFLINE + "/", self.carol)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.online_users(self.bob, ""), [self.alice.id])

    def test_one_session_per_x_presence_session(self) -> None:
        # A frontend route that forwards one id per browser.
        for _ in range(3):
            for tab in ("laptop-1", "phone-2"):
                status, body = self.post(HEARTBEAT + "/", self.alice, tab)
                self.assertEqual(status, 200, body)
        self.assertEqual(self.presence_of(self.alice).live_sessions, 2)

        status, body = self.post(MARK_OFFLINE + "/", self.alice, "laptop-1")
        self.assertEqual(status, 200, body)
        self.assertEqual(self.presence_of(self.alice).live_sessions, 1)
        self.assertIn(self.alice.id, self.online_users(self.bob))

        # The product's logout names no session: every session ends.
        status, body = self.post(HEARTBEAT + "/", self.alice)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.presence_of(self.alice).live_sessions, 2)
        status, body = self.post(MARK_OFFLINE, self.alice)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.presence_of(self.alice).status, Status.OFFLINE)
        self.assertEqual(self.presence_of(self.alice).live_sessions, 0)
        self.assertNotIn(self.alice.id, self.online_users(self.bob))

    def test_bad_x_presence_session_is_400(self) -> None:
        for value in ("tab 1", "a" * 129):
            with self.subTest(value=value[:10]):
                status, body = self.post(HEARTBEAT + "/", self.alice, value)
                self.assertEqual(status, 400, body)
                self.assertIsInstance(body["error"], str)
        self.assertEqual(self.presence_of(self.alice).live_sessions, 0)


class DjangoProductFlowTest(ProductFlow, TestCase):
    """presence_django in a DRF + SimpleJWT project (django_test_settings),
    called with CSRF enforced as a real request would be."""

    def setUp(self) -> None:
        super().setUp()
        override = override_settings(PRESENCE_SERVER=self.server.address)
        override.enable()
        self.addCleanup(override.disable)
        self.client = Client(enforce_csrf_checks=True)

    def call(self, method, path, headers, body) -> Reply:
        meta = {}
        for name, value in headers.items():
            if name == "Content-Type":
                continue
            meta["HTTP_" + name.upper().replace("-", "_")] = value
        if method == "POST":
            response = self.client.post(path, body or b"",
                                        headers.get("Content-Type", ""),
                                        **meta)
        else:
            response = self.client.generic(method, path, **meta)
        self.assertEqual(response["Content-Type"], "application/json",
                         response.content)
        return response.status_code, response.json()


class PresenceRestProductFlowTest(ProductFlow, TestCase):
    """presence-rest ($PRESENCE_REST) with SimpleJWT's signing key."""

    def setUp(self) -> None:
        super().setUp()
        self.rest = PresenceRest(self.server.address,
                                 jwt_settings.SIGNING_KEY).start()
        self.addCleanup(self.rest.close)

    def call(self, method, path, headers, body) -> Reply:
        request = urllib.request.Request(
            f"http://{self.rest.address}{path}", data=body, method=method,
            headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, content = response.status, response.read()
                content_type = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as error:
            status, content = error.code, error.read()
            content_type = error.headers.get("Content-Type", "")
        self.assertTrue(content_type.startswith("application/json"),
                        f"{status} {content_type}: {content!r}")
        return status, json.loads(content)

