// Stores for fault injection at the PresenceStore seam
// (service/presence_store.h): commits that block, fail, or fail as on a full
// disk, in front of a real store or of none.
#ifndef PRESENCE_TESTS_STORE_FAKES_H_
#define PRESENCE_TESTS_STORE_FAKES_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "service/presence_store.h"
#include "service/session_change.h"

namespace presence::testing {

// What SqlitePresenceStore::Commit returns when the disk is full (ENOSPC
// gives SQLITE_FULL).
inline constexpr char kDiskFull[] =
    "cannot commit presence changes: database or disk is full";

// Where a fake's commits wait while the test holds them. Thread-safe.
class CommitGate {
 public:
  void Hold();
  void Release();
  // Counts one commit as entered, waits while held, then runs `commit` with
  // the gate's lock still held: a commit that AwaitEntered() saw enter is
  // either held or done, never half-way.
  absl::Status Pass(absl::FunctionRef<absl::Status()> commit);
  // Waits until Pass() has been entered `n` times in all.
  void AwaitEntered(int n);

 private:
  absl::Mutex mu_;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  int entered_ ABSL_GUARDED_BY(mu_) = 0;
};

// A store whose commits the test controls, with no storage behind it: it
// holds them (Block), fails them (FailNext), or acts as if its file had been
// deleted (SetGone); what it commits is kept in memory.
class ControlledStore : public PresenceStore {
 public:
  absl::StatusOr<StoredState> Load(absl::Time) override;
  absl::Status Commit(absl::Span<const SessionChange> changes) override;
  absl::Status Verify() override;

  // From now on the store can never commit again, as if its file had been
  // deleted.
  void SetGone();
  int verifications();

  void Block() { gate_.Hold(); }
  void Unblock() { gate_.Release(); }
  // The next `n` commits fail with RESOURCE_EXHAUSTED "disk full (injected)".
  void FailNext(int n);
  // Waits until Commit has been entered `n` times in all.
  void AwaitAttempts(int n) { gate_.AwaitEntered(n); }
  // The batches committed, in order.
  std::vector<std::vector<SessionChange>> batches();
  // The users of every committed change, in order.
  std::vector<int64_t> committed_users();

 private:
  CommitGate gate_;
  absl::Mutex mu_;
  int failures_left_ ABSL_GUARDED_BY(mu_) = 0;
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  int verifications_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::vector<SessionChange>> batches_ ABSL_GUARDED_BY(mu_);
};

// A store with no storage behind it whose first `failures` commits fail as
// on a full disk (UNAVAILABLE kDiskFull).
class FlakyStore : public PresenceStore {
 public:
  explicit FlakyStore(int failures) : failures_left_(failures) {}

  absl::StatusOr<StoredState> Load(absl::Time) override;
  absl::Status Commit(absl::Span<const SessionChange>) override;
  int attempts();

 private:
  absl::Mutex mu_;
  int failures_left_ ABSL_GUARDED_BY(mu_);
  int attempts_ ABSL_GUARDED_BY(mu_) = 0;
};

// Load and Commit of another store (a real SQLite one), for the fakes below
// that change only when or whether a commit reaches it. Verify() is
// PresenceStore's: always OK.
class WrappedStore : public PresenceStore {
 public:
  explicit WrappedStore(std::unique_ptr<PresenceStore> store)
      : store_(std::move(store)) {}

  absl::StatusOr<StoredState> Load(absl::Time live_after) override;
  absl::Status Commit(absl::Span<const SessionChange> changes) override;

 private:
  const std::unique_ptr<PresenceStore> store_;
};

// A real store whose commits fail as on a full disk (UNAVAILABLE kDiskFull)
// while full(). Thread-safe.
class DiskFullStore : public WrappedStore {
 public:
  using WrappedStore::WrappedStore;

  absl::Status Commit(absl::Span<const SessionChange> changes) override;

  void set_full(bool full) { full_ = full; }
  int attempts() const { return attempts_; }

 private:
  std::atomic<bool> full_{false};
  std::atomic<int> attempts_{0};
};

// A real store whose commits wait while held.
class HeldStore : public WrappedStore {
 public:
  using WrappedStore::WrappedStore;

  absl::Status Commit(absl::Span<const SessionChange> changes) override;

  void Hold() { gate_.Hold(); }
  void Release() { gate_.Release(); }
  // Waits until Commit has been entered `n` times in all.
  void AwaitEntered(int n) { gate_.AwaitEntered(n); }

 private:
  CommitGate gate_;
};

}  // namespace presence::testing

#endif  // PRESENCE_TESTS_STORE_FAKES_H_
