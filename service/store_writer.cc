#include "service/store_writer.h"

#include <chrono>
#include <iterator>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "service/log.h"

namespace presence {

StoreWriter::StoreWriter(PresenceStore* store, Options options)
    : store_(store), options_(std::move(options)), thread_([this] { Run(); }) {}

StoreWriter::~StoreWriter() { Stop().IgnoreError(); }

uint64_t StoreWriter::Record(const SessionChange& change) {
  absl::MutexLock lock(&mu_);
  pending_.push_back(change);
  return ++last_ticket_;
}

bool StoreWriter::Decided(uint64_t ticket, absl::Status* outcome) const {
  if (ticket <= committed_ticket_) {
    *outcome = absl::OkStatus();
    return true;
  }
  if (ticket <= failed_ticket_) {
    *outcome = failure_;
    return true;
  }
  return false;
}

void StoreWriter::WhenDurable(uint64_t ticket, Callback done) {
  if (ticket == 0 || options_.durability == Durability::kAsync) {
    done(absl::OkStatus());
    return;
  }
  absl::Status outcome;
  {
    absl::MutexLock lock(&mu_);
    if (!Decided(ticket, &outcome)) {
      if (!exited_) {
        waiters_.emplace_back(ticket, std::move(done));
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
  thread_.join();
  absl::MutexLock lock(&mu_);
  return stop_status_;
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
  std::vector<SessionChange> out;
  out.reserve(batch.size());  // no reallocation: the keys point into `out`
  absl::flat_hash_map<std::pair<int64_t, absl::string_view>, size_t> beat;
  for (SessionChange& change : batch) {
    if (change.kind != SessionChange::Kind::kHeartbeat) {
      // A heartbeat after an ended session must stay after it.
      beat.clear();
      out.push_back(std::move(change));
      continue;
    }
    auto it = beat.find(
        std::make_pair(change.user_id, absl::string_view(change.session_id)));
    if (it != beat.end()) {
      SessionChange& earlier = out[it->second];
      earlier.at = change.at;
      earlier.last_seen = change.last_seen;
      continue;
    }
    out.push_back(std::move(change));
    beat.emplace(std::make_pair(out.back().user_id,
                                absl::string_view(out.back().session_id)),
                 out.size() - 1);
  }
  batch.swap(out);
}

void StoreWriter::ReportOutcome(const absl::Status& status,
                                absl::Time attempted_at, uint64_t uncommitted) {
  const bool failing = outage_start_ != absl::InfinitePast();
  if (!status.ok()) {
    ++outage_attempts_;
    if (failing) return;  // once per outage: a retry every 200 ms would flood
    outage_start_ = attempted_at;
    LogError(absl::StrCat("store commits fail, retrying every ",
                          absl::FormatDuration(options_.retry_backoff),
                          " (changes not durable yet: ", uncommitted,
                          "): ", status.message()));
  } else {
    if (!failing) return;
    LogInfo(
        absl::StrCat("store commits succeed again after ",
                     absl::FormatDuration(absl::Trunc(
                         absl::Now() - outage_start_, absl::Milliseconds(1))),
                     " (failed attempts: ", outage_attempts_,
                     "); the changes kept meanwhile are durable"));
    outage_start_ = absl::InfinitePast();
    outage_attempts_ = 0;
  }
  if (options_.on_health_change) options_.on_health_change(status);
}

void StoreWriter::Run() {
  absl::Time last_attempt = absl::InfinitePast();
  for (;;) {
    std::vector<SessionChange> batch;
    uint64_t batch_last_ticket;
    uint64_t uncommitted;  // recorded up to the batch's end, not committed
    bool final_attempt;
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !pending_.empty() || stopping_;
      };
      mu_.Await(absl::Condition(&has_work));
      if (pending_.empty()) {  // stopping, nothing left
        exited_ = true;
        return;
      }

      // Async mode gathers changes for commit_interval; a retry waits out the
      // backoff. Stop() cuts either wait short.
      absl::Time start = absl::InfinitePast();
      if (failed_ticket_ > committed_ticket_) {
        start = last_attempt + options_.retry_backoff;
      } else if (options_.durability == Durability::kAsync) {
        start = last_attempt + options_.commit_interval;
      }
      mu_.AwaitWithDeadline(absl::Condition(&stopping_), start);

      batch.swap(pending_);
      batch_last_ticket = last_ticket_;
      uncommitted = last_ticket_ - committed_ticket_;
      final_attempt = stopping_;
    }

    last_attempt = absl::Now();
    const size_t recorded = batch.size();
    Coalesce(batch);
    const auto started = std::chrono::steady_clock::now();
    const absl::Status status = store_->Commit(batch);
    if (options_.observer != nullptr) {
      options_.observer->OnCommit(
          absl::FromChrono(std::chrono::steady_clock::now() - started),
          recorded, status);
    }
    // Before the outcome is published under mu_: from then on WhenDurable()
    // answers with it at once, on the caller's thread, and a caller told
    // UNAVAILABLE must find the health NOT_SERVING. Not for a failed final
    // attempt, which is not retried: Stop() returns its error and the server
    // logs the loss.
    if (status.ok() || !final_attempt) {
      ReportOutcome(status, last_attempt, uncommitted);
    }

    std::vector<std::pair<Callback, absl::Status>> ready;
    {
      absl::MutexLock lock(&mu_);
      if (status.ok()) {
        committed_ticket_ = batch_last_ticket;
        ++commits_;
      } else {
        failed_ticket_ = batch_last_ticket;
        failure_ = absl::UnavailableError(absl::StrCat(
            "the change could not be made durable: ", status.message()));
        if (final_attempt) {
          stop_status_ = status;
        } else {
          // Keep the batch, in order, ahead of what arrived meanwhile.
          batch.insert(batch.end(), std::make_move_iterator(pending_.begin()),
                       std::make_move_iterator(pending_.end()));
          pending_.swap(batch);
        }
      }
      std::vector<std::pair<uint64_t, Callback>> still_waiting;
      for (auto& [ticket, callback] : waiters_) {
        absl::Status outcome;
        if (Decided(ticket, &outcome)) {
          ready.emplace_back(std::move(callback), outcome);
        } else {
          still_waiting.emplace_back(ticket, std::move(callback));
        }
      }
      waiters_.swap(still_waiting);
    }
    for (auto& [callback, outcome] : ready) callback(outcome);
    if (final_attempt && !status.ok()) {
      // Nothing will commit again: nobody may wait for it.
      std::vector<std::pair<uint64_t, Callback>> left;
      absl::Status outcome;
      {
        absl::MutexLock lock(&mu_);
        exited_ = true;
        left.swap(waiters_);
        outcome = failure_;
      }
      for (auto& [ticket, callback] : left) callback(outcome);
      return;
    }
  }
}

}  // namespace presence
