// The presenced binary as an operator runs it: restarts after kill -9,
// graceful SIGTERM, and clear failures for bad flags and environments.

#include <signal.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "presence/client.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using google::protobuf::util::TimeUtil;
using testing::RunningPresenced;
using testing::StartPresenced;
using testing::Subprocess;
using testing::TempDir;

int64_t Micros(const google::protobuf::Timestamp& t) {
  return TimeUtil::TimestampToMicroseconds(t);
}

std::unique_ptr<Client> Connect(const std::string& address) {
  ClientOptions options;
  options.target = address;
  return std::make_unique<Client>(options);
}

TEST(PresencedProcessTest, KillNineLosesNothingThatWasAnswered) {
  TempDir dir;
  const std::string db = "--db=" + dir.File("presence.db");
  std::map<int64_t, int64_t> online_until;  // user -> answered online_until
  std::map<int64_t, int64_t> logged_out;    // user -> answered logout time
  {
    RunningPresenced server = StartPresenced({db});
    ASSERT_FALSE(server.address.empty());
    auto client = Connect(server.address);
    for (int64_t user = 1; user <= 300; ++user) {
      absl::StatusOr<v1::HeartbeatResponse> r =
          client->Heartbeat(user, user % 3 == 0 ? "phone" : "");
      ASSERT_TRUE(r.ok()) << r.status();
      online_until[user] = Micros(r->online_until());
    }
    for (int64_t user = 10; user <= 300; user += 10) {
      absl::StatusOr<v1::MarkOfflineResponse> r = client->MarkOffline(user);
      ASSERT_TRUE(r.ok()) << r.status();
      online_until.erase(user);
      logged_out[user] = Micros(r->server_time());
    }
    // Rich presence: answered statuses are durable too.
    for (int64_t user = 5; user <= 300; user += 10) {
      v1::SetStatusRequest request;
      request.set_user_id(user);
      request.set_availability(v1::AVAILABILITY_DND);
      request.mutable_custom_status()->set_text(absl::StrCat("user ", user));
      absl::StatusOr<v1::SetStatusResponse> r = client->SetStatus(request);
      ASSERT_TRUE(r.ok()) << r.status();
    }
    server.process->Signal(SIGKILL);
    Subprocess::Exit exit = server.process->Wait();
    ASSERT_EQ(exit.signal, SIGKILL);
  }

  RunningPresenced server = StartPresenced({db});
  ASSERT_FALSE(server.address.empty());
  auto client = Connect(server.address);
  std::vector<int64_t> ids;
  for (int64_t user = 1; user <= 300; ++user) ids.push_back(user);
  absl::StatusOr<v1::GetPresenceResponse> r = client->GetPresence(ids);
  ASSERT_TRUE(r.ok()) << r.status();
  for (const v1::UserPresence& p : r->users()) {
    const bool set = p.user_id() % 10 == 5;
    EXPECT_EQ(p.availability(),
              set ? v1::AVAILABILITY_DND : v1::AVAILABILITY_AUTO)
        << p.user_id();
    EXPECT_EQ(p.custom_status().text(),
              set ? absl::StrCat("user ", p.user_id()) : "")
        << p.user_id();
    if (auto it = online_until.find(p.user_id()); it != online_until.end()) {
      EXPECT_EQ(p.status(), v1::STATUS_ONLINE) << p.user_id();
      EXPECT_EQ(Micros(p.online_until()), it->second) << p.user_id();
    } else {
      EXPECT_EQ(p.status(), v1::STATUS_OFFLINE) << p.user_id();
      EXPECT_EQ(Micros(p.last_seen()), logged_out.at(p.user_id()))
          << p.user_id();
    }
  }
  absl::StatusOr<std::vector<int64_t>> online = client->ListAllOnline();
  ASSERT_TRUE(online.ok());
  EXPECT_EQ(online->size(), online_until.size());
}

TEST(PresencedProcessTest, SigtermShutsDownGracefullyWithExitZero) {
  TempDir dir;
  RunningPresenced server = StartPresenced({"--db=" + dir.File("p.db")});
  ASSERT_FALSE(server.address.empty());
  ASSERT_TRUE(Connect(server.address)->Heartbeat(42).ok());
  server.process->Signal(SIGTERM);
  Subprocess::Exit exit = server.process->Wait();
  EXPECT_EQ(exit.code, 0) << exit.err;
  EXPECT_NE(exit.err.find("shutting down"), std::string::npos) << exit.err;
  EXPECT_NE(exit.err.find("stopped"), std::string::npos) << exit.err;

  RunningPresenced again = StartPresenced({"--db=" + dir.File("p.db")});
  ASSERT_FALSE(again.address.empty());
  absl::StatusOr<std::vector<int64_t>> online =
      Connect(again.address)->ListAllOnline();
  ASSERT_TRUE(online.ok());
  EXPECT_EQ(*online, std::vector<int64_t>{42});
}

// Pooled client connections are the normal case, and load balancers keep a
// grpc.health.v1.Health/Watch open: neither may hold up a deploy. gRPC's own
// Shutdown() waited its whole grace period (5 s) for them.
TEST(PresencedProcessTest, SigtermExitsWithinASecondDespiteIdleClients) {
  TempDir dir;
  RunningPresenced server = StartPresenced({"--db=" + dir.File("p.db")});
  ASSERT_FALSE(server.address.empty());
  // An idle connection, after one call.
  auto pooled = Connect(server.address);
  ASSERT_TRUE(pooled->Heartbeat(42).ok());
  // A health watch, open on a connection of its own.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto health_channel = grpc::CreateCustomChannel(
      server.address, grpc::InsecureChannelCredentials(), args);
  auto health = grpc::health::v1::Health::NewStub(health_channel);
  grpc::ClientContext watch_context;
  auto watch = health->Watch(&watch_context, {});
  grpc::health::v1::HealthCheckResponse status;
  ASSERT_TRUE(watch->Read(&status));
  EXPECT_EQ(status.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  const absl::Time signalled = absl::Now();
  server.process->Signal(SIGTERM);
  Subprocess::Exit exit = server.process->Wait();
  const absl::Duration took = absl::Now() - signalled;
  EXPECT_EQ(exit.code, 0) << exit.err;
  EXPECT_LT(took, absl::Seconds(1)) << exit.err;
  // The watch saw the server go, and ended.
  while (watch->Read(&status)) {
  }
  EXPECT_FALSE(watch->Finish().ok());
}

TEST(PresencedProcessTest, SigintAlsoShutsDownGracefully) {
  TempDir dir;
  RunningPresenced server = StartPresenced({"--db=" + dir.File("p.db")});
  ASSERT_FALSE(server.address.empty());
  server.process->Signal(SIGINT);
  EXPECT_EQ(server.process->Wait().code, 0);
}

struct BadStart {
  std::string name;
  std::vector<std::string> flags;
  std::string message;  // expected in stderr
};

void PrintTo(const BadStart& c, std::ostream* os) { *os << c.name; }

class PresencedBadStartTest : public ::testing::TestWithParam<BadStart> {};

TEST_P(PresencedBadStartTest, ExitsNonZeroWithAClearMessage) {
  TempDir dir;
  std::vector<std::string> argv = {PRESENCED_PATH, "--listen=127.0.0.1:0",
                                   "--db=" + dir.File("p.db")};
  argv.insert(argv.end(), GetParam().flags.begin(), GetParam().flags.end());
  Subprocess::Exit exit = testing::Run(argv);
  EXPECT_NE(exit.code, 0);
  EXPECT_NE(exit.err.find(GetParam().message), std::string::npos) << exit.err;
  EXPECT_EQ(exit.err.find("serving on"), std::string::npos) << exit.err;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PresencedBadStartTest,
    ::testing::Values(
        BadStart{"UnknownFlag", {"--no_such_flag=1"}, "no_such_flag"},
        BadStart{"BadDuration", {"--online_window=soon"}, "online_window"},
        BadStart{"BadDurability", {"--durability=sometimes"}, "--durability"},
        BadStart{"WindowUnderTwoIntervals",
                 {"--online_window=3m", "--heartbeat_interval=2m"},
                 "online_window (3m) must be at least 2 x heartbeat_interval"},
        BadStart{"StrayArgument", {"serve"}, "unexpected argument 'serve'"},
        BadStart{"DbInMissingDirectory",
                 {"--db=/nonexistent-presence-dir/p.db"},
                 "/nonexistent-presence-dir/p.db"},
        BadStart{"ListenWithoutPort", {"--listen=localhost"}, "HOST:PORT"}),
    [](const ::testing::TestParamInfo<BadStart>& info) {
      return info.param.name;
    });

TEST(PresencedProcessTest, DbThatIsNotADatabaseIsRefused) {
  TempDir dir;
  const std::string path = dir.File("p.db");
  ASSERT_EQ(
      testing::Run({"/bin/sh", "-c", "head -c 8192 /dev/urandom > " + path})
          .code,
      0);
  Subprocess::Exit exit =
      testing::Run({PRESENCED_PATH, "--listen=127.0.0.1:0", "--db=" + path});
  EXPECT_NE(exit.code, 0);
  EXPECT_NE(exit.err.find("not a presenced database"), std::string::npos)
      << exit.err;
}

TEST(PresencedProcessTest, PortInUseIsAClearError) {
  TempDir dir;
  RunningPresenced first = StartPresenced({"--db=" + dir.File("a.db")});
  ASSERT_FALSE(first.address.empty());
  Subprocess::Exit exit =
      testing::Run({PRESENCED_PATH, "--listen=" + first.address,
                    "--db=" + dir.File("b.db")});
  EXPECT_NE(exit.code, 0);
  EXPECT_NE(exit.err.find("cannot listen on " + first.address),
            std::string::npos)
      << exit.err;
}

TEST(PresencedProcessTest, SecondServerOnTheSameDbIsRefused) {
  TempDir dir;
  RunningPresenced first = StartPresenced({"--db=" + dir.File("a.db")});
  ASSERT_FALSE(first.address.empty());
  Subprocess::Exit exit = testing::Run(
      {PRESENCED_PATH, "--listen=127.0.0.1:0", "--db=" + dir.File("a.db")});
  EXPECT_NE(exit.code, 0);
  EXPECT_NE(exit.err.find("in use by another presenced"), std::string::npos)
      << exit.err;
}

TEST(PresencedProcessTest, HelpExplainsEveryFlag) {
  Subprocess::Exit exit = testing::Run({PRESENCED_PATH, "--help"});
  const std::string help = exit.out + exit.err;
  for (const char* flag :
       {"--listen", "--db", "--online_window", "--heartbeat_interval",
        "--durability", "--commit_interval", "--max_ids_per_request",
        "--max_watchers", "--watch_ring_size", "--watcher_queue_size",
        "--watch_dispatch_threads"}) {
    EXPECT_NE(help.find(flag), std::string::npos) << flag << "\n" << help;
  }
  EXPECT_NE(help.find("SIGTERM"), std::string::npos);
}

}  // namespace
}  // namespace presence
