"""presence_django against a sharded deployment: three presenced shards
(--shard=sN --shards=s0,s1,s2), PRESENCE_SERVER naming them. Run with
`python3 -m django test --settings=django_test_settings
test_django_sharding`."""

from __future__ import annotations

from typing import Dict, List

from django.contrib.auth.models import User
from django.core import checks
from django.test import Client, TestCase, override_settings
from rest_framework_simplejwt.tokens import RefreshToken

from presence_client import PresenceClient, ShardMap
from presence_django.client import get_client
from presenced import Presenced

HEARTBEAT = "/api/chat/heartbeat/"
MARK_OFFLINE = "/api/chat/mark-offline/"
ONLINE_USERS = "/api/chat/online-users/"
BODY = {"timestamp": "2026-11-30T12:00:00Z"}
NAMES = ("s0", "s1", "s2")


class ShardedPresenceViewsTest(TestCase):
    def setUp(self) -> None:
        self.servers: Dict[str, Presenced] = {}
        for name in NAMES:
            server = Presenced([f"--shard={name}",
                                "--shards=" + ",".join(NAMES)]).start()
            self.addCleanup(server.close)
            self.servers[name] = server
        self.spec = ",".join(f"{name}={server.address}"
                             for name, server in self.servers.items())
        override = override_settings(PRESENCE_SERVER=self.spec)
        override.enable()
        self.addCleanup(override.disable)
        # Each shard asked directly: what it holds.
        self.direct = {name: PresenceClient(server.address)
                       for name, server in self.servers.items()}
        for client in self.direct.values():
            self.addCleanup(client.close)
        self.users: List[User] = [
            User.objects.create_user(f"user{i}", password="pw")
            for i in range(12)]
        self.shard_map = ShardMap.parse(self.spec)

    def owner(self, user: User) -> str:
        return self.shard_map.owner(user.id).name

    @staticmethod
    def bearer(user: User) -> dict:
        return {"HTTP_AUTHORIZATION":
                f"Bearer {RefreshToken.for_user(user).access_token}"}

    def post(self, path: str, user: User):
        return Client(enforce_csrf_checks=True).post(
            path, BODY, "application/json", **self.bearer(user))

    def test_the_endpoints_route_by_user(self) -> None:
        self.assertTrue(get_client().sharded)
        # The users land on more than one shard.
        self.assertGreater(len({self.owner(u) for u in self.users}), 1)
        for user in self.users:
            response = self.post(HEARTBEAT, user)
            self.assertEqual(response.status_code, 200, response.content)
            self.assertIs(response.json()["became_online"], True)
        # Each heartbeat is on its owner, and only there.
        for name, client in self.direct.items():
            self.assertEqual(
                client.list_online(),
                sorted(u.id for u in self.users if self.owner(u) == name))

        response = Client().get(ONLINE_USERS, **self.bearer(self.users[0]))
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json(),
                         {"online_users": sorted(u.id for u in self.users)})

        gone = self.users[3]
        response = self.post(MARK_OFFLINE, gone)
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["sessions_ended"], 1)
        self.assertFalse(self.direct[self.owner(gone)]
                         .get_presence([gone.id]).users[0].online)
        response = Client().get(ONLINE_USERS, **self.bearer(self.users[0]))
        self.assertEqual(response.json(), {"online_users": sorted(
            u.id for u in self.users if u != gone)})

    def test_a_session_login_and_logout_on_the_owner(self) -> None:
        user = self.users[5]
        browser = Client()
        browser.force_login(user)
        response = browser.post(HEARTBEAT, BODY, "application/json")
        self.assertEqual(response.status_code, 200, response.content)
        owner = self.direct[self.owner(user)]
        self.assertEqual(owner.get_presence([user.id]).users[0].live_sessions,
                         1)
        browser.logout()  # the app's logout hook ends the session
        self.assertFalse(owner.get_presence([user.id]).users[0].online)

    def test_a_shard_down_is_a_503_for_whom_it_concerns(self) -> None:
        down = "s1"
        self.servers[down].kill()
        on_down = next(u for u in self.users if self.owner(u) == down)
        elsewhere = next(u for u in self.users if self.owner(u) != down)
        with self.assertLogs("presence_django", "WARNING") as logs:
            self.assertEqual(self.post(HEARTBEAT, on_down).status_code, 503)
            self.assertEqual(Client().get(
                ONLINE_USERS, **self.bearer(elsewhere)).status_code, 503)
        self.assertIn("shard s1", "\n".join(logs.output))
        response = self.post(HEARTBEAT, elsewhere)
        self.assertEqual(response.status_code, 200, response.content)


class PresenceServerCheckTest(TestCase):
    def test_a_bad_presence_server_fails_the_check(self) -> None:
        with override_settings(PRESENCE_SERVER="s0=127.0.0.1:1,s1"):
            errors = checks.run_checks()
        self.assertEqual([e.id for e in errors], ["presence_django.E001"])
        self.assertIn("NAME=HOST:PORT", errors[0].msg)
        for good in ("127.0.0.1:50051", "s0=127.0.0.1:1,s1=127.0.0.1:2",
                     "presenced-{0..2}.presenced.chat.svc:50051"):
            with override_settings(PRESENCE_SERVER=good):
                self.assertEqual(checks.run_checks(), [])
