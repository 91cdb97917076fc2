#include "service/event_hub.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_format.h"

namespace presence {
namespace {

std::string NewEpoch() {
  absl::BitGen gen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
}

int DispatchThreads(int wanted) {
  if (wanted > 0) return wanted;
  return std::max(2, static_cast<int>(std::thread::hardware_concurrency()));
}

// Wakes a dispatcher takes at once: small enough that a round of thousands
// is shared between the dispatchers, large enough to take the lock rarely.
constexpr size_t kWakeSlice = 32;

}  // namespace

EventHub::EventHub(const Clock& clock, Options options)
    : clock_(clock), options_(options), epoch_(NewEpoch()) {
  const int threads = DispatchThreads(options_.dispatch_threads);
  for (int i = 0; i < threads; ++i) {
    dispatchers_.emplace_back([this] { DispatchLoop(); });
  }
}

EventHub::~EventHub() { Stop(); }

void EventHub::SeedOnline(int64_t user_id) {
  absl::MutexLock lock(&mu_);
  online_.insert(user_id);
}

uint64_t EventHub::OldestKeptLocked() const {
  const uint64_t size = static_cast<uint64_t>(options_.ring_size);
  return last_sequence_ > size ? last_sequence_ - size + 1 : 1;
}

const SequencedEvent& EventHub::RingAt(uint64_t sequence) const {
  return ring_[(sequence - 1) % static_cast<uint64_t>(options_.ring_size)];
}

void EventHub::Publish(const PresenceEvent& event) {
  absl::MutexLock lock(&mu_);
  const SequencedEvent e{++last_sequence_, event};
  ++events_[static_cast<size_t>(event.reason)];
  if (ring_.size() < static_cast<size_t>(options_.ring_size)) {
    ring_.push_back(e);
  } else {
    ring_[(e.sequence - 1) % ring_.size()] = e;
  }
  if (event.online) {
    online_.insert(event.user_id);
  } else {
    online_.erase(event.user_id);
  }
  // Watches of everyone read the ring themselves: only the sleeping ones
  // need this event's news, all of them in one move.
  WakeParked();
  if (auto it = by_user_.find(event.user_id); it != by_user_.end()) {
    for (WatchState* watch : it->second) Deliver(*watch, e);
  }
}

void EventHub::WakeParked() {
  if (parked_.empty()) return;
  ++parked_round_;
  absl::MutexLock lock(&wake_mu_);
  FlushSinglesLocked();  // the filtered wakes before it come first
  ready_rounds_.push_back(WakeRound{std::move(parked_), 0});
  parked_.clear();  // a moved-from vector is valid but unspecified
}

void EventHub::FlushSinglesLocked() {
  if (ready_singles_.empty()) return;
  ready_rounds_.push_back(WakeRound{std::move(ready_singles_), 0});
  ready_singles_.clear();  // a moved-from vector is valid but unspecified
}

void EventHub::Deliver(WatchState& watch, const SequencedEvent& e) {
  // A watch waiting for a Snapshot gets this event inside it.
  if (watch.closed || watch.needs_snapshot) return;
  if (e.event.status_only && !watch.rich) return;
  if (watch.queue->size() >= static_cast<size_t>(options_.queue_size)) {
    watch.queue->clear();
    watch.needs_snapshot = true;
    ++overflows_;
  } else {
    watch.queue->push_back(e);
  }
  Wake(watch);
}

void EventHub::Wake(WatchState& watch) {
  if (watch.wake_pending) return;
  watch.wake_pending = true;
  absl::MutexLock lock(&wake_mu_);
  ready_singles_.push_back(watch.sink);
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
  watch->rich = request.rich_status;
  const bool everyone = watch->user_ids.empty();
  watch->cursor = last_sequence_ + 1;
  if (!everyone) watch->queue = std::make_unique<std::deque<SequencedEvent>>();

  const bool resuming = request.resume_after > 0 || !request.epoch.empty();
  if (resuming) {
    // Resumable if nothing after resume_after has left the ring.
    const bool resumable = request.epoch == epoch_ &&
                           request.resume_after <= last_sequence_ &&
                           request.resume_after + 1 >= OldestKeptLocked();
    if (!resumable) {
      watch->needs_snapshot = true;
    } else if (everyone) {
      watch->cursor = request.resume_after + 1;
    } else {
      for (uint64_t s = request.resume_after + 1; s <= last_sequence_; ++s) {
        const SequencedEvent& e = RingAt(s);
        if ((watch->rich || !e.event.status_only) &&
            std::binary_search(watch->user_ids.begin(), watch->user_ids.end(),
                               e.event.user_id)) {
          watch->queue->push_back(e);
        }
      }
      if (watch->queue->size() > static_cast<size_t>(options_.queue_size)) {
        watch->queue->clear();
        watch->needs_snapshot = true;
        ++overflows_;
      }
    }
  } else {
    watch->needs_snapshot = request.send_snapshot;
  }

  WatchState* raw = watch.get();
  const WatchId id = next_id_++;
  watches_.emplace(id, std::move(watch));
  for (int64_t user : raw->user_ids) by_user_[user].push_back(raw);
  return id;
}

void EventHub::FillSnapshot(WatchState& watch, WatchMessage* out) {
  watch.needs_snapshot = false;
  if (watch.queue) watch.queue->clear();
  watch.cursor = last_sequence_ + 1;
  out->kind = WatchMessage::Kind::kSnapshot;
  out->sequence = last_sequence_;
  out->snapshot_time = clock_.Now();
  if (watch.user_ids.empty()) {
    out->online_users.assign(online_.begin(), online_.end());
  } else {
    for (int64_t user : watch.user_ids) {
      if (online_.contains(user)) out->online_users.push_back(user);
    }
  }
}

EventHub::PopResult EventHub::Pop(WatchId id, int max_changes,
                                  WatchMessage* out, absl::Status* status) {
  out->online_users.clear();
  out->changes.clear();
  max_changes = std::max(1, max_changes);
  absl::MutexLock lock(&mu_);
  auto it = watches_.find(id);
  if (it == watches_.end()) {
    *status = absl::NotFoundError("no such watch");
    return PopResult::kClosed;
  }
  WatchState& watch = *it->second;
  if (watch.closed) {
    *status = watch.closed_status;
    return PopResult::kClosed;
  }
  out->kind = WatchMessage::Kind::kChanges;
  if (watch.user_ids.empty()) {
    if (!watch.needs_snapshot && watch.cursor < OldestKeptLocked()) {
      // Fell off the ring: what it missed is gone.
      watch.needs_snapshot = true;
      ++overflows_;
    }
    if (watch.needs_snapshot) {
      FillSnapshot(watch, out);
      return PopResult::kMessage;
    }
    // A watch that is not rich skips the status-only events: it may read
    // past several runs of them before it has something, or nothing.
    while (out->changes.empty()) {
      if (watch.cursor > last_sequence_) {
        if (watch.parked_round != parked_round_) {
          watch.parked_round = parked_round_;
          parked_.push_back(watch.sink);
        }
        return PopResult::kEmpty;
      }
      const uint64_t end =
          std::min(last_sequence_ + 1,
                   watch.cursor + static_cast<uint64_t>(max_changes));
      // The ring's slots from cursor to end, in at most two runs.
      const size_t size = ring_.size();
      size_t from = (watch.cursor - 1) % size;
      size_t count = static_cast<size_t>(end - watch.cursor);
      const size_t first_run = std::min(count, size - from);
      out->changes.insert(out->changes.end(), ring_.begin() + from,
                          ring_.begin() + from + first_run);
      out->changes.insert(out->changes.end(), ring_.begin(),
                          ring_.begin() + (count - first_run));
      if (!watch.rich) {
        out->changes.erase(
            std::remove_if(
                out->changes.begin(), out->changes.end(),
                [](const SequencedEvent& e) { return e.event.status_only; }),
            out->changes.end());
      }
      watch.cursor = end;
      out->sequence = end - 1;
    }
    return PopResult::kMessage;
  }
  if (watch.needs_snapshot) {
    FillSnapshot(watch, out);
    return PopResult::kMessage;
  }
  std::deque<SequencedEvent>& queue = *watch.queue;
  if (queue.empty()) {
    watch.wake_pending = false;
    return PopResult::kEmpty;
  }
  const size_t count = std::min(queue.size(), static_cast<size_t>(max_changes));
  out->changes.assign(queue.begin(), queue.begin() + count);
  queue.erase(queue.begin(), queue.begin() + count);
  out->sequence = out->changes.back().sequence;
  return PopResult::kMessage;
}

void EventHub::Unwatch(WatchId id) {
  absl::MutexLock lock(&mu_);
  auto it = watches_.find(id);
  if (it == watches_.end()) return;
  WatchState* watch = it->second.get();
  for (int64_t user : watch->user_ids) {
    auto users = by_user_.find(user);
    auto& list = users->second;
    list.erase(std::find(list.begin(), list.end(), watch));
    if (list.empty()) by_user_.erase(users);
  }
  // A parked sink stays in parked_ until the next round: waking it then
  // finds the watch gone (or the sink too). Without changes there is no
  // next round, so watchers that come and go would pile up there: past
  // twice the watches, drop the sinks that are gone (amortised O(1)).
  watches_.erase(it);
  if (parked_.size() > 2 * watches_.size() + 64) {
    parked_.erase(std::remove_if(parked_.begin(), parked_.end(),
                                 [](const std::weak_ptr<WatchSink>& sink) {
                                   return sink.expired();
                                 }),
                  parked_.end());
  }
}

void EventHub::Close(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  close_status_ = status;
  for (auto& [id, watch] : watches_) {
    watch->closed = true;
    watch->closed_status = status;
    if (watch->queue) watch->queue->clear();
    // Watches of everyone that are awake pop again and see the end.
    if (!watch->user_ids.empty()) Wake(*watch);
  }
  WakeParked();
}

void EventHub::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  {
    absl::MutexLock lock(&wake_mu_);
    stopping_ = true;
  }
  for (std::thread& dispatcher : dispatchers_) dispatcher.join();
}

void EventHub::DispatchLoop() {
  std::vector<std::weak_ptr<WatchSink>> slice;
  for (;;) {
    slice.clear();
    {
      absl::MutexLock lock(&wake_mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_mu_) {
        return !ready_singles_.empty() || !ready_rounds_.empty() || stopping_;
      };
      wake_mu_.Await(absl::Condition(&has_work));
      // Stop() comes after the streams are gone (Close() ended them): what
      // is left to wake, if anything, wakes nobody, and a hub stopped
      // without Close() must not keep its dispatchers busy.
      if (stopping_) return;
      FlushSinglesLocked();
      if (ready_rounds_.empty()) continue;
      WakeRound& round = ready_rounds_.front();
      const size_t take = std::min(round.sinks.size() - round.next, kWakeSlice);
      const auto from = round.sinks.begin() + round.next;
      slice.insert(slice.end(), std::make_move_iterator(from),
                   std::make_move_iterator(from + take));
      round.next += take;
      if (round.next == round.sinks.size()) ready_rounds_.pop_front();
    }
    // No lock held: the sink pulls with Pop() and may call into gRPC.
    for (const std::weak_ptr<WatchSink>& weak : slice) {
      if (std::shared_ptr<WatchSink> sink = weak.lock()) sink->OnReady();
    }
  }
}

size_t EventHub::parked() const {
  absl::MutexLock lock(&mu_);
  return parked_.size();
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
