// presence::Client and presence::Watcher with rich presence, against a real
// presenced on loopback (--away_after=1s, so that away comes within the
// test): SetStatus and its own view, GetPresence as others and as the user
// see it, idle heartbeats, a rich Watcher next to a plain one, and the
// asynchronous forms.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "presence/client.h"
#include "presence/watcher.h"
#include "service/proto_time.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using testing::Await;

constexpr absl::Duration kWait = absl::Seconds(20);

v1::GetPresenceRequest Lookup(std::vector<int64_t> users, int64_t viewer = 0) {
  v1::GetPresenceRequest request;
  request.mutable_user_ids()->Add(users.begin(), users.end());
  request.set_viewer_user_id(viewer);
  request.set_rich_status(true);
  return request;
}

// What a Watcher delivered: the latest snapshot and every change since.
class Stream {
 public:
  WatcherCallbacks Callbacks() {
    WatcherCallbacks callbacks;
    callbacks.on_snapshot = [this](const v1::Snapshot& snapshot) {
      absl::MutexLock lock(&mu_);
      snapshot_ = snapshot;
      ++snapshots_;
    };
    callbacks.on_change = [this](const v1::PresenceChange& change) {
      absl::MutexLock lock(&mu_);
      changes_.push_back(change);
    };
    return callbacks;
  }

  // Waits for a snapshot; a copy of it.
  std::optional<v1::Snapshot> WaitForSnapshot() {
    absl::MutexLock lock(&mu_);
    auto seen = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return snapshots_ > 0;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&seen), kWait)) {
      return std::nullopt;
    }
    return snapshot_;
  }

  // Waits for a change of `user` for `reason` (to `status`, if given; an
  // online user may turn away at any moment, so some steps take either);
  // the first such change, or a failure after kWait listing what came.
  std::optional<v1::PresenceChange> WaitFor(int64_t user,
                                            std::optional<v1::Status> status,
                                            v1::Reason reason) {
    absl::MutexLock lock(&mu_);
    const v1::PresenceChange* found = nullptr;
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const v1::PresenceChange& change : changes_) {
        if (change.user_id() == user && change.reason() == reason &&
            (!status.has_value() || change.status() == *status)) {
          found = &change;
          return true;
        }
      }
      return false;
    };
    if (mu_.AwaitWithTimeout(absl::Condition(&seen), kWait)) return *found;
    ADD_FAILURE() << "no change of " << user << " to "
                  << (status.has_value() ? v1::Status_Name(*status) : "any")
                  << " for " << v1::Reason_Name(reason)
                  << "; came: " << StoryLocked(0);
    return std::nullopt;
  }

  // "STATUS/REASON" of each change of `user` (0: of everyone, with ids).
  std::string Story(int64_t user) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return StoryLocked(user);
  }

 private:
  std::string StoryLocked(int64_t user) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::string> out;
    for (const v1::PresenceChange& change : changes_) {
      if (user != 0 && change.user_id() != user) continue;
      out.push_back(
          absl::StrCat(user == 0 ? absl::StrCat(change.user_id(), " ") : "",
                       v1::Status_Name(change.status()), "/",
                       v1::Reason_Name(change.reason())));
    }
    return absl::StrJoin(out, ", ");
  }

  absl::Mutex mu_;
  v1::Snapshot snapshot_ ABSL_GUARDED_BY(mu_);
  int snapshots_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::PresenceChange> changes_ ABSL_GUARDED_BY(mu_);
};

class RichClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = testing::StartPresenced(
        {"--db=" + dir_.File("p.db"), "--away_after=1s"});
    ASSERT_FALSE(server_.address.empty());
    ClientOptions options;
    options.target = server_.address;
    client_ = std::make_unique<Client>(options);
  }

  v1::UserPresence Get(int64_t user, int64_t viewer = 0) {
    absl::StatusOr<v1::GetPresenceResponse> got =
        client_->GetPresence(Lookup({user}, viewer));
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok() || got->users_size() != 1) return {};
    return got->users(0);
  }

  testing::TempDir dir_;
  testing::RunningPresenced server_;
  std::unique_ptr<Client> client_;
};

TEST_F(RichClientTest, SetStatusIsSeenByOthersAndTheUserEachTheirWay) {
  ASSERT_TRUE(client_->Heartbeat(42).ok());
  v1::SetStatusRequest dnd;
  dnd.set_user_id(42);
  dnd.set_availability(v1::AVAILABILITY_DND);
  *dnd.mutable_availability_for() = ToProto(absl::Hours(1));
  dnd.mutable_custom_status()->set_text("Focus");
  dnd.mutable_custom_status()->set_emoji(":headphones:");
  absl::StatusOr<v1::SetStatusResponse> set = client_->SetStatus(dnd);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->presence().user_id(), 42);
  EXPECT_EQ(set->presence().status(), v1::STATUS_DND);
  EXPECT_EQ(set->presence().availability(), v1::AVAILABILITY_DND);
  // The end is the server's now plus the duration, on the server's clock.
  EXPECT_EQ(FromProto(set->presence().availability_until()),
            FromProto(set->server_time()) + absl::Hours(1));
  EXPECT_EQ(set->presence().custom_status().text(), "Focus");
  EXPECT_EQ(set->presence().custom_status().emoji(), ":headphones:");

  // Without rich_status, as callers older than it: online, the rest filled.
  absl::StatusOr<v1::GetPresenceResponse> plain = client_->GetPresence({42, 7});
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->users(0).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(plain->users(0).availability(), v1::AVAILABILITY_DND);
  EXPECT_EQ(plain->users(1).status(), v1::STATUS_OFFLINE);
  v1::UserPresence seen = Get(42);
  EXPECT_EQ(seen.status(), v1::STATUS_DND);
  EXPECT_EQ(seen.custom_status().text(), "Focus");

  // Invisible: offline to others, with nothing that says otherwise; the
  // truth to the user.
  v1::SetStatusRequest invisible;
  invisible.set_user_id(42);
  invisible.set_availability(v1::AVAILABILITY_INVISIBLE);
  set = client_->SetStatus(invisible);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->presence().status(), v1::STATUS_ONLINE);
  EXPECT_EQ(set->presence().availability(), v1::AVAILABILITY_INVISIBLE);
  seen = Get(42);
  EXPECT_EQ(seen.status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(seen.availability(), v1::AVAILABILITY_AUTO);
  EXPECT_FALSE(seen.has_availability_until());
  EXPECT_FALSE(seen.has_custom_status());
  EXPECT_FALSE(seen.has_online_until());
  EXPECT_EQ(seen.live_sessions(), 0);
  const v1::UserPresence own = Get(42, /*viewer=*/42);
  EXPECT_EQ(own.status(), v1::STATUS_ONLINE);
  EXPECT_EQ(own.availability(), v1::AVAILABILITY_INVISIBLE);
  EXPECT_EQ(own.custom_status().text(), "Focus");
  EXPECT_EQ(own.live_sessions(), 1);
  // Another viewer is "others".
  EXPECT_EQ(Get(42, /*viewer=*/7).status(), v1::STATUS_OFFLINE);
  absl::StatusOr<std::vector<int64_t>> online = client_->ListAllOnline();
  ASSERT_TRUE(online.ok()) << online.status();
  EXPECT_TRUE(online->empty());

  // Back to auto, without the custom status.
  v1::SetStatusRequest back;
  back.set_user_id(42);
  back.set_availability(v1::AVAILABILITY_AUTO);
  back.set_clear_custom_status(true);
  set = client_->SetStatus(back);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_FALSE(set->presence().has_custom_status());
  seen = Get(42);
  EXPECT_EQ(seen.status(), v1::STATUS_ONLINE);
  EXPECT_EQ(seen.availability(), v1::AVAILABILITY_AUTO);
  EXPECT_FALSE(seen.has_custom_status());

  // The server's checks come back as INVALID_ARGUMENT.
  v1::SetStatusRequest nothing;
  nothing.set_user_id(42);
  EXPECT_EQ(client_->SetStatus(nothing).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::SetStatusRequest too_long;
  too_long.set_user_id(42);
  too_long.mutable_custom_status()->set_text(std::string(101, 'x'));
  EXPECT_EQ(client_->SetStatus(too_long).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RichClientTest, IdleHeartbeatsLeaveTheUserAwayAndActivityEndsIt) {
  Stream rich;
  WatcherOptions options;
  options.rich_status = true;
  Watcher rich_watcher(*client_, options, rich.Callbacks());
  Stream plain;
  Watcher plain_watcher(*client_, WatcherOptions{}, plain.Callbacks());
  ASSERT_TRUE(rich.WaitForSnapshot().has_value());
  ASSERT_TRUE(plain.WaitForSnapshot().has_value());

  // The first heartbeat is activity, whatever it says.
  absl::StatusOr<v1::HeartbeatResponse> beat =
      client_->Heartbeat(42, "tab", /*idle=*/true);
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_TRUE(beat->became_online());
  ASSERT_TRUE(rich.WaitFor(42, v1::STATUS_ONLINE, v1::REASON_HEARTBEAT));
  // Away once --away_after has passed, with no heartbeat: the sweeper's.
  ASSERT_TRUE(rich.WaitFor(42, v1::STATUS_AWAY, v1::REASON_ACTIVITY));
  EXPECT_EQ(Get(42).status(), v1::STATUS_AWAY);
  // An idle heartbeat keeps the session alive, not active; a plain one is
  // activity.
  ASSERT_TRUE(client_->Heartbeat(42, "tab", /*idle=*/true).ok());
  EXPECT_EQ(Get(42).status(), v1::STATUS_AWAY);
  ASSERT_TRUE(client_->Heartbeat(42, "tab").ok());
  ASSERT_TRUE(rich.WaitFor(42, v1::STATUS_ONLINE, v1::REASON_ACTIVITY));

  // A custom status that clears itself: set, then expired, with events.
  v1::SetStatusRequest lunch;
  lunch.set_user_id(42);
  lunch.mutable_custom_status()->set_text("Lunch");
  *lunch.mutable_custom_status_for() = ToProto(absl::Milliseconds(300));
  ASSERT_TRUE(client_->SetStatus(lunch).ok());
  std::optional<v1::PresenceChange> change =
      rich.WaitFor(42, std::nullopt, v1::REASON_STATUS_SET);
  ASSERT_TRUE(change.has_value());
  EXPECT_EQ(change->custom_status().text(), "Lunch");
  EXPECT_TRUE(change->custom_status().has_expires_at());
  change = rich.WaitFor(42, std::nullopt, v1::REASON_STATUS_EXPIRED);
  ASSERT_TRUE(change.has_value());
  EXPECT_FALSE(change->has_custom_status());
  EXPECT_FALSE(Get(42).has_custom_status());

  // DND for a while: others see it, with its end, until it ends on time.
  ASSERT_TRUE(client_->Heartbeat(43).ok());
  v1::SetStatusRequest dnd;
  dnd.set_user_id(43);
  dnd.set_availability(v1::AVAILABILITY_DND);
  *dnd.mutable_availability_for() = ToProto(absl::Milliseconds(300));
  absl::StatusOr<v1::SetStatusResponse> set = client_->SetStatus(dnd);
  ASSERT_TRUE(set.ok()) << set.status();
  change = rich.WaitFor(43, v1::STATUS_DND, v1::REASON_STATUS_SET);
  ASSERT_TRUE(change.has_value());
  EXPECT_EQ(FromProto(change->availability_until()),
            FromProto(set->presence().availability_until()));
  change = rich.WaitFor(43, std::nullopt, v1::REASON_STATUS_EXPIRED);
  ASSERT_TRUE(change.has_value());
  EXPECT_NE(change->status(), v1::STATUS_DND);
  EXPECT_FALSE(change->has_availability_until());
  EXPECT_EQ(Get(43).availability(), v1::AVAILABILITY_AUTO);

  // The plain stream saw 42 and 43 come online, and nothing since; logging
  // out ends both streams' story with the same change.
  ASSERT_TRUE(client_->MarkOffline(42).ok());
  ASSERT_TRUE(rich.WaitFor(42, v1::STATUS_OFFLINE, v1::REASON_MARK_OFFLINE));
  ASSERT_TRUE(plain.WaitFor(42, v1::STATUS_OFFLINE, v1::REASON_MARK_OFFLINE));
  EXPECT_EQ(plain.Story(42),
            "STATUS_ONLINE/REASON_HEARTBEAT, "
            "STATUS_OFFLINE/REASON_MARK_OFFLINE");
  EXPECT_EQ(plain.Story(43), "STATUS_ONLINE/REASON_HEARTBEAT");
  rich_watcher.Stop();
  plain_watcher.Stop();
}

TEST_F(RichClientTest, RichSnapshotCarriesEachOnlineUsersPresence) {
  for (int64_t user : {7, 9, 42}) ASSERT_TRUE(client_->Heartbeat(user).ok());
  v1::SetStatusRequest dnd;
  dnd.set_user_id(9);
  dnd.set_availability(v1::AVAILABILITY_DND);
  dnd.mutable_custom_status()->set_emoji(":no_entry:");
  ASSERT_TRUE(client_->SetStatus(dnd).ok());
  v1::SetStatusRequest invisible;
  invisible.set_user_id(42);
  invisible.set_availability(v1::AVAILABILITY_INVISIBLE);
  ASSERT_TRUE(client_->SetStatus(invisible).ok());

  Stream rich;
  WatcherOptions options;
  options.rich_status = true;
  Watcher watcher(*client_, options, rich.Callbacks());
  std::optional<v1::Snapshot> snapshot = rich.WaitForSnapshot();
  ASSERT_TRUE(snapshot.has_value());
  ASSERT_EQ(std::vector<int64_t>(snapshot->online_users().begin(),
                                 snapshot->online_users().end()),
            (std::vector<int64_t>{7, 9}));
  ASSERT_EQ(snapshot->users_size(), 2);
  EXPECT_EQ(snapshot->users(0).user_id(), 7);
  EXPECT_EQ(snapshot->users(0).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(snapshot->users(1).user_id(), 9);
  EXPECT_EQ(snapshot->users(1).status(), v1::STATUS_DND);
  EXPECT_EQ(snapshot->users(1).custom_status().emoji(), ":no_entry:");

  Stream plain;
  Watcher plain_watcher(*client_, WatcherOptions{}, plain.Callbacks());
  snapshot = plain.WaitForSnapshot();
  ASSERT_TRUE(snapshot.has_value());
  EXPECT_EQ(snapshot->online_users_size(), 2);
  EXPECT_EQ(snapshot->users_size(), 0);
}

// The asynchronous forms build the same requests as the blocking ones.
TEST_F(RichClientTest, AsyncCallsCarryIdleStatusAndTheRequestsFields) {
  absl::StatusOr<v1::HeartbeatResponse> beat =
      Await<v1::HeartbeatResponse>([&](auto done) {
        client_->HeartbeatAsync(42, "tab", /*idle=*/true, std::move(done));
      });
  ASSERT_TRUE(beat.ok()) << beat.status();
  v1::SetStatusRequest invisible;
  invisible.set_user_id(42);
  invisible.set_availability(v1::AVAILABILITY_INVISIBLE);
  absl::StatusOr<v1::SetStatusResponse> set = Await<v1::SetStatusResponse>(
      [&](auto done) { client_->SetStatusAsync(invisible, std::move(done)); });
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->presence().availability(), v1::AVAILABILITY_INVISIBLE);
  absl::StatusOr<v1::GetPresenceResponse> got = Await<
      v1::GetPresenceResponse>([&](auto done) {
    client_->GetPresenceAsync(Lookup({42, 42}, /*viewer=*/42), std::move(done));
  });
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->users_size(), 2);
  EXPECT_EQ(got->users(0).status(), v1::STATUS_ONLINE);
  EXPECT_EQ(got->users(0).availability(), v1::AVAILABILITY_INVISIBLE);
  got = Await<v1::GetPresenceResponse>([&](auto done) {
    client_->GetPresenceAsync(std::vector<int64_t>{42}, std::move(done));
  });
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->users(0).status(), v1::STATUS_OFFLINE);
  v1::SetStatusRequest bad;
  bad.set_user_id(0);
  bad.set_availability(v1::AVAILABILITY_DND);
  EXPECT_EQ(Await<v1::SetStatusResponse>([&](auto done) {
              client_->SetStatusAsync(bad, std::move(done));
            })
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace presence
