// A sharded presenced (ServerOptions::ownership, the --shard and --shards
// flags) through gRPC: a real server on 127.0.0.1:0 with a real SQLite file
// and a fake clock. It answers only for its own users, and hands those it
// set aside at start-up to their new owners (ListForeignUsers,
// ImportLastSeen). The sharded clients are tested in sharded_client_test.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "presence/shard_map.h"
#include "service/caller_auth.h"
#include "service/presence_server.h"
#include "service/proto_time.h"
#include "service/shard_ownership.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr char kShards[] = "s0,s1,s2";

// Users 1.. that the hash places on `shard` under `shards`.
std::vector<int64_t> UsersOf(const std::string& shards,
                             const std::string& shard, size_t n) {
  const ShardMap map = *ShardMap::ParseNames(shards);
  std::vector<int64_t> users;
  for (int64_t id = 1; users.size() < n; ++id) {
    if (map.OwnerName(id) == shard) users.push_back(id);
  }
  return users;
}

// The blocking calls these tests make, on the generated stub (the sharded
// client library has tests of its own).
class Client {
 public:
  explicit Client(const std::string& target)
      : stub_(v1::PresenceService::NewStub(
            grpc::CreateChannel(target, grpc::InsecureChannelCredentials()))) {}
  v1::PresenceService::Stub& stub() { return *stub_; }

  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(int64_t user,
                                                  const std::string& s = "") {
    v1::HeartbeatRequest request;
    request.set_user_id(user);
    request.set_session_id(s);
    return Call(&v1::PresenceService::Stub::Heartbeat, request);
  }
  absl::StatusOr<v1::MarkOfflineResponse> MarkOffline(int64_t user) {
    v1::MarkOfflineRequest request;
    request.set_user_id(user);
    return Call(&v1::PresenceService::Stub::MarkOffline, request);
  }
  absl::StatusOr<v1::BatchHeartbeatResponse> BatchHeartbeat(
      const v1::BatchHeartbeatRequest& request) {
    return Call(&v1::PresenceService::Stub::BatchHeartbeat, request);
  }
  absl::StatusOr<v1::GetPresenceResponse> GetPresence(
      const std::vector<int64_t>& users) {
    v1::GetPresenceRequest request;
    request.mutable_user_ids()->Add(users.begin(), users.end());
    return Call(&v1::PresenceService::Stub::GetPresence, request);
  }
  absl::StatusOr<v1::ListOnlineResponse> ListOnline(
      const v1::ListOnlineRequest& request) {
    return Call(&v1::PresenceService::Stub::ListOnline, request);
  }
  // Everyone online: one page is enough for these tests.
  absl::StatusOr<std::vector<int64_t>> ListAllOnline() {
    absl::StatusOr<v1::ListOnlineResponse> page =
        ListOnline(v1::ListOnlineRequest());
    if (!page.ok()) return page.status();
    EXPECT_TRUE(page->next_page_token().empty());
    return std::vector<int64_t>(page->online_users().begin(),
                                page->online_users().end());
  }

 private:
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(
      grpc::Status (v1::PresenceService::Stub::*method)(grpc::ClientContext*,
                                                        const Request&,
                                                        Response*),
      const Request& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    Response response;
    const grpc::Status s = (stub_.get()->*method)(&context, request, &response);
    if (!s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                          s.error_message());
    }
    return response;
  }

  std::unique_ptr<v1::PresenceService::Stub> stub_;
};

class ShardServerTest : public ::testing::Test {
 protected:
  // A server as shard `self` of `shards` (both empty: unsharded) on the
  // file `db` in the test's directory.
  std::unique_ptr<PresenceServer> Start(const std::string& self,
                                        const std::string& shards,
                                        const std::string& db = "s.db") {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.db_path = dir_.File(db);
    options.clock = &clock_;
    absl::StatusOr<ShardOwnership> ownership =
        ShardOwnership::Create(self, shards);
    EXPECT_TRUE(ownership.ok()) << ownership.status();
    if (ownership.ok()) options.ownership = *ownership;
    absl::StatusOr<std::unique_ptr<PresenceServer>> server =
        PresenceServer::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  static std::unique_ptr<Client> ClientOf(const PresenceServer& server) {
    return std::make_unique<Client>(server.address());
  }

  static void ExpectMisrouted(const absl::Status& status, int64_t user,
                              const std::string& owner) {
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
    EXPECT_THAT(std::string(status.message()),
                HasSubstr(absl::StrCat("user ", user, " belongs to shard ",
                                       owner, ", not to this one (s1)")));
    EXPECT_THAT(std::string(status.message()),
                HasSubstr(absl::StrCat("presencectl shard ", user)));
  }

  FakeClock clock_;
  testing::TempDir dir_;
};

TEST(ShardOwnershipTest, FlagsGoTogetherAndNameAShardOfTheList) {
  EXPECT_FALSE(ShardOwnership::Create("", "").value().sharded());
  EXPECT_TRUE(ShardOwnership::Create("", "").value().Owns(42));
  for (const auto& [self, shards, says] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"s1", "", "go together"},
           {"", "s0,s1", "go together"},
           {"s3", "s0,s1", "--shard=s3 is not one of --shards (s0,s1)"},
           {"s0", "s0,s0", "--shards: shard \"s0\" is named twice"},
           {"s0", "s-{3..1}", "--shards:"},
       }) {
    absl::StatusOr<ShardOwnership> o = ShardOwnership::Create(self, shards);
    ASSERT_FALSE(o.ok()) << self << " " << shards;
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(o.status().message()), HasSubstr(says));
  }
  const ShardOwnership o =
      *ShardOwnership::Create("presenced-1", "presenced-{0..2}");
  EXPECT_EQ(o.name(), "presenced-1");
  EXPECT_EQ(o.ShardNames(), "presenced-0,presenced-1,presenced-2");
  const ShardMap map = *ShardMap::ParseNames("presenced-{0..2}");
  for (int64_t id = 1; id < 1000; ++id) {
    EXPECT_EQ(o.Owns(id), map.OwnerName(id) == "presenced-1") << id;
  }
}

TEST_F(ShardServerTest, RefusesEveryCallAboutAnotherShardsUserNamingTheOwner) {
  std::unique_ptr<PresenceServer> server = Start("s1", kShards);
  ASSERT_NE(server, nullptr);
  std::unique_ptr<Client> client = ClientOf(*server);
  const int64_t mine = UsersOf(kShards, "s1", 1)[0];
  const int64_t theirs = UsersOf(kShards, "s2", 1)[0];

  ExpectMisrouted(client->Heartbeat(theirs, "tab").status(), theirs, "s2");
  ExpectMisrouted(client->MarkOffline(theirs).status(), theirs, "s2");
  ExpectMisrouted(client->GetPresence({mine, theirs}).status(), theirs, "s2");
  v1::ListOnlineRequest list;
  list.add_user_ids(mine);
  list.add_user_ids(theirs);
  ExpectMisrouted(client->ListOnline(list).status(), theirs, "s2");
  grpc::ClientContext context;
  v1::WatchPresenceRequest watch;
  watch.add_user_ids(theirs);
  std::unique_ptr<grpc::ClientReader<v1::WatchPresenceResponse>> reader =
      client->stub().WatchPresence(&context, watch);
  v1::WatchPresenceResponse message;
  EXPECT_FALSE(reader->Read(&message));
  const grpc::Status watch_status = reader->Finish();
  ExpectMisrouted(
      absl::Status(static_cast<absl::StatusCode>(watch_status.error_code()),
                   watch_status.error_message()),
      theirs, "s2");

  // Its own users are served, and the refused heartbeat left nothing.
  ASSERT_TRUE(client->Heartbeat(mine, "tab").ok());
  EXPECT_THAT(*client->ListAllOnline(), ElementsAreArray({mine}));
}

TEST_F(ShardServerTest, BatchHeartbeatRefusesOnlyTheMisroutedItems) {
  std::unique_ptr<PresenceServer> server = Start("s1", kShards);
  ASSERT_NE(server, nullptr);
  std::unique_ptr<Client> client = ClientOf(*server);
  const std::vector<int64_t> mine = UsersOf(kShards, "s1", 2);
  const int64_t theirs = UsersOf(kShards, "s0", 1)[0];
  v1::BatchHeartbeatRequest request;
  for (int64_t user : {mine[0], theirs, mine[1]}) {
    request.add_heartbeats()->set_user_id(user);
  }
  absl::StatusOr<v1::BatchHeartbeatResponse> r =
      client->BatchHeartbeat(request);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->results_size(), 3);
  EXPECT_TRUE(r->results(0).has_heartbeat());
  ASSERT_TRUE(r->results(1).has_error());
  ExpectMisrouted(
      absl::Status(static_cast<absl::StatusCode>(r->results(1).error().code()),
                   r->results(1).error().message()),
      theirs, "s0");
  EXPECT_TRUE(r->results(2).has_heartbeat());
  EXPECT_THAT(*client->ListAllOnline(), ElementsAreArray(mine));
}

// Resharding: the users a shard stored but no longer owns are not loaded;
// it lists them, and their new owner imports their last_seen, durably.
TEST_F(ShardServerTest, SetsAsideUsersItNoLongerOwnsAndTheirOwnerImportsThem) {
  const absl::Time start = clock_.Now();
  {
    std::unique_ptr<PresenceServer> single = Start("", "", "old.db");
    ASSERT_NE(single, nullptr);
    std::unique_ptr<Client> client = ClientOf(*single);
    for (int64_t user = 1; user <= 60; ++user) {
      // User N is last seen N seconds after the start.
      clock_.Set(start + absl::Seconds(user));
      ASSERT_TRUE(client->Heartbeat(user).ok());
      if (user % 2 == 0) {
        ASSERT_TRUE(client->MarkOffline(user).ok());
      }
    }
    client.reset();
    ASSERT_TRUE(single->Shutdown().ok());
  }
  clock_.Set(start + absl::Minutes(1));  // odd users still online

  // "old.db" becomes shard a of a,b: b's users are set aside.
  const std::string shards = "a,b";
  const ShardMap map = *ShardMap::ParseNames(shards);
  std::vector<int64_t> a_online;
  std::vector<int64_t> b_users;
  for (int64_t user = 1; user <= 60; ++user) {
    if (map.OwnerName(user) == "b") {
      b_users.push_back(user);
    } else if (user % 2 == 1) {
      a_online.push_back(user);
    }
  }
  ASSERT_GT(b_users.size(), 15u);
  std::unique_ptr<PresenceServer> a = Start("a", shards, "old.db");
  ASSERT_NE(a, nullptr);
  std::unique_ptr<Client> a_client = ClientOf(*a);
  EXPECT_THAT(*a_client->ListAllOnline(), ElementsAreArray(a_online));

  std::vector<v1::UserLastSeen> foreign;
  std::string token;
  do {
    grpc::ClientContext context;
    v1::ListForeignUsersRequest request;
    request.set_page_size(7);
    request.set_page_token(token);
    v1::ListForeignUsersResponse page;
    const grpc::Status s =
        a_client->stub().ListForeignUsers(&context, request, &page);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(page.total(), static_cast<int64_t>(b_users.size()));
    EXPECT_LE(page.users_size(), 7);
    foreign.insert(foreign.end(), page.users().begin(), page.users().end());
    token = page.next_page_token();
  } while (!token.empty());
  ASSERT_EQ(foreign.size(), b_users.size());
  for (size_t i = 0; i < foreign.size(); ++i) {
    EXPECT_EQ(foreign[i].user_id(), b_users[i]);
    EXPECT_EQ(FromProto(foreign[i].last_seen()),
              start + absl::Seconds(b_users[i]))
        << b_users[i];
  }

  // b's owner takes them. A user that heartbeat at b meanwhile keeps its
  // own, newer state.
  std::unique_ptr<PresenceServer> b = Start("b", shards, "b.db");
  ASSERT_NE(b, nullptr);
  std::unique_ptr<Client> b_client = ClientOf(*b);
  const int64_t active = b_users[0];
  ASSERT_TRUE(b_client->Heartbeat(active).ok());
  v1::ImportLastSeenRequest import;
  for (const v1::UserLastSeen& u : foreign) *import.add_users() = u;
  {
    grpc::ClientContext context;
    v1::ImportLastSeenResponse response;
    ASSERT_TRUE(
        b_client->stub().ImportLastSeen(&context, import, &response).ok());
    EXPECT_EQ(response.updated(), static_cast<int32_t>(b_users.size() - 1));
  }
  {  // Again: nothing left to raise.
    grpc::ClientContext context;
    v1::ImportLastSeenResponse response;
    ASSERT_TRUE(
        b_client->stub().ImportLastSeen(&context, import, &response).ok());
    EXPECT_EQ(response.updated(), 0);
  }
  {  // A user b does not own: refused, and nothing of the call applied.
    v1::ImportLastSeenRequest wrong;
    wrong.add_users()->set_user_id(a_online[0]);
    *wrong.mutable_users(0)->mutable_last_seen() = ToProto(start);
    grpc::ClientContext context;
    v1::ImportLastSeenResponse response;
    const grpc::Status s =
        b_client->stub().ImportLastSeen(&context, wrong, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(s.error_message(), HasSubstr("belongs to shard a"));
  }
  b_client.reset();
  ASSERT_TRUE(b->Shutdown().ok());
  b.reset();
  b = Start("b", shards, "b.db");  // durable: read back from b.db
  ASSERT_NE(b, nullptr);
  b_client = ClientOf(*b);
  absl::StatusOr<v1::GetPresenceResponse> got = b_client->GetPresence(b_users);
  ASSERT_TRUE(got.ok()) << got.status();
  for (int i = 0; i < got->users_size(); ++i) {
    const v1::UserPresence& p = got->users(i);
    if (p.user_id() == active) {
      EXPECT_EQ(p.status(), v1::STATUS_ONLINE);
      continue;
    }
    EXPECT_EQ(p.status(), v1::STATUS_OFFLINE) << p.user_id();
    EXPECT_EQ(FromProto(p.last_seen()), start + absl::Seconds(p.user_id()))
        << p.user_id();
  }
}

TEST_F(ShardServerTest, ImportRejectsAMissingLastSeenAndClampsAFutureOne) {
  std::unique_ptr<PresenceServer> server = Start("a", "a");
  ASSERT_NE(server, nullptr);
  std::unique_ptr<Client> client = ClientOf(*server);
  v1::ImportLastSeenRequest request;
  request.add_users()->set_user_id(5);
  {
    grpc::ClientContext context;
    v1::ImportLastSeenResponse response;
    const grpc::Status s =
        client->stub().ImportLastSeen(&context, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("users[0].last_seen"));
  }
  *request.mutable_users(0)->mutable_last_seen() =
      ToProto(clock_.Now() + absl::Hours(1));
  grpc::ClientContext context;
  v1::ImportLastSeenResponse response;
  ASSERT_TRUE(client->stub().ImportLastSeen(&context, request, &response).ok());
  EXPECT_EQ(response.updated(), 1);
  absl::StatusOr<v1::GetPresenceResponse> got = client->GetPresence({5});
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(FromProto(got->users(0).last_seen()), clock_.Now());
}

// The hand-over calls are for resharding: one unsharded presenced refuses
// them, so they are no way around Heartbeat there.
TEST_F(ShardServerTest, AnUnshardedServerRefusesTheHandOverCalls) {
  std::unique_ptr<PresenceServer> server = Start("", "");
  ASSERT_NE(server, nullptr);
  std::unique_ptr<Client> client = ClientOf(*server);
  v1::ImportLastSeenRequest import;
  import.add_users()->set_user_id(5);
  *import.mutable_users(0)->mutable_last_seen() = ToProto(clock_.Now());
  grpc::ClientContext import_context;
  v1::ImportLastSeenResponse imported;
  grpc::Status s =
      client->stub().ImportLastSeen(&import_context, import, &imported);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("not sharded"));
  grpc::ClientContext list_context;
  v1::ListForeignUsersResponse listed;
  s = client->stub().ListForeignUsers(&list_context,
                                      v1::ListForeignUsersRequest(), &listed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  absl::StatusOr<v1::GetPresenceResponse> got = client->GetPresence({5});
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->users(0).has_last_seen());
}

// With --auth_tokens_file the hand-over calls need a caller's token like
// every call: a peer without one imports nothing and lists nothing.
TEST_F(ShardServerTest, TheHandOverCallsNeedAToken) {
  const std::string tokens = dir_.File("tokens");
  std::ofstream(tokens) << "reshard 0123456789abcdef0123\n";
  absl::StatusOr<std::unique_ptr<CallerAuth>> auth = CallerAuth::Load(tokens);
  ASSERT_TRUE(auth.ok()) << auth.status();
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir_.File("auth.db");
  options.clock = &clock_;
  options.ownership = *ShardOwnership::Create("a", "a");
  options.auth = auth->get();
  absl::StatusOr<std::unique_ptr<PresenceServer>> server =
      PresenceServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  Client client((*server)->address());
  v1::ImportLastSeenRequest import;
  import.add_users()->set_user_id(5);
  *import.mutable_users(0)->mutable_last_seen() = ToProto(clock_.Now());
  grpc::ClientContext import_context;
  v1::ImportLastSeenResponse imported;
  EXPECT_EQ(client.stub()
                .ImportLastSeen(&import_context, import, &imported)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  grpc::ClientContext list_context;
  v1::ListForeignUsersResponse listed;
  EXPECT_EQ(client.stub()
                .ListForeignUsers(&list_context, v1::ListForeignUsersRequest(),
                                  &listed)
                .error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // With the token, the import is taken: the refusal above was the token's.
  grpc::ClientContext with_token;
  with_token.AddMetadata("authorization", "Bearer 0123456789abcdef0123");
  ASSERT_TRUE(
      client.stub().ImportLastSeen(&with_token, import, &imported).ok());
  EXPECT_EQ(imported.updated(), 1);
}

// An answered import survives kill -9 of the real process (commit mode):
// its answer waited for the commit.
TEST(ShardProcessTest, AnAnsweredImportSurvivesKill9) {
  testing::TempDir dir;
  const std::vector<std::string> flags = {"--db=" + dir.File("b.db"),
                                          "--shard=b", "--shards=a,b"};
  testing::RunningPresenced b = testing::StartPresenced(flags);
  ASSERT_FALSE(b.address.empty());
  const std::vector<int64_t> users = UsersOf("a,b", "b", 50);
  const absl::Time seen = absl::FromUnixSeconds(1'700'000'000);
  v1::ImportLastSeenRequest import;
  for (int64_t user : users) {
    v1::UserLastSeen* u = import.add_users();
    u->set_user_id(user);
    *u->mutable_last_seen() = ToProto(seen + absl::Seconds(user));
  }
  {
    Client client(b.address);
    grpc::ClientContext context;
    v1::ImportLastSeenResponse response;
    ASSERT_TRUE(client.stub().ImportLastSeen(&context, import, &response).ok());
    ASSERT_EQ(response.updated(), 50);
  }
  b.process->Signal(SIGKILL);
  b.process->Wait();
  b = testing::StartPresenced(flags);
  ASSERT_FALSE(b.address.empty());
  Client client(b.address);
  absl::StatusOr<v1::GetPresenceResponse> got = client.GetPresence(users);
  ASSERT_TRUE(got.ok()) << got.status();
  for (const v1::UserPresence& p : got->users()) {
    EXPECT_EQ(FromProto(p.last_seen()), seen + absl::Seconds(p.user_id()))
        << p.user_id();
  }
}

}  // namespace
}  // namespace presence
