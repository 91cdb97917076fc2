#include "tests/storage_fault_util.h"

#include <chrono>

#include "SQLiteCpp/Database.h"
#include "gtest/gtest.h"

namespace presence::testing {
namespace {

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
}

}  // namespace

NoRetryClient::NoRetryClient(const std::string& address)
    : channel_(
          grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
      stub_(v1::PresenceService::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

grpc::Status NoRetryClient::Heartbeat(int64_t user,
                                      v1::HeartbeatResponse* response,
                                      const std::string& session) {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::HeartbeatRequest request;
  request.set_user_id(user);
  request.set_session_id(session);
  return stub_->Heartbeat(&context, request, response);
}

grpc::Status NoRetryClient::Heartbeat(int64_t user,
                                      const std::string& session) {
  v1::HeartbeatResponse response;
  return Heartbeat(user, &response, session);
}

grpc::Status NoRetryClient::Heartbeat(int64_t user) {
  v1::HeartbeatResponse response;
  return Heartbeat(user, &response);
}

grpc::Status NoRetryClient::BatchHeartbeat(const std::vector<int64_t>& users) {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::BatchHeartbeatRequest request;
  for (int64_t user : users) request.add_heartbeats()->set_user_id(user);
  v1::BatchHeartbeatResponse response;
  return stub_->BatchHeartbeat(&context, request, &response);
}

grpc::Status NoRetryClient::MarkOffline(int64_t user) {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::MarkOfflineRequest request;
  request.set_user_id(user);
  v1::MarkOfflineResponse response;
  return stub_->MarkOffline(&context, request, &response);
}

std::map<int64_t, v1::UserPresence> NoRetryClient::GetPresence(
    const std::vector<int64_t>& users) {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::GetPresenceRequest request;
  for (int64_t user : users) request.add_user_ids(user);
  v1::GetPresenceResponse response;
  grpc::Status status = stub_->GetPresence(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  std::map<int64_t, v1::UserPresence> out;
  for (const v1::UserPresence& p : response.users()) out[p.user_id()] = p;
  return out;
}

grpc::Status NoRetryClient::ListOnlineStatus() {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::ListOnlineResponse response;
  return stub_->ListOnline(&context, v1::ListOnlineRequest(), &response);
}

std::vector<int64_t> NoRetryClient::ListOnline() {
  grpc::ClientContext context;
  SetDeadline(context);
  v1::ListOnlineRequest request;
  v1::ListOnlineResponse response;
  grpc::Status status = stub_->ListOnline(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return {response.online_users().begin(), response.online_users().end()};
}

HealthCheckResponse::ServingStatus NoRetryClient::Health(
    const std::string& service) {
  grpc::ClientContext context;
  SetDeadline(context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  if (!health_->Check(&context, request, &response).ok()) {
    return HealthCheckResponse::UNKNOWN;
  }
  return response.status();
}

bool NoRetryClient::AwaitHealth(HealthCheckResponse::ServingStatus want,
                                absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (Health("") == want &&
        Health(v1::PresenceService::service_full_name()) == want) {
      return true;
    }
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

int64_t SessionRows(const std::string& db_path, int64_t user) {
  SQLite::Database db(db_path, SQLite::OPEN_READONLY);
  SQLite::Statement count(db,
                          "SELECT COUNT(*) FROM sessions WHERE user_id = ?");
  count.bind(1, user);
  count.executeStep();
  return count.getColumn(0).getInt64();
}

}  // namespace presence::testing
