// The group-commit writer against a store whose commits the test controls
// (blocks, failures): faults at the store seam (tests/store_fakes.h).

#include "service/store_writer.h"

#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/store_fakes.h"

namespace presence {
namespace {

using testing::ControlledStore;
using testing::FlakyStore;

SessionChange Beat(int64_t user) {
  const absl::Time t = absl::FromUnixSeconds(1'800'000'000);
  return SessionChange{SessionChange::Kind::kHeartbeat, user, "", t, t};
}

// Collects the outcome of a WhenDurable callback.
struct Outcome {
  absl::Notification done;
  absl::Status status;
  auto Callback() {
    return [this](absl::Status s) {
      status = s;
      done.Notify();
    };
  }
};

StoreWriter::Options CommitMode() {
  StoreWriter::Options options;
  options.durability = Durability::kCommit;
  options.retry_backoff = absl::Milliseconds(1);
  return options;
}

TEST(StoreWriterTest, CommitModeAnswersOnlyAfterTheCommit) {
  ControlledStore store;
  store.Block();
  StoreWriter writer(&store, CommitMode());
  Outcome outcome;
  writer.WhenDurable(writer.Record(Beat(1)), outcome.Callback());
  store.AwaitAttempts(1);  // the commit has started and is held
  EXPECT_FALSE(outcome.done.HasBeenNotified());
  store.Unblock();
  outcome.done.WaitForNotification();
  EXPECT_TRUE(outcome.status.ok()) << outcome.status;
  EXPECT_EQ(store.committed_users(), std::vector<int64_t>{1});
}

TEST(StoreWriterTest, ChangesArrivingDuringACommitShareTheNextOne) {
  ControlledStore store;
  store.Block();
  StoreWriter writer(&store, CommitMode());
  writer.Record(Beat(1));
  store.AwaitAttempts(1);
  std::vector<std::unique_ptr<Outcome>> outcomes;
  for (int64_t user = 2; user <= 101; ++user) {
    outcomes.push_back(std::make_unique<Outcome>());
    writer.WhenDurable(writer.Record(Beat(user)), outcomes.back()->Callback());
  }
  store.Unblock();
  for (auto& o : outcomes) {
    o->done.WaitForNotification();
    EXPECT_TRUE(o->status.ok());
  }
  std::vector<std::vector<SessionChange>> batches = store.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].size(), 1u);
  EXPECT_EQ(batches[1].size(), 100u);
  EXPECT_EQ(writer.commits(), 2);
  EXPECT_EQ(batches[1].front().user_id, 2);
  EXPECT_EQ(batches[1].back().user_id, 101);
}

// Records `changes` while the writer's first commit (one heartbeat) is held,
// so that they share the next one; returns that batch as the store got it.
std::vector<SessionChange> CommittedTogether(
    const std::vector<SessionChange>& changes) {
  ControlledStore store;
  store.Block();
  StoreWriter writer(&store, CommitMode());
  writer.Record(Beat(99));
  store.AwaitAttempts(1);
  uint64_t last_ticket = 0;
  for (const SessionChange& change : changes) {
    last_ticket = writer.Record(change);
  }
  Outcome last;
  writer.WhenDurable(last_ticket, last.Callback());
  store.Unblock();
  last.done.WaitForNotification();
  EXPECT_TRUE(last.status.ok()) << last.status;
  std::vector<std::vector<SessionChange>> batches = store.batches();
  EXPECT_EQ(batches.size(), 2u);
  return batches.size() == 2 ? batches[1] : std::vector<SessionChange>{};
}

TEST(StoreWriterTest, RepeatedHeartbeatsOfASessionShareOneRowWrite) {
  const absl::Time t = absl::FromUnixSeconds(1'800'000'000);
  const absl::Time t1 = t + absl::Seconds(1), t2 = t + absl::Seconds(2),
                   t3 = t + absl::Seconds(3);
  using Kind = SessionChange::Kind;
  const std::vector<SessionChange> b = CommittedTogether({
      {Kind::kHeartbeat, 1, "a", t, t},
      {Kind::kHeartbeat, 2, "a", t, t},
      {Kind::kHeartbeat, 1, "a", t1, t1},
      {Kind::kHeartbeat, 1, "b", t, t},
      {Kind::kEndSession, 1, "a", t2, t2},
      {Kind::kHeartbeat, 1, "a", t3, t3},
  });
  ASSERT_EQ(b.size(), 5u);  // 6 recorded, (1,a) merged once
  EXPECT_EQ(b[0].user_id, 1);
  EXPECT_EQ(b[0].session_id, "a");
  EXPECT_EQ(b[0].at, t1);  // the later heartbeat
  // Before the end of the session, the heartbeats come in key order (the
  // table's): (1,b) before (2,a), though (2,a) arrived first.
  EXPECT_EQ(b[1].user_id, 1);
  EXPECT_EQ(b[1].session_id, "b");
  EXPECT_EQ(b[2].user_id, 2);
  EXPECT_EQ(b[3].kind, Kind::kEndSession);
  // Not merged across the end of the session: it must stay after it.
  EXPECT_EQ(b[4].kind, Kind::kHeartbeat);
  EXPECT_EQ(b[4].at, t3);
}

TEST(StoreWriterTest, AMergedRepeatKeepsTheLastStampRecordedEvenIfSmaller) {
  // The registry forgets a session whose window ended; after the wall clock
  // stepped back, the session comes back with a smaller stamp, and memory
  // holds that one: so must the row.
  const absl::Time t = absl::FromUnixSeconds(1'800'000'000);
  const absl::Time back = t - absl::Hours(1);
  using Kind = SessionChange::Kind;
  const std::vector<SessionChange> batch = CommittedTogether({
      {Kind::kHeartbeat, 1, "a", t, t},
      {Kind::kHeartbeat, 2, "a", t, t},
      {Kind::kHeartbeat, 1, "a", back, t},
  });
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].user_id, 1);
  EXPECT_EQ(batch[0].at, back);
}

TEST(StoreWriterTest, AMergedRepeatKeepsTheLastActivityRecorded) {
  // Rich presence: an active heartbeat then an idle one of the same session
  // in one batch; the row must keep the idle one's activity time (the
  // active one's), not lose it to the first.
  const absl::Time t = absl::FromUnixSeconds(1'800'000'000);
  using Kind = SessionChange::Kind;
  SessionChange active{Kind::kHeartbeat, 1, "a", t, t};
  active.last_active = t;
  SessionChange status{Kind::kSetStatus, 2, "", t, t};
  status.status = std::make_shared<StatusChoice>();
  SessionChange idle{Kind::kHeartbeat, 1, "a", t + absl::Seconds(1),
                     t + absl::Seconds(1)};
  idle.last_active = t - absl::Minutes(3);
  const std::vector<SessionChange> batch =
      CommittedTogether({active, idle, status});
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch[0].at, t + absl::Seconds(1));
  EXPECT_EQ(batch[0].last_active, t - absl::Minutes(3));
  // A status change is kept, after the heartbeats before it.
  EXPECT_EQ(batch[1].kind, Kind::kSetStatus);
  ASSERT_NE(batch[1].status, nullptr);
}

TEST(StoreWriterTest, HeartbeatsAreWrittenInKeyOrderNeverAcrossAnEnd) {
  const absl::Time t = absl::FromUnixSeconds(1'800'000'000);
  const std::vector<SessionChange> batch = CommittedTogether({
      Beat(5),
      Beat(4),
      Beat(3),
      {SessionChange::Kind::kEndAllSessions, 4, "", t, t},
      Beat(9),
      Beat(4),
      Beat(8),
      Beat(1),
  });
  std::vector<int64_t> users;
  for (const SessionChange& c : batch) users.push_back(c.user_id);
  // Each side of the ended session sorted; user 4's heartbeat after its end
  // stays after it.
  EXPECT_EQ(users, (std::vector<int64_t>{3, 4, 5, 4, 1, 4, 8, 9}));
  ASSERT_EQ(batch.size(), 8u);
  EXPECT_EQ(batch[3].kind, SessionChange::Kind::kEndAllSessions);
}

TEST(StoreWriterTest, FailedCommitIsUnavailableThenRetriedInOrder) {
  ControlledStore store;
  store.FailNext(1);
  store.Block();
  StoreWriter writer(&store, CommitMode());
  Outcome failed;
  writer.WhenDurable(writer.Record(Beat(1)), failed.Callback());
  store.Unblock();
  failed.done.WaitForNotification();
  EXPECT_EQ(failed.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(failed.status.message().find("disk full"), std::string::npos);

  // The failed change was not dropped: it is committed, before the newer one.
  Outcome later;
  writer.WhenDurable(writer.Record(Beat(2)), later.Callback());
  later.done.WaitForNotification();
  EXPECT_TRUE(later.status.ok()) << later.status;
  EXPECT_EQ(store.committed_users(), (std::vector<int64_t>{1, 2}));
}

TEST(StoreWriterTest, AWaiterIsToldItsOwnAttemptEvenIfItWaitedAfterALaterOne) {
  ControlledStore store;
  store.FailNext(1);
  store.Block();
  StoreWriter writer(&store, CommitMode());
  const uint64_t first = writer.Record(Beat(1));
  store.AwaitAttempts(1);  // the attempt holding `first` only, held
  const uint64_t later = writer.Record(Beat(2));
  // Calls may wait in another order than they recorded.
  Outcome later_outcome, first_outcome;
  writer.WhenDurable(later, later_outcome.Callback());
  writer.WhenDurable(first, first_outcome.Callback());
  store.Unblock();  // that attempt fails; the retry commits both
  first_outcome.done.WaitForNotification();
  later_outcome.done.WaitForNotification();
  // Told of the failed attempt it was in, at once: not held back behind the
  // later waiter until the retry.
  EXPECT_EQ(first_outcome.status.code(), absl::StatusCode::kUnavailable)
      << first_outcome.status;
  EXPECT_TRUE(later_outcome.status.ok()) << later_outcome.status;
}

TEST(StoreWriterTest, AsyncModeAnswersBeforeTheCommit) {
  ControlledStore store;
  store.Block();
  StoreWriter::Options options;
  options.durability = Durability::kAsync;
  options.commit_interval = absl::Hours(1);
  StoreWriter writer(&store, options);
  Outcome outcome;
  writer.WhenDurable(writer.Record(Beat(1)), outcome.Callback());
  EXPECT_TRUE(outcome.done.HasBeenNotified());  // called inline
  EXPECT_TRUE(outcome.status.ok());
  EXPECT_TRUE(store.committed_users().empty());
  store.Unblock();
  // Stop() commits what is queued without waiting out the interval.
  EXPECT_TRUE(writer.Stop().ok());
  EXPECT_EQ(store.committed_users(), std::vector<int64_t>{1});
}

TEST(StoreWriterTest, StopReportsALostFinalCommit) {
  ControlledStore store;
  // Two: the first attempt may start before Stop() and then be retried.
  store.FailNext(2);
  store.Block();
  StoreWriter::Options options;
  options.durability = Durability::kAsync;
  options.commit_interval = absl::Hours(1);
  StoreWriter writer(&store, options);
  writer.Record(Beat(1));
  store.Unblock();
  absl::Status stopped = writer.Stop();
  EXPECT_FALSE(stopped.ok());
  EXPECT_TRUE(store.committed_users().empty());
}

TEST(StoreWriterTest, WaiterAfterStopIsNotLeftHanging) {
  ControlledStore store;
  StoreWriter writer(&store, CommitMode());
  ASSERT_TRUE(writer.Stop().ok());
  Outcome late;
  writer.WhenDurable(writer.Record(Beat(9)), late.Callback());
  ASSERT_TRUE(late.done.HasBeenNotified());
  EXPECT_EQ(late.status.code(), absl::StatusCode::kUnavailable);
}

TEST(StoreWriterTest, TicketZeroIsDurableAtOnceWhenNothingIsPending) {
  ControlledStore store;
  StoreWriter writer(&store, CommitMode());
  Outcome outcome;
  writer.WhenDurable(0, outcome.Callback());
  EXPECT_TRUE(outcome.done.HasBeenNotified());
  EXPECT_TRUE(outcome.status.ok());
}

// A call that changed nothing may have found another call's change (its own
// first attempt's, say): it is OK only once that change is durable.
TEST(StoreWriterTest, TicketZeroWaitsForTheChangesRecordedBeforeIt) {
  ControlledStore store;
  store.Block();
  StoreWriter writer(&store, CommitMode());
  writer.Record(Beat(1));
  store.AwaitAttempts(1);
  Outcome nothing_changed;
  writer.WhenDurable(0, nothing_changed.Callback());
  EXPECT_FALSE(nothing_changed.done.HasBeenNotified());
  store.Unblock();
  nothing_changed.done.WaitForNotification();
  EXPECT_TRUE(nothing_changed.status.ok()) << nothing_changed.status;
  EXPECT_EQ(store.committed_users(), std::vector<int64_t>{1});
}

// The lost-logout repro: MarkOffline ends the sessions and its commit fails;
// the client retries, finds nothing left to end, and must not be told OK.
TEST(StoreWriterTest, TicketZeroFailsLikeThePendingChangesItFound) {
  ControlledStore store;
  store.FailNext(1);
  StoreWriter::Options options = CommitMode();
  options.retry_backoff = absl::Hours(1);  // the failed batch waits
  StoreWriter writer(&store, options);
  Outcome first;
  writer.WhenDurable(writer.Record(Beat(42)), first.Callback());
  first.done.WaitForNotification();
  ASSERT_EQ(first.status.code(), absl::StatusCode::kUnavailable);

  Outcome retry;
  writer.WhenDurable(0, retry.Callback());
  ASSERT_TRUE(retry.done.HasBeenNotified());
  EXPECT_EQ(retry.status.code(), absl::StatusCode::kUnavailable)
      << retry.status;
  EXPECT_NE(retry.status.message().find("disk full"), std::string::npos);
  // Stop() commits what is queued, the failed change included.
  EXPECT_TRUE(writer.Stop().ok());
  EXPECT_EQ(store.committed_users(), std::vector<int64_t>{42});
}

TEST(StoreWriterTest, AStoreThatCanNeverCommitAgainEndsDurabilityForGood) {
  for (Durability durability : {Durability::kCommit, Durability::kAsync}) {
    SCOPED_TRACE(durability == Durability::kCommit ? "commit" : "async");
    ControlledStore store;
    absl::Mutex mu;
    std::vector<absl::Status> health;
    StoreWriter::Options options = CommitMode();
    options.durability = durability;
    options.commit_interval = absl::Milliseconds(1);
    options.verify_interval = absl::Milliseconds(10);
    options.on_health_change = [&](const absl::Status& s) {
      absl::MutexLock lock(&mu);
      health.push_back(s);
    };
    StoreWriter writer(&store, options);
    Outcome before;
    writer.WhenDurable(writer.Record(Beat(1)), before.Callback());
    before.done.WaitForNotification();
    ASSERT_TRUE(before.status.ok());
    store.AwaitAttempts(1);  // async mode answers before its commit
    EXPECT_TRUE(writer.accepting().ok());

    // No change comes: the idle writer's own check notices.
    store.SetGone();
    auto reported = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return !health.empty();
    };
    {
      absl::MutexLock lock(&mu);
      ASSERT_TRUE(
          mu.AwaitWithTimeout(absl::Condition(&reported), absl::Seconds(30)));
      EXPECT_EQ(health[0].code(), absl::StatusCode::kUnavailable);
      EXPECT_NE(health[0].message().find("the database file was deleted"),
                std::string::npos)
          << health[0];
    }
    EXPECT_GE(store.verifications(), 1);
    const absl::Status refused = writer.accepting();
    EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
    EXPECT_NE(refused.message().find("until presenced is restarted"),
              std::string::npos)
        << refused;
    // A change recorded anyway (one that raced with the check) is never OK,
    // in either mode.
    Outcome after;
    writer.WhenDurable(writer.Record(Beat(2)), after.Callback());
    after.done.WaitForNotification();
    EXPECT_EQ(after.status.code(), absl::StatusCode::kUnavailable);
    Outcome nothing;
    writer.WhenDurable(0, nothing.Callback());
    ASSERT_TRUE(nothing.done.HasBeenNotified());
    EXPECT_EQ(nothing.status.code(), absl::StatusCode::kUnavailable)
        << nothing.status;
    // Stop() says so too: the store no longer holds what was committed.
    EXPECT_EQ(writer.Stop().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(store.committed_users(), std::vector<int64_t>{1});
  }
}

TEST(StoreWriterTest, ACommitThatFindsTheStoreGoneEndsDurability) {
  ControlledStore store;
  StoreWriter::Options options = CommitMode();
  options.verify_interval = absl::Hours(1);  // only the commit can tell
  StoreWriter writer(&store, options);
  store.SetGone();
  Outcome outcome;
  writer.WhenDurable(writer.Record(Beat(1)), outcome.Callback());
  outcome.done.WaitForNotification();
  EXPECT_EQ(outcome.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(writer.accepting().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(store.committed_users().empty());
}

// The writer reports an outage once, however many retries it takes.
TEST(StoreWriterHealthTest, OneReportPerOutageNotPerRetry) {
  for (Durability durability : {Durability::kCommit, Durability::kAsync}) {
    FlakyStore store(/*failures=*/20);
    absl::Mutex mu;
    std::vector<absl::Status> reports;
    StoreWriter::Options options;
    options.durability = durability;
    options.commit_interval = absl::ZeroDuration();
    options.retry_backoff = absl::Milliseconds(1);
    options.on_health_change = [&](const absl::Status& s) {
      absl::MutexLock lock(&mu);
      reports.push_back(s);
    };
    StoreWriter writer(&store, options);
    const absl::Time t = absl::FromUnixSeconds(1'800'000'000);
    writer.Record({SessionChange::Kind::kHeartbeat, 1, "", t, t});
    auto recovered = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return reports.size() >= 2;
    };
    {
      absl::MutexLock lock(&mu);
      ASSERT_TRUE(
          mu.AwaitWithTimeout(absl::Condition(&recovered), absl::Seconds(30)));
    }
    EXPECT_TRUE(writer.Stop().ok());
    EXPECT_EQ(store.attempts(), 21);
    absl::MutexLock lock(&mu);
    ASSERT_EQ(reports.size(), 2u);
    EXPECT_EQ(reports[0].code(), absl::StatusCode::kUnavailable);
    EXPECT_TRUE(reports[1].ok());
  }
}

}  // namespace
}  // namespace presence
