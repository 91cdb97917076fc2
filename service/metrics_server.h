#ifndef PRESENCE_SERVICE_METRICS_SERVER_H_
#define PRESENCE_SERVICE_METRICS_SERVER_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace prometheus {
class Collectable;
}  // namespace prometheus

namespace presence {

// Serves a Collectable in Prometheus' text format at http://HOST:PORT/metrics:
// GET and HEAD answer 200, other paths 404, other methods 405; HTTP/1.1
// connections are kept alive. One I/O thread serves every connection
// asynchronously, so a client that sends slowly, or never finishes its
// request, costs a socket and never delays another scrape. Each scrape calls
// Collect() on that thread.
//
// Thread safety: address() from any thread; the Collectable must allow
// Collect() from the I/O thread while others update it.
class MetricsServer {
 public:
  // What one client can hold. The defaults suit Prometheus, which sends a
  // whole request at once and reads the answer at once.
  struct Limits {
    // A request must arrive whole within read_timeout of the server starting
    // to wait for it (so this also ends idle keep-alive connections), and
    // the client must take the answer within write_timeout; otherwise the
    // connection is closed.
    absl::Duration read_timeout = absl::Seconds(10);
    absl::Duration write_timeout = absl::Seconds(10);
    // A request line and headers larger than this are answered 431 and the
    // connection closed. A request body (which no scrape has) has the same
    // limit.
    size_t max_header_bytes = 8 * 1024;
    // Open connections. Further ones are accepted and closed at once, so the
    // listen queue never fills; room for 100 stuck clients and the scraper.
    int max_connections = 128;
  };

  // `listen`: HOST:PORT, with an IPv4 address, a host name (resolved; its
  // IPv4 address first) or a bracketed IPv6 address ([::1]:9464); port 0
  // picks a free port (see address()). INVALID_ARGUMENT if `listen` is not
  // of that form; UNAVAILABLE with the reason if it cannot be resolved or
  // bound, e.g. "cannot serve metrics on 127.0.0.1:9464: cannot bind to
  // 127.0.0.1:9464: 98 (Address already in use)". `collectable` must not be
  // null; the server holds it until destroyed.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen,
      std::shared_ptr<prometheus::Collectable> collectable);
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen,
      std::shared_ptr<prometheus::Collectable> collectable,
      const Limits& limits);

  // Stops serving: closes the listener and every connection, without waiting
  // for any client, and joins the I/O thread. No Collect() runs after it
  // returns.
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The bound address, HOST:PORT (HOST as given to Start()), with the real
  // port.
  const std::string& address() const { return address_; }

 private:
  class Impl;

  MetricsServer(std::unique_ptr<Impl> impl, std::string address);

  const std::unique_ptr<Impl> impl_;
  const std::string address_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_METRICS_SERVER_H_
