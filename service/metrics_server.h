#ifndef PRESENCE_SERVICE_METRICS_SERVER_H_
#define PRESENCE_SERVICE_METRICS_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace prometheus {
class Collectable;
class Exposer;
}  // namespace prometheus

namespace presence {

// Serves a Collectable in Prometheus' text format at http://HOST:PORT/metrics,
// with prometheus-cpp's Exposer (civetweb, two threads). Each scrape calls
// Collect() on one of those threads.
class MetricsServer {
 public:
  // `listen`: HOST:PORT, with an IPv4 address or a host name; port 0 picks a
  // free port (see address()). UNAVAILABLE with civetweb's reason if it
  // cannot listen, e.g. "cannot bind to 127.0.0.1:9464: 98 (Address already
  // in use)".
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen,
      std::shared_ptr<prometheus::Collectable> collectable);

  // Stops serving; no Collect() runs after it returns.
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The bound address, HOST:PORT, with the real port.
  const std::string& address() const { return address_; }

 private:
  MetricsServer(std::shared_ptr<prometheus::Collectable> collectable,
                std::unique_ptr<prometheus::Exposer> exposer,
                std::string address);

  // The exposer holds the collectable by weak_ptr and goes first.
  const std::shared_ptr<prometheus::Collectable> collectable_;
  const std::unique_ptr<prometheus::Exposer> exposer_;
  const std::string address_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_METRICS_SERVER_H_
