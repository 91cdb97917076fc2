// presence-rest end to end: a real presenced and a real presence-rest binary
// on loopback ports, spoken to over HTTP/1.1 like a browser would.
#include <signal.h>

#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/read_until.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "presence/client.h"
#include "tests/test_util.h"
#include "gateway/jwt.h"

namespace presence::rest {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using google::protobuf::Struct;
using presence::testing::RunningPresenced;
using presence::testing::StartPresenced;
using presence::testing::Subprocess;
using presence::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kSecret[] = "rest-test-secret-0123456789abcdef";

std::string Token(int64_t user_id, absl::Duration valid_for = absl::Minutes(5),
                  absl::string_view secret = kSecret) {
  return SignHs256Jwt(
      absl::StrCat(R"({"token_type":"access","user_id":)", user_id,
                   R"(,"exp":)", absl::ToUnixSeconds(absl::Now() + valid_for),
                   "}"),
      secret);
}

struct HttpResult {
  int status = 0;
  std::string body;
  Struct json;  // the body, if it was a JSON object
  http::response<http::string_body> raw;
};

std::vector<int64_t> Ids(const google::protobuf::Value& list) {
  std::vector<int64_t> ids;
  for (const auto& value : list.list_value().values()) {
    ids.push_back(static_cast<int64_t>(value.number_value()));
  }
  return ids;
}

// One request on a fresh connection, with `authorization` as the whole
// Authorization header (none if empty).
HttpResult HttpWithAuthorization(int port, http::verb verb,
                                 const std::string& target,
                                 const std::string& authorization,
                                 const std::string& body = "") {
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                               static_cast<uint16_t>(port)));
  http::request<http::string_body> request{verb, target, 11};
  request.set(http::field::host, "127.0.0.1");
  if (!authorization.empty()) {
    request.set(http::field::authorization, authorization);
  }
  if (!body.empty()) {
    request.set(http::field::content_type, "application/json");
    request.body() = body;
  }
  request.prepare_payload();
  http::write(stream, request);
  beast::flat_buffer buffer;
  HttpResult result;
  http::read(stream, buffer, result.raw);
  result.status = result.raw.result_int();
  result.body = result.raw.body();
  if (!result.body.empty() && result.body[0] == '{') {
    EXPECT_TRUE(
        google::protobuf::util::JsonStringToMessage(result.body, &result.json)
            .ok())
        << result.body;
  }
  return result;
}

// The same with `Authorization: Bearer <token>` (none if `token` is empty).
HttpResult Http(int port, http::verb verb, const std::string& target,
                const std::string& token = "", const std::string& body = "") {
  return HttpWithAuthorization(port, verb, target,
                               token.empty() ? "" : "Bearer " + token, body);
}

// A browser's EventSource, reduced to what the tests look at.
class EventStream {
 public:
  struct Event {
    std::string name;
    Struct data;
  };

  EventStream(int port, const std::string& target) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                  static_cast<uint16_t>(port)));
    asio::write(socket_, asio::buffer(absl::StrCat(
                             "GET ", target,
                             " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "Accept: text/event-stream\r\n\r\n")));
  }

  // The status line and headers.
  std::optional<std::string> Headers(absl::Duration timeout) {
    return ReadUntil("\r\n\r\n", timeout);
  }

  // The next `event:` frame, skipping comments and `retry:`; nullopt if none
  // arrives within `timeout` or the stream ends.
  std::optional<Event> Next(absl::Duration timeout = absl::Seconds(10)) {
    absl::Time deadline = absl::Now() + timeout;
    while (true) {
      std::optional<std::string> frame =
          ReadUntil("\n\n", deadline - absl::Now());
      if (!frame) return std::nullopt;
      if (frame->rfind("event: ", 0) != 0) continue;
      Event event;
      size_t newline = frame->find('\n');
      event.name = frame->substr(7, newline - 7);
      std::string data = frame->substr(newline + 1);
      EXPECT_EQ(data.rfind("data: ", 0), 0u) << *frame;
      EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(
                      data.substr(6, data.size() - 8), &event.data)
                      .ok())
          << *frame;
      return event;
    }
  }

  // True once the server closed the stream (within `timeout`).
  bool Ended(absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (!ReadUntil("\n\n", deadline - absl::Now()) && eof_) return true;
    }
    return false;
  }

 private:
  std::optional<std::string> ReadUntil(const std::string& delimiter,
                                       absl::Duration timeout) {
    size_t at = buffer_.find(delimiter);
    if (at == std::string::npos) {
      bool done = false;
      beast::error_code error;
      asio::async_read_until(socket_, asio::dynamic_buffer(buffer_), delimiter,
                             [&](beast::error_code e, size_t) {
                               done = true;
                               error = e;
                             });
      io_.restart();
      io_.run_for(
          absl::ToChronoNanoseconds(std::max(timeout, absl::ZeroDuration())));
      if (!done) {
        socket_.cancel();
        io_.restart();
        io_.run();
        return std::nullopt;
      }
      if (error) {
        eof_ = true;
        return std::nullopt;
      }
      at = buffer_.find(delimiter);
    }
    std::string frame = buffer_.substr(0, at + delimiter.size());
    buffer_.erase(0, at + delimiter.size());
    return frame;
  }

  asio::io_context io_;
  tcp::socket socket_;
  std::string buffer_;
  bool eof_ = false;
};

class RestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    presenced_ = StartPresenced({"--db=" + dir_.File("presence.db")});
    ASSERT_FALSE(presenced_.address.empty());
    std::ofstream(dir_.File("jwt_secret")) << kSecret << "\n";
    StartRest({});
  }

  void StartRest(std::vector<std::string> flags) {
    std::vector<std::string> argv = {
        PRESENCE_REST_PATH, "--listen=127.0.0.1:0",
        "--server=" + presenced_.address,
        "--jwt_secret_file=" + dir_.File("jwt_secret")};
    argv.insert(argv.end(), flags.begin(), flags.end());
    rest_ = std::make_unique<Subprocess>(argv);
    std::optional<std::string> err =
        rest_->WaitForStderr("serving on 127.0.0.1:", absl::Seconds(30));
    ASSERT_TRUE(err.has_value()) << rest_->Wait().err;
    std::string tail = err->substr(err->find("serving on 127.0.0.1:") + 21);
    ASSERT_TRUE(absl::SimpleAtoi(tail.substr(0, tail.find(' ')), &port_));
  }

  ClientOptions PresencedOptions() const {
    ClientOptions options;
    options.target = presenced_.address;
    return options;
  }

  std::vector<int64_t> OnlineUsers(int64_t as_user = 1) {
    HttpResult result =
        Http(port_, http::verb::get, "/api/chat/online-users/", Token(as_user));
    EXPECT_EQ(result.status, 200) << result.body;
    return Ids(result.json.fields().at("online_users"));
  }

  TempDir dir_;
  RunningPresenced presenced_;
  std::unique_ptr<Subprocess> rest_;
  int port_ = 0;
};

TEST_F(RestTest, HeartbeatMakesTheCallerOnline) {
  EXPECT_THAT(OnlineUsers(), IsEmpty());
  HttpResult beat =
      Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(42));
  ASSERT_EQ(beat.status, 200) << beat.body;
  const auto& fields = beat.json.fields();
  EXPECT_TRUE(fields.at("online").bool_value());
  EXPECT_TRUE(fields.at("became_online").bool_value());
  EXPECT_EQ(fields.at("heartbeat_interval_seconds").number_value(), 120);
  EXPECT_FALSE(fields.at("online_until").string_value().empty());
  EXPECT_EQ(beat.raw[http::field::content_type], "application/json");
  EXPECT_THAT(OnlineUsers(), ElementsAre(42));
  // The exact body the classic endpoint answered.
  EXPECT_EQ(
      Http(port_, http::verb::get, "/api/chat/online-users/", Token(1)).body,
      R"({"online_users":[42]})");

  // What presenced itself now knows: the default session of user 42.
  Client client(PresencedOptions());
  absl::StatusOr<v1::GetPresenceResponse> presence =
      client.GetPresence(std::vector<int64_t>{42});
  ASSERT_TRUE(presence.ok()) << presence.status();
  EXPECT_EQ(presence->users(0).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(presence->users(0).live_sessions(), 1);
}

TEST_F(RestTest, EachTabIsASessionAndLogoutOfOneKeepsTheOthers) {
  for (const char* tab : {"tab-1", "tab-2"}) {
    ASSERT_EQ(Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(42),
                   absl::StrCat(R"({"session_id": ")", tab, R"("})"))
                  .status,
              200);
  }
  HttpResult one = Http(port_, http::verb::post, "/api/chat/mark-offline/",
                        Token(42), R"({"session_id": "tab-1"})");
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_TRUE(one.json.fields().at("still_online").bool_value());
  EXPECT_EQ(one.json.fields().at("sessions_ended").number_value(), 1);
  EXPECT_THAT(OnlineUsers(), ElementsAre(42));

  // Without a session: every session of the caller, as the classic
  // endpoint's logout.
  HttpResult all =
      Http(port_, http::verb::post, "/api/chat/mark-offline/", Token(42));
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_FALSE(all.json.fields().at("still_online").bool_value());
  EXPECT_THAT(OnlineUsers(), IsEmpty());
}

TEST_F(RestTest, RefusesCallersWithoutAValidToken) {
  const std::string alg_none =
      absl::StrCat(R"(eyJhbGciOiJub25lIn0.)",  // {"alg":"none"}
                   "eyJ1c2VyX2lkIjo0MiwiZXhwIjo0MTAyNDQ0ODAwfQ.");
  struct Case {
    std::string token;
    std::string why;
  } cases[] = {
      {"", "missing token"},
      {"not-a-jwt", "expected header.payload.signature"},
      {Token(42, absl::Minutes(5), "some-other-secret"), "bad signature"},
      {alg_none, "only alg HS256"},
      {Token(42, -absl::Seconds(1)), "expired"},
  };
  for (const Case& c : cases) {
    for (auto [verb, target] : std::vector<std::pair<http::verb, std::string>>{
             {http::verb::post, "/api/chat/heartbeat/"},
             {http::verb::post, "/api/chat/mark-offline/"},
             {http::verb::get, "/api/chat/online-users/"},
             {http::verb::get, "/api/chat/presence/stream"}}) {
      HttpResult result = Http(port_, verb, target, c.token);
      EXPECT_EQ(result.status, 401) << target << " " << c.why;
      EXPECT_THAT(result.json.fields().at("error").string_value(),
                  HasSubstr(c.why))
          << target;
      EXPECT_EQ(result.raw[http::field::www_authenticate], "Bearer");
    }
  }
  // A header that is not a bearer token.
  HttpResult basic = HttpWithAuthorization(
      port_, http::verb::post, "/api/chat/heartbeat/", "Basic dXNlcjpwYXNz");
  EXPECT_EQ(basic.status, 401);
  EXPECT_THAT(basic.body, HasSubstr("must be 'Bearer TOKEN'"));
  EXPECT_THAT(OnlineUsers(), IsEmpty());  // none of them changed anything
}

TEST_F(RestTest, BadRequestsGetClearErrors) {
  HttpResult get =
      Http(port_, http::verb::get, "/api/chat/heartbeat/", Token(1));
  EXPECT_EQ(get.status, 405);
  EXPECT_EQ(get.raw[http::field::allow], "POST");
  EXPECT_EQ(Http(port_, http::verb::get, "/api/chat/nothing/", Token(1)).status,
            404);
  HttpResult not_json = Http(port_, http::verb::post, "/api/chat/heartbeat/",
                             Token(1), "session=3");
  EXPECT_EQ(not_json.status, 400);
  EXPECT_THAT(not_json.body, HasSubstr("JSON object"));
  // presenced's own validation comes through with its message.
  HttpResult bad_session = Http(port_, http::verb::post, "/api/chat/heartbeat/",
                                Token(1), R"({"session_id": "tab\u0001"})");
  EXPECT_EQ(bad_session.status, 400);
  EXPECT_THAT(bad_session.json.fields().at("error").string_value(),
              HasSubstr("session_id"));
  HttpResult too_big = Http(port_, http::verb::post, "/api/chat/heartbeat/",
                            Token(1), std::string(64 * 1024, ' '));
  EXPECT_EQ(too_big.status, 413);
  HttpResult bad_ids = Http(port_, http::verb::get,
                            "/api/chat/online-users/?user_ids=1,x", Token(1));
  EXPECT_EQ(bad_ids.status, 400);
  EXPECT_THAT(bad_ids.body, HasSubstr("'x' is not a user id"));
}

TEST_F(RestTest, OnlineUsersFollowsEveryPage) {
  // More online users than one ListOnline page (10,000).
  Client client(PresencedOptions());
  v1::BatchHeartbeatRequest batch;
  for (int64_t user = 1; user <= 10'050; ++user) {
    batch.add_heartbeats()->set_user_id(user * 3);
    if (batch.heartbeats_size() == 5'000) {
      ASSERT_TRUE(client.BatchHeartbeat(batch).ok());
      batch.clear_heartbeats();
    }
  }
  ASSERT_TRUE(client.BatchHeartbeat(batch).ok());
  std::vector<int64_t> online = OnlineUsers();
  ASSERT_EQ(online.size(), 10'050u);
  for (size_t i = 0; i < online.size(); ++i) {
    ASSERT_EQ(online[i], static_cast<int64_t>(i + 1) * 3);
  }
  // Only some users, in the query.
  HttpResult some =
      Http(port_, http::verb::get,
           "/api/chat/online-users/?user_ids=3,4,30150,30153", Token(1));
  EXPECT_THAT(Ids(some.json.fields().at("online_users")),
              ElementsAre(3, 30150));
}

TEST_F(RestTest, EventStreamSendsASnapshotThenEveryChange) {
  // User 5 online, and the proxy's mirror knows it: a first stream sees it
  // as the change that follows its snapshot.
  {
    EventStream first(
        port_, "/api/chat/presence/stream?user_ids=5&access_token=" + Token(1));
    std::optional<EventStream::Event> snapshot = first.Next();
    ASSERT_TRUE(snapshot.has_value());
    ASSERT_THAT(Ids(snapshot->data.fields().at("online_users")), IsEmpty());
    ASSERT_EQ(
        Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(5)).status,
        200);
    std::optional<EventStream::Event> change = first.Next();
    ASSERT_TRUE(change.has_value());
    ASSERT_EQ(change->name, "change");
  }
  EventStream everyone(port_,
                       "/api/chat/presence/stream?access_token=" + Token(1));
  std::optional<std::string> headers = everyone.Headers(absl::Seconds(10));
  ASSERT_TRUE(headers.has_value());
  EXPECT_THAT(*headers, HasSubstr("HTTP/1.1 200 OK"));
  EXPECT_THAT(*headers, HasSubstr("Content-Type: text/event-stream"));
  EventStream only_7(
      port_, "/api/chat/presence/stream?user_ids=7&access_token=" + Token(1));

  std::optional<EventStream::Event> snapshot = everyone.Next();
  ASSERT_TRUE(snapshot.has_value());
  EXPECT_EQ(snapshot->name, "snapshot");
  EXPECT_THAT(Ids(snapshot->data.fields().at("online_users")), ElementsAre(5));
  snapshot = only_7.Next();
  ASSERT_TRUE(snapshot.has_value());
  EXPECT_THAT(Ids(snapshot->data.fields().at("online_users")), IsEmpty());

  ASSERT_EQ(
      Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(42)).status,
      200);
  ASSERT_EQ(
      Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(7)).status,
      200);
  ASSERT_EQ(Http(port_, http::verb::post, "/api/chat/mark-offline/", Token(42))
                .status,
            200);
  auto expect_change = [](EventStream& stream, int64_t user, const char* status,
                          const char* reason) {
    std::optional<EventStream::Event> event = stream.Next();
    ASSERT_TRUE(event.has_value()) << "no change for " << user;
    EXPECT_EQ(event->name, "change");
    EXPECT_EQ(event->data.fields().at("user_id").number_value(), user);
    EXPECT_EQ(event->data.fields().at("status").string_value(), status);
    EXPECT_EQ(event->data.fields().at("reason").string_value(), reason);
  };
  expect_change(everyone, 42, "online", "heartbeat");
  expect_change(everyone, 7, "online", "heartbeat");
  expect_change(everyone, 42, "offline", "mark_offline");
  // The filtered stream saw only user 7.
  expect_change(only_7, 7, "online", "heartbeat");
  ASSERT_EQ(
      Http(port_, http::verb::post, "/api/chat/mark-offline/", Token(7)).status,
      200);
  expect_change(only_7, 7, "offline", "mark_offline");
}

TEST_F(RestTest, EventStreamsGetAFreshSnapshotAfterPresencedRestarts) {
  EventStream stream(port_,
                     "/api/chat/presence/stream?access_token=" + Token(1));
  std::optional<EventStream::Event> event = stream.Next();
  ASSERT_TRUE(event.has_value());
  ASSERT_EQ(
      Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(42)).status,
      200);
  event = stream.Next();
  ASSERT_TRUE(event.has_value());
  ASSERT_EQ(event->name, "change");

  presenced_.process->Signal(SIGTERM);
  ASSERT_EQ(presenced_.process->Wait().code, 0);
  HttpResult down =
      Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(9));
  EXPECT_EQ(down.status, 503) << down.body;
  EXPECT_THAT(down.body, HasSubstr("presence service unavailable"));

  // Same address, same database: a new epoch, so the proxy's watcher gets a
  // snapshot, and so does the browser, without reconnecting.
  presenced_ = StartPresenced(
      {"--listen=" + presenced_.address, "--db=" + dir_.File("presence.db")});
  ASSERT_FALSE(presenced_.address.empty());
  event = stream.Next(absl::Seconds(20));
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->name, "snapshot");
  EXPECT_THAT(Ids(event->data.fields().at("online_users")), ElementsAre(42));
}

TEST_F(RestTest, BeaconStyleLogoutWithTheTokenInTheQuery) {
  ASSERT_EQ(Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(42),
                 R"({"session_id": "tab-9"})")
                .status,
            200);
  // navigator.sendBeacon: no Authorization header, the token in the query.
  HttpResult beacon = Http(port_, http::verb::post,
                           "/api/chat/mark-offline/?access_token=" + Token(42),
                           /*token=*/"", R"({"session_id": "tab-9"})");
  EXPECT_EQ(beacon.status, 200) << beacon.body;
  EXPECT_EQ(beacon.json.fields().at("sessions_ended").number_value(), 1);
  EXPECT_THAT(OnlineUsers(), IsEmpty());
  // A forged token in the query is refused like one in the header.
  EXPECT_EQ(Http(port_, http::verb::post,
                 "/api/chat/mark-offline/?access_token=" +
                     Token(42, absl::Minutes(1), "wrong-secret"))
                .status,
            401);
}

TEST_F(RestTest, LimitsEventStreamsAndEndsThemOnShutdown) {
  rest_->Signal(SIGTERM);
  ASSERT_EQ(rest_->Wait().code, 0);
  StartRest({"--max_event_streams=1"});
  EventStream first(port_,
                    "/api/chat/presence/stream?access_token=" + Token(1));
  ASSERT_TRUE(first.Next().has_value());
  HttpResult second =
      Http(port_, http::verb::get, "/api/chat/presence/stream", Token(1));
  EXPECT_EQ(second.status, 503);
  EXPECT_THAT(second.body, HasSubstr("too many event streams"));

  rest_->Signal(SIGTERM);
  EXPECT_TRUE(first.Ended(absl::Seconds(10)));
  Subprocess::Exit exit = rest_->Wait();
  EXPECT_EQ(exit.code, 0) << exit.err;
  EXPECT_THAT(exit.err, HasSubstr("stopped"));
}

TEST_F(RestTest, ServesTheStatusPageAndPresenceJs) {
  HttpResult page = Http(port_, http::verb::get, "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.raw[http::field::content_type], HasSubstr("text/html"));
  EXPECT_THAT(page.body, HasSubstr("import { Presence } from '/presence.js'"));
  HttpResult script = Http(port_, http::verb::get, "/presence.js");
  EXPECT_EQ(script.status, 200);
  EXPECT_THAT(script.raw[http::field::content_type],
              HasSubstr("text/javascript"));
  EXPECT_THAT(script.body, HasSubstr("export class Presence"));
  // Healthy once its WatchPresence stream has a snapshot, which a browser's
  // first event shows.
  EventStream stream(port_,
                     "/api/chat/presence/stream?access_token=" + Token(1));
  ASSERT_TRUE(stream.Next().has_value());
  HttpResult health = Http(port_, http::verb::get, "/healthz");
  EXPECT_EQ(health.status, 200) << health.body;
  EXPECT_EQ(health.body, R"({"watching":true})");
}

}  // namespace
}  // namespace presence::rest
