#include "service/event_hub.h"

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "service/proto_time.h"

namespace presence {
namespace {

std::string NewEpoch() {
  absl::BitGen gen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
}

v1::Reason ToProto(PresenceEvent::Reason reason) {
  switch (reason) {
    case PresenceEvent::Reason::kHeartbeat:
      return v1::REASON_HEARTBEAT;
    case PresenceEvent::Reason::kMarkOffline:
      return v1::REASON_MARK_OFFLINE;
    case PresenceEvent::Reason::kExpired:
      return v1::REASON_EXPIRED;
  }
  return v1::REASON_UNSPECIFIED;
}

}  // namespace

EventHub::EventHub(const Clock& clock, Options options)
    : clock_(clock),
      options_(options),
      epoch_(NewEpoch()),
      dispatcher_([this] { DispatchLoop(); }) {}

EventHub::~EventHub() { Stop(); }

void EventHub::SeedOnline(int64_t user_id) {
  absl::MutexLock lock(&mu_);
  online_.insert(user_id);
}

void EventHub::Publish(const PresenceEvent& event) {
  absl::MutexLock lock(&mu_);
  const SequencedEvent e{++last_sequence_, event};
  ++events_[static_cast<size_t>(event.reason)];
  ring_.push_back(e);
  if (ring_.size() > static_cast<size_t>(options_.ring_size)) {
    ring_.pop_front();
  }
  if (event.online) {
    online_.insert(event.user_id);
  } else {
    online_.erase(event.user_id);
  }
  for (WatchState* watch : everyone_) Deliver(*watch, e);
  if (auto it = by_user_.find(event.user_id); it != by_user_.end()) {
    for (WatchState* watch : it->second) Deliver(*watch, e);
  }
}

void EventHub::Deliver(WatchState& watch, const SequencedEvent& e) {
  // A watch waiting for a Snapshot gets this event inside it.
  if (watch.closed || watch.needs_snapshot) return;
  if (watch.queue.size() >= static_cast<size_t>(options_.queue_size)) {
    watch.queue.clear();
    watch.needs_snapshot = true;
    ++overflows_;
  } else {
    watch.queue.push_back(e);
  }
  Wake(watch);
}

void EventHub::Wake(WatchState& watch) {
  if (watch.wake_pending) return;
  watch.wake_pending = true;
  ready_.push_back(watch.sink);
}

absl::StatusOr<EventHub::WatchId> EventHub::Watch(
    const WatchRequest& request, std::weak_ptr<WatchSink> sink) {
  absl::MutexLock lock(&mu_);
  if (closed_) return close_status_;
  if (static_cast<int>(watches_.size()) >= options_.max_watchers) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "presenced serves at most %d watchers (--max_watchers); retry later "
        "with backoff",
        options_.max_watchers));
  }
  auto watch = std::make_unique<WatchState>();
  watch->user_ids = request.user_ids;
  std::sort(watch->user_ids.begin(), watch->user_ids.end());
  watch->user_ids.erase(
      std::unique(watch->user_ids.begin(), watch->user_ids.end()),
      watch->user_ids.end());
  watch->sink = std::move(sink);

  const bool resuming = request.resume_after > 0 || !request.epoch.empty();
  if (resuming) {
    // Resumable if nothing after resume_after has left the ring.
    const uint64_t oldest_kept =
        ring_.empty() ? last_sequence_ + 1 : ring_.front().sequence;
    const bool resumable = request.epoch == epoch_ &&
                           request.resume_after <= last_sequence_ &&
                           request.resume_after + 1 >= oldest_kept;
    if (resumable) {
      for (auto it = ring_.begin() + (request.resume_after + 1 - oldest_kept);
           it != ring_.end(); ++it) {
        if (watch->user_ids.empty() ||
            std::binary_search(watch->user_ids.begin(), watch->user_ids.end(),
                               it->event.user_id)) {
          watch->queue.push_back(*it);
        }
      }
      if (watch->queue.size() > static_cast<size_t>(options_.queue_size)) {
        watch->queue.clear();
        watch->needs_snapshot = true;
        ++overflows_;
      }
    } else {
      watch->needs_snapshot = true;
    }
  } else {
    watch->needs_snapshot = request.send_snapshot;
  }

  WatchState* raw = watch.get();
  const WatchId id = next_id_++;
  watches_.emplace(id, std::move(watch));
  if (raw->user_ids.empty()) {
    everyone_.insert(raw);
  } else {
    for (int64_t user : raw->user_ids) by_user_[user].push_back(raw);
  }
  return id;
}

void EventHub::FillSnapshot(const WatchState& watch,
                            v1::WatchPresenceResponse* out) {
  out->set_sequence(last_sequence_);
  out->set_epoch(epoch_);
  v1::Snapshot* snapshot = out->mutable_snapshot();
  *snapshot->mutable_server_time() = ToProto(clock_.Now());
  if (watch.user_ids.empty()) {
    // Sorted by Pop() after the hub's mutex is released.
    snapshot->mutable_online_users()->Add(online_.begin(), online_.end());
  } else {
    for (int64_t user : watch.user_ids) {
      if (online_.contains(user)) snapshot->add_online_users(user);
    }
  }
}

EventHub::PopResult EventHub::Pop(WatchId id, v1::WatchPresenceResponse* out,
                                  absl::Status* status) {
  const PopResult result = PopLocked(id, out, status);
  if (result == PopResult::kMessage && out->has_snapshot()) {
    // Sorting a snapshot of everyone is the costly part: not under mu_,
    // where it would hold up every Publish (and so every heartbeat that
    // changes a user's status).
    auto* users = out->mutable_snapshot()->mutable_online_users();
    std::sort(users->begin(), users->end());
  }
  return result;
}

EventHub::PopResult EventHub::PopLocked(WatchId id,
                                        v1::WatchPresenceResponse* out,
                                        absl::Status* status) {
  absl::MutexLock lock(&mu_);
  auto it = watches_.find(id);
  if (it == watches_.end()) {
    *status = absl::NotFoundError("no such watch");
    return PopResult::kClosed;
  }
  WatchState& watch = *it->second;
  out->Clear();
  if (watch.closed) {
    *status = watch.closed_status;
    return PopResult::kClosed;
  }
  if (watch.needs_snapshot) {
    watch.needs_snapshot = false;
    watch.queue.clear();
    FillSnapshot(watch, out);
    return PopResult::kMessage;
  }
  if (watch.queue.empty()) {
    watch.wake_pending = false;
    return PopResult::kEmpty;
  }
  const SequencedEvent e = watch.queue.front();
  watch.queue.pop_front();
  out->set_sequence(e.sequence);
  out->set_epoch(epoch_);
  v1::PresenceChange* change = out->mutable_change();
  change->set_user_id(e.event.user_id);
  change->set_status(e.event.online ? v1::STATUS_ONLINE : v1::STATUS_OFFLINE);
  *change->mutable_at() = ToProto(e.event.at);
  change->set_reason(ToProto(e.event.reason));
  return PopResult::kMessage;
}

void EventHub::Unwatch(WatchId id) {
  absl::MutexLock lock(&mu_);
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  WatchState* watch = it->second.get();
  if (watch->user_ids.empty()) {
    everyone_.erase(watch);
  } else {
    for (int64_t user : watch->user_ids) {
      auto users = by_user_.find(user);
      auto& list = users->second;
      list.erase(std::find(list.begin(), list.end(), watch));
      if (list.empty()) by_user_.erase(users);
    }
  }
  watches_.erase(it);
}

void EventHub::Close(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  close_status_ = status;
  for (auto& [id, watch] : watches_) {
    watch->closed = true;
    watch->closed_status = status;
    watch->queue.clear();
    Wake(*watch);
  }
}

void EventHub::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  dispatcher_.join();
}

void EventHub::DispatchLoop() {
  for (;;) {
    std::vector<std::weak_ptr<WatchSink>> ready;
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !ready_.empty() || stopping_;
      };
      mu_.Await(absl::Condition(&has_work));
      if (ready_.empty()) return;  // stopping
      ready.swap(ready_);
    }
    // No lock held: the sink pulls with Pop() and may call into gRPC.
    for (const std::weak_ptr<WatchSink>& weak : ready) {
      if (std::shared_ptr<WatchSink> sink = weak.lock()) sink->OnReady();
    }
  }
}

int EventHub::watchers() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(watches_.size());
}

uint64_t EventHub::last_sequence() const {
  absl::MutexLock lock(&mu_);
  return last_sequence_;
}

int64_t EventHub::overflows() const {
  absl::MutexLock lock(&mu_);
  return overflows_;
}

EventHub::Stats EventHub::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats;
  stats.watchers = static_cast<int>(watches_.size());
  stats.events = events_;
  stats.overflows = overflows_;
  return stats;
}

}  // namespace presence
