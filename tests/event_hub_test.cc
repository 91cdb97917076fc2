#include "service/event_hub.h"

#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "service/clock.h"
#include "service/presence_registry.h"

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

// The reactor's protocol under real concurrency (and TSan): several threads
// change presence through a registry while sinks pull on the dispatcher
// thread, as WatchPresence streams do, and one watch goes away mid-way.
class PullingSink : public WatchSink {
 public:
  explicit PullingSink(EventHub* hub) : hub_(hub) {}
  void Attach(EventHub::WatchId id) {
    absl::MutexLock lock(&mu_);
    id_ = id;
  }
  void OnReady() override { Drain(); }
  void Drain() {
    absl::MutexLock lock(&mu_);
    v1::WatchPresenceResponse message;
    absl::Status status;
    while (hub_->Pop(id_, &message, &status) == EventHub::PopResult::kMessage) {
      messages_.push_back(message);
    }
  }
  std::vector<v1::WatchPresenceResponse> messages() {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  bool AwaitSequence(uint64_t sequence) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !messages_.empty() && messages_.back().sequence() >= sequence;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(30));
  }

 private:
  EventHub* const hub_;
  absl::Mutex mu_;
  EventHub::WatchId id_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::WatchPresenceResponse> messages_ ABSL_GUARDED_BY(mu_);
};

TEST(EventHubConcurrencyTest, EveryWatchSeesEveryChangeOnceInOrder) {
  FakeClock clock;
  // Queues that hold the whole burst: this test is about order, not overflow.
  EventHub hub(clock, EventHub::Options{65'536, 10'000, 10});
  PresenceRegistry registry(clock, absl::Minutes(5), nullptr, &hub);
  auto all = std::make_shared<PullingSink>(&hub);
  auto odd = std::make_shared<PullingSink>(&hub);
  auto leaving = std::make_shared<PullingSink>(&hub);
  std::vector<int64_t> odd_users;
  for (int64_t user = 1; user <= 400; user += 2) odd_users.push_back(user);
  EventHub::WatchId all_id = *hub.Watch({}, all);
  EventHub::WatchId odd_id = *hub.Watch({odd_users, false, 0, ""}, odd);
  EventHub::WatchId leaving_id = *hub.Watch({}, leaving);
  all->Attach(all_id);
  odd->Attach(odd_id);
  leaving->Attach(leaving_id);
  for (auto* sink : {all.get(), odd.get(), leaving.get()}) sink->Drain();

  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (int64_t user = t * 100 + 1; user <= t * 100 + 100; ++user) {
          registry.Heartbeat(user, "s");
          registry.MarkOffline(user, "");
        }
      }
    });
  }
  threads.emplace_back([&] { hub.Unwatch(leaving_id); });
  for (auto& thread : threads) thread.join();

  const uint64_t last = hub.last_sequence();
  EXPECT_EQ(last, 4u * 5 * 100 * 2);
  ASSERT_TRUE(all->AwaitSequence(last));
  std::vector<v1::WatchPresenceResponse> seen = all->messages();
  ASSERT_EQ(seen.size(), last);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].sequence(), i + 1);
  }
  // Per user: online, offline, online, ... never two alike in a row.
  absl::flat_hash_map<int64_t, bool> online;
  for (const auto& m : seen) {
    const bool now_online = m.change().status() == v1::STATUS_ONLINE;
    EXPECT_NE(online[m.change().user_id()], now_online);
    online[m.change().user_id()] = now_online;
  }
  size_t odd_expected = 0;
  for (const auto& m : seen) odd_expected += m.change().user_id() % 2;
  odd->Drain();
  std::vector<v1::WatchPresenceResponse> odd_seen = odd->messages();
  ASSERT_EQ(odd_seen.size(), odd_expected);
  for (const auto& m : odd_seen) EXPECT_EQ(m.change().user_id() % 2, 1);
  hub.Stop();
}

}  // namespace
}  // namespace presence
