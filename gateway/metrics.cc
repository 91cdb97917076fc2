#include "gateway/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

namespace presence::rest {

GatewayMetrics::GatewayMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      event_streams_(prometheus::BuildGauge()
                         .Name("presence_rest_event_streams")
                         .Help("Open /api/chat/presence/stream connections.")
                         .Register(*registry_)
                         .Add({})),
      upstream_live_(
          prometheus::BuildGauge()
              .Name("presence_rest_upstream_live")
              .Help("1 while the WatchPresence stream to presenced is live; "
                    "0 while event streams are stale.")
              .Register(*registry_)
              .Add({})),
      requests_(prometheus::BuildCounter()
                    .Name("presence_rest_requests_total")
                    .Help("Answered HTTP requests by route and status code.")
                    .Register(*registry_)),
      reconnects_(prometheus::BuildCounter()
                      .Name("presence_rest_upstream_reconnects_total")
                      .Help("WatchPresence streams to presenced started after "
                            "the first one.")
                      .Register(*registry_)
                      .Add({})) {}

GatewayMetrics::~GatewayMetrics() = default;

void GatewayMetrics::StreamOpened() { event_streams_.Increment(); }

void GatewayMetrics::StreamClosed() { event_streams_.Decrement(); }

void GatewayMetrics::SetUpstreamLive(bool live) {
  upstream_live_.Set(live ? 1 : 0);
}

void GatewayMetrics::CountRequest(absl::string_view route, int code) {
  // Family::Add returns the existing counter for labels it has seen.
  requests_.Add({{"route", std::string(route)}, {"code", std::to_string(code)}})
      .Increment();
}

void GatewayMetrics::CountReconnect() { reconnects_.Increment(); }

}  // namespace presence::rest
