// presence-rest: the classic chat endpoints over HTTP/1.1 for browsers,
// backed by presenced, plus Server-Sent Events fed by one WatchPresence
// stream. See gateway/README.md.
#ifndef PRESENCE_GATEWAY_REST_SERVER_H_
#define PRESENCE_GATEWAY_REST_SERVER_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "presence/client.h"

namespace presence::rest {

struct RestOptions {
  // HOST:PORT to serve HTTP on; port 0 picks a free port (see port()).
  std::string listen = "127.0.0.1:8080";
  // presenced's address, and the deadline of each call to it.
  ClientOptions presenced;
  // The HS256 key of the callers' JWTs (Authorization: Bearer <JWT>).
  std::string jwt_secret;
  // The origins whose pages may call us (CORS), comma-separated
  // scheme://host[:port]; empty: same-origin only.
  std::string cors_origins;
  // HOST:PORT to serve Prometheus metrics on, at /metrics; empty: none.
  std::string metrics_listen;
  // The most event streams at once; more are answered 503.
  size_t max_event_streams = 100'000;
  // Events queued for one slow browser; past this they are dropped and the
  // browser gets one fresh snapshot instead, so it cannot grow our memory.
  size_t event_queue_limit = 256;
  // A comment line on every event stream this often, so that proxies in
  // between keep idle streams open and dead browsers are found.
  absl::Duration keepalive = absl::Seconds(15);
  // The longest a client may take to send one request.
  absl::Duration request_timeout = absl::Seconds(30);
  // While the watch is live, presenced must answer a small call this often
  // (see UpstreamOptions::check_interval).
  absl::Duration upstream_check_interval = absl::Seconds(1);
};

// An HTTP server on one I/O thread (Boost.Beast): requests, responses and
// event streams are asynchronous, so an idle event stream costs a socket and
// a few hundred bytes, not a thread. Calls to presenced use gRPC's callback
// API and never block that thread.
//
// The parts, each in a file of its own: Listener (bind and accept),
// HttpSession (one connection's requests), Router (endpoints, CORS, the
// caller), Upstream (every call to presenced and its JSON, and the watch),
// PresenceFanout and EventStreams (browsers' event streams).
class RestServer {
 public:
  // Binds, starts the I/O thread and the WatchPresence stream. Fails if an
  // option is invalid (INVALID_ARGUMENT, with the flag's name) or an address
  // cannot be bound.
  static absl::StatusOr<std::unique_ptr<RestServer>> Start(
      const RestOptions& options);
  // Shutdown()s.
  ~RestServer();
  RestServer(const RestServer&) = delete;
  RestServer& operator=(const RestServer&) = delete;

  // The port actually bound.
  int port() const;
  // The metrics address actually bound (HOST:PORT), or empty.
  std::string metrics_address() const;
  // Stops accepting, ends every event stream, waits for the calls to
  // presenced in flight, and stops the I/O thread. Idempotent.
  void Shutdown();

  class Impl;

 private:
  explicit RestServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_REST_SERVER_H_
