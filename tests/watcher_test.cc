// The C++ client's Watcher (client/watcher.cc) against a real server on
// 127.0.0.1:0 (tests/server_fixture.h): snapshot, changes, and a fresh
// snapshot when presenced restarts (another epoch), without the consumer
// doing anything.

#include "presence/watcher.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "presence/client.h"
#include "service/presence_server.h"
#include "tests/server_fixture.h"

namespace presence {
namespace {

class WatcherClientTest : public testing::LoopbackServerTest {
 protected:
  struct Seen {
    absl::Mutex mu;
    std::vector<std::vector<int64_t>> snapshots ABSL_GUARDED_BY(mu);
    std::vector<v1::PresenceChange> changes ABSL_GUARDED_BY(mu);
    int disconnects ABSL_GUARDED_BY(mu) = 0;

    bool Await(std::function<bool(Seen&)> done) {
      absl::MutexLock lock(&mu);
      auto ready = [&]() { return done(*this); };
      return mu.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(20));
    }
  };

  std::unique_ptr<Watcher> StartWatcher(Seen* seen) {
    WatcherOptions options;
    options.initial_backoff = absl::Milliseconds(20);
    options.max_backoff = absl::Milliseconds(200);
    WatcherCallbacks callbacks;
    callbacks.on_snapshot = [seen](const v1::Snapshot& s) {
      absl::MutexLock lock(&seen->mu);
      seen->snapshots.emplace_back(s.online_users().begin(),
                                   s.online_users().end());
    };
    callbacks.on_change = [seen](const v1::PresenceChange& c) {
      absl::MutexLock lock(&seen->mu);
      seen->changes.push_back(c);
    };
    callbacks.on_disconnect = [seen](const absl::Status&, absl::Duration) {
      absl::MutexLock lock(&seen->mu);
      ++seen->disconnects;
    };
    return std::make_unique<Watcher>(client_->channel(), options, callbacks);
  }
};

TEST_F(WatcherClientTest, StopsOnAnErrorThatARetryCannotFix) {
  absl::Notification gave_up;
  absl::Status last;
  WatcherOptions options;
  options.user_ids = {0};  // INVALID_ARGUMENT
  WatcherCallbacks callbacks;
  callbacks.on_disconnect = [&](const absl::Status& status,
                                absl::Duration retry_in) {
    if (retry_in == absl::InfiniteDuration()) {
      last = status;
      gave_up.Notify();
    }
  };
  Watcher watcher(client_->channel(), options, callbacks);
  ASSERT_TRUE(gave_up.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(last.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(last.message().find("user_ids[0]"), absl::string_view::npos);
}

TEST_F(WatcherClientTest, FollowsChangesAndResnapshotsAfterARestart) {
  ASSERT_TRUE(client_->Heartbeat(1).ok());
  Seen seen;
  std::unique_ptr<Watcher> watcher = StartWatcher(&seen);
  ASSERT_TRUE(seen.Await([](Seen& s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return s.snapshots.size() == 1;
  }));
  ASSERT_TRUE(client_->Heartbeat(2).ok());
  ASSERT_TRUE(seen.Await([](Seen& s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return s.changes.size() == 1;
  }));

  // Restart on the same address: same database, new epoch.
  const std::string address = server_->address();
  ServerOptions options;
  options.listen = address;
  client_.reset();
  server_.reset();
  Start(options);
  ASSERT_TRUE(seen.Await([](Seen& s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return s.snapshots.size() == 2;
  }));
  ASSERT_TRUE(client_->MarkOffline(1).ok());
  ASSERT_TRUE(seen.Await([](Seen& s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return s.changes.size() == 2;
  }));
  watcher->Stop();

  absl::MutexLock lock(&seen.mu);
  EXPECT_EQ(seen.snapshots[0], std::vector<int64_t>{1});
  EXPECT_EQ(seen.changes[0].user_id(), 2);
  EXPECT_EQ(seen.snapshots[1], (std::vector<int64_t>{1, 2}));  // restored
  EXPECT_EQ(seen.changes[1].user_id(), 1);
  EXPECT_EQ(seen.changes[1].reason(), v1::REASON_MARK_OFFLINE);
  EXPECT_GE(seen.disconnects, 1);
}

}  // namespace
}  // namespace presence
