#ifndef PRESENCE_SERVICE_EVENT_HUB_H_
#define PRESENCE_SERVICE_EVENT_HUB_H_

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "presence/v1/presence.pb.h"
#include "service/clock.h"
#include "service/presence_event.h"

namespace presence {

// The consumer end of one watch (in presenced, a WatchPresence stream).
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  // There may be something to EventHub::Pop() for this watch: a message, or
  // the watch's end. Called on the hub's dispatcher thread with no lock held,
  // only while the sink is alive (the hub holds it by weak_ptr).
  virtual void OnReady() = 0;
};

struct WatchRequest {
  std::vector<int64_t> user_ids;  // empty: everyone
  bool send_snapshot = false;
  uint64_t resume_after = 0;  // with epoch: the last sequence received
  std::string epoch;
};

// Assigns sequence numbers to presence events, keeps the latest of them in a
// bounded ring for resuming, and fans them out to watches.
//
// Every watch has a bounded queue. A watch that falls behind by more than its
// queue loses its queued events and gets one fresh Snapshot instead, so a
// watcher that does not read cannot grow the server's memory. A Snapshot is
// built from the hub's own set of online users, which changes only with the
// events, so a Snapshot at sequence S and the changes after S always agree.
//
// Delivery is pull-based: Publish() queues and wakes the sink through the
// dispatcher thread; the sink then calls Pop() until it gets kEmpty. Events
// reach watches of their user through an index, not a scan of every watch.
//
// Thread-safe. Lock order: a registry shard, then the hub's mutex.
class EventHub : public EventSink {
 public:
  struct Options {
    int ring_size = 65'536;  // events kept for resume_after
    int queue_size = 1'024;  // events queued per watch before a Snapshot
    int max_watchers = 10'000;
  };
  using WatchId = uint64_t;
  enum class PopResult { kMessage, kEmpty, kClosed };

  // `clock` (for Snapshot times) must outlive the hub. Starts the dispatcher.
  EventHub(const Clock& clock, Options options);
  // Stop()s.
  ~EventHub() override;
  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  // A random id chosen at construction: sequences count within it.
  const std::string& epoch() const { return epoch_; }

  void Publish(const PresenceEvent& event) override;
  void SeedOnline(int64_t user_id) override;

  // Starts a watch. What comes first: with a resumable (epoch, resume_after)
  // the changes after resume_after that are still in the ring; with one that
  // is too old or of another epoch, a Snapshot; else a Snapshot if
  // send_snapshot. Errors: RESOURCE_EXHAUSTED at max_watchers, UNAVAILABLE
  // after Close().
  absl::StatusOr<WatchId> Watch(const WatchRequest& request,
                                std::weak_ptr<WatchSink> sink);
  // The next message of the watch. kEmpty: nothing now (OnReady() will be
  // called when there is); kClosed: the watch was ended with *status.
  PopResult Pop(WatchId id, v1::WatchPresenceResponse* out,
                absl::Status* status);
  void Unwatch(WatchId id);

  // Ends every watch, current and future, with `status` (delivered by Pop).
  void Close(const absl::Status& status);
  // Ends the dispatcher thread: no OnReady() after it. Call Close() first
  // and wait until the sinks are gone, or a watch still pulling may wait for
  // a wake that never comes. Idempotent.
  void Stop();

  int watchers() const;
  uint64_t last_sequence() const;
  // Times a watch's queue overflowed and was replaced by a Snapshot.
  int64_t overflows() const;

  struct Stats {
    int watchers = 0;
    // Events published since construction, indexed by PresenceEvent::Reason.
    std::array<int64_t, PresenceEvent::kNumReasons> events = {};
    int64_t overflows = 0;
  };
  // One consistent reading, for metrics.
  Stats stats() const;

 private:
  struct SequencedEvent {
    uint64_t sequence;
    PresenceEvent event;
  };
  struct WatchState {
    std::vector<int64_t> user_ids;  // sorted, unique; empty: everyone
    std::weak_ptr<WatchSink> sink;
    std::deque<SequencedEvent> queue;
    bool needs_snapshot = false;
    // Set while the sink is pulling or a wake is queued; Publish() wakes the
    // sink only when it is clear.
    bool wake_pending = true;
    bool closed = false;
    absl::Status closed_status;
  };

  PopResult PopLocked(WatchId id, v1::WatchPresenceResponse* out,
                      absl::Status* status);
  void Deliver(WatchState& watch, const SequencedEvent& e)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Wake(WatchState& watch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FillSnapshot(const WatchState& watch, v1::WatchPresenceResponse* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DispatchLoop();

  const Clock& clock_;
  const Options options_;
  const std::string epoch_;

  mutable absl::Mutex mu_;
  uint64_t last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<SequencedEvent> ring_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<int64_t> online_ ABSL_GUARDED_BY(mu_);
  WatchId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<WatchId, std::unique_ptr<WatchState>> watches_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<WatchState*> everyone_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int64_t, std::vector<WatchState*>> by_user_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::weak_ptr<WatchSink>> ready_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t overflows_ ABSL_GUARDED_BY(mu_) = 0;
  std::array<int64_t, PresenceEvent::kNumReasons> events_
      ABSL_GUARDED_BY(mu_) = {};

  absl::Mutex stop_mu_;  // serialises Stop()
  std::thread dispatcher_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_EVENT_HUB_H_
