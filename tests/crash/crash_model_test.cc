// The crash-consistency check on made-up histories: it accepts what the
// durability modes allow and refuses every loss they do not, so a passing
// crash_consistency_test means something.

#include "tests/crash/crash_model.h"

#include <string>

#include "gtest/gtest.h"

namespace presence::crash {
namespace {

constexpr absl::Duration kWindow = absl::Hours(1);
constexpr int64_t kWindowUs = int64_t{3600} * 1000 * 1000;

// A history on one user, with the server's clock in microseconds from an
// arbitrary origin and the test's steady clock alongside it.
class History {
 public:
  History() : model_(kWindow), origin_(std::chrono::steady_clock::now()) {}

  UserModel& model() { return model_; }

  // An answered Heartbeat, stamped at `at`.
  void Beat(const std::string& session, int64_t at) {
    Op op = Make(Op::Kind::kHeartbeat, session, at);
    op.online_until_us = at + kWindowUs;
    const bool was_offline = model_.current().sessions.empty();
    ASSERT_TRUE(model_.Heartbeat(op, was_offline).ok());
  }
  // An answered MarkOffline (session "" ends all), at `at`.
  void End(const std::string& session, int64_t at) {
    Op op = Make(session.empty() ? Op::Kind::kEndAll : Op::Kind::kEndSession,
                 session, at);
    UserState after = model_.current();
    int ended = 0;
    for (auto it = after.sessions.begin(); it != after.sessions.end();) {
      if (session.empty() || it->first == session) {
        it = after.sessions.erase(it);
        ++ended;
      } else {
        ++it;
      }
    }
    ASSERT_TRUE(model_.MarkOffline(op, ended, !after.sessions.empty()).ok());
  }
  // A call sent at `sent` that was not answered.
  void Lost(Op::Kind kind, const std::string& session, int64_t sent) {
    Op op = Make(kind, session, sent);
    model_.Unknown(op);
  }

  // The kill, at server time `at` (the steady clock follows the same
  // microseconds); async mode if `bound` is set.
  KillInfo Kill(int64_t at,
                std::optional<absl::Duration> bound = std::nullopt) const {
    KillInfo kill;
    kill.dead_by_us = at;
    kill.killed_at = Steady(at);
    kill.loss_bound = bound;
    return kill;
  }

 private:
  SteadyTime Steady(int64_t at) const {
    return origin_ + std::chrono::microseconds(at);
  }
  Op Make(Op::Kind kind, const std::string& session, int64_t at) const {
    Op op;
    op.kind = kind;
    op.session_id = session;
    op.sent_us = at - 10;
    op.server_time_us = at;
    op.acked_at = Steady(at + 10);
    return op;
  }

  UserModel model_;
  SteadyTime origin_;
};

Observed Online(int live, int64_t last_beat, int64_t last_seen) {
  return Observed{true, live, last_beat + kWindowUs, last_seen};
}
Observed Offline(int64_t last_seen) {
  return Observed{false, 0, kNeverUs, last_seen};
}

TEST(CrashModelTest, EverythingAnsweredSurvives) {
  History h;
  h.Beat("a", 1000);
  h.Beat("b", 2000);
  h.End("a", 3000);
  CheckStats stats;
  EXPECT_TRUE(
      h.model().Check(Online(1, 2000, 3000), h.Kill(5000), &stats).ok());
  EXPECT_EQ(stats.acked_required, 3);
  EXPECT_EQ(stats.acked_survived, 3);
  EXPECT_EQ(stats.acked_lost, 0);
}

TEST(CrashModelTest, AnsweredHeartbeatLostIsRefused) {
  History h;
  h.Beat("a", 1000);
  h.Beat("a", 2000);
  absl::Status s =
      h.model().Check(Online(1, 1000, 1000), h.Kill(5000), nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("Heartbeat('a')"), std::string::npos) << s;
}

TEST(CrashModelTest, AnsweredLogoutLostIsRefused) {
  History h;
  h.Beat("", 1000);
  h.End("", 2000);
  EXPECT_FALSE(
      h.model().Check(Online(1, 1000, 1000), h.Kill(5000), nullptr).ok());
}

TEST(CrashModelTest, WrongLastSeenIsRefused) {
  History h;
  h.Beat("a", 1000);
  h.End("a", 2000);
  EXPECT_FALSE(h.model().Check(Offline(1000), h.Kill(5000), nullptr).ok());
  History never;
  EXPECT_FALSE(
      never.model().Check(Offline(1000), never.Kill(5000), nullptr).ok());
}

TEST(CrashModelTest, SessionThatNeverExistedIsRefused) {
  History h;
  h.Beat("a", 1000);
  EXPECT_FALSE(
      h.model().Check(Online(2, 1000, 1000), h.Kill(5000), nullptr).ok());
}

TEST(CrashModelTest, UnansweredHeartbeatMayOrMayNotBeApplied) {
  CheckStats stats;
  History applied;
  applied.Beat("a", 1000);
  applied.Lost(Op::Kind::kHeartbeat, "b", 2000);
  ASSERT_TRUE(applied.model()
                  .Check(Online(2, 2100, 2100), applied.Kill(5000), &stats)
                  .ok());
  EXPECT_EQ(stats.unknown_applied, 1);
  // The applied call is part of the confirmed state from now on: ending "b"
  // must end a session.
  EXPECT_EQ(applied.model().current().sessions.at("b"), 2100);

  History not_applied;
  not_applied.Beat("a", 1000);
  not_applied.Lost(Op::Kind::kHeartbeat, "b", 2000);
  ASSERT_TRUE(not_applied.model()
                  .Check(Online(1, 1000, 1000), not_applied.Kill(5000), &stats)
                  .ok());
  EXPECT_EQ(stats.unknown_not_applied, 1);
  EXPECT_EQ(not_applied.model().current().sessions.count("b"), 0u);
}

TEST(CrashModelTest, UnansweredHeartbeatStampedOutsideItsCallIsRefused) {
  History before;
  before.Lost(Op::Kind::kHeartbeat, "a", 2000);
  EXPECT_FALSE(before.model()
                   .Check(Online(1, 1500, 1500), before.Kill(5000), nullptr)
                   .ok());
  History after;
  after.Lost(Op::Kind::kHeartbeat, "a", 2000);
  EXPECT_FALSE(after.model()
                   .Check(Online(1, 5001, 5001), after.Kill(5000), nullptr)
                   .ok());
}

TEST(CrashModelTest, UnansweredLogoutMayOrMayNotBeApplied) {
  History applied;
  applied.Beat("a", 1000);
  applied.Beat("b", 2000);
  applied.Lost(Op::Kind::kEndAll, "", 3000);
  EXPECT_TRUE(
      applied.model().Check(Offline(3100), applied.Kill(5000), nullptr).ok());

  History not_applied;
  not_applied.Beat("a", 1000);
  not_applied.Beat("b", 2000);
  not_applied.Lost(Op::Kind::kEndAll, "", 3000);
  EXPECT_TRUE(not_applied.model()
                  .Check(Online(2, 2000, 2000), not_applied.Kill(5000), nullptr)
                  .ok());

  // Half of it is no outcome of the call.
  History half;
  half.Beat("a", 1000);
  half.Beat("b", 2000);
  half.Lost(Op::Kind::kEndAll, "", 3000);
  EXPECT_FALSE(
      half.model().Check(Online(1, 2000, 3100), half.Kill(5000), nullptr).ok());
}

TEST(CrashModelTest, AnswersThatContradictTheModelAreReported) {
  UserModel model(kWindow);
  Op beat;
  beat.kind = Op::Kind::kHeartbeat;
  beat.session_id = "a";
  beat.server_time_us = 1000;
  beat.online_until_us = 1000 + kWindowUs;
  EXPECT_FALSE(model.Heartbeat(beat, /*became_online=*/false).ok());

  UserModel other(kWindow);
  ASSERT_TRUE(other.Heartbeat(beat, /*became_online=*/true).ok());
  Op end;
  end.kind = Op::Kind::kEndSession;
  end.session_id = "b";  // not a session of the user: ends nothing
  end.server_time_us = 2000;
  EXPECT_FALSE(other.MarkOffline(end, /*sessions_ended=*/1, true).ok());
}

TEST(CrashModelTest, AsyncMayLoseOnlyRecentAnsweredCalls) {
  const absl::Duration bound = absl::Microseconds(1000);
  History recent;
  recent.Beat("a", 1000);
  recent.Beat("a", 4500);  // answered 490 us before the kill: may be lost
  CheckStats stats;
  ASSERT_TRUE(
      recent.model()
          .Check(Online(1, 1000, 1000), recent.Kill(5000, bound), &stats)
          .ok());
  EXPECT_EQ(stats.acked_required, 1);
  EXPECT_EQ(stats.acked_lost, 1);
  EXPECT_EQ(stats.max_lost_age, absl::Microseconds(490));

  History old;
  old.Beat("a", 1000);
  old.Beat("a", 3500);  // answered 1490 us before the kill: must survive
  EXPECT_FALSE(old.model()
                   .Check(Online(1, 1000, 1000), old.Kill(5000, bound), nullptr)
                   .ok());
}

TEST(CrashModelTest, AsyncLosesASuffixNotAHole) {
  const absl::Duration bound = absl::Microseconds(2000);
  History h;
  h.Beat("a", 4000);
  h.Beat("b", 4500);
  // "b" kept but the earlier "a" lost: not what an in-order writer can do.
  EXPECT_FALSE(h.model()
                   .Check(Online(1, 4500, 4500), h.Kill(5000, bound), nullptr)
                   .ok());
}

}  // namespace
}  // namespace presence::crash
