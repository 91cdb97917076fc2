#ifndef PRESENCE_TOOLS_SOAK_WATCHER_FLEET_H_
#define PRESENCE_TOOLS_SOAK_WATCHER_FLEET_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "presence/watcher.h"
#include "tools/soak/call_stats.h"
#include "tools/soak/options.h"
#include "tools/soak/tcp_proxy.h"
#include "tools/soak/watcher_view.h"

namespace presence::soak {

// The soak's watchers: --watchers presence::Watcher streams, each feeding a
// View. The first --everyone_fraction of them watch everyone, the others
// --subset_size random ids (including ids that only arrive later) and the
// sentinel. They reach presenced through a TcpProxy, over
// --watch_connections channels of one TCP connection each, and Disrupt()
// cuts those connections and recreates watchers, as README.md describes.
//
// Thread-compatible: one thread at a time. The soak calls Disrupt() on a
// thread of its own during the steady phase, and everything else on its
// main thread before or after. `totals` and `calls` must outlive the fleet.
class WatcherFleet {
 public:
  WatcherFleet(const SoakOptions& options, WatchTotals* totals,
               CallStats* calls);
  WatcherFleet(const WatcherFleet&) = delete;
  WatcherFleet& operator=(const WatcherFleet&) = delete;

  // Starts the proxy and every watcher, and waits until each has its first
  // snapshot: DEADLINE_EXCEEDED after 120 s. Subsets are drawn from ids up
  // to a quarter above `max_user_id`.
  absl::Status Start(int64_t max_user_id);
  // Cuts connections and recreates watchers until `stop`.
  void Disrupt(absl::Notification* stop);
  // Waits until every watcher has the sentinel online, or `deadline`;
  // returns how many do not.
  int AwaitSentinel(absl::Time deadline) const;
  // Compares every view (less the sentinel) with `online`, ascending and
  // without the sentinel; prints the first five that differ on stderr and
  // returns how many do.
  int CountMismatches(const std::vector<int64_t>& online) const;
  // Stops every watcher, then the proxy: no callback runs after this.
  void Stop();

  int size() const { return static_cast<int>(slots_.size()); }
  int everyone() const;
  int64_t cuts() const { return cuts_; }
  int64_t cut_connections() const { return cut_connections_; }
  int64_t recreated() const { return recreated_; }

 private:
  // One of the watchers: what it watches, and the current Watcher.
  struct Slot {
    std::vector<int64_t> user_ids;  // empty: everyone
    int connection = 0;
    std::unique_ptr<View> view;
    std::unique_ptr<presence::Watcher> watcher;
  };

  absl::Status Connect();
  void PlanSlots(int64_t max_user_id);
  absl::Status AwaitSnapshots() const;
  // Replaces the slot's Watcher and View with new ones (a fresh snapshot).
  void StartWatcher(Slot& slot);

  const SoakOptions options_;
  WatchTotals* const totals_;
  CallStats* const calls_;
  std::unique_ptr<TcpProxy> proxy_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<Slot> slots_;
  int64_t cuts_ = 0, cut_connections_ = 0, recreated_ = 0;
};

}  // namespace presence::soak

#endif  // PRESENCE_TOOLS_SOAK_WATCHER_FLEET_H_
