#include "tools/soak/watcher_view.h"

namespace presence::soak {

presence::WatcherCallbacks View::Callbacks() {
  presence::WatcherCallbacks callbacks;
  callbacks.on_message = [this](const v1::WatchPresenceResponse& m) {
    OnMessage(m);
  };
  callbacks.on_snapshot = [this](const v1::Snapshot& s) { OnSnapshot(s); };
  callbacks.on_change = [this](const v1::PresenceChange& c) { OnChange(c); };
  callbacks.on_disconnect = [this](const absl::Status& status,
                                   absl::Duration retry_in) {
    OnDisconnect(status, retry_in);
  };
  return callbacks;
}

bool View::has_snapshot() const {
  absl::MutexLock lock(&mu_);
  return has_snapshot_;
}

bool View::Contains(int64_t user) const {
  absl::MutexLock lock(&mu_);
  return online_.contains(user);
}

absl::flat_hash_set<int64_t> View::Online() const {
  absl::MutexLock lock(&mu_);
  return online_;
}

// Sequences of changes are checked in OnChange, one change at a time: a
// message may carry a batch of them, and then has its last one's.
void View::OnMessage(const v1::WatchPresenceResponse& message) {
  const bool same_epoch = !epoch_.empty() && message.epoch() == epoch_;
  if (!epoch_.empty() && !same_epoch) ++totals_->epoch_changes;
  if (message.has_snapshot()) {
    if (same_epoch && message.sequence() < sequence_) {
      ++totals_->sequence_errors;
    }
    sequence_ = message.sequence();
  }
  epoch_ = message.epoch();
  if (reconnected_) {
    reconnected_ = false;
    ++(message.has_snapshot() ? totals_->resnapshotted : totals_->resumed);
  }
}

void View::OnSnapshot(const v1::Snapshot& snapshot) {
  ++totals_->snapshots;
  absl::MutexLock lock(&mu_);
  online_.clear();
  online_.insert(snapshot.online_users().begin(),
                 snapshot.online_users().end());
  has_snapshot_ = true;
}

void View::OnChange(const v1::PresenceChange& change) {
  ++totals_->changes;
  // The change's own sequence (presence::Watcher sets it for a presenced
  // that sends none). Everyone's stream has every sequence number; a
  // filtered one gaps.
  if (everyone_ ? change.sequence() != sequence_ + 1
                : change.sequence() <= sequence_) {
    ++totals_->sequence_errors;
  }
  sequence_ = change.sequence();
  if (change.user_id() == kSentinelUser) {
    totals_->sentinel_sequence = change.sequence();
  }
  absl::MutexLock lock(&mu_);
  const bool changed = change.status() == v1::STATUS_ONLINE
                           ? online_.insert(change.user_id()).second
                           : online_.erase(change.user_id()) == 1;
  if (!changed) ++totals_->redundant_changes;
}

void View::OnDisconnect(const absl::Status& status, absl::Duration retry_in) {
  ++totals_->disconnects;
  calls_->Record(CallStats::kWatch, status.code());
  if (retry_in == absl::InfiniteDuration()) ++totals_->gave_up;
  if (epoch_.empty()) {
    ++totals_->before_first_message;
  } else {
    reconnected_ = true;
  }
}

}  // namespace presence::soak
