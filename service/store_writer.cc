#include "service/store_writer.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <iterator>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "service/log.h"

namespace presence {

StoreWriter::StoreWriter(PresenceStore* store, Options options)
    : store_(store), options_(std::move(options)), thread_([this] { Run(); }) {}

StoreWriter::~StoreWriter() { Stop().IgnoreError(); }

uint64_t StoreWriter::Record(const SessionChange& change) {
  bool wake = false;
  uint64_t ticket;
  {
    absl::MutexLock lock(&mu_);
    ticket = ++last_ticket_;
    // After the end of durability nothing commits again: its WhenDurable()
    // fails, so queueing the change would only hold memory.
    if (end_of_durability_.ok()) pending_.push_back(change);
    wake = std::exchange(idle_, false);
  }
  if (wake) wakeup_.Signal();
  return ticket;
}

absl::Status StoreWriter::accepting() const {
  if (!ended_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  return end_of_durability_;
}

bool StoreWriter::Decided(uint64_t ticket, absl::Status* outcome) const {
  if (ticket <= committed_ticket_) {
    *outcome = absl::OkStatus();
    return true;
  }
  if (!end_of_durability_.ok()) {
    *outcome = end_of_durability_;
    return true;
  }
  if (ticket <= failed_ticket_) {
    *outcome = failure_;
    return true;
  }
  return false;
}

void StoreWriter::WhenDurable(uint64_t ticket, Callback done) {
  if (options_.durability == Durability::kAsync) {
    done(accepting());
    return;
  }
  absl::Status outcome;
  {
    absl::MutexLock lock(&mu_);
    if (ticket == 0) ticket = last_ticket_;
    if (!Decided(ticket, &outcome)) {
      if (!exited_) {
        // In ticket order (after equal tickets), so that the decided ones
        // are always a prefix. Calls record and wait in nearly the same
        // order, so the place is at or near the end.
        auto place = std::upper_bound(
            waiters_.begin(), waiters_.end(), ticket,
            [](uint64_t t, const std::pair<uint64_t, Callback>& waiter) {
              return t < waiter.first;
            });
        waiters_.emplace(place, ticket, std::move(done));
        return;
      }
      outcome = absl::UnavailableError("presenced is shutting down");
    }
  }
  done(outcome);
}

absl::Status StoreWriter::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return stop_status_;
    stopping_ = true;
  }
  wakeup_.Signal();
  thread_.join();
  absl::MutexLock lock(&mu_);
  // After the end of durability nothing was lost at the stop itself, but the
  // store no longer holds what was committed: the caller must hear of it.
  return stop_status_.ok() ? end_of_durability_ : stop_status_;
}

int64_t StoreWriter::commits() const {
  absl::MutexLock lock(&mu_);
  return commits_;
}

uint64_t StoreWriter::changes() const {
  absl::MutexLock lock(&mu_);
  return last_ticket_;
}

uint64_t StoreWriter::pending() const {
  absl::MutexLock lock(&mu_);
  return last_ticket_ - committed_ticket_;
}

void StoreWriter::Coalesce(std::vector<SessionChange>& batch) {
  // Between two ended sessions the heartbeats' row writes commute: in key
  // order they walk the table's b-tree once, where arrival order jumps to a
  // random page each, and repeats of a session become neighbours. The sort
  // is stable, so a merged repeat keeps the stamps of the last one recorded,
  // which is what memory holds (not always the largest: a session forgotten
  // when its window ended comes back with a smaller stamp after the wall
  // clock stepped back). In place: no hash map, no second vector.
  auto key = [](const SessionChange& c) {
    return std::tie(c.user_id, c.session_id);
  };
  auto out = batch.begin();
  for (auto it = batch.begin(); it != batch.end();) {
    if (it->kind != SessionChange::Kind::kHeartbeat) {
      // An ended session stays between the heartbeats before and after it.
      if (out != it) *out = std::move(*it);
      ++out;
      ++it;
      continue;
    }
    const auto run_end =
        std::find_if(it, batch.end(), [](const SessionChange& c) {
          return c.kind != SessionChange::Kind::kHeartbeat;
        });
    std::stable_sort(it, run_end,
                     [&](const SessionChange& a, const SessionChange& b) {
                       return key(a) < key(b);
                     });
    const auto run_out = out;
    for (; it != run_end; ++it) {
      if (out != run_out && key(*(out - 1)) == key(*it)) {
        SessionChange& merged = *(out - 1);
        merged.at = it->at;
        merged.last_seen = it->last_seen;
        merged.last_active = it->last_active;
        continue;
      }
      if (out != it) *out = std::move(*it);
      ++out;
    }
  }
  batch.erase(out, batch.end());
}

void StoreWriter::ReportOutcome(const absl::Status& status,
                                SteadyTime attempted_at, uint64_t uncommitted) {
  if (!status.ok()) {
    ++outage_attempts_;
    if (failing_) return;  // once per outage: a retry every 200 ms would flood
    failing_ = true;
    outage_start_ = attempted_at;
    LogError(absl::StrCat("store commits fail, retrying every ",
                          absl::FormatDuration(options_.retry_backoff),
                          " (changes not durable yet: ", uncommitted,
                          "): ", status.message()));
  } else {
    if (!failing_) return;
    const absl::Duration outage =
        absl::FromChrono(std::chrono::steady_clock::now() - outage_start_);
    LogInfo(absl::StrCat(
        "store commits succeed again after ",
        absl::FormatDuration(absl::Trunc(outage, absl::Milliseconds(1))),
        " (failed attempts: ", outage_attempts_,
        "); the changes kept meanwhile are durable"));
    failing_ = false;
    outage_attempts_ = 0;
  }
  if (options_.on_health_change) options_.on_health_change(status);
}

void StoreWriter::TakeDecidedWaiters(
    std::vector<std::pair<Callback, absl::Status>>* ready) {
  // Whether a ticket is decided only grows with the commits, and a smaller
  // ticket is decided whenever a larger one is: the decided waiters are the
  // front of waiters_.
  absl::Status outcome;
  while (!waiters_.empty() && Decided(waiters_.front().first, &outcome)) {
    ready->emplace_back(std::move(waiters_.front().second), outcome);
    waiters_.pop_front();
  }
}

void StoreWriter::EndDurability(const absl::Status& cause) {
  const absl::Status ended = absl::UnavailableError(absl::StrCat(
      "changes can no longer be made durable, so none is accepted until "
      "presenced is restarted: ",
      cause.message()));
  LogError(absl::StrCat("store: ", ended.message()));
  // Refuse first, so that nothing is answered OK once the health says
  // otherwise; a call that fails meanwhile may find the health still
  // SERVING for as long as it takes to change it.
  {
    absl::MutexLock lock(&mu_);
    end_of_durability_ = ended;
    ended_.store(true, std::memory_order_release);
    pending_.clear();
  }
  if (options_.on_health_change) options_.on_health_change(ended);
  {
    absl::MutexLock lock(&mu_);
    TakeDecidedWaiters(&ready_);
  }
  RunReady();
}

void StoreWriter::RunReady() {
  for (auto& [callback, outcome] : ready_) callback(outcome);
  ready_.clear();  // keeps its capacity for the next commit...
  if (ready_.capacity() > kSpareCapacity) {
    decltype(ready_)().swap(ready_);  // ...unless a burst made it large
  }
}

StoreWriter::Step StoreWriter::NextStep(SteadyTime last_attempt,
                                        SteadyTime next_verify) {
  for (;;) {
    absl::Duration sleep;
    {
      absl::MutexLock lock(&mu_);
      const SteadyTime now = std::chrono::steady_clock::now();
      if (pending_.empty()) {
        if (stopping_) {
          // Under the same lock as the check: a WhenDurable() after this
          // must not wait for a thread that has ended.
          exited_ = true;
          return Step{};  // kExit
        }
        const bool ended = !end_of_durability_.ok();
        if (!ended && now >= next_verify) {
          Step verify;
          verify.kind = Step::Kind::kVerify;
          return verify;
        }
        idle_ = true;
        sleep = ended ? absl::InfiniteDuration()
                      : absl::FromChrono(next_verify - now);
      } else {
        // Async mode gathers changes for commit_interval; a retry waits out
        // the backoff. Stop() cuts either wait short.
        SteadyTime start = now;
        if (failed_ticket_ > committed_ticket_) {
          start =
              last_attempt + absl::ToChronoNanoseconds(options_.retry_backoff);
        } else if (options_.durability == Durability::kAsync) {
          start = last_attempt +
                  absl::ToChronoNanoseconds(options_.commit_interval);
        }
        if (stopping_ || now >= start) {
          Step commit;
          commit.kind = Step::Kind::kCommit;
          commit.batch.swap(pending_);
          pending_.swap(spare_);  // filled without growing, most times
          commit.last_ticket = last_ticket_;
          commit.uncommitted = last_ticket_ - committed_ticket_;
          commit.final_attempt = stopping_;
          return commit;
        }
        sleep = absl::FromChrono(start - now);
      }
    }
    wakeup_.SleepFor(sleep);
    absl::MutexLock lock(&mu_);
    idle_ = false;
  }
}

void StoreWriter::Run() {
  // Long ago: the first commit may start at once. (min() plus an interval
  // does not overflow; steady_clock's epoch, the boot, could be too recent.)
  SteadyTime last_attempt = SteadyTime::min();
  SteadyTime next_verify = std::chrono::steady_clock::now() +
                           absl::ToChronoNanoseconds(options_.verify_interval);
  for (;;) {
    Step step = NextStep(last_attempt, next_verify);
    switch (step.kind) {
      case Step::Kind::kExit:
        return;
      case Step::Kind::kVerify:
        if (absl::Status s = store_->Verify(); !s.ok()) EndDurability(s);
        break;
      case Step::Kind::kCommit:
        last_attempt = std::chrono::steady_clock::now();
        if (!CommitBatch(std::move(step))) return;
        break;
    }
    next_verify = std::chrono::steady_clock::now() +
                  absl::ToChronoNanoseconds(options_.verify_interval);
  }
}

bool StoreWriter::CommitBatch(Step step) {
  const SteadyTime attempted_at = std::chrono::steady_clock::now();
  std::vector<SessionChange>& batch = step.batch;
  const size_t recorded = batch.size();
  Coalesce(batch);
  const absl::Status status = store_->Commit(batch);
  if (options_.observer != nullptr) {
    options_.observer->OnCommit(
        absl::FromChrono(std::chrono::steady_clock::now() - attempted_at),
        recorded, status);
  }
  if (status.code() == absl::StatusCode::kFailedPrecondition) {
    EndDurability(status);
    if (!step.final_attempt) return true;
    absl::MutexLock lock(&mu_);
    stop_status_ = status;
    exited_ = true;
    return false;
  }
  // Before the outcome is published under mu_: from then on WhenDurable()
  // answers with it at once, on the caller's thread, and a caller told
  // UNAVAILABLE must find the health NOT_SERVING. Not for a failed final
  // attempt, which is not retried: Stop() returns its error and the server
  // logs the loss.
  if (status.ok() || !step.final_attempt) {
    ReportOutcome(status, attempted_at, step.uncommitted);
  }

  if (status.ok()) batch.clear();  // the changes' strings, freed outside mu_
  {
    absl::MutexLock lock(&mu_);
    if (status.ok()) {
      committed_ticket_ = step.last_ticket;
      ++commits_;
    } else {
      failed_ticket_ = step.last_ticket;
      failure_ = absl::UnavailableError(absl::StrCat(
          "the change could not be made durable: ", status.message()));
      if (step.final_attempt) {
        stop_status_ = status;
      } else if (end_of_durability_.ok()) {
        // Keep the batch, in order, ahead of what arrived meanwhile.
        batch.insert(batch.end(), std::make_move_iterator(pending_.begin()),
                     std::make_move_iterator(pending_.end()));
        pending_.swap(batch);
      }
    }
    TakeDecidedWaiters(&ready_);
    // The buffer goes back for the changes after the next swap, unless a
    // burst made it large: then it is freed. Empty already after a commit
    // (destroyed before mu_, which Record() takes under a registry shard's
    // lock); after a failure it holds only moved-from changes.
    batch.clear();
    if (batch.capacity() <= kSpareCapacity) spare_.swap(batch);
  }
  RunReady();
  if (!step.final_attempt || status.ok()) return true;
  FailEveryWaiter();
  return false;
}

void StoreWriter::FailEveryWaiter() {
  // Nothing will commit again, so nobody may wait for it.
  std::deque<std::pair<uint64_t, Callback>> left;
  absl::Status outcome;
  {
    absl::MutexLock lock(&mu_);
    exited_ = true;
    left.swap(waiters_);
    outcome = failure_;
  }
  for (auto& [ticket, callback] : left) callback(outcome);
}

}  // namespace presence
