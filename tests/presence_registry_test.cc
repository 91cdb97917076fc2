// Every rule of DESIGN.md's Semantics section, on the registry with a fake
// clock. The service tests check the same rules through gRPC.

#include "service/presence_registry.h"

#include <thread>
#include <utility>
#include <vector>

#include "absl/hash/hash.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/clock.h"

namespace presence {
namespace {

constexpr absl::Duration kWindow = absl::Minutes(5);

class RecordingSink : public ChangeSink {
 public:
  uint64_t Record(const SessionChange& change) override {
    absl::MutexLock lock(&mu_);
    changes_.push_back(change);
    return changes_.size();
  }
  std::vector<SessionChange> changes() {
    absl::MutexLock lock(&mu_);
    return changes_;
  }

 private:
  absl::Mutex mu_;
  std::vector<SessionChange> changes_ ABSL_GUARDED_BY(mu_);
};

class RecordingEvents : public EventSink {
 public:
  void Publish(const PresenceEvent& event) override {
    absl::MutexLock lock(&mu_);
    events_.push_back(event);
  }
  void SeedOnline(int64_t user_id) override {
    absl::MutexLock lock(&mu_);
    seeded_.push_back(user_id);
  }
  // The events since the last call.
  std::vector<PresenceEvent> Take() {
    absl::MutexLock lock(&mu_);
    return std::exchange(events_, {});
  }
  std::vector<int64_t> seeded() {
    absl::MutexLock lock(&mu_);
    return seeded_;
  }

 private:
  absl::Mutex mu_;
  std::vector<PresenceEvent> events_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> seeded_ ABSL_GUARDED_BY(mu_);
};

MATCHER_P3(Event, user, online, reason, "") {
  return arg.user_id == user && arg.online == online && arg.reason == reason;
}

class RegistryTest : public ::testing::Test {
 protected:
  UserPresenceInfo Get(int64_t user) {
    return registry_.GetPresence({user}).users.at(0);
  }
  std::vector<int64_t> AllOnline() {
    return registry_.ListOnline({}, 0, 10'000).user_ids;
  }

  FakeClock clock_;
  RecordingSink sink_;
  RecordingEvents events_;
  PresenceRegistry registry_{clock_, kWindow, &sink_, &events_};
};

TEST_F(RegistryTest, HeartbeatMakesUserOnlineUntilWindowEnds) {
  const absl::Time t0 = clock_.Now();
  HeartbeatResult r = registry_.Heartbeat(42, "tab");
  EXPECT_TRUE(r.became_online);
  EXPECT_EQ(r.server_time, t0);
  EXPECT_EQ(r.online_until, t0 + kWindow);
  UserPresenceInfo info = Get(42);
  EXPECT_TRUE(info.online);
  EXPECT_EQ(info.live_sessions, 1);
  EXPECT_EQ(info.online_until, t0 + kWindow);
  EXPECT_EQ(AllOnline(), std::vector<int64_t>{42});
}

TEST(RegistryLimitTest, ANewSessionBeyondTheLimitEndsTheOldest) {
  FakeClock clock;
  RecordingSink sink;
  PresenceRegistry registry(clock, kWindow, &sink, nullptr,
                            /*max_sessions_per_user=*/3);
  for (const char* tab : {"a", "b", "c"}) {
    registry.Heartbeat(42, tab);
    clock.Advance(absl::Seconds(1));
  }
  registry.Heartbeat(42, "a");  // "a" is now the newest; "b" the oldest
  clock.Advance(absl::Seconds(1));
  const absl::Time now = clock.Now();
  HeartbeatResult r = registry.Heartbeat(42, "d");
  EXPECT_FALSE(r.became_online);
  EXPECT_EQ(registry.GetPresence({42}).users.at(0).live_sessions, 3);
  // "b" ended and the store is told so, before the new session's change.
  std::vector<SessionChange> changes = sink.changes();
  ASSERT_GE(changes.size(), 2u);
  const SessionChange& ended = changes[changes.size() - 2];
  EXPECT_EQ(ended.kind, SessionChange::Kind::kEndSession);
  EXPECT_EQ(ended.session_id, "b");
  EXPECT_EQ(ended.at, now);
  EXPECT_EQ(changes.back().session_id, "d");
  // Ending "b" again ends nothing: it is gone; the others are live.
  EXPECT_EQ(registry.MarkOffline(42, "b").sessions_ended, 0);
  for (const char* tab : {"a", "c", "d"}) {
    EXPECT_EQ(registry.MarkOffline(42, tab).sessions_ended, 1) << tab;
  }
  // Another user has room of their own; a known session is never evicted.
  for (int i = 0; i < 5; ++i) registry.Heartbeat(7, "same");
  EXPECT_EQ(registry.GetPresence({7}).users.at(0).live_sessions, 1);
}

// With a limit of 1, a new session ends the only one; if that one was
// stamped ahead of a clock that then stepped back, the user's end of window
// moves earlier and the expiry index must follow (found by
// fuzz/validation_registry_fuzzer).
TEST(RegistryLimitTest, AnEvictionThatMovesTheEndEarlierIsIndexed) {
  FakeClock clock;
  RecordingSink sink;
  RecordingEvents events;
  PresenceRegistry registry(clock, kWindow, &sink, &events,
                            /*max_sessions_per_user=*/1);
  registry.Heartbeat(42, "a");
  clock.Advance(-absl::Minutes(1));  // the wall clock steps back
  const absl::Time end = clock.Now() + kWindow;
  registry.Heartbeat(42, "b");  // ends "a", whose window ended a minute later
  clock.Set(end);
  EXPECT_FALSE(registry.GetPresence({42}).users.at(0).online);
  registry.SweepExpired();
  EXPECT_TRUE(registry.ListOnline({}, 0, 10).user_ids.empty());
  EXPECT_THAT(events.Take(), ::testing::Contains(Event(
                                 42, false, PresenceEvent::Reason::kExpired)));
}

TEST_F(RegistryTest, SecondHeartbeatOfOnlineUserDoesNotBecomeOnline) {
  registry_.Heartbeat(42, "tab");
  clock_.Advance(absl::Minutes(2));
  HeartbeatResult r = registry_.Heartbeat(42, "tab");
  EXPECT_FALSE(r.became_online);
  EXPECT_EQ(r.online_until, clock_.Now() + kWindow);
}

TEST_F(RegistryTest, OnlineJustBeforeWindowEndsOfflineExactlyAtIt) {
  const absl::Time t0 = clock_.Now();
  registry_.Heartbeat(42, "");
  clock_.Set(t0 + kWindow - absl::Nanoseconds(1));
  EXPECT_TRUE(Get(42).online);
  EXPECT_EQ(AllOnline(), std::vector<int64_t>{42});
  clock_.Set(t0 + kWindow);
  EXPECT_FALSE(Get(42).online);
  EXPECT_EQ(Get(42).live_sessions, 0);
  EXPECT_TRUE(AllOnline().empty());
}

TEST_F(RegistryTest, HeartbeatAfterExpiryBecomesOnlineAgain) {
  registry_.Heartbeat(42, "");
  clock_.Advance(kWindow);
  EXPECT_TRUE(registry_.Heartbeat(42, "").became_online);
}

TEST_F(RegistryTest, LastSeenAfterExpiryIsTheLastHeartbeat) {
  registry_.Heartbeat(42, "");
  clock_.Advance(absl::Minutes(1));
  const absl::Time last = clock_.Now();
  registry_.Heartbeat(42, "");
  clock_.Advance(absl::Hours(3));
  UserPresenceInfo info = Get(42);
  EXPECT_FALSE(info.online);
  EXPECT_EQ(info.last_seen, last);
}

TEST_F(RegistryTest, NeverSeenUserIsOfflineWithoutLastSeen) {
  UserPresenceInfo info = Get(7);
  EXPECT_EQ(info.user_id, 7);
  EXPECT_FALSE(info.online);
  EXPECT_EQ(info.last_seen, absl::InfinitePast());
  EXPECT_EQ(info.live_sessions, 0);
}

TEST_F(RegistryTest, TwoSessionsKeepUserOnlineUntilTheLaterExpires) {
  const absl::Time t0 = clock_.Now();
  registry_.Heartbeat(42, "phone");
  clock_.Advance(absl::Minutes(3));
  EXPECT_FALSE(registry_.Heartbeat(42, "laptop").became_online);
  EXPECT_EQ(Get(42).live_sessions, 2);
  clock_.Set(t0 + kWindow);  // phone expired, laptop live
  UserPresenceInfo info = Get(42);
  EXPECT_TRUE(info.online);
  EXPECT_EQ(info.live_sessions, 1);
  EXPECT_EQ(info.online_until, t0 + absl::Minutes(3) + kWindow);
  clock_.Set(t0 + absl::Minutes(3) + kWindow);
  EXPECT_FALSE(Get(42).online);
}

TEST_F(RegistryTest, LogoutOfOneSessionKeepsTheOtherDeviceOnline) {
  registry_.Heartbeat(42, "phone");
  registry_.Heartbeat(42, "laptop");
  clock_.Advance(absl::Seconds(10));
  MarkOfflineResult r = registry_.MarkOffline(42, "laptop");
  EXPECT_EQ(r.sessions_ended, 1);
  EXPECT_TRUE(r.still_online);
  EXPECT_FALSE(r.went_offline);
  EXPECT_NE(r.write_ticket, 0u);
  UserPresenceInfo info = Get(42);
  EXPECT_TRUE(info.online);
  EXPECT_EQ(info.live_sessions, 1);
  EXPECT_EQ(info.last_seen, clock_.Now());
}

TEST_F(RegistryTest, LogoutOfLastSessionIsOfflineAtOnceAndKeepsLastSeen) {
  registry_.Heartbeat(42, "laptop");
  clock_.Advance(absl::Seconds(30));
  const absl::Time logout = clock_.Now();
  MarkOfflineResult r = registry_.MarkOffline(42, "laptop");
  EXPECT_EQ(r.sessions_ended, 1);
  EXPECT_FALSE(r.still_online);
  EXPECT_TRUE(r.went_offline);
  EXPECT_EQ(r.server_time, logout);
  UserPresenceInfo info = Get(42);
  EXPECT_FALSE(info.online);
  EXPECT_EQ(info.last_seen, logout);  // no 1970 trick
  EXPECT_TRUE(AllOnline().empty());
}

TEST_F(RegistryTest, EmptySessionIdLogsOutEverywhere) {
  registry_.Heartbeat(42, "phone");
  registry_.Heartbeat(42, "laptop");
  registry_.Heartbeat(42, "");
  MarkOfflineResult r = registry_.MarkOffline(42, "");
  EXPECT_EQ(r.sessions_ended, 3);
  EXPECT_FALSE(r.still_online);
  EXPECT_TRUE(r.went_offline);
  EXPECT_FALSE(Get(42).online);
  EXPECT_EQ(Get(42).live_sessions, 0);
}

TEST_F(RegistryTest, EmptySessionIdIsTheDefaultSessionForHeartbeats) {
  registry_.Heartbeat(42, "");
  registry_.Heartbeat(42, "");
  EXPECT_EQ(Get(42).live_sessions, 1);
  registry_.Heartbeat(42, "tab");
  EXPECT_EQ(Get(42).live_sessions, 2);
}

TEST_F(RegistryTest, MarkOfflineOfUnknownOrEndedSessionChangesNothing) {
  MarkOfflineResult unknown_user = registry_.MarkOffline(7, "");
  EXPECT_EQ(unknown_user.sessions_ended, 0);
  EXPECT_FALSE(unknown_user.still_online);
  EXPECT_EQ(unknown_user.write_ticket, 0u);
  EXPECT_EQ(Get(7).last_seen, absl::InfinitePast());

  registry_.Heartbeat(42, "phone");
  const absl::Time seen = clock_.Now();
  clock_.Advance(absl::Seconds(5));
  MarkOfflineResult other = registry_.MarkOffline(42, "laptop");
  EXPECT_EQ(other.sessions_ended, 0);
  EXPECT_TRUE(other.still_online);
  EXPECT_EQ(other.write_ticket, 0u);
  EXPECT_EQ(Get(42).last_seen, seen);
}

TEST_F(RegistryTest, MarkOfflineOfExpiredSessionEndsNoLiveSession) {
  registry_.Heartbeat(42, "phone");
  const absl::Time seen = clock_.Now();
  clock_.Advance(kWindow + absl::Minutes(1));
  MarkOfflineResult r = registry_.MarkOffline(42, "phone");
  EXPECT_EQ(r.sessions_ended, 0);
  EXPECT_FALSE(r.went_offline);  // it was already offline
  // The user was not present at the logout: last_seen stays at the heartbeat.
  EXPECT_EQ(Get(42).last_seen, seen);
}

TEST_F(RegistryTest, ListOnlineIsAscendingFilteredAndPaged) {
  for (int64_t id : {50, 3, 1000, 7, 12}) registry_.Heartbeat(id, "");
  registry_.Heartbeat(99, "");
  registry_.MarkOffline(99, "");

  OnlinePage all = registry_.ListOnline({}, 0, 100);
  EXPECT_EQ(all.user_ids, (std::vector<int64_t>{3, 7, 12, 50, 1000}));
  EXPECT_EQ(all.total_online, 5);
  EXPECT_FALSE(all.has_more);

  OnlinePage first = registry_.ListOnline({}, 0, 2);
  EXPECT_EQ(first.user_ids, (std::vector<int64_t>{3, 7}));
  EXPECT_TRUE(first.has_more);
  EXPECT_EQ(first.total_online, 5);
  OnlinePage second = registry_.ListOnline({}, 7, 2);
  EXPECT_EQ(second.user_ids, (std::vector<int64_t>{12, 50}));
  EXPECT_TRUE(second.has_more);
  OnlinePage last = registry_.ListOnline({}, 50, 2);
  EXPECT_EQ(last.user_ids, (std::vector<int64_t>{1000}));
  EXPECT_FALSE(last.has_more);

  const std::vector<int64_t> only = {1000, 99, 3, 3, 4};
  OnlinePage filtered = registry_.ListOnline(only, 0, 100);
  EXPECT_EQ(filtered.user_ids, (std::vector<int64_t>{3, 1000}));
  EXPECT_EQ(filtered.total_online, 2);
}

TEST_F(RegistryTest, GetPresenceAnswersInRequestOrder) {
  registry_.Heartbeat(5, "");
  const std::vector<int64_t> ids = {9, 5, 9};
  PresenceLookup lookup = registry_.GetPresence(ids);
  ASSERT_EQ(lookup.users.size(), 3u);
  EXPECT_EQ(lookup.server_time, clock_.Now());
  EXPECT_EQ(lookup.users[0].user_id, 9);
  EXPECT_FALSE(lookup.users[0].online);
  EXPECT_EQ(lookup.users[1].user_id, 5);
  EXPECT_TRUE(lookup.users[1].online);
  EXPECT_EQ(lookup.users[2].user_id, 9);
}

TEST_F(RegistryTest, ChangesReachTheSinkInOrderWithLastSeen) {
  registry_.Heartbeat(42, "a");
  clock_.Advance(absl::Seconds(1));
  registry_.MarkOffline(42, "a");
  registry_.Heartbeat(42, "b");
  registry_.MarkOffline(42, "");
  std::vector<SessionChange> changes = sink_.changes();
  ASSERT_EQ(changes.size(), 4u);
  EXPECT_EQ(changes[0].kind, SessionChange::Kind::kHeartbeat);
  EXPECT_EQ(changes[0].session_id, "a");
  EXPECT_EQ(changes[1].kind, SessionChange::Kind::kEndSession);
  EXPECT_EQ(changes[1].last_seen, clock_.Now());
  EXPECT_EQ(changes[2].kind, SessionChange::Kind::kHeartbeat);
  EXPECT_EQ(changes[3].kind, SessionChange::Kind::kEndAllSessions);
  EXPECT_EQ(changes[3].user_id, 42);
}

TEST_F(RegistryTest, RestoreBringsSessionsBackWithTheirHeartbeat) {
  const absl::Time hb = clock_.Now() - absl::Minutes(1);
  registry_.RestoreSession(42, "tab", hb);
  registry_.RestoreLastSeen(7, hb - absl::Hours(1));
  EXPECT_TRUE(sink_.changes().empty());
  UserPresenceInfo info = Get(42);
  EXPECT_TRUE(info.online);
  EXPECT_EQ(info.online_until, hb + kWindow);
  EXPECT_EQ(info.last_seen, hb);
  EXPECT_EQ(Get(7).last_seen, hb - absl::Hours(1));
  EXPECT_FALSE(Get(7).online);
  // A restored session is the same session: a heartbeat does not add one.
  EXPECT_FALSE(registry_.Heartbeat(42, "tab").became_online);
  EXPECT_EQ(Get(42).live_sessions, 1);
}

TEST_F(RegistryTest, SweepExpiredForgetsDeadSessionsAndKeepsLastSeen) {
  registry_.Heartbeat(1, "old");
  const absl::Time seen = clock_.Now();
  clock_.Advance(kWindow);
  registry_.Heartbeat(2, "new");
  EXPECT_EQ(registry_.SweepExpired(), 1);
  EXPECT_EQ(registry_.SweepExpired(), 0);
  EXPECT_EQ(Get(1).last_seen, seen);
  EXPECT_EQ(Get(1).live_sessions, 0);
  EXPECT_TRUE(Get(2).online);
}

TEST_F(RegistryTest, ConcurrentHeartbeatsAreAllCounted) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 1; i <= 500; ++i) registry_.Heartbeat(t * 1000 + i, "s");
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(registry_.ListOnline({}, 0, 10'000).total_online, 2000);
  EXPECT_EQ(sink_.changes().size(), 2000u);
}

// Transitions announced to watchers.

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Reason = PresenceEvent::Reason;

TEST_F(RegistryTest, OnlyTheFirstLiveHeartbeatAnnouncesOnline) {
  registry_.Heartbeat(42, "phone");
  registry_.Heartbeat(42, "phone");
  registry_.Heartbeat(42, "laptop");
  std::vector<PresenceEvent> events = events_.Take();
  EXPECT_THAT(events, ElementsAre(Event(42, true, Reason::kHeartbeat)));
  EXPECT_EQ(events[0].at, clock_.Now());
}

TEST_F(RegistryTest, LogoutAnnouncesOfflineOnlyForTheLastSession) {
  registry_.Heartbeat(42, "phone");
  registry_.Heartbeat(42, "laptop");
  events_.Take();
  registry_.MarkOffline(42, "laptop");
  EXPECT_THAT(events_.Take(), IsEmpty());
  clock_.Advance(absl::Seconds(3));
  registry_.MarkOffline(42, "phone");
  std::vector<PresenceEvent> events = events_.Take();
  EXPECT_THAT(events, ElementsAre(Event(42, false, Reason::kMarkOffline)));
  EXPECT_EQ(events[0].at, clock_.Now());
  registry_.MarkOffline(42, "");  // already offline: nothing
  EXPECT_THAT(events_.Take(), IsEmpty());
  registry_.Heartbeat(42, "phone");
  EXPECT_THAT(events_.Take(), ElementsAre(Event(42, true, Reason::kHeartbeat)));
}

TEST_F(RegistryTest, ExpiryIsAnnouncedExactlyWhenTheWindowEnds) {
  const absl::Time t0 = clock_.Now();
  registry_.Heartbeat(42, "");
  events_.Take();
  EXPECT_EQ(registry_.NextExpiry(), t0 + kWindow);
  clock_.Set(t0 + kWindow - absl::Nanoseconds(1));
  EXPECT_EQ(registry_.SweepExpired(), 0);
  EXPECT_THAT(events_.Take(), IsEmpty());
  clock_.Set(t0 + kWindow);
  EXPECT_EQ(registry_.SweepExpired(), 1);
  std::vector<PresenceEvent> events = events_.Take();
  EXPECT_THAT(events, ElementsAre(Event(42, false, Reason::kExpired)));
  EXPECT_EQ(events[0].at, t0 + kWindow);
  EXPECT_EQ(registry_.NextExpiry(), absl::InfiniteFuture());
}

TEST_F(RegistryTest, HeartbeatsPushTheExpiryBack) {
  const absl::Time t0 = clock_.Now();
  registry_.Heartbeat(42, "");
  clock_.Advance(absl::Minutes(2));
  registry_.Heartbeat(42, "");
  events_.Take();
  clock_.Set(t0 + kWindow);
  EXPECT_EQ(registry_.SweepExpired(), 0);
  EXPECT_EQ(registry_.NextExpiry(), t0 + absl::Minutes(2) + kWindow);
  clock_.Set(t0 + absl::Minutes(2) + kWindow);
  EXPECT_EQ(registry_.SweepExpired(), 1);
  std::vector<PresenceEvent> events = events_.Take();
  ASSERT_THAT(events, ElementsAre(Event(42, false, Reason::kExpired)));
  EXPECT_EQ(events[0].at, t0 + absl::Minutes(2) + kWindow);
}

TEST_F(RegistryTest, ExpiryBeforeTheSweepIsAnnouncedBeforeWhatFollows) {
  const absl::Time t0 = clock_.Now();
  registry_.Heartbeat(42, "");
  registry_.Heartbeat(7, "");
  events_.Take();
  clock_.Set(t0 + kWindow + absl::Minutes(1));  // no sweep ran
  EXPECT_TRUE(registry_.Heartbeat(42, "").became_online);
  std::vector<PresenceEvent> events = events_.Take();
  ASSERT_THAT(events, ElementsAre(Event(42, false, Reason::kExpired),
                                  Event(42, true, Reason::kHeartbeat)));
  EXPECT_EQ(events[0].at, t0 + kWindow);
  EXPECT_EQ(events[1].at, clock_.Now());

  // A logout after expiry is not a logout of a live session.
  MarkOfflineResult r = registry_.MarkOffline(7, "");
  EXPECT_FALSE(r.went_offline);
  EXPECT_THAT(events_.Take(), ElementsAre(Event(7, false, Reason::kExpired)));

  EXPECT_EQ(registry_.SweepExpired(), 0);  // nothing announced twice
  EXPECT_THAT(events_.Take(), IsEmpty());
}

TEST_F(RegistryTest, RestoredLiveSessionsSeedWatchersAndExpire) {
  const absl::Time hb = clock_.Now() - absl::Minutes(4);
  registry_.RestoreSession(42, "tab", hb);
  registry_.RestoreSession(7, "tab", clock_.Now() - kWindow);  // expired
  EXPECT_EQ(events_.seeded(), std::vector<int64_t>{42});
  EXPECT_THAT(events_.Take(), IsEmpty());
  clock_.Set(hb + kWindow);
  EXPECT_EQ(registry_.SweepExpired(), 1);
  EXPECT_THAT(events_.Take(), ElementsAre(Event(42, false, Reason::kExpired)));
}

TEST_F(RegistryTest, ManyUsersExpireInOrderOfTheirWindows) {
  const absl::Time t0 = clock_.Now();
  for (int64_t user = 1; user <= 100; ++user) {
    clock_.Set(t0 + absl::Seconds(user));
    registry_.Heartbeat(user, "");
  }
  events_.Take();
  clock_.Set(t0 + kWindow + absl::Seconds(50));
  EXPECT_EQ(registry_.SweepExpired(), 50);
  std::vector<PresenceEvent> events = events_.Take();
  ASSERT_EQ(events.size(), 50u);
  for (const PresenceEvent& e : events) {
    EXPECT_EQ(e.at, t0 + absl::Seconds(e.user_id) + kWindow);
    EXPECT_LE(e.user_id, 50);
  }
  EXPECT_EQ(registry_.ListOnline({}, 0, 1000).total_online, 50);
  EXPECT_EQ(registry_.NextExpiry(), t0 + absl::Seconds(51) + kWindow);
}

TEST_F(RegistryTest, EndingTheNewestSessionBringsTheExpiryForward) {
  const absl::Time t0 = clock_.Now();
  registry_.Heartbeat(42, "phone");
  clock_.Set(t0 + absl::Minutes(4));
  registry_.Heartbeat(42, "phone");
  clock_.Set(t0 + absl::Minutes(4) + absl::Seconds(10));
  registry_.Heartbeat(42, "laptop");
  clock_.Set(t0 + kWindow);
  EXPECT_EQ(registry_.SweepExpired(), 0);  // pushed back to the laptop's end
  clock_.Advance(absl::Seconds(5));
  EXPECT_TRUE(registry_.MarkOffline(42, "laptop").still_online);
  events_.Take();
  // The phone's window ends 10 s before the laptop's would have.
  const absl::Time phone_end = t0 + absl::Minutes(4) + kWindow;
  EXPECT_EQ(registry_.NextExpiry(), phone_end);
  clock_.Set(phone_end);
  EXPECT_EQ(registry_.SweepExpired(), 1);
  std::vector<PresenceEvent> events = events_.Take();
  ASSERT_THAT(events, ElementsAre(Event(42, false, Reason::kExpired)));
  EXPECT_EQ(events[0].at, phone_end);
  // The stale, later entry is skipped when it comes due.
  clock_.Set(phone_end + absl::Seconds(10));
  EXPECT_EQ(registry_.SweepExpired(), 0);
  EXPECT_THAT(events_.Take(), IsEmpty());
}

TEST_F(RegistryTest, AWallClockSteppingBackNeverShortensPresence) {
  const absl::Time t0 = clock_.Now();
  registry_.Heartbeat(42, "");
  clock_.Set(t0 - absl::Minutes(1));
  registry_.Heartbeat(42, "");
  // The store is told the stamp kept, not the earlier clock reading.
  EXPECT_EQ(sink_.changes().back().at, t0);
  clock_.Set(t0 + kWindow - absl::Seconds(1));
  EXPECT_TRUE(Get(42).online);
  EXPECT_EQ(Get(42).online_until, t0 + kWindow);
}

// Pages must add up to the sorted list of everyone online, whatever the
// page size, also when one shard holds far more of a page than its share.
TEST_F(RegistryTest, PagesAddUpToEveryoneOnlineForAnyPageSize) {
  std::vector<int64_t> expected;
  for (int64_t user = 1; user <= 3000; ++user) {
    registry_.Heartbeat(user * 13, "");
    expected.push_back(user * 13);
  }
  // Users that all land in one shard (the registry hashes ids with
  // absl::Hash into 64 shards): a page's worth of them is far above what
  // the first pass takes from each shard.
  for (int64_t user = 1; expected.size() < 3400; ++user) {
    if (user % 13 != 0 && absl::Hash<int64_t>{}(user) % 64 == 0) {
      registry_.Heartbeat(user, "");
      expected.push_back(user);
    }
  }
  std::sort(expected.begin(), expected.end());
  registry_.MarkOffline(13 * 7, "");
  expected.erase(std::find(expected.begin(), expected.end(), 13 * 7));

  for (int page_size : {1, 7, 100, 999, 10'000}) {
    std::vector<int64_t> seen;
    int64_t after = 0;
    for (;;) {
      OnlinePage page = registry_.ListOnline({}, after, page_size);
      EXPECT_EQ(page.total_online, static_cast<int64_t>(expected.size()));
      ASSERT_LE(page.user_ids.size(), static_cast<size_t>(page_size));
      seen.insert(seen.end(), page.user_ids.begin(), page.user_ids.end());
      if (!page.has_more) break;
      EXPECT_EQ(page.user_ids.size(), static_cast<size_t>(page_size));
      ASSERT_FALSE(page.user_ids.empty());
      after = page.user_ids.back();
    }
    EXPECT_EQ(seen, expected) << "page_size " << page_size;
  }
}

TEST_F(RegistryTest, ListOnlineCountsExactlyAtTheWindowsEndWithoutASweep) {
  const absl::Time t0 = clock_.Now();
  registry_.Heartbeat(1, "");
  clock_.Advance(absl::Seconds(1));
  registry_.Heartbeat(2, "");
  clock_.Set(t0 + kWindow);  // user 1 ends now; no sweep has run
  OnlinePage page = registry_.ListOnline({}, 0, 10);
  EXPECT_EQ(page.user_ids, std::vector<int64_t>{2});
  EXPECT_EQ(page.total_online, 1);
  EXPECT_FALSE(page.has_more);
}

TEST(RegistryWindowTest, AWindowBetweenMicrosecondsStillExpires) {
  FakeClock clock;
  RecordingEvents events;
  PresenceRegistry registry(clock, absl::Minutes(5) + absl::Nanoseconds(500),
                            nullptr, &events);
  const absl::Time t0 = clock.Now();
  registry.Heartbeat(42, "");
  EXPECT_EQ(registry.online_window(), absl::Minutes(5));
  clock.Set(t0 + absl::Minutes(5));
  EXPECT_EQ(registry.SweepExpired(), 1);  // returns: no endless re-indexing
  EXPECT_THAT(events.Take(), ElementsAre(Event(42, true, Reason::kHeartbeat),
                                         Event(42, false, Reason::kExpired)));
}

// Rich presence (docs/rich-presence.md): activity, availability and custom
// status, on the same fixture (away_after is the default 10 minutes).
constexpr absl::Duration kAway = absl::Minutes(10);

MATCHER_P2(StatusEvent, user, status, "") {
  return arg.user_id == user && arg.status == status;
}

StatusUpdate Availability_(Availability a,
                           absl::Duration for_ = absl::ZeroDuration()) {
  StatusUpdate u;
  u.availability = a;
  u.availability_for = for_;
  return u;
}

StatusUpdate Custom(std::string text, std::string emoji,
                    absl::Duration for_ = absl::ZeroDuration()) {
  StatusUpdate u;
  u.custom_action = StatusUpdate::Custom::kReplace;
  u.custom.text = std::move(text);
  u.custom.emoji = std::move(emoji);
  u.custom_for = for_;
  return u;
}

TEST_F(RegistryTest, IdleSessionsGoAwayOnTimeAndActivityBringsThemBack) {
  const absl::Time t0 = clock_.Now();
  registry_.Heartbeat(42, "tab");  // a first heartbeat is activity
  for (int i = 0; i < 4; ++i) {
    clock_.Advance(absl::Minutes(2));
    registry_.Heartbeat(42, "tab", /*idle=*/true);
  }
  events_.Take();
  clock_.Advance(absl::Minutes(2) - absl::Microseconds(1));  // t0 + 10m - 1us
  EXPECT_EQ(registry_.SweepExpired(), 0);
  EXPECT_EQ(Get(42).status, PublicStatus::kOnline);
  EXPECT_THAT(events_.Take(), IsEmpty());
  // The sweeper's index knew the moment: no heartbeat needed.
  EXPECT_EQ(registry_.NextExpiry(), t0 + kAway);
  clock_.Advance(absl::Microseconds(1));
  registry_.SweepExpired();
  std::vector<PresenceEvent> events = events_.Take();
  ASSERT_THAT(events, ElementsAre(StatusEvent(42, PublicStatus::kAway)));
  EXPECT_TRUE(events[0].online);
  EXPECT_TRUE(events[0].status_only);
  EXPECT_EQ(events[0].reason, PresenceEvent::Reason::kActivity);
  EXPECT_EQ(events[0].at, t0 + kAway);
  // Away is online: listed, and counted.
  EXPECT_TRUE(Get(42).online);
  EXPECT_EQ(AllOnline(), std::vector<int64_t>{42});
  EXPECT_EQ(registry_.stats().away_users, 1);
  // Still idle: no event. Active: ONLINE again, at once.
  registry_.Heartbeat(42, "tab", /*idle=*/true);
  EXPECT_THAT(events_.Take(), IsEmpty());
  registry_.Heartbeat(42, "tab");
  events = events_.Take();
  ASSERT_THAT(events, ElementsAre(StatusEvent(42, PublicStatus::kOnline)));
  EXPECT_EQ(events[0].reason, PresenceEvent::Reason::kActivity);
  EXPECT_TRUE(events[0].status_only);
  EXPECT_EQ(registry_.stats().away_users, 0);
  // The store keeps each session's activity with its heartbeat.
  EXPECT_EQ(sink_.changes().back().last_active, clock_.Now());
}

TEST_F(RegistryTest, OneActiveSessionKeepsTheUserOnlineUntilItEnds) {
  registry_.Heartbeat(42, "phone");
  registry_.Heartbeat(42, "desk");
  for (int i = 0; i < 6; ++i) {
    clock_.Advance(absl::Minutes(2));
    registry_.Heartbeat(42, "phone", /*idle=*/true);
    registry_.Heartbeat(42, "desk");
  }
  registry_.SweepExpired();
  EXPECT_EQ(Get(42).status, PublicStatus::kOnline);
  events_.Take();
  // The phone has been idle for 12 minutes: ending the desk leaves it AWAY.
  EXPECT_TRUE(registry_.MarkOffline(42, "desk").still_online);
  EXPECT_THAT(events_.Take(),
              ElementsAre(StatusEvent(42, PublicStatus::kAway)));
  EXPECT_EQ(Get(42).status, PublicStatus::kAway);
}

TEST_F(RegistryTest, DndShowsWhileOnlineAndEndsOnTimeWithAnEvent) {
  const absl::Time t0 = clock_.Now();
  registry_.Heartbeat(42, "tab");
  events_.Take();
  absl::StatusOr<SetStatusResult> set = registry_.SetStatus(
      42, Availability_(Availability::kDnd, absl::Minutes(3)));
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->self.status, PublicStatus::kDnd);
  EXPECT_EQ(set->self.availability_until, t0 + absl::Minutes(3));
  EXPECT_GT(set->write_ticket, 0u);
  std::vector<PresenceEvent> events = events_.Take();
  ASSERT_THAT(events, ElementsAre(StatusEvent(42, PublicStatus::kDnd)));
  EXPECT_EQ(events[0].reason, PresenceEvent::Reason::kStatusSet);
  EXPECT_EQ(events[0].availability_until, t0 + absl::Minutes(3));
  UserPresenceInfo seen = Get(42);
  EXPECT_EQ(seen.status, PublicStatus::kDnd);
  EXPECT_EQ(seen.availability, Availability::kDnd);
  EXPECT_EQ(registry_.stats().dnd_users, 1);
  // Recorded for the store, as a whole choice.
  const SessionChange change = sink_.changes().back();
  ASSERT_EQ(change.kind, SessionChange::Kind::kSetStatus);
  ASSERT_NE(change.status, nullptr);
  EXPECT_EQ(change.status->availability, Availability::kDnd);

  clock_.Advance(absl::Minutes(3));
  registry_.SweepExpired();
  events = events_.Take();
  ASSERT_THAT(events, ElementsAre(StatusEvent(42, PublicStatus::kOnline)));
  EXPECT_EQ(events[0].reason, PresenceEvent::Reason::kStatusExpired);
  EXPECT_EQ(events[0].at, t0 + absl::Minutes(3));
  EXPECT_EQ(Get(42).availability, Availability::kAuto);
  // The end is recorded too, so a restart does not bring DND back.
  ASSERT_EQ(sink_.changes().back().kind, SessionChange::Kind::kSetStatus);
  EXPECT_TRUE(sink_.changes().back().status->empty());
}

TEST_F(RegistryTest, ANewDndEndIsAnnouncedToRichWatchers) {
  const absl::Time t0 = clock_.Now();
  registry_.Heartbeat(42, "tab");
  ASSERT_TRUE(
      registry_
          .SetStatus(42, Availability_(Availability::kDnd, absl::Minutes(30)))
          .ok());
  events_.Take();
  ASSERT_TRUE(
      registry_
          .SetStatus(42, Availability_(Availability::kDnd, absl::Minutes(60)))
          .ok());
  std::vector<PresenceEvent> events = events_.Take();
  ASSERT_THAT(events, ElementsAre(StatusEvent(42, PublicStatus::kDnd)));
  EXPECT_TRUE(events[0].status_only);
  EXPECT_EQ(events[0].availability_until, t0 + absl::Minutes(60));
  // The same again: nothing new to tell.
  ASSERT_TRUE(
      registry_
          .SetStatus(42, Availability_(Availability::kDnd, absl::Minutes(60)))
          .ok());
  EXPECT_THAT(events_.Take(), IsEmpty());
}

// Session B idle from the start, A active for a while: when A's window ends
// the user is AWAY at that moment, not at B's older away time (which would
// put the event before the ONLINE that A brought).
TEST_F(RegistryTest, AwayAfterTheActiveSessionEndsIsStampedInOrder) {
  registry_.Heartbeat(42, "b");  // b's only activity: its first heartbeat
  for (int i = 0; i < 6; ++i) {
    clock_.Advance(absl::Minutes(2));
    registry_.Heartbeat(42, "b", /*idle=*/true);
  }
  registry_.SweepExpired();
  EXPECT_EQ(Get(42).status, PublicStatus::kAway);
  registry_.Heartbeat(42, "a");  // active: ONLINE
  const absl::Time a_end = clock_.Now() + kWindow;
  std::vector<PresenceEvent> events = events_.Take();
  ASSERT_FALSE(events.empty());
  absl::Time last = events.back().at;
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(absl::Minutes(2));
    registry_.Heartbeat(42, "b", /*idle=*/true);
  }
  clock_.Advance(a_end - clock_.Now());
  registry_.SweepExpired();
  events = events_.Take();
  ASSERT_THAT(events, ElementsAre(StatusEvent(42, PublicStatus::kAway)));
  EXPECT_GE(events[0].at, last);
  EXPECT_EQ(events[0].at, a_end);
}

TEST_F(RegistryTest, AnOfflineUserInDndIsOfflineAndNoEventIsSent) {
  ASSERT_TRUE(registry_.SetStatus(42, Availability_(Availability::kDnd)).ok());
  EXPECT_THAT(events_.Take(), IsEmpty());
  EXPECT_EQ(Get(42).status, PublicStatus::kOffline);
  registry_.Heartbeat(42, "tab");
  std::vector<PresenceEvent> events = events_.Take();
  ASSERT_THAT(events, ElementsAre(StatusEvent(42, PublicStatus::kDnd)));
  EXPECT_EQ(events[0].reason, PresenceEvent::Reason::kHeartbeat);
  EXPECT_FALSE(events[0].status_only);
}

TEST_F(RegistryTest, InvisibleIsOfflineToOthersEverywhereButNotToItself) {
  registry_.Heartbeat(42, "tab");
  clock_.Advance(absl::Minutes(1));
  const absl::Time went = clock_.Now();
  events_.Take();
  ASSERT_TRUE(
      registry_.SetStatus(42, Availability_(Availability::kInvisible)).ok());
  std::vector<PresenceEvent> events = events_.Take();
  ASSERT_THAT(events,
              ElementsAre(Event(42, false, PresenceEvent::Reason::kStatusSet)));
  EXPECT_FALSE(events[0].status_only);  // every watcher sees it go
  // Heartbeats go on; others see nothing of them.
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(absl::Minutes(2));
    registry_.Heartbeat(42, "tab");
  }
  EXPECT_THAT(events_.Take(), IsEmpty());
  UserPresenceInfo others = Get(42);
  EXPECT_FALSE(others.online);
  EXPECT_EQ(others.status, PublicStatus::kOffline);
  EXPECT_EQ(others.live_sessions, 0);
  EXPECT_EQ(others.last_seen, went);  // does not advance
  EXPECT_EQ(others.availability, Availability::kAuto);
  EXPECT_THAT(AllOnline(), IsEmpty());
  EXPECT_THAT(registry_.ListOnline({42}, 0, 10).user_ids, IsEmpty());
  EXPECT_EQ(registry_.stats().invisible_users, 1);
  // The user's own view is the truth.
  UserPresenceInfo self = registry_.GetPresence({42}, 42).users.at(0);
  EXPECT_TRUE(self.online);
  EXPECT_EQ(self.status, PublicStatus::kOnline);
  EXPECT_EQ(self.last_seen, clock_.Now());
  EXPECT_EQ(self.availability, Availability::kInvisible);
  // Back to AUTO while online: seen again, with the true last_seen.
  ASSERT_TRUE(registry_.SetStatus(42, Availability_(Availability::kAuto)).ok());
  ASSERT_THAT(events_.Take(),
              ElementsAre(Event(42, true, PresenceEvent::Reason::kStatusSet)));
  EXPECT_EQ(Get(42).last_seen, clock_.Now());
  EXPECT_EQ(AllOnline(), std::vector<int64_t>{42});
}

TEST_F(RegistryTest, InvisibilityEndingWhileOnlineShowsTheUserAgain) {
  registry_.Heartbeat(42, "tab");
  ASSERT_TRUE(registry_
                  .SetStatus(42, Availability_(Availability::kInvisible,
                                               absl::Minutes(3)))
                  .ok());
  clock_.Advance(absl::Minutes(2));
  registry_.Heartbeat(42, "tab");
  events_.Take();
  clock_.Advance(absl::Minutes(1));
  registry_.SweepExpired();
  std::vector<PresenceEvent> events = events_.Take();
  ASSERT_THAT(events, ElementsAre(Event(
                          42, true, PresenceEvent::Reason::kStatusExpired)));
  // Online again, with the true last_seen: the heartbeat a minute ago.
  EXPECT_EQ(Get(42).last_seen, clock_.Now() - absl::Minutes(1));
  EXPECT_EQ(Get(42).status, PublicStatus::kOnline);
}

TEST_F(RegistryTest, InvisibleSessionsExpireSilentlyAndLastSeenStaysHidden) {
  registry_.Heartbeat(42, "tab");
  const absl::Time seen = clock_.Now();
  ASSERT_TRUE(registry_
                  .SetStatus(42, Availability_(Availability::kInvisible,
                                               absl::Minutes(30)))
                  .ok());
  clock_.Advance(absl::Minutes(4));
  registry_.Heartbeat(42, "tab");
  events_.Take();
  clock_.Advance(kWindow);
  registry_.SweepExpired();
  EXPECT_THAT(events_.Take(), IsEmpty());
  EXPECT_EQ(registry_.stats().sessions, 0);  // forgotten on time
  // Invisibility ends while offline: nothing to announce, and last_seen as
  // others see it still hides the invisible heartbeats until the next one.
  clock_.Advance(absl::Minutes(30));
  registry_.SweepExpired();
  EXPECT_THAT(events_.Take(), IsEmpty());
  EXPECT_EQ(Get(42).last_seen, seen);
  registry_.Heartbeat(42, "tab");
  EXPECT_THAT(events_.Take(),
              ElementsAre(Event(42, true, PresenceEvent::Reason::kHeartbeat)));
  EXPECT_EQ(Get(42).last_seen, clock_.Now());
}

TEST_F(RegistryTest, CustomStatusIsAnnouncedHiddenWhileOfflineAndExpires) {
  registry_.Heartbeat(42, "tab");
  events_.Take();
  ASSERT_TRUE(
      registry_.SetStatus(42, Custom("In a meeting", ":calendar:", kWindow * 2))
          .ok());
  std::vector<PresenceEvent> events = events_.Take();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0].status_only);
  EXPECT_EQ(events[0].reason, PresenceEvent::Reason::kStatusSet);
  ASSERT_NE(events[0].custom, nullptr);
  EXPECT_EQ(events[0].custom->text, "In a meeting");
  ASSERT_TRUE(Get(42).custom.has_value());
  // Setting the same again changes nothing others see: no event.
  ASSERT_TRUE(
      registry_.SetStatus(42, Custom("In a meeting", ":calendar:", kWindow * 2))
          .ok());
  // (A new duration is a new expiry: that is a change.)
  events_.Take();
  // Offline: hidden from others, kept for the user.
  registry_.MarkOffline(42, "");
  events_.Take();
  EXPECT_FALSE(Get(42).custom.has_value());
  EXPECT_TRUE(registry_.GetPresence({42}, 42).users.at(0).custom.has_value());
  // Online again: it shows, and clears itself on time with an event.
  registry_.Heartbeat(42, "tab");
  events = events_.Take();
  ASSERT_EQ(events.size(), 1u);
  ASSERT_NE(events[0].custom, nullptr);
  clock_.Advance(kWindow * 2 - absl::Seconds(1));
  registry_.Heartbeat(42, "tab");
  events_.Take();
  clock_.Advance(absl::Seconds(1));
  registry_.SweepExpired();
  events = events_.Take();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].reason, PresenceEvent::Reason::kStatusExpired);
  EXPECT_EQ(events[0].custom, nullptr);
  EXPECT_FALSE(Get(42).custom.has_value());
}

TEST_F(RegistryTest, SetStatusRefusesAnEndThatIsNotInTheFuture) {
  StatusUpdate update = Availability_(Availability::kDnd);
  update.availability_until = clock_.Now();
  absl::StatusOr<SetStatusResult> set = registry_.SetStatus(42, update);
  EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(set.status().message()),
              HasSubstr("is not after the server's time"));
  update = Custom("x", "");
  update.custom.expires_at = clock_.Now() - absl::Seconds(1);
  EXPECT_EQ(registry_.SetStatus(42, update).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sink_.changes(), IsEmpty());  // nothing applied
}

TEST_F(RegistryTest, RestoredInvisibleUserIsNotSeededOnline) {
  StatusChoice invisible;
  invisible.availability = Availability::kInvisible;
  invisible.last_seen_cap = clock_.Now() - absl::Hours(1);
  registry_.RestoreStatus(42, invisible);
  registry_.RestoreSession(42, "tab", clock_.Now() - absl::Minutes(1));
  StatusChoice dnd;
  dnd.availability = Availability::kDnd;
  registry_.RestoreStatus(7, dnd);
  registry_.RestoreSession(7, "tab", clock_.Now() - absl::Minutes(1));
  EXPECT_EQ(events_.seeded(), std::vector<int64_t>{7});
  EXPECT_EQ(AllOnline(), std::vector<int64_t>{7});
  EXPECT_EQ(Get(7).status, PublicStatus::kDnd);
  EXPECT_EQ(Get(42).last_seen, clock_.Now() - absl::Hours(1));
  EXPECT_TRUE(registry_.GetPresence({42}, 42).users.at(0).online);
}

}  // namespace
}  // namespace presence
