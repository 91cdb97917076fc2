#include "service/metrics.h"

#include <algorithm>
#include <limits>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/strip.h"

#ifndef PRESENCE_VERSION
#error "PRESENCE_VERSION must be defined by the build"
#endif

namespace presence {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr std::array<const char*, kNumRpcs> kRpcNames = {
    "Heartbeat",        "BatchHeartbeat", "MarkOffline",
    "ListOnline",       "GetPresence",    "WatchPresence",
    "ListForeignUsers", "ImportLastSeen", "SetStatus",
};

constexpr double kSecondsPerNs = 1e-9;

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  return family;
}

MetricFamily Single(std::string name, std::string help, MetricType type,
                    double value) {
  MetricFamily family = Family(std::move(name), std::move(help), type);
  ClientMetric& metric = family.metric.emplace_back();
  if (type == MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  return family;
}

}  // namespace

std::optional<Rpc> RpcOfMethodPath(absl::string_view path) {
  constexpr absl::string_view kPrefix = "/presence.v1.PresenceService/";
  if (!absl::ConsumePrefix(&path, kPrefix)) return std::nullopt;
  for (int r = 0; r < kNumRpcs; ++r) {
    if (path == kRpcNames[static_cast<size_t>(r)]) return static_cast<Rpc>(r);
  }
  return std::nullopt;
}

// 10 us to 10 s: reads answered from memory take tens of microseconds,
// changes in commit mode a flush of the disk (milliseconds), and a slow disk
// or a commit retry up to seconds.
const std::array<int64_t, DurationHistogram::kNumBounds>
    DurationHistogram::kBoundsNs = {
        10'000,        25'000,        50'000,         100'000,
        250'000,       500'000,       1'000'000,      2'500'000,
        5'000'000,     10'000'000,    25'000'000,     50'000'000,
        100'000'000,   250'000'000,   500'000'000,    1'000'000'000,
        2'500'000'000, 5'000'000'000, 10'000'000'000,
};

void DurationHistogram::Observe(std::chrono::nanoseconds duration) {
  const int64_t ns = std::max<int64_t>(duration.count(), 0);
  // The first bound >= ns: Prometheus buckets are "less than or equal".
  const size_t bucket =
      std::lower_bound(kBoundsNs.begin(), kBoundsNs.end(), ns) -
      kBoundsNs.begin();
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
}

uint64_t DurationHistogram::count() const {
  uint64_t total = 0;
  for (const std::atomic<uint64_t>& b : buckets_) {
    total += b.load(std::memory_order_relaxed);
  }
  return total;
}

void DurationHistogram::Fill(ClientMetric* metric) const {
  ClientMetric::Histogram& histogram = metric->histogram;
  histogram.bucket.clear();
  histogram.bucket.reserve(buckets_.size());
  uint64_t cumulative = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    ClientMetric::Bucket& bucket = histogram.bucket.emplace_back();
    bucket.cumulative_count = cumulative;
    bucket.upper_bound = i < kNumBounds
                             ? static_cast<double>(kBoundsNs[i]) * kSecondsPerNs
                             : std::numeric_limits<double>::infinity();
  }
  histogram.sample_count = cumulative;
  histogram.sample_sum =
      static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) *
      kSecondsPerNs;
}

void ServerMetrics::RecordRpc(Rpc rpc, grpc::StatusCode code,
                              std::chrono::nanoseconds elapsed) {
  int c = static_cast<int>(code);
  if (c < 0 || c >= kNumCodes) c = grpc::StatusCode::UNKNOWN;
  rpcs_[static_cast<size_t>(rpc)][static_cast<size_t>(c)].Observe(elapsed);
}

void ServerMetrics::OnCommit(absl::Duration duration, size_t changes,
                             const absl::Status& status) {
  commit_duration_.Observe(absl::ToChronoNanoseconds(duration));
  if (status.ok()) {
    commits_.fetch_add(1, std::memory_order_relaxed);
    committed_changes_.fetch_add(changes, std::memory_order_relaxed);
  } else {
    commit_failures_.fetch_add(1, std::memory_order_relaxed);
  }
}

void ServerMetrics::Collect(std::vector<MetricFamily>* out) const {
  MetricFamily requests = Family(
      "presence_grpc_requests_total",
      "RPCs finished, by method and gRPC status code (WatchPresence: streams "
      "ended).",
      MetricType::Counter);
  MetricFamily durations =
      Family("presence_grpc_request_duration_seconds",
             "Time from the handler's start to the status sent, by method and "
             "code (unary RPCs; in commit mode changes include the commit).",
             MetricType::Histogram);
  for (int r = 0; r < kNumRpcs; ++r) {
    for (int c = 0; c < kNumCodes; ++c) {
      const DurationHistogram& histogram = rpcs_[r][c];
      // Series appear once they have a sample: 6 methods x 17 codes of
      // empty histograms would be mostly noise.
      const uint64_t count = histogram.count();
      if (count == 0) continue;
      const std::vector<ClientMetric::Label> labels = {
          {"method", kRpcNames[r]},
          {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(c))},
      };
      ClientMetric& counted = requests.metric.emplace_back();
      counted.label = labels;
      counted.counter.value = static_cast<double>(count);
      // A stream's life is not a request latency.
      if (static_cast<Rpc>(r) == Rpc::kWatchPresence) continue;
      ClientMetric& timed = durations.metric.emplace_back();
      timed.label = labels;
      histogram.Fill(&timed);
    }
  }
  out->push_back(std::move(requests));
  out->push_back(std::move(durations));

  MetricFamily commit_duration =
      Family("presence_store_commit_duration_seconds",
             "Time of each attempt to commit a batch of changes to SQLite "
             "(one transaction), failed ones included.",
             MetricType::Histogram);
  commit_duration_.Fill(&commit_duration.metric.emplace_back());
  out->push_back(std::move(commit_duration));
  out->push_back(Single(
      "presence_store_commits_total",
      "Transactions committed to SQLite (group commits).", MetricType::Counter,
      static_cast<double>(commits_.load(std::memory_order_relaxed))));
  out->push_back(Single(
      "presence_store_committed_changes_total",
      "Changes (heartbeats, ended sessions) made durable, before coalescing.",
      MetricType::Counter,
      static_cast<double>(committed_changes_.load(std::memory_order_relaxed))));
  out->push_back(Single(
      "presence_store_commit_failures_total",
      "Commit attempts that failed; the batch stays queued and is retried.",
      MetricType::Counter,
      static_cast<double>(commit_failures_.load(std::memory_order_relaxed))));
}

namespace {

// The registry's gauges: users online and by status, sessions.
void CollectRegistry(const PresenceRegistry::Stats& registry,
                     std::vector<MetricFamily>& out) {
  out.push_back(Single(
      "presence_online_users", "Users online (as announced to watchers).",
      MetricType::Gauge, static_cast<double>(registry.online_users)));
  MetricFamily by_status =
      Family("presence_users_by_status",
             "Online users by the status others see (as announced to "
             "watchers); invisible: users whose availability is INVISIBLE, "
             "online or not (others see them offline).",
             MetricType::Gauge);
  const int64_t active =
      registry.online_users - registry.away_users - registry.dnd_users;
  for (const auto& [status, count] :
       {std::pair<const char*, int64_t>{"online", active},
        {"away", registry.away_users},
        {"dnd", registry.dnd_users},
        {"invisible", registry.invisible_users}}) {
    ClientMetric& metric = by_status.metric.emplace_back();
    metric.label = {{"status", status}};
    metric.gauge.value = static_cast<double>(count);
  }
  out.push_back(std::move(by_status));
  out.push_back(Single(
      "presence_sessions",
      "Sessions held in memory: the live sessions of online users, plus a "
      "silent one of a user still online through another, until that user's "
      "next heartbeat.",
      MetricType::Gauge, static_cast<double>(registry.sessions)));
}

// The hub's: watchers, events by status and reason, queue overflows.
void CollectHub(const EventHub::Stats& hub, std::vector<MetricFamily>& out) {
  out.push_back(Single("presence_watchers", "WatchPresence streams open.",
                       MetricType::Gauge, static_cast<double>(hub.watchers)));
  MetricFamily events = Family(
      "presence_events_total",
      "Presence transitions published to watchers, by new status and reason.",
      MetricType::Counter);
  const std::pair<PresenceEvent::Reason, std::vector<ClientMetric::Label>>
      kinds[] = {
          {PresenceEvent::Reason::kHeartbeat,
           {{"status", "online"}, {"reason", "heartbeat"}}},
          {PresenceEvent::Reason::kMarkOffline,
           {{"status", "offline"}, {"reason", "mark_offline"}}},
          {PresenceEvent::Reason::kExpired,
           {{"status", "offline"}, {"reason", "expired"}}},
          // Rich presence: the status varies; the reason says enough.
          {PresenceEvent::Reason::kActivity,
           {{"status", "any"}, {"reason", "activity"}}},
          {PresenceEvent::Reason::kStatusSet,
           {{"status", "any"}, {"reason", "status_set"}}},
          {PresenceEvent::Reason::kStatusExpired,
           {{"status", "any"}, {"reason", "status_expired"}}},
      };
  for (const auto& [reason, labels] : kinds) {
    ClientMetric& metric = events.metric.emplace_back();
    metric.label = labels;
    metric.counter.value =
        static_cast<double>(hub.events[static_cast<size_t>(reason)]);
  }
  out.push_back(std::move(events));
  out.push_back(Single(
      "presence_watcher_queue_overflows_total",
      "Times a slow watcher's queue overflowed and was replaced by a snapshot.",
      MetricType::Counter, static_cast<double>(hub.overflows)));
}

// Authenticated calls by caller and method.
void CollectCallers(const CallerAuth& auth, std::vector<MetricFamily>& out) {
  MetricFamily calls =
      Family("presence_caller_requests_total",
             "Authenticated calls by caller (--auth_tokens_file) and method.",
             MetricType::Counter);
  for (const std::shared_ptr<Caller>& caller : auth.callers()) {
    for (int rpc = 0; rpc < kNumRpcs; ++rpc) {
      uint64_t count = caller->calls[rpc].load(std::memory_order_relaxed);
      if (count == 0) continue;
      ClientMetric& metric = calls.metric.emplace_back();
      metric.label = {{"caller", caller->name}, {"method", kRpcNames[rpc]}};
      metric.counter.value = static_cast<double>(count);
    }
  }
  out.push_back(std::move(calls));
}

}  // namespace

std::vector<MetricFamily> MetricsCollector::Collect() const {
  std::vector<MetricFamily> out;
  sources_.metrics->Collect(&out);
  CollectRegistry(sources_.registry->stats(), out);
  CollectHub(sources_.hub->stats(), out);
  out.push_back(Single("presence_store_pending_changes",
                       "Changes recorded and not committed yet (the store "
                       "writer's queue, with the batch being committed).",
                       MetricType::Gauge,
                       static_cast<double>(sources_.writer->pending())));

  if (sources_.auth != nullptr) CollectCallers(*sources_.auth, out);

  if (sources_.serving) {
    // The health service is what load balancers and orchestrators see; a
    // gauge of it lets an alert fire on NOT_SERVING without a gRPC prober.
    out.push_back(
        Single("presence_serving",
               "1 while grpc.health.v1 says SERVING (the store is healthy and "
               "presenced is not shutting down), 0 while it says NOT_SERVING.",
               MetricType::Gauge, sources_.serving() ? 1.0 : 0.0));
  }

  MetricFamily build =
      Family("presence_build_info", "Always 1; the version of presenced.",
             MetricType::Gauge);
  ClientMetric& info = build.metric.emplace_back();
  info.label = {{"version", PRESENCE_VERSION}};
  info.gauge.value = 1;
  out.push_back(std::move(build));
  return out;
}

}  // namespace presence
