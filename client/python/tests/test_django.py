"""presence_django's views with Django's test client against a real
presenced (started per test), authenticated the ways a DRF project does:
SimpleJWT Bearer tokens, DRF's TokenAuthentication, and a session login
with CSRF. Run with
`python3 -m django test --settings=django_test_settings test_django`."""

from __future__ import annotations

import datetime

import jwt

from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client, TestCase, override_settings
from django.utils.dateparse import parse_datetime
from rest_framework.authtoken.models import Token
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from presence_client import PresenceClient, Status
from presence_django.client import get_client
from presence_django.sessions import presence_session_id
from presenced import Presenced, SilentServer

HEARTBEAT = "/api/chat/heartbeat/"
MARK_OFFLINE = "/api/chat/mark-offline/"
ONLINE_USERS = "/api/chat/online-users/"
ENDPOINTS = (("post", HEARTBEAT), ("post", MARK_OFFLINE),
             ("get", ONLINE_USERS))
# What the chat product sends; the server's clock decides, not this.
BODY = {"timestamp": "2026-11-30T12:00:00Z"}


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

    @staticmethod
    def api() -> Client:
        """The chat backend's HTTP client: no cookies, and CSRF enforced as
        for a real request (token callers must not need it)."""
        return Client(enforce_csrf_checks=True)

    @staticmethod
    def bearer(user: User, session: str = "") -> dict:
        """The headers of a call with a SimpleJWT access token of `user`,
        minted by SimpleJWT itself, naming `session` if given."""
        headers = {"HTTP_AUTHORIZATION":
                   f"Bearer {RefreshToken.for_user(user).access_token}"}
        if session:
            headers["HTTP_X_PRESENCE_SESSION"] = session
        return headers

    def post(self, path: str, **headers):
        """POSTs the product's exact body."""
        return self.api().post(path, BODY, "application/json", **headers)

    # --- token callers ---------------------------------------------------

    def test_bearer_token_caller_follows_the_product_flow(self) -> None:
        for slash in ("/", ""):
            with self.subTest(trailing_slash=bool(slash)):
                headers = self.bearer(self.alice)
                for beat in range(3):
                    response = self.post(HEARTBEAT.rstrip("/") + slash,
                                         **headers)
                    self.assertEqual(response.status_code, 200,
                                     response.content)
                    self.assertIs(response.json()["became_online"], beat == 0)
                    # Repeated heartbeats never pile up sessions.
                    self.assertEqual(self.live_sessions(self.alice), 1)
                response = self.api().get(ONLINE_USERS.rstrip("/") + slash,
                                          **self.bearer(self.bob))
                self.assertEqual(response.status_code, 200, response.content)
                self.assertEqual(response.json(),
                                 {"online_users": [self.alice.id]})

                response = self.post(MARK_OFFLINE.rstrip("/") + slash,
                                     **headers)
                self.assertEqual(response.status_code, 200, response.content)
                self.assertEqual(response.json()["sessions_ended"], 1)
                self.assertIs(response.json()["still_online"], False)
                lookup = self.presence.get_presence([self.alice.id]).users[0]
                self.assertEqual(lookup.status, Status.OFFLINE)
                self.assertEqual(self.api().get(
                    ONLINE_USERS, **headers).json(), {"online_users": []})
        # Token callers get no Django session (and so no cookie).
        self.assertEqual(Session.objects.count(), 0)

    def test_token_from_simplejwts_obtain_view(self) -> None:
        response = self.api().post("/api/token/", {
            "username": "bob", "password": "pw"}, "application/json")
        self.assertEqual(response.status_code, 200, response.content)
        access = response.json()["access"]
        response = self.post(HEARTBEAT, HTTP_AUTHORIZATION=f"Bearer {access}")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(self.presence.list_online(), [self.bob.id])

    def test_drf_token_authentication(self) -> None:
        key = Token.objects.create(user=self.bob).key
        response = self.post(HEARTBEAT, HTTP_AUTHORIZATION=f"Token {key}")
        self.assertEqual(response.status_code, 200, response.content)
        response = self.api().get(ONLINE_USERS,
                                  HTTP_AUTHORIZATION=f"Token {key}")
        self.assertEqual(response.json(), {"online_users": [self.bob.id]})
        response = self.post(MARK_OFFLINE, HTTP_AUTHORIZATION=f"Token {key}")
        self.assertEqual(response.json()["sessions_ended"], 1)
        self.assertEqual(self.presence.list_online(), [])

    def test_x_presence_session_names_the_session(self) -> None:
        laptop = self.bearer(self.alice, "laptop-5f0c")
        phone = self.bearer(self.alice, "phone:1.2_3")
        for headers in (laptop, phone, laptop, phone):
            self.assertEqual(self.post(HEARTBEAT, **headers).status_code, 200)
        self.assertEqual(self.live_sessions(self.alice), 2)

        response = self.post(MARK_OFFLINE, **laptop)
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["sessions_ended"], 1)
        self.assertIs(response.json()["still_online"], True)
        self.assertEqual(self.live_sessions(self.alice), 1)
        # Ending it again ends nothing.
        self.assertEqual(self.post(MARK_OFFLINE, **laptop).json()[
            "sessions_ended"], 0)
        self.assertEqual(self.live_sessions(self.alice), 1)

    def test_mark_offline_without_the_header_ends_every_session(self) -> None:
        # Logging out means offline: the named sessions, the default one and
        # the user's browsers logged in with a session cookie.
        browser = self.browser(self.alice)
        self.assertEqual(browser.post(HEARTBEAT).status_code, 200)
        self.post(HEARTBEAT, **self.bearer(self.alice, "tab-1"))
        self.post(HEARTBEAT, **self.bearer(self.alice))
        self.post(HEARTBEAT, **self.bearer(self.bob))
        self.assertEqual(self.live_sessions(self.alice), 3)

        response = self.post(MARK_OFFLINE, **self.bearer(self.alice))
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["sessions_ended"], 3)
        self.assertIs(response.json()["still_online"], False)
        self.assertEqual(self.presence.list_online(), [self.bob.id])

    def test_bad_x_presence_session_is_400(self) -> None:
        for name, value in (("empty", ""), ("too long", "a" * 129),
                            ("space", "tab 1"), ("slash", "tab/1"),
                            ("non-ASCII", "t\u00e4b")):
            with self.subTest(name):
                headers = self.bearer(self.alice)
                headers["HTTP_X_PRESENCE_SESSION"] = value
                for path in (HEARTBEAT, MARK_OFFLINE):
                    response = self.post(path, **headers)
                    self.assertEqual(response.status_code, 400)
                    self.assertIn("X-Presence-Session",
                                  response.json()["error"])
        headers = self.bearer(self.alice, "tab 1")
        self.assertEqual(self.post(HEARTBEAT, **headers).json()["error"],
                         "X-Presence-Session must be 1 to 128 characters of "
                         "A-Z, a-z, 0-9, '.', '_', ':' or '-'; character 4 "
                         "is ' '")
        self.assertEqual(
            self.post(HEARTBEAT, **self.bearer(self.alice, "a" * 128))
            .status_code, 200)
        self.assertEqual(self.live_sessions(self.alice), 1)

    # --- session-cookie callers ------------------------------------------

    def test_session_login_needs_the_csrf_token(self) -> None:
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(self.alice)
        for path in (HEARTBEAT, MARK_OFFLINE):
            with self.subTest(path=path):
                response = browser.post(path, BODY, "application/json")
                self.assertEqual(response.status_code, 403)
                self.assertEqual(response["Content-Type"], "application/json")
                self.assertIn("CSRF", response.json()["error"])
        self.assertEqual(self.presence.list_online(), [])
        # Reading needs no CSRF token.
        self.assertEqual(browser.get(ONLINE_USERS).status_code, 200)

        self.assertEqual(browser.get("/page/").status_code, 200)
        csrf = browser.cookies["csrftoken"].value
        response = browser.post(HEARTBEAT, BODY, "application/json",
                                HTTP_X_CSRFTOKEN=csrf)
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(self.presence.list_online(), [self.alice.id])
        response = browser.post(MARK_OFFLINE, BODY, "application/json",
                                HTTP_X_CSRFTOKEN=csrf)
        self.assertEqual(response.json()["sessions_ended"], 1)

    def test_session_caller_ignores_x_presence_session(self) -> None:
        # A browser's session is its Django session, whatever it claims.
        laptop, phone = self.browser(self.alice), self.browser(self.alice)
        laptop.post(HEARTBEAT, HTTP_X_PRESENCE_SESSION="shared")
        phone.post(HEARTBEAT, HTTP_X_PRESENCE_SESSION="shared")
        self.assertEqual(self.live_sessions(self.alice), 2)
        response = laptop.post(MARK_OFFLINE, HTTP_X_PRESENCE_SESSION="x y")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["sessions_ended"], 1)

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

    def test_not_authenticated_is_401_json(self) -> None:
        anonymous = Client()
        for method, path in ENDPOINTS:
            with self.subTest(path=path):
                response = getattr(anonymous, method)(path)
                self.assertEqual(response.status_code, 401)
                self.assertEqual(response["Content-Type"], "application/json")
                # The first configured class that can challenge: SimpleJWT.
                self.assertEqual(response["WWW-Authenticate"],
                                 'Bearer realm="api"')
                self.assertEqual(
                    response.json(),
                    {"error": "Authentication credentials were not provided."})
        self.assertEqual(self.presence.list_online(), [])

    def test_only_session_authentication_is_still_401(self) -> None:
        # DRF answers 403 when its first class cannot challenge; the caller
        # is not authenticated, which is a 401.
        self.use_presenced(
            self.server.address, PRESENCE_AUTHENTICATION_CLASSES=[
                "rest_framework.authentication.SessionAuthentication"])
        response = Client().get(ONLINE_USERS)
        self.assertEqual(response.status_code, 401)
        self.assertIn("error", response.json())

    def test_presence_authentication_classes_override_the_default(
            self) -> None:
        self.use_presenced(
            self.server.address, PRESENCE_AUTHENTICATION_CLASSES=[
                "rest_framework.authentication.TokenAuthentication"])
        response = self.api().post(HEARTBEAT, BODY, "application/json",
                                   **self.bearer(self.alice))
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response["WWW-Authenticate"], "Token")
        self.assertEqual(self.presence.list_online(), [])
        key = Token.objects.create(user=self.alice).key
        response = self.api().post(HEARTBEAT, BODY, "application/json",
                                   HTTP_AUTHORIZATION=f"Token {key}")
        self.assertEqual(response.status_code, 200, response.content)

    def test_bad_bearer_token_is_401_json(self) -> None:
        expired = AccessToken.for_user(self.alice)
        expired.set_exp(lifetime=-datetime.timedelta(seconds=1))
        forged = jwt.encode(dict(AccessToken.for_user(self.alice).payload),
                            "not-the-signing-key", algorithm="HS256")
        for name, token in (("garbage", "not-a-jwt"),
                            ("expired", str(expired)),
                            ("signed with another key", forged),
                            ("refresh token", str(RefreshToken.for_user(
                                self.alice)))):
            with self.subTest(name):
                response = self.api().post(
                    HEARTBEAT, BODY, "application/json",
                    HTTP_AUTHORIZATION=f"Bearer {token}")
                self.assertEqual(response.status_code, 401, response.content)
                self.assertEqual(response["Content-Type"], "application/json")
                self.assertIsInstance(response.json()["error"], str)
        self.assertEqual(self.presence.list_online(), [])

    def test_wrong_method_is_405_json(self) -> None:
        for method, path, allowed in (("get", HEARTBEAT, "POST"),
                                      ("get", MARK_OFFLINE, "POST"),
                                      ("post", ONLINE_USERS, "GET"),
                                      ("delete", ONLINE_USERS, "GET")):
            with self.subTest(method=method, path=path):
                response = getattr(self.api(), method)(
                    path, **self.bearer(self.alice))
                self.assertEqual(response.status_code, 405)
                self.assertIn(allowed, response["Allow"].split(", "))
                self.assertIn("error", response.json())
        self.assertEqual(self.presence.list_online(), [])

    def test_unknown_path_under_the_prefix_is_404_json(self) -> None:
        # CSRF enforced: a POST there must not get Django's HTML 403 page.
        client = Client(enforce_csrf_checks=True)
        client.force_login(self.alice)
        for method, path in (("get", "/api/chat/nope"),
                             ("post", "/api/chat/heartbeat/extra/"),
                             ("get", "/api/chat/")):
            with self.subTest(path=path):
                response = getattr(client, method)(path)
                self.assertEqual(response.status_code, 404)
                self.assertIn("heartbeat/", response.json()["error"])

    def test_errors_are_json_whatever_the_accept_header(self) -> None:
        response = Client().get(ONLINE_USERS, HTTP_ACCEPT="text/html")
        self.assertEqual(response.status_code, 401)
        self.assertEqual(response["Content-Type"], "application/json")
        response = self.api().get(ONLINE_USERS, HTTP_ACCEPT="text/html",
                                  **self.bearer(self.alice))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"online_users": []})

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
