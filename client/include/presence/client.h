#ifndef PRESENCE_CLIENT_CLIENT_H_
#define PRESENCE_CLIENT_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "presence/v1/presence.grpc.pb.h"

namespace presence {

struct ClientOptions {
  // presenced's HOST:PORT (any gRPC target URI works).
  std::string target = "127.0.0.1:50051";
  // Deadline of each call, retries included.
  absl::Duration deadline = absl::Seconds(5);
  // Null: plaintext. See TlsCredentials().
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Sent as `authorization: Bearer <token>` with every call (presenced's
  // --auth_tokens_file). Empty: none.
  std::string token;
};

// TLS to presenced: trusting the CA in `ca_file` (empty: the system's
// roots), presenting the client certificate in `cert_file` with its key in
// `key_file` for mTLS (both empty: none). PEM files.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TlsCredentials(
    const std::string& ca_file, const std::string& cert_file = "",
    const std::string& key_file = "");

namespace internal {
class AsyncCalls;
}  // namespace internal

// A typed client for presence.v1.PresenceService. Thread-safe; one Client
// (one channel) per process is the intended use.
//
// Every call has a deadline (ClientOptions::deadline), counted from the moment
// the call starts. Calls whose repetition is harmless (all but WatchPresence,
// which Watcher resumes) are retried by gRPC on UNAVAILABLE with backoff, per
// the channel's service config. Errors come back as absl::Status with the
// server's gRPC code and message; DEADLINE_EXCEEDED and UNAVAILABLE may also
// come from the client side.
//
// Each call exists twice: blocking (Heartbeat) and asynchronous
// (HeartbeatAsync). Both build the same request, set the same deadline and
// convert the same way, so they answer alike. An asynchronous call returns at
// once and hands its result to `done` exactly once, on one of gRPC's threads.
// `done` should not block: it holds that thread, which other calls'
// completions need too. It may start more calls on the same Client.
//
// Destroying the Client cancels its asynchronous calls in flight and waits
// until each has run its `done` (with CANCELLED, unless its answer came
// first): no callback runs after the destructor returns, and the channel is
// released on the destroying thread. gRPC 1.51 aborts when the last channel
// using its callback API is released on one of its callback threads, so the
// Client must not be destroyed from a `done` of its own (that aborts with a
// message rather than wait for itself forever). A call started while the
// Client is being destroyed (a `done` starting another) gets CANCELLED at
// once.
class Client {
 public:
  // Receives the outcome of an asynchronous call.
  template <typename Response>
  using Callback = absl::AnyInvocable<void(absl::StatusOr<Response>) &&>;

  explicit Client(const ClientOptions& options);
  // For callers that build their own channel (e.g. in-process tests).
  explicit Client(std::shared_ptr<grpc::Channel> channel,
                  absl::Duration deadline = absl::Seconds(5));
  // Cancels the asynchronous calls in flight and waits for their callbacks.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(
      int64_t user_id, absl::string_view session_id = "");
  void HeartbeatAsync(int64_t user_id, absl::string_view session_id,
                      Callback<v1::HeartbeatResponse> done);

  // Many heartbeats at once; see BatchHeartbeatResponse for per-item results.
  absl::StatusOr<v1::BatchHeartbeatResponse> BatchHeartbeat(
      const v1::BatchHeartbeatRequest& request);
  void BatchHeartbeatAsync(v1::BatchHeartbeatRequest request,
                           Callback<v1::BatchHeartbeatResponse> done);

  // An empty session_id ends every session of the user.
  absl::StatusOr<v1::MarkOfflineResponse> MarkOffline(
      int64_t user_id, absl::string_view session_id = "");
  void MarkOfflineAsync(int64_t user_id, absl::string_view session_id,
                        Callback<v1::MarkOfflineResponse> done);

  // One page; see ListAllOnline for every page.
  absl::StatusOr<v1::ListOnlineResponse> ListOnline(
      const v1::ListOnlineRequest& request);
  void ListOnlineAsync(v1::ListOnlineRequest request,
                       Callback<v1::ListOnlineResponse> done);

  // Every online user (of `only`, if not empty), ascending, following
  // next_page_token: one ListOnline call per page of up to 10,000 users, each
  // with its own deadline. The pages are taken at slightly different moments.
  // The first failing page's status is the result.
  absl::StatusOr<std::vector<int64_t>> ListAllOnline(
      absl::Span<const int64_t> only = {});
  void ListAllOnlineAsync(absl::Span<const int64_t> only,
                          Callback<std::vector<int64_t>> done);

  // The same with a deadline of its own, e.g. a liveness check that must
  // fail sooner than the client's deadline.
  void ListOnlineAsync(v1::ListOnlineRequest request, absl::Duration deadline,
                       Callback<v1::ListOnlineResponse> done);

  absl::StatusOr<v1::GetPresenceResponse> GetPresence(
      absl::Span<const int64_t> user_ids);
  void GetPresenceAsync(absl::Span<const int64_t> user_ids,
                        Callback<v1::GetPresenceResponse> done);

  // A WatchPresence stream, for callers that follow it themselves (Watcher
  // is the one that resumes and reconnects): `on_message` gets each message
  // in order, then `on_done` the stream's end, once, both on gRPC's threads.
  // The stream has no deadline; `context->TryCancel()` ends it (on_done then
  // gets CANCELLED), as does destroying the Client, which waits for on_done
  // like for any asynchronous call.
  void WatchPresenceAsync(
      std::shared_ptr<grpc::ClientContext> context,
      v1::WatchPresenceRequest request,
      absl::AnyInvocable<void(v1::WatchPresenceResponse)> on_message,
      absl::AnyInvocable<void(absl::Status) &&> on_done);

  // The service config applied to channels this class creates (JSON).
  static const char* ServiceConfigJson();

  // The generated stub, for what this class does not wrap (tests that read
  // a WatchPresence stream by hand). Calls made on it bypass the client's
  // deadline and status conversion, and its destructor does not wait for
  // them.
  v1::PresenceService::Stub& stub() { return *stub_; }
  // The channel, e.g. to share it with a Watcher.
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  const absl::Duration deadline_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PresenceService::Stub> stub_;
  // The asynchronous calls in flight. Shared with them: the last one may end
  // after the Client has stopped waiting for it.
  std::shared_ptr<internal::AsyncCalls> calls_;
};

}  // namespace presence

#endif  // PRESENCE_CLIENT_CLIENT_H_
