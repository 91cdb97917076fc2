#ifndef PRESENCE_SERVICE_METRICS_H_
#define PRESENCE_SERVICE_METRICS_H_

#include <grpcpp/support/status.h>
#include <prometheus/client_metric.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/caller_auth.h"
#include "service/event_hub.h"
#include "service/presence_registry.h"
#include "service/rpc.h"
#include "service/store_writer.h"

namespace presence {

// The Rpc of a method path such as "/presence.v1.PresenceService/Heartbeat";
// nullopt for any other service's or an unknown method.
std::optional<Rpc> RpcOfMethodPath(absl::string_view path);

// Durations in fixed buckets from 10 us to 10 s (Prometheus `le` bounds).
// Observe() is two relaxed atomic increments: no lock, unlike
// prometheus::Histogram, whose Observe() takes a mutex. A reading taken while
// observations land may see an observation's bucket without its sum, never
// a count that disagrees with the buckets.
class DurationHistogram {
 public:
  DurationHistogram() = default;
  DurationHistogram(const DurationHistogram&) = delete;
  DurationHistogram& operator=(const DurationHistogram&) = delete;

  void Observe(std::chrono::nanoseconds duration);
  // Observations so far.
  uint64_t count() const;
  // Sets `metric`'s histogram: cumulative buckets in seconds, ending with
  // +Inf, their total as the count, and the sum.
  void Fill(prometheus::ClientMetric* metric) const;

 private:
  static constexpr size_t kNumBounds = 19;
  static const std::array<int64_t, kNumBounds> kBoundsNs;

  // buckets_[i]: observations in (bound i-1, bound i]; the last: above all.
  std::array<std::atomic<uint64_t>, kNumBounds + 1> buckets_ = {};
  std::atomic<uint64_t> sum_ns_{0};
};

// What presenced measures as it runs: every RPC by method and status code
// with its duration, and every store commit. Recording takes no lock, so it
// is cheap on the hot path. Thread-safe.
class ServerMetrics : public CommitObserver {
 public:
  ServerMetrics() = default;
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // `elapsed`: from the handler's start to its Finish (for WatchPresence, the
  // stream's life, which is counted but not exported as a duration).
  void RecordRpc(Rpc rpc, grpc::StatusCode code,
                 std::chrono::nanoseconds elapsed);
  void OnCommit(absl::Duration duration, size_t changes,
                const absl::Status& status) override;

  // Appends the presence_grpc_* and presence_store_commit* families.
  void Collect(std::vector<prometheus::MetricFamily>* out) const;

 private:
  // grpc::StatusCode OK (0) to UNAUTHENTICATED (16).
  static constexpr int kNumCodes = 17;

  std::array<std::array<DurationHistogram, kNumCodes>, kNumRpcs> rpcs_;
  DurationHistogram commit_duration_;
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> commit_failures_{0};
  std::atomic<uint64_t> committed_changes_{0};
};

// Times one RPC from its handler's start; Stop() records it with the status
// the call finishes with. With null metrics it reads no clock and records
// nothing. A small value: copy it into the call's completion callback.
class RpcTimer {
 public:
  RpcTimer(ServerMetrics* metrics, Rpc rpc)
      : metrics_(metrics),
        rpc_(rpc),
        start_(metrics != nullptr ? std::chrono::steady_clock::now()
                                  : std::chrono::steady_clock::time_point()) {}

  bool active() const { return metrics_ != nullptr; }
  // Call before Finish(), so that a client that saw the status also finds
  // it counted. Once per call.
  void Stop(grpc::StatusCode code) const {
    if (metrics_ != nullptr) {
      metrics_->RecordRpc(rpc_, code,
                          std::chrono::steady_clock::now() - start_);
    }
  }

 private:
  ServerMetrics* metrics_;
  Rpc rpc_;
  std::chrono::steady_clock::time_point start_;
};

// Where a scrape reads from; each must outlive the collector.
struct MetricsSources {
  const ServerMetrics* metrics = nullptr;
  const PresenceRegistry* registry = nullptr;
  const EventHub* hub = nullptr;
  const StoreWriter* writer = nullptr;
  // Null without --auth_tokens_file.
  const CallerAuth* auth = nullptr;
  // Whether the health service says SERVING; null: not exported.
  std::function<bool()> serving;
};

// Every metric of presenced, for the MetricsServer: what
// ServerMetrics recorded, plus gauges and counters read from the registry,
// the hub and the writer at scrape time (each takes their locks briefly,
// one at a time). Thread-safe.
class MetricsCollector : public prometheus::Collectable {
 public:
  explicit MetricsCollector(MetricsSources sources) : sources_(sources) {}

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const MetricsSources sources_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_METRICS_H_
