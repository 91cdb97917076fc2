#include "presence/client.h"

#include <grpcpp/support/client_interceptor.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client_internal.h"
#include "google/protobuf/util/time_util.h"

namespace presence {
namespace {

using internal::AsyncCalls;
using internal::CallAsync;
using internal::NamingShard;
using internal::PrepareContext;
using internal::running_callback_of;
using internal::ShardError;
using internal::Stub;
using internal::ToResult;

// The server's cap on a page: the fewer pages, the less a listing is smeared
// over time.
constexpr int kListAllPageSize = 10'000;

template <typename Request, typename Response>
using BlockingMethod = grpc::Status (Stub::*)(grpc::ClientContext*,
                                              const Request&, Response*);

template <typename Request, typename Response>
absl::StatusOr<Response> Call(Stub& stub, absl::Duration deadline,
                              BlockingMethod<Request, Response> method,
                              const Request& request) {
  grpc::ClientContext context;
  PrepareContext(&context, deadline);
  Response response;
  grpc::Status status = (stub.*method)(&context, request, &response);
  return ToResult(status, std::move(response));
}

v1::HeartbeatRequest HeartbeatRequest(int64_t user_id,
                                      absl::string_view session_id, bool idle) {
  v1::HeartbeatRequest request;
  request.set_user_id(user_id);
  request.set_session_id(std::string(session_id));
  request.set_idle(idle);
  *request.mutable_client_time() =
      google::protobuf::util::TimeUtil::GetCurrentTime();
  return request;
}

v1::MarkOfflineRequest MarkOfflineRequest(int64_t user_id,
                                          absl::string_view session_id) {
  v1::MarkOfflineRequest request;
  request.set_user_id(user_id);
  request.set_session_id(std::string(session_id));
  return request;
}

v1::GetPresenceRequest GetPresenceRequest(absl::Span<const int64_t> user_ids) {
  v1::GetPresenceRequest request;
  request.mutable_user_ids()->Add(user_ids.begin(), user_ids.end());
  return request;
}

// The first page of ListAllOnline; the next ones add their page_token.
v1::ListOnlineRequest ListAllRequest(absl::Span<const int64_t> only) {
  v1::ListOnlineRequest request;
  request.mutable_user_ids()->Add(only.begin(), only.end());
  request.set_page_size(kListAllPageSize);
  return request;
}

// Retries only what can safely happen twice: a repeated heartbeat re-stamps
// the session with the server's clock, a repeated MarkOffline ends nothing
// more, a repeated SetStatus sets the same status (a relative end counts
// from the later attempt), reads change nothing. UNAVAILABLE means the call
// did not complete (connection lost, or presenced could not make the change
// durable).
constexpr char kServiceConfig[] = R"json({
  "methodConfig": [{
    "name": [
      {"service": "presence.v1.PresenceService", "method": "Heartbeat"},
      {"service": "presence.v1.PresenceService", "method": "BatchHeartbeat"},
      {"service": "presence.v1.PresenceService", "method": "MarkOffline"},
      {"service": "presence.v1.PresenceService", "method": "SetStatus"},
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

std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options,
                                           const std::string& target) {
  grpc::ChannelArguments args;
  args.SetServiceConfigJSON(kServiceConfig);
  // A WatchPresence snapshot of everyone online (8-10 bytes a user) can
  // exceed gRPC's default 4 MB receive limit.
  args.SetMaxReceiveMessageSize(-1);
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options.credentials != nullptr ? options.credentials
                                     : grpc::InsecureChannelCredentials();
  if (options.token.empty()) {
    return grpc::CreateCustomChannel(target, credentials, args);
  }
  std::vector<
      std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(
      std::make_unique<BearerTokenInterceptorFactory>(options.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      target, credentials, args, std::move(interceptors));
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

// One ListAllOnlineAsync of one presenced: the pages so far and the request
// for the next.
struct ListAll {
  std::shared_ptr<AsyncCalls> calls;
  size_t shard = 0;
  v1::ListOnlineRequest request;
  std::vector<int64_t> users;
  Client::Callback<std::vector<int64_t>> done;
};

// Runs on the caller's thread for the first page, then in the callback of
// the page before, while that call still holds the Client.
void ListNextPage(std::unique_ptr<ListAll> list) {
  std::shared_ptr<AsyncCalls> calls = list->calls;
  const size_t shard = list->shard;
  v1::ListOnlineRequest request = list->request;
  CallAsync(calls, shard, &Stub::async::ListOnline, std::move(request),
            Client::Callback<v1::ListOnlineResponse>(
                [list = std::move(list)](
                    absl::StatusOr<v1::ListOnlineResponse> page) mutable {
                  if (!page.ok()) return std::move(list->done)(page.status());
                  list->users.insert(list->users.end(),
                                     page->online_users().begin(),
                                     page->online_users().end());
                  if (page->next_page_token().empty()) {
                    return std::move(list->done)(std::move(list->users));
                  }
                  list->request.set_page_token(page->next_page_token());
                  ListNextPage(std::move(list));
                }));
}

template <typename Response>
absl::StatusOr<Response> NamingShard(const ShardMap& map, size_t shard,
                                     absl::StatusOr<Response> result) {
  if (!result.ok() && map.sharded()) {
    return ShardError(map.shard(shard), result.status());
  }
  return result;
}

// The target as a shard map; unparsable as one, the plain gRPC target it
// always was (Create() reports the error instead).
ShardMap ShardMapOrTarget(const std::string& target) {
  absl::StatusOr<ShardMap> map = ShardMap::Parse(target);
  if (!map.ok()) return ShardMap::Single(target);
  return *std::move(map);
}

std::vector<Stub*> Pointers(const std::vector<std::unique_ptr<Stub>>& stubs) {
  std::vector<Stub*> out;
  for (const std::unique_ptr<Stub>& stub : stubs) out.push_back(stub.get());
  return out;
}

}  // namespace

namespace internal {

absl::Status ShardError(const Shard& shard, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat("shard ", shard.name, " (", shard.target,
                                   "): ", status.message()));
}

void ListAllPagesAsync(const std::shared_ptr<AsyncCalls>& calls, size_t shard,
                       absl::Span<const int64_t> only,
                       Client::Callback<std::vector<int64_t>> done) {
  auto list = std::make_unique<ListAll>();
  list->calls = calls;
  list->shard = shard;
  list->request = ListAllRequest(only);
  list->done = std::move(done);
  ListNextPage(std::move(list));
}

}  // namespace internal

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
    : Client(ShardMapOrTarget(options.target), options) {}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(
    const ClientOptions& options) {
  absl::StatusOr<ShardMap> map = ShardMap::Parse(options.target);
  if (!map.ok()) return map.status();
  return std::unique_ptr<Client>(new Client(*std::move(map), options));
}

Client::Client(ShardMap shard_map, const ClientOptions& options)
    : deadline_(options.deadline), shard_map_(std::move(shard_map)) {
  for (const Shard& shard : shard_map_.shards()) {
    channels_.push_back(MakeChannel(options, shard.target));
    stubs_.push_back(v1::PresenceService::NewStub(channels_.back()));
  }
  calls_ =
      std::make_shared<AsyncCalls>(Pointers(stubs_), &shard_map_, deadline_);
}

Client::Client(std::shared_ptr<grpc::Channel> channel, absl::Duration deadline)
    : deadline_(deadline), shard_map_(ShardMap::Single("")) {
  channels_.push_back(std::move(channel));
  stubs_.push_back(v1::PresenceService::NewStub(channels_.back()));
  calls_ =
      std::make_shared<AsyncCalls>(Pointers(stubs_), &shard_map_, deadline_);
}

Client::~Client() {
  if (running_callback_of == calls_.get()) {
    std::fprintf(stderr,
                 "presence::Client destroyed from one of its own callbacks, "
                 "which would wait for itself forever\n");
    std::abort();
  }
  calls_->CancelAllAndWait();
}

void Client::ResetConnectionBackoff() {
  for (const std::shared_ptr<grpc::Channel>& channel : channels_) {
    grpc::experimental::ChannelResetConnectionBackoff(channel.get());
  }
}

absl::StatusOr<v1::HeartbeatResponse> Client::Heartbeat(
    int64_t user_id, absl::string_view session_id, bool idle) {
  const size_t shard = shard_map_.OwnerIndex(user_id);
  return NamingShard(shard_map_, shard,
                     Call(*stubs_[shard], deadline_, &Stub::Heartbeat,
                          HeartbeatRequest(user_id, session_id, idle)));
}

void Client::HeartbeatAsync(int64_t user_id, absl::string_view session_id,
                            Callback<v1::HeartbeatResponse> done) {
  HeartbeatAsync(user_id, session_id, /*idle=*/false, std::move(done));
}

void Client::HeartbeatAsync(int64_t user_id, absl::string_view session_id,
                            bool idle, Callback<v1::HeartbeatResponse> done) {
  const size_t shard = shard_map_.OwnerIndex(user_id);
  if (shard_map_.sharded()) {
    done = NamingShard(&shard_map_.shard(shard), std::move(done));
  }
  CallAsync(calls_, shard, &Stub::async::Heartbeat,
            HeartbeatRequest(user_id, session_id, idle), std::move(done));
}

absl::StatusOr<v1::SetStatusResponse> Client::SetStatus(
    const v1::SetStatusRequest& request) {
  const size_t shard = shard_map_.OwnerIndex(request.user_id());
  return NamingShard(
      shard_map_, shard,
      Call(*stubs_[shard], deadline_, &Stub::SetStatus, request));
}

void Client::SetStatusAsync(v1::SetStatusRequest request,
                            Callback<v1::SetStatusResponse> done) {
  const size_t shard = shard_map_.OwnerIndex(request.user_id());
  if (shard_map_.sharded()) {
    done = NamingShard(&shard_map_.shard(shard), std::move(done));
  }
  CallAsync(calls_, shard, &Stub::async::SetStatus, std::move(request),
            std::move(done));
}

absl::StatusOr<v1::BatchHeartbeatResponse> Client::BatchHeartbeat(
    const v1::BatchHeartbeatRequest& request) {
  if (!shard_map_.sharded()) {
    return Call(*stubs_[0], deadline_, &Stub::BatchHeartbeat, request);
  }
  return internal::ShardedBatchHeartbeat(*calls_, request);
}

void Client::BatchHeartbeatAsync(v1::BatchHeartbeatRequest request,
                                 Callback<v1::BatchHeartbeatResponse> done) {
  if (shard_map_.sharded()) {
    return internal::ShardedBatchHeartbeatAsync(calls_, std::move(request),
                                                std::move(done));
  }
  CallAsync(calls_, 0, &Stub::async::BatchHeartbeat, std::move(request),
            std::move(done));
}

absl::StatusOr<v1::MarkOfflineResponse> Client::MarkOffline(
    int64_t user_id, absl::string_view session_id) {
  const size_t shard = shard_map_.OwnerIndex(user_id);
  return NamingShard(shard_map_, shard,
                     Call(*stubs_[shard], deadline_, &Stub::MarkOffline,
                          MarkOfflineRequest(user_id, session_id)));
}

void Client::MarkOfflineAsync(int64_t user_id, absl::string_view session_id,
                              Callback<v1::MarkOfflineResponse> done) {
  const size_t shard = shard_map_.OwnerIndex(user_id);
  if (shard_map_.sharded()) {
    done = NamingShard(&shard_map_.shard(shard), std::move(done));
  }
  CallAsync(calls_, shard, &Stub::async::MarkOffline,
            MarkOfflineRequest(user_id, session_id), std::move(done));
}

absl::StatusOr<v1::ListOnlineResponse> Client::ListOnline(
    const v1::ListOnlineRequest& request) {
  if (!shard_map_.sharded()) {
    return Call(*stubs_[0], deadline_, &Stub::ListOnline, request);
  }
  return internal::ShardedListOnline(*calls_, request);
}

void Client::ListOnlineAsync(v1::ListOnlineRequest request,
                             Callback<v1::ListOnlineResponse> done) {
  if (shard_map_.sharded()) {
    return internal::ShardedListOnlineAsync(calls_, std::move(request),
                                            std::nullopt, std::move(done));
  }
  CallAsync(calls_, 0, &Stub::async::ListOnline, std::move(request),
            std::move(done));
}

void Client::ListOnlineAsync(v1::ListOnlineRequest request,
                             absl::Duration deadline,
                             Callback<v1::ListOnlineResponse> done) {
  if (shard_map_.sharded()) {
    return internal::ShardedListOnlineAsync(calls_, std::move(request),
                                            deadline, std::move(done));
  }
  CallAsync(calls_, 0, &Stub::async::ListOnline, std::move(request),
            std::move(done), deadline);
}

void Client::WatchPresenceAsync(
    std::shared_ptr<grpc::ClientContext> context,
    v1::WatchPresenceRequest request,
    absl::AnyInvocable<void(v1::WatchPresenceResponse)> on_message,
    absl::AnyInvocable<void(absl::Status) &&> on_done) {
  if (shard_map_.sharded()) {
    return internal::ShardedWatchPresenceAsync(
        calls_, std::move(context), std::move(request), std::move(on_message),
        std::move(on_done));
  }
  auto stream = std::make_unique<internal::WatchStream>(
      calls_, 0, std::move(context), std::move(request), std::move(on_message),
      std::move(on_done));
  if (!stream->Start()) return std::move(*stream).Refuse();
  stream.release();  // OnDone deletes it
}

absl::StatusOr<std::vector<int64_t>> Client::ListAllOnline(
    absl::Span<const int64_t> only) {
  if (shard_map_.sharded()) {
    absl::StatusOr<OnlineUsers> online =
        internal::ShardedListAllOnline(*calls_, only, false);
    if (!online.ok()) return online.status();
    return std::move(online->users);
  }
  v1::ListOnlineRequest request = ListAllRequest(only);
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

void Client::ListAllOnlineAsync(absl::Span<const int64_t> only,
                                Callback<std::vector<int64_t>> done) {
  if (shard_map_.sharded()) {
    return internal::ShardedListAllOnlineAsync(
        calls_, only, false,
        [done = std::move(done)](absl::StatusOr<OnlineUsers> online) mutable {
          if (!online.ok()) return std::move(done)(online.status());
          std::move(done)(std::move(online->users));
        });
  }
  internal::ListAllPagesAsync(calls_, 0, only, std::move(done));
}

absl::StatusOr<OnlineUsers> Client::ListAllOnlinePartial(
    absl::Span<const int64_t> only) {
  if (!shard_map_.sharded()) {
    absl::StatusOr<std::vector<int64_t>> users = ListAllOnline(only);
    if (!users.ok()) return users.status();
    return OnlineUsers{*std::move(users), {}};
  }
  return internal::ShardedListAllOnline(*calls_, only, true);
}

void Client::ListAllOnlinePartialAsync(absl::Span<const int64_t> only,
                                       Callback<OnlineUsers> done) {
  if (shard_map_.sharded()) {
    return internal::ShardedListAllOnlineAsync(calls_, only, true,
                                               std::move(done));
  }
  internal::ListAllPagesAsync(
      calls_, 0, only,
      [done = std::move(done)](
          absl::StatusOr<std::vector<int64_t>> users) mutable {
        if (!users.ok()) return std::move(done)(users.status());
        std::move(done)(OnlineUsers{*std::move(users), {}});
      });
}

absl::StatusOr<v1::GetPresenceResponse> Client::GetPresence(
    absl::Span<const int64_t> user_ids) {
  return GetPresence(GetPresenceRequest(user_ids));
}

absl::StatusOr<v1::GetPresenceResponse> Client::GetPresence(
    const v1::GetPresenceRequest& request) {
  if (!shard_map_.sharded()) {
    return Call(*stubs_[0], deadline_, &Stub::GetPresence, request);
  }
  return internal::ShardedGetPresence(*calls_, request);
}

void Client::GetPresenceAsync(absl::Span<const int64_t> user_ids,
                              Callback<v1::GetPresenceResponse> done) {
  GetPresenceAsync(GetPresenceRequest(user_ids), std::move(done));
}

void Client::GetPresenceAsync(v1::GetPresenceRequest request,
                              Callback<v1::GetPresenceResponse> done) {
  if (shard_map_.sharded()) {
    return internal::ShardedGetPresenceAsync(calls_, std::move(request),
                                             std::move(done));
  }
  CallAsync(calls_, 0, &Stub::async::GetPresence, std::move(request),
            std::move(done));
}

}  // namespace presence
