#include "tools/soak/watcher_fleet.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tools/soak/sorted_ids.h"

namespace presence::soak {

WatcherFleet::WatcherFleet(const SoakOptions& options, WatchTotals* totals,
                           CallStats* calls)
    : options_(options), totals_(totals), calls_(calls) {}

absl::Status WatcherFleet::Start(int64_t max_user_id) {
  if (absl::Status connected = Connect(); !connected.ok()) return connected;
  PlanSlots(max_user_id);
  for (Slot& slot : slots_) StartWatcher(slot);
  return AwaitSnapshots();
}

absl::Status WatcherFleet::Connect() {
  absl::StatusOr<std::unique_ptr<TcpProxy>> proxy =
      TcpProxy::Start(options_.server);
  if (!proxy.ok()) return proxy.status();
  proxy_ = std::move(*proxy);
  const std::string target = absl::StrCat("127.0.0.1:", proxy_->port());
  for (int c = 0; c < std::max(1, options_.watch_connections); ++c) {
    grpc::ChannelArguments args;
    // A connection per channel: gRPC would otherwise share one between
    // channels to the same target.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(-1);  // snapshots of everyone
    // Reconnect soon after a cut, as Watcher retries from 100 ms.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    channels_.push_back(grpc::CreateCustomChannel(
        target, grpc::InsecureChannelCredentials(), args));
  }
  return absl::OkStatus();
}

void WatcherFleet::PlanSlots(int64_t max_user_id) {
  const int watchers = options_.watchers;
  const int everyone =
      static_cast<int>(std::lround(watchers * options_.everyone_fraction));
  // Subsets include ids that will only arrive later.
  const int64_t id_space = max_user_id + max_user_id / 4;
  const int subset_size =
      static_cast<int>(std::min<int64_t>(options_.subset_size, id_space));
  absl::BitGen gen;
  slots_.resize(watchers);
  for (int w = 0; w < watchers; ++w) {
    Slot& slot = slots_[w];
    // The first ones watch everyone; all are spread over the connections.
    slot.connection = w % static_cast<int>(channels_.size());
    if (w < everyone) continue;
    absl::flat_hash_set<int64_t> ids = {kSentinelUser};
    while (static_cast<int>(ids.size()) < subset_size + 1) {
      ids.insert(
          absl::Uniform<int64_t>(absl::IntervalClosed, gen, 1, id_space));
    }
    slot.user_ids.assign(ids.begin(), ids.end());
  }
}

absl::Status WatcherFleet::AwaitSnapshots() const {
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  for (const Slot& slot : slots_) {
    while (!slot.view->has_snapshot()) {
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(
            "a watcher had no snapshot after 120 s");
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  return absl::OkStatus();
}

void WatcherFleet::StartWatcher(Slot& slot) {
  slot.watcher.reset();  // stops the old one: no callback after this
  slot.view = std::make_unique<View>(slot.user_ids.empty(), totals_, calls_);
  presence::WatcherOptions options;
  options.user_ids = slot.user_ids;
  slot.watcher = std::make_unique<presence::Watcher>(
      channels_[slot.connection], options, slot.view->Callbacks());
}

void WatcherFleet::Disrupt(absl::Notification* stop) {
  absl::BitGen gen;
  const absl::Duration cut_every = options_.cut_every;
  const absl::Duration cut_all_every = options_.cut_all_every;
  const absl::Duration recreate_every = options_.recreate_every;
  const absl::Time start = absl::Now();
  absl::Time next_cut = start + cut_every;
  absl::Time next_cut_all = start + cut_all_every;
  absl::Time next_recreate = start + recreate_every;
  for (;;) {
    const absl::Time next = std::min({next_cut, next_cut_all, next_recreate});
    if (stop->WaitForNotificationWithTimeout(next - absl::Now())) return;
    const absl::Time now = absl::Now();
    if (now >= next_cut_all) {
      cut_connections_ += proxy_->Cut(-1, gen);
      ++cuts_;
      next_cut_all += cut_all_every;
    } else if (now >= next_cut) {
      cut_connections_ += proxy_->Cut(1, gen);
      ++cuts_;
    }
    if (now >= next_cut) next_cut += cut_every;
    if (now >= next_recreate && !slots_.empty()) {
      StartWatcher(slots_[absl::Uniform<size_t>(gen, 0, slots_.size())]);
      ++recreated_;
      next_recreate += recreate_every;
    }
  }
}

int WatcherFleet::AwaitSentinel(absl::Time deadline) const {
  int behind = 0;
  for (const Slot& slot : slots_) {
    while (!slot.view->Contains(kSentinelUser) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    if (!slot.view->Contains(kSentinelUser)) ++behind;
  }
  return behind;
}

int WatcherFleet::CountMismatches(const std::vector<int64_t>& online) const {
  int mismatched = 0;
  for (size_t w = 0; w < slots_.size(); ++w) {
    const Slot& slot = slots_[w];
    absl::flat_hash_set<int64_t> seen = slot.view->Online();
    seen.erase(kSentinelUser);
    std::vector<int64_t> view(seen.begin(), seen.end());
    std::sort(view.begin(), view.end());
    const std::vector<int64_t> expected = Filter(online, slot.user_ids);
    if (view == expected) continue;
    if (++mismatched <= 5) {
      std::fprintf(stderr,
                   "soak: watcher %zu (%s): view has %zu, ListOnline %zu; "
                   "missing %s, extra %s\n",
                   w, slot.user_ids.empty() ? "everyone" : "subset",
                   view.size(), expected.size(),
                   Head(Minus(expected, view)).c_str(),
                   Head(Minus(view, expected)).c_str());
    }
  }
  return mismatched;
}

void WatcherFleet::Stop() {
  for (Slot& slot : slots_) slot.watcher.reset();
  proxy_.reset();
}

int WatcherFleet::everyone() const {
  return static_cast<int>(
      std::count_if(slots_.begin(), slots_.end(),
                    [](const Slot& s) { return s.user_ids.empty(); }));
}

}  // namespace presence::soak
