// presence-rest end to end: a real presenced and a real presence-rest binary
// on loopback ports, spoken to over HTTP/1.1 like a browser would.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/read_until.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "gateway/jwt.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "presence/client.h"
#include "presence/shard_map.h"
#include "tests/test_util.h"
#include "tools/process_sample.h"

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
using ::testing::ElementsAreArray;
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

// The ids of `"key":[...]` in `json`, read as the digits sent: a double
// (as Struct holds numbers) could not tell 2^53 + 1 from 2^53.
std::vector<int64_t> ExactIds(absl::string_view json, absl::string_view key) {
  std::vector<int64_t> ids;
  const std::string start = absl::StrCat("\"", key, "\":[");
  size_t at = json.find(start);
  EXPECT_NE(at, absl::string_view::npos) << key << " in " << json;
  if (at == absl::string_view::npos) return ids;
  absl::string_view list = json.substr(at + start.size());
  list = list.substr(0, list.find(']'));
  for (absl::string_view item : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int64_t id = 0;
    EXPECT_TRUE(absl::SimpleAtoi(item, &id)) << item << " in " << json;
    ids.push_back(id);
  }
  return ids;
}

// The digits of `"key":N` in `json`.
std::string ExactNumber(absl::string_view json, absl::string_view key) {
  const std::string start = absl::StrCat("\"", key, "\":");
  size_t at = json.find(start);
  if (at == absl::string_view::npos) return "";
  absl::string_view rest = json.substr(at + start.size());
  return std::string(rest.substr(0, rest.find_first_not_of("0123456789-")));
}

// Polls `condition` until it holds or `timeout` passes; true if it held.
bool Eventually(const std::function<bool()>& condition,
                absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

// `bytes` sent as they are on a fresh connection; everything the server
// sends back until it closes (or `timeout`).
std::string RawExchange(int port, const std::string& bytes,
                        absl::Duration timeout = absl::Seconds(5)) {
  asio::io_context io;
  tcp::socket socket(io);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                               static_cast<uint16_t>(port)));
  beast::error_code error;
  asio::write(socket, asio::buffer(bytes), error);
  std::string answer;
  std::array<char, 4096> chunk;
  std::function<void()> read_more = [&] {
    socket.async_read_some(asio::buffer(chunk),
                           [&](beast::error_code e, size_t n) {
                             answer.append(chunk.data(), n);
                             if (!e) read_more();
                           });
  };
  read_more();
  io.run_for(absl::ToChronoNanoseconds(timeout));
  return answer;
}

std::vector<int64_t> Ids(const google::protobuf::Value& list) {
  std::vector<int64_t> ids;
  for (const auto& value : list.list_value().values()) {
    ids.push_back(static_cast<int64_t>(value.number_value()));
  }
  return ids;
}

using Headers = std::vector<std::pair<std::string, std::string>>;

// One request on a fresh connection, with `headers`.
HttpResult HttpWithHeaders(int port, http::verb verb, const std::string& target,
                           const Headers& headers,
                           const std::string& body = "") {
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                               static_cast<uint16_t>(port)));
  http::request<http::string_body> request{verb, target, 11};
  request.set(http::field::host, "127.0.0.1");
  for (const auto& [name, value] : headers) request.set(name, value);
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

// One request with `authorization` as the whole Authorization header (none
// if empty).
HttpResult HttpWithAuthorization(int port, http::verb verb,
                                 const std::string& target,
                                 const std::string& authorization,
                                 const std::string& body = "") {
  Headers headers;
  if (!authorization.empty())
    headers.emplace_back("Authorization", authorization);
  return HttpWithHeaders(port, verb, target, headers, body);
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
    std::string raw;  // the data line's JSON as sent (ids exact)
  };

  EventStream(int port, const std::string& target,
              const std::string& extra_headers = "")
      : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                  static_cast<uint16_t>(port)));
    asio::write(socket_,
                asio::buffer(absl::StrCat("GET ", target,
                                          " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                          "Accept: text/event-stream\r\n",
                                          extra_headers, "\r\n")));
  }

  // The status line and headers.
  std::optional<std::string> Headers(absl::Duration timeout) {
    return ReadUntil("\r\n\r\n", timeout);
  }

  // The next event a page built before rich presence listens to (snapshot,
  // change, stale: EventSource passes a page only the events it has
  // listeners for), skipping comments, `retry:` and `status` events; nullopt
  // if none arrives within `timeout` or the stream ends.
  std::optional<Event> Next(absl::Duration timeout = absl::Seconds(10)) {
    return NextEvent(timeout, /*with_status=*/false);
  }
  // The same with `status` events.
  std::optional<Event> NextAny(absl::Duration timeout = absl::Seconds(10)) {
    return NextEvent(timeout, /*with_status=*/true);
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
  std::optional<Event> NextEvent(absl::Duration timeout, bool with_status) {
    absl::Time deadline = absl::Now() + timeout;
    while (true) {
      std::optional<std::string> frame =
          ReadUntil("\n\n", deadline - absl::Now());
      if (!frame) return std::nullopt;
      if (frame->rfind("event: ", 0) != 0) continue;
      if (!with_status && frame->rfind("event: status\n", 0) == 0) continue;
      Event event;
      size_t newline = frame->find('\n');
      event.name = frame->substr(7, newline - 7);
      std::string data = frame->substr(newline + 1);
      EXPECT_EQ(data.rfind("data: ", 0), 0u) << *frame;
      event.raw = data.substr(6, data.size() - 8);
      EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(
                      data.substr(6, data.size() - 8), &event.data)
                      .ok())
          << *frame;
      return event;
    }
  }

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
    std::vector<std::string> flags = PresencedFlags();
    flags.push_back("--db=" + dir_.File("presence.db"));
    presenced_ = StartPresenced(flags);
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

  // presenced's flags beyond --db.
  virtual std::vector<std::string> PresencedFlags() const { return {}; }

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

// presence-rest's stream to presenced takes changes in batches: a burst
// (one BatchHeartbeat, whose transitions presenced publishes at once)
// reaches every browser as one `change` event per transition, in order. The
// burst stays below a browser's queue (RestOptions::event_queue_limit, 256),
// past which a slow browser would get a snapshot instead.
TEST_F(RestTest, EveryChangeOfABurstIsOneEventInOrder) {
  EventStream everyone(port_,
                       "/api/chat/presence/stream?access_token=" + Token(1));
  EventStream some(port_,
                   "/api/chat/presence/stream?user_ids=1003,1050,1099&"
                   "access_token=" +
                       Token(1));
  for (EventStream* stream : {&everyone, &some}) {
    std::optional<EventStream::Event> snapshot = stream->Next();
    ASSERT_TRUE(snapshot.has_value());
    ASSERT_EQ(snapshot->name, "snapshot");
  }
  constexpr int kUsers = 100;
  Client client(PresencedOptions());
  v1::BatchHeartbeatRequest burst;
  for (int i = 0; i < kUsers; ++i)
    burst.add_heartbeats()->set_user_id(1000 + i);
  ASSERT_TRUE(client.BatchHeartbeat(burst).ok());
  ASSERT_TRUE(client.MarkOffline(1050).ok());

  std::vector<std::string> seen;
  for (int i = 0; i <= kUsers; ++i) {
    std::optional<EventStream::Event> event = everyone.Next();
    ASSERT_TRUE(event.has_value()) << "after " << i << " changes";
    ASSERT_EQ(event->name, "change");
    seen.push_back(
        absl::StrCat(ExactNumber(event->raw, "user_id"), " ",
                     event->data.fields().at("status").string_value()));
  }
  std::vector<std::string> expected;
  for (int i = 0; i < kUsers; ++i) {
    expected.push_back(absl::StrCat(1000 + i, " online"));
  }
  expected.push_back("1050 offline");
  EXPECT_EQ(seen, expected);

  seen.clear();
  for (int i = 0; i < 4; ++i) {
    std::optional<EventStream::Event> event = some.Next();
    ASSERT_TRUE(event.has_value()) << "after " << i << " changes";
    seen.push_back(
        absl::StrCat(ExactNumber(event->raw, "user_id"), " ",
                     event->data.fields().at("status").string_value()));
  }
  EXPECT_THAT(seen, ElementsAre("1003 online", "1050 online", "1099 online",
                                "1050 offline"));
  // Nothing twice.
  EXPECT_FALSE(everyone.Next(absl::Milliseconds(300)).has_value());
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

  // The browser hears that what it shows may be out of date.
  event = stream.Next(absl::Seconds(5));
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->name, "stale");

  // Same address, same database: the proxy's watcher gets a snapshot, and
  // so does the browser, without reconnecting.
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
  EXPECT_THAT(page.body, HasSubstr("from '/presence.js'"));
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

// Ids past 2^53 cannot go through a double: 2^53 + 1 would come back as
// 2^53, another user. They travel as exact digits from the JWT to presenced
// and back into online-users and the event stream.
TEST_F(RestTest, IdsBeyondDoublePrecisionRoundTripExactly) {
  for (const int64_t user : {int64_t{9007199254740993},        // 2^53 + 1
                             int64_t{9223372036854775807}}) {  // 2^63 - 1
    SCOPED_TRACE(user);
    EventStream stream(port_,
                       "/api/chat/presence/stream?access_token=" + Token(1));
    std::optional<EventStream::Event> snapshot = stream.Next();
    ASSERT_TRUE(snapshot.has_value());
    HttpResult beat =
        Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(user));
    ASSERT_EQ(beat.status, 200) << beat.body;
    std::optional<EventStream::Event> change = stream.Next();
    ASSERT_TRUE(change.has_value());
    EXPECT_EQ(change->name, "change");
    EXPECT_EQ(ExactNumber(change->raw, "user_id"), absl::StrCat(user));

    HttpResult online =
        Http(port_, http::verb::get, "/api/chat/online-users/", Token(1));
    EXPECT_THAT(ExactIds(online.body, "online_users"),
                ::testing::Contains(user));
    HttpResult only =
        Http(port_, http::verb::get,
             absl::StrCat("/api/chat/online-users/?user_ids=", user), Token(1));
    EXPECT_EQ(only.body, absl::StrCat(R"({"online_users":[)", user, "]}"));

    EventStream filtered(
        port_, absl::StrCat("/api/chat/presence/stream?user_ids=", user,
                            "&access_token=", Token(1)));
    snapshot = filtered.Next();
    ASSERT_TRUE(snapshot.has_value());
    EXPECT_THAT(ExactIds(snapshot->raw, "online_users"), ElementsAre(user));
  }
}

TEST_F(RestTest, QueryParametersArePercentDecodedThenParsedStrictly) {
  ASSERT_EQ(
      Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(42)).status,
      200);
  ASSERT_EQ(
      Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(202)).status,
      200);
  struct Case {
    std::string query;
    int status;
    std::string says;  // the body's ids, or a part of the error
  } cases[] = {
      {"user_ids=42%2C202", 200, R"({"online_users":[42,202]})"},
      {"user_ids=42%2c7", 200, R"({"online_users":[42]})"},
      {"user_ids=%34%32", 200, R"({"online_users":[42]})"},
      {"user_ids=%41", 400, "'A' is not a user id"},
      {"user_ids=1%202", 400, "'1 2' is not a user id"},
      {"user_ids=+42", 400, "' 42' is not a user id"},
      {"user_ids=42,", 400, "'' is not a user id"},
      {"user_ids=-5", 400, "'-5' is not a user id"},
      {"user_ids=9223372036854775808", 400, "is not a user id"},
      {"user_ids=%4", 400, "invalid percent-escape '%4'"},
      {"user_ids=%zz1", 400, "invalid percent-escape '%zz'"},
      {"user_ids=1&user_ids=2", 400, "'user_ids' is given more than once"},
  };
  for (const Case& c : cases) {
    HttpResult result = Http(port_, http::verb::get,
                             "/api/chat/online-users/?" + c.query, Token(1));
    EXPECT_EQ(result.status, c.status) << c.query << ": " << result.body;
    if (c.status == 200) {
      EXPECT_EQ(result.body, c.says) << c.query;
    } else {
      EXPECT_THAT(result.json.fields().at("error").string_value(),
                  HasSubstr(c.says))
          << c.query;
    }
  }
  // The token too is decoded: a client may escape its dots.
  std::string escaped = Token(42);
  absl::StrReplaceAll({{".", "%2E"}}, &escaped);
  HttpResult beacon = Http(port_, http::verb::post,
                           "/api/chat/mark-offline/?access_token=" + escaped);
  EXPECT_EQ(beacon.status, 200) << beacon.body;
  HttpResult bad_escape =
      Http(port_, http::verb::post, "/api/chat/mark-offline/?access_token=%G1");
  EXPECT_EQ(bad_escape.status, 400) << bad_escape.body;
  EXPECT_THAT(bad_escape.body, HasSubstr("percent-escape"));
}

// /healthz and the event streams follow the WatchPresence stream: a killed
// presenced shows within 2 s, as 503 with the reason and as a `stale` event
// to every stream; when it is back, every stream gets a fresh snapshot
// within 2 s.
TEST_F(RestTest, HealthAndStaleEventsFollowTheUpstreamWatch) {
  ASSERT_TRUE(Eventually(
      [&] { return Http(port_, http::verb::get, "/healthz").status == 200; },
      absl::Seconds(10)));
  EventStream before(port_,
                     "/api/chat/presence/stream?access_token=" + Token(1));
  ASSERT_TRUE(before.Next().has_value());
  ASSERT_EQ(
      Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(42)).status,
      200);
  std::optional<EventStream::Event> event = before.Next();
  ASSERT_TRUE(event.has_value());
  ASSERT_EQ(event->name, "change");

  presenced_.process->Signal(SIGKILL);
  presenced_.process->Wait();
  const absl::Time killed = absl::Now();
  HttpResult health;
  ASSERT_TRUE(Eventually(
      [&] {
        health = Http(port_, http::verb::get, "/healthz");
        return health.status == 503;
      },
      absl::Seconds(2)))
      << health.body;
  EXPECT_FALSE(health.json.fields().at("watching").bool_value());
  EXPECT_THAT(health.json.fields().at("reason").string_value(),
              HasSubstr(presenced_.address));
  event = before.Next(killed + absl::Seconds(2) - absl::Now());
  ASSERT_TRUE(event.has_value()) << "no stale event within 2 s";
  EXPECT_EQ(event->name, "stale");
  // Browsers are told the view is stale, not presenced's address.
  EXPECT_EQ(event->data.fields().at("reason").string_value(),
            "the presence service is unreachable; reconnecting");

  // A stream opened while stale: what the mirror last knew, then stale.
  EventStream during(port_,
                     "/api/chat/presence/stream?access_token=" + Token(1));
  event = during.Next();
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->name, "snapshot");
  EXPECT_THAT(ExactIds(event->raw, "online_users"), ElementsAre(42));
  event = during.Next(absl::Seconds(1));
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->name, "stale");

  // Let the watch's backoff grow to its cap before presenced returns.
  absl::SleepFor(absl::Seconds(3));
  presenced_ = StartPresenced(
      {"--listen=" + presenced_.address, "--db=" + dir_.File("presence.db")});
  ASSERT_FALSE(presenced_.address.empty());
  const absl::Time back = absl::Now();
  for (EventStream* stream : {&before, &during}) {
    event = stream->Next(back + absl::Seconds(2) - absl::Now());
    ASSERT_TRUE(event.has_value()) << "no snapshot within 2 s";
    EXPECT_EQ(event->name, "snapshot");
  }
  EXPECT_EQ(Http(port_, http::verb::get, "/healthz").body,
            R"({"watching":true})");
}

// presenced's token for presence-rest changes and changes back: the watch
// is refused (UNAUTHENTICATED) meanwhile, and resumes once it is accepted
// again.
TEST_F(RestTest, WatchSurvivesATokenRotation) {
  rest_->Signal(SIGTERM);
  ASSERT_EQ(rest_->Wait().code, 0);
  presenced_.process->Signal(SIGTERM);
  ASSERT_EQ(presenced_.process->Wait().code, 0);
  const std::string tokens = dir_.File("tokens");
  const std::string gateway_token = "gateway-token-0123456789abcdef";
  std::ofstream(tokens) << "presence-rest " << gateway_token << "\n";
  std::ofstream(dir_.File("gateway_token")) << gateway_token << "\n";
  presenced_ = StartPresenced(
      {"--db=" + dir_.File("presence.db"), "--auth_tokens_file=" + tokens});
  ASSERT_FALSE(presenced_.address.empty());
  StartRest({"--presenced_token_file=" + dir_.File("gateway_token"),
             "--upstream_check_interval=200ms"});
  EventStream stream(port_,
                     "/api/chat/presence/stream?access_token=" + Token(1));
  std::optional<EventStream::Event> event = stream.Next();
  ASSERT_TRUE(event.has_value());
  ASSERT_EQ(event->name, "snapshot");

  std::ofstream(tokens, std::ios::trunc)
      << "presence-rest another-token-0123456789abcdef\n";
  presenced_.process->Signal(SIGHUP);
  event = stream.Next(absl::Seconds(5));
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->name, "stale");
  HttpResult health = Http(port_, http::verb::get, "/healthz");
  EXPECT_EQ(health.status, 503);
  EXPECT_THAT(health.body, HasSubstr("UNAUTHENTICATED"));
  // Refused over and over while the token is wrong: logged at most once a
  // second.
  absl::SleepFor(absl::Seconds(2));

  std::ofstream(tokens, std::ios::trunc)
      << "presence-rest " << gateway_token << "\n";
  presenced_.process->Signal(SIGHUP);
  event = stream.Next(absl::Seconds(5));
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->name, "snapshot");
  ASSERT_EQ(
      Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(42)).status,
      200);
  event = stream.Next();
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->name, "change");
  EXPECT_EQ(ExactNumber(event->raw, "user_id"), "42");

  rest_->Signal(SIGTERM);
  Subprocess::Exit exit = rest_->Wait();
  int refusals = 0;
  for (absl::string_view line : absl::StrSplit(exit.err, '\n')) {
    if (absl::StrContains(line, "refuses presence-rest's token")) ++refusals;
  }
  EXPECT_GE(refusals, 1) << exit.err;
  EXPECT_LE(refusals, 5) << exit.err;  // about 2.2 s of refusals
}

TEST_F(RestTest, CorsForListedOriginsOnly) {
  rest_->Signal(SIGTERM);
  ASSERT_EQ(rest_->Wait().code, 0);
  StartRest({"--cors_origins=https://chat.example.com, http://localhost:3000"});
  const Headers preflight = {
      {"Origin", "https://chat.example.com"},
      {"Access-Control-Request-Method", "POST"},
      {"Access-Control-Request-Headers", "authorization, x-presence-session"}};
  HttpResult allowed = HttpWithHeaders(port_, http::verb::options,
                                       "/api/chat/heartbeat/", preflight);
  EXPECT_EQ(allowed.status, 204) << allowed.body;
  EXPECT_EQ(allowed.raw[http::field::access_control_allow_origin],
            "https://chat.example.com");
  EXPECT_EQ(allowed.raw[http::field::access_control_allow_methods], "POST");
  EXPECT_EQ(allowed.raw[http::field::access_control_allow_headers],
            "Authorization, Content-Type, X-Presence-Session");
  EXPECT_EQ(allowed.raw[http::field::access_control_max_age], "600");
  EXPECT_EQ(allowed.raw[http::field::vary], "Origin");

  HttpResult refused =
      HttpWithHeaders(port_, http::verb::options, "/api/chat/heartbeat/",
                      {{"Origin", "https://evil.example"},
                       {"Access-Control-Request-Method", "POST"}});
  EXPECT_EQ(refused.status, 403);
  EXPECT_THAT(refused.json.fields().at("error").string_value(),
              HasSubstr("--cors_origins"));
  EXPECT_EQ(refused.raw.count(http::field::access_control_allow_origin), 0u);

  HttpResult actual =
      HttpWithHeaders(port_, http::verb::post, "/api/chat/heartbeat/",
                      {{"Origin", "http://localhost:3000"},
                       {"Authorization", "Bearer " + Token(42)}});
  EXPECT_EQ(actual.status, 200);
  EXPECT_EQ(actual.raw[http::field::access_control_allow_origin],
            "http://localhost:3000");
  EXPECT_EQ(actual.raw[http::field::vary], "Origin");
  HttpResult other =
      HttpWithHeaders(port_, http::verb::get, "/api/chat/online-users/",
                      {{"Origin", "https://evil.example"},
                       {"Authorization", "Bearer " + Token(42)}});
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(other.raw.count(http::field::access_control_allow_origin), 0u);

  EventStream stream(port_,
                     "/api/chat/presence/stream?access_token=" + Token(1),
                     "Origin: https://chat.example.com\r\n");
  std::optional<std::string> headers = stream.Headers(absl::Seconds(10));
  ASSERT_TRUE(headers.has_value());
  EXPECT_THAT(*headers, HasSubstr("Access-Control-Allow-Origin: "
                                  "https://chat.example.com\r\n"));
  EXPECT_THAT(*headers, HasSubstr("Vary: Origin\r\n"));

  // Without the flag: no CORS at all; preflights are refused.
  rest_->Signal(SIGTERM);
  ASSERT_EQ(rest_->Wait().code, 0);
  StartRest({});
  HttpResult same_origin_only = HttpWithHeaders(
      port_, http::verb::options, "/api/chat/heartbeat/", preflight);
  EXPECT_EQ(same_origin_only.status, 403);
}

TEST_F(RestTest, RefusesBadCorsOriginsAtStart) {
  for (const char* bad :
       {"https://chat.example.com/", "chat.example.com", "ftp://x.example", "*",
        "https://x.example:99999", "https://a.example,,https://b.example"}) {
    Subprocess::Exit exit =
        presence::testing::Run({PRESENCE_REST_PATH, "--listen=127.0.0.1:0",
                                "--server=" + presenced_.address,
                                "--jwt_secret_file=" + dir_.File("jwt_secret"),
                                absl::StrCat("--cors_origins=", bad)});
    EXPECT_EQ(exit.code, 1) << bad;
    EXPECT_THAT(exit.err, HasSubstr("--cors_origins")) << bad;
    EXPECT_THAT(exit.err, HasSubstr("scheme://host[:port]")) << bad;
  }
}

TEST_F(RestTest, HttpFramingIsStrict) {
  const std::string token = Token(42);
  const std::string head = absl::StrCat(
      "POST /api/chat/heartbeat/ HTTP/1.1\r\nHost: x\r\nAuthorization: "
      "Bearer ",
      token, "\r\n");
  // Headers over 8 KiB: 431 with a JSON reason, then the connection closes.
  std::string big = RawExchange(
      port_, absl::StrCat("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ",
                          std::string(9000, 'a'), "\r\n\r\n"));
  EXPECT_THAT(big, ::testing::StartsWith("HTTP/1.1 431 "));
  EXPECT_THAT(big,
              HasSubstr(R"({"error":"request line and headers over 8192)"));

  struct Case {
    std::string transfer_encoding;
    std::string status_line;
  } cases[] = {
      {"xchunked", "HTTP/1.1 400 "},
      {"chunked, identity", "HTTP/1.1 400 "},
      {"identity", "HTTP/1.1 400 "},
      {"chunked, chunked", "HTTP/1.1 400 "},
      {"gzip, chunked", "HTTP/1.1 501 "},
  };
  for (const Case& c : cases) {
    std::string answer = RawExchange(
        port_, absl::StrCat(head, "Transfer-Encoding: ", c.transfer_encoding,
                            "\r\n\r\n2\r\n{}\r\n0\r\n\r\n"));
    EXPECT_THAT(answer, ::testing::StartsWith(c.status_line))
        << c.transfer_encoding << ": " << answer;
    EXPECT_THAT(answer, HasSubstr("Transfer-Encoding"));
    EXPECT_THAT(answer, HasSubstr("Connection: close"));
  }
  // Chunked as the only coding is fine.
  std::string chunked = RawExchange(
      port_, absl::StrCat(head,
                          "Transfer-Encoding: chunked\r\nConnection: "
                          "close\r\n\r\n2\r\n{}\r\n0\r\n\r\n"));
  EXPECT_THAT(chunked, ::testing::StartsWith("HTTP/1.1 200 "));
}

// The chat product's bodies, and the presence session of a caller.
TEST_F(RestTest, ProductBodiesAndPresenceSessions) {
  Client client(PresencedOptions());
  auto live_sessions = [&](int64_t user) {
    absl::StatusOr<v1::GetPresenceResponse> presence =
        client.GetPresence(std::vector<int64_t>{user});
    EXPECT_TRUE(presence.ok()) << presence.status();
    return presence.ok() ? presence->users(0).live_sessions() : -1;
  };
  const std::string timestamp = R"({"timestamp": "2026-11-28T09:00:00.120Z"})";
  for (const char* path : {"/api/chat/heartbeat/", "/api/chat/heartbeat"}) {
    HttpResult beat = Http(port_, http::verb::post, path, Token(42), timestamp);
    EXPECT_EQ(beat.status, 200) << path << ": " << beat.body;
  }
  HttpResult unknown = Http(port_, http::verb::post, "/api/chat/heartbeat/",
                            Token(42), R"({"tab": {"visible": true}})");
  EXPECT_EQ(unknown.status, 200) << unknown.body;
  EXPECT_EQ(live_sessions(42), 1);  // one default session, however often

  auto with_session = [&](const char* path, const std::string& session) {
    return HttpWithHeaders(port_, http::verb::post, path,
                           {{"Authorization", "Bearer " + Token(42)},
                            {"X-Presence-Session", session}},
                           timestamp);
  };
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(with_session("/api/chat/heartbeat/", "tab-1").status, 200);
  }
  EXPECT_EQ(live_sessions(42), 2);
  // The header wins over the body's session_id.
  ASSERT_EQ(HttpWithHeaders(port_, http::verb::post, "/api/chat/heartbeat/",
                            {{"Authorization", "Bearer " + Token(42)},
                             {"X-Presence-Session", "tab-2"}},
                            R"({"session_id": "tab-1"})")
                .status,
            200);
  EXPECT_EQ(live_sessions(42), 3);

  HttpResult one = with_session("/api/chat/mark-offline", "tab-1");
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_EQ(one.json.fields().at("sessions_ended").number_value(), 1);
  EXPECT_TRUE(one.json.fields().at("still_online").bool_value());
  EXPECT_EQ(live_sessions(42), 2);

  for (const std::string& bad :
       {std::string(""), std::string(129, 'x'), std::string("tab-\xc3\xa9"),
        std::string("tab 1"), std::string("tab\"1")}) {
    HttpResult refused = with_session("/api/chat/heartbeat/", bad);
    EXPECT_EQ(refused.status, 400) << refused.body;
    EXPECT_THAT(refused.json.fields().at("error").string_value(),
                HasSubstr("X-Presence-Session"));
  }

  // The body's session_id follows the same rule.
  HttpResult bad_body = Http(port_, http::verb::post, "/api/chat/heartbeat/",
                             Token(42), R"({"session_id": "tab 1"})");
  EXPECT_EQ(bad_body.status, 400) << bad_body.body;
  EXPECT_THAT(bad_body.body, HasSubstr("session_id"));
  EXPECT_EQ(live_sessions(42), 2);

  // Without a session: every session of the user ends.
  HttpResult all = Http(port_, http::verb::post, "/api/chat/mark-offline/",
                        Token(42), timestamp);
  ASSERT_EQ(all.status, 200) << all.body;
  EXPECT_EQ(all.json.fields().at("sessions_ended").number_value(), 2);
  EXPECT_FALSE(all.json.fields().at("still_online").bool_value());
}

// Rich presence (issue 14): presenced counts a user away 2 s after their
// last use of every session.
class RichRestTest : public RestTest {
 protected:
  std::vector<std::string> PresencedFlags() const override {
    return {"--away_after=2s"};
  }

  HttpResult SetStatus(int64_t user, const std::string& body,
                       const std::string& path = "/api/chat/status/") {
    return Http(port_, http::verb::post, path, Token(user), body);
  }

  // A heartbeat's HTTP status.
  int Beat(int64_t user, bool idle = false) {
    HttpResult beat = Http(port_, http::verb::post, "/api/chat/heartbeat/",
                           Token(user), idle ? R"({"idle": true})" : "");
    EXPECT_EQ(beat.status, 200) << beat.body;
    return beat.status;
  }

  // GET /api/chat/presence/?user_ids=`ids` as `viewer`: each entry, in the
  // order asked, as "ID STATUS AVAILABILITY TEXT" (TEXT "-" for none).
  std::vector<std::string> Presence(int64_t viewer, const std::string& ids) {
    HttpResult result =
        Http(port_, http::verb::get, "/api/chat/presence/?user_ids=" + ids,
             Token(viewer));
    EXPECT_EQ(result.status, 200) << result.body;
    std::vector<std::string> described;
    if (result.status != 200) return described;
    EXPECT_TRUE(result.json.fields().at("server_time").has_string_value());
    for (const auto& user :
         result.json.fields().at("users").list_value().values()) {
      const auto& fields = user.struct_value().fields();
      const auto& custom = fields.at("custom_status");
      described.push_back(absl::StrCat(
          fields.at("user_id").number_value(), " ",
          fields.at("status").string_value(), " ",
          fields.at("availability").string_value(), " ",
          custom.has_struct_value()
              ? custom.struct_value().fields().at("text").string_value()
              : "-"));
    }
    return described;
  }
};

absl::Time ParseRfc3339(const google::protobuf::Value& value) {
  absl::Time time;
  std::string error;
  EXPECT_TRUE(
      absl::ParseTime(absl::RFC3339_full, value.string_value(), &time, &error))
      << value.ShortDebugString() << ": " << error;
  return time;
}

TEST_F(RichRestTest, SetsAndClearsTheCallersStatus) {
  HttpResult set = SetStatus(
      42, R"({"availability": "dnd", "for": "1h", "text": "In a meeting",
              "emoji": ":calendar:", "expires_in": "30m"})");
  ASSERT_EQ(set.status, 200) << set.body;
  // The caller's own view.
  EXPECT_EQ(ExactNumber(set.body, "user_id"), "42");
  const auto& own = set.json.fields();
  EXPECT_EQ(own.at("status").string_value(), "offline");  // no session yet
  EXPECT_EQ(own.at("availability").string_value(), "dnd");
  const absl::Time server_time = ParseRfc3339(own.at("server_time"));
  // Ends counted from presenced's clock (server_time is when it applied
  // the change).
  EXPECT_LE(absl::AbsDuration(ParseRfc3339(own.at("availability_until")) -
                              server_time - absl::Hours(1)),
            absl::Seconds(1));
  const auto& custom = own.at("custom_status").struct_value().fields();
  EXPECT_EQ(custom.at("text").string_value(), "In a meeting");
  EXPECT_EQ(custom.at("emoji").string_value(), ":calendar:");
  EXPECT_LE(absl::AbsDuration(ParseRfc3339(custom.at("expires_at")) -
                              server_time - absl::Minutes(30)),
            absl::Seconds(1));

  // Online: others see dnd and the custom status.
  ASSERT_EQ(Beat(42), 200);
  EXPECT_THAT(Presence(1, "42"), ElementsAre("42 dnd dnd In a meeting"));
  // Clearing the custom status leaves dnd (the path without its slash).
  HttpResult cleared = SetStatus(42, R"({"clear": true})", "/api/chat/status");
  ASSERT_EQ(cleared.status, 200) << cleared.body;
  EXPECT_TRUE(cleared.json.fields().at("custom_status").has_null_value());
  EXPECT_EQ(cleared.json.fields().at("status").string_value(), "dnd");
  // Back to auto: online (just after a heartbeat; away comes after 2 s).
  ASSERT_EQ(Beat(42), 200);
  HttpResult back = SetStatus(42, R"({"availability": "auto"})");
  ASSERT_EQ(back.status, 200) << back.body;
  EXPECT_EQ(back.json.fields().at("availability").string_value(), "auto");
  EXPECT_TRUE(back.json.fields().at("availability_until").has_null_value());
  EXPECT_EQ(back.json.fields().at("status").string_value(), "online");
  // The classic endpoint saw one online user throughout.
  EXPECT_THAT(OnlineUsers(), ElementsAre(42));
}

TEST_F(RichRestTest, BadRequestsAre400sThatSayWhatToSend) {
  struct Case {
    std::string body;
    std::string error;
  } cases[] = {
      {"", "body must be a JSON object"},
      {R"({"availability": "busy"})", R"('busy' is not one of "auto")"},
      {R"({"availability": "dnd", "for": "soon"})", "is not a duration"},
      {R"({"text": "hi", "clear": true})", "not both"},
      // presenced's own checks, passed on with its message.
      {absl::StrCat(R"({"text": ")", std::string(101, 'x'), R"("})"),
       "at most 100 characters"},
      {R"({"emoji": "coffee"})", "short code"},
      {R"({"availability": "dnd", "until": "2001-01-01T00:00:00Z"})",
       "is not after the server's time"},
  };
  for (const Case& c : cases) {
    HttpResult result = SetStatus(42, c.body);
    EXPECT_EQ(result.status, 400) << c.body << ": " << result.body;
    EXPECT_THAT(result.json.fields().at("error").string_value(),
                HasSubstr(c.error))
        << c.body;
  }
  HttpResult get = Http(port_, http::verb::get, "/api/chat/status/", Token(42));
  EXPECT_EQ(get.status, 405);
  EXPECT_EQ(get.raw[http::field::allow], "POST");
  EXPECT_EQ(SetStatus(42, R"({"availability": "dnd"})").status, 200);
  EXPECT_EQ(Http(port_, http::verb::post, "/api/chat/status/", "",
                 R"({"availability": "auto"})")
                .status,
            401);
  HttpResult no_ids =
      Http(port_, http::verb::get, "/api/chat/presence/", Token(42));
  EXPECT_EQ(no_ids.status, 400);
  EXPECT_THAT(no_ids.body, HasSubstr("user_ids is required"));
  EXPECT_EQ(
      Http(port_, http::verb::get, "/api/chat/presence/?user_ids=0", Token(42))
          .status,
      400);
  HttpResult bad_idle = Http(port_, http::verb::post, "/api/chat/heartbeat/",
                             Token(42), R"({"idle": "yes"})");
  EXPECT_EQ(bad_idle.status, 400);
  EXPECT_THAT(bad_idle.body, HasSubstr("idle must be true or false"));
}

TEST_F(RichRestTest, PresenceShowsStatusesAndTheViewersOwnView) {
  ASSERT_EQ(Beat(9), 200);
  ASSERT_EQ(Beat(9, /*idle=*/true), 200);  // away 2 s after the first heartbeat
  ASSERT_EQ(Beat(5), 200);
  ASSERT_EQ(SetStatus(6, R"({"availability": "dnd"})").status, 200);
  ASSERT_EQ(Beat(6), 200);
  ASSERT_EQ(Beat(7), 200);
  ASSERT_EQ(
      SetStatus(7, R"({"availability": "invisible", "text": "hiding"})").status,
      200);
  // Others see 7 offline, with nothing of what 7 chose; 8 was never seen.
  EXPECT_THAT(Presence(1, "5,6,7,8"),
              ElementsAre("5 online auto -", "6 dnd dnd -", "7 offline auto -",
                          "8 offline auto -"));
  // 7's own view is the truth.
  EXPECT_THAT(Presence(7, "7,6"),
              ElementsAre("7 online invisible hiding", "6 dnd dnd -"));
  // The classic list: online, away and dnd are online; invisible is not.
  EXPECT_THAT(OnlineUsers(), ElementsAre(5, 6, 9));
  // Heartbeats keep 9 and 10 online; 9's say idle, so 9 is away 2 s after
  // its last use, 10 never.
  ASSERT_EQ(Beat(10), 200);
  std::vector<std::string> seen;
  EXPECT_TRUE(Eventually(
      [&] {
        if (Beat(9, /*idle=*/true) != 200 || Beat(10) != 200) return false;
        seen = Presence(1, "9,10");
        return seen ==
               std::vector<std::string>{"9 away auto -", "10 online auto -"};
      },
      absl::Seconds(5)))
      << ::testing::PrintToString(seen);
  EXPECT_THAT(OnlineUsers(), ElementsAre(5, 6, 9, 10));
}

TEST_F(RichRestTest, EventStreamSendsStatusEvents) {
  const std::string target =
      "/api/chat/presence/stream?user_ids=5,6&access_token=" + Token(1);
  EventStream stream(port_, target);
  EventStream classic(port_, target);  // a page that knows no `status`
  std::optional<EventStream::Event> event = stream.NextAny();
  ASSERT_TRUE(event.has_value());
  ASSERT_EQ(event->name, "snapshot");
  EXPECT_EQ(
      event->raw,
      absl::StrCat(R"({"online_users":[],"users":[],)", R"("server_time":")",
                   event->data.fields().at("server_time").string_value(),
                   R"("})"));
  ASSERT_TRUE(classic.Next().has_value());

  // Each event, as "NAME STATUS REASON TEXT".
  auto next = [&](EventStream& from) -> std::string {
    std::optional<EventStream::Event> event = from.NextAny(absl::Seconds(5));
    if (!event) return "(none)";
    const auto& fields = event->data.fields();
    std::string text = "-";
    if (auto it = fields.find("custom_status");
        it != fields.end() && it->second.has_struct_value()) {
      text = it->second.struct_value().fields().at("text").string_value();
    }
    return absl::StrCat(event->name, " ", ExactNumber(event->raw, "user_id"),
                        " ", fields.at("status").string_value(), " ",
                        fields.at("reason").string_value(),
                        event->name == "status" ? absl::StrCat(" ", text) : "");
  };
  ASSERT_EQ(Beat(5), 200);
  EXPECT_EQ(next(stream), "change 5 online heartbeat");
  EXPECT_EQ(next(stream), "status 5 online heartbeat -");
  ASSERT_EQ(SetStatus(5, R"({"availability": "dnd", "text": "Focus"})").status,
            200);
  EXPECT_EQ(next(stream), "status 5 dnd status_set Focus");
  // Away on time, with no heartbeat: within a second of --away_after.
  ASSERT_EQ(Beat(6), 200);
  ASSERT_EQ(Beat(6, /*idle=*/true), 200);
  const absl::Time active = absl::Now();
  EXPECT_EQ(next(stream), "change 6 online heartbeat");
  EXPECT_EQ(next(stream), "status 6 online heartbeat -");
  EXPECT_EQ(next(stream), "status 6 away activity -");
  EXPECT_LT(absl::Now() - active, absl::Seconds(3) + absl::Milliseconds(500));
  ASSERT_EQ(SetStatus(5, R"({"availability": "invisible"})").status, 200);
  EXPECT_EQ(next(stream), "change 5 offline mark_offline");
  EXPECT_EQ(next(stream), "status 5 offline status_set -");

  // A page built before rich presence saw online and offline only.
  for (const char* want :
       {"change 5 online heartbeat", "change 6 online heartbeat",
        "change 5 offline mark_offline"}) {
    std::optional<EventStream::Event> change = classic.Next(absl::Seconds(5));
    ASSERT_TRUE(change.has_value()) << want;
    EXPECT_EQ(
        absl::StrCat(change->name, " ", ExactNumber(change->raw, "user_id"),
                     " ", change->data.fields().at("status").string_value(),
                     " ", change->data.fields().at("reason").string_value()),
        want);
  }

  // A new stream's snapshot says who is online and how.
  EventStream later(port_, target);
  event = later.NextAny();
  ASSERT_TRUE(event.has_value());
  ASSERT_EQ(event->name, "snapshot");
  EXPECT_THAT(ExactIds(event->raw, "online_users"), ElementsAre(6));
  const auto& users = event->data.fields().at("users").list_value();
  ASSERT_EQ(users.values_size(), 1);
  EXPECT_EQ(users.values(0).struct_value().fields().at("status").string_value(),
            "away");
}

std::string Scrape(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(address.substr(colon + 1), &port)) << address;
  return Http(port, http::verb::get, "/metrics").body;
}

// The value of the sample `series` (name and labels, as written) in a
// scrape, or -1.
double Sample(const std::string& scrape, const std::string& series) {
  for (absl::string_view line : absl::StrSplit(scrape, '\n')) {
    if (absl::ConsumePrefix(&line, series) && absl::ConsumePrefix(&line, " ")) {
      double value = -1;
      return absl::SimpleAtod(line, &value) ? value : -1;
    }
  }
  return -1;
}

TEST_F(RestTest, ServesMetrics) {
  rest_->Signal(SIGTERM);
  ASSERT_EQ(rest_->Wait().code, 0);
  StartRest({"--metrics_listen=127.0.0.1:0"});
  std::optional<std::string> line =
      rest_->WaitForStderr("metrics on http://", absl::Seconds(10));
  ASSERT_TRUE(line.has_value());
  std::string address = line->substr(line->find("metrics on http://") + 18);
  address = address.substr(0, address.find("/metrics"));

  EventStream stream(port_,
                     "/api/chat/presence/stream?access_token=" + Token(1));
  ASSERT_TRUE(stream.Next().has_value());
  ASSERT_EQ(
      Http(port_, http::verb::post, "/api/chat/heartbeat/", Token(42)).status,
      200);
  ASSERT_EQ(Http(port_, http::verb::get, "/api/chat/online-users/").status,
            401);
  std::string scrape = Scrape(address);
  EXPECT_EQ(Sample(scrape, "presence_rest_event_streams"), 1) << scrape;
  EXPECT_EQ(Sample(scrape, "presence_rest_upstream_live"), 1) << scrape;
  EXPECT_EQ(Sample(scrape, "presence_rest_upstream_reconnects_total"), 0);
  EXPECT_EQ(
      Sample(scrape,
             R"(presence_rest_requests_total{code="200",route="heartbeat"})"),
      1)
      << scrape;
  EXPECT_EQ(
      Sample(
          scrape,
          R"(presence_rest_requests_total{code="401",route="online_users"})"),
      1)
      << scrape;
  EXPECT_EQ(
      Sample(
          scrape,
          R"(presence_rest_requests_total{code="200",route="presence_stream"})"),
      1)
      << scrape;

  presenced_.process->Signal(SIGKILL);
  presenced_.process->Wait();
  ASSERT_TRUE(Eventually(
      [&] {
        scrape = Scrape(address);
        return Sample(scrape, "presence_rest_upstream_live") == 0 &&
               Sample(scrape, "presence_rest_upstream_reconnects_total") >= 1;
      },
      absl::Seconds(5)))
      << scrape;
}

// CPU time (user + system) of process `pid` so far.
absl::Duration CpuTime(pid_t pid) {
  const double seconds = ReadProcess(pid).cpu_seconds;
  EXPECT_GE(seconds, 0) << "cannot read /proc/" << pid << "/stat";
  return absl::Seconds(seconds);
}

// Out of file descriptors, presence-rest waits before accepting again
// instead of spinning and logging each failure; once descriptors are free,
// it serves again at once.
TEST_F(RestTest, BacksOffWhenOutOfFileDescriptors) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Sanitizer runtimes need descriptors of their own: UBSan's vptr check
  // probes memory through a pipe and, unable to make one, reports a valid
  // object (a Boost.System error category) as invalid and aborts.
  GTEST_SKIP() << "needs a build without sanitizers";
#endif
  rest_->Signal(SIGTERM);
  ASSERT_EQ(rest_->Wait().code, 0);
  rest_ = std::make_unique<Subprocess>(std::vector<std::string>{
      "/usr/bin/prlimit", "--nofile=64:64", PRESENCE_REST_PATH,
      "--listen=127.0.0.1:0", "--server=" + presenced_.address,
      "--jwt_secret_file=" + dir_.File("jwt_secret")});
  std::optional<std::string> err =
      rest_->WaitForStderr("serving on 127.0.0.1:", absl::Seconds(30));
  ASSERT_TRUE(err.has_value()) << rest_->Wait().err;
  EXPECT_THAT(*err, HasSubstr("open-file limit: 64"));
  std::string tail = err->substr(err->find("serving on 127.0.0.1:") + 21);
  ASSERT_TRUE(absl::SimpleAtoi(tail.substr(0, tail.find(' ')), &port_));

  // Idle connections past the limit: the server holds 64 descriptors at
  // most; the rest wait in the listen queue.
  asio::io_context io;
  std::vector<std::unique_ptr<tcp::socket>> idle;
  for (int i = 0; i < 120; ++i) {
    auto socket = std::make_unique<tcp::socket>(io);
    socket->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"),
                                  static_cast<uint16_t>(port_)));
    idle.push_back(std::move(socket));
  }
  const absl::Duration cpu_before = CpuTime(rest_->pid());
  const absl::Time start = absl::Now();
  absl::SleepFor(absl::Seconds(3));  // measuring a rate over time
  const double cpu_share =
      (CpuTime(rest_->pid()) - cpu_before) / (absl::Now() - start);
  EXPECT_LT(cpu_share, 0.2) << "busy while out of descriptors";

  idle.clear();
  const absl::Time freed = absl::Now();
  HttpResult health;
  ASSERT_TRUE(Eventually(
      [&] {
        health = Http(port_, http::verb::get, "/healthz");
        return health.status == 200;
      },
      absl::Seconds(5)));
  EXPECT_LT(absl::Now() - freed, absl::Seconds(3));

  rest_->Signal(SIGTERM);
  Subprocess::Exit exit = rest_->Wait();
  int accept_lines = 0;
  for (absl::string_view line : absl::StrSplit(exit.err, '\n')) {
    if (absl::StrContains(line, "accept: ")) ++accept_lines;
  }
  EXPECT_GE(accept_lines, 1) << exit.err;
  EXPECT_LE(accept_lines, 6) << exit.err;  // at most one a second
  EXPECT_THAT(exit.err, HasSubstr("Too many open files"));
}

// presence-rest in front of two shards (--server=s0=...,s1=...): each call
// reaches its user's shard, the online list and the browsers' snapshot
// merge both, changes of both arrive, and a shard that dies makes the watch
// stale with that shard named, until it is back.
TEST(ShardedRestTest, ServesEveryShardsUsersAndNamesAShardThatIsDown) {
  TempDir dir;
  std::ofstream(dir.File("jwt_secret")) << kSecret << "\n";
  std::vector<RunningPresenced> shards;
  std::string spec;
  for (const char* name : {"s0", "s1"}) {
    shards.push_back(
        StartPresenced({absl::StrCat("--db=", dir.File(name), ".db"),
                        absl::StrCat("--shard=", name), "--shards=s0,s1"}));
    ASSERT_FALSE(shards.back().address.empty());
    absl::StrAppend(&spec, spec.empty() ? "" : ",", name, "=",
                    shards.back().address);
  }
  const ShardMap map = *ShardMap::Parse(spec);
  int64_t on_s0 = 1;
  while (map.OwnerIndex(on_s0) != 0) ++on_s0;
  int64_t on_s1 = 1;
  while (map.OwnerIndex(on_s1) != 1) ++on_s1;
  int64_t also_s1 = on_s1 + 1;
  while (map.OwnerIndex(also_s1) != 1) ++also_s1;

  Subprocess rest({PRESENCE_REST_PATH, "--listen=127.0.0.1:0",
                   "--server=" + spec,
                   "--jwt_secret_file=" + dir.File("jwt_secret")});
  std::optional<std::string> err =
      rest.WaitForStderr("serving on 127.0.0.1:", absl::Seconds(30));
  ASSERT_TRUE(err.has_value());
  std::string tail = err->substr(err->find("serving on 127.0.0.1:") + 21);
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(tail.substr(0, tail.find(' ')), &port));
  ASSERT_TRUE(Eventually(
      [&] { return Http(port, http::verb::get, "/healthz").status == 200; },
      absl::Seconds(10)));

  for (int64_t user : {on_s0, on_s1}) {
    ASSERT_EQ(Http(port, http::verb::post, "/api/chat/heartbeat/", Token(user))
                  .status,
              200);
  }
  HttpResult online =
      Http(port, http::verb::get, "/api/chat/online-users/", Token(on_s0));
  ASSERT_EQ(online.status, 200) << online.body;
  std::vector<int64_t> expected = {on_s0, on_s1};
  std::sort(expected.begin(), expected.end());
  EXPECT_THAT(ExactIds(online.body, "online_users"),
              ElementsAreArray(expected));

  // Rich presence goes to each user's shard, and comes back in the order
  // asked.
  HttpResult dnd = Http(port, http::verb::post, "/api/chat/status/",
                        Token(on_s1), R"({"availability": "dnd"})");
  ASSERT_EQ(dnd.status, 200) << dnd.body;
  EXPECT_EQ(ExactNumber(dnd.body, "user_id"), absl::StrCat(on_s1));
  HttpResult statuses =
      Http(port, http::verb::get,
           absl::StrCat("/api/chat/presence/?user_ids=", on_s1, ",", on_s0),
           Token(on_s0));
  ASSERT_EQ(statuses.status, 200) << statuses.body;
  std::vector<std::string> seen;
  for (const auto& user :
       statuses.json.fields().at("users").list_value().values()) {
    seen.push_back(absl::StrCat(
        user.struct_value().fields().at("user_id").number_value(), " ",
        user.struct_value().fields().at("status").string_value()));
  }
  EXPECT_THAT(seen, ElementsAre(absl::StrCat(on_s1, " dnd"),
                                absl::StrCat(on_s0, " online")));

  EventStream everyone(port,
                       "/api/chat/presence/stream?access_token=" + Token(1));
  std::optional<EventStream::Event> event = everyone.Next();
  ASSERT_TRUE(event.has_value());
  ASSERT_EQ(event->name, "snapshot");
  EXPECT_THAT(ExactIds(event->raw, "online_users"), ElementsAreArray(expected));
  // The merged snapshot carries each shard's statuses.
  seen.clear();
  for (const auto& user :
       event->data.fields().at("users").list_value().values()) {
    seen.push_back(absl::StrCat(
        user.struct_value().fields().at("user_id").number_value(), " ",
        user.struct_value().fields().at("status").string_value()));
  }
  EXPECT_THAT(seen,
              ::testing::UnorderedElementsAre(absl::StrCat(on_s1, " dnd"),
                                              absl::StrCat(on_s0, " online")));
  for (const auto& [user, path] : std::vector<std::pair<int64_t, std::string>>{
           {also_s1, "/api/chat/heartbeat/"},
           {on_s0, "/api/chat/mark-offline/"}}) {
    ASSERT_EQ(Http(port, http::verb::post, path, Token(user)).status, 200);
    event = everyone.Next();
    ASSERT_TRUE(event.has_value()) << user;
    EXPECT_EQ(event->name, "change");
    EXPECT_EQ(event->data.fields().at("user_id").number_value(), user);
  }

  const std::string s1_address = shards[1].address;
  shards[1].process->Signal(SIGKILL);
  shards[1].process->Wait();
  HttpResult health;
  ASSERT_TRUE(Eventually(
      [&] {
        health = Http(port, http::verb::get, "/healthz");
        return health.status == 503;
      },
      absl::Seconds(3)))
      << health.body;
  EXPECT_THAT(health.json.fields().at("reason").string_value(),
              HasSubstr("shard s1 (" + s1_address + ")"));
  event = everyone.Next(absl::Seconds(3));
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->name, "stale");
  // s0's users are still served.
  EXPECT_EQ(
      Http(port, http::verb::post, "/api/chat/heartbeat/", Token(on_s0)).status,
      200);

  shards[1] = StartPresenced({"--listen=" + s1_address,
                              absl::StrCat("--db=", dir.File("s1"), ".db"),
                              "--shard=s1", "--shards=s0,s1"});
  ASSERT_FALSE(shards[1].address.empty());
  event = everyone.Next(absl::Seconds(5));
  ASSERT_TRUE(event.has_value()) << "no snapshot once s1 is back";
  EXPECT_EQ(event->name, "snapshot");
  std::vector<int64_t> now_online = {on_s0, on_s1, also_s1};
  std::sort(now_online.begin(), now_online.end());
  EXPECT_THAT(ExactIds(event->raw, "online_users"),
              ElementsAreArray(now_online));
  EXPECT_TRUE(Eventually(
      [&] { return Http(port, http::verb::get, "/healthz").status == 200; },
      absl::Seconds(5)));
}

}  // namespace
}  // namespace presence::rest
