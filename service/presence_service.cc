#include "service/presence_service.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/log.h"
#include "service/proto_time.h"

namespace presence {
namespace {

void Finish(grpc::ServerUnaryReactor* reactor, const RpcTimer& timer,
            const absl::Status& status) {
  grpc::Status finish = ToGrpcStatus(status);
  timer.Stop(finish.error_code());
  reactor->Finish(finish);
}

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context,
                                 const RpcTimer& timer,
                                 const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Finish(reactor, timer, status);
  return reactor;
}

using WatchWriteReactor = grpc::ServerWriteReactor<v1::WatchPresenceResponse>;

// A watch that ends before its first message (bad request, no capacity).
class RejectedWatch : public WatchWriteReactor {
 public:
  RejectedWatch(const absl::Status& status, const RpcTimer& timer) {
    grpc::Status finish = ToGrpcStatus(status);
    timer.Stop(finish.error_code());
    Finish(finish);
  }
  void OnDone() override { delete this; }
};

// One WatchPresence stream. It pulls messages from the hub and keeps exactly
// one write in flight: MaybeWrite() starts the next write (or the Finish)
// only when none is in flight, OnWriteDone() calls it again, and the hub's
// dispatcher calls it (OnReady) when a message arrives for an idle stream.
//
// Lifetime: owned by shared_ptrs, self_ until OnDone(); the hub holds a
// weak_ptr, so a wake that races with OnDone() finds the stream alive or
// not at all. No lock is held while calling into gRPC.
class WatchReactor : public WatchWriteReactor, public WatchSink {
 public:
  static WatchWriteReactor* Start(EventHub* hub, const WatchRequest& request,
                                  const RpcTimer& timer) {
    auto reactor = std::shared_ptr<WatchReactor>(new WatchReactor(hub, timer));
    absl::StatusOr<EventHub::WatchId> id = hub->Watch(request, reactor);
    if (!id.ok()) return new RejectedWatch(id.status(), timer);
    reactor->id_ = *id;
    reactor->self_ = reactor;
    // The hub wakes a watch only after a Pop() found it empty, so nothing
    // else runs MaybeWrite() before this first call.
    reactor->MaybeWrite();
    return reactor.get();
  }

  void OnReady() override { MaybeWrite(); }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      if (!ok) broken_ = true;  // the client is gone or the call was cancelled
    }
    MaybeWrite();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      broken_ = true;
    }
    MaybeWrite();
  }

  void OnDone() override {
    hub_->Unwatch(id_);
    // May destroy this reactor (unless a wake holds it): the last statement.
    self_.reset();
  }

 private:
  WatchReactor(EventHub* hub, const RpcTimer& timer)
      : hub_(hub), timer_(timer) {}

  void MaybeWrite() {
    bool finishing = false;
    grpc::Status finish;
    {
      absl::MutexLock lock(&mu_);
      if (write_in_flight_ || finished_) return;
      absl::Status closed;
      EventHub::PopResult next = broken_ ? EventHub::PopResult::kClosed
                                         : hub_->Pop(id_, &current_, &closed);
      switch (next) {
        case EventHub::PopResult::kEmpty:
          return;
        case EventHub::PopResult::kMessage:
          write_in_flight_ = true;
          break;
        case EventHub::PopResult::kClosed:
          finished_ = true;
          finishing = true;
          finish = broken_ ? grpc::Status::CANCELLED : ToGrpcStatus(closed);
          break;
      }
    }
    // current_ is not touched again until OnWriteDone.
    if (finishing) {
      timer_.Stop(finish.error_code());
      Finish(finish);
    } else {
      StartWrite(&current_);
    }
  }

  EventHub* const hub_;
  const RpcTimer timer_;
  EventHub::WatchId id_ = 0;
  std::shared_ptr<WatchReactor> self_;

  absl::Mutex mu_;
  v1::WatchPresenceResponse current_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode mirrors the gRPC code numbering by design.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

PresenceServiceImpl::PresenceServiceImpl(PresenceRegistry* registry,
                                         StoreWriter* writer, EventHub* hub,
                                         Options options)
    : registry_(registry), writer_(writer), hub_(hub), options_(options) {}

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
    // At most one line a second: a misconfigured client retrying in a loop
    // must not flood the log.
    int64_t now = absl::ToUnixSeconds(absl::Now());
    int64_t last = last_rejection_log_.load(std::memory_order_relaxed);
    if (now != last && last_rejection_log_.compare_exchange_strong(last, now)) {
      LogError(absl::StrCat("refused a call from ", context.peer(), ": ",
                            caller.status().message()));
    }
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

void PresenceServiceImpl::FinishWhenDurable(grpc::ServerUnaryReactor* reactor,
                                            uint64_t ticket,
                                            const RpcTimer& timer) {
  if (!timer.active()) {
    // Captures one pointer: fits AnyInvocable's inline storage, so no
    // allocation per call when metrics are off.
    writer_->WhenDurable(ticket, [reactor](absl::Status status) {
      reactor->Finish(ToGrpcStatus(status));
    });
    return;
  }
  writer_->WhenDurable(ticket, [reactor, timer](absl::Status status) {
    Finish(reactor, timer, status);
  });
}

grpc::ServerUnaryReactor* PresenceServiceImpl::Heartbeat(
    grpc::CallbackServerContext* context, const v1::HeartbeatRequest* request,
    v1::HeartbeatResponse* response) {
  const RpcTimer timer(options_.metrics, Rpc::kHeartbeat);
  if (absl::Status s = Authorize(*context, Rpc::kHeartbeat); !s.ok()) {
    return Finish(context, timer, s);
  }
  if (absl::Status s = ValidateRequest(*request, options_.limits); !s.ok()) {
    return Finish(context, timer, s);
  }
  // Refused before it is applied: memory must not hold what cannot be kept.
  if (absl::Status s = writer_->accepting(); !s.ok()) {
    return Finish(context, timer, s);
  }
  // client_time is deliberately not read: only the server's clock decides.
  const HeartbeatResult result =
      registry_->Heartbeat(request->user_id(), request->session_id());
  FillHeartbeat(result, response);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  FinishWhenDurable(reactor, result.write_ticket, timer);
  return reactor;
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
    grpc::CallbackServerContext* context,
    const v1::BatchHeartbeatRequest* request,
    v1::BatchHeartbeatResponse* response) {
  const RpcTimer timer(options_.metrics, Rpc::kBatchHeartbeat);
  if (absl::Status s = Authorize(*context, Rpc::kBatchHeartbeat); !s.ok()) {
    return Finish(context, timer, s);
  }
  if (absl::Status s = ValidateRequest(*request, options_.limits); !s.ok()) {
    return Finish(context, timer, s);
  }
  // Refused before it is applied: memory must not hold what cannot be kept.
  if (absl::Status s = writer_->accepting(); !s.ok()) {
    return Finish(context, timer, s);
  }
  // Tickets grow in the order changes are recorded and commits are in
  // order, so the batch is durable once its largest ticket is.
  uint64_t last_ticket = 0;
  absl::Time server_time = absl::InfinitePast();
  for (int i = 0; i < request->heartbeats_size(); ++i) {
    const v1::HeartbeatRequest& item = request->heartbeats(i);
    v1::BatchHeartbeatResult* result = response->add_results();
    if (absl::Status s = ValidateRequest(item, options_.limits); !s.ok()) {
      result->mutable_error()->set_code(static_cast<int32_t>(s.code()));
      result->mutable_error()->set_message(
          absl::StrCat("heartbeats[", i, "].", s.message()));
      continue;
    }
    const HeartbeatResult applied =
        registry_->Heartbeat(item.user_id(), item.session_id());
    FillHeartbeat(applied, result->mutable_heartbeat());
    last_ticket = std::max(last_ticket, applied.write_ticket);
    server_time = std::max(server_time, applied.server_time);
  }
  if (server_time != absl::InfinitePast()) {
    *response->mutable_server_time() = ToProto(server_time);
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  FinishWhenDurable(reactor, last_ticket, timer);
  return reactor;
}

grpc::ServerUnaryReactor* PresenceServiceImpl::MarkOffline(
    grpc::CallbackServerContext* context, const v1::MarkOfflineRequest* request,
    v1::MarkOfflineResponse* response) {
  const RpcTimer timer(options_.metrics, Rpc::kMarkOffline);
  if (absl::Status s = Authorize(*context, Rpc::kMarkOffline); !s.ok()) {
    return Finish(context, timer, s);
  }
  if (absl::Status s = ValidateRequest(*request, options_.limits); !s.ok()) {
    return Finish(context, timer, s);
  }
  // Refused before it is applied: memory must not hold what cannot be kept.
  if (absl::Status s = writer_->accepting(); !s.ok()) {
    return Finish(context, timer, s);
  }
  const MarkOfflineResult result =
      registry_->MarkOffline(request->user_id(), request->session_id());
  *response->mutable_server_time() = ToProto(result.server_time);
  response->set_still_online(result.still_online);
  response->set_sessions_ended(result.sessions_ended);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  FinishWhenDurable(reactor, result.write_ticket, timer);
  return reactor;
}

grpc::ServerUnaryReactor* PresenceServiceImpl::ListOnline(
    grpc::CallbackServerContext* context, const v1::ListOnlineRequest* request,
    v1::ListOnlineResponse* response) {
  const RpcTimer timer(options_.metrics, Rpc::kListOnline);
  if (absl::Status s = Authorize(*context, Rpc::kListOnline); !s.ok()) {
    return Finish(context, timer, s);
  }
  if (absl::Status s = ValidateRequest(*request, options_.limits); !s.ok()) {
    return Finish(context, timer, s);
  }
  const int64_t after = *DecodePageToken(request->page_token());
  const OnlinePage page = registry_->ListOnline(
      request->user_ids(), after, EffectivePageSize(*request, options_.limits));
  response->mutable_online_users()->Add(page.user_ids.begin(),
                                        page.user_ids.end());
  if (page.has_more) {
    response->set_next_page_token(EncodePageToken(page.user_ids.back()));
  }
  *response->mutable_server_time() = ToProto(page.server_time);
  response->set_total_online(page.total_online);
  return Finish(context, timer, absl::OkStatus());
}

grpc::ServerUnaryReactor* PresenceServiceImpl::GetPresence(
    grpc::CallbackServerContext* context, const v1::GetPresenceRequest* request,
    v1::GetPresenceResponse* response) {
  const RpcTimer timer(options_.metrics, Rpc::kGetPresence);
  if (absl::Status s = Authorize(*context, Rpc::kGetPresence); !s.ok()) {
    return Finish(context, timer, s);
  }
  if (absl::Status s = ValidateRequest(*request, options_.limits); !s.ok()) {
    return Finish(context, timer, s);
  }
  const PresenceLookup lookup = registry_->GetPresence(request->user_ids());
  *response->mutable_server_time() = ToProto(lookup.server_time);
  for (const UserPresenceInfo& info : lookup.users) {
    v1::UserPresence* out = response->add_users();
    out->set_user_id(info.user_id);
    out->set_status(info.online ? v1::STATUS_ONLINE : v1::STATUS_OFFLINE);
    if (info.last_seen != absl::InfinitePast()) {
      *out->mutable_last_seen() = ToProto(info.last_seen);
    }
    out->set_live_sessions(info.live_sessions);
    if (info.online) *out->mutable_online_until() = ToProto(info.online_until);
  }
  return Finish(context, timer, absl::OkStatus());
}

grpc::ServerWriteReactor<v1::WatchPresenceResponse>*
PresenceServiceImpl::WatchPresence(grpc::CallbackServerContext* context,
                                   const v1::WatchPresenceRequest* request) {
  const RpcTimer timer(options_.metrics, Rpc::kWatchPresence);
  if (absl::Status s = Authorize(*context, Rpc::kWatchPresence); !s.ok()) {
    return new RejectedWatch(s, timer);
  }
  if (absl::Status s = ValidateRequest(*request, options_.limits); !s.ok()) {
    return new RejectedWatch(s, timer);
  }
  WatchRequest watch;
  watch.user_ids.assign(request->user_ids().begin(), request->user_ids().end());
  watch.send_snapshot = request->send_snapshot();
  watch.resume_after = request->resume_after();
  watch.epoch = request->epoch();
  return WatchReactor::Start(hub_, watch, timer);
}

}  // namespace presence
