#ifndef PRESENCE_SERVICE_STORE_WRITER_H_
#define PRESENCE_SERVICE_STORE_WRITER_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/presence_store.h"
#include "service/session_change.h"
#include "service/wakeup.h"

namespace presence {

enum class Durability {
  // A change is acknowledged once committed: WhenDurable waits for it.
  kCommit,
  // A change is acknowledged at once and committed within commit_interval.
  kAsync,
};

// Told of every commit attempt of a StoreWriter (e.g. by metrics).
class CommitObserver {
 public:
  virtual ~CommitObserver() = default;
  // Called on the writer thread with no lock held, after the attempt and
  // before any caller waiting on it is told. `changes`: the changes recorded
  // in the batch, before coalescing.
  virtual void OnCommit(absl::Duration duration, size_t changes,
                        const absl::Status& status) = 0;
};

// The single writer thread in front of a PresenceStore, with group commit:
// every change recorded while one transaction runs goes into the next one,
// so the number of transactions is bounded by the store's speed, not by the
// request rate.
//
// Within a batch, heartbeats of the same session are coalesced into one row
// write (the last one recorded), as long as no ended session comes between
// them, and the heartbeats between two ended sessions are written in key
// order.
//
// A batch that fails to commit stays queued and is retried (together with
// newer changes) after a backoff, so memory and disk converge once the fault
// is gone; the callers waiting on it are told UNAVAILABLE at once. An outage
// is logged when it starts and when it ends, not once per retry.
//
// A store that reports it can never commit again (FAILED_PRECONDITION from
// Commit() or Verify(): its database file was deleted or replaced) ends
// durability for good: every change not committed by then is answered
// UNAVAILABLE, accepting() tells callers to refuse new changes, and the
// health stays failed until presenced is restarted. An idle writer asks the
// store every verify_interval, so this is noticed without waiting for a
// change.
//
// Every wait of the writer thread (commit_interval, the retry backoff, the
// idle check) runs on the monotonic clock: stepping the wall clock neither
// stalls nor hurries commits.
//
// Thread-safe. Callbacks run on the writer thread, with no lock held, except
// that WhenDurable() may call its callback at once on the calling thread.
class StoreWriter : public ChangeSink {
 public:
  struct Options {
    Durability durability = Durability::kCommit;
    // kAsync: the longest a recorded change waits before its commit starts.
    absl::Duration commit_interval = absl::Milliseconds(100);
    // Wait between attempts to commit a batch that failed.
    absl::Duration retry_backoff = absl::Milliseconds(200);
    // How long an idle writer waits before it asks the store whether it can
    // still commit (PresenceStore::Verify).
    absl::Duration verify_interval = absl::Seconds(1);
    // Null: nobody is told. Must outlive the writer.
    CommitObserver* observer = nullptr;
    // Called on the writer thread, with no lock held, when commits start to
    // fail (with the first failed attempt's error) and when one succeeds
    // again (with OK): e.g. the server's health. Before any caller learns
    // that attempt's outcome. Empty: nobody is told.
    std::function<void(const absl::Status&)> on_health_change;
  };

  // `store` must outlive the writer. Starts the writer thread.
  StoreWriter(PresenceStore* store, Options options);
  // Stop()s.
  ~StoreWriter() override;
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  uint64_t Record(const SessionChange& change) override;

  // OK while changes can be made durable; once the store reported that it
  // never can again, UNAVAILABLE saying why, for good. A change refused here
  // must not be applied at all. One atomic load while OK.
  absl::Status accepting() const;

  // Calls `done` with OK once the change behind `ticket` is committed, or with
  // UNAVAILABLE if an attempt to commit it failed.
  //
  // Ticket 0 stands for a call that changed nothing itself. What it found may
  // still be another call's change that is not durable yet (the first
  // attempt of the same call, retried after its commit failed, say), so it
  // waits for every change recorded so far and fails like them: OK always
  // means that what the caller was told is durable.
  //
  // kAsync answers at once (OK, unless durability ended for good), on the
  // calling thread; so does a ticket already decided.
  void WhenDurable(uint64_t ticket,
                   absl::AnyInvocable<void(absl::Status)> done);

  // Commits what is queued (one attempt), then ends the thread. Returns the
  // error if that last commit failed (those changes are lost), or the end of
  // durability if the store reported one (see accepting()). Idempotent.
  absl::Status Stop();

  // Number of transactions committed so far, and the changes recorded.
  int64_t commits() const;
  uint64_t changes() const;
  // Changes recorded and not committed yet (queued, or in the transaction
  // being committed).
  uint64_t pending() const;

 private:
  using Callback = absl::AnyInvocable<void(absl::Status)>;
  using SteadyTime = std::chrono::steady_clock::time_point;

  // What the writer thread does next.
  struct Step {
    enum class Kind { kCommit, kVerify, kExit };
    Kind kind = Kind::kExit;
    // kCommit: the changes, the ticket of the last one, the changes recorded
    // up to it and not committed before, and whether Stop() was called.
    std::vector<SessionChange> batch;
    uint64_t last_ticket = 0;
    uint64_t uncommitted = 0;
    bool final_attempt = false;
  };

  void Run();
  // Sleeps (on wakeup_) until there is something to do. `last_attempt`: when
  // the last commit attempt began; `next_verify`: when an idle writer should
  // next ask the store.
  Step NextStep(SteadyTime last_attempt, SteadyTime next_verify);
  // Commits step.batch and tells the waiters. False if the thread must end.
  bool CommitBatch(Step step);
  // Durability has ended for good (`cause` from the store): refuses every
  // change not committed yet and every later one.
  void EndDurability(const absl::Status& cause);
  // Merges repeated heartbeats of a session within `batch`, in place, and
  // sorts each run of heartbeats by session.
  static void Coalesce(std::vector<SessionChange>& batch);
  // Logs the start and the end of an outage and calls on_health_change.
  // `attempted_at`: when the attempt began; `uncommitted`: the changes
  // recorded up to the attempt and not committed before it.
  void ReportOutcome(const absl::Status& status, SteadyTime attempted_at,
                     uint64_t uncommitted);
  // False while `ticket` waits for its (next) commit attempt; else true, with
  // the outcome of its last attempt in *outcome.
  bool Decided(uint64_t ticket, absl::Status* outcome) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves the waiters whose tickets are decided now, with their outcomes,
  // to *ready.
  void TakeDecidedWaiters(std::vector<std::pair<Callback, absl::Status>>* ready)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writer thread, no lock held: calls back the waiters taken into ready_.
  void RunReady();
  // The final attempt failed: the thread ends, and every waiter left is
  // answered with the failure.
  void FailEveryWaiter();

  PresenceStore* const store_;
  const Options options_;

  mutable absl::Mutex mu_;
  std::vector<SessionChange> pending_ ABSL_GUARDED_BY(mu_);
  // The last commit's buffer, emptied, to become pending_ at the next one:
  // two buffers take turns instead of a vector grown from nothing per commit
  // (with large blocks mmapped, that was page faults on every commit).
  static constexpr size_t kSpareCapacity = 16 * 1024;
  std::vector<SessionChange> spare_ ABSL_GUARDED_BY(mu_);
  uint64_t last_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  // Every ticket <= committed_ticket_ is durable.
  uint64_t committed_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  // Tickets in (committed_ticket_, failed_ticket_] failed their last attempt
  // with failure_ and wait for a retry.
  uint64_t failed_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  // Set once, when durability ends for good (see EndDurability); ended_ is
  // its flag for readers that do not take mu_.
  absl::Status end_of_durability_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> ended_{false};
  // By ticket, ascending.
  std::deque<std::pair<uint64_t, Callback>> waiters_ ABSL_GUARDED_BY(mu_);
  // The writer thread sleeps for new changes: Record() must wake it.
  bool idle_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool exited_ ABSL_GUARDED_BY(mu_) = false;  // the thread has ended
  absl::Status stop_status_ ABSL_GUARDED_BY(mu_);
  int64_t commits_ ABSL_GUARDED_BY(mu_) = 0;

  // Writer thread only: whether an outage is in progress, when it began, and
  // its failed attempts.
  bool failing_ = false;
  SteadyTime outage_start_;
  int64_t outage_attempts_ = 0;
  // Writer thread only: the waiters decided by the last attempt, kept to
  // reuse its storage.
  std::vector<std::pair<Callback, absl::Status>> ready_;

  Wakeup wakeup_;        // the writer thread sleeps here
  absl::Mutex stop_mu_;  // serialises Stop()
  std::thread thread_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_STORE_WRITER_H_
