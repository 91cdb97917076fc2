#include "presence/client.h"

#include <utility>

#include "google/protobuf/util/time_util.h"

namespace presence {
namespace {

absl::Status ToAbslStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // grpc::StatusCode and absl::StatusCode share their numbering.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

// Retries only what can safely happen twice: a repeated heartbeat re-stamps
// the session with the server's clock, a repeated MarkOffline ends nothing
// more, reads change nothing. UNAVAILABLE means the call did not complete
// (connection lost, or presenced could not make the change durable).
constexpr char kServiceConfig[] = R"json({
  "methodConfig": [{
    "name": [
      {"service": "presence.v1.PresenceService", "method": "Heartbeat"},
      {"service": "presence.v1.PresenceService", "method": "BatchHeartbeat"},
      {"service": "presence.v1.PresenceService", "method": "MarkOffline"},
      {"service": "presence.v1.PresenceService", "method": "ListOnline"},
      {"service": "presence.v1.PresenceService", "method": "GetPresence"}
    ],
    "retryPolicy": {
      "maxAttempts": 4,
      "initialBackoff": "0.05s",
      "maxBackoff": "1s",
      "backoffMultiplier": 3,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
})json";

std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options) {
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(kServiceConfig);
  // A WatchPresence snapshot of everyone online (8-10 bytes a user) can
  // exceed gRPC's default 4 MB receive limit.
  args.SetMaxReceiveMessageSize(-1);
  return grpc::CreateCustomChannel(options.target,
                                   options.credentials != nullptr
                                       ? options.credentials
                                       : grpc::InsecureChannelCredentials(),
                                   args);
}

}  // namespace

const char* Client::ServiceConfigJson() { return kServiceConfig; }

Client::Client(const ClientOptions& options)
    : Client(MakeChannel(options), options.deadline) {}

Client::Client(std::shared_ptr<grpc::Channel> channel, absl::Duration deadline)
    : deadline_(deadline),
      channel_(std::move(channel)),
      stub_(v1::PresenceService::NewStub(channel_)) {}

template <typename Request, typename Response>
absl::StatusOr<Response> Client::Call(
    grpc::Status (v1::PresenceService::Stub::*method)(grpc::ClientContext*,
                                                      const Request&,
                                                      Response*),
    const Request& request) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline_));
  Response response;
  grpc::Status status = (stub_.get()->*method)(&context, request, &response);
  if (!status.ok()) return ToAbslStatus(status);
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> Client::Heartbeat(
    int64_t user_id, absl::string_view session_id) {
  v1::HeartbeatRequest request;
  request.set_user_id(user_id);
  request.set_session_id(std::string(session_id));
  *request.mutable_client_time() =
      google::protobuf::util::TimeUtil::GetCurrentTime();
  return Call(&v1::PresenceService::Stub::Heartbeat, request);
}

absl::StatusOr<v1::BatchHeartbeatResponse> Client::BatchHeartbeat(
    const v1::BatchHeartbeatRequest& request) {
  return Call(&v1::PresenceService::Stub::BatchHeartbeat, request);
}

absl::StatusOr<v1::MarkOfflineResponse> Client::MarkOffline(
    int64_t user_id, absl::string_view session_id) {
  v1::MarkOfflineRequest request;
  request.set_user_id(user_id);
  request.set_session_id(std::string(session_id));
  return Call(&v1::PresenceService::Stub::MarkOffline, request);
}

absl::StatusOr<v1::ListOnlineResponse> Client::ListOnline(
    const v1::ListOnlineRequest& request) {
  return Call(&v1::PresenceService::Stub::ListOnline, request);
}

absl::StatusOr<std::vector<int64_t>> Client::ListAllOnline(
    absl::Span<const int64_t> only) {
  v1::ListOnlineRequest request;
  request.mutable_user_ids()->Add(only.begin(), only.end());
  std::vector<int64_t> users;
  do {
    absl::StatusOr<v1::ListOnlineResponse> page = ListOnline(request);
    if (!page.ok()) return page.status();
    users.insert(users.end(), page->online_users().begin(),
                 page->online_users().end());
    request.set_page_token(page->next_page_token());
  } while (!request.page_token().empty());
  return users;
}

absl::StatusOr<v1::GetPresenceResponse> Client::GetPresence(
    absl::Span<const int64_t> user_ids) {
  v1::GetPresenceRequest request;
  request.mutable_user_ids()->Add(user_ids.begin(), user_ids.end());
  return Call(&v1::PresenceService::Stub::GetPresence, request);
}

}  // namespace presence
