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
without that header ending them all. Rich presence (issue 14): the same
status/ and presence/ requests answered with the same JSON by both.

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
STATUS = "/api/chat/status/"
PRESENCE = "/api/chat/presence/"
ENTRY_KEYS = {"user_id", "status", "last_seen", "availability",
              "availability_until", "custom_status"}

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

    def post_json(self, path: str, user: User, body: Any) -> Reply:
        headers = dict(self.headers(user),
                       **{"Content-Type": "application/json"})
        return self.call("POST", path, headers, json.dumps(body).encode())

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

    def test_rich_status_and_presence(self) -> None:
        status, body = self.post_json(HEARTBEAT + "/", self.alice,
                                      dict(BODY, idle=False))
        self.assertEqual(status, 200, body)
        status, own = self.post_json(STATUS, self.alice, {
            "availability": "dnd", "for": "90m", "text": "Focus time",
            "emoji": ":headphones:", "expires_in": "1h"})
        self.assertEqual(status, 200, own)
        self.assertEqual(set(own), ENTRY_KEYS | {"server_time"})
        self.assertEqual((own["user_id"], own["status"], own["availability"]),
                         (self.alice.id, "dnd", "dnd"))
        self.assertEqual((own["custom_status"]["text"],
                          own["custom_status"]["emoji"]),
                         ("Focus time", ":headphones:"))
        for key in ("availability_until", "last_seen", "server_time"):
            self.assertIsInstance(own[key], str)

        status, lookup = self.call(
            "GET", f"{PRESENCE}?user_ids={self.alice.id},{self.bob.id}",
            self.headers(self.bob), None)
        self.assertEqual(status, 200, lookup)
        self.assertEqual(set(lookup), {"users", "server_time"})
        alice, bob = lookup["users"]
        self.assertEqual(set(alice), ENTRY_KEYS)
        self.assertIs(type(alice["user_id"]), int)
        self.assertEqual(
            {k: alice[k] for k in ("status", "availability",
                                   "custom_status")},
            {k: own[k] for k in ("status", "availability",
                                 "custom_status")})
        self.assertEqual(bob, {
            "user_id": self.bob.id, "status": "offline", "last_seen": None,
            "availability": "auto", "availability_until": None,
            "custom_status": None})

        # Invisible: offline to others, not in online-users, the truth to
        # oneself.
        status, own = self.post_json(STATUS, self.alice,
                                     {"availability": "invisible"})
        self.assertEqual((status, own["status"], own["availability"]),
                         (200, "online", "invisible"))
        self.assertEqual(self.online_users(self.bob), [])
        for viewer, shown in ((self.bob, ("offline", "auto")),
                              (self.alice, ("online", "invisible"))):
            status, lookup = self.call(
                "GET", f"{PRESENCE}?user_ids={self.alice.id}",
                self.headers(viewer), None)
            entry = lookup["users"][0]
            self.assertEqual((entry["status"], entry["availability"]), shown)

        # Bad requests: a 400 with a message, nothing applied.
        for body in ({"availability": "busy"}, {}, {"text": "x" * 101}):
            with self.subTest(body=body):
                status, answer = self.post_json(STATUS, self.alice, body)
                self.assertEqual(status, 400, answer)
                self.assertIsInstance(answer["error"], str)
        status, answer = self.call("GET", PRESENCE, self.headers(self.bob),
                                   None)
        self.assertEqual(status, 400, answer)
        self.assertIn("user_ids", answer["error"])
        self.assertEqual(self.presence.get_presence(
            [self.alice.id], viewer_user_id=self.alice.id).users[0]
            .availability.label, "invisible")

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

