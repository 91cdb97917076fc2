#include "service/user_table.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace presence {
namespace {

// Each session's last activity, in these tests: its heartbeat less this
// (or the beginning of time for a stamp there).
constexpr int64_t kIdleFor = 7;
int64_t ActiveOf(int64_t hb) {
  return hb == kNeverUs ? kNeverUs : hb - kIdleFor;
}

// The sessions as (id, heartbeat) pairs, in stored order; each session's
// activity must have been kept with it.
std::vector<std::pair<std::string, int64_t>> Sessions(const UserState& user) {
  std::vector<std::pair<std::string, int64_t>> out;
  user.ForEachSession([&](absl::string_view id, int64_t hb, int64_t active) {
    EXPECT_EQ(active, ActiveOf(hb)) << "session " << id;
    out.emplace_back(std::string(id), hb);
  });
  return out;
}

SessionList List(std::vector<std::pair<std::string, int64_t>> sessions) {
  SessionList list;
  for (auto& [id, hb] : sessions) {
    list.push_back(Session{SessionId(id), hb, ActiveOf(hb)});
  }
  return list;
}

using Pairs = std::vector<std::pair<std::string, int64_t>>;

TEST(UserStateTest, StaysFortyEightBytes) {
  // The per-user budget of docs/performance.md rests on it (40 before rich
  // presence added each single session's last activity).
  EXPECT_EQ(sizeof(UserState), 48u);
}

TEST(UserStateTest, NewUserHasNoSessions) {
  UserState user(7);
  EXPECT_EQ(user.id(), 7);
  EXPECT_EQ(user.session_count(), 0u);
  EXPECT_EQ(user.LatestHeartbeatUs(), kNeverUs);
  EXPECT_TRUE(user.TakeSessions().empty());
  EXPECT_FALSE(user.announced_online());
}

TEST(UserStateTest, KeepsOneSessionOfEitherKind) {
  for (const std::string id : {"", "tab-1"}) {
    UserState user(1);
    user.PutSessions(List({{id, 100}}));
    EXPECT_EQ(user.session_count(), 1u);
    EXPECT_EQ(user.LatestHeartbeatUs(), 100);
    EXPECT_EQ(Sessions(user), (Pairs{{id, 100}}));
    SessionList taken = user.TakeSessions();
    ASSERT_EQ(taken.size(), 1u);
    EXPECT_EQ(taken[0].id.view(), id);
    EXPECT_EQ(user.session_count(), 0u);  // taken out
    user.PutSessions(std::move(taken));
    EXPECT_EQ(Sessions(user), (Pairs{{id, 100}}));
  }
}

TEST(UserStateTest, GrowsToManySessionsAndBackToOne) {
  UserState user(1);
  user.PutSessions(List({{"a", 100}}));
  SessionList sessions = user.TakeSessions();
  sessions.push_back(Session{SessionId("b"), 300, 300 - kIdleFor});
  sessions.push_back(Session{SessionId(""), 200, 200 - kIdleFor});
  user.PutSessions(std::move(sessions));
  EXPECT_EQ(user.session_count(), 3u);
  EXPECT_EQ(user.LatestHeartbeatUs(), 300);
  EXPECT_EQ(Sessions(user), (Pairs{{"a", 100}, {"b", 300}, {"", 200}}));

  // Two left: still the heap form, refilled in place.
  sessions = user.TakeSessions();
  sessions.erase(sessions.begin());
  user.PutSessions(std::move(sessions));
  EXPECT_EQ(Sessions(user), (Pairs{{"b", 300}, {"", 200}}));

  // One left: back inline.
  sessions = user.TakeSessions();
  sessions.erase(sessions.begin());
  user.PutSessions(std::move(sessions));
  EXPECT_EQ(Sessions(user), (Pairs{{"", 200}}));
  EXPECT_EQ(user.LatestHeartbeatUs(), 200);

  user.ClearSessions();
  EXPECT_EQ(user.session_count(), 0u);
  EXPECT_EQ(user.LatestHeartbeatUs(), kNeverUs);
}

TEST(UserStateTest, FlagsSurviveEveryForm) {
  for (int status = 0; status < 4; ++status) {
    for (bool rich : {false, true}) {
      UserState user(1);
      user.set_announced_status(status);
      user.set_has_rich(rich);
      user.PutSessions(List({{"a", 10}}));
      EXPECT_EQ(user.announced_status(), status);
      user.PutSessions(List({{"a", 10}, {"b", 20}}));
      EXPECT_EQ(user.announced_status(), status);
      EXPECT_EQ(user.has_rich(), rich);
      EXPECT_EQ(Sessions(user), (Pairs{{"a", 10}, {"b", 20}}));
      user.ClearSessions();
      EXPECT_EQ(user.announced_status(), status);
      EXPECT_EQ(user.announced_online(), status != 0);
      EXPECT_EQ(user.has_rich(), rich);
      user.set_announced_status(0);
      user.set_has_rich(!rich);
      user.PutSessions(List({{"a", 10}, {"b", 20}}));
      EXPECT_FALSE(user.announced_online());
      EXPECT_EQ(user.has_rich(), !rich);
      EXPECT_EQ(user.session_count(), 2u);
    }
  }
}

TEST(UserStateTest, ASessionStampedAtTheBeginningOfTimeIsKept) {
  // A damaged database may restore such a stamp: the session (dead) and its
  // id must not vanish, nor leak when more sessions come.
  UserState user(1);
  user.PutSessions(List({{"a", kNeverUs}}));
  EXPECT_EQ(user.session_count(), 1u);
  SessionList sessions = user.TakeSessions();
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions[0].id.view(), "a");
  sessions.push_back(Session{SessionId("b"), 5, 5 - kIdleFor});
  user.PutSessions(std::move(sessions));
  EXPECT_EQ(user.session_count(), 2u);
  EXPECT_EQ(user.LatestHeartbeatUs(), 5);
}

TEST(UserStateTest, ManySessionsTakenOutLeaveNone) {
  UserState user(1);
  user.PutSessions(List({{"a", 1}, {"b", 2}}));
  SessionList taken = user.TakeSessions();
  EXPECT_EQ(taken.size(), 2u);
  EXPECT_EQ(user.session_count(), 0u);
}

TEST(UserStateTest, LongestSessionIdRoundTrips) {
  UserState user(1);
  const std::string id(128, 'x');
  user.PutSessions(List({{id, 5}}));
  EXPECT_EQ(Sessions(user), (Pairs{{id, 5}}));
}

TEST(UserTableTest, FindsWhatWasAddedAcrossChunks) {
  UserTable table;
  // Spread out and negative ids, and more than a few chunks of records.
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 5000; ++i) ids.push_back(i * 7919 - 100000);
  std::vector<UserState*> records;
  for (int64_t id : ids) {
    UserState& user = table.FindOrAdd(id);
    EXPECT_EQ(user.id(), id);
    user.last_seen_us = id * 2;
    records.push_back(&user);
  }
  EXPECT_EQ(table.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    UserState* user = table.Find(ids[i]);
    // Records never move, though the index grew many times meanwhile.
    ASSERT_EQ(user, records[i]) << ids[i];
    EXPECT_EQ(user->last_seen_us, ids[i] * 2);
    EXPECT_EQ(&table.FindOrAdd(ids[i]), records[i]);
  }
  EXPECT_EQ(table.size(), ids.size());  // FindOrAdd of known ids added none
  // Record numbers lead back to the same records.
  for (size_t i = 0; i < ids.size(); i += 97) {
    uint32_t by_find = 0, by_add = 0;
    ASSERT_NE(table.Find(ids[i], &by_find), nullptr);
    table.FindOrAdd(ids[i], &by_add);
    EXPECT_EQ(by_find, by_add);
    EXPECT_EQ(&table.At(by_find), records[i]);
  }
  uint32_t fresh = 0;
  UserState& added = table.FindOrAdd(42, &fresh);
  EXPECT_EQ(fresh, ids.size());  // the next number
  EXPECT_EQ(&table.At(fresh), &added);
  EXPECT_EQ(table.Find(1), nullptr);
  EXPECT_EQ(static_cast<const UserTable&>(table).Find(ids[3]), records[3]);
}

}  // namespace
}  // namespace presence
