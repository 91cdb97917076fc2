#include "presence/shard_map.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace presence {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Names(const ShardMap& map) {
  std::vector<std::string> names;
  for (const Shard& shard : map.shards()) names.push_back(shard.name);
  return names;
}

// The vectors every client library checks (the Python tests read the same
// file): a disagreement would route one user to two shards.
TEST(ShardMapTest, AgreesWithTheSharedTestVectors) {
  std::ifstream in(SHARD_VECTORS_PATH);
  ASSERT_TRUE(in) << SHARD_VECTORS_PATH;
  std::string line;
  int checked = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const std::vector<std::string> f = absl::StrSplit(line, ' ');
    const std::string name = f.size() > 1 && f[1] == "-" ? "" : f[1];
    if (f[0] == "hash") {
      ASSERT_EQ(f.size(), 3u) << line;
      EXPECT_EQ(absl::StrCat(absl::Hex(ShardNameHash(name), absl::kZeroPad16)),
                f[2])
          << line;
    } else if (f[0] == "weight") {
      ASSERT_EQ(f.size(), 4u) << line;
      int64_t user = 0;
      ASSERT_TRUE(absl::SimpleAtoi(f[2], &user)) << line;
      EXPECT_EQ(absl::StrCat(absl::Hex(ShardWeight(ShardNameHash(name), user),
                                       absl::kZeroPad16)),
                f[3])
          << line;
    } else {
      ASSERT_EQ(f[0], "owner") << line;
      ASSERT_EQ(f.size(), 4u) << line;
      absl::StatusOr<ShardMap> map = ShardMap::ParseNames(f[1]);
      ASSERT_TRUE(map.ok()) << map.status();
      int64_t user = 0;
      ASSERT_TRUE(absl::SimpleAtoi(f[2], &user)) << line;
      EXPECT_EQ(map->OwnerName(user), f[3]) << line;
    }
    ++checked;
  }
  EXPECT_GT(checked, 100);
}

TEST(ShardMapTest, SpreadsUsersEvenlyAndMovesOnlyAQuarterToAFourthShard) {
  const ShardMap three = *ShardMap::ParseNames("presenced-{0..2}");
  const ShardMap four = *ShardMap::ParseNames("presenced-{0..3}");
  std::vector<int> count(3);
  int moved = 0;
  for (int64_t user = 1; user <= 30'000; ++user) {
    ++count[three.OwnerIndex(user)];
    if (three.OwnerName(user) != four.OwnerName(user)) {
      ++moved;
      // Rendezvous: a user moves only to the new shard, never between old.
      EXPECT_EQ(four.OwnerName(user), "presenced-3") << user;
    }
  }
  for (int c : count) {
    EXPECT_GT(c, 9'000);
    EXPECT_LT(c, 11'000);
  }
  EXPECT_GT(moved, 6'500);
  EXPECT_LT(moved, 8'500);
}

TEST(ShardMapTest, OwnerDoesNotDependOnTheOrderShardsAreListed) {
  const ShardMap a = *ShardMap::ParseNames("x,y,z");
  const ShardMap b = *ShardMap::ParseNames("z,x,y");
  for (int64_t user = -500; user <= 500; ++user) {
    EXPECT_EQ(a.OwnerName(user), b.OwnerName(user)) << user;
  }
}

TEST(ShardMapTest, APlainTargetIsOneUnshardedServer) {
  absl::StatusOr<ShardMap> map = ShardMap::Parse(" 127.0.0.1:50051 ");
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_FALSE(map->sharded());
  ASSERT_EQ(map->size(), 1u);
  EXPECT_EQ(map->shard(0).target, "127.0.0.1:50051");
  EXPECT_EQ(map->OwnerIndex(42), 0u);
  EXPECT_EQ(map->ToString(), "127.0.0.1:50051");
  // Target URIs pass through untouched.
  EXPECT_FALSE(ShardMap::Parse("dns:///presenced.example:50051")->sharded());
}

TEST(ShardMapTest, ParsesNamesWithAddresses) {
  absl::StatusOr<ShardMap> map =
      ShardMap::Parse("s0=127.0.0.1:1, s1 = [::1]:2,s2=dns:///h:3");
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_TRUE(map->sharded());
  EXPECT_THAT(Names(*map), ::testing::ElementsAre("s0", "s1", "s2"));
  EXPECT_EQ(map->shard(1).target, "[::1]:2");
  EXPECT_EQ(map->shard(2).target, "dns:///h:3");
  EXPECT_EQ(map->IndexOf("s2"), 2);
  EXPECT_EQ(map->IndexOf("s3"), -1);
  EXPECT_EQ(map->ToString(), "s0=127.0.0.1:1,s1=[::1]:2,s2=dns:///h:3");
}

TEST(ShardMapTest, ExpandsAStatefulSetDnsPattern) {
  absl::StatusOr<ShardMap> map =
      ShardMap::Parse("presenced-{0..2}.presenced.chat.svc:50051");
  ASSERT_TRUE(map.ok()) << map.status();
  EXPECT_THAT(Names(*map), ::testing::ElementsAre("presenced-0", "presenced-1",
                                                  "presenced-2"));
  EXPECT_EQ(map->shard(2).target, "presenced-2.presenced.chat.svc:50051");
}

TEST(ShardMapTest, NamesAcceptAListAPatternOrAMap) {
  EXPECT_THAT(Names(*ShardMap::ParseNames("a,b")),
              ::testing::ElementsAre("a", "b"));
  EXPECT_THAT(Names(*ShardMap::ParseNames("p-{0..1},q")),
              ::testing::ElementsAre("p-0", "p-1", "q"));
  EXPECT_THAT(Names(*ShardMap::ParseNames("a=h:1,b=h:2")),
              ::testing::ElementsAre("a", "b"));
  // One name is a sharded deployment of one: it owns everyone.
  EXPECT_TRUE(ShardMap::ParseNames("solo")->sharded());
}

TEST(ShardMapTest, RejectsWhatCannotBeAShardMapWithAReason) {
  struct Case {
    const char* spec;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {"", "no address"},
           {"a=h:1,b", "NAME=HOST:PORT"},
           {"a=h:1,a=h:2", "named twice"},
           {"=h:1", "a name is 1 to 63"},
           {"a b=h:1", "a name is 1 to 63"},
           {"p-{2..0}.x:1", "FIRST <= LAST"},
           {"p-{0..x}.x:1", "FIRST..LAST"},
           {"p-{0..1}-{0..1}.x:1", "one range"},
           {"p-{0..5000}.x:1", "at most 1024"},
           {"127.0.0.1:{1..3}", "host's first label"},
       }) {
    absl::StatusOr<ShardMap> map = ShardMap::Parse(c.spec);
    ASSERT_FALSE(map.ok()) << c.spec;
    EXPECT_EQ(map.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(map.status().message()), HasSubstr(c.says))
        << c.spec;
  }
  EXPECT_FALSE(ShardMap::ParseNames("a,,b").ok());
  EXPECT_FALSE(ShardMap::ParseNames("").ok());
}

}  // namespace
}  // namespace presence
