// The group-commit writer against a store whose commits the test controls
// (blocks, failures): faults at the store seam.

#include "service/store_writer.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace presence {
namespace {

class ControlledStore : public PresenceStore {
 public:
  absl::StatusOr<StoredState> Load(absl::Time) override {
    return StoredState{};
  }

  absl::Status Commit(absl::Span<const SessionChange> changes) override {
    absl::MutexLock lock(&mu_);
    ++attempts_;
    mu_.Await(absl::Condition(
        +[](bool* blocked) { return !*blocked; }, &blocked_));
    if (failures_left_ > 0) {
      --failures_left_;
      return absl::ResourceExhaustedError("disk full (injected)");
    }
    batches_.emplace_back(changes.begin(), changes.end());
    return absl::OkStatus();
  }

  void Block() {
    absl::MutexLock lock(&mu_);
    blocked_ = true;
  }
  void Unblock() {
    absl::MutexLock lock(&mu_);
    blocked_ = false;
  }
  void FailNext(int n) {
    absl::MutexLock lock(&mu_);
    failures_left_ = n;
  }
  // Waits until Commit has been entered `n` times in all.
  void AwaitAttempts(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return attempts_ >= n;
    };
    mu_.Await(absl::Condition(&reached));
  }
  std::vector<std::vector<SessionChange>> batches() {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  std::vector<int64_t> committed_users() {
    std::vector<int64_t> users;
    for (const auto& batch : batches()) {
      for (const SessionChange& c : batch) users.push_back(c.user_id);
    }
    return users;
  }

 private:
  absl::Mutex mu_;
  bool blocked_ ABSL_GUARDED_BY(mu_) = false;
  int failures_left_ ABSL_GUARDED_BY(mu_) = 0;
  int attempts_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::vector<SessionChange>> batches_ ABSL_GUARDED_BY(mu_);
};

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
  // Order is kept inside the batch.
  EXPECT_EQ(batches[1].front().user_id, 2);
  EXPECT_EQ(batches[1].back().user_id, 101);
}

TEST(StoreWriterTest, RepeatedHeartbeatsOfASessionShareOneRowWrite) {
  ControlledStore store;
  store.Block();
  StoreWriter writer(&store, CommitMode());
  writer.Record(Beat(99));
  store.AwaitAttempts(1);
  const absl::Time t = absl::FromUnixSeconds(1'800'000'000);
  using Kind = SessionChange::Kind;
  writer.Record({Kind::kHeartbeat, 1, "a", t, t});
  writer.Record({Kind::kHeartbeat, 2, "a", t, t});
  writer.Record(
      {Kind::kHeartbeat, 1, "a", t + absl::Seconds(1), t + absl::Seconds(1)});
  writer.Record({Kind::kHeartbeat, 1, "b", t, t});
  writer.Record(
      {Kind::kEndSession, 1, "a", t + absl::Seconds(2), t + absl::Seconds(2)});
  Outcome last;
  writer.WhenDurable(
      writer.Record({Kind::kHeartbeat, 1, "a", t + absl::Seconds(3),
                     t + absl::Seconds(3)}),
      last.Callback());
  store.Unblock();
  last.done.WaitForNotification();
  ASSERT_TRUE(last.status.ok());
  std::vector<std::vector<SessionChange>> batches = store.batches();
  ASSERT_EQ(batches.size(), 2u);
  const std::vector<SessionChange>& b = batches[1];
  ASSERT_EQ(b.size(), 5u);  // 6 recorded, (1,a) merged once
  EXPECT_EQ(b[0].user_id, 1);
  EXPECT_EQ(b[0].session_id, "a");
  EXPECT_EQ(b[0].at, t + absl::Seconds(1));  // the later heartbeat
  EXPECT_EQ(b[1].user_id, 2);
  EXPECT_EQ(b[2].session_id, "b");
  EXPECT_EQ(b[3].kind, Kind::kEndSession);
  // Not merged across the end of the session: it must stay after it.
  EXPECT_EQ(b[4].kind, Kind::kHeartbeat);
  EXPECT_EQ(b[4].at, t + absl::Seconds(3));
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

TEST(StoreWriterTest, TicketZeroIsDurableAtOnce) {
  ControlledStore store;
  StoreWriter writer(&store, CommitMode());
  Outcome outcome;
  writer.WhenDurable(0, outcome.Callback());
  EXPECT_TRUE(outcome.done.HasBeenNotified());
  EXPECT_TRUE(outcome.status.ok());
}

}  // namespace
}  // namespace presence
