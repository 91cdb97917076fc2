// presencectl reshard (tools/reshard.h) against real shards: three sharded
// servers on 127.0.0.1:0 with real SQLite files become four, and the users
// the fourth now owns reach it with their last_seen.
#include "tools/reshard.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/presence_server.h"
#include "service/proto_time.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using ::testing::HasSubstr;

class ReshardTest : public ::testing::Test {
 protected:
  // Shard `self` of `names`, on `self`.db in the test's directory.
  std::unique_ptr<PresenceServer> Start(const std::string& self,
                                        const std::string& names) {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.db_path = dir_.File(self + ".db");
    options.clock = &clock_;
    options.ownership = *ShardOwnership::Create(self, names);
    absl::StatusOr<std::unique_ptr<PresenceServer>> server =
        PresenceServer::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // Every shard of `names` started, and the map of their addresses.
  ShardMap StartAll(const std::string& names) {
    servers_.clear();
    std::string spec;
    const ShardMap map = *ShardMap::ParseNames(names);
    for (const Shard& shard : map.shards()) {
      servers_.push_back(Start(shard.name, names));
      absl::StrAppend(&spec, spec.empty() ? "" : ",", shard.name, "=",
                      servers_.back() ? servers_.back()->address() : "x:1");
    }
    return *ShardMap::Parse(spec);
  }

  static std::unique_ptr<Client> ClientOf(const Shard& shard) {
    ClientOptions options;
    options.target = shard.target;
    return std::make_unique<Client>(options);
  }

  FakeClock clock_;
  testing::TempDir dir_;
  std::vector<std::unique_ptr<PresenceServer>> servers_;
};

TEST_F(ReshardTest, HandsTheUsersAFourthShardNowOwnsToItWithTheirLastSeen) {
  const absl::Time start = clock_.Now();
  constexpr int kUsers = 400;
  {
    const ShardMap three = StartAll("s{0..2}");
    for (int64_t user = 1; user <= kUsers; ++user) {
      clock_.Set(start + absl::Seconds(user));
      std::unique_ptr<Client> owner =
          ClientOf(three.shard(three.OwnerIndex(user)));
      ASSERT_TRUE(owner->Heartbeat(user).ok());
      ASSERT_TRUE(owner->MarkOffline(user).ok());
    }
  }
  clock_.Set(start + absl::Hours(1));
  const ShardMap four = StartAll("s{0..3}");
  const ShardMap three_names = *ShardMap::ParseNames("s{0..2}");
  std::vector<int64_t> moved;
  for (int64_t user = 1; user <= kUsers; ++user) {
    if (four.OwnerIndex(user) == 3) {
      // Rendezvous: the new shard takes users from each old one, and no
      // user moves between old shards.
      moved.push_back(user);
    } else {
      ASSERT_EQ(four.OwnerName(user), three_names.OwnerName(user)) << user;
    }
  }
  ASSERT_GT(moved.size(), 60u);
  ASSERT_LT(moved.size(), 140u);

  ClientOptions connection;
  absl::StatusOr<ReshardReport> report = Reshard(four, connection, 16);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->users, static_cast<int64_t>(moved.size()));
  ASSERT_EQ(report->moves.size(), 3u);
  for (const ReshardReport::Move& move : report->moves) {
    EXPECT_EQ(move.to, "s3");
    EXPECT_EQ(move.updated, move.users) << move.from;
  }
  std::unique_ptr<Client> s3 = ClientOf(four.shard(3));
  absl::StatusOr<v1::GetPresenceResponse> got = s3->GetPresence(moved);
  ASSERT_TRUE(got.ok()) << got.status();
  for (const v1::UserPresence& p : got->users()) {
    EXPECT_EQ(FromProto(p.last_seen()), start + absl::Seconds(p.user_id()))
        << p.user_id();
  }

  // Once is enough: a rerun hands the same users over and raises nothing.
  report = Reshard(four, connection, 1'000);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->users, static_cast<int64_t>(moved.size()));
  for (const ReshardReport::Move& move : report->moves) {
    EXPECT_EQ(move.updated, 0) << move.from;
  }
}

TEST_F(ReshardTest, RefusesAMapThatIsNotTheShardsOwn) {
  {
    const ShardMap one = StartAll("s0");
    for (int64_t user = 1; user <= 50; ++user) {
      ASSERT_TRUE(ClientOf(one.shard(0))->Heartbeat(user).ok());
    }
  }
  const ShardMap two = StartAll("s{0..1}");
  // Told the deployment is s0 alone, while s0 runs as one of two.
  const ShardMap wrong =
      *ShardMap::Parse(absl::StrCat("s0=", two.shard(0).target));
  absl::StatusOr<ReshardReport> report = Reshard(wrong, ClientOptions());
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(report.status().message()),
              HasSubstr("is not the --shards the shards run with"));

  EXPECT_EQ(Reshard(*ShardMap::Parse(two.shard(0).target), ClientOptions())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ReshardTest, AShardThatIsDownStopsItNamingTheShard) {
  {
    const ShardMap one = StartAll("s0");
    for (int64_t user = 1; user <= 50; ++user) {
      ASSERT_TRUE(ClientOf(one.shard(0))->Heartbeat(user).ok());
    }
  }
  const ShardMap two = StartAll("s{0..1}");
  ASSERT_TRUE(servers_[1]->Shutdown().ok());  // s1, the new owner, is down
  ClientOptions connection;
  connection.deadline = absl::Seconds(2);
  absl::StatusOr<ReshardReport> report = Reshard(two, connection);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kUnavailable)
      << report.status();
  EXPECT_THAT(std::string(report.status().message()),
              HasSubstr(absl::StrCat("shard s1 (", two.shard(1).target, ")")));
}

}  // namespace
}  // namespace presence
