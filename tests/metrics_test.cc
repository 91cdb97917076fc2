// presenced's Prometheus endpoint (--metrics_listen): a real presenced,
// driven by presence::Client, scraped over HTTP, with exact values; and the
// HTTP server itself (MetricsServer) against slow, idle, flooding and too
// many clients.

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "presence/client.h"
#include "service/clock.h"
#include "service/metrics_server.h"
#include "service/presence_server.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using ::testing::IsEmpty;
using ::testing::Optional;
using testing::RunningPresenced;
using testing::StartPresenced;
using testing::Subprocess;
using testing::TempDir;

using Labels = std::map<std::string, std::string>;

constexpr char kRequests[] = "presence_grpc_requests_total";
constexpr char kDurations[] = "presence_grpc_request_duration_seconds";

// A scrape in Prometheus' text format, parsed into samples. Records what
// breaks the format: a line that does not parse, a sample before its
// family's # HELP and # TYPE.
class Scrape {
 public:
  struct Sample {
    std::string name;
    Labels labels;
    double value = 0;
  };

  explicit Scrape(const std::string& text) {
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      if (line.empty()) continue;
      if (absl::ConsumePrefix(&line, "# HELP ")) {
        helped_.insert(std::string(line.substr(0, line.find(' '))));
      } else if (absl::ConsumePrefix(&line, "# TYPE ")) {
        const size_t space = line.find(' ');
        types_[std::string(line.substr(0, space))] =
            std::string(line.substr(space + 1));
      } else if (line[0] != '#') {
        ParseSample(line);
      }
    }
  }

  // The value of the sample with exactly these labels (in any order).
  std::optional<double> Get(const std::string& name,
                            const Labels& labels = {}) const {
    for (const Sample& s : samples_) {
      if (s.name == name && s.labels == labels) return s.value;
    }
    return std::nullopt;
  }
  // Every sample of `name`.
  std::vector<Sample> All(const std::string& name) const {
    std::vector<Sample> out;
    for (const Sample& s : samples_) {
      if (s.name == name) out.push_back(s);
    }
    return out;
  }
  const std::vector<std::string>& errors() const { return errors_; }

 private:
  void ParseSample(absl::string_view line) {
    Sample sample;
    const size_t name_end = line.find_first_of("{ ");
    if (name_end == absl::string_view::npos) {
      errors_.push_back(absl::StrCat("no value: ", line));
      return;
    }
    sample.name = std::string(line.substr(0, name_end));
    absl::string_view rest = line.substr(name_end);
    if (absl::ConsumePrefix(&rest, "{")) {
      while (!absl::ConsumePrefix(&rest, "}")) {
        const size_t eq = rest.find("=\"");
        const size_t close = rest.find('"', eq + 2);
        if (eq == absl::string_view::npos || close == absl::string_view::npos) {
          errors_.push_back(absl::StrCat("bad labels: ", line));
          return;
        }
        sample.labels[std::string(rest.substr(0, eq))] =
            std::string(rest.substr(eq + 2, close - eq - 2));
        rest.remove_prefix(close + 1);
        absl::ConsumePrefix(&rest, ",");
      }
    }
    if (!absl::ConsumePrefix(&rest, " ")) {
      errors_.push_back(absl::StrCat("no value: ", line));
      return;
    }
    const std::string value(rest.substr(0, rest.find(' ')));
    char* end = nullptr;
    sample.value = std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0') {
      errors_.push_back(absl::StrCat("bad value: ", line));
      return;
    }
    const std::string family = FamilyOf(sample.name);
    if (family.empty() || helped_.count(family) == 0) {
      errors_.push_back(
          absl::StrCat("sample without # HELP and # TYPE before it: ", line));
    }
    samples_.push_back(std::move(sample));
  }

  // The declared family a sample belongs to, or "".
  std::string FamilyOf(const std::string& name) const {
    if (types_.count(name) > 0) return name;
    for (const char* suffix : {"_bucket", "_count", "_sum"}) {
      absl::string_view base = name;
      if (!absl::ConsumeSuffix(&base, suffix)) continue;
      auto it = types_.find(std::string(base));
      if (it == types_.end()) continue;
      if (it->second == "histogram" ||
          (it->second == "summary" && std::strcmp(suffix, "_bucket") != 0)) {
        return it->first;
      }
    }
    return "";
  }

  std::set<std::string> helped_;
  std::map<std::string, std::string> types_;
  std::vector<Sample> samples_;
  std::vector<std::string> errors_;
};

// A TCP connection to HOST:PORT or [IPv6]:PORT, closed on destruction. Reads
// and writes give up after 5 s, so that a server that stalls fails a test
// rather than hangs it. Records why it could not connect or send.
class TestConnection {
 public:
  explicit TestConnection(const std::string& address) {
    const size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
      error_ = absl::StrCat("not HOST:PORT: ", address);
      return;
    }
    std::string host = address.substr(0, colon);
    if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
      host = host.substr(1, host.size() - 2);
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (const int rc = getaddrinfo(
            host.c_str(), address.substr(colon + 1).c_str(), &hints, &found);
        rc != 0) {
      error_ = absl::StrCat("resolve ", address, ": ", gai_strerror(rc));
      return;
    }
    for (const addrinfo* a = found; a != nullptr && fd_ < 0; a = a->ai_next) {
      fd_ = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd_ >= 0 && connect(fd_, a->ai_addr, a->ai_addrlen) != 0) {
        error_ = absl::StrCat("connect ", address, ": ", std::strerror(errno));
        close(fd_);
        fd_ = -1;
      }
    }
    freeaddrinfo(found);
    if (fd_ < 0) return;
    const timeval timeout = {5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  }
  ~TestConnection() {
    if (fd_ >= 0) close(fd_);
  }
  TestConnection(const TestConnection&) = delete;
  TestConnection& operator=(const TestConnection&) = delete;

  bool connected() const { return fd_ >= 0; }
  const std::string& error() const { return error_; }

  // Sends all of `data`; false if the connection failed (see error()).
  bool Send(absl::string_view data) {
    while (!data.empty()) {
      const ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        error_ = absl::StrCat("send: ", std::strerror(errno));
        return false;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // One answer: its head, and as many body bytes as its Content-Length says
  // (none for HEAD). nullopt if the connection ends or stalls before that.
  std::optional<std::string> ReadResponse(bool head = false) {
    size_t head_end;
    while ((head_end = pending_.find("\r\n\r\n")) == std::string::npos) {
      if (!ReadMore()) return std::nullopt;
    }
    head_end += 4;
    size_t length = 0;
    const size_t at = pending_.find("Content-Length: ");
    if (!head && at != std::string::npos && at < head_end) {
      const size_t start = at + std::strlen("Content-Length: ");
      if (!absl::SimpleAtoi(
              pending_.substr(start, pending_.find("\r\n", start) - start),
              &length)) {
        return std::nullopt;
      }
    }
    while (pending_.size() < head_end + length) {
      if (!ReadMore()) return std::nullopt;
    }
    std::string response = pending_.substr(0, head_end + length);
    pending_.erase(0, head_end + length);
    return response;
  }

  // Everything the server sends until it closes the connection (or resets
  // it) within `timeout`; nullopt if it is still open by then.
  std::optional<std::string> ReadUntilClosed(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      pollfd pfd = {fd_, POLLIN, 0};
      const int wait_ms =
          static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (wait_ms <= 0 || poll(&pfd, 1, wait_ms) <= 0) return std::nullopt;
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return std::move(pending_);
      pending_.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  bool ReadMore() {
    char buf[16384];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    pending_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string error_;
  std::string pending_;  // read and not yet returned
};

// `request` on a fresh connection; the whole answer until the server closes
// the connection, or "" if there was none.
std::string HttpExchange(const std::string& address,
                         const std::string& request) {
  TestConnection connection(address);
  if (!connection.connected() || !connection.Send(request)) return "";
  return connection.ReadUntilClosed(absl::Seconds(5)).value_or("");
}

// GET http://address/metrics with HTTP/1.0 (the server closes after the
// answer). Returns the body of a 200 answer; fails the test otherwise.
std::string HttpGetMetrics(const std::string& address) {
  const std::string answer = HttpExchange(
      address,
      absl::StrCat("GET /metrics HTTP/1.0\r\nHost: ", address, "\r\n\r\n"));
  const size_t body = answer.find("\r\n\r\n");
  if (!absl::StartsWith(answer, "HTTP/1.1 200") &&
      !absl::StartsWith(answer, "HTTP/1.0 200")) {
    ADD_FAILURE() << "GET http://" << address << "/metrics answered:\n"
                  << answer;
    return "";
  }
  return body == std::string::npos ? "" : answer.substr(body + 4);
}

// Scrapes until `ready` holds (for values that change after the client has
// seen its answer, e.g. a stream's end on the server) or 10 s pass.
Scrape ScrapeUntil(const std::string& address,
                   const std::function<bool(const Scrape&)>& ready) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  for (;;) {
    Scrape scrape(HttpGetMetrics(address));
    if (ready(scrape) || absl::Now() > deadline) return scrape;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

// The address of the "metrics on http://HOST:PORT/metrics" line.
std::string MetricsAddress(Subprocess& process) {
  const std::string prefix = "metrics on http://";
  std::optional<std::string> err =
      process.WaitForStderr(prefix, absl::Seconds(5));
  if (!err.has_value()) return "";
  const size_t at = err->find(prefix) + prefix.size();
  return err->substr(at, err->find("/metrics", at) - at);
}

std::unique_ptr<Client> Connect(const std::string& address) {
  ClientOptions options;
  options.target = address;
  return std::make_unique<Client>(options);
}

Labels Call(const std::string& method, const std::string& code) {
  return {{"method", method}, {"code", code}};
}

TEST(MetricsTest, ExportsCallsStateAndCommits) {
  TempDir dir;
  RunningPresenced server = StartPresenced(
      {"--db=" + dir.File("p.db"), "--metrics_listen=127.0.0.1:0"});
  ASSERT_FALSE(server.address.empty());
  const std::string metrics = MetricsAddress(*server.process);
  ASSERT_FALSE(metrics.empty());
  EXPECT_TRUE(absl::StartsWith(metrics, "127.0.0.1:")) << metrics;
  EXPECT_NE(metrics, "127.0.0.1:0");
  auto client = Connect(server.address);

  // A watch of everyone, open until the end; its snapshot shows the hub has
  // registered it.
  grpc::ClientContext watch_context;
  v1::WatchPresenceRequest watch_request;
  watch_request.set_send_snapshot(true);
  auto watch = client->stub().WatchPresence(&watch_context, watch_request);
  v1::WatchPresenceResponse message;
  ASSERT_TRUE(watch->Read(&message));
  ASSERT_TRUE(message.has_snapshot());
  // A watch refused by validation: resume_after without an epoch.
  {
    grpc::ClientContext context;
    v1::WatchPresenceRequest bad;
    bad.set_resume_after(5);
    auto refused = client->stub().WatchPresence(&context, bad);
    EXPECT_FALSE(refused->Read(&message));
    EXPECT_EQ(refused->Finish().error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }

  ASSERT_TRUE(client->Heartbeat(1).ok());
  ASSERT_TRUE(client->Heartbeat(1, "phone").ok());
  ASSERT_TRUE(client->Heartbeat(2).ok());
  EXPECT_EQ(client->Heartbeat(0).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(client->MarkOffline(2).ok());
  absl::StatusOr<v1::ListOnlineResponse> listed =
      client->ListOnline(v1::ListOnlineRequest());
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_THAT(listed->online_users(), ::testing::ElementsAre(1));

  // Everything above was answered, and is recorded before it is answered.
  const Scrape s(HttpGetMetrics(metrics));
  EXPECT_THAT(s.errors(), IsEmpty());

  EXPECT_THAT(s.Get(kRequests, Call("Heartbeat", "OK")), Optional(3));
  EXPECT_THAT(s.Get(kRequests, Call("Heartbeat", "INVALID_ARGUMENT")),
              Optional(1));
  EXPECT_THAT(s.Get(kRequests, Call("MarkOffline", "OK")), Optional(1));
  EXPECT_THAT(s.Get(kRequests, Call("ListOnline", "OK")), Optional(1));
  EXPECT_THAT(s.Get(kRequests, Call("WatchPresence", "INVALID_ARGUMENT")),
              Optional(1));
  // The open stream is counted when it ends; nothing else was called.
  EXPECT_EQ(s.All(kRequests).size(), 5u);

  const std::string count = absl::StrCat(kDurations, "_count");
  const std::string bucket = absl::StrCat(kDurations, "_bucket");
  EXPECT_THAT(s.Get(count, Call("Heartbeat", "OK")), Optional(3));
  EXPECT_THAT(s.Get(count, Call("Heartbeat", "INVALID_ARGUMENT")), Optional(1));
  EXPECT_THAT(s.Get(count, Call("MarkOffline", "OK")), Optional(1));
  EXPECT_THAT(s.Get(count, Call("ListOnline", "OK")), Optional(1));
  // A stream's life is not a request duration.
  EXPECT_EQ(s.Get(count, Call("WatchPresence", "INVALID_ARGUMENT")),
            std::nullopt);
  Labels inf = Call("Heartbeat", "OK");
  inf["le"] = "+Inf";
  EXPECT_THAT(s.Get(bucket, inf), Optional(3));
  double previous = 0;
  int buckets = 0;
  for (const Scrape::Sample& b : s.All(bucket)) {
    if (b.labels.at("method") != "Heartbeat" || b.labels.at("code") != "OK") {
      continue;
    }
    EXPECT_GE(b.value, previous) << "le=" << b.labels.at("le");
    previous = b.value;
    ++buckets;
  }
  EXPECT_EQ(buckets, 20);
  const std::optional<double> sum =
      s.Get(absl::StrCat(kDurations, "_sum"), Call("Heartbeat", "OK"));
  ASSERT_TRUE(sum.has_value());
  EXPECT_GT(*sum, 0);
  EXPECT_LT(*sum, 30);

  // User 1 with two sessions; user 2 logged out.
  EXPECT_THAT(s.Get("presence_online_users"), Optional(1));
  EXPECT_THAT(s.Get("presence_sessions"), Optional(2));
  EXPECT_THAT(s.Get("presence_watchers"), Optional(1));
  EXPECT_THAT(s.Get("presence_events_total",
                    {{"status", "online"}, {"reason", "heartbeat"}}),
              Optional(2));
  EXPECT_THAT(s.Get("presence_events_total",
                    {{"status", "offline"}, {"reason", "mark_offline"}}),
              Optional(1));
  EXPECT_THAT(s.Get("presence_events_total",
                    {{"status", "offline"}, {"reason", "expired"}}),
              Optional(0));
  EXPECT_THAT(s.Get("presence_watcher_queue_overflows_total"), Optional(0));

  // Commit mode: every change answered is committed, and counted first.
  const std::optional<double> commits = s.Get("presence_store_commits_total");
  ASSERT_TRUE(commits.has_value());
  EXPECT_GE(*commits, 1);
  EXPECT_LE(*commits, 4);
  EXPECT_THAT(s.Get("presence_store_committed_changes_total"), Optional(4));
  EXPECT_THAT(s.Get("presence_store_commit_failures_total"), Optional(0));
  EXPECT_THAT(s.Get("presence_store_pending_changes"), Optional(0));
  EXPECT_THAT(s.Get("presence_store_commit_duration_seconds_count"),
              Optional(*commits));

  const std::vector<Scrape::Sample> build = s.All("presence_build_info");
  ASSERT_EQ(build.size(), 1u);
  EXPECT_EQ(build[0].value, 1);
  ASSERT_EQ(build[0].labels.count("version"), 1u);
  EXPECT_FALSE(build[0].labels.at("version").empty());

  // The stream ends: counted with its code once the server is done with it.
  watch_context.TryCancel();
  while (watch->Read(&message)) {
  }
  EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::CANCELLED);
  const Scrape after = ScrapeUntil(metrics, [](const Scrape& s) {
    return s.Get("presence_watchers") == 0 &&
           s.Get(kRequests, Call("WatchPresence", "CANCELLED")).has_value();
  });
  EXPECT_THAT(after.Get("presence_watchers"), Optional(0));
  EXPECT_THAT(after.Get(kRequests, Call("WatchPresence", "CANCELLED")),
              Optional(1));
  EXPECT_THAT(after.Get(kRequests, Call("Heartbeat", "OK")), Optional(3));
}

// In process, with a fake clock, for the gauges that follow time and
// restarts.
class MetricsInProcessTest : public ::testing::Test {
 protected:
  void Start(ServerOptions options = {}) {
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "127.0.0.1:0";
    options.db_path = dir_.File("presence.db");
    options.clock = &clock_;
    absl::StatusOr<std::unique_ptr<PresenceServer>> server =
        PresenceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    client_ = Connect(server_->address());
  }
  Scrape Get() { return Scrape(HttpGetMetrics(server_->metrics_address())); }

  FakeClock clock_;
  TempDir dir_;
  std::unique_ptr<PresenceServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(MetricsInProcessTest, SessionsFollowHeartbeatsExpiryAndRestarts) {
  Start();
  ASSERT_TRUE(client_->Heartbeat(1, "tab").ok());
  clock_.Advance(absl::Minutes(3));
  ASSERT_TRUE(client_->Heartbeat(1, "phone").ok());
  ASSERT_TRUE(client_->Heartbeat(2).ok());
  EXPECT_THAT(Get().Get("presence_sessions"), Optional(3));
  EXPECT_THAT(Get().Get("presence_online_users"), Optional(2));

  // "tab" has expired, user 1 is online through "phone": the silent session
  // is held until user 1's next heartbeat drops it.
  clock_.Advance(absl::Minutes(2) + absl::Seconds(30));
  EXPECT_THAT(Get().Get("presence_sessions"), Optional(3));
  ASSERT_TRUE(client_->Heartbeat(1, "phone").ok());
  EXPECT_THAT(Get().Get("presence_sessions"), Optional(2));

  // User 2's window ends: the sweeper announces it and frees the session.
  clock_.Advance(absl::Minutes(3));
  Scrape s = ScrapeUntil(server_->metrics_address(), [](const Scrape& s) {
    return s.Get("presence_events_total",
                 {{"status", "offline"}, {"reason", "expired"}}) == 1;
  });
  EXPECT_THAT(s.Get("presence_events_total",
                    {{"status", "offline"}, {"reason", "expired"}}),
              Optional(1));
  EXPECT_THAT(s.Get("presence_sessions"), Optional(1));
  EXPECT_THAT(s.Get("presence_online_users"), Optional(1));

  // A restart restores the live sessions, with no event and no call.
  ASSERT_TRUE(client_->Heartbeat(3, "a").ok());
  ASSERT_TRUE(client_->Heartbeat(3, "b").ok());
  ASSERT_TRUE(server_->Shutdown().ok());
  server_.reset();
  Start();
  s = Get();
  EXPECT_THAT(s.Get("presence_sessions"), Optional(3));
  EXPECT_THAT(s.Get("presence_online_users"), Optional(2));
  EXPECT_THAT(s.Get("presence_events_total",
                    {{"status", "online"}, {"reason", "heartbeat"}}),
              Optional(0));
  EXPECT_THAT(s.All(kRequests), IsEmpty());

  // Logging out everywhere ends both of user 3's sessions.
  ASSERT_TRUE(client_->MarkOffline(3).ok());
  s = Get();
  EXPECT_THAT(s.Get("presence_sessions"), Optional(1));
  EXPECT_THAT(s.Get("presence_online_users"), Optional(1));
}

TEST_F(MetricsInProcessTest, UsersByStatusFollowRichPresence) {
  Start();
  auto set = [&](int64_t user, v1::Availability availability) {
    v1::SetStatusRequest request;
    request.set_user_id(user);
    request.set_availability(availability);
    v1::SetStatusResponse response;
    grpc::ClientContext context;
    return client_->stub().SetStatus(&context, request, &response);
  };
  for (int64_t user : {1, 2, 3, 4}) ASSERT_TRUE(client_->Heartbeat(user).ok());
  ASSERT_TRUE(set(2, v1::AVAILABILITY_DND).ok());
  ASSERT_TRUE(set(3, v1::AVAILABILITY_INVISIBLE).ok());
  ASSERT_TRUE(set(5, v1::AVAILABILITY_INVISIBLE).ok());  // offline
  Scrape s = Get();
  EXPECT_THAT(s.Get("presence_online_users"), Optional(3));
  EXPECT_THAT(s.Get("presence_users_by_status", {{"status", "online"}}),
              Optional(2));
  EXPECT_THAT(s.Get("presence_users_by_status", {{"status", "dnd"}}),
              Optional(1));
  EXPECT_THAT(s.Get("presence_users_by_status", {{"status", "away"}}),
              Optional(0));
  EXPECT_THAT(s.Get("presence_users_by_status", {{"status", "invisible"}}),
              Optional(2));
  EXPECT_THAT(s.Get("presence_events_total",
                    {{"status", "any"}, {"reason", "status_set"}}),
              Optional(2));  // user 2 became DND, user 3 disappeared
}

TEST_F(MetricsInProcessTest, PendingChangesWaitForTheAsyncCommit) {
  ServerOptions options;
  options.durability = Durability::kAsync;
  // The writer's first batch goes at once, the next one an hour later.
  options.commit_interval = absl::Hours(1);
  Start(options);
  ASSERT_TRUE(client_->Heartbeat(1).ok());
  Scrape s = ScrapeUntil(server_->metrics_address(), [](const Scrape& s) {
    return s.Get("presence_store_commits_total") == 1;
  });
  EXPECT_THAT(s.Get("presence_store_commits_total"), Optional(1));
  EXPECT_THAT(s.Get("presence_store_pending_changes"), Optional(0));

  ASSERT_TRUE(client_->Heartbeat(2).ok());
  ASSERT_TRUE(client_->MarkOffline(1).ok());
  s = Get();
  EXPECT_THAT(s.Get("presence_store_pending_changes"), Optional(2));
  EXPECT_THAT(s.Get("presence_store_committed_changes_total"), Optional(1));
  EXPECT_THAT(s.Get(kRequests, Call("Heartbeat", "OK")), Optional(2));
}

// presence_serving follows the health service: 1, then 0 once the database
// is deleted under presenced (health NOT_SERVING, changes refused), so an
// alert can fire on it without a gRPC prober.
TEST_F(MetricsInProcessTest, ServingFollowsTheHealthService) {
  Start();
  ASSERT_TRUE(client_->Heartbeat(1).ok());
  EXPECT_THAT(Get().Get("presence_serving"), Optional(1));
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string file = dir_.File("presence.db") + suffix;
    ASSERT_EQ(unlink(file.c_str()), 0) << file;
  }
  Scrape s = ScrapeUntil(server_->metrics_address(), [](const Scrape& s) {
    return s.Get("presence_serving") == 0;
  });
  EXPECT_THAT(s.Get("presence_serving"), Optional(0));
  EXPECT_EQ(client_->Heartbeat(2).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(MetricsTest, OffByDefault) {
  TempDir dir;
  RunningPresenced server = StartPresenced({"--db=" + dir.File("p.db")});
  ASSERT_FALSE(server.address.empty());
  server.process->Signal(SIGTERM);
  const Subprocess::Exit exit = server.process->Wait();
  EXPECT_EQ(exit.code, 0) << "signal " << exit.signal << "\n" << exit.err;
  EXPECT_FALSE(absl::StrContains(exit.err, "metrics on")) << exit.err;
}

TEST(MetricsTest, HelpExplainsTheFlag) {
  const Subprocess::Exit exit = testing::Run({PRESENCED_PATH, "--help"});
  EXPECT_TRUE(absl::StrContains(exit.out + exit.err, "--metrics_listen"))
      << exit.out << exit.err;
}

// A listening socket on 127.0.0.1 and a free port, closed on destruction.
class HeldPort {
 public:
  HeldPort() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 ||
        bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(fd_, 1) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot hold a port: " << std::strerror(errno);
      return;
    }
    address_ = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  }
  ~HeldPort() {
    if (fd_ >= 0) close(fd_);
  }
  HeldPort(const HeldPort&) = delete;
  HeldPort& operator=(const HeldPort&) = delete;
  const std::string& address() const { return address_; }

 private:
  int fd_ = -1;
  std::string address_;
};

TEST(MetricsTest, PortInUseIsAClearError) {
  TempDir dir;
  HeldPort held;
  ASSERT_FALSE(held.address().empty());
  const Subprocess::Exit exit = testing::Run(
      {PRESENCED_PATH, "--listen=127.0.0.1:0", "--db=" + dir.File("p.db"),
       "--metrics_listen=" + held.address()});
  EXPECT_EQ(exit.code, 1);
  EXPECT_EQ(exit.signal, 0);
  EXPECT_TRUE(absl::StrContains(
      exit.err, absl::StrCat("presenced: cannot serve metrics on ",
                             held.address(), ": cannot bind to ",
                             held.address(), ": 98 (Address already in use)")))
      << exit.err;
  EXPECT_FALSE(absl::StrContains(exit.err, "serving on")) << exit.err;
}

struct BadAddress {
  std::string name;
  std::string flag;
  std::string message;  // expected in stderr
};

void PrintTo(const BadAddress& c, std::ostream* os) { *os << c.name; }

class MetricsBadAddressTest : public ::testing::TestWithParam<BadAddress> {};

TEST_P(MetricsBadAddressTest, ExitsOneWithAClearMessage) {
  TempDir dir;
  const Subprocess::Exit exit =
      testing::Run({PRESENCED_PATH, "--listen=127.0.0.1:0",
                    "--db=" + dir.File("p.db"), GetParam().flag});
  EXPECT_EQ(exit.code, 1);
  EXPECT_EQ(exit.signal, 0);
  EXPECT_TRUE(absl::StrContains(exit.err, GetParam().message)) << exit.err;
  EXPECT_FALSE(absl::StrContains(exit.err, "serving on")) << exit.err;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MetricsBadAddressTest,
    ::testing::Values(
        BadAddress{"PortOnly", "--metrics_listen=9464",
                   "presenced: --metrics_listen address '9464' must be "
                   "HOST:PORT"},
        BadAddress{"PortTooLarge", "--metrics_listen=127.0.0.1:99999",
                   "--metrics_listen address '127.0.0.1:99999' must be "
                   "HOST:PORT with a port from 0 to 65535"},
        BadAddress{"CivetwebTlsSuffix", "--metrics_listen=127.0.0.1:9464s",
                   "--metrics_listen address '127.0.0.1:9464s' must be"},
        BadAddress{"ListOfPorts", "--metrics_listen=127.0.0.1:1,127.0.0.1:2",
                   "--metrics_listen address"},
        BadAddress{"NotLocal", "--metrics_listen=192.0.2.1:9464",
                   "presenced: cannot serve metrics on 192.0.2.1:9464: cannot "
                   "bind to 192.0.2.1:9464: 99 (Cannot assign requested "
                   "address)"}),
    [](const ::testing::TestParamInfo<BadAddress>& info) {
      return info.param.name;
    });

// The HTTP server on its own, with a Collectable that counts its scrapes.

constexpr char kCollections[] = "test_collections_total";
// The first line of a request that never ends: what held civetweb's two
// threads until its 30 s request timeout.
constexpr char kHalfSent[] = "GET /metrics HTTP/1.1\r\n";

class CountingCollectable : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    prometheus::MetricFamily family;
    family.name = kCollections;
    family.help = "Collect() calls, this one included.";
    family.type = prometheus::MetricType::Counter;
    family.metric.emplace_back().counter.value = ++collections_;
    return {family};
  }
  int collections() const { return collections_; }

 private:
  mutable std::atomic<int> collections_{0};
};

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

using Connections = std::vector<std::unique_ptr<TestConnection>>;

// `n` connections to `address` that each send `data` (perhaps nothing).
Connections OpenConnections(const std::string& address, int n,
                            const std::string& data) {
  Connections out;
  for (int i = 0; i < n; ++i) {
    auto connection = std::make_unique<TestConnection>(address);
    EXPECT_TRUE(connection->connected() &&
                (data.empty() || connection->Send(data)))
        << "connection " << i << ": " << connection->error();
    out.push_back(std::move(connection));
  }
  return out;
}

class MetricsServerTest : public ::testing::Test {
 protected:
  void Start(const MetricsServer::Limits& limits = {}) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> server =
        MetricsServer::Start("127.0.0.1:0", collectable_, limits);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  const std::string& address() const { return server_->address(); }

  // Scrapes until one is answered (after connections close, the server
  // needs a moment to see it) or 5 s pass.
  std::string ScrapeWhenServed() {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    for (;;) {
      const std::string answer =
          HttpExchange(address(), "GET /metrics HTTP/1.0\r\n\r\n");
      if (absl::StartsWith(answer, "HTTP/1.1 200") || absl::Now() > deadline) {
        return answer;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
  }

  const std::shared_ptr<CountingCollectable> collectable_ =
      std::make_shared<CountingCollectable>();
  std::unique_ptr<MetricsServer> server_;
};

TEST_F(MetricsServerTest, HalfSentRequestsDoNotDelayAScrape) {
  for (int open : {10, 100}) {
    SCOPED_TRACE(absl::StrCat(open, " half-sent requests"));
    Start();
    const Connections stuck = OpenConnections(address(), open, kHalfSent);
    const auto start = std::chrono::steady_clock::now();
    const Scrape scrape(HttpGetMetrics(address()));
    EXPECT_LT(SecondsSince(start), 1.0);
    EXPECT_THAT(scrape.errors(), IsEmpty());
    EXPECT_THAT(scrape.Get(kCollections),
                Optional(collectable_->collections()));
    server_.reset();
  }
}

TEST_F(MetricsServerTest, DestructionIsPromptWithOpenConnections) {
  Start();
  const Connections idle = OpenConnections(address(), 5, "");
  const Connections stuck = OpenConnections(address(), 5, kHalfSent);
  TestConnection kept_alive(address());
  ASSERT_TRUE(kept_alive.Send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(kept_alive.ReadResponse().has_value());
  // Scrapes race the destruction.
  std::atomic<bool> done{false};
  std::thread scraper([&done, address = address()] {
    while (!done) HttpExchange(address, "GET /metrics HTTP/1.0\r\n\r\n");
  });
  absl::SleepFor(absl::Milliseconds(50));

  const auto start = std::chrono::steady_clock::now();
  server_.reset();
  EXPECT_LT(SecondsSince(start), 1.0);
  const int collections = collectable_->collections();
  EXPECT_GT(collections, 1);
  absl::SleepFor(absl::Milliseconds(100));
  done = true;
  scraper.join();
  EXPECT_EQ(collectable_->collections(), collections);
  // Every connection was closed, not abandoned.
  for (const Connections* group : {&idle, &stuck}) {
    for (const auto& connection : *group) {
      EXPECT_TRUE(connection->ReadUntilClosed(absl::Seconds(1)).has_value());
    }
  }
  EXPECT_TRUE(kept_alive.ReadUntilClosed(absl::Seconds(1)).has_value());
}

TEST_F(MetricsServerTest, ConnectionsOverTheCapAreClosedAndServingResumes) {
  MetricsServer::Limits limits;
  limits.max_connections = 20;
  Start(limits);
  Connections held = OpenConnections(address(), 20, kHalfSent);
  // Accepted in order: the 20 above fill the server, these are closed at
  // once, unanswered.
  const Connections refused = OpenConnections(address(), 30, kHalfSent);
  for (const auto& connection : refused) {
    EXPECT_THAT(connection->ReadUntilClosed(absl::Seconds(2)),
                Optional(std::string()));
  }
  EXPECT_EQ(HttpExchange(address(), "GET /metrics HTTP/1.0\r\n\r\n"), "");
  // The cap refuses newcomers; it does not drop those it holds.
  EXPECT_EQ(held.front()->ReadUntilClosed(absl::Milliseconds(100)),
            std::nullopt);

  held.clear();
  const std::string answer = ScrapeWhenServed();
  EXPECT_TRUE(absl::StartsWith(answer, "HTTP/1.1 200")) << answer;
}

TEST_F(MetricsServerTest, UnfinishedAndIdleConnectionsAreClosedAtTheDeadline) {
  MetricsServer::Limits limits;
  limits.read_timeout = absl::Milliseconds(300);
  Start(limits);
  TestConnection idle(address());
  TestConnection stuck(address());
  ASSERT_TRUE(stuck.Send(kHalfSent));
  // Trickling a header line at a time does not extend the deadline.
  TestConnection trickle(address());
  ASSERT_TRUE(trickle.Send(kHalfSent));
  TestConnection kept_alive(address());
  ASSERT_TRUE(kept_alive.Send("GET /metrics HTTP/1.1\r\n\r\n"));
  ASSERT_TRUE(kept_alive.ReadResponse().has_value());

  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    if (!trickle.Send(absl::StrCat("X-Line-", i, ": x\r\n"))) break;
  }
  for (TestConnection* connection : {&idle, &stuck, &trickle, &kept_alive}) {
    EXPECT_THAT(connection->ReadUntilClosed(absl::Seconds(3)),
                Optional(std::string()));
  }
  EXPECT_GE(SecondsSince(start), 0.2);
  const std::string answer = ScrapeWhenServed();
  EXPECT_TRUE(absl::StartsWith(answer, "HTTP/1.1 200")) << answer;
}

struct Exchange {
  std::string request;
  std::string status;        // the answer's first line starts with it
  std::string header;        // a line the answer's head must have, or ""
  bool scrape_body = false;  // a body in the text format, else none or text
};

TEST_F(MetricsServerTest, AnswersEachRouteOnOneKeptAliveConnection) {
  Start();
  const std::string metrics_type =
      "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n";
  const std::vector<Exchange> exchanges = {
      {"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK",
       metrics_type, true},
      {"GET /metrics?name=x HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK", metrics_type,
       true},
      {"HEAD /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK", metrics_type},
      {"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404", ""},
      {"GET /metrics/x HTTP/1.1\r\n\r\n", "HTTP/1.1 404", ""},
      {"POST /metrics HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", "HTTP/1.1 405",
       "Allow: GET, HEAD\r\n"},
      {"DELETE /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405", ""},
  };
  TestConnection connection(address());
  for (const Exchange& exchange : exchanges) {
    SCOPED_TRACE(exchange.request);
    ASSERT_TRUE(connection.Send(exchange.request)) << connection.error();
    const bool head = absl::StartsWith(exchange.request, "HEAD");
    const std::optional<std::string> answer = connection.ReadResponse(head);
    ASSERT_TRUE(answer.has_value());
    EXPECT_TRUE(absl::StartsWith(*answer, exchange.status)) << *answer;
    EXPECT_TRUE(absl::StrContains(*answer, exchange.header)) << *answer;
    const std::string body = answer->substr(answer->find("\r\n\r\n") + 4);
    if (exchange.scrape_body) {
      const Scrape scrape(body);
      EXPECT_THAT(scrape.errors(), IsEmpty());
      EXPECT_TRUE(scrape.Get(kCollections).has_value()) << body;
    } else if (head) {
      EXPECT_EQ(body, "");
      EXPECT_FALSE(absl::StrContains(*answer, "Content-Length: 0\r\n"));
    }
  }
  // Pipelined: both sent before either answer is read.
  ASSERT_TRUE(
      connection.Send("GET /metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n"
                      "Connection: close\r\n\r\n"));
  for (int i = 0; i < 2; ++i) {
    const std::optional<std::string> answer = connection.ReadResponse();
    ASSERT_TRUE(answer.has_value());
    EXPECT_TRUE(absl::StartsWith(*answer, "HTTP/1.1 200")) << *answer;
  }
  EXPECT_THAT(connection.ReadUntilClosed(absl::Seconds(2)),
              Optional(std::string()));
}

struct Flood {
  std::string name;
  std::string start;   // sent once
  std::string repeat;  // then sent until the server refuses more
};

void PrintTo(const Flood& c, std::ostream* os) { *os << c.name; }

class MetricsServerFloodTest : public MetricsServerTest,
                               public ::testing::WithParamInterface<Flood> {};

TEST_P(MetricsServerFloodTest, IsRefusedWithoutHarm) {
  Start();
  TestConnection flood(address());
  ASSERT_TRUE(flood.Send(GetParam().start));
  // Far beyond the 8 KiB limit and what socket buffers hold, so that a
  // server reading on would take all of it.
  constexpr size_t kMostSent = 64 << 20;
  size_t sent = 0;
  while (sent < kMostSent && flood.Send(GetParam().repeat)) {
    sent += GetParam().repeat.size();
  }
  EXPECT_LT(sent, kMostSent);
  // Answered 431 then closed, or reset (the server closed with our bytes
  // unread, which may discard its answer).
  const std::optional<std::string> answer =
      flood.ReadUntilClosed(absl::Seconds(2));
  ASSERT_TRUE(answer.has_value()) << "still open; " << flood.error();
  if (!answer->empty()) {
    EXPECT_TRUE(absl::StartsWith(*answer, "HTTP/1.1 431")) << *answer;
  }
  const Scrape scrape(HttpGetMetrics(address()));
  EXPECT_THAT(scrape.Get(kCollections), Optional(1));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MetricsServerFloodTest,
    ::testing::Values(Flood{"LongRequestLine", "GET /", std::string(1024, 'a')},
                      Flood{"ManyHeaderLines", "GET /metrics HTTP/1.1\r\n",
                            "X-Flood: 0123456789\r\n"},
                      Flood{"OneLongHeader",
                            "GET /metrics HTTP/1.1\r\nX-Long: ",
                            std::string(1024, 'b')}),
    [](const ::testing::TestParamInfo<Flood>& info) {
      return info.param.name;
    });

TEST_F(MetricsServerTest, AnOversizeHeaderIsAnswered431) {
  Start();
  TestConnection connection(address());
  // Sent whole, so the server reads it all and can answer before it closes.
  ASSERT_TRUE(connection.Send(absl::StrCat(
      "GET /metrics HTTP/1.1\r\nX-Big: ", std::string(9000, 'c'), "\r\n\r\n")));
  const std::optional<std::string> answer =
      connection.ReadUntilClosed(absl::Seconds(2));
  ASSERT_TRUE(answer.has_value());
  EXPECT_TRUE(absl::StartsWith(*answer, "HTTP/1.1 431")) << *answer;
  EXPECT_EQ(collectable_->collections(), 0);
}

TEST(MetricsServerAddressTest, TakesHostNamesAndBracketedIpv6) {
  auto collectable = std::make_shared<CountingCollectable>();
  absl::StatusOr<std::unique_ptr<MetricsServer>> by_name =
      MetricsServer::Start("localhost:0", collectable);
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_TRUE(absl::StartsWith((*by_name)->address(), "localhost:"))
      << (*by_name)->address();
  EXPECT_NE((*by_name)->address(), "localhost:0");
  EXPECT_FALSE(HttpGetMetrics((*by_name)->address()).empty());

  absl::StatusOr<std::unique_ptr<MetricsServer>> v6 =
      MetricsServer::Start("[::1]:0", collectable);
  if (!v6.ok()) {
    GTEST_SKIP() << "no IPv6 loopback here: " << v6.status();
  }
  EXPECT_TRUE(absl::StartsWith((*v6)->address(), "[::1]:")) << (*v6)->address();
  EXPECT_FALSE(HttpGetMetrics((*v6)->address()).empty());
}

TEST(MetricsServerAddressTest, RefusesWhatIsNotHostPort) {
  for (const char* listen : {"9464", "", "127.0.0.1:", "127.0.0.1:x",
                             "127.0.0.1:65536", "[::1]9464", "[::1:0"}) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> server =
        MetricsServer::Start(listen, std::make_shared<CountingCollectable>());
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument)
        << listen << ": " << server.status();
  }
}

TEST(MetricsServerAddressTest, PortInUseIsUnavailableWithTheReason) {
  HeldPort held;
  ASSERT_FALSE(held.address().empty());
  absl::StatusOr<std::unique_ptr<MetricsServer>> server = MetricsServer::Start(
      held.address(), std::make_shared<CountingCollectable>());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(server.status().message(),
            absl::StrCat("cannot serve metrics on ", held.address(),
                         ": cannot bind to ", held.address(),
                         ": 98 (Address already in use)"));
}

TEST_F(MetricsInProcessTest, ShutdownIsPromptWithOpenMetricsConnections) {
  Start();
  const Connections idle = OpenConnections(server_->metrics_address(), 5, "");
  const Connections stuck =
      OpenConnections(server_->metrics_address(), 5, kHalfSent);
  EXPECT_FALSE(HttpGetMetrics(server_->metrics_address()).empty());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(server_->Shutdown().ok());
  EXPECT_LT(SecondsSince(start), 1.0);
}

TEST(MetricsTest, RunningOutOfFileDescriptorsDoesNotStopServing) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  // Sanitizer runtimes need descriptors of their own: UBSan's vptr check
  // probes memory through a pipe and, unable to make one, reports a valid
  // object as invalid.
  GTEST_SKIP() << "needs a build without sanitizers";
#endif
  TempDir dir;
  constexpr int kMaxFiles = 64;
  Subprocess process(
      {"/bin/sh", "-c",
       absl::StrCat("ulimit -n ", kMaxFiles, " && exec ", PRESENCED_PATH,
                    " --listen=127.0.0.1:0 --db=", dir.File("p.db"),
                    " --metrics_listen=127.0.0.1:0")});
  const std::string metrics = MetricsAddress(process);
  ASSERT_FALSE(metrics.empty());
  {
    const Connections idle = OpenConnections(metrics, 2 * kMaxFiles, "");
    // Accepting took every descriptor, so the last accepts failed (EMFILE).
    const std::string fds = absl::StrCat("/proc/", process.pid(), "/fd");
    int open = 0;
    for (const absl::Time deadline = absl::Now() + absl::Seconds(5);
         open < kMaxFiles && absl::Now() < deadline;
         absl::SleepFor(absl::Milliseconds(10))) {
      open = static_cast<int>(
          std::distance(std::filesystem::directory_iterator(fds),
                        std::filesystem::directory_iterator()));
    }
    EXPECT_GE(open, kMaxFiles);
  }
  // Closed by the clients: the server frees its descriptors and accepts
  // again.
  std::string answer;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       !absl::StartsWith(answer, "HTTP/1.1 200") && absl::Now() < deadline;
       absl::SleepFor(absl::Milliseconds(20))) {
    answer = HttpExchange(metrics, "GET /metrics HTTP/1.0\r\n\r\n");
  }
  EXPECT_TRUE(absl::StartsWith(answer, "HTTP/1.1 200")) << answer;
  process.Signal(SIGTERM);
  const Subprocess::Exit exit = process.Wait();
  EXPECT_EQ(exit.code, 0) << "signal " << exit.signal << "\n" << exit.err;
}

TEST(MetricsTest, ExitsPromptlyOnSigtermWithOpenMetricsConnections) {
  TempDir dir;
  RunningPresenced server = StartPresenced(
      {"--db=" + dir.File("p.db"), "--metrics_listen=127.0.0.1:0"});
  ASSERT_FALSE(server.address.empty());
  const std::string metrics = MetricsAddress(*server.process);
  ASSERT_FALSE(metrics.empty());
  const Connections idle = OpenConnections(metrics, 5, "");
  const Connections stuck = OpenConnections(metrics, 5, kHalfSent);
  EXPECT_FALSE(HttpGetMetrics(metrics).empty());

  const auto start = std::chrono::steady_clock::now();
  server.process->Signal(SIGTERM);
  const Subprocess::Exit exit = server.process->Wait();
  EXPECT_LT(SecondsSince(start), 1.0);
  EXPECT_EQ(exit.code, 0) << "signal " << exit.signal << "\n" << exit.err;
}

}  // namespace
}  // namespace presence
