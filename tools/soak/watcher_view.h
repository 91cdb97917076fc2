#ifndef PRESENCE_TOOLS_SOAK_WATCHER_VIEW_H_
#define PRESENCE_TOOLS_SOAK_WATCHER_VIEW_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "presence/watcher.h"
#include "tools/soak/call_stats.h"

namespace presence::soak {

// Beats once at the end; every watcher watches it. Each stream is in order,
// so a watcher that has the sentinel has every change made before it.
constexpr int64_t kSentinelUser = int64_t{1} << 40;

// Totals over every watcher, for the CSV and the summary. Atomics: every
// watcher's thread adds to them, the sampler and the summary read them.
struct WatchTotals {
  std::atomic<int64_t> snapshots{0};
  std::atomic<int64_t> changes{0};
  std::atomic<int64_t> disconnects{0};
  // The first message after a reconnect was a change (resumed by sequence)
  // or a snapshot (presenced could not replay).
  std::atomic<int64_t> resumed{0};
  std::atomic<int64_t> resnapshotted{0};
  // Disconnects of a stream that had delivered nothing yet (not even its
  // first snapshot): its next message is a snapshot, by design.
  std::atomic<int64_t> before_first_message{0};
  // Broken promises of the stream: a sequence out of order, a change that
  // does not change the view (ONLINE of a user already online, or OFFLINE
  // of one not online), another epoch, a watcher that gave up.
  std::atomic<int64_t> sequence_errors{0};
  std::atomic<int64_t> redundant_changes{0};
  std::atomic<int64_t> epoch_changes{0};
  std::atomic<int64_t> gave_up{0};
  // The sequence of the sentinel's change: how many changes presenced has
  // made in all.
  std::atomic<uint64_t> sentinel_sequence{0};
};

// What one watcher knows: who of its users is online, from its snapshots and
// changes. It checks every message and change against what a stream
// promises as they come, and adds what it sees to the WatchTotals.
//
// Its callbacks run on the watcher's thread, one at a time; the accessors
// are safe on any thread. The View must outlive its presence::Watcher.
class View {
 public:
  // `everyone`: the watcher watches everyone, so its changes' sequences have
  // no gaps. `totals` and `calls` must outlive the View.
  View(bool everyone, WatchTotals* totals, CallStats* calls)
      : everyone_(everyone), totals_(totals), calls_(calls) {}
  View(const View&) = delete;
  View& operator=(const View&) = delete;

  // The callbacks for a presence::Watcher that feeds this view.
  presence::WatcherCallbacks Callbacks();

  bool has_snapshot() const;
  bool Contains(int64_t user) const;
  absl::flat_hash_set<int64_t> Online() const;

 private:
  void OnMessage(const v1::WatchPresenceResponse& message);
  void OnSnapshot(const v1::Snapshot& snapshot);
  void OnChange(const v1::PresenceChange& change);
  void OnDisconnect(const absl::Status& status, absl::Duration retry_in);

  const bool everyone_;
  WatchTotals* const totals_;
  CallStats* const calls_;
  // Where the stream is; touched only by the watcher's thread.
  std::string epoch_;
  uint64_t sequence_ = 0;
  bool reconnected_ = false;
  mutable absl::Mutex mu_;
  absl::flat_hash_set<int64_t> online_ ABSL_GUARDED_BY(mu_);
  bool has_snapshot_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace presence::soak

#endif  // PRESENCE_TOOLS_SOAK_WATCHER_VIEW_H_
