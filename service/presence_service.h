#ifndef PRESENCE_SERVICE_PRESENCE_SERVICE_H_
#define PRESENCE_SERVICE_PRESENCE_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "presence/v1/presence.grpc.pb.h"
#include "service/caller_auth.h"
#include "service/event_hub.h"
#include "service/metrics.h"
#include "service/presence_registry.h"
#include "service/request_validation.h"
#include "service/store_writer.h"

namespace presence {

// The one place where an absl::Status becomes a grpc::Status.
grpc::Status ToGrpcStatus(const absl::Status& status);

// presence.v1.PresenceService on gRPC's callback API. Validates requests,
// applies them to the registry and, for changes, answers once the store
// writer reports them durable (no thread blocks per RPC). WatchPresence
// streams the hub's events with one write in flight per stream. With
// metrics, every call is recorded with its method, status code and duration.
class PresenceServiceImpl final : public v1::PresenceService::CallbackService {
 public:
  struct Options {
    absl::Duration heartbeat_interval = absl::Minutes(2);
    RequestLimits limits;
    // Null: no metrics, and no clock read for them. Must outlive the service.
    ServerMetrics* metrics = nullptr;
    // Null: every caller is let in. Otherwise every call must carry
    // `authorization: Bearer <token>` of one of its callers, or is refused
    // UNAUTHENTICATED. Must outlive the service.
    const CallerAuth* auth = nullptr;
  };

  // `registry`, `writer` and `hub` must outlive the service.
  PresenceServiceImpl(PresenceRegistry* registry, StoreWriter* writer,
                      EventHub* hub, Options options);

  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* MarkOffline(
      grpc::CallbackServerContext* context,
      const v1::MarkOfflineRequest* request,
      v1::MarkOfflineResponse* response) override;
  grpc::ServerUnaryReactor* ListOnline(
      grpc::CallbackServerContext* context,
      const v1::ListOnlineRequest* request,
      v1::ListOnlineResponse* response) override;
  grpc::ServerUnaryReactor* GetPresence(
      grpc::CallbackServerContext* context,
      const v1::GetPresenceRequest* request,
      v1::GetPresenceResponse* response) override;
  grpc::ServerUnaryReactor* BatchHeartbeat(
      grpc::CallbackServerContext* context,
      const v1::BatchHeartbeatRequest* request,
      v1::BatchHeartbeatResponse* response) override;
  grpc::ServerWriteReactor<v1::WatchPresenceResponse>* WatchPresence(
      grpc::CallbackServerContext* context,
      const v1::WatchPresenceRequest* request) override;

 private:
  // Finishes `reactor` once the change behind `ticket` is durable.
  void FinishWhenDurable(grpc::ServerUnaryReactor* reactor, uint64_t ticket,
                         const RpcTimer& timer);
  void FillHeartbeat(const HeartbeatResult& result,
                     v1::HeartbeatResponse* response) const;
  // OK if there is no auth or the call carries a known caller's token (then
  // counted for that caller); else UNAUTHENTICATED, logged.
  absl::Status Authorize(const grpc::CallbackServerContext& context,
                         Rpc rpc) const;

  PresenceRegistry* const registry_;
  StoreWriter* const writer_;
  EventHub* const hub_;
  const Options options_;
  mutable std::atomic<int64_t> last_rejection_log_{0};  // unix seconds
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_PRESENCE_SERVICE_H_
