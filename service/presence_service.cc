#include "service/presence_service.h"

#include <vector>

#include "google/protobuf/util/time_util.h"

namespace presence {
namespace {

using google::protobuf::util::TimeUtil;

void SetTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  *out = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  *out = TimeUtil::MicrosecondsToDuration(absl::ToInt64Microseconds(d));
}

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context,
                                 const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode mirrors the gRPC code numbering by design.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

PresenceServiceImpl::PresenceServiceImpl(PresenceRegistry* registry,
                                         StoreWriter* writer, Options options)
    : registry_(registry), writer_(writer), options_(options) {}

void PresenceServiceImpl::FinishWhenDurable(grpc::ServerUnaryReactor* reactor,
                                            uint64_t ticket) {
  writer_->WhenDurable(ticket, [reactor](absl::Status status) {
    reactor->Finish(ToGrpcStatus(status));
  });
}

grpc::ServerUnaryReactor* PresenceServiceImpl::Heartbeat(
    grpc::CallbackServerContext* context, const v1::HeartbeatRequest* request,
    v1::HeartbeatResponse* response) {
  if (absl::Status s = ValidateRequest(*request, options_.limits); !s.ok()) {
    return Finish(context, s);
  }
  // client_time is deliberately not read: only the server's clock decides.
  const HeartbeatResult result =
      registry_->Heartbeat(request->user_id(), request->session_id());
  SetTimestamp(result.server_time, response->mutable_server_time());
  SetTimestamp(result.online_until, response->mutable_online_until());
  SetDuration(options_.heartbeat_interval,
              response->mutable_heartbeat_interval());
  response->set_became_online(result.became_online);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  FinishWhenDurable(reactor, result.write_ticket);
  return reactor;
}

grpc::ServerUnaryReactor* PresenceServiceImpl::MarkOffline(
    grpc::CallbackServerContext* context, const v1::MarkOfflineRequest* request,
    v1::MarkOfflineResponse* response) {
  if (absl::Status s = ValidateRequest(*request, options_.limits); !s.ok()) {
    return Finish(context, s);
  }
  const MarkOfflineResult result =
      registry_->MarkOffline(request->user_id(), request->session_id());
  SetTimestamp(result.server_time, response->mutable_server_time());
  response->set_still_online(result.still_online);
  response->set_sessions_ended(result.sessions_ended);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  FinishWhenDurable(reactor, result.write_ticket);
  return reactor;
}

grpc::ServerUnaryReactor* PresenceServiceImpl::ListOnline(
    grpc::CallbackServerContext* context, const v1::ListOnlineRequest* request,
    v1::ListOnlineResponse* response) {
  if (absl::Status s = ValidateRequest(*request, options_.limits); !s.ok()) {
    return Finish(context, s);
  }
  const int64_t after = *DecodePageToken(request->page_token());
  const OnlinePage page = registry_->ListOnline(
      request->user_ids(), after, EffectivePageSize(*request, options_.limits));
  response->mutable_online_users()->Add(page.user_ids.begin(),
                                        page.user_ids.end());
  if (page.has_more) {
    response->set_next_page_token(EncodePageToken(page.user_ids.back()));
  }
  SetTimestamp(page.server_time, response->mutable_server_time());
  response->set_total_online(page.total_online);
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* PresenceServiceImpl::GetPresence(
    grpc::CallbackServerContext* context, const v1::GetPresenceRequest* request,
    v1::GetPresenceResponse* response) {
  if (absl::Status s = ValidateRequest(*request, options_.limits); !s.ok()) {
    return Finish(context, s);
  }
  const PresenceLookup lookup = registry_->GetPresence(request->user_ids());
  SetTimestamp(lookup.server_time, response->mutable_server_time());
  for (const UserPresenceInfo& info : lookup.users) {
    v1::UserPresence* out = response->add_users();
    out->set_user_id(info.user_id);
    out->set_status(info.online ? v1::STATUS_ONLINE : v1::STATUS_OFFLINE);
    if (info.last_seen != absl::InfinitePast()) {
      SetTimestamp(info.last_seen, out->mutable_last_seen());
    }
    out->set_live_sessions(info.live_sessions);
    if (info.online)
      SetTimestamp(info.online_until, out->mutable_online_until());
  }
  return Finish(context, absl::OkStatus());
}

}  // namespace presence
