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

  // Everything the watch has now, `max_changes` changes per message.
  std::vector<WatchMessage> Drain(EventHub::WatchId id, int max_changes = 1) {
    std::vector<WatchMessage> out;
    WatchMessage message;
    absl::Status status;
    while (hub_->Pop(id, max_changes, &message, &status) ==
           PopResult::kMessage) {
      out.push_back(message);
    }
    return out;
  }

  static bool IsSnapshot(const WatchMessage& m) {
    return m.kind == WatchMessage::Kind::kSnapshot;
  }
  // The one change of a message popped with max_changes 1.
  static const PresenceEvent& Change(const WatchMessage& m) {
    EXPECT_EQ(m.kind, WatchMessage::Kind::kChanges);
    EXPECT_EQ(m.changes.size(), 1u);
    return m.changes.front().event;
  }
  static std::vector<uint64_t> Sequences(const WatchMessage& m) {
    std::vector<uint64_t> out;
    for (const SequencedEvent& e : m.changes) out.push_back(e.sequence);
    return out;
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
  std::vector<WatchMessage> got = Drain(id);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].sequence, i + 1);
    ASSERT_EQ(Sequences(got[i]), std::vector<uint64_t>{i + 1});
  }
  EXPECT_EQ(Change(got[0]).user_id, 1);
  EXPECT_TRUE(Change(got[0]).online);
  EXPECT_EQ(Change(got[0]).reason, Reason::kHeartbeat);
  EXPECT_FALSE(Change(got[2]).online);
  EXPECT_EQ(Change(got[2]).reason, Reason::kExpired);
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
  for (const auto& m : Drain(one)) ones.push_back(Change(m).user_id);
  for (const auto& m : Drain(two)) twos.push_back(Change(m).user_id);
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
  std::vector<WatchMessage> got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(IsSnapshot(got[0]));
  EXPECT_EQ(got[0].online_users, (std::vector<int64_t>{1, 3, 7}));
  EXPECT_EQ(got[0].sequence, hub_->last_sequence());
  EXPECT_EQ(got[0].snapshot_time, clock_.Now());
  Offline(7);
  got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(Change(got[0]).user_id, 7);
  EXPECT_EQ(got[0].sequence, hub_->last_sequence());
}

TEST_F(EventHubTest, FilteredSnapshotHasOnlyWatchedUsers) {
  Online(1);
  Online(2);
  Online(5);
  EventHub::WatchId id = Watch({{5, 1, 9}, true, 0, ""});
  std::vector<WatchMessage> got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].online_users, (std::vector<int64_t>{1, 5}));
}

TEST_F(EventHubTest, ResumeInsideTheRingReplaysMissedChanges) {
  for (int64_t user = 1; user <= 5; ++user) Online(user);
  EventHub::WatchId id = Watch({{2, 4, 5}, false, 2, hub_->epoch()});
  std::vector<WatchMessage> got = Drain(id);
  ASSERT_EQ(got.size(), 2u);  // sequences 4 and 5; 3 was user 3
  EXPECT_EQ(got[0].sequence, 4u);
  EXPECT_EQ(Change(got[0]).user_id, 4);
  EXPECT_EQ(got[1].sequence, 5u);
}

TEST_F(EventHubTest, ResumeAtTheHeadWaitsForNewChanges) {
  Online(1);
  EventHub::WatchId id = Watch({{}, false, 1, hub_->epoch()});
  EXPECT_TRUE(Drain(id).empty());
  Online(2);
  std::vector<WatchMessage> got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].sequence, 2u);
}

TEST_F(EventHubTest, ResumeFromAnotherEpochGetsASnapshot) {
  Online(1);
  EventHub::WatchId id = Watch({{}, false, 1, "0123456789abcdef"});
  std::vector<WatchMessage> got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(IsSnapshot(got[0]));
  EXPECT_EQ(got[0].online_users, std::vector<int64_t>{1});
}

TEST_F(EventHubTest, ResumeAheadOfTheHubGetsASnapshot) {
  Online(1);
  EventHub::WatchId id = Watch({{}, false, 99, hub_->epoch()});
  std::vector<WatchMessage> got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_TRUE(IsSnapshot(got[0]));
}

TEST_F(EventHubTest, ABatchTakesUpToMaxChangesInOrder) {
  EventHub::WatchId all = Watch({});
  EventHub::WatchId some = Watch({{2, 4, 6, 8, 10}, false, 0, ""});
  for (int64_t user = 1; user <= 10; ++user) Online(user);
  std::vector<WatchMessage> got = Drain(all, 4);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(Sequences(got[0]), (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(Sequences(got[1]), (std::vector<uint64_t>{5, 6, 7, 8}));
  EXPECT_EQ(Sequences(got[2]), (std::vector<uint64_t>{9, 10}));
  for (const WatchMessage& m : got) {
    EXPECT_EQ(m.sequence, m.changes.back().sequence);
  }
  EXPECT_EQ(got[2].changes.back().event.user_id, 10);
  got = Drain(some, 3);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(Sequences(got[0]), (std::vector<uint64_t>{2, 4, 6}));
  EXPECT_EQ(Sequences(got[1]), (std::vector<uint64_t>{8, 10}));
  EXPECT_EQ(got[1].sequence, 10u);
}

TEST_F(EventHubTest, ResumeInTheMiddleOfABatchGetsTheRestOfIt) {
  EventHub::WatchId first = Watch({});
  for (int64_t user = 1; user <= 6; ++user) Online(user);
  std::vector<WatchMessage> got = Drain(first, 100);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(got[0].sequence, 6u);
  // A client that had handled only the first three of that batch.
  EventHub::WatchId everyone = Watch({{}, false, 3, hub_->epoch()});
  got = Drain(everyone, 100);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(Sequences(got[0]), (std::vector<uint64_t>{4, 5, 6}));
  EventHub::WatchId some = Watch({{2, 5, 6}, false, 3, hub_->epoch()});
  got = Drain(some, 100);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(Sequences(got[0]), (std::vector<uint64_t>{5, 6}));
}

TEST_F(EventHubTest, PublishingWakesEverySleepingWatchOfEveryone) {
  std::vector<std::shared_ptr<CountingSink>> sinks;
  for (int i = 0; i < 100; ++i) {
    sinks.push_back(std::make_shared<CountingSink>());
    absl::StatusOr<EventHub::WatchId> id = hub_->Watch({}, sinks.back());
    ASSERT_TRUE(id.ok());
    ASSERT_TRUE(Drain(*id).empty());  // asleep
    ASSERT_TRUE(Drain(*id).empty());  // still one wake, not two
  }
  Online(1);
  Online(2);  // they have not pulled: no second wake
  for (auto& sink : sinks) ASSERT_TRUE(sink->AwaitWakes(1));
  hub_->Stop();
  for (auto& sink : sinks) EXPECT_EQ(sink->wakes(), 1);
}

TEST_F(EventHubTest, WatchersThatComeAndGoWithoutChangesDoNotPileUp) {
  for (int i = 0; i < 10'000; ++i) {
    auto sink = std::make_shared<CountingSink>();
    absl::StatusOr<EventHub::WatchId> id = hub_->Watch({}, sink);
    ASSERT_TRUE(id.ok());
    ASSERT_TRUE(Drain(*id).empty());  // asleep, in parked_
    hub_->Unwatch(*id);
  }  // each sink is gone with its watch
  EXPECT_LE(hub_->parked(), 2u * hub_->watchers() + 65);
}

class SmallHubTest : public EventHubTest {
 protected:
  SmallHubTest() : EventHubTest(EventHub::Options{3, 2, 2}) {}
};

TEST_F(SmallHubTest, ResumeOlderThanTheRingGetsASnapshot) {
  for (int64_t user = 1; user <= 6; ++user) Online(user);  // ring keeps 4..6
  EventHub::WatchId too_old = Watch({{}, false, 2, hub_->epoch()});
  std::vector<WatchMessage> got = Drain(too_old);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(IsSnapshot(got[0]));
  EXPECT_EQ(got[0].online_users.size(), 6u);
  EXPECT_EQ(got[0].sequence, 6u);

  // Just inside the ring: replayed (for a watch of 2 users, within queue).
  EventHub::WatchId inside = Watch({{5, 6}, false, 3, hub_->epoch()});
  got = Drain(inside);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].sequence, 5u);
}

TEST_F(SmallHubTest, ACursorThatFallsOffTheRingGetsOneSnapshot) {
  EventHub::WatchId id = Watch({});
  ASSERT_TRUE(Drain(id).empty());
  for (int64_t user = 1; user <= 5; ++user) Online(user);
  Offline(3);  // the ring keeps 4..6: sequences 1..3, unread, are gone
  std::vector<WatchMessage> got = Drain(id, 100);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(IsSnapshot(got[0]));
  EXPECT_EQ(got[0].online_users, (std::vector<int64_t>{1, 2, 4, 5}));
  EXPECT_EQ(got[0].sequence, 6u);
  EXPECT_EQ(hub_->overflows(), 1);
  Online(3);
  got = Drain(id);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].sequence, 7u);
}

TEST_F(SmallHubTest, ACursorStillInsideTheRingReadsOn) {
  EventHub::WatchId id = Watch({});
  ASSERT_TRUE(Drain(id).empty());
  for (int64_t user = 1; user <= 3; ++user) Online(user);  // the ring is full
  std::vector<WatchMessage> got = Drain(id, 100);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(Sequences(got[0]), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(hub_->overflows(), 0);
}

TEST_F(SmallHubTest, AFilteredQueueOverflowIsReplacedByOneSnapshot) {
  EventHub::WatchId id = Watch({{1, 2, 3}, false, 0, ""});
  ASSERT_TRUE(Drain(id).empty());
  Online(1);
  Online(2);
  Online(3);  // the queue holds 2
  EXPECT_EQ(hub_->overflows(), 1);
  std::vector<WatchMessage> got = Drain(id, 100);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(IsSnapshot(got[0]));
  EXPECT_EQ(got[0].online_users, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(got[0].sequence, 3u);
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
  WatchMessage message;
  absl::Status status;
  EXPECT_EQ(hub_->Pop(id, 1, &message, &status), PopResult::kClosed);
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
// threads, as WatchPresence streams do, and one watch goes away mid-way.
class PullingSink : public WatchSink {
 public:
  PullingSink(EventHub* hub, int max_changes)
      : hub_(hub), max_changes_(max_changes) {}
  void Attach(EventHub::WatchId id) {
    absl::MutexLock lock(&mu_);
    id_ = id;
  }
  void OnReady() override { Drain(); }
  void Drain() {
    absl::MutexLock lock(&mu_);
    WatchMessage message;
    absl::Status status;
    while (hub_->Pop(id_, max_changes_, &message, &status) ==
           EventHub::PopResult::kMessage) {
      // A snapshot (fallen off the ring) ends the sequence of changes; the
      // tests that count changes make sure none comes.
      if (message.kind == WatchMessage::Kind::kSnapshot) continue;
      EXPECT_LE(message.changes.size(), static_cast<size_t>(max_changes_));
      EXPECT_EQ(message.sequence, message.changes.back().sequence);
      for (const SequencedEvent& e : message.changes) changes_.push_back(e);
      ++messages_;
    }
  }
  std::vector<SequencedEvent> changes() {
    absl::MutexLock lock(&mu_);
    return changes_;
  }
  int messages() {
    absl::MutexLock lock(&mu_);
    return messages_;
  }
  bool AwaitSequence(uint64_t sequence) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !changes_.empty() && changes_.back().sequence >= sequence;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(30));
  }

 private:
  EventHub* const hub_;
  const int max_changes_;
  absl::Mutex mu_;
  EventHub::WatchId id_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<SequencedEvent> changes_ ABSL_GUARDED_BY(mu_);
  int messages_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(EventHubConcurrencyTest, EveryWatchSeesEveryChangeOnceInOrder) {
  FakeClock clock;
  // Queues that hold the whole burst: this test is about order, not overflow.
  EventHub hub(clock, EventHub::Options{65'536, 10'000, 10});
  PresenceRegistry registry(clock, absl::Minutes(5), nullptr, &hub);
  auto all = std::make_shared<PullingSink>(&hub, 1);
  auto all_batched = std::make_shared<PullingSink>(&hub, 64);
  auto odd = std::make_shared<PullingSink>(&hub, 16);
  auto leaving = std::make_shared<PullingSink>(&hub, 1);
  std::vector<int64_t> odd_users;
  for (int64_t user = 1; user <= 400; user += 2) odd_users.push_back(user);
  EventHub::WatchId all_id = *hub.Watch({}, all);
  EventHub::WatchId all_batched_id = *hub.Watch({}, all_batched);
  EventHub::WatchId odd_id = *hub.Watch({odd_users, false, 0, ""}, odd);
  EventHub::WatchId leaving_id = *hub.Watch({}, leaving);
  all->Attach(all_id);
  all_batched->Attach(all_batched_id);
  odd->Attach(odd_id);
  leaving->Attach(leaving_id);
  for (auto* sink : {all.get(), all_batched.get(), odd.get(), leaving.get()}) {
    sink->Drain();
  }

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
  ASSERT_TRUE(all_batched->AwaitSequence(last));
  std::vector<SequencedEvent> seen = all->changes();
  ASSERT_EQ(seen.size(), last);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].sequence, i + 1);
  }
  EXPECT_EQ(all->messages(), static_cast<int>(last));
  // Batched: the same changes in the same order, in no more messages.
  std::vector<SequencedEvent> batched = all_batched->changes();
  ASSERT_EQ(batched.size(), last);
  for (size_t i = 0; i < batched.size(); ++i) {
    EXPECT_EQ(batched[i].sequence, i + 1);
    EXPECT_EQ(batched[i].event.user_id, seen[i].event.user_id);
  }
  // Per user: online, offline, online, ... never two alike in a row.
  absl::flat_hash_map<int64_t, bool> online;
  for (const SequencedEvent& e : seen) {
    EXPECT_NE(online[e.event.user_id], e.event.online);
    online[e.event.user_id] = e.event.online;
  }
  std::vector<uint64_t> odd_expected;
  for (const SequencedEvent& e : seen) {
    if (e.event.user_id % 2 == 1) odd_expected.push_back(e.sequence);
  }
  odd->Drain();
  std::vector<uint64_t> odd_seen;
  for (const SequencedEvent& e : odd->changes()) {
    odd_seen.push_back(e.sequence);
  }
  EXPECT_EQ(odd_seen, odd_expected);
  hub.Stop();
}

// Sinks whose OnReady() returns only once `threads` dispatchers are inside
// one at the same time (or 10 s passed): proof that waking is shared.
class RendezvousSink : public WatchSink {
 public:
  struct Meeting {
    absl::Mutex mu;
    absl::flat_hash_set<std::thread::id> inside ABSL_GUARDED_BY(mu);
    int wakes ABSL_GUARDED_BY(mu) = 0;
    size_t most_inside ABSL_GUARDED_BY(mu) = 0;
  };
  RendezvousSink(Meeting* meeting, size_t threads)
      : meeting_(meeting), threads_(threads) {}
  void OnReady() override {
    absl::MutexLock lock(&meeting_->mu);
    ++meeting_->wakes;
    meeting_->inside.insert(std::this_thread::get_id());
    meeting_->most_inside =
        std::max(meeting_->most_inside, meeting_->inside.size());
    auto met = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(meeting_->mu) {
      return meeting_->most_inside >= threads_;
    };
    meeting_->mu.AwaitWithTimeout(absl::Condition(&met), absl::Seconds(10));
    meeting_->inside.erase(std::this_thread::get_id());
  }

 private:
  Meeting* const meeting_;
  const size_t threads_;
};

// Starts a watch of everyone for `sink` and lets it fall asleep: the next
// change wakes it.
void WatchAsleep(EventHub& hub, std::shared_ptr<WatchSink> sink) {
  absl::StatusOr<EventHub::WatchId> id = hub.Watch({}, std::move(sink));
  ASSERT_TRUE(id.ok()) << id.status();
  WatchMessage message;
  absl::Status status;
  ASSERT_EQ(hub.Pop(*id, 1, &message, &status), PopResult::kEmpty);
}

TEST(EventHubFanOutTest, ThousandsOfWakesAreSharedByTheDispatchers) {
  FakeClock clock;
  EventHub::Options options;
  options.dispatch_threads = 2;
  EventHub hub(clock, options);
  ASSERT_EQ(hub.dispatch_threads(), 2);
  RendezvousSink::Meeting meeting;
  std::vector<std::shared_ptr<RendezvousSink>> sinks;
  for (int i = 0; i < 2'000; ++i) {
    sinks.push_back(std::make_shared<RendezvousSink>(&meeting, 2));
    ASSERT_NO_FATAL_FAILURE(WatchAsleep(hub, sinks.back()));
  }
  hub.Publish({1, true, Reason::kHeartbeat, clock.Now()});
  absl::MutexLock lock(&meeting.mu);
  auto all_woken = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(meeting.mu) {
    return meeting.wakes == 2'000;
  };
  ASSERT_TRUE(meeting.mu.AwaitWithTimeout(absl::Condition(&all_woken),
                                          absl::Seconds(30)));
  EXPECT_EQ(meeting.most_inside, 2u);
}

// Logs the order of wakes; the blocker holds the one dispatcher until
// released.
class OrderSink : public WatchSink {
 public:
  struct Log {
    absl::Mutex mu;
    std::vector<int> order ABSL_GUARDED_BY(mu);
    bool blocker_in ABSL_GUARDED_BY(mu) = false;
    bool released ABSL_GUARDED_BY(mu) = false;
  };
  OrderSink(Log* log, int id, bool blocker)
      : log_(log), id_(id), blocker_(blocker) {}
  void OnReady() override {
    absl::MutexLock lock(&log_->mu);
    if (blocker_) {
      log_->blocker_in = true;
      log_->mu.Await(absl::Condition(&log_->released));
      return;
    }
    log_->order.push_back(id_);
  }

 private:
  Log* const log_;
  const int id_;
  const bool blocker_;
};

TEST(EventHubFanOutTest, TheOldestRoundOfWakesIsServedFirst) {
  FakeClock clock;
  EventHub::Options options;
  options.dispatch_threads = 1;
  EventHub hub(clock, options);
  OrderSink::Log log;
  std::vector<std::shared_ptr<OrderSink>> sinks;
  // Parks a watch of everyone behind a new sink.
  auto park = [&](int id, bool blocker) {
    sinks.push_back(std::make_shared<OrderSink>(&log, id, blocker));
    WatchAsleep(hub, sinks.back());
  };
  park(0, /*blocker=*/true);
  hub.Publish({1, true, Reason::kHeartbeat, clock.Now()});
  {
    absl::MutexLock lock(&log.mu);
    ASSERT_TRUE(log.mu.AwaitWithTimeout(absl::Condition(&log.blocker_in),
                                        absl::Seconds(10)));
  }
  // The dispatcher is held: two rounds queue up, 1..50 before 51..100.
  for (int id = 1; id <= 50; ++id) park(id, false);
  hub.Publish({2, true, Reason::kHeartbeat, clock.Now()});
  for (int id = 51; id <= 100; ++id) park(id, false);
  hub.Publish({3, true, Reason::kHeartbeat, clock.Now()});
  {
    absl::MutexLock lock(&log.mu);
    log.released = true;
    auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(log.mu) {
      return log.order.size() == 100;
    };
    ASSERT_TRUE(
        log.mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(10)));
    for (size_t i = 0; i < log.order.size(); ++i) {
      EXPECT_EQ(log.order[i], static_cast<int>(i) + 1);
    }
  }
  hub.Stop();
}

}  // namespace
}  // namespace presence
