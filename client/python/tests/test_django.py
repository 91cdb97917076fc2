"""presence_django's views with Django's test client against a real
presenced (started per test). Run with
`python3 -m django test --settings=django_test_settings test_django`."""

from __future__ import annotations

import datetime

from django.contrib.auth.models import User
from django.test import Client, TestCase, override_settings
from django.utils.dateparse import parse_datetime

from presence_client import PresenceClient, Status
from presence_django.client import get_client
from presence_django.sessions import presence_session_id
from presenced import Presenced, SilentServer

HEARTBEAT = "/api/chat/heartbeat/"
MARK_OFFLINE = "/api/chat/mark-offline/"
ONLINE_USERS = "/api/chat/online-users/"


class PresenceViewsTest(TestCase):
    def setUp(self) -> None:
        self.server = Presenced().start()
        self.addCleanup(self.server.close)
        self.use_presenced(self.server.address)
        self.presence = PresenceClient(self.server.address)
        self.addCleanup(self.presence.close)
        self.alice = User.objects.create_user("alice", password="pw")
        self.bob = User.objects.create_user("bob", password="pw")

    def use_presenced(self, address: str, **extra) -> None:
        """Points the app at `address` until the end of the test."""
        override = override_settings(PRESENCE_SERVER=address, **extra)
        override.enable()
        self.addCleanup(override.disable)

    def browser(self, user: User) -> Client:
        """A logged-in browser of `user`: a session of its own."""
        client = Client()
        client.force_login(user)
        return client

    def live_sessions(self, user: User) -> int:
        return self.presence.get_presence([user.id]).users[0].live_sessions

    def test_heartbeat_makes_the_user_online(self) -> None:
        browser = self.browser(self.alice)
        response = browser.post(HEARTBEAT)
        self.assertEqual(response.status_code, 200, response.content)
        body = response.json()
        self.assertIs(body["online"], True)
        self.assertIs(body["became_online"], True)
        self.assertEqual(body["heartbeat_interval_seconds"], 120.0)
        online_until = parse_datetime(body["online_until"])
        server_time = parse_datetime(body["server_time"])
        self.assertAlmostEqual(
            (online_until - server_time).total_seconds(),
            datetime.timedelta(minutes=5).total_seconds(), delta=0.002)

        response = browser.get(ONLINE_USERS)
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json(), {"online_users": [self.alice.id]})

        again = browser.post(HEARTBEAT).json()
        self.assertIs(again["became_online"], False)
        # The session in presenced is the Django session, by a digest of its
        # key: never the key itself, which would log anyone in.
        key = browser.session.session_key
        self.assertNotIn(key, presence_session_id(key))
        self.assertEqual(presence_session_id(key), presence_session_id(key))
        ended = self.presence.mark_offline(self.alice.id,
                                           presence_session_id(key))
        self.assertEqual(ended.sessions_ended, 1)

    def test_two_browsers_of_one_user_are_two_sessions(self) -> None:
        laptop, phone = self.browser(self.alice), self.browser(self.alice)
        self.assertNotEqual(laptop.session.session_key,
                            phone.session.session_key)
        self.assertEqual(laptop.post(HEARTBEAT).status_code, 200)
        self.assertEqual(phone.post(HEARTBEAT).status_code, 200)
        self.assertEqual(self.live_sessions(self.alice), 2)

        response = laptop.post(MARK_OFFLINE)
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["still_online"], True)
        self.assertEqual(response.json()["sessions_ended"], 1)
        self.assertEqual(phone.get(ONLINE_USERS).json(),
                         {"online_users": [self.alice.id]})

        response = phone.post(MARK_OFFLINE)
        self.assertEqual(response.json()["still_online"], False)
        self.assertEqual(phone.get(ONLINE_USERS).json(), {"online_users": []})

    def test_online_users_lists_every_online_user(self) -> None:
        alice, bob = self.browser(self.alice), self.browser(self.bob)
        alice.post(HEARTBEAT)
        bob.post(HEARTBEAT)
        self.assertEqual(alice.get(ONLINE_USERS).json(),
                         {"online_users": sorted([self.alice.id,
                                                  self.bob.id])})

    def test_logout_in_one_browser_leaves_the_other_online(self) -> None:
        laptop, phone = self.browser(self.alice), self.browser(self.alice)
        laptop.post(HEARTBEAT)
        phone.post(HEARTBEAT)
        laptop.logout()
        self.assertEqual(self.live_sessions(self.alice), 1)
        self.assertEqual(phone.get(ONLINE_USERS).json(),
                         {"online_users": [self.alice.id]})
        phone.logout()
        lookup = self.presence.get_presence([self.alice.id]).users[0]
        self.assertEqual(lookup.status, Status.OFFLINE)
        self.assertIsNotNone(lookup.last_seen)

    def test_logout_hook_can_be_turned_off(self) -> None:
        self.use_presenced(self.server.address,
                           PRESENCE_MARK_OFFLINE_ON_LOGOUT=False)
        browser = self.browser(self.alice)
        browser.post(HEARTBEAT)
        browser.logout()
        self.assertEqual(self.live_sessions(self.alice), 1)

    def test_not_logged_in_is_401(self) -> None:
        anonymous = Client()
        for method, path in (("post", HEARTBEAT), ("post", MARK_OFFLINE),
                             ("get", ONLINE_USERS)):
            with self.subTest(path=path):
                response = getattr(anonymous, method)(path)
                self.assertEqual(response.status_code, 401)
                self.assertEqual(response.json(),
                                 {"error": "authentication required"})
        self.assertEqual(self.presence.list_online(), [])

    def test_wrong_method_is_405(self) -> None:
        browser = self.browser(self.alice)
        for method, path, allow in (("get", HEARTBEAT, "POST"),
                                    ("get", MARK_OFFLINE, "POST"),
                                    ("post", ONLINE_USERS, "GET")):
            with self.subTest(method=method, path=path):
                response = getattr(browser, method)(path)
                self.assertEqual(response.status_code, 405)
                self.assertEqual(response["Allow"], allow)
                self.assertIn("error", response.json())
        self.assertEqual(self.presence.list_online(), [])

    def test_presenced_down_is_503(self) -> None:
        browser = self.browser(self.alice)
        self.assertEqual(browser.post(HEARTBEAT).status_code, 200)
        self.server.stop()
        for method, path in (("post", HEARTBEAT), ("post", MARK_OFFLINE),
                             ("get", ONLINE_USERS)):
            with self.subTest(path=path):
                with self.assertLogs("presence_django", "WARNING") as logs:
                    response = getattr(browser, method)(path)
                self.assertEqual(response.status_code, 503)
                self.assertEqual(response["Content-Type"], "application/json")
                self.assertEqual(response.json(),
                                 {"error": "presence service unavailable"})
                self.assertIn("UNAVAILABLE", logs.output[0])
        with self.assertLogs("presence_django", "WARNING"):
            browser.logout()  # works without presenced
        self.assertNotIn("_auth_user_id", browser.session)

    def test_presenced_too_slow_is_503(self) -> None:
        silent = SilentServer()
        self.addCleanup(silent.close)
        self.use_presenced(silent.address, PRESENCE_TIMEOUT=0.3)
        with self.assertLogs("presence_django", "WARNING") as logs:
            response = self.browser(self.alice).post(HEARTBEAT)
        self.assertIn("DEADLINE_EXCEEDED", logs.output[0])
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.json(),
                         {"error": "presence service unavailable"})

    def test_one_client_per_process_until_the_settings_change(self) -> None:
        first = get_client()
        self.assertIs(get_client(), first)
        self.assertEqual(first.timeout, 2.0)
        self.use_presenced(self.server.address, PRESENCE_TIMEOUT=1)
        self.assertIsNot(get_client(), first)
        self.assertEqual(get_client().timeout, 1.0)
