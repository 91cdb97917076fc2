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
#include "google/protobuf/util/time_util.h"

namespace presence {
namespace {

using Stub = v1::PresenceService::Stub;

// The server's cap on a page: the fewer pages, the less a listing is smeared
// over time.
constexpr int kListAllPageSize = 10'000;

// What every call, blocking or not, gets on its context.
void PrepareContext(grpc::ClientContext* context, absl::Duration deadline) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
}

// The one conversion of a call's status, blocking, asynchronous or a stream.
absl::Status ToStatus(const grpc::Status& status) {
  // grpc::StatusCode and absl::StatusCode share their numbering.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

template <typename Response>
absl::StatusOr<Response> ToResult(const grpc::Status& status,
                                  Response response) {
  if (status.ok()) return response;
  return ToStatus(status);
}

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
                                      absl::string_view session_id) {
  v1::HeartbeatRequest request;
  request.set_user_id(user_id);
  request.set_session_id(std::string(session_id));
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

namespace internal {

// A Client's asynchronous calls in flight, so that its destructor can cancel
// them and wait for them.
class AsyncCalls {
 public:
  AsyncCalls(Stub* stub, absl::Duration deadline)
      : stub_(stub), deadline_(deadline) {}

  // Valid while a call is in flight, or while the Client lives.
  Stub* stub() const { return stub_; }
  absl::Duration deadline() const { return deadline_; }

  // Counts a call about to start and makes it cancellable. False once the
  // Client is being destroyed.
  bool Start(grpc::ClientContext* context) {
    absl::MutexLock lock(&mu_);
    if (closing_) return false;
    ++in_flight_;
    contexts_.insert(context);
    return true;
  }
  // The call's context is about to go.
  void Forget(grpc::ClientContext* context) {
    absl::MutexLock lock(&mu_);
    contexts_.erase(context);
  }
  // The call's callback has returned: the Client may go.
  void End() {
    absl::MutexLock lock(&mu_);
    --in_flight_;
  }

  void CancelAllAndWait() {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    // gRPC runs no callback inline in TryCancel(), so holding mu_ is safe;
    // it keeps each context from being forgotten (and freed) meanwhile.
    for (grpc::ClientContext* context : contexts_) context->TryCancel();
    mu_.Await(absl::Condition(
        +[](int* in_flight) { return *in_flight == 0; }, &in_flight_));
  }

 private:
  Stub* const stub_;
  const absl::Duration deadline_;
  absl::Mutex mu_;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_set<grpc::ClientContext*> contexts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace internal

namespace {

using internal::AsyncCalls;

// The calls whose callback this thread is running, to catch a Client
// destroyed from its own callback.
thread_local const AsyncCalls* running_callback_of = nullptr;

template <typename Request, typename Response>
using AsyncMethod = void (Stub::async::*)(grpc::ClientContext*, const Request*,
                                          Response*,
                                          std::function<void(grpc::Status)>);

// Everything an asynchronous call uses until it ends: gRPC's callback API
// needs the context, request and response to outlive the call.
template <typename Request, typename Response>
struct AsyncCall {
  std::shared_ptr<AsyncCalls> calls;
  grpc::ClientContext context;
  Request request;
  Response response;
  Client::Callback<Response> done;
};

template <typename Request, typename Response>
void CallAsync(const std::shared_ptr<AsyncCalls>& calls,
               AsyncMethod<Request, Response> method, Request request,
               Client::Callback<Response> done,
               std::optional<absl::Duration> deadline = std::nullopt) {
  auto call = std::make_unique<AsyncCall<Request, Response>>();
  PrepareContext(&call->context, deadline.value_or(calls->deadline()));
  if (!calls->Start(&call->context)) {
    return std::move(done)(
        absl::CancelledError("the presence::Client is being destroyed"));
  }
  call->calls = calls;
  call->request = std::move(request);
  call->done = std::move(done);
  AsyncCall<Request, Response>* raw = call.release();
  // gRPC calls the lambda exactly once, whatever becomes of the call.
  (calls->stub()->async()->*method)(
      &raw->context, &raw->request, &raw->response, [raw](grpc::Status status) {
        std::unique_ptr<AsyncCall<Request, Response>> owned(raw);
        std::shared_ptr<AsyncCalls> calls = std::move(owned->calls);
        absl::StatusOr<Response> result =
            ToResult(status, std::move(owned->response));
        Client::Callback<Response> done = std::move(owned->done);
        calls->Forget(&owned->context);
        owned.reset();
        const AsyncCalls* outer = running_callback_of;
        running_callback_of = calls.get();
        std::move(done)(std::move(result));
        // Whatever the callback holds goes while the Client still lives.
        done = nullptr;
        running_callback_of = outer;
        calls->End();
      });
}

// One WatchPresenceAsync stream. Deletes itself when gRPC is done with it.
class WatchStream final
    : public grpc::ClientReadReactor<v1::WatchPresenceResponse> {
 public:
  WatchStream(std::shared_ptr<AsyncCalls> calls,
              std::shared_ptr<grpc::ClientContext> context,
              v1::WatchPresenceRequest request,
              absl::AnyInvocable<void(v1::WatchPresenceResponse)> on_message,
              absl::AnyInvocable<void(absl::Status) &&> on_done)
      : calls_(std::move(calls)),
        context_(std::move(context)),
        request_(std::move(request)),
        on_message_(std::move(on_message)),
        on_done_(std::move(on_done)) {}

  // False (and nothing started) once the Client is being destroyed.
  bool Start() {
    if (!calls_->Start(context_.get())) return false;
    calls_->stub()->async()->WatchPresence(context_.get(), &request_, this);
    StartRead(&message_);
    StartCall();
    return true;
  }

  // Instead of Start(), when that refused.
  void Refuse() && {
    std::move(on_done_)(
        absl::CancelledError("the presence::Client is being destroyed"));
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows with the status
    on_message_(std::move(message_));
    message_.Clear();
    StartRead(&message_);
  }

  void OnDone(const grpc::Status& status) override {
    std::shared_ptr<AsyncCalls> calls = std::move(calls_);
    absl::AnyInvocable<void(absl::Status)&&> on_done = std::move(on_done_);
    calls->Forget(context_.get());
    delete this;
    const AsyncCalls* outer = running_callback_of;
    running_callback_of = calls.get();
    std::move(on_done)(ToStatus(status));
    on_done = nullptr;
    running_callback_of = outer;
    calls->End();
  }

 private:
  std::shared_ptr<AsyncCalls> calls_;
  const std::shared_ptr<grpc::ClientContext> context_;
  const v1::WatchPresenceRequest request_;
  absl::AnyInvocable<void(v1::WatchPresenceResponse)> on_message_;
  absl::AnyInvocable<void(absl::Status) &&> on_done_;
  v1::WatchPresenceResponse message_;
};

// One ListAllOnlineAsync: the pages so far and the request for the next.
struct ListAll {
  std::shared_ptr<AsyncCalls> calls;
  v1::ListOnlineRequest request;
  std::vector<int64_t> users;
  Client::Callback<std::vector<int64_t>> done;
};

// Runs on the caller's thread for the first page, then in the callback of
// the page before, while that call still holds the Client.
void ListNextPage(std::unique_ptr<ListAll> list) {
  std::shared_ptr<AsyncCalls> calls = list->calls;
  v1::ListOnlineRequest request = list->request;
  CallAsync(calls, &Stub::async::ListOnline, std::move(request),
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
      stub_(v1::PresenceService::NewStub(channel_)),
      calls_(std::make_shared<internal::AsyncCalls>(stub_.get(), deadline_)) {}

Client::~Client() {
  if (running_callback_of == calls_.get()) {
    std::fprintf(stderr,
                 "presence::Client destroyed from one of its own callbacks, "
                 "which would wait for itself forever\n");
    std::abort();
  }
  calls_->CancelAllAndWait();
}

absl::StatusOr<v1::HeartbeatResponse> Client::Heartbeat(
    int64_t user_id, absl::string_view session_id) {
  return Call(*stub_, deadline_, &Stub::Heartbeat,
              HeartbeatRequest(user_id, session_id));
}

void Client::HeartbeatAsync(int64_t user_id, absl::string_view session_id,
                            Callback<v1::HeartbeatResponse> done) {
  CallAsync(calls_, &Stub::async::Heartbeat,
            HeartbeatRequest(user_id, session_id), std::move(done));
}

absl::StatusOr<v1::BatchHeartbeatResponse> Client::BatchHeartbeat(
    const v1::BatchHeartbeatRequest& request) {
  return Call(*stub_, deadline_, &Stub::BatchHeartbeat, request);
}

void Client::BatchHeartbeatAsync(v1::BatchHeartbeatRequest request,
                                 Callback<v1::BatchHeartbeatResponse> done) {
  CallAsync(calls_, &Stub::async::BatchHeartbeat, std::move(request),
            std::move(done));
}

absl::StatusOr<v1::MarkOfflineResponse> Client::MarkOffline(
    int64_t user_id, absl::string_view session_id) {
  return Call(*stub_, deadline_, &Stub::MarkOffline,
              MarkOfflineRequest(user_id, session_id));
}

void Client::MarkOfflineAsync(int64_t user_id, absl::string_view session_id,
                              Callback<v1::MarkOfflineResponse> done) {
  CallAsync(calls_, &Stub::async::MarkOffline,
            MarkOfflineRequest(user_id, session_id), std::move(done));
}

absl::StatusOr<v1::ListOnlineResponse> Client::ListOnline(
    const v1::ListOnlineRequest& request) {
  return Call(*stub_, deadline_, &Stub::ListOnline, request);
}

void Client::ListOnlineAsync(v1::ListOnlineRequest request,
                             Callback<v1::ListOnlineResponse> done) {
  CallAsync(calls_, &Stub::async::ListOnline, std::move(request),
            std::move(done));
}

void Client::WatchPresenceAsync(
    std::shared_ptr<grpc::ClientContext> context,
    v1::WatchPresenceRequest request,
    absl::AnyInvocable<void(v1::WatchPresenceResponse)> on_message,
    absl::AnyInvocable<void(absl::Status) &&> on_done) {
  auto stream = std::make_unique<WatchStream>(
      calls_, std::move(context), std::move(request), std::move(on_message),
      std::move(on_done));
  if (!stream->Start()) return std::move(*stream).Refuse();
  stream.release();  // OnDone deletes it
}

void Client::ListOnlineAsync(v1::ListOnlineRequest request,
                             absl::Duration deadline,
                             Callback<v1::ListOnlineResponse> done) {
  CallAsync(calls_, &Stub::async::ListOnline, std::move(request),
            std::move(done), deadline);
}

absl::StatusOr<std::vector<int64_t>> Client::ListAllOnline(
    absl::Span<const int64_t> only) {
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
  auto list = std::make_unique<ListAll>();
  list->calls = calls_;
  list->request = ListAllRequest(only);
  list->done = std::move(done);
  ListNextPage(std::move(list));
}

absl::StatusOr<v1::GetPresenceResponse> Client::GetPresence(
    absl::Span<const int64_t> user_ids) {
  return Call(*stub_, deadline_, &Stub::GetPresence,
              GetPresenceRequest(user_ids));
}

void Client::GetPresenceAsync(absl::Span<const int64_t> user_ids,
                              Callback<v1::GetPresenceResponse> done) {
  CallAsync(calls_, &Stub::async::GetPresence, GetPresenceRequest(user_ids),
            std::move(done));
}

}  // namespace presence
