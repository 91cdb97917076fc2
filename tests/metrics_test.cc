// presenced's Prometheus endpoint (--metrics_listen): a real presenced,
// driven by presence::Client, scraped over HTTP, with exact values.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
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

// GET http://address/metrics with HTTP/1.0 (the server closes after the
// answer). Returns the body of a 200 answer; fails the test otherwise.
std::string HttpGetMetrics(const std::string& address) {
  const size_t colon = address.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      inet_pton(AF_INET, address.substr(0, colon).c_str(), &addr.sin_addr) !=
          1) {
    ADD_FAILURE() << "not an IPv4 HOST:PORT: " << address;
    return "";
  }
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ADD_FAILURE() << "connect " << address << ": " << std::strerror(errno);
    if (fd >= 0) close(fd);
    return "";
  }
  const std::string request =
      absl::StrCat("GET /metrics HTTP/1.0\r\nHost: ", address, "\r\n\r\n");
  std::string answer;
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
      static_cast<ssize_t>(request.size())) {
    char buf[16384];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
      answer.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  const size_t body = answer.find("\r\n\r\n");
  if (!absl::StartsWith(answer, "HTTP/1.1 200") &&
      !absl::StartsWith(answer, "HTTP/1.0 200")) {
    ADD_FAILURE() << "GET /metrics answered:\n" << answer;
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

}  // namespace
}  // namespace presence
