#include "service/event_hub.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "service/clock.h"

namespace presence {
namespace {

using Reason = PresenceEvent::Reason;
using PopResult = EventHub::PopResult;

class CountingSink : public WatchSink {
 public:
  void OnReady() override {
    absl::MutexLock lock(&mu_);
    ++wakes_;
  }
  // Waits (up to 10 s) until OnReady() was called `n` times in all.
  bool AwaitWakes(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return wakes_ >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(10));
  }
  int wakes() {
    absl::MutexLock lock(&mu_);
    return wakes_;
  }

 private:
  absl::Mutex mu_;
  int wakes_ ABSL_GUARDED_BY(mu_) = 0;
};

class EventHubTest : public ::testing::Test {
 protected:
  explicit EventHubTest(EventHub::Options options = {}) {
    hub_ = std::make_unique<EventHub>(clock_, options);
  }

  void Online(int64_t user) {
    hub_->Publish({user, true, Reason::kHeartbeat, clock_.Now()});
  }
  void Offline(int64_t user, Reason reason = Reason::kMarkOffline) {
    hub_->Publish({user, false, reason, clock_.Now()});
  }

  EventHub::WatchId Watch(WatchRequest request) {
    absl::StatusOr<EventHub::WatchId> id = hub_->Watch(request, sink_);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }

  // Everything the watch has now.
  std::vector<v1::WatchPresenceResponse> Drain(EventHub::WatchId id) {
    std::vector<v1::WatchPresenceResponse> out;
    v1::WatchPresenceResponse message;
    absl::Status status;
    while (hub_->Pop(id, &message, &status) == PopResult::kMessage) {
      out.push_back(message);
    }
    return out;
  }

  static std::vector<int64_t> Users(const v1::Snapshot& snapshot) {
    return {snapshot.online_users().begin(), snapshot.online_users().end()};
  }

  FakeClock clock_;
  std::shared_ptr<CountingSink> sink_ = std::make_shared<CountingSink>();
  std::unique_ptr<EventHub> hub_;
};

TEST_F(EventHubTest, ChangesCarryEpochAndConsecutiveSequences) {
  EventHub::WatchId id = Watch({});
  Online(1);
  Online(2);
  Offline(1, Reason::kExpired);
  std::vector<v1::WatchPresenceResponse> got = Drain(id);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].sequence(), i + 1);
    EXPECT_EQ(got[i].epoch(), hub_->epoch());
    ASSERT_TRUE(got[i].has_change());
  }
  EXPECT_EQ(got[0].change().user_id(), 1);
  EXPECT_EQ(got[0].change().status(), v1::STATUS_ONLINE);
  EXPECT_EQ(got[0].change().reason(), v1::REASON_HEARTBEAT);
  EXPECT_EQ(got[2].change().status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(got[2].change().reason(), v1::REASON_EXPIRED);
}

TEST_F(EventHubTest, EpochsDifferBetweenHubs) {
  EventHub other(clock_, {});
  EXPECT_NE(hub_->epoch(), other.epoch());
  EXPECT_EQ(hub_->epoch().size(), 16u);
}

TEST_F(EventHubTest, FilteredWatchesSeeOnlyTheirUsers) {
  EventHub::WatchId one = Watch({{1, 3}, false, 0, ""});
  EventHub::WatchId two = Watch({{2}, false, 0, ""});
  EventHub::WatchId all = Watch({});
  Online(1);
  Online(2);
  Online(3);
  Online(4);
  std::vector<int64_t> ones, twos;
  for (const auto& m : Drain(one)) ones.push_back(m.change().user_id());
  for (const auto& m : Drain(two)) twos.push_back(m.change().user_id());
  EXPECT_EQ(ones, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(twos, (std::vector<int64_t>{2}));
  EXPECT_EQ(Drain(all).size(), 4u);
  // Sequences are the hub's: a filtered watch sees gaps.
  hub_->Unwatch(one);
  hub_->Unwatch(two);
  EXPECT_EQ(hub_->watchers(), 1);
}

TEST_F(EventHubTest, SnapshotFirstThenOnlyLaterChanges) {
  hub_->SeedOnline(7);
  Online(1);
  Online(2);
  EventHub::WatchId id = Watch({{}, true, 0, ""});
  // Published before the snapshot is taken: inside it, never after it.
  Offline(2);
  Online(3);
  std::vector<v1::WatchPresenceResponse> got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].has_snapshot());
  EXPECT_EQ(Users(got[0].snapshot()), (std::vector<int64_t>{1, 3, 7}));
  EXPECT_EQ(got[0].sequence(), hub_->last_sequence());
  EXPECT_EQ(got[0].snapshot().server_time().seconds(),
            absl::ToUnixSeconds(clock_.Now()));
  Offline(7);
  got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].change().user_id(), 7);
  EXPECT_EQ(got[0].sequence(), hub_->last_sequence());
}

TEST_F(EventHubTest, FilteredSnapshotHasOnlyWatchedUsers) {
  Online(1);
  Online(2);
  Online(5);
  EventHub::WatchId id = Watch({{5, 1, 9}, true, 0, ""});
  std::vector<v1::WatchPresenceResponse> got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(Users(got[0].snapshot()), (std::vector<int64_t>{1, 5}));
}

TEST_F(EventHubTest, ResumeInsideTheRingReplaysMissedChanges) {
  for (int64_t user = 1; user <= 5; ++user) Online(user);
  EventHub::WatchId id = Watch({{2, 4, 5}, false, 2, hub_->epoch()});
  std::vector<v1::WatchPresenceResponse> got = Drain(id);
  ASSERT_EQ(got.size(), 2u);  // sequences 4 and 5; 3 was user 3
  EXPECT_EQ(got[0].sequence(), 4u);
  EXPECT_EQ(got[0].change().user_id(), 4);
  EXPECT_EQ(got[1].sequence(), 5u);
}

TEST_F(EventHubTest, ResumeAtTheHeadWaitsForNewChanges) {
  Online(1);
  EventHub::WatchId id = Watch({{}, false, 1, hub_->epoch()});
  EXPECT_TRUE(Drain(id).empty());
  Online(2);
  std::vector<v1::WatchPresenceResponse> got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].sequence(), 2u);
}

TEST_F(EventHubTest, ResumeFromAnotherEpochGetsASnapshot) {
  Online(1);
  EventHub::WatchId id = Watch({{}, false, 1, "0123456789abcdef"});
  std::vector<v1::WatchPresenceResponse> got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].has_snapshot());
  EXPECT_EQ(Users(got[0].snapshot()), std::vector<int64_t>{1});
}

TEST_F(EventHubTest, ResumeAheadOfTheHubGetsASnapshot) {
  Online(1);
  EventHub::WatchId id = Watch({{}, false, 99, hub_->epoch()});
  std::vector<v1::WatchPresenceResponse> got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(got[0].has_snapshot());
}

class SmallHubTest : public EventHubTest {
 protected:
  SmallHubTest() : EventHubTest(EventHub::Options{3, 2, 2}) {}
};

TEST_F(SmallHubTest, ResumeOlderThanTheRingGetsASnapshot) {
  for (int64_t user = 1; user <= 6; ++user) Online(user);  // ring keeps 4..6
  EventHub::WatchId too_old = Watch({{}, false, 2, hub_->epoch()});
  std::vector<v1::WatchPresenceResponse> got = Drain(too_old);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].has_snapshot());
  EXPECT_EQ(got[0].snapshot().online_users_size(), 6);
  EXPECT_EQ(got[0].sequence(), 6u);

  // Just inside the ring: replayed (for a watch of 2 users, within queue).
  EventHub::WatchId inside = Watch({{5, 6}, false, 3, hub_->epoch()});
  got = Drain(inside);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].sequence(), 5u);
}

TEST_F(SmallHubTest, OverflowReplacesTheQueueWithOneSnapshot) {
  EventHub::WatchId id = Watch({});
  ASSERT_TRUE(Drain(id).empty());
  for (int64_t user = 1; user <= 5; ++user) Online(user);
  Offline(3);
  EXPECT_EQ(hub_->overflows(), 1);
  std::vector<v1::WatchPresenceResponse> got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].has_snapshot());
  EXPECT_EQ(Users(got[0].snapshot()), (std::vector<int64_t>{1, 2, 4, 5}));
  EXPECT_EQ(got[0].sequence(), 6u);
  Online(3);
  got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].sequence(), 7u);
}

TEST_F(SmallHubTest, WatchersBeyondTheLimitAreResourceExhausted) {
  Watch({});
  Watch({{1}, false, 0, ""});
  absl::StatusOr<EventHub::WatchId> third = hub_->Watch({}, sink_);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third.status().message().find("--max_watchers"),
            absl::string_view::npos);
}

TEST_F(EventHubTest, AnIdleWatchIsWokenByAChange) {
  EventHub::WatchId id = Watch({{1}, false, 0, ""});
  ASSERT_TRUE(Drain(id).empty());  // now idle: the next change wakes it
  Online(2);                       // not watched: no wake
  Online(1);
  ASSERT_TRUE(sink_->AwaitWakes(1));
  Online(1);  // still pending: no second wake until the sink pulls
  ASSERT_EQ(Drain(id).size(), 2u);
  Offline(1);
  ASSERT_TRUE(sink_->AwaitWakes(2));
}

TEST_F(EventHubTest, CloseEndsEveryWatchWithItsStatus) {
  EventHub::WatchId id = Watch({});
  ASSERT_TRUE(Drain(id).empty());
  Online(1);
  hub_->Close(absl::UnavailableError("shutting down"));
  v1::WatchPresenceResponse message;
  absl::Status status;
  EXPECT_EQ(hub_->Pop(id, &message, &status), PopResult::kClosed);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(sink_->AwaitWakes(1));
  EXPECT_EQ(hub_->Watch({}, sink_).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(EventHubTest, NoWakeReachesADeadSink) {
  std::weak_ptr<CountingSink> weak;
  EventHub::WatchId id;
  {
    auto sink = std::make_shared<CountingSink>();
    weak = sink;
    absl::StatusOr<EventHub::WatchId> watched = hub_->Watch({}, sink);
    ASSERT_TRUE(watched.ok());
    id = *watched;
    ASSERT_TRUE(Drain(id).empty());
  }
  Online(1);  // the sink is gone: the dispatcher must skip it
  hub_->Stop();
  EXPECT_TRUE(weak.expired());
  hub_->Unwatch(id);
  EXPECT_EQ(hub_->watchers(), 0);
}

}  // namespace
}  // namespace presence
