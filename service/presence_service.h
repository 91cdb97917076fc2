#ifndef PRESENCE_SERVICE_PRESENCE_SERVICE_H_
#define PRESENCE_SERVICE_PRESENCE_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "presence/v1/presence.grpc.pb.h"
#include "service/call_counter.h"
#include "service/caller_auth.h"
#include "service/event_hub.h"
#include "service/grpc_codec.h"
#include "service/log.h"
#include "service/metrics.h"
#include "service/presence_registry.h"
#include "service/presence_store.h"
#include "service/request_validation.h"
#include "service/shard_ownership.h"
#include "service/store_writer.h"

namespace presence {

// presence.v1.PresenceService on gRPC's callback API, every method of it
// "raw": presenced parses requests and serializes responses itself, so that
// a request that does not parse is answered INVALID_ARGUMENT with protobuf's
// reason (gRPC 1.51's callback handlers answer UNIMPLEMENTED with no message)
// and protobuf's own log line about it goes into that answer, not to stderr.
using RawPresenceService = v1::PresenceService::WithRawCallbackMethod_Heartbeat<
    v1::PresenceService::WithRawCallbackMethod_MarkOffline<
        v1::PresenceService::WithRawCallbackMethod_ListOnline<
            v1::PresenceService::WithRawCallbackMethod_GetPresence<
                v1::PresenceService::WithRawCallbackMethod_WatchPresence<
                    v1::PresenceService::WithRawCallbackMethod_BatchHeartbeat<
                        v1::PresenceService::
                            WithRawCallbackMethod_ListForeignUsers<
                                v1::PresenceService::
                                    WithRawCallbackMethod_ImportLastSeen<
                                        v1::PresenceService::
                                            WithRawCallbackMethod_SetStatus<
                                                v1::PresenceService::
                                                    Service>>>>>>>>>;

// Validates requests, applies them to the registry and, for changes, answers
// once the store writer reports them durable (no thread blocks per RPC).
// WatchPresence streams the hub's events with one write in flight per
// stream. With metrics, every call is recorded with its method, status code
// and duration.
//
// Every call is counted from its start until its answer is queued (a unary
// call) or gRPC is done with it (a stream's OnDone), so that shutdown can let
// the calls in flight finish and then cut idle connections at once.
class PresenceServiceImpl final : public RawPresenceService {
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
    // The users this presenced answers for; a call about anyone else is
    // refused FAILED_PRECONDITION naming the owner. Default: everyone.
    ShardOwnership ownership;
  };

  // `registry`, `writer` and `hub` must outlive the service.
  PresenceServiceImpl(PresenceRegistry* registry, StoreWriter* writer,
                      EventHub* hub, Options options);

  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* MarkOffline(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListOnline(grpc::CallbackServerContext* context,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetPresence(grpc::CallbackServerContext* context,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* BatchHeartbeat(grpc::CallbackServerContext* context,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchPresence(
      grpc::CallbackServerContext* context,
      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* ListForeignUsers(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ImportLastSeen(grpc::CallbackServerContext* context,
                                           const grpc::ByteBuffer* request,
                                           grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* SetStatus(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;

  // Start-up only, before serving: the users whose stored state this shard
  // set aside because other shards own them, ascending by id
  // (ListForeignUsers pages through them).
  void SetForeignUsers(std::vector<StoredLastSeen> users) {
    foreign_ = std::move(users);
  }

  // Shutdown: from now on every new call is answered UNAVAILABLE ("shutting
  // down"), before it is applied. Calls already started go on.
  void StopAdmitting();
  // Waits until no call is in flight (true) or `timeout` passes (false), on
  // the monotonic clock. Meant for after StopAdmitting().
  bool AwaitNoCallsInFlight(absl::Duration timeout);
  int64_t calls_in_flight() const { return calls_.in_flight(); }

 private:
  // The checks every call starts with: not shutting down, a known caller,
  // a request that parses (into *request) and is valid, a user this shard
  // owns and, for a change (ChangesState()), a store that can still keep it.
  template <typename Request>
  absl::Status Admit(const grpc::CallbackServerContext& context, Rpc rpc,
                     const grpc::ByteBuffer& bytes, Request* request) const;
  // A unary call from its start to its answer (presence_service.cc).
  class UnaryCall;
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
  mutable ThrottledErrorLog rejections_;
  std::atomic<bool> admitting_{true};
  CallCounter calls_;
  // Set before serving, read-only after.
  std::vector<StoredLastSeen> foreign_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_PRESENCE_SERVICE_H_
