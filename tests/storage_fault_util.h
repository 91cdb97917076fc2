// What the storage fault tests share: a client that sees every answer and
// the health of presenced, and what to look for in its database and log.
#ifndef PRESENCE_TESTS_STORAGE_FAULT_UTIL_H_
#define PRESENCE_TESTS_STORAGE_FAULT_UTIL_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "presence/v1/presence.grpc.pb.h"

namespace presence::testing {

using grpc::health::v1::HealthCheckResponse;

inline constexpr HealthCheckResponse::ServingStatus kServing =
    HealthCheckResponse::SERVING;
inline constexpr HealthCheckResponse::ServingStatus kNotServing =
    HealthCheckResponse::NOT_SERVING;

// gRPC calls to presenced without the C++ client's retries, so that every
// answer is seen; each with a 30 s deadline.
class NoRetryClient {
 public:
  explicit NoRetryClient(const std::string& address);

  grpc::Status Heartbeat(int64_t user, v1::HeartbeatResponse* response,
                         const std::string& session = "");
  grpc::Status Heartbeat(int64_t user, const std::string& session);
  grpc::Status Heartbeat(int64_t user);
  grpc::Status BatchHeartbeat(const std::vector<int64_t>& users);
  grpc::Status MarkOffline(int64_t user);
  // user -> presence; empty if the call fails (a test failure).
  std::map<int64_t, v1::UserPresence> GetPresence(
      const std::vector<int64_t>& users);
  grpc::Status ListOnlineStatus();
  // The first page of online users; empty if the call fails (a test
  // failure).
  std::vector<int64_t> ListOnline();

  // The status of `service`, or UNKNOWN if the check itself fails.
  HealthCheckResponse::ServingStatus Health(const std::string& service);
  // True once the whole server and presence.v1.PresenceService both report
  // `want`, at once or within `timeout`.
  bool AwaitHealth(HealthCheckResponse::ServingStatus want,
                   absl::Duration timeout = absl::Seconds(10));

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PresenceService::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

// How many times `needle` occurs in `text` (e.g. a log line in stderr).
size_t Count(const std::string& text, const std::string& needle);

// The rows of `user` in the sessions table of the database at `db_path`.
int64_t SessionRows(const std::string& db_path, int64_t user);

}  // namespace presence::testing

#endif  // PRESENCE_TESTS_STORAGE_FAULT_UTIL_H_
