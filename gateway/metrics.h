// presence-rest's Prometheus metrics (--metrics_listen). The Grafana
// dashboard and the alert rules use these names.
#ifndef PRESENCE_GATEWAY_METRICS_H_
#define PRESENCE_GATEWAY_METRICS_H_

#include <memory>
#include <string>

#include "absl/strings/string_view.h"

namespace prometheus {
class Counter;
class Gauge;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace presence::rest {

// presence_rest_event_streams (gauge): open event streams.
// presence_rest_upstream_live (gauge): 1 while the WatchPresence stream to
//   presenced is live, else 0 (the event streams are stale).
// presence_rest_requests_total{route,code} (counter): answered requests, by
//   route (heartbeat, mark_offline, online_users, presence_stream, status,
//   presence, healthz, static, preflight, unknown) and HTTP status; an event
//   stream counts once, when it opens.
// presence_rest_upstream_reconnects_total (counter): new WatchPresence
//   streams after the first.
//
// Thread-safe (prometheus-cpp's metrics are atomic).
class GatewayMetrics {
 public:
  GatewayMetrics();
  ~GatewayMetrics();
  GatewayMetrics(const GatewayMetrics&) = delete;
  GatewayMetrics& operator=(const GatewayMetrics&) = delete;

  void StreamOpened();
  void StreamClosed();
  void SetUpstreamLive(bool live);
  void CountRequest(absl::string_view route, int code);
  void CountReconnect();

  // What a scrape collects; a prometheus::Collectable.
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

 private:
  const std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge& event_streams_;
  prometheus::Gauge& upstream_live_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Counter& reconnects_;
};

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_METRICS_H_
