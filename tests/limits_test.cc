// presenced's limits on a real server: sessions per user, request size, and
// the reaping of watchers whose process hangs (keepalive).
#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "presence/client.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using presence::testing::RunningPresenced;
using presence::testing::StartPresenced;
using presence::testing::Subprocess;
using presence::testing::TempDir;
using ::testing::HasSubstr;

ClientOptions Options(const std::string& target) {
  ClientOptions options;
  options.target = target;
  return options;
}

TEST(LimitsTest, ANewSessionBeyondTheLimitEndsTheOldestDurably) {
  TempDir dir;
  const std::vector<std::string> flags = {"--db=" + dir.File("p.db"),
                                          "--max_sessions_per_user=2"};
  RunningPresenced server = StartPresenced(flags);
  ASSERT_FALSE(server.address.empty());
  {
    Client client(Options(server.address));
    for (const char* tab : {"tab-1", "tab-2", "tab-3"}) {
      ASSERT_TRUE(client.Heartbeat(42, tab).ok());
    }
    absl::StatusOr<v1::GetPresenceResponse> presence =
        client.GetPresence(std::vector<int64_t>{42});
    ASSERT_TRUE(presence.ok());
    EXPECT_EQ(presence->users(0).live_sessions(), 2);
  }
  server.process->Signal(SIGKILL);
  server.process->Wait();
  // The eviction was committed with the heartbeat that caused it.
  server = StartPresenced(flags);
  ASSERT_FALSE(server.address.empty());
  Client client(Options(server.address));
  absl::StatusOr<v1::MarkOfflineResponse> oldest =
      client.MarkOffline(42, "tab-1");
  ASSERT_TRUE(oldest.ok());
  EXPECT_EQ(oldest->sessions_ended(), 0);
  absl::StatusOr<v1::MarkOfflineResponse> rest = client.MarkOffline(42);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->sessions_ended(), 2);
}

TEST(LimitsTest, OversizedRequestsAreRefused) {
  TempDir dir;
  RunningPresenced server =
      StartPresenced({"--db=" + dir.File("p.db"), "--max_request_bytes=4096"});
  ASSERT_FALSE(server.address.empty());
  Client client(Options(server.address));
  v1::BatchHeartbeatRequest batch;
  for (int64_t user = 1; user <= 1'000; ++user) {
    batch.add_heartbeats()->set_user_id(user);
  }
  absl::Status status = client.BatchHeartbeat(batch).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_TRUE(client.Heartbeat(1).ok());  // small ones still pass
}

// A watcher whose process hangs (SIGSTOP: its kernel keeps the TCP
// connection open, but nothing answers HTTP/2 pings) is dropped after
// keepalive_time + keepalive_timeout, and its slot is free again.
TEST(LimitsTest, HungWatchersAreReapedByKeepalive) {
  TempDir dir;
  RunningPresenced server = StartPresenced(
      {"--db=" + dir.File("p.db"), "--max_watchers=1", "--keepalive_time=1s",
       "--keepalive_timeout=1s", "--metrics_listen=127.0.0.1:0"});
  ASSERT_FALSE(server.address.empty());
  std::optional<std::string> err =
      server.process->WaitForStderr("metrics on http://", absl::Seconds(5));
  ASSERT_TRUE(err.has_value());
  size_t at = err->find("metrics on ") + 11;
  const std::string url = err->substr(at, err->find_first_of(" \n", at) - at);
  auto watchers = [&]() -> std::string {
    Subprocess::Exit scrape =
        presence::testing::Run({"/usr/bin/curl", "-sf", url});
    size_t line = scrape.out.find("\npresence_watchers ");
    if (line == std::string::npos) return "?";
    line += 19;
    return scrape.out.substr(line, scrape.out.find('\n', line) - line);
  };

  Subprocess hung({PRESENCECTL_PATH, "--server=" + server.address, "watch"});
  ASSERT_TRUE(hung.WaitForStdout("snapshot", absl::Seconds(10)).has_value());
  EXPECT_EQ(watchers(), "1");
  // The only slot is taken.
  {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    Client client(Options(server.address));
    auto reader = client.stub().WatchPresence(&context, {});
    v1::WatchPresenceResponse message;
    EXPECT_FALSE(reader->Read(&message));
    EXPECT_EQ(reader->Finish().error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
  }

  hung.Signal(SIGSTOP);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  std::string count;
  // Nothing notifies the test when presenced drops the connection: poll
  // the gauge.
  while ((count = watchers()) != "0" && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_EQ(count, "0") << "the hung watcher was not reaped";
  hung.Signal(SIGKILL);
  hung.Wait();

  // The slot is free: a new watcher gets a snapshot.
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  Client client(Options(server.address));
  v1::WatchPresenceRequest request;
  request.set_send_snapshot(true);
  auto reader = client.stub().WatchPresence(&context, request);
  v1::WatchPresenceResponse message;
  EXPECT_TRUE(reader->Read(&message));
  EXPECT_TRUE(message.has_snapshot());
  context.TryCancel();
  reader->Finish();
}

TEST(LimitsTest, BadLimitFlagsStopTheStart) {
  TempDir dir;
  for (const char* flag : {"--max_sessions_per_user=-1",
                           "--max_request_bytes=10", "--keepalive_time=0s"}) {
    Subprocess::Exit exit =
        presence::testing::Run({PRESENCED_PATH, "--listen=127.0.0.1:0",
                                "--db=" + dir.File("p.db"), flag});
    EXPECT_EQ(exit.code, 1) << flag;
    EXPECT_THAT(exit.err, HasSubstr("must be")) << flag;
  }
}

}  // namespace
}  // namespace presence
