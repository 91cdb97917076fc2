"""presence_django's rich presence (issue 14) with Django's test client
against a real presenced: heartbeat's idle flag, POST status/, GET
presence/?user_ids=..., as a SimpleJWT Bearer caller, a DRF token caller
and a session login. Run with
`python3 -m django test --settings=django_test_settings test_django_rich`."""

from __future__ import annotations

import datetime
import time

from django.contrib.auth.models import User
from django.test import Client, TestCase, override_settings
from django.utils.dateparse import parse_datetime
from rest_framework.authtoken.models import Token
from rest_framework_simplejwt.tokens import RefreshToken

from presence_client import Availability, PresenceClient, Status
from presenced import Presenced

HEARTBEAT = "/api/chat/heartbeat/"
MARK_OFFLINE = "/api/chat/mark-offline/"
ONLINE_USERS = "/api/chat/online-users/"
STATUS = "/api/chat/status/"
PRESENCE = "/api/chat/presence/"
ENTRY_KEYS = {"user_id", "status", "last_seen", "availability",
              "availability_until", "custom_status"}
WAIT = 10  # seconds


def parse(value: str) -> datetime.datetime:
    moment = parse_datetime(value)
    assert moment is not None and moment.utcoffset() is not None, value
    return moment


class RichTestCase(TestCase):
    FLAGS: list = []

    def setUp(self) -> None:
        self.server = Presenced(self.FLAGS).start()
        self.addCleanup(self.server.close)
        override = override_settings(PRESENCE_SERVER=self.server.address)
        override.enable()
        self.addCleanup(override.disable)
        self.presence = PresenceClient(self.server.address)
        self.addCleanup(self.presence.close)
        self.alice = User.objects.create_user("alice", password="pw")
        self.bob = User.objects.create_user("bob", password="pw")

    @staticmethod
    def api() -> Client:
        return Client(enforce_csrf_checks=True)

    @staticmethod
    def bearer(user: User) -> dict:
        return {"HTTP_AUTHORIZATION":
                f"Bearer {RefreshToken.for_user(user).access_token}"}

    def post(self, path: str, user: User, body=None, **extra):
        return self.api().post(path, {} if body is None else body,
                               "application/json", **self.bearer(user),
                               **extra)

    def set_status(self, user: User, body, status: int = 200) -> dict:
        response = self.post(STATUS, user, body)
        self.assertEqual(response.status_code, status, response.content)
        self.assertEqual(response["Content-Type"], "application/json")
        return response.json()

    def lookup(self, viewer: User, *users: User) -> dict:
        ids = ",".join(str(user.id) for user in users)
        response = self.api().get(f"{PRESENCE}?user_ids={ids}",
                                  **self.bearer(viewer))
        self.assertEqual(response.status_code, 200, response.content)
        return response.json()

    def entry(self, viewer: User, user: User) -> dict:
        (entry,) = self.lookup(viewer, user)["users"]
        return entry


class StatusEndpointTest(RichTestCase):
    def test_dnd_with_a_custom_status_answers_the_own_view(self) -> None:
        self.assertEqual(self.post(HEARTBEAT, self.alice).status_code, 200)
        body = self.set_status(self.alice, {
            "availability": "dnd", "for": "90m", "text": "Focus time",
            "emoji": ":headphones:", "expires_in": "1h"})
        self.assertEqual(set(body), ENTRY_KEYS | {"server_time"})
        now = parse(body["server_time"])
        self.assertEqual(
            {k: body[k] for k in ("user_id", "status", "availability")},
            {"user_id": self.alice.id, "status": "dnd",
             "availability": "dnd"})
        self.assertEqual(parse(body["availability_until"]) - now,
                         datetime.timedelta(minutes=90))
        custom = body["custom_status"]
        self.assertEqual((custom["text"], custom["emoji"]),
                         ("Focus time", ":headphones:"))
        self.assertEqual(parse(custom["expires_at"]) - now,
                         datetime.timedelta(hours=1))
        self.assertLessEqual(parse(body["last_seen"]), now)
        # Applied in presenced.
        seen = self.presence.get_presence([self.alice.id]).users[0]
        self.assertEqual((seen.status, seen.availability),
                         (Status.DND, Availability.DND))

        # Others see it; a never-seen user is offline with nothing set.
        lookup = self.lookup(self.bob, self.alice, self.bob)
        self.assertEqual(set(lookup), {"users", "server_time"})
        alice, bob = lookup["users"]
        self.assertEqual(set(alice), ENTRY_KEYS)
        self.assertEqual({k: alice[k] for k in ENTRY_KEYS if k != "last_seen"},
                         {k: body[k] for k in ENTRY_KEYS if k != "last_seen"})
        self.assertEqual(bob, {
            "user_id": self.bob.id, "status": "offline", "last_seen": None,
            "availability": "auto", "availability_until": None,
            "custom_status": None})
        # Online users are online whatever their status.
        self.assertEqual(self.api().get(ONLINE_USERS, **self.bearer(
            self.bob)).json(), {"online_users": [self.alice.id]})

    def test_durations_and_moments(self) -> None:
        for value, length in (("2h", 7200), ("1h30m", 5400), ("45s", 45),
                              ("1d", 86400), ("1.5h", 5400), (5400, 5400),
                              (90.5, 90.5), ("600", 600), (" 10M ", 600)):
            with self.subTest(value=value):
                body = self.set_status(self.alice, {"availability": "dnd",
                                                    "for": value})
                self.assertEqual(
                    (parse(body["availability_until"])
                     - parse(body["server_time"])).total_seconds(), length)
        soon = (datetime.datetime.now(datetime.timezone.utc).replace(
            microsecond=0) + datetime.timedelta(hours=3))
        for text in (soon.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     soon.astimezone(datetime.timezone(
                         datetime.timedelta(hours=2))).isoformat()):
            with self.subTest(until=text):
                body = self.set_status(self.alice, {
                    "availability": "invisible", "until": text,
                    "text": "Back at 5",
                    "expires_at" if text.endswith("Z") else "expires": text})
                self.assertEqual(parse(body["availability_until"]), soon)
                self.assertEqual(body["availability"], "invisible")
                self.assertEqual(parse(body["custom_status"]["expires_at"]),
                                 soon)

    def test_invisible_is_offline_to_others_and_the_truth_to_oneself(
            self) -> None:
        self.post(HEARTBEAT, self.alice)
        self.post(HEARTBEAT, self.bob)
        body = self.set_status(self.alice, {"availability": "invisible",
                                            "text": "Heads down"})
        self.assertEqual((body["status"], body["availability"]),
                         ("online", "invisible"))
        own = self.entry(self.alice, self.alice)
        self.assertEqual((own["status"], own["availability"],
                          own["custom_status"]["text"]),
                         ("online", "invisible", "Heads down"))
        others = self.entry(self.bob, self.alice)
        self.assertEqual((others["status"], others["availability"],
                          others["availability_until"],
                          others["custom_status"]),
                         ("offline", "auto", None, None))
        # online-users keeps its meaning: never an invisible user.
        for viewer in (self.alice, self.bob):
            self.assertEqual(self.api().get(ONLINE_USERS, **self.bearer(
                viewer)).json(), {"online_users": [self.bob.id]})
        # Both in one lookup, in request order, each as the caller sees them.
        lookup = self.lookup(self.alice, self.bob, self.alice)
        self.assertEqual([(u["user_id"], u["status"], u["availability"])
                          for u in lookup["users"]],
                         [(self.bob.id, "online", "auto"),
                          (self.alice.id, "online", "invisible")])

        self.set_status(self.alice, {"availability": "auto", "clear": True})
        self.assertEqual(self.entry(self.bob, self.alice)["status"], "online")
        self.assertIsNone(self.entry(self.bob, self.alice)["custom_status"])
        self.assertEqual(self.post(MARK_OFFLINE, self.alice).json()[
            "sessions_ended"], 1)

    def test_bad_bodies_are_400_saying_what_to_change(self) -> None:
        past = (datetime.datetime.now(datetime.timezone.utc)
                - datetime.timedelta(minutes=5)).isoformat()
        for body, message in (
                ({}, "nothing to set: give availability"),
                ({"availability": "busy"},
                 'availability must be "auto", "dnd" or "invisible", got '
                 '"busy"'),
                ({"availability": None, "clear": False},
                 "nothing to set"),
                ({"availability": 2}, "availability must be"),
                ({"availability": "dnd", "for": "soon"},
                 'for must be a duration such as "90m", "2h", "1h30m" or a '
                 'number of seconds, got "soon"'),
                ({"availability": "dnd", "for": "0m"},
                 'for must be longer than 0, got "0m"'),
                ({"availability": "dnd", "for": -5}, "longer than 0"),
                ({"availability": "dnd", "for": True}, "for must be a"),
                ({"availability": "dnd", "for": "367d"},
                 "for must be at most 366 days"),
                ({"availability": "dnd", "until": "tomorrow"},
                 "until must be an RFC 3339 time with a UTC offset, e.g. "
                 '"2026-11-30T17:00:00Z", got "tomorrow"'),
                ({"availability": "dnd", "until": "2030-11-30T17:00:00"},
                 "until must be an RFC 3339 time with a UTC offset"),
                ({"availability": "dnd", "until": "2030-13-30T17:00:00Z"},
                 "RFC 3339"),
                ({"availability": "dnd", "until": "2030-11-30T17:00:00Z",
                  "for": "1h"}, "give until (a time) or for (a duration), "
                                "not both"),
                ({"for": "1h"}, 'for is when dnd or invisible ends: give it '
                                'with availability "dnd" or "invisible"'),
                ({"availability": "auto", "until": "2030-11-30T17:00:00Z"},
                 "until is when dnd or invisible ends"),
                ({"text": "x" * 101},
                 "text must be at most 100 characters, got 101"),
                ({"text": 5}, "text must be a string, got 5"),
                ({"emoji": ["x"]}, "emoji must be a string, got a list"),
                ({"text": ""}, "a custom status needs text or emoji"),
                ({"expires_in": "1h"}, "expires_in is when the custom "
                                       "status clears itself: give it with "
                                       "text or emoji"),
                ({"text": "x", "expires_at": past, "expires_in": "1h"},
                 "give expires_at (a time) or expires_in (a duration), not "
                 "both"),
                ({"text": "x", "expires": past, "expires_in": "1h"},
                 "give expires (a time) or expires_in"),
                ({"text": "x", "expires": past, "expires_at": past},
                 "give expires_at or expires (the same), not both"),
                ({"expires": past}, "expires is when the custom status"),
                ({"text": "x", "clear": True},
                 "clear removes the custom status"),
                ({"clear": "maybe"},
                 'clear must be true or false, got "maybe"'),
                ({"availabilty": "dnd"},
                 "unknown field 'availabilty'; the fields are availability, "
                 "until, for, text, emoji, expires_at, expires_in, clear"),
                ([1, 2], "the body must be a JSON object"),
                # presenced's own checks, its message passed on.
                ({"emoji": "coffee"}, 'emoji must be a short code such as '
                                      '":coffee:"'),
                ({"text": "a\u0000b"}, "text must be one line of text"),
                ({"availability": "dnd", "until": past},
                 "the availability's end"),
                ({"text": "x", "expires_at": past},
                 "the custom status's expiry")):
            with self.subTest(body=body):
                response = self.post(STATUS, self.alice, body)
                self.assertEqual(response.status_code, 400, response.content)
                self.assertEqual(response["Content-Type"], "application/json")
                self.assertIn(message, response.json()["error"])
        response = self.api().post(STATUS, "{not json", "application/json",
                                   **self.bearer(self.alice))
        self.assertEqual(response.status_code, 400)
        self.assertIn("JSON parse error", response.json()["error"])
        # None of it was applied.
        seen = self.presence.get_presence([self.alice.id],
                                          viewer_user_id=self.alice.id)
        self.assertEqual((seen.users[0].availability,
                          seen.users[0].custom_status),
                         (Availability.AUTO, None))

    def test_bad_presence_queries_are_400(self) -> None:
        for query, message in (
                ("", "user_ids is required: the users to look up, e.g. "
                     "?user_ids=1,2,3"),
                ("?user_ids=", "user_ids is required"),
                ("?user_ids=1,x", 'user_ids: "x" is not a user id (an '
                                  'integer > 0)'),
                ("?user_ids=1,,2", 'user_ids: "" is not a user id'),
                ("?user_ids=0", 'user_ids: "0" is not a user id'),
                ("?user_ids=-3", 'user_ids: "-3" is not a user id'),
                ("?user_ids=99999999999999999999", "is not a user id"),
                ("?user_ids=" + ",".join(["1"] * 1001),
                 "user_ids has 1001 ids; at most 1000 per request")):
            with self.subTest(query=query[:40]):
                response = self.api().get(PRESENCE + query,
                                          **self.bearer(self.alice))
                self.assertEqual(response.status_code, 400, response.content)
                self.assertIn(message, response.json()["error"])
        # Repeated parameters and repeated ids are fine, in order.
        response = self.api().get(
            f"{PRESENCE}?user_ids={self.bob.id}&user_ids={self.alice.id},"
            f"{self.bob.id}", **self.bearer(self.alice))
        self.assertEqual([u["user_id"] for u in response.json()["users"]],
                         [self.bob.id, self.alice.id, self.bob.id])

    def test_every_caller_kind_and_error_status(self) -> None:
        # DRF token.
        key = Token.objects.create(user=self.bob).key
        response = self.api().post(STATUS, {"availability": "dnd"},
                                   "application/json",
                                   HTTP_AUTHORIZATION=f"Token {key}")
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["user_id"], self.bob.id)
        # A session login: CSRF for the POST, none for the GET.
        browser = Client(enforce_csrf_checks=True)
        browser.force_login(self.alice)
        response = browser.post(STATUS, {"text": "Hi"}, "application/json")
        self.assertEqual(response.status_code, 403)
        self.assertIn("CSRF", response.json()["error"])
        browser.get("/page/")
        response = browser.post(
            STATUS, {"text": "Hi"}, "application/json",
            HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value)
        self.assertEqual(response.status_code, 200, response.content)
        self.assertEqual(response.json()["custom_status"]["text"], "Hi")
        response = browser.get(f"{PRESENCE}?user_ids={self.bob.id}")
        self.assertEqual(response.json()["users"][0]["availability"], "dnd")
        # Anonymous: 401 with a challenge.
        for method, path in (("post", STATUS),
                             ("get", PRESENCE + "?user_ids=1")):
            with self.subTest(path=path):
                response = getattr(Client(), method)(path)
                self.assertEqual(response.status_code, 401)
                self.assertEqual(response["WWW-Authenticate"],
                                 'Bearer realm="api"')
        # Wrong methods.
        for method, path, allowed in (("get", STATUS, "POST"),
                                      ("post", PRESENCE, "GET")):
            with self.subTest(method=method, path=path):
                response = getattr(self.api(), method)(
                    path, **self.bearer(self.alice))
                self.assertEqual(response.status_code, 405)
                self.assertIn(allowed, response["Allow"].split(", "))
        # Both forms of the path; the 404 names the endpoints.
        self.assertEqual(self.post(STATUS.rstrip("/"), self.alice,
                                   {"clear": True}).status_code, 200)
        response = self.api().get("/api/chat/statuses/",
                                  **self.bearer(self.alice))
        self.assertEqual(response.status_code, 404)
        self.assertIn("status/ and presence/", response.json()["error"])
        # presenced down: 503, as every endpoint (one call: each waits for
        # gRPC's retries).
        self.server.stop()
        with self.assertLogs("presence_django", "WARNING"):
            response = self.api().get(f"{PRESENCE}?user_ids=1",
                                      **self.bearer(self.alice))
        self.assertEqual(response.status_code, 503)
        self.assertEqual(response.json(),
                         {"error": "presence service unavailable"})


class IdleHeartbeatTest(RichTestCase):
    FLAGS = ["--away_after=500ms"]

    def wait_for_status(self, user: User, status: str) -> None:
        deadline = time.monotonic() + WAIT
        while self.entry(self.bob, user)["status"] != status:
            if time.monotonic() > deadline:
                self.fail(f"{user.username} not {status} within {WAIT} s")
            time.sleep(0.02)

    def test_idle_heartbeats_leave_the_user_away(self) -> None:
        # alice beats from the API (JSON), carol from a browser (a form).
        carol = User.objects.create_user("carol", password="pw")
        browser = Client()
        browser.force_login(carol)
        first = self.post(HEARTBEAT, self.alice, {"idle": False,
                                                  "timestamp": "x"})
        self.assertEqual(first.status_code, 200, first.content)
        # The answer is as before.
        self.assertEqual(set(first.json()),
                         {"online", "became_online", "server_time",
                          "online_until", "heartbeat_interval_seconds"})
        self.assertEqual(browser.post(HEARTBEAT).status_code, 200)
        self.assertEqual(self.entry(self.bob, self.alice)["status"], "online")
        self.wait_for_status(self.alice, "away")
        self.wait_for_status(carol, "away")

        self.assertEqual(self.post(HEARTBEAT, self.alice,
                                   {"idle": True}).status_code, 200)
        for value in ("true", "1", "TRUE"):
            response = browser.post(HEARTBEAT, {"idle": value})
            self.assertEqual(response.status_code, 200, response.content)
        for user in (self.alice, carol):
            self.assertEqual(self.entry(self.bob, user)["status"], "away")
        # Away is online.
        self.assertEqual(self.api().get(ONLINE_USERS, **self.bearer(
            self.bob)).json(), {"online_users": [self.alice.id, carol.id]})
        # The product's body (no idle), and a form's false: activity.
        self.post(HEARTBEAT, self.alice, {"timestamp": "2026-11-30T12:00:00Z"})
        self.assertEqual(browser.post(HEARTBEAT, {"idle": "false"})
                         .status_code, 200)
        for user in (self.alice, carol):
            self.assertEqual(self.entry(self.bob, user)["status"], "online")

    def test_bad_idle_values_are_400(self) -> None:
        for body, shown in (({"idle": "yes"}, '"yes"'), ({"idle": 1}, "1"),
                            ({"idle": {}}, "an object")):
            with self.subTest(body=body):
                response = self.post(HEARTBEAT, self.bob, body)
                self.assertEqual(response.status_code, 400)
                self.assertEqual(response.json(), {
                    "error": f"idle must be true or false, got {shown}"})
        self.assertEqual(self.presence.list_online(), [])
        # A body that is not JSON was never read, and still is not.
        for body, content_type in (("{not json", "application/json"),
                                   ("idle", "text/plain")):
            response = self.api().post(HEARTBEAT, body, content_type,
                                       **self.bearer(self.bob))
            self.assertEqual(response.status_code, 200, response.content)
