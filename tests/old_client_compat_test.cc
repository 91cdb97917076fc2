// A client built before rich presence against today's presenced. This
// binary links the C++ generated from the proto as it was then
// (tests/testdata/before_rich, commit 495496e), and neither today's
// generated code nor presence::client: it is what a deployed client is.
// The state it reads is set by today's presencectl (a separate process that
// speaks the new API): away by --away_after, dnd and invisible by
// `presencectl status`. The old client must see only what it knows: ONLINE
// for an away or dnd user, OFFLINE for an invisible one, online/offline
// changes with the reasons it knows, and the new fields as unknown fields
// that parse without error and survive re-serialization.

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "google/protobuf/unknown_field_set.h"
#include "gtest/gtest.h"
#include "presence/v1/presence.grpc.pb.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using testing::Subprocess;

constexpr absl::Duration kWait = absl::Seconds(20);

// The field numbers of the unknown fields of `message`.
std::vector<int> UnknownFieldNumbers(const google::protobuf::Message& message) {
  const google::protobuf::UnknownFieldSet& unknown =
      message.GetReflection()->GetUnknownFields(message);
  std::vector<int> numbers;
  for (int i = 0; i < unknown.field_count(); ++i) {
    numbers.push_back(unknown.field(i).number());
  }
  return numbers;
}

// An old client's WatchPresence stream, read on a thread of its own: every
// change, in order.
class OldWatch {
 public:
  explicit OldWatch(v1::PresenceService::Stub& stub) {
    v1::WatchPresenceRequest request;
    request.set_send_snapshot(true);
    reader_ = stub.WatchPresence(&context_, request);
    thread_ = std::thread([this] { Read(); });
  }
  ~OldWatch() {
    context_.TryCancel();
    thread_.join();
  }

  // Waits until `count` changes have come; false after kWait, or if the
  // stream ended first.
  bool WaitForChanges(size_t count) {
    absl::MutexLock lock(&mu_);
    auto seen = [&] { return changes_.size() >= count || ended_; };
    mu_.AwaitWithTimeout(absl::Condition(&seen), kWait);
    return changes_.size() >= count;
  }

  // "USER STATUS REASON" of each change so far, e.g. "41 1 1".
  std::vector<std::string> Changes() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const v1::PresenceChange& change : changes_) {
      out.push_back(absl::StrCat(change.user_id(), " ", change.status(), " ",
                                 change.reason()));
    }
    return out;
  }

  // Unknown fields in any message (the old client knows every field an old
  // stream has).
  bool saw_unknown_fields() {
    absl::MutexLock lock(&mu_);
    return saw_unknown_;
  }

 private:
  void Read() {
    v1::WatchPresenceResponse message;
    while (reader_->Read(&message)) {
      absl::MutexLock lock(&mu_);
      if (!UnknownFieldNumbers(message).empty()) saw_unknown_ = true;
      if (message.has_change()) changes_.push_back(message.change());
      for (const v1::PresenceChange& change : message.changes().changes()) {
        if (!UnknownFieldNumbers(change).empty()) saw_unknown_ = true;
        changes_.push_back(change);
      }
      if (message.has_change() &&
          !UnknownFieldNumbers(message.change()).empty()) {
        saw_unknown_ = true;
      }
    }
    reader_->Finish();
    absl::MutexLock lock(&mu_);
    ended_ = true;
  }

  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::WatchPresenceResponse>> reader_;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<v1::PresenceChange> changes_ ABSL_GUARDED_BY(mu_);
  bool saw_unknown_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

class OldClientCompatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = testing::StartPresenced(
        {"--db=" + dir_.File("p.db"), "--away_after=1s"});
    ASSERT_FALSE(server_.address.empty());
    stub_ = v1::PresenceService::NewStub(grpc::CreateChannel(
        server_.address, grpc::InsecureChannelCredentials()));
  }

  // Today's presencectl, speaking the new API.
  void Ctl(std::vector<std::string> args) {
    args.insert(args.begin(),
                {PRESENCECTL_PATH, "--server=" + server_.address});
    Subprocess::Exit exit = testing::Run(args);
    ASSERT_EQ(exit.code, 0) << absl::StrJoin(args, " ") << ": " << exit.err;
  }

  void OldHeartbeat(int64_t user) {
    grpc::ClientContext context;
    v1::HeartbeatRequest request;
    request.set_user_id(user);
    v1::HeartbeatResponse response;
    grpc::Status status = stub_->Heartbeat(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_TRUE(response.became_online());
    EXPECT_TRUE(UnknownFieldNumbers(response).empty());
  }

  v1::GetPresenceResponse OldGet(const std::vector<int64_t>& users) {
    grpc::ClientContext context;
    v1::GetPresenceRequest request;
    request.mutable_user_ids()->Add(users.begin(), users.end());
    v1::GetPresenceResponse response;
    grpc::Status status = stub_->GetPresence(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  std::vector<int64_t> OldList() {
    grpc::ClientContext context;
    v1::ListOnlineRequest request;
    v1::ListOnlineResponse response;
    grpc::Status status = stub_->ListOnline(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.online_users().begin(), response.online_users().end()};
  }

  testing::TempDir dir_;
  testing::RunningPresenced server_;
  std::unique_ptr<v1::PresenceService::Stub> stub_;
};

TEST_F(OldClientCompatTest, AwayAndDndAreOnlineInvisibleIsOfflineAndNoMore) {
  constexpr int64_t kAway = 41, kDnd = 42, kInvisible = 43;
  OldWatch old_watch(*stub_);
  // Today's rich view, to know when the away transition has happened.
  Subprocess rich({PRESENCECTL_PATH, "--server=" + server_.address, "watch",
                   "--rich", absl::StrCat("--users=", kAway)});
  ASSERT_TRUE(rich.WaitForStdout(" snapshot: 0 online", kWait));

  for (int64_t user : {kAway, kDnd, kInvisible}) {
    ASSERT_NO_FATAL_FAILURE(OldHeartbeat(user));
  }
  ASSERT_NO_FATAL_FAILURE(Ctl({"status", absl::StrCat(kDnd), "--dnd",
                               "--text=Focus", "--emoji=:headphones:"}));
  ASSERT_NO_FATAL_FAILURE(Ctl(
      {"status", absl::StrCat(kInvisible), "--invisible", "--text=Hidden"}));
  // No heartbeat for --away_after (1 s): away, on the sweeper's clock.
  ASSERT_TRUE(
      rich.WaitForStdout(absl::StrCat(" ", kAway, " away (activity)"), kWait));

  const v1::GetPresenceResponse got = OldGet({kAway, kDnd, kInvisible});
  ASSERT_EQ(got.users_size(), 3);
  EXPECT_EQ(got.users(0).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(got.users(1).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(got.users(2).status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(got.users(0).live_sessions(), 1);
  EXPECT_EQ(got.users(1).live_sessions(), 1);
  // The dnd user's availability (6) and custom status (8) are fields the
  // old client does not know: kept as unknown fields, and written back out
  // when the message is (a proxy that re-serializes loses nothing).
  const std::vector<int> unknown = UnknownFieldNumbers(got.users(1));
  EXPECT_NE(std::find(unknown.begin(), unknown.end(), 6), unknown.end());
  EXPECT_NE(std::find(unknown.begin(), unknown.end(), 8), unknown.end());
  EXPECT_TRUE(absl::StrContains(got.users(1).SerializeAsString(), "Focus"));
  // The invisible user's custom status is hidden from others.
  EXPECT_FALSE(absl::StrContains(got.SerializeAsString(), "Hidden"));

  // ListOnline's "online" is ONLINE, AWAY or DND, never INVISIBLE.
  EXPECT_EQ(OldList(), (std::vector<int64_t>{kAway, kDnd}));

  // Visible again: to the old client, a heartbeat. It comes after the away
  // and dnd transitions, so the old stream's whole story is known now.
  ASSERT_NO_FATAL_FAILURE(Ctl({"status", absl::StrCat(kInvisible), "--auto"}));
  // Any change the old stream should not have had comes before that one:
  // the fifth change is the last expected.
  ASSERT_TRUE(old_watch.WaitForChanges(5))
      << absl::StrJoin(old_watch.Changes(), ", ");
  const std::vector<std::string> changes = old_watch.Changes();
  // USER STATUS REASON, with ONLINE = 1, OFFLINE = 2, HEARTBEAT = 1,
  // MARK_OFFLINE = 2: nothing of away, dnd or custom status.
  EXPECT_EQ(changes, (std::vector<std::string>{"41 1 1", "42 1 1", "43 1 1",
                                               "43 2 2", "43 1 1"}));
  EXPECT_FALSE(old_watch.saw_unknown_fields());
  EXPECT_EQ(OldGet({kInvisible}).users(0).status(), v1::STATUS_ONLINE);

  rich.Signal(SIGTERM);
  EXPECT_EQ(rich.Wait().code, 0);
}

}  // namespace
}  // namespace presence
