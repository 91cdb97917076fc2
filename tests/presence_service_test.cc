// presenced through gRPC: a real server on 127.0.0.1:0 with a real SQLite
// file, driven by presence::Client, with a fake clock for the time rules.

#include <memory>
#include <string>
#include <vector>

#include "SQLiteCpp/Database.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/util/time_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "presence/client.h"
#include "service/presence_server.h"
#include "src/proto/grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using google::protobuf::util::TimeUtil;

constexpr absl::Duration kWindow = absl::Minutes(5);

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(t));
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(); }

  void Start(ServerOptions options = {}) {
    options.listen = "127.0.0.1:0";
    options.db_path = dir_.File("presence.db");
    if (options.clock == nullptr) options.clock = &clock_;
    absl::StatusOr<std::unique_ptr<PresenceServer>> server =
        PresenceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ClientOptions client_options;
    client_options.target = server_->address();
    client_ = std::make_unique<Client>(client_options);
  }

  v1::UserPresence Get(int64_t user) {
    const std::vector<int64_t> ids = {user};
    absl::StatusOr<v1::GetPresenceResponse> r = client_->GetPresence(ids);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->users_size() == 1 ? r->users(0) : v1::UserPresence();
  }

  std::vector<int64_t> Online() {
    absl::StatusOr<std::vector<int64_t>> r = client_->ListAllOnline();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<int64_t>{};
  }

  FakeClock clock_;
  testing::TempDir dir_;
  std::unique_ptr<PresenceServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(ServiceTest, HeartbeatAnswersWithServerTimeWindowAndInterval) {
  const absl::Time now = clock_.Now();
  absl::StatusOr<v1::HeartbeatResponse> r = client_->Heartbeat(42, "tab-1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(FromProto(r->server_time()), now);
  EXPECT_EQ(FromProto(r->online_until()), now + kWindow);
  EXPECT_EQ(TimeUtil::DurationToSeconds(r->heartbeat_interval()), 120);
  EXPECT_TRUE(r->became_online());
  EXPECT_FALSE(client_->Heartbeat(42, "tab-1")->became_online());

  v1::UserPresence p = Get(42);
  EXPECT_EQ(p.user_id(), 42);
  EXPECT_EQ(p.status(), v1::STATUS_ONLINE);
  EXPECT_EQ(p.live_sessions(), 1);
  EXPECT_EQ(FromProto(p.last_seen()), now);
  EXPECT_EQ(FromProto(p.online_until()), now + kWindow);
  EXPECT_EQ(Online(), std::vector<int64_t>{42});
}

TEST_F(ServiceTest, ClientTimeNeverDecidesPresence) {
  const absl::Time now = clock_.Now();
  for (absl::Time client_time :
       {absl::FromCivil(absl::CivilSecond(2099, 1, 1, 0, 0, 0),
                        absl::UTCTimeZone()),
        absl::UnixEpoch()}) {
    v1::HeartbeatRequest request;
    request.set_user_id(42);
    *request.mutable_client_time() = ToProto(client_time);
    v1::HeartbeatResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(client_->stub().Heartbeat(&context, request, &response).ok());
    EXPECT_EQ(FromProto(response.server_time()), now);
    EXPECT_EQ(FromProto(response.online_until()), now + kWindow);
  }
  EXPECT_EQ(FromProto(Get(42).last_seen()), now);
  clock_.Advance(kWindow);
  EXPECT_EQ(Get(42).status(), v1::STATUS_OFFLINE);
}

TEST_F(ServiceTest, OfflineExactlyAtTheEndOfTheWindow) {
  const absl::Time t0 = clock_.Now();
  ASSERT_TRUE(client_->Heartbeat(42).ok());
  clock_.Set(t0 + kWindow - absl::Microseconds(1));
  EXPECT_EQ(Get(42).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(Online(), std::vector<int64_t>{42});
  clock_.Set(t0 + kWindow);
  v1::UserPresence p = Get(42);
  EXPECT_EQ(p.status(), v1::STATUS_OFFLINE);
  EXPECT_FALSE(p.has_online_until());
  EXPECT_EQ(FromProto(p.last_seen()), t0);
  EXPECT_TRUE(Online().empty());
}

TEST_F(ServiceTest, LogoutOnOneDeviceKeepsTheOtherOnline) {
  ASSERT_TRUE(client_->Heartbeat(42, "phone").ok());
  ASSERT_TRUE(client_->Heartbeat(42, "laptop").ok());
  clock_.Advance(absl::Seconds(7));
  absl::StatusOr<v1::MarkOfflineResponse> r =
      client_->MarkOffline(42, "laptop");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->still_online());
  EXPECT_EQ(r->sessions_ended(), 1);
  EXPECT_EQ(FromProto(r->server_time()), clock_.Now());
  EXPECT_EQ(Get(42).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(Get(42).live_sessions(), 1);
}

TEST_F(ServiceTest, LogoutEverywhereIsOfflineAtOnceWithLastSeen) {
  ASSERT_TRUE(client_->Heartbeat(42, "phone").ok());
  ASSERT_TRUE(client_->Heartbeat(42, "laptop").ok());
  clock_.Advance(absl::Seconds(7));
  const absl::Time logout = clock_.Now();
  absl::StatusOr<v1::MarkOfflineResponse> r = client_->MarkOffline(42);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->still_online());
  EXPECT_EQ(r->sessions_ended(), 2);
  v1::UserPresence p = Get(42);
  EXPECT_EQ(p.status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(FromProto(p.last_seen()), logout);
  EXPECT_TRUE(Online().empty());
}

TEST_F(ServiceTest, NeverSeenUserIsOfflineWithoutLastSeen) {
  v1::UserPresence p = Get(12345);
  EXPECT_EQ(p.user_id(), 12345);
  EXPECT_EQ(p.status(), v1::STATUS_OFFLINE);
  EXPECT_FALSE(p.has_last_seen());
  EXPECT_EQ(p.live_sessions(), 0);
}

TEST_F(ServiceTest, GetPresenceKeepsRequestOrderAndHasServerTime) {
  ASSERT_TRUE(client_->Heartbeat(5).ok());
  const std::vector<int64_t> ids = {9, 5, 9};
  absl::StatusOr<v1::GetPresenceResponse> r = client_->GetPresence(ids);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->users_size(), 3);
  EXPECT_EQ(r->users(0).user_id(), 9);
  EXPECT_EQ(r->users(1).user_id(), 5);
  EXPECT_EQ(r->users(1).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(r->users(2).user_id(), 9);
  EXPECT_EQ(FromProto(r->server_time()), clock_.Now());
}

TEST_F(ServiceTest, ListOnlinePagesAscendingWithTotal) {
  std::vector<int64_t> expected;
  for (int64_t id = 25; id >= 1; --id) {
    ASSERT_TRUE(client_->Heartbeat(id * 3).ok());
  }
  for (int64_t id = 1; id <= 25; ++id) expected.push_back(id * 3);

  v1::ListOnlineRequest request;
  request.set_page_size(10);
  std::vector<int64_t> seen;
  int pages = 0;
  do {
    absl::StatusOr<v1::ListOnlineResponse> page = client_->ListOnline(request);
    ASSERT_TRUE(page.ok()) << page.status();
    ++pages;
    EXPECT_EQ(page->total_online(), 25);
    EXPECT_EQ(FromProto(page->server_time()), clock_.Now());
    EXPECT_LE(page->online_users_size(), 10);
    seen.insert(seen.end(), page->online_users().begin(),
                page->online_users().end());
    request.set_page_token(page->next_page_token());
  } while (!request.page_token().empty());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, expected);

  const std::vector<int64_t> only = {75, 4, 3};
  absl::StatusOr<std::vector<int64_t>> filtered = client_->ListAllOnline(only);
  ASSERT_TRUE(filtered.ok());
  EXPECT_EQ(*filtered, (std::vector<int64_t>{3, 75}));
}

TEST_F(ServiceTest, BadRequestsAreInvalidArgumentNamingTheField) {
  struct Case {
    absl::Status status;
    std::string field;
  };
  v1::ListOnlineRequest bad_token;
  bad_token.set_page_token("not-a-token");
  std::vector<int64_t> too_many(10'001, 1);
  const std::vector<int64_t> zero = {3, 0};
  std::vector<Case> cases = {
      {client_->Heartbeat(0).status(), "user_id"},
      {client_->Heartbeat(-1).status(), "user_id"},
      {client_->Heartbeat(1, std::string(129, 's')).status(), "session_id"},
      {client_->Heartbeat(1, "tab\x01").status(), "session_id"},
      {client_->MarkOffline(0).status(), "user_id"},
      {client_->ListOnline(bad_token).status(), "page_token"},
      {client_->GetPresence(too_many).status(), "user_ids"},
      {client_->GetPresence(zero).status(), "user_ids[1]"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(c.status.code(), absl::StatusCode::kInvalidArgument) << c.status;
    EXPECT_NE(c.status.message().find(c.field), absl::string_view::npos)
        << c.status;
  }
  EXPECT_TRUE(Online().empty());  // nothing was applied, server still serving
}

TEST_F(ServiceTest, ChangeIsInSqliteWhenTheAnswerArrives) {
  ASSERT_TRUE(client_->Heartbeat(42, "tab").ok());
  SQLite::Database db(dir_.File("presence.db"), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("SELECT last_heartbeat_us FROM sessions "
                          "WHERE user_id = 42 AND session_id = 'tab'")
                .getInt64(),
            absl::ToUnixMicros(clock_.Now()));

  clock_.Advance(absl::Seconds(3));
  ASSERT_TRUE(client_->MarkOffline(42).ok());
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM sessions").getInt(), 0);
  EXPECT_EQ(db.execAndGet("SELECT last_seen_us FROM users WHERE user_id = 42")
                .getInt64(),
            absl::ToUnixMicros(clock_.Now()));
}

TEST_F(ServiceTest, StateSurvivesAGracefulRestart) {
  ASSERT_TRUE(client_->Heartbeat(42, "tab").ok());
  const absl::Time hb = clock_.Now();
  ASSERT_TRUE(client_->Heartbeat(7).ok());
  clock_.Advance(absl::Seconds(10));
  ASSERT_TRUE(client_->MarkOffline(7).ok());
  const absl::Time logout = clock_.Now();
  ASSERT_TRUE(server_->Shutdown().ok());
  client_.reset();
  server_.reset();

  clock_.Advance(absl::Minutes(1));
  Start();
  v1::UserPresence p = Get(42);
  EXPECT_EQ(p.status(), v1::STATUS_ONLINE);
  EXPECT_EQ(FromProto(p.online_until()), hb + kWindow);
  EXPECT_EQ(Get(7).status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(FromProto(Get(7).last_seen()), logout);
}

TEST_F(ServiceTest, ExpiredWhileDownIsOfflineAfterRestartWithLastSeen) {
  ASSERT_TRUE(client_->Heartbeat(42).ok());
  const absl::Time hb = clock_.Now();
  client_.reset();
  server_.reset();
  clock_.Advance(kWindow + absl::Hours(1));
  Start();
  v1::UserPresence p = Get(42);
  EXPECT_EQ(p.status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(FromProto(p.last_seen()), hb);
}

TEST_F(ServiceTest, HealthIsServingAndNotServingOnShutdown) {
  auto channel = grpc::CreateChannel(server_->address(),
                                     grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  for (const char* service : {"", "presence.v1.PresenceService"}) {
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::ClientContext context;
    ASSERT_TRUE(health->Check(&context, request, &response).ok()) << service;
    EXPECT_EQ(response.status(),
              grpc::health::v1::HealthCheckResponse::SERVING);
  }
}

TEST_F(ServiceTest, ReflectionListsAndDescribesOurServiceAndHealth) {
  using grpc::reflection::v1alpha::ServerReflection;
  using grpc::reflection::v1alpha::ServerReflectionRequest;
  using grpc::reflection::v1alpha::ServerReflectionResponse;
  auto channel = grpc::CreateChannel(server_->address(),
                                     grpc::InsecureChannelCredentials());
  auto stub = ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  auto stream = stub->ServerReflectionInfo(&context);

  ServerReflectionRequest list;
  list.set_list_services("*");
  ASSERT_TRUE(stream->Write(list));
  ServerReflectionResponse listed;
  ASSERT_TRUE(stream->Read(&listed));
  std::vector<std::string> services;
  for (const auto& s : listed.list_services_response().service()) {
    services.push_back(s.name());
  }
  EXPECT_NE(std::find(services.begin(), services.end(),
                      "presence.v1.PresenceService"),
            services.end());
  EXPECT_NE(
      std::find(services.begin(), services.end(), "grpc.health.v1.Health"),
      services.end());

  for (const std::string symbol :
       {"grpc.health.v1.Health", "presence.v1.PresenceService"}) {
    ServerReflectionRequest describe;
    describe.set_file_containing_symbol(symbol);
    ASSERT_TRUE(stream->Write(describe));
    ServerReflectionResponse described;
    ASSERT_TRUE(stream->Read(&described));
    ASSERT_TRUE(described.has_file_descriptor_response())
        << symbol << ": " << described.error_response().error_message();
    bool found = false;
    for (const std::string& bytes :
         described.file_descriptor_response().file_descriptor_proto()) {
      google::protobuf::FileDescriptorProto file;
      ASSERT_TRUE(file.ParseFromString(bytes));
      for (const auto& service : file.service()) {
        found |= file.package() + "." + service.name() == symbol;
      }
    }
    EXPECT_TRUE(found) << symbol;
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

// The one test on the real clock: a 1 s window really ends.
TEST(ServiceRealClockTest, UserGoesOfflineWhenTheRealWindowEnds) {
  testing::TempDir dir;
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("presence.db");
  options.online_window = absl::Seconds(1);
  options.heartbeat_interval = absl::Milliseconds(500);
  absl::StatusOr<std::unique_ptr<PresenceServer>> server =
      PresenceServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions client_options;
  client_options.target = (*server)->address();
  Client client(client_options);

  absl::StatusOr<v1::HeartbeatResponse> hb = client.Heartbeat(42);
  ASSERT_TRUE(hb.ok()) << hb.status();
  const absl::Time online_until = FromProto(hb->online_until());
  EXPECT_EQ(online_until - FromProto(hb->server_time()), absl::Seconds(1));

  // Poll until the server reports offline; every answer before online_until
  // must say online, every answer from then on offline.
  const std::vector<int64_t> ids = {42};
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  bool offline = false;
  while (!offline && absl::Now() < give_up) {
    absl::StatusOr<v1::GetPresenceResponse> r = client.GetPresence(ids);
    ASSERT_TRUE(r.ok()) << r.status();
    const bool before_end = FromProto(r->server_time()) < online_until;
    offline = r->users(0).status() == v1::STATUS_OFFLINE;
    EXPECT_EQ(offline, !before_end)
        << "server_time " << FromProto(r->server_time()) << " online_until "
        << online_until;
    if (!offline) absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(offline) << "still online 10 s after a 1 s window";
}

}  // namespace
}  // namespace presence
