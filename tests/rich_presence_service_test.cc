// Rich presence through gRPC (docs/rich-presence.md): SetStatus and its
// validation, GetPresence's views, and what rich and classic watchers get,
// on a real PresenceServer on loopback with a fake clock. The registry's
// rules are in presence_registry_test; this checks the wire.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "presence/v1/presence.grpc.pb.h"
#include "service/clock.h"
#include "service/presence_server.h"
#include "service/proto_time.h"
#include "tests/test_util.h"
#include "tests/watch_stream.h"

namespace presence {
namespace {

using ::testing::HasSubstr;

class RichPresenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.db_path = dir_.File("presence.db");
    options.clock = &clock_;
    options.away_after = absl::Minutes(10);
    absl::StatusOr<std::unique_ptr<PresenceServer>> server =
        PresenceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::PresenceService::NewStub(grpc::CreateChannel(
        server_->address(), grpc::InsecureChannelCredentials()));
  }

  grpc::Status Heartbeat(int64_t user, bool idle = false) {
    v1::HeartbeatRequest request;
    request.set_user_id(user);
    request.set_idle(idle);
    v1::HeartbeatResponse response;
    grpc::ClientContext context;
    return stub_->Heartbeat(&context, request, &response);
  }

  grpc::Status SetStatus(const v1::SetStatusRequest& request,
                         v1::SetStatusResponse* response = nullptr) {
    v1::SetStatusResponse ignored;
    grpc::ClientContext context;
    return stub_->SetStatus(&context, request,
                            response != nullptr ? response : &ignored);
  }

  v1::UserPresence Get(int64_t user, bool rich, int64_t viewer = 0) {
    v1::GetPresenceRequest request;
    request.add_user_ids(user);
    request.set_rich_status(rich);
    request.set_viewer_user_id(viewer);
    v1::GetPresenceResponse response;
    grpc::ClientContext context;
    grpc::Status s = stub_->GetPresence(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.users_size() == 1 ? response.users(0) : v1::UserPresence();
  }

  std::unique_ptr<testing::WatchStream> Watch(bool rich) {
    v1::WatchPresenceRequest request;
    request.set_send_snapshot(true);
    request.set_rich_status(rich);
    return testing::StartWatch(*stub_, request);
  }

  static v1::SetStatusRequest Dnd(int64_t user) {
    v1::SetStatusRequest request;
    request.set_user_id(user);
    request.set_availability(v1::AVAILABILITY_DND);
    return request;
  }

  FakeClock clock_;
  testing::TempDir dir_;
  std::unique_ptr<PresenceServer> server_;
  std::unique_ptr<v1::PresenceService::Stub> stub_;
};

TEST_F(RichPresenceTest, BadStatusRequestsAreRefusedWithTheFieldNamed) {
  struct Case {
    const char* what;
    std::function<void(v1::SetStatusRequest*)> edit;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"nothing set", [](v1::SetStatusRequest*) {}, "sets nothing"},
      {"an end on AUTO",
       [](v1::SetStatusRequest* r) {
         r->set_availability(v1::AVAILABILITY_AUTO);
         r->mutable_availability_for()->set_seconds(60);
       },
       "AUTO has no end"},
      {"an unknown availability",
       [](v1::SetStatusRequest* r) {
         r->set_availability(static_cast<v1::Availability>(9));
       },
       "availability must be"},
      {"a negative duration",
       [](v1::SetStatusRequest* r) {
         r->set_availability(v1::AVAILABILITY_DND);
         r->mutable_availability_for()->set_seconds(-5);
       },
       "availability_for must be positive"},
      {"an end in the past",
       [&](v1::SetStatusRequest* r) {
         r->set_availability(v1::AVAILABILITY_DND);
         *r->mutable_availability_until() =
             ToProto(clock_.Now() - absl::Seconds(1));
       },
       "is not after the server's time"},
      {"101 characters",
       [](v1::SetStatusRequest* r) {
         r->mutable_custom_status()->set_text(std::string(101, 'x'));
       },
       "at most 100 characters, got 101"},
      {"two lines",
       [](v1::SetStatusRequest* r) {
         r->mutable_custom_status()->set_text("a\nb");
       },
       "one line"},
      {"two emoji",
       [](v1::SetStatusRequest* r) {
         r->mutable_custom_status()->set_emoji("\U0001F600\U0001F600");
       },
       "one emoji"},
      {"a letter for an emoji",
       [](v1::SetStatusRequest* r) {
         r->mutable_custom_status()->set_emoji("a");
       },
       "one emoji"},
      {"an upper-case short code",
       [](v1::SetStatusRequest* r) {
         r->mutable_custom_status()->set_emoji(":Coffee:");
       },
       "short code"},
      {"an empty custom status",
       [](v1::SetStatusRequest* r) { r->mutable_custom_status(); },
       "needs a text or an emoji"},
      {"set and clear",
       [](v1::SetStatusRequest* r) {
         r->mutable_custom_status()->set_text("x");
         r->set_clear_custom_status(true);
       },
       "exclude each other"},
  };
  for (const Case& c : cases) {
    v1::SetStatusRequest request;
    request.set_user_id(42);
    c.edit(&request);
    grpc::Status s = SetStatus(request);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.what;
    EXPECT_THAT(s.error_message(), HasSubstr(c.message)) << c.what;
  }
  v1::SetStatusRequest no_user = Dnd(0);
  EXPECT_EQ(SetStatus(no_user).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // None of them changed anything.
  EXPECT_EQ(Get(42, true, 42).availability(), v1::AVAILABILITY_AUTO);
}

TEST_F(RichPresenceTest, EmojiInEveryFormThatIsOneCharacterIsTaken) {
  for (const char* emoji :
       {":coffee:", ":+1:", "\u2615",  // hot beverage
        "\U0001F44D\U0001F3FD",        // thumbs up, medium skin tone
        "\U0001F1EB\U0001F1F7",        // a flag: two regional indicators
        "\U0001F468\u200D\U0001F469\u200D\U0001F467",  // a ZWJ family
        "1\uFE0F\u20E3"}) {                            // a keycap
    v1::SetStatusRequest request;
    request.set_user_id(42);
    request.mutable_custom_status()->set_emoji(emoji);
    grpc::Status s = SetStatus(request);
    EXPECT_TRUE(s.ok()) << emoji << ": " << s.error_message();
  }
  v1::SetStatusRequest request;
  request.set_user_id(42);
  request.mutable_custom_status()->set_text(std::string(100, 'x'));
  EXPECT_TRUE(SetStatus(request).ok());
  // Format characters belong in text: a ZWJ emoji, right-to-left marks.
  request.mutable_custom_status()->set_text(
      "\U0001F469\u200D\U0001F4BB coding \u200F");
  EXPECT_TRUE(SetStatus(request).ok());
  // 100 characters of several bytes each: characters are counted.
  std::string accented;
  for (int i = 0; i < 100; ++i) accented += "\u00e9";
  request.mutable_custom_status()->set_text(accented);
  EXPECT_TRUE(SetStatus(request).ok());
}

TEST_F(RichPresenceTest, ClassicCallersSeeOnlineAndOfflineOnly) {
  ASSERT_TRUE(Heartbeat(1).ok());  // will be DND
  ASSERT_TRUE(Heartbeat(2).ok());  // will be invisible
  ASSERT_TRUE(Heartbeat(3).ok());  // will be away
  auto classic = Watch(false);
  auto rich = Watch(true);
  ASSERT_TRUE(classic->Next().has_snapshot());
  v1::WatchPresenceResponse snapshot = rich->Next();
  ASSERT_EQ(snapshot.snapshot().users_size(), 3);
  EXPECT_EQ(snapshot.snapshot().users(0).status(), v1::STATUS_ONLINE);

  ASSERT_TRUE(SetStatus(Dnd(1)).ok());
  v1::SetStatusRequest invisible;
  invisible.set_user_id(2);
  invisible.set_availability(v1::AVAILABILITY_INVISIBLE);
  ASSERT_TRUE(SetStatus(invisible).ok());
  // Heartbeats every 2 minutes (the window is 5); user 3's say idle, and
  // after 10 minutes user 3 is AWAY.
  const absl::Time active = clock_.Now();
  for (int i = 0; i < 5; ++i) {
    clock_.Advance(absl::Minutes(2));
    for (int64_t user : {1, 2, 3}) ASSERT_TRUE(Heartbeat(user, user == 3).ok());
  }

  // The classic stream: user 2 leaves as a logout would; nothing else.
  v1::WatchPresenceResponse gone = classic->Next();
  EXPECT_EQ(gone.change().user_id(), 2);
  EXPECT_EQ(gone.change().status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(gone.change().reason(), v1::REASON_MARK_OFFLINE);
  // The rich stream: DND, invisible (as offline), then away, in order.
  v1::WatchPresenceResponse m = rich->Next();
  EXPECT_EQ(m.change().user_id(), 1);
  EXPECT_EQ(m.change().status(), v1::STATUS_DND);
  EXPECT_EQ(m.change().reason(), v1::REASON_STATUS_SET);
  m = rich->Next();
  EXPECT_EQ(m.change().user_id(), 2);
  EXPECT_EQ(m.change().status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(m.change().reason(), v1::REASON_STATUS_SET);
  m = rich->Next();
  EXPECT_EQ(m.change().user_id(), 3);
  EXPECT_EQ(m.change().status(), v1::STATUS_AWAY);
  EXPECT_EQ(m.change().reason(), v1::REASON_ACTIVITY);
  EXPECT_EQ(FromProto(m.change().at()), active + absl::Minutes(10));

  // Reads: classic callers see ONLINE for AWAY and DND; rich ones see them.
  EXPECT_EQ(Get(1, false).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(Get(1, true).status(), v1::STATUS_DND);
  EXPECT_EQ(Get(3, false).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(Get(3, true).status(), v1::STATUS_AWAY);
  EXPECT_EQ(Get(2, true).status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(Get(2, true).availability(), v1::AVAILABILITY_AUTO);
  // The invisible user's own view.
  v1::UserPresence self = Get(2, true, /*viewer=*/2);
  EXPECT_EQ(self.status(), v1::STATUS_ONLINE);
  EXPECT_EQ(self.availability(), v1::AVAILABILITY_INVISIBLE);
  EXPECT_EQ(self.live_sessions(), 1);
  // ListOnline: ONLINE, AWAY and DND, never INVISIBLE.
  v1::ListOnlineRequest list;
  v1::ListOnlineResponse online;
  grpc::ClientContext context;
  ASSERT_TRUE(stub_->ListOnline(&context, list, &online).ok());
  EXPECT_THAT(online.online_users(), ::testing::ElementsAre(1, 3));
}

TEST_F(RichPresenceTest, CustomStatusTravelsWithItsExpiry) {
  ASSERT_TRUE(Heartbeat(42).ok());
  auto rich = Watch(true);
  ASSERT_TRUE(rich->Next().has_snapshot());
  v1::SetStatusRequest request;
  request.set_user_id(42);
  request.mutable_custom_status()->set_text("Lunch");
  request.mutable_custom_status()->set_emoji(":fork_and_knife:");
  request.mutable_custom_status_for()->set_seconds(3 * 60);
  v1::SetStatusResponse response;
  ASSERT_TRUE(SetStatus(request, &response).ok());
  EXPECT_EQ(response.presence().custom_status().text(), "Lunch");
  EXPECT_EQ(FromProto(response.presence().custom_status().expires_at()),
            clock_.Now() + absl::Minutes(3));
  v1::WatchPresenceResponse set = rich->Next();
  EXPECT_EQ(set.change().custom_status().emoji(), ":fork_and_knife:");
  EXPECT_EQ(Get(42, false).custom_status().text(), "Lunch");

  clock_.Advance(absl::Minutes(3));  // within the window: still online
  // The sweeper clears it on time (it wakes at least every 100 ms).
  v1::WatchPresenceResponse cleared = rich->Next();
  EXPECT_EQ(cleared.change().reason(), v1::REASON_STATUS_EXPIRED);
  EXPECT_FALSE(cleared.change().has_custom_status());
  EXPECT_FALSE(Get(42, true, 42).has_custom_status());
}

TEST_F(RichPresenceTest, StatusesSurviveARestart) {
  v1::SetStatusRequest request = Dnd(42);
  request.mutable_availability_for()->set_seconds(3600);
  request.mutable_custom_status()->set_text("Focus");
  ASSERT_TRUE(SetStatus(request).ok());  // answered once durable
  ASSERT_TRUE(Heartbeat(42).ok());
  server_.reset();
  SetUp();
  v1::UserPresence after = Get(42, true);
  EXPECT_EQ(after.status(), v1::STATUS_DND);
  EXPECT_EQ(FromProto(after.availability_until()),
            clock_.Now() + absl::Hours(1));
  EXPECT_EQ(after.custom_status().text(), "Focus");
}

}  // namespace
}  // namespace presence
