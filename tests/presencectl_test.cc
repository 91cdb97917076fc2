// presencectl as a user runs it, against a real presenced.

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "presence/shard_map.h"
#include "presence/v1/presence.grpc.pb.h"
#include "presence/v1/presence.pb.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using testing::Subprocess;

class PresencectlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = testing::StartPresenced({"--db=" + dir_.File("p.db")});
    ASSERT_FALSE(server_.address.empty());
  }

  Subprocess::Exit Ctl(std::vector<std::string> args) {
    std::vector<std::string> argv = {PRESENCECTL_PATH,
                                     "--server=" + server_.address};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::Run(argv);
  }

  testing::TempDir dir_;
  testing::RunningPresenced server_;
};

TEST_F(PresencectlTest, HeartbeatThenListShowsTheUser) {
  Subprocess::Exit hb = Ctl({"heartbeat", "42"});
  EXPECT_EQ(hb.code, 0) << hb.err;
  EXPECT_NE(hb.out.find("42 online (was offline) until "), std::string::npos)
      << hb.out;
  EXPECT_NE(hb.out.find("next heartbeat within 2m"), std::string::npos);

  Subprocess::Exit again = Ctl({"heartbeat", "42"});
  EXPECT_EQ(again.out.find("was offline"), std::string::npos) << again.out;

  Subprocess::Exit list = Ctl({"list"});
  EXPECT_EQ(list.code, 0) << list.err;
  EXPECT_EQ(list.out.substr(0, 3), "42\n") << list.out;
  EXPECT_NE(list.out.find("(1 online at "), std::string::npos) << list.out;
}

TEST_F(PresencectlTest, GetShowsStatusLastSeenAndSessions) {
  ASSERT_EQ(Ctl({"heartbeat", "42", "--session", "phone"}).code, 0);
  ASSERT_EQ(Ctl({"heartbeat", "42", "--session=laptop"}).code, 0);
  Subprocess::Exit get = Ctl({"get", "42", "7"});
  EXPECT_EQ(get.code, 0) << get.err;
  EXPECT_TRUE(std::regex_search(
      get.out,
      std::regex(R"(^USER +STATUS +LAST SEEN +SESSIONS +AVAILABILITY +)"
                 R"(CUSTOM STATUS\n)")))
      << get.out;
  // 42    online   just now (2026-11-28T06:43:54Z)  2         auto  -
  EXPECT_TRUE(std::regex_search(
      get.out,
      std::regex(
          R"(\n42 +online +(just now|\d+s ago) \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\) +2 +auto +-\n)")))
      << get.out;
  EXPECT_TRUE(std::regex_search(
      get.out, std::regex(R"(\n7 +offline +never +0 +auto +-\n)")))
      << get.out;
}

TEST_F(PresencectlTest, OfflineOfOneSessionThenAll) {
  ASSERT_EQ(Ctl({"heartbeat", "42", "--session=phone"}).code, 0);
  ASSERT_EQ(Ctl({"heartbeat", "42", "--session=laptop"}).code, 0);
  Subprocess::Exit one = Ctl({"offline", "42", "--session=laptop"});
  EXPECT_EQ(one.code, 0) << one.err;
  EXPECT_EQ(one.out,
            "42 still online (another session is live); ended 1 session\n");
  Subprocess::Exit all = Ctl({"offline", "42"});
  EXPECT_EQ(all.out, "42 offline; ended 1 session\n");
  Subprocess::Exit list = Ctl({"list"});
  EXPECT_NE(list.out.find("(0 online at "), std::string::npos) << list.out;
}

TEST_F(PresencectlTest, JsonIsTheServersAnswer) {
  ASSERT_EQ(Ctl({"heartbeat", "42"}).code, 0);
  Subprocess::Exit get = Ctl({"--json", "get", "42"});
  ASSERT_EQ(get.code, 0) << get.err;
  v1::GetPresenceResponse parsed;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(get.out, &parsed).ok())
      << get.out;
  ASSERT_EQ(parsed.users_size(), 1);
  EXPECT_EQ(parsed.users(0).user_id(), 42);
  EXPECT_EQ(parsed.users(0).status(), v1::STATUS_ONLINE);
  EXPECT_TRUE(parsed.has_server_time());

  ASSERT_EQ(Ctl({"heartbeat", "7"}).code, 0);
  Subprocess::Exit list = Ctl({"list", "--users=7,8", "--json"});
  v1::ListOnlineResponse listed;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(list.out, &listed).ok())
      << list.out;
  ASSERT_EQ(listed.online_users_size(), 1);
  EXPECT_EQ(listed.online_users(0), 7);
  EXPECT_EQ(listed.total_online(), 1);
}

// Long enough for a sanitizer build, short enough to fail a test whose
// condition never comes.
constexpr absl::Duration kWait = absl::Seconds(20);
// <ISO time>, as presencectl prints every time.
constexpr char kIso[] = R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)";

TEST_F(PresencectlTest, StatusSetsWhatTheUserChoseAndGetShowsIt) {
  ASSERT_EQ(Ctl({"heartbeat", "42"}).code, 0);
  Subprocess::Exit set = Ctl({"status", "42", "--dnd", "--until=90m",
                              "--text=Deep work", "--emoji=:headphones:"});
  ASSERT_EQ(set.code, 0) << set.err;
  EXPECT_TRUE(std::regex_match(
      set.out, std::regex(absl::StrCat("42 dnd; availability dnd until ", kIso,
                                       "; custom status :headphones: Deep "
                                       "work\n"))))
      << set.out;
  Subprocess::Exit get = Ctl({"get", "42"});
  ASSERT_EQ(get.code, 0) << get.err;
  EXPECT_TRUE(std::regex_search(
      get.out, std::regex(absl::StrCat(R"(\n42 +dnd +.+ +1 +dnd until )", kIso,
                                       R"( +:headphones: Deep work\n)"))))
      << get.out;

  // Invisible: offline to others, the truth to the user (--viewer).
  set = Ctl({"status", "42", "--invisible", "--clear"});
  ASSERT_EQ(set.code, 0) << set.err;
  EXPECT_EQ(set.out, "42 online; availability invisible; no custom status\n");
  get = Ctl({"get", "42"});
  EXPECT_TRUE(std::regex_search(
      get.out, std::regex(R"(\n42 +offline +.+ +0 +auto +-\n)")))
      << get.out;
  get = Ctl({"get", "42", "--viewer=42"});
  EXPECT_TRUE(std::regex_search(
      get.out, std::regex(R"(\n42 +online +.+ +1 +invisible +-\n)")))
      << get.out;

  // A custom status with an end given as a moment.
  set = Ctl({"status", "42", "--auto", "--text=Lunch",
             "--expires=2099-01-01T00:00:00+01:00"});
  ASSERT_EQ(set.code, 0) << set.err;
  EXPECT_EQ(set.out,
            "42 online; availability auto; custom status Lunch (until "
            "2098-12-31T23:00:00Z)\n");

  Subprocess::Exit json = Ctl({"--json", "status", "42", "--clear"});
  ASSERT_EQ(json.code, 0) << json.err;
  v1::SetStatusResponse parsed;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(json.out, &parsed).ok())
      << json.out;
  EXPECT_EQ(parsed.presence().user_id(), 42);
  EXPECT_EQ(parsed.presence().availability(), v1::AVAILABILITY_AUTO);
  EXPECT_FALSE(parsed.presence().has_custom_status());

  // What only the server checks comes back from it: exit 1.
  Subprocess::Exit bad =
      Ctl({"status", "42", "--text=" + std::string(101, 'x')});
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("INVALID_ARGUMENT"), std::string::npos) << bad.err;
  bad = Ctl({"status", "42", "--dnd", "--until=2001-01-01T00:00:00Z"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("INVALID_ARGUMENT"), std::string::npos) << bad.err;
}

// Away by --away_after, dnd by `status`: a rich watch says each; a plain
// one only online and offline.
TEST(PresencectlRichWatchTest, RichWatchPrintsStatusChanges) {
  testing::TempDir dir;
  testing::RunningPresenced server =
      testing::StartPresenced({"--db=" + dir.File("p.db"), "--away_after=1s"});
  ASSERT_FALSE(server.address.empty());
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {PRESENCECTL_PATH, "--server=" + server.address});
    return testing::Run(args);
  };
  ASSERT_EQ(ctl({"heartbeat", "7"}).code, 0);
  ASSERT_EQ(ctl({"status", "7", "--dnd"}).code, 0);
  Subprocess rich({PRESENCECTL_PATH, "--server=" + server.address, "watch",
                   "--rich", "--users=7,43"});
  Subprocess plain({PRESENCECTL_PATH, "--server=" + server.address, "watch",
                    "--users=7,43"});
  ASSERT_TRUE(rich.WaitForStdout(" snapshot: 1 online: 7(dnd)\n", kWait));
  ASSERT_TRUE(plain.WaitForStdout(" snapshot: 1 online: 7\n", kWait));
  ASSERT_EQ(ctl({"heartbeat", "43", "--idle"}).code, 0);
  ASSERT_TRUE(rich.WaitForStdout(" 43 online\n", kWait));
  ASSERT_TRUE(rich.WaitForStdout(" 43 away (activity)\n", kWait));
  ASSERT_EQ(ctl({"status", "43", "--dnd", "--text=Focus"}).code, 0);
  ASSERT_TRUE(
      rich.WaitForStdout(" 43 dnd (status set); custom status Focus\n", kWait));
  ASSERT_EQ(ctl({"offline", "43"}).code, 0);
  ASSERT_TRUE(rich.WaitForStdout(" 43 offline (logout)\n", kWait));
  std::optional<std::string> out =
      plain.WaitForStdout(" 43 offline (logout)\n", kWait);
  ASSERT_TRUE(out.has_value());
  EXPECT_TRUE(std::regex_match(
      *out, std::regex(absl::StrCat(kIso, " snapshot: 1 online: 7\n", kIso,
                                    " 43 online\n", kIso,
                                    " 43 offline \\(logout\\)\n"))))
      << *out;
  rich.Signal(SIGTERM);
  plain.Signal(SIGTERM);
  EXPECT_EQ(rich.Wait().code, 0);
  EXPECT_EQ(plain.Wait().code, 0);
}

TEST_F(PresencectlTest, ServerErrorsAreShownWithExitOne) {
  Subprocess::Exit r =
      Ctl({"heartbeat", "42", "--session=" + std::string(200, 'x')});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("session_id"), std::string::npos) << r.err;
}

TEST_F(PresencectlTest, WatchPrintsEachChangeAsItHappens) {
  ASSERT_EQ(Ctl({"heartbeat", "7"}).code, 0);
  Subprocess watch({PRESENCECTL_PATH, "--server=" + server_.address, "watch"});
  ASSERT_TRUE(
      watch.WaitForStdout(" snapshot: 1 online: 7\n", absl::Seconds(20)));
  ASSERT_EQ(Ctl({"heartbeat", "42"}).code, 0);
  ASSERT_TRUE(watch.WaitForStdout(" 42 online\n", absl::Seconds(20)));
  ASSERT_EQ(Ctl({"offline", "42"}).code, 0);
  std::optional<std::string> out =
      watch.WaitForStdout(" 42 offline (logout)\n", absl::Seconds(20));
  ASSERT_TRUE(out.has_value());
  // <ISO time> <user> <status>: one line per event, in order.
  EXPECT_TRUE(std::regex_search(
      *out, std::regex(
                R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ 42 online\n)"
                R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ 42 offline \(logout\)\n$)")))
      << *out;
  watch.Signal(SIGTERM);
  Subprocess::Exit exit = watch.Wait();
  EXPECT_EQ(exit.code, 0) << exit.err;
}

TEST_F(PresencectlTest, WatchJsonCarriesEpochAndSequence) {
  Subprocess watch(
      {PRESENCECTL_PATH, "--server=" + server_.address, "watch", "--json"});
  ASSERT_TRUE(watch.WaitForStdout("\"snapshot\"", absl::Seconds(20)));
  ASSERT_EQ(Ctl({"heartbeat", "42"}).code, 0);
  std::optional<std::string> out =
      watch.WaitForStdout("STATUS_ONLINE", absl::Seconds(20));
  ASSERT_TRUE(out.has_value());
  watch.Signal(SIGTERM);
  EXPECT_EQ(watch.Wait().code, 0);
  const std::string second = out->substr(out->find('\n') + 1);
  v1::WatchPresenceResponse change;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  second.substr(0, second.find('\n')), &change)
                  .ok())
      << *out;
  EXPECT_EQ(change.change().user_id(), 42);
  EXPECT_EQ(change.epoch().size(), 16u);
  EXPECT_GT(change.sequence(), 0u);
}

// A burst of changes (one BatchHeartbeat, published at once, which the
// watch's stream may take in batches) is still one line per change, in
// order, in text and in JSON; each JSON line is one change with its own
// sequence.
TEST_F(PresencectlTest, WatchPrintsOneLinePerChangeOfABurst) {
  Subprocess text({PRESENCECTL_PATH, "--server=" + server_.address, "watch"});
  Subprocess json(
      {PRESENCECTL_PATH, "--server=" + server_.address, "watch", "--json"});
  ASSERT_TRUE(text.WaitForStdout(" snapshot: 0 online\n", absl::Seconds(20)));
  ASSERT_TRUE(json.WaitForStdout("\"snapshot\"", absl::Seconds(20)));

  constexpr int kUsers = 200;
  constexpr int64_t kFirst = 1000;
  std::unique_ptr<v1::PresenceService::Stub> stub =
      v1::PresenceService::NewStub(grpc::CreateChannel(
          server_.address, grpc::InsecureChannelCredentials()));
  v1::BatchHeartbeatRequest burst;
  for (int i = 0; i < kUsers; ++i) {
    burst.add_heartbeats()->set_user_id(kFirst + i);
  }
  grpc::ClientContext context;
  v1::BatchHeartbeatResponse answer;
  ASSERT_TRUE(stub->BatchHeartbeat(&context, burst, &answer).ok());

  const int64_t last = kFirst + kUsers - 1;
  std::optional<std::string> text_out = text.WaitForStdout(
      absl::StrCat(" ", last, " online\n"), absl::Seconds(20));
  ASSERT_TRUE(text_out.has_value());
  // The last line may still be on its way when its user id shows.
  const std::string needle = absl::StrCat("\"userId\":\"", last, "\"");
  std::optional<std::string> json_out;
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  do {
    json_out = json.WaitForStdout(needle, absl::Seconds(1));
  } while ((!json_out.has_value() || json_out->back() != '\n') &&
           absl::Now() < give_up);
  ASSERT_TRUE(json_out.has_value());
  text.Signal(SIGTERM);
  json.Signal(SIGTERM);
  EXPECT_EQ(text.Wait().code, 0);
  EXPECT_EQ(json.Wait().code, 0);

  std::vector<std::string> lines =
      absl::StrSplit(*text_out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), kUsers + 1u) << *text_out;
  for (int i = 0; i < kUsers; ++i) {
    EXPECT_TRUE(std::regex_match(
        lines[i + 1],
        std::regex(absl::StrCat(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ )",
                                kFirst + i, " online"))))
        << lines[i + 1];
  }

  lines = absl::StrSplit(*json_out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), kUsers + 1u) << *json_out;
  v1::WatchPresenceResponse snapshot;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(lines[0], &snapshot).ok());
  for (int i = 0; i < kUsers; ++i) {
    v1::WatchPresenceResponse event;
    ASSERT_TRUE(
        google::protobuf::util::JsonStringToMessage(lines[i + 1], &event).ok())
        << lines[i + 1];
    ASSERT_TRUE(event.has_change()) << lines[i + 1];
    EXPECT_EQ(event.epoch(), snapshot.epoch());
    EXPECT_EQ(event.change().user_id(), kFirst + i);
    EXPECT_EQ(event.sequence(), snapshot.sequence() + 1 + i);
    EXPECT_EQ(event.change().sequence(), event.sequence());
  }
}

// End to end on the real clock: a 1 s window ends, and watch says so.
TEST(PresencectlWatchExpiryTest, ExpiryIsPrintedAboutAWindowAfterTheHeartbeat) {
  testing::TempDir dir;
  testing::RunningPresenced server =
      testing::StartPresenced({"--db=" + dir.File("p.db"), "--online_window=1s",
                               "--heartbeat_interval=500ms"});
  ASSERT_FALSE(server.address.empty());
  Subprocess watch(
      {PRESENCECTL_PATH, "--server=" + server.address, "watch", "--users=43"});
  ASSERT_TRUE(watch.WaitForStdout(" snapshot: 0 online\n", absl::Seconds(20)));
  ASSERT_EQ(testing::Run({PRESENCECTL_PATH, "--server=" + server.address,
                          "heartbeat", "43"})
                .code,
            0);
  ASSERT_TRUE(watch.WaitForStdout(" 43 online\n", absl::Seconds(20)));
  EXPECT_TRUE(
      watch.WaitForStdout(" 43 offline (expired)\n", absl::Seconds(20)));
  watch.Signal(SIGINT);
  EXPECT_EQ(watch.Wait().code, 0);
}

TEST(PresencectlNoServerTest, UnreachableServerIsExitOneWithAClearMessage) {
  // Port 1 on loopback: nothing listens there, connections are refused.
  Subprocess::Exit r = testing::Run(
      {PRESENCECTL_PATH, "--server=127.0.0.1:1", "--timeout=3s", "list"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cannot reach presenced at 127.0.0.1:1"),
            std::string::npos)
      << r.err;
}

TEST(PresencectlUsageTest, BadUsageIsExitTwo) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {},
           {"wave", "42"},
           {"heartbeat"},
           {"heartbeat", "forty-two"},
           {"heartbeat", "0"},
           {"get"},
           {"list", "42"},
           {"list", "--users=1,x"},
           {"shard"},
           {"reshard", "42"},
           {"status", "42"},
           {"status", "--dnd"},
           {"status", "1", "2", "--dnd"},
           {"status", "42", "--dnd", "--invisible"},
           {"status", "42", "--auto", "--until=1h"},
           {"status", "42", "--dnd", "--until=soon"},
           {"status", "42", "--text=x", "--clear"},
           {"status", "42", "--expires=1h"},
           {"get", "42", "--viewer=-1"},
           // not a shard map
           {"reshard"}}) {
    std::vector<std::string> argv = {PRESENCECTL_PATH, "--server=127.0.0.1:1"};
    argv.insert(argv.end(), args.begin(), args.end());
    Subprocess::Exit r = testing::Run(argv);
    EXPECT_EQ(r.code, 2) << r.err;
    EXPECT_NE(r.err.find("presencectl: "), std::string::npos) << r.err;
  }
}

// Needs no server: the owner is the hash's.
TEST(PresencectlShardTest, ShardPrintsEachUsersOwnerAndAddress) {
  const std::string spec = "a=127.0.0.1:1,b=127.0.0.1:2,c=127.0.0.1:3";
  Subprocess::Exit r = testing::Run(
      {PRESENCECTL_PATH, "--server=" + spec, "shard", "1", "2", "3", "42"});
  ASSERT_EQ(r.code, 0) << r.err;
  const ShardMap map = *ShardMap::Parse(spec);
  std::string expected;
  for (int64_t user : {1, 2, 3, 42}) {
    const Shard& owner = map.shard(map.OwnerIndex(user));
    absl::StrAppend(&expected, user, "\t", owner.name, "\t", owner.target,
                    "\n");
  }
  EXPECT_EQ(r.out, expected);

  r = testing::Run({PRESENCECTL_PATH, "--server=127.0.0.1:9", "shard", "7"});
  EXPECT_EQ(r.out, "7\t(unsharded)\t127.0.0.1:9\n");
  r = testing::Run({PRESENCECTL_PATH, "--server=a=h:1,a=h:2", "shard", "7"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("named twice"), std::string::npos) << r.err;
}

// Two real shards behind one --server: each call reaches its user's owner.
TEST(PresencectlShardTest, CallsGoToEachUsersShardAndListingsMerge) {
  testing::TempDir dir;
  std::vector<testing::RunningPresenced> shards;
  std::string spec;
  for (const char* name : {"s0", "s1"}) {
    shards.push_back(testing::StartPresenced(
        {absl::StrCat("--db=", dir.File(name), ".db"),
         absl::StrCat("--shard=", name), "--shards=s0,s1"}));
    ASSERT_FALSE(shards.back().address.empty());
    absl::StrAppend(&spec, spec.empty() ? "" : ",", name, "=",
                    shards.back().address);
  }
  const ShardMap map = *ShardMap::Parse(spec);
  std::vector<int64_t> users;  // two of each shard
  for (int64_t id = 1; users.size() < 4; ++id) {
    const size_t of_shard = std::count_if(
        users.begin(), users.end(),
        [&](int64_t u) { return map.OwnerIndex(u) == map.OwnerIndex(id); });
    if (of_shard < 2) users.push_back(id);
  }
  std::sort(users.begin(), users.end());
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {PRESENCECTL_PATH, "--server=" + spec});
    return testing::Run(args);
  };
  for (int64_t user : users) {
    Subprocess::Exit hb = ctl({"heartbeat", absl::StrCat(user)});
    ASSERT_EQ(hb.code, 0) << hb.err;
  }
  Subprocess::Exit list = ctl({"list"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_EQ(list.out.substr(0, list.out.find('(')),
            absl::StrCat(absl::StrJoin(users, "\n"), "\n"))
      << list.out;
  EXPECT_NE(list.out.find("(4 online at "), std::string::npos) << list.out;

  // Straight to one shard, about the other's user: refused, owner named.
  const int64_t theirs =
      *std::find_if(users.begin(), users.end(),
                    [&](int64_t u) { return map.OwnerIndex(u) == 1; });
  Subprocess::Exit direct =
      testing::Run({PRESENCECTL_PATH, "--server=" + shards[0].address, "get",
                    absl::StrCat(theirs)});
  EXPECT_EQ(direct.code, 1);
  EXPECT_NE(direct.err.find(absl::StrCat("FAILED_PRECONDITION: user ", theirs,
                                         " belongs to shard s1")),
            std::string::npos)
      << direct.err;

  Subprocess::Exit reshard = ctl({"reshard"});
  EXPECT_EQ(reshard.code, 0) << reshard.err;
  EXPECT_EQ(reshard.out, "0 users handed over in all\n");
}

}  // namespace
}  // namespace presence
