#include "presence/client.h"

#include <grpcpp/support/client_interceptor.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
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

// Adds `authorization: Bearer <token>` to every call of the channel.
// gRPC's call credentials would do this, but gRPC sends them only over TLS,
// and presenced may run on plaintext loopback with tokens.
class BearerTokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerTokenInterceptor(const std::string* header)
      : header_(header) {}
  void Intercept(
      grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::
                PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", *header_);
    }
    methods->Proceed();
  }

 private:
  const std::string* header_;
};

class BearerTokenInterceptorFactory
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerTokenInterceptorFactory(const std::string& token)
      : header_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new BearerTokenInterceptor(&header_);
  }

 private:
  const std::string header_;  // lives as long as the channel
};

std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options) {
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(kServiceConfig);
  // A WatchPresence snapshot of everyone online (8-10 bytes a user) can
  // exceed gRPC's default 4 MB receive limit.
  args.SetMaxReceiveMessageSize(-1);
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options.credentials != nullptr ? options.credentials
                                     : grpc::InsecureChannelCredentials();
  if (options.token.empty()) {
    return grpc::CreateCustomChannel(options.target, credentials, args);
  }
  std::vector<
      std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(
      std::make_unique<BearerTokenInterceptorFactory>(options.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      options.target, credentials, args, std::move(interceptors));
}

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", what, " ", path));
  }
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

}  // namespace

const char* Client::ServiceConfigJson() { return kServiceConfig; }

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TlsCredentials(
    const std::string& ca_file, const std::string& cert_file,
    const std::string& key_file) {
  grpc::SslCredentialsOptions ssl;
  if (!ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadFile(ca_file, "the CA certificate");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
  }
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError(
        "a client certificate needs both its certificate and its key");
  }
  if (!cert_file.empty()) {
    absl::StatusOr<std::string> cert =
        ReadFile(cert_file, "the client certificate");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadFile(key_file, "the client key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

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
