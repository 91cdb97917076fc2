#ifndef PRESENCE_SERVICE_PRESENCE_SERVER_H_
#define PRESENCE_SERVICE_PRESENCE_SERVER_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/caller_auth.h"
#include "service/clock.h"
#include "service/connection_listener.h"
#include "service/event_hub.h"
#include "service/metrics.h"
#include "service/metrics_server.h"
#include "service/presence_registry.h"
#include "service/presence_service.h"
#include "service/presence_store.h"
#include "service/reflection_v1.h"
#include "service/request_validation.h"
#include "service/store_writer.h"
#include "service/tls_files.h"
#include "service/wakeup.h"

namespace presence {

struct ServerOptions {
  // HOST:PORT; port 0 picks a free port (see PresenceServer::address()).
  std::string listen = "127.0.0.1:50051";
  std::string db_path = "presence.db";
  absl::Duration online_window = absl::Minutes(5);
  // Rich presence: AWAY once every live session was idle this long.
  absl::Duration away_after = absl::Minutes(10);
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
  // TLS (mTLS with a client CA) to listen with. Empty: plaintext.
  std::optional<TlsMaterial> tls;
  // Null: no authentication. Else every call but grpc.health.v1.Health
  // needs a caller's token, checked on its headers before its message is
  // read; must outlive the server.
  const CallerAuth* auth = nullptr;
  // Serve server reflection: grpc.reflection.v1alpha (gRPC's) and
  // grpc.reflection.v1 (relayed to it), both or neither. With `auth` they
  // need a token like every call.
  bool reflection = true;
  // A new session beyond this many of one user ends the user's oldest one.
  int max_sessions_per_user = 32;
  // Sharded (--shard, --shards): the users this presenced owns. Calls about
  // others are refused; at start-up their stored state is set aside for
  // presence-reshard (ListForeignUsers) instead of being loaded. Default:
  // unsharded, owns everyone.
  ShardOwnership ownership;
  // gRPC limits: the largest request accepted, and how often a connection
  // is pinged (its peer is dropped if no answer comes within the timeout:
  // dead watchers are reaped) and how long an idle one is kept.
  int max_request_bytes = 4 * 1024 * 1024;
  // Client connections open at once; one more is accepted and closed at
  // once. Start() lowers it to fit the open-file limit.
  int max_connections = 10'000;
  // Calls open at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_
  // STREAMS); a client queues those beyond it.
  int max_concurrent_streams = 1'000;
  // Memory gRPC may take for calls and connections (its ResourceQuota); near
  // it, gRPC shrinks flow-control windows and then drops idle connections
  // and calls. It does not stop streams whose message never comes (gRPC
  // 1.51): against peers that are not trusted, `auth` is what bounds them.
  int64_t grpc_memory_quota_bytes = int64_t{256} << 20;
  absl::Duration keepalive_time = absl::Minutes(1);
  absl::Duration keepalive_timeout = absl::Seconds(20);
  absl::Duration max_connection_idle = absl::Minutes(30);
};

// INVALID_ARGUMENT naming the option if `options` cannot work, e.g. an
// online_window shorter than two heartbeat intervals.
absl::Status ValidateServerOptions(const ServerOptions& options);

// presenced assembled: store, writer, registry, gRPC service, health and
// reflection, listening. Thread-safe.
//
// Health (the whole server, "", and presence.v1.PresenceService alike) is
// SERVING while the store commits, NOT_SERVING from the first failed commit
// until one succeeds again (reads are still answered from memory meanwhile),
// and NOT_SERVING for good once Shutdown() begins.
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

  // Reports NOT_SERVING, stops accepting connections, answers new calls
  // UNAVAILABLE, ends every WatchPresence stream with UNAVAILABLE, lets the
  // calls in flight finish for up to `grace` (then cancels them), closes
  // every connection at once without waiting for idle clients or health
  // watches, then commits what is queued, and stops serving
  // metrics last (at once, waiting for no scraper). Returns the error if
  // that final commit failed, or if durability had ended (the database
  // file deleted or replaced). Idempotent.
  absl::Status Shutdown(absl::Duration grace = absl::Seconds(5));

 private:
  PresenceServer(const ServerOptions& options,
                 std::unique_ptr<PresenceStore> store);
  absl::Status Load();
  absl::Status ServeMetrics();
  absl::Status Listen();
  void SweepLoop();
  // Called by the writer thread when commits start failing or succeed again.
  void OnStoreHealthChange(const absl::Status& status);
  void UpdateHealth() ABSL_EXCLUSIVE_LOCKS_REQUIRED(health_mu_);
  // What the health service says: SERVING or not.
  bool Serving() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(health_mu_) {
    return store_healthy_ && !shutting_down_;
  }

  const ServerOptions options_;
  const Clock& clock_;
  // Destruction runs bottom-up: the gRPC server goes first, the store last.
  std::unique_ptr<PresenceStore> store_;
  std::unique_ptr<ServerMetrics> metrics_;  // null without metrics
  std::unique_ptr<StoreWriter> writer_;
  std::unique_ptr<EventHub> hub_;
  std::unique_ptr<PresenceRegistry> registry_;
  std::unique_ptr<PresenceServiceImpl> service_;
  std::unique_ptr<ReflectionV1Service> reflection_v1_;  // null without
  std::unique_ptr<ConnectionListener> listener_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::string metrics_address_;

  // Taken after shutdown_mu_, never before it.
  absl::Mutex health_mu_;
  // Null until the server listens.
  grpc::HealthCheckServiceInterface* health_ ABSL_GUARDED_BY(health_mu_) =
      nullptr;
  bool store_healthy_ ABSL_GUARDED_BY(health_mu_) = true;
  bool shutting_down_ ABSL_GUARDED_BY(health_mu_) = false;

  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  absl::Status shutdown_status_ ABSL_GUARDED_BY(shutdown_mu_);
  std::atomic<bool> stop_sweeping_{false};
  Wakeup sweeper_wakeup_;  // monotonic sleeps, so a clock step cannot stall it
  std::thread sweeper_;
  // Scrapes read the components: stopped in Shutdown(), before they go.
  std::unique_ptr<MetricsServer> metrics_server_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_PRESENCE_SERVER_H_
