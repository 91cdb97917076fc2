#ifndef PRESENCE_CLIENT_CLIENT_H_
#define PRESENCE_CLIENT_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

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

// A typed client for presence.v1.PresenceService. Thread-safe; one Client
// (one channel) per process is the intended use.
//
// Every call has a deadline (ClientOptions::deadline). Calls whose repetition
// is harmless (all but WatchPresence, which Watcher resumes) are retried by
// gRPC on UNAVAILABLE with backoff, per the channel's service config. Errors
// come back as absl::Status with the server's gRPC code and message.
class Client {
 public:
  explicit Client(const ClientOptions& options);
  // For callers that build their own channel (e.g. in-process tests).
  explicit Client(std::shared_ptr<grpc::Channel> channel,
                  absl::Duration deadline = absl::Seconds(5));

  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(
      int64_t user_id, absl::string_view session_id = "");
  // Many heartbeats at once; see BatchHeartbeatResponse for per-item results.
  absl::StatusOr<v1::BatchHeartbeatResponse> BatchHeartbeat(
      const v1::BatchHeartbeatRequest& request);
  // An empty session_id ends every session of the user.
  absl::StatusOr<v1::MarkOfflineResponse> MarkOffline(
      int64_t user_id, absl::string_view session_id = "");
  // One page; see ListAllOnline for every page.
  absl::StatusOr<v1::ListOnlineResponse> ListOnline(
      const v1::ListOnlineRequest& request);
  // Every online user (of `only`, if not empty), ascending, following
  // next_page_token. The pages are taken at slightly different moments.
  absl::StatusOr<std::vector<int64_t>> ListAllOnline(
      absl::Span<const int64_t> only = {});
  absl::StatusOr<v1::GetPresenceResponse> GetPresence(
      absl::Span<const int64_t> user_ids);

  // The service config applied to channels this class creates (JSON).
  static const char* ServiceConfigJson();

  v1::PresenceService::Stub& stub() { return *stub_; }
  // The channel, e.g. to share it with a Watcher.
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  // One unary call with the client's deadline.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(
      grpc::Status (v1::PresenceService::Stub::*method)(grpc::ClientContext*,
                                                        const Request&,
                                                        Response*),
      const Request& request);

  const absl::Duration deadline_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PresenceService::Stub> stub_;
};

}  // namespace presence

#endif  // PRESENCE_CLIENT_CLIENT_H_
