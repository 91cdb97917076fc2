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
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/clock.h"
#include "service/presence_event.h"

namespace presence {

// The consumer end of one watch (in presenced, a WatchPresence stream).
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  // There may be something to EventHub::Pop() for this watch: changes, or
  // the watch's end. Called on one of the hub's dispatcher threads with no
  // lock held, only while the sink is alive (the hub holds it by weak_ptr).
  virtual void OnReady() = 0;
};

struct WatchRequest {
  std::vector<int64_t> user_ids;  // empty: everyone
  bool send_snapshot = false;
  uint64_t resume_after = 0;  // with epoch: the last sequence received
  std::string epoch;
  // Also the status-only events (PresenceEvent::status_only): rich
  // presence's status and custom status changes of online users.
  bool rich_status = false;
};

// An event with its place in the hub's history.
struct SequencedEvent {
  uint64_t sequence;
  PresenceEvent event;
};

// What one Pop() hands a watch: a Snapshot, or changes in order.
struct WatchMessage {
  enum class Kind { kSnapshot, kChanges };
  Kind kind = Kind::kChanges;
  // kSnapshot: the last sequence it reflects; kChanges: the last change's.
  uint64_t sequence = 0;
  absl::Time snapshot_time;             // kSnapshot
  std::vector<int64_t> online_users;    // kSnapshot: the watched, ascending
  std::vector<SequencedEvent> changes;  // kChanges: at least one, oldest first
};

// Assigns sequence numbers to presence events, keeps the latest of them in a
// bounded ring, and fans them out to watches. It knows only domain events;
// encoding them for a transport is the watch's business.
//
// Two kinds of watch, by what they follow:
// - A watch of everyone is a cursor into the ring: Publish() does nothing
//   for it but, if it sleeps, hand it to the dispatchers in one O(1) move
//   of the list of sleeping watches. Publishing costs the same whether 1 or
//   10,000 watch everyone, and nothing per watcher happens under the
//   registry shard's lock. A watch whose cursor falls off the ring (it read
//   more slowly than ring_size events arrived) gets one fresh Snapshot.
// - A watch of some users gets their events through an index into a
//   bounded queue of its own; a full queue becomes one Snapshot.
// Either way a watcher that does not read cannot grow the server's memory.
// A Snapshot is built from the hub's own set of online users, which changes
// only with the events, so a Snapshot at sequence S and the changes after S
// always agree.
//
// Delivery is pull-based: a sink calls Pop() until it gets kEmpty, and is
// then woken (OnReady) by a dispatcher thread once there is more. Each Pop()
// takes up to `max_changes` pending changes at once, so a watch that fell
// behind catches up in few messages.
//
// Thread-safe. Lock order: a registry shard, then the hub's mutex, then
// its wake list's.
class EventHub : public EventSink {
 public:
  struct Options {
    int ring_size = 65'536;  // events kept for resuming and for cursors
    int queue_size = 1'024;  // events queued per filtered watch
    int max_watchers = 10'000;
    // Threads that wake sleeping watches (each wake writes to the network
    // in presenced). 0: one per core, at least 2.
    int dispatch_threads = 0;
  };
  using WatchId = uint64_t;
  enum class PopResult { kMessage, kEmpty, kClosed };

  // `clock` (for Snapshot times) must outlive the hub. Starts the
  // dispatchers.
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
  // The next message of the watch, with at most `max_changes` (>= 1)
  // changes. kEmpty: nothing now (OnReady() will be called when there is);
  // kClosed: the watch was ended with *status.
  PopResult Pop(WatchId id, int max_changes, WatchMessage* out,
                absl::Status* status) ABSL_LOCKS_EXCLUDED(mu_);
  void Unwatch(WatchId id);

  // Ends every watch, current and future, with `status` (delivered by Pop).
  void Close(const absl::Status& status);
  // Ends the dispatcher threads: no OnReady() after it, wakes not made yet
  // are dropped. Call Close() first and wait until the sinks are gone, or a
  // watch still pulling may wait for a wake that never comes. Idempotent.
  void Stop();

  int watchers() const;
  // Sinks waiting in the current round of sleeping watches of everyone.
  size_t parked() const;
  uint64_t last_sequence() const;
  // Times a watch fell too far behind and was given a Snapshot instead.
  int64_t overflows() const;
  int dispatch_threads() const { return static_cast<int>(dispatchers_.size()); }

  struct Stats {
    int watchers = 0;
    // Events published since construction, indexed by PresenceEvent::Reason.
    std::array<int64_t, PresenceEvent::kNumReasons> events = {};
    int64_t overflows = 0;
  };
  // One consistent reading, for metrics.
  Stats stats() const;

 private:
  struct WatchState {
    std::vector<int64_t> user_ids;  // sorted, unique; empty: everyone
    std::weak_ptr<WatchSink> sink;
    bool rich = false;  // WatchRequest::rich_status
    bool needs_snapshot = false;
    bool closed = false;
    absl::Status closed_status;
    // A watch of everyone: the next sequence it reads from the ring, and
    // the round of parked_ it sleeps in (0: awake).
    uint64_t cursor = 1;
    uint64_t parked_round = 0;
    // A filtered watch: its events (allocated for filtered watches only:
    // an empty std::deque already holds about 550 bytes, a third of what a
    // watch of everyone costs the hub), and whether a wake is queued or the
    // sink is pulling (Publish() wakes the sink only when clear).
    std::unique_ptr<std::deque<SequencedEvent>> queue;
    bool wake_pending = true;
  };

  uint64_t OldestKeptLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const SequencedEvent& RingAt(uint64_t sequence) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Deliver(WatchState& watch, const SequencedEvent& e)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Wake(WatchState& watch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeParked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The filtered wakes so far become a round of their own, behind the
  // rounds before them.
  void FlushSinglesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(wake_mu_);
  void FillSnapshot(WatchState& watch, WatchMessage* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DispatchLoop() ABSL_LOCKS_EXCLUDED(mu_, wake_mu_);

  const Clock& clock_;
  const Options options_;
  const std::string epoch_;

  mutable absl::Mutex mu_;
  uint64_t last_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  // Event `s` sits at (s - 1) % ring_size; it grows up to ring_size.
  std::vector<SequencedEvent> ring_ ABSL_GUARDED_BY(mu_);
  // Ordered, so a Snapshot comes out sorted; and, at millions of users,
  // fewer bytes than a hash set at its usual load (~9-12 an id, ~19).
  absl::btree_set<int64_t> online_ ABSL_GUARDED_BY(mu_);
  WatchId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<WatchId, std::unique_ptr<WatchState>> watches_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int64_t, std::vector<WatchState*>> by_user_
      ABSL_GUARDED_BY(mu_);
  // Watches of everyone that found nothing to read, in the current round.
  std::vector<std::weak_ptr<WatchSink>> parked_ ABSL_GUARDED_BY(mu_);
  uint64_t parked_round_ ABSL_GUARDED_BY(mu_) = 1;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);
  int64_t overflows_ ABSL_GUARDED_BY(mu_) = 0;
  std::array<int64_t, PresenceEvent::kNumReasons> events_
      ABSL_GUARDED_BY(mu_) = {};

  // Sinks to wake, oldest first: whole rounds of parked_, and single
  // filtered watches gathered into rounds of their own. The dispatchers
  // take them a slice at a time from the front, so thousands of wakes are
  // shared between them, and a sink woken earlier is served earlier (taking
  // the newest first let a busy server starve the oldest round).
  struct WakeRound {
    std::vector<std::weak_ptr<WatchSink>> sinks;
    size_t next = 0;  // sinks before it are taken
  };
  absl::Mutex wake_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::deque<WakeRound> ready_rounds_ ABSL_GUARDED_BY(wake_mu_);
  std::vector<std::weak_ptr<WatchSink>> ready_singles_
      ABSL_GUARDED_BY(wake_mu_);
  bool stopping_ ABSL_GUARDED_BY(wake_mu_) = false;

  absl::Mutex stop_mu_;  // serialises Stop()
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::vector<std::thread> dispatchers_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_EVENT_HUB_H_
