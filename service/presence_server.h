#ifndef PRESENCE_SERVICE_PRESENCE_SERVER_H_
#define PRESENCE_SERVICE_PRESENCE_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "service/clock.h"
#include "service/event_hub.h"
#include "service/metrics.h"
#include "service/metrics_server.h"
#include "service/presence_registry.h"
#include "service/presence_service.h"
#include "service/presence_store.h"
#include "service/request_validation.h"
#include "service/store_writer.h"

namespace presence {

struct ServerOptions {
  // HOST:PORT; port 0 picks a free port (see PresenceServer::address()).
  std::string listen = "127.0.0.1:50051";
  std::string db_path = "presence.db";
  absl::Duration online_window = absl::Minutes(5);
  absl::Duration heartbeat_interval = absl::Minutes(2);
  Durability durability = Durability::kCommit;
  absl::Duration commit_interval = absl::Milliseconds(100);
  RequestLimits limits;
  // WatchPresence: ring size, per-watcher queue, watcher limit.
  EventHub::Options watch;
  // The source of "now"; must outlive the server. Null: the system clock.
  const Clock* clock = nullptr;
  // HOST:PORT to serve Prometheus metrics on at /metrics; port 0 picks a
  // free port (see PresenceServer::metrics_address()). Empty: no metrics.
  std::string metrics_listen;
};

// INVALID_ARGUMENT naming the option if `options` cannot work, e.g. an
// online_window shorter than two heartbeat intervals.
absl::Status ValidateServerOptions(const ServerOptions& options);

// presenced assembled: store, writer, registry, gRPC service, health and
// reflection, listening. Thread-safe.
class PresenceServer {
 public:
  // Opens the SQLite store at options.db_path, loads live sessions and starts
  // serving. Errors say what to fix: bad options, a database that cannot be
  // opened, an address that cannot be bound (e.g. in use).
  static absl::StatusOr<std::unique_ptr<PresenceServer>> Start(
      const ServerOptions& options);
  // The same on a given store (tests use it to inject storage faults).
  static absl::StatusOr<std::unique_ptr<PresenceServer>> Start(
      const ServerOptions& options, std::unique_ptr<PresenceStore> store);

  // Shutdown() with the default grace period.
  ~PresenceServer();
  PresenceServer(const PresenceServer&) = delete;
  PresenceServer& operator=(const PresenceServer&) = delete;

  // The bound address, HOST:PORT, with the real port.
  const std::string& address() const { return address_; }
  // The metrics address, HOST:PORT with the real port; empty without
  // metrics.
  const std::string& metrics_address() const { return metrics_address_; }

  // Reports NOT_SERVING, ends every WatchPresence stream with UNAVAILABLE,
  // stops accepting calls, lets calls in flight finish for up to `grace`
  // (then cancels them), then commits what is queued, and stops serving
  // metrics last (which takes up to 2 s more). Returns the error if that
  // final commit failed. Idempotent.
  absl::Status Shutdown(absl::Duration grace = absl::Seconds(5));

 private:
  PresenceServer(const ServerOptions& options,
                 std::unique_ptr<PresenceStore> store);
  absl::Status Load();
  absl::Status ServeMetrics();
  absl::Status Listen();
  void SweepLoop();

  const ServerOptions options_;
  const Clock& clock_;
  // Destruction runs bottom-up: the gRPC server goes first, the store last.
  std::unique_ptr<PresenceStore> store_;
  std::unique_ptr<ServerMetrics> metrics_;  // null without metrics
  std::unique_ptr<StoreWriter> writer_;
  std::unique_ptr<EventHub> hub_;
  std::unique_ptr<PresenceRegistry> registry_;
  std::unique_ptr<PresenceServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  int port_ = 0;
  std::string metrics_address_;

  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  absl::Status shutdown_status_ ABSL_GUARDED_BY(shutdown_mu_);
  absl::Notification stop_sweeping_;
  std::thread sweeper_;
  // Scrapes read the components: stopped in Shutdown(), before they go.
  std::unique_ptr<MetricsServer> metrics_server_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_PRESENCE_SERVER_H_
