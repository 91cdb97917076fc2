#include "service/presence_service.h"

#include <algorithm>
#include <iterator>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/arena.h"
#include "service/grpc_codec.h"
#include "service/log.h"
#include "service/proto_convert.h"
#include "service/proto_time.h"
#include "service/status_macros.h"
#include "service/watch_reactor.h"

namespace presence {

// One unary call: gRPC's default reactor, the call's timer, and its place
// among the calls in flight. gRPC's default reactor, not one of presenced's:
// gRPC runs the OnDone of its own inline, but hands a custom reactor's to
// another thread, which cost about a third of the Heartbeat throughput.
class PresenceServiceImpl::UnaryCall {
 public:
  // Every handler's first step: enters the count, starts the timer, then
  // admits the call (Admit()) into *request. A call refused is answered
  // here, and refused() is true.
  template <typename Request>
  UnaryCall(PresenceServiceImpl* service, grpc::CallbackServerContext* context,
            Rpc rpc, const grpc::ByteBuffer& bytes, Request* request)
      : reactor_(context->DefaultReactor()),
        calls_(&service->calls_),
        timer_(service->options_.metrics, rpc) {
    // Before Admit()'s look at the shutdown flag (see StopAdmitting()).
    calls_->Enter();
    if (absl::Status s = service->Admit(*context, rpc, bytes, request);
        !s.ok()) {
      refused_ = true;
      Answer(s);
    }
  }

  bool refused() const { return refused_; }
  grpc::ServerUnaryReactor* reactor() const { return reactor_; }

  // Answers now. Once per call, this or AnswerWhenDurable().
  grpc::ServerUnaryReactor* Answer(const absl::Status& status) const {
    Finish(reactor_, calls_, &timer_, status);
    return reactor_;
  }

  // Answers once the change behind `ticket` is durable (see
  // StoreWriter::WhenDurable).
  grpc::ServerUnaryReactor* AnswerWhenDurable(StoreWriter* writer,
                                              uint64_t ticket) const {
    grpc::ServerUnaryReactor* reactor = reactor_;
    CallCounter* calls = calls_;
    if (!timer_.active()) {
      // Two pointers: fit AnyInvocable's inline storage, so no allocation
      // per call when metrics are off.
      writer->WhenDurable(ticket, [reactor, calls](absl::Status status) {
        Finish(reactor, calls, nullptr, status);
      });
    } else {
      writer->WhenDurable(
          ticket, [reactor, calls, timer = timer_](absl::Status status) {
            Finish(reactor, calls, &timer, status);
          });
    }
    return reactor_;
  }

 private:
  // The call leaves the count once its answer is queued; shutdown's wait
  // after the GOAWAY lets it go out. `timer` null: no metrics.
  static void Finish(grpc::ServerUnaryReactor* reactor, CallCounter* calls,
                     const RpcTimer* timer, const absl::Status& status) {
    grpc::Status finish = ToGrpcStatus(status);
    if (timer != nullptr) timer->Stop(finish.error_code());
    reactor->Finish(finish);
    calls->Leave();
  }

  grpc::ServerUnaryReactor* const reactor_;
  CallCounter* const calls_;
  const RpcTimer timer_;
  bool refused_ = false;
};

PresenceServiceImpl::PresenceServiceImpl(PresenceRegistry* registry,
                                         StoreWriter* writer, EventHub* hub,
                                         Options options)
    : registry_(registry), writer_(writer), hub_(hub), options_(options) {}

void PresenceServiceImpl::StopAdmitting() {
  admitting_.store(false);  // seq_cst, against Enter() then Admit()
}

bool PresenceServiceImpl::AwaitNoCallsInFlight(absl::Duration timeout) {
  return calls_.AwaitZero(timeout);
}

absl::Status PresenceServiceImpl::Authorize(
    const grpc::CallbackServerContext& context, Rpc rpc) const {
  if (options_.auth == nullptr) return absl::OkStatus();
  absl::string_view authorization;
  auto it = context.client_metadata().find("authorization");
  if (it != context.client_metadata().end()) {
    authorization = absl::string_view(it->second.data(), it->second.size());
  }
  absl::StatusOr<std::shared_ptr<Caller>> caller =
      options_.auth->Authenticate(authorization);
  if (!caller.ok()) {
    rejections_.Log(absl::StrCat("refused a call from ", context.peer(), ": ",
                                 caller.status().message()));
    return caller.status();
  }
  (*caller)->calls[static_cast<int>(rpc)].fetch_add(1,
                                                    std::memory_order_relaxed);
  if (!(*caller)->logged.exchange(true, std::memory_order_relaxed)) {
    LogInfo(absl::StrCat("caller '", (*caller)->name, "' authenticated from ",
                         context.peer()));
  }
  return absl::OkStatus();
}

namespace {
// The users a request is about, for the shard's ownership check.
// BatchHeartbeat's items are checked one by one, each with its own result.
absl::Status CheckOwner(const ShardOwnership& o,
                        const v1::HeartbeatRequest& r) {
  return o.Check(r.user_id());
}
absl::Status CheckOwner(const ShardOwnership& o,
                        const v1::MarkOfflineRequest& r) {
  return o.Check(r.user_id());
}
absl::Status CheckOwner(const ShardOwnership& o,
                        const v1::SetStatusRequest& r) {
  return o.Check(r.user_id());
}
absl::Status CheckOwner(const ShardOwnership&,
                        const v1::BatchHeartbeatRequest&) {
  return absl::OkStatus();
}
// The hand-over calls exist for resharding only: an unsharded presenced
// refuses them, so that they are no way around Heartbeat on a single node.
absl::Status HandOverOnlyWhenSharded(const ShardOwnership& o) {
  if (o.sharded()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "this presenced is not sharded (no --shards): it has no users to hand "
      "over or take over; ListForeignUsers and ImportLastSeen are for "
      "resharding (docs/scale-out.md)");
}
absl::Status CheckOwner(const ShardOwnership& o,
                        const v1::ListForeignUsersRequest&) {
  return HandOverOnlyWhenSharded(o);
}
// Each item's owner is checked by the handler, before any is applied.
absl::Status CheckOwner(const ShardOwnership& o,
                        const v1::ImportLastSeenRequest&) {
  return HandOverOnlyWhenSharded(o);
}
template <typename Request>
absl::Status CheckOwner(const ShardOwnership& o, const Request& r) {
  return o.CheckAll(r.user_ids());
}

}  // namespace

template <typename Request>
absl::Status PresenceServiceImpl::Admit(
    const grpc::CallbackServerContext& context, Rpc rpc,
    const grpc::ByteBuffer& bytes, Request* request) const {
  if (!admitting_.load()) {
    return absl::UnavailableError(
        "presenced is shutting down; retry (it is likely restarting)");
  }
  PRESENCE_RETURN_IF_ERROR(Authorize(context, rpc));
  PRESENCE_RETURN_IF_ERROR(ParseMessage(bytes, request));
  PRESENCE_RETURN_IF_ERROR(ValidateRequest(*request, options_.limits));
  PRESENCE_RETURN_IF_ERROR(CheckOwner(options_.ownership, *request));
  // Refused before it is applied: memory must not hold what cannot be kept.
  if (ChangesState(rpc)) PRESENCE_RETURN_IF_ERROR(writer_->accepting());
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* PresenceServiceImpl::Heartbeat(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  v1::HeartbeatRequest request;
  const UnaryCall call(this, context, Rpc::kHeartbeat, *bytes, &request);
  if (call.refused()) return call.reactor();
  // client_time is deliberately not read: only the server's clock decides.
  const HeartbeatResult result = registry_->Heartbeat(
      request.user_id(), request.session_id(), request.idle());
  v1::HeartbeatResponse response;
  FillHeartbeat(result, &response);
  SerializeMessage(response, answer);
  return call.AnswerWhenDurable(writer_, result.write_ticket);
}

void PresenceServiceImpl::FillHeartbeat(const HeartbeatResult& result,
                                        v1::HeartbeatResponse* response) const {
  *response->mutable_server_time() = ToProto(result.server_time);
  *response->mutable_online_until() = ToProto(result.online_until);
  *response->mutable_heartbeat_interval() =
      ToProto(options_.heartbeat_interval);
  response->set_became_online(result.became_online);
}

grpc::ServerUnaryReactor* PresenceServiceImpl::BatchHeartbeat(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  // The request's and the answer's small messages (several per item) come
  // from one arena, not a malloc and a free each.
  google::protobuf::ArenaOptions arena_options;
  arena_options.start_block_size = 16 * 1024;
  arena_options.max_block_size = 256 * 1024;
  google::protobuf::Arena arena(arena_options);
  v1::BatchHeartbeatRequest& request =
      *google::protobuf::Arena::CreateMessage<v1::BatchHeartbeatRequest>(
          &arena);
  const UnaryCall call(this, context, Rpc::kBatchHeartbeat, *bytes, &request);
  if (call.refused()) return call.reactor();
  // Tickets grow in the order changes are recorded and commits are in
  // order, so the batch is durable once its largest ticket is.
  v1::BatchHeartbeatResponse& response =
      *google::protobuf::Arena::CreateMessage<v1::BatchHeartbeatResponse>(
          &arena);
  uint64_t last_ticket = 0;
  absl::Time server_time = absl::InfinitePast();
  for (int i = 0; i < request.heartbeats_size(); ++i) {
    const v1::HeartbeatRequest& item = request.heartbeats(i);
    v1::BatchHeartbeatResult* result = response.add_results();
    absl::Status s = ValidateRequest(item, options_.limits);
    if (s.ok()) s = options_.ownership.Check(item.user_id());
    if (!s.ok()) {
      result->mutable_error()->set_code(static_cast<int32_t>(s.code()));
      result->mutable_error()->set_message(
          absl::StrCat("heartbeats[", i, "].", s.message()));
      continue;
    }
    const HeartbeatResult applied =
        registry_->Heartbeat(item.user_id(), item.session_id(), item.idle());
    FillHeartbeat(applied, result->mutable_heartbeat());
    last_ticket = std::max(last_ticket, applied.write_ticket);
    server_time = std::max(server_time, applied.server_time);
  }
  if (server_time != absl::InfinitePast()) {
    *response.mutable_server_time() = ToProto(server_time);
  }
  SerializeMessage(response, answer);
  return call.AnswerWhenDurable(writer_, last_ticket);
}

grpc::ServerUnaryReactor* PresenceServiceImpl::MarkOffline(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  v1::MarkOfflineRequest request;
  const UnaryCall call(this, context, Rpc::kMarkOffline, *bytes, &request);
  if (call.refused()) return call.reactor();
  const MarkOfflineResult result =
      registry_->MarkOffline(request.user_id(), request.session_id());
  v1::MarkOfflineResponse response;
  *response.mutable_server_time() = ToProto(result.server_time);
  response.set_still_online(result.still_online);
  response.set_sessions_ended(result.sessions_ended);
  SerializeMessage(response, answer);
  // Ticket 0 when nothing was left to end: the writer then waits for what
  // an earlier attempt of this logout may still have pending.
  return call.AnswerWhenDurable(writer_, result.write_ticket);
}

grpc::ServerUnaryReactor* PresenceServiceImpl::ListOnline(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  v1::ListOnlineRequest request;
  const UnaryCall call(this, context, Rpc::kListOnline, *bytes, &request);
  if (call.refused()) return call.reactor();
  const int64_t after = *DecodePageToken(request.page_token());
  const OnlinePage page = registry_->ListOnline(
      request.user_ids(), after, EffectivePageSize(request, options_.limits));
  v1::ListOnlineResponse response;
  response.mutable_online_users()->Add(page.user_ids.begin(),
                                       page.user_ids.end());
  if (page.has_more) {
    response.set_next_page_token(EncodePageToken(page.user_ids.back()));
  }
  *response.mutable_server_time() = ToProto(page.server_time);
  response.set_total_online(page.total_online);
  SerializeMessage(response, answer);
  return call.Answer(absl::OkStatus());
}

grpc::ServerUnaryReactor* PresenceServiceImpl::GetPresence(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  v1::GetPresenceRequest request;
  const UnaryCall call(this, context, Rpc::kGetPresence, *bytes, &request);
  if (call.refused()) return call.reactor();
  const PresenceLookup lookup =
      registry_->GetPresence(request.user_ids(), request.viewer_user_id());
  v1::GetPresenceResponse response;
  *response.mutable_server_time() = ToProto(lookup.server_time);
  for (const UserPresenceInfo& info : lookup.users) {
    FillPresence(info, request.rich_status(), response.add_users());
  }
  SerializeMessage(response, answer);
  return call.Answer(absl::OkStatus());
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* PresenceServiceImpl::WatchPresence(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes) {
  const RpcTimer timer(options_.metrics, Rpc::kWatchPresence);
  v1::WatchPresenceRequest request;
  if (absl::Status s = Admit(*context, Rpc::kWatchPresence, *bytes, &request);
      !s.ok()) {
    return RejectWatch(&calls_, s, timer);
  }
  WatchRequest watch;
  watch.user_ids.assign(request.user_ids().begin(), request.user_ids().end());
  watch.send_snapshot = request.send_snapshot();
  watch.resume_after = request.resume_after();
  watch.epoch = request.epoch();
  watch.rich_status = request.rich_status();
  return StartWatch(hub_, registry_, &calls_, watch, request.max_batch(),
                    timer);
}

grpc::ServerUnaryReactor* PresenceServiceImpl::ListForeignUsers(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  v1::ListForeignUsersRequest request;
  const UnaryCall call(this, context, Rpc::kListForeignUsers, *bytes, &request);
  if (call.refused()) return call.reactor();
  const int64_t after = *DecodePageToken(request.page_token());
  const int page_size = EffectivePageSize(request, options_.limits);
  auto it = std::upper_bound(
      foreign_.begin(), foreign_.end(), after,
      [](int64_t id, const StoredLastSeen& u) { return id < u.user_id; });
  v1::ListForeignUsersResponse response;
  for (int n = 0; it != foreign_.end() && n < page_size; ++it, ++n) {
    v1::UserLastSeen* out = response.add_users();
    out->set_user_id(it->user_id);
    *out->mutable_last_seen() = ToProto(it->last_seen);
  }
  if (it != foreign_.end()) {
    response.set_next_page_token(EncodePageToken(std::prev(it)->user_id));
  }
  response.set_total(static_cast<int64_t>(foreign_.size()));
  SerializeMessage(response, answer);
  return call.Answer(absl::OkStatus());
}

grpc::ServerUnaryReactor* PresenceServiceImpl::ImportLastSeen(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  v1::ImportLastSeenRequest request;
  const UnaryCall call(this, context, Rpc::kImportLastSeen, *bytes, &request);
  if (call.refused()) return call.reactor();
  // All or nothing on ownership: a tool given the wrong map learns it
  // before anything is imported.
  for (const v1::UserLastSeen& user : request.users()) {
    if (absl::Status s = options_.ownership.Check(user.user_id()); !s.ok()) {
      return call.Answer(s);
    }
  }
  uint64_t last_ticket = 0;
  int32_t updated = 0;
  for (const v1::UserLastSeen& user : request.users()) {
    const uint64_t ticket =
        registry_->AdoptLastSeen(user.user_id(), FromProto(user.last_seen()));
    if (ticket != 0) ++updated;
    last_ticket = std::max(last_ticket, ticket);
  }
  // Rare (a reshard) and a change of state no event announces: on record.
  LogInfo(absl::StrCat("ImportLastSeen from ", context->peer(), ": ",
                       request.users_size(), " users, last_seen raised for ",
                       updated));
  v1::ImportLastSeenResponse response;
  response.set_updated(updated);
  SerializeMessage(response, answer);
  return call.AnswerWhenDurable(writer_, last_ticket);
}

grpc::ServerUnaryReactor* PresenceServiceImpl::SetStatus(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  v1::SetStatusRequest request;
  const UnaryCall call(this, context, Rpc::kSetStatus, *bytes, &request);
  if (call.refused()) return call.reactor();
  absl::StatusOr<SetStatusResult> result =
      registry_->SetStatus(request.user_id(), ToStatusUpdate(request));
  if (!result.ok()) return call.Answer(result.status());
  v1::SetStatusResponse response;
  FillPresence(result->self, /*rich=*/true, response.mutable_presence());
  *response.mutable_server_time() = ToProto(result->server_time);
  SerializeMessage(response, answer);
  return call.AnswerWhenDurable(writer_, result->write_ticket);
}

}  // namespace presence
