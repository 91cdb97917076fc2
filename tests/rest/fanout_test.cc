#include "gateway/fanout.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

namespace presence::rest {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Records what the fan-out sends to one browser, one event (or comment)
// at a time: one frame may hold several (a `change` and its `status`).
class RecordingSink : public SseSink {
 public:
  void Send(const SseFrame& frame) override {
    ++sends;
    for (size_t start = 0; start < frame->size();) {
      const size_t end = frame->find("\n\n", start);
      ASSERT_NE(end, std::string::npos) << *frame;
      frames.push_back(frame->substr(start, end + 2 - start));
      start = end + 2;
    }
  }
  std::vector<std::string> frames;  // each one event
  int sends = 0;
};

v1::Snapshot Snapshot(std::vector<int64_t> online) {
  v1::Snapshot snapshot;
  snapshot.mutable_online_users()->Add(online.begin(), online.end());
  *snapshot.mutable_server_time() =
      google::protobuf::util::TimeUtil::SecondsToTimestamp(1'800'000'000);
  return snapshot;
}

v1::PresenceChange Change(int64_t user, bool online,
                          v1::Reason reason = v1::REASON_HEARTBEAT) {
  v1::PresenceChange change;
  change.set_user_id(user);
  change.set_status(online ? v1::STATUS_ONLINE : v1::STATUS_OFFLINE);
  change.set_reason(reason);
  *change.mutable_at() =
      google::protobuf::util::TimeUtil::SecondsToTimestamp(1'800'000'001);
  return change;
}

struct Event {
  std::string name;
  google::protobuf::Struct data;
};

// Parses one SSE frame ("event: NAME\ndata: JSON\n\n"). The JSON's keys come
// in no fixed order, so tests compare fields.
Event Parse(const std::string& frame) {
  Event event;
  const std::string prefix = "event: ";
  size_t newline = frame.find('\n');
  EXPECT_EQ(frame.rfind(prefix, 0), 0u) << frame;
  EXPECT_EQ(frame.substr(frame.size() - 2), "\n\n") << frame;
  event.name = frame.substr(prefix.size(), newline - prefix.size());
  std::string data = frame.substr(newline + 1);
  EXPECT_EQ(data.rfind("data: ", 0), 0u) << frame;
  data = data.substr(6, data.size() - 8);
  EXPECT_EQ(data.find('\n'), std::string::npos) << "one data line: " << frame;
  EXPECT_TRUE(
      google::protobuf::util::JsonStringToMessage(data, &event.data).ok())
      << frame;
  return event;
}

// The online_users of a snapshot frame.
std::vector<int64_t> OnlineUsers(
    const std::string& frame,
    const char* server_time = "2027-01-15T08:00:00Z") {
  Event event = Parse(frame);
  EXPECT_EQ(event.name, "snapshot");
  std::vector<int64_t> users;
  for (const auto& value :
       event.data.fields().at("online_users").list_value().values()) {
    users.push_back(static_cast<int64_t>(value.number_value()));
  }
  EXPECT_EQ(event.data.fields().at("server_time").string_value(), server_time);
  return users;
}

void ExpectChange(const std::string& frame, int64_t user, const char* status,
                  const char* reason) {
  Event event = Parse(frame);
  EXPECT_EQ(event.name, "change");
  const auto& fields = event.data.fields();
  EXPECT_EQ(fields.at("user_id").number_value(), user) << frame;
  EXPECT_EQ(fields.at("status").string_value(), status) << frame;
  EXPECT_EQ(fields.at("reason").string_value(), reason) << frame;
  EXPECT_EQ(fields.at("at").string_value(), "2027-01-15T08:00:01Z") << frame;
}

TEST(FanoutTest, SubscribersGetASnapshotOnceTheMirrorHasOne) {
  PresenceFanout fanout;
  RecordingSink early, late;
  fanout.Subscribe(&early, {});
  EXPECT_THAT(early.frames, IsEmpty());  // nothing known yet
  fanout.ApplyChange(Change(5, true));   // before the first snapshot: held
  EXPECT_THAT(early.frames, IsEmpty());
  fanout.ApplySnapshot(Snapshot({3, 9}));
  ASSERT_EQ(early.frames.size(), 1u);
  EXPECT_TRUE(fanout.ready());
  fanout.Subscribe(&late, {});
  ASSERT_EQ(late.frames.size(), 1u);
  // The snapshot replaced what the early change said.
  EXPECT_THAT(OnlineUsers(early.frames[0]), ElementsAre(3, 9));
  EXPECT_THAT(OnlineUsers(late.frames[0]), ElementsAre(3, 9));
}

TEST(FanoutTest, ChangesReachEveryoneAndTheUsersWatchers) {
  PresenceFanout fanout;
  fanout.ApplySnapshot(Snapshot({}));
  RecordingSink all, watches_42, watches_7;
  fanout.Subscribe(&all, {});
  fanout.Subscribe(&watches_42, {42, 42, 1});
  fanout.Subscribe(&watches_7, {7});
  fanout.ApplyChange(Change(42, true));
  fanout.ApplyChange(Change(42, false, v1::REASON_EXPIRED));
  // The snapshot, then per change a `change` and a `status` event.
  ASSERT_EQ(all.frames.size(), 5u);
  ASSERT_EQ(watches_42.frames.size(), 5u);
  EXPECT_EQ(watches_7.frames.size(), 1u);  // the snapshot only
  ExpectChange(all.frames[1], 42, "online", "heartbeat");
  EXPECT_EQ(Parse(all.frames[2]).name, "status");
  ExpectChange(all.frames[3], 42, "offline", "expired");
  EXPECT_EQ(Parse(all.frames[4]).name, "status");
  EXPECT_EQ(watches_42.frames, all.frames);
  EXPECT_EQ(fanout.online(), 0u);
}

TEST(FanoutTest, FilteredSnapshotsShowOnlyTheWatchedUsers) {
  PresenceFanout fanout;
  fanout.ApplySnapshot(Snapshot({1, 2, 3}));
  fanout.ApplyChange(Change(4, true));
  RecordingSink sink;
  fanout.Subscribe(&sink, {4, 3, 8});
  ASSERT_EQ(sink.frames.size(), 1u);
  // As of the latest change applied to the mirror.
  EXPECT_THAT(OnlineUsers(sink.frames[0], "2027-01-15T08:00:01Z"),
              ElementsAre(3, 4));
  EXPECT_THAT(OnlineUsers(*fanout.SnapshotFor(&sink), "2027-01-15T08:00:01Z"),
              ElementsAre(3, 4));
}

TEST(FanoutTest, AFreshSnapshotFromPresencedGoesToEverySubscriber) {
  PresenceFanout fanout;
  fanout.ApplySnapshot(Snapshot({1}));
  RecordingSink all, watches_2;
  fanout.Subscribe(&all, {});
  fanout.Subscribe(&watches_2, {2});
  fanout.ApplySnapshot(Snapshot({2, 5}));  // e.g. presenced restarted
  ASSERT_EQ(all.frames.size(), 2u);
  EXPECT_THAT(OnlineUsers(all.frames[1]), ElementsAre(2, 5));
  ASSERT_EQ(watches_2.frames.size(), 2u);
  EXPECT_THAT(OnlineUsers(watches_2.frames[1]), ElementsAre(2));
}

TEST(FanoutTest, UnsubscribedSinksGetNothingMore) {
  PresenceFanout fanout;
  fanout.ApplySnapshot(Snapshot({}));
  RecordingSink all, watches_9, other_9;
  fanout.Subscribe(&all, {});
  fanout.Subscribe(&watches_9, {9});
  fanout.Subscribe(&other_9, {9});
  EXPECT_EQ(fanout.subscribers(), 3u);
  fanout.Unsubscribe(&all);
  fanout.Unsubscribe(&watches_9);
  fanout.Unsubscribe(&watches_9);  // twice is harmless
  fanout.ApplyChange(Change(9, true));
  fanout.Broadcast(std::make_shared<const std::string>(": ping\n\n"));
  EXPECT_EQ(all.frames.size(), 1u);
  EXPECT_EQ(watches_9.frames.size(), 1u);
  ASSERT_EQ(other_9.frames.size(), 4u);  // snapshot, change, status, ping
  EXPECT_EQ(other_9.frames[3], ": ping\n\n");
  EXPECT_EQ(fanout.subscribers(), 1u);
  EXPECT_EQ(fanout.SnapshotFor(&all), nullptr);
}

// Browsers that watch everyone share one snapshot frame per state of the
// mirror: 10,000 of them after a restart of presenced hold one copy.
TEST(FanoutTest, BrowsersWatchingEveryoneShareOneSnapshotFrame) {
  struct FrameSink : SseSink {
    void Send(const SseFrame& frame) override { frames.push_back(frame); }
    std::vector<SseFrame> frames;
  } a, b, c;
  PresenceFanout fanout;
  fanout.ApplySnapshot(Snapshot({1}));
  fanout.Subscribe(&a, {});
  fanout.Subscribe(&b, {});
  ASSERT_EQ(a.frames.size(), 1u);
  EXPECT_EQ(a.frames[0].get(), b.frames[0].get());
  fanout.ApplySnapshot(Snapshot({2}));
  ASSERT_EQ(b.frames.size(), 2u);
  EXPECT_EQ(a.frames[1].get(), b.frames[1].get());
  // A change makes the shared frame stale: the next one is built anew.
  fanout.ApplyChange(Change(3, true));
  fanout.Subscribe(&c, {});
  ASSERT_EQ(c.frames.size(), 1u);
  EXPECT_THAT(OnlineUsers(*c.frames[0], "2027-01-15T08:00:01Z"),
              ElementsAre(2, 3));
}

// A change of a rich stream (WatchPresenceRequest.rich_status).
v1::PresenceChange RichChange(int64_t user, v1::Status status,
                              v1::Reason reason) {
  v1::PresenceChange change = Change(user, false, reason);
  change.set_status(status);
  return change;
}

// The `status` event's fields, as strings ("null" for null).
struct StatusEvent {
  std::string status, reason, at, availability_until, text, emoji, expires_at;
};

StatusEvent ParseStatus(const std::string& frame) {
  Event event = Parse(frame);
  EXPECT_EQ(event.name, "status") << frame;
  const auto& fields = event.data.fields();
  auto string_or_null = [](const google::protobuf::Value& value) {
    return value.kind_case() == google::protobuf::Value::kNullValue
               ? std::string("null")
               : value.string_value();
  };
  StatusEvent status;
  status.status = fields.at("status").string_value();
  status.reason = fields.at("reason").string_value();
  status.at = fields.at("at").string_value();
  status.availability_until = string_or_null(fields.at("availability_until"));
  const google::protobuf::Value& custom = fields.at("custom_status");
  if (custom.kind_case() == google::protobuf::Value::kNullValue) {
    status.text = status.emoji = status.expires_at = "null";
  } else {
    status.text = custom.struct_value().fields().at("text").string_value();
    status.emoji = custom.struct_value().fields().at("emoji").string_value();
    status.expires_at =
        string_or_null(custom.struct_value().fields().at("expires_at"));
  }
  return status;
}

google::protobuf::Timestamp At(int64_t seconds) {
  return google::protobuf::util::TimeUtil::SecondsToTimestamp(seconds);
}

// Online-ness keeps its classic `change` events (online: online, away or
// dnd; an invisible user is offline), each followed by a `status` event;
// changes among online statuses and of custom statuses are `status` events
// alone.
TEST(FanoutTest, StatusEventsFollowEveryChangeOthersSee) {
  PresenceFanout fanout;
  fanout.ApplySnapshot(Snapshot({6}));
  RecordingSink all;
  fanout.Subscribe(&all, {});
  ASSERT_EQ(all.frames.size(), 1u);

  // Coming online in dnd (until a moment).
  v1::PresenceChange dnd = RichChange(5, v1::STATUS_DND, v1::REASON_HEARTBEAT);
  *dnd.mutable_availability_until() = At(1'800'003'600);
  fanout.ApplyChange(dnd);
  ASSERT_EQ(all.frames.size(), 3u);
  EXPECT_EQ(all.sends, 2);  // a change and its status go as one frame
  ExpectChange(all.frames[1], 5, "online", "heartbeat");
  StatusEvent status = ParseStatus(all.frames[2]);
  EXPECT_EQ(status.status, "dnd");
  EXPECT_EQ(status.reason, "heartbeat");
  EXPECT_EQ(status.at, "2027-01-15T08:00:01Z");
  EXPECT_EQ(status.availability_until, "2027-01-15T09:00:00Z");
  EXPECT_EQ(status.text, "null");

  // Online to away: still online, so no `change`.
  fanout.ApplyChange(RichChange(6, v1::STATUS_AWAY, v1::REASON_ACTIVITY));
  ASSERT_EQ(all.frames.size(), 4u);
  status = ParseStatus(all.frames[3]);
  EXPECT_EQ(status.status, "away");
  EXPECT_EQ(status.reason, "activity");
  EXPECT_EQ(status.availability_until, "null");

  // A custom status.
  v1::PresenceChange custom =
      RichChange(6, v1::STATUS_AWAY, v1::REASON_STATUS_SET);
  custom.mutable_custom_status()->set_text("In a meeting");
  custom.mutable_custom_status()->set_emoji(":calendar:");
  *custom.mutable_custom_status()->mutable_expires_at() = At(1'800'000'060);
  fanout.ApplyChange(custom);
  ASSERT_EQ(all.frames.size(), 5u);
  status = ParseStatus(all.frames[4]);
  EXPECT_EQ(status.reason, "status_set");
  EXPECT_EQ(status.text, "In a meeting");
  EXPECT_EQ(status.emoji, ":calendar:");
  EXPECT_EQ(status.expires_at, "2027-01-15T08:01:00Z");

  // Invisible: offline, as pages built before rich presence expect it (a
  // mark_offline), and the custom status hidden.
  fanout.ApplyChange(RichChange(6, v1::STATUS_OFFLINE, v1::REASON_STATUS_SET));
  ASSERT_EQ(all.frames.size(), 7u);
  ExpectChange(all.frames[5], 6, "offline", "mark_offline");
  status = ParseStatus(all.frames[6]);
  EXPECT_EQ(status.status, "offline");
  EXPECT_EQ(status.reason, "status_set");
  EXPECT_EQ(status.text, "null");
  // Visible again when invisibility ends: a heartbeat to those pages.
  fanout.ApplyChange(
      RichChange(6, v1::STATUS_ONLINE, v1::REASON_STATUS_EXPIRED));
  ASSERT_EQ(all.frames.size(), 9u);
  ExpectChange(all.frames[7], 6, "online", "heartbeat");
  EXPECT_EQ(ParseStatus(all.frames[8]).reason, "status_expired");

  // Offline to offline is nothing others see.
  fanout.ApplyChange(RichChange(7, v1::STATUS_OFFLINE, v1::REASON_STATUS_SET));
  EXPECT_EQ(all.frames.size(), 9u);
  EXPECT_EQ(fanout.online(), 2u);
}

TEST(FanoutTest, SnapshotsCarryEachOnlineUsersStatus) {
  v1::Snapshot snapshot = Snapshot({5, 9, 12});
  v1::UserPresence* away = snapshot.add_users();
  away->set_user_id(5);
  away->set_status(v1::STATUS_AWAY);
  away->mutable_custom_status()->set_emoji(":coffee:");
  v1::UserPresence* dnd = snapshot.add_users();
  dnd->set_user_id(9);
  dnd->set_status(v1::STATUS_DND);
  *dnd->mutable_availability_until() = At(1'800'003'600);
  // 12 has no entry, as from a presenced without rich status: online.
  PresenceFanout fanout;
  fanout.ApplySnapshot(snapshot);
  RecordingSink all, some;
  fanout.Subscribe(&all, {});
  fanout.Subscribe(&some, {9, 3});
  ASSERT_EQ(all.frames.size(), 1u);
  ASSERT_EQ(some.frames.size(), 1u);

  auto users = [](const std::string& frame) {
    std::vector<std::string> described;
    const Event event = Parse(frame);
    for (const auto& user :
         event.data.fields().at("users").list_value().values()) {
      const auto& fields = user.struct_value().fields();
      std::string line = absl::StrCat(fields.at("user_id").number_value(), " ",
                                      fields.at("status").string_value());
      const auto& custom = fields.at("custom_status");
      if (custom.has_struct_value()) {
        absl::StrAppend(
            &line, " ",
            custom.struct_value().fields().at("emoji").string_value());
      }
      if (fields.at("availability_until").has_string_value()) {
        absl::StrAppend(&line, " until ",
                        fields.at("availability_until").string_value());
      }
      described.push_back(line);
    }
    return described;
  };
  EXPECT_THAT(OnlineUsers(all.frames[0]), ElementsAre(5, 9, 12));
  EXPECT_THAT(users(all.frames[0]),
              ElementsAre("5 away :coffee:", "9 dnd until 2027-01-15T09:00:00Z",
                          "12 online"));
  EXPECT_THAT(OnlineUsers(some.frames[0]), ElementsAre(9));
  EXPECT_THAT(users(some.frames[0]),
              ElementsAre("9 dnd until 2027-01-15T09:00:00Z"));

  // The mirror follows the changes: 5 is back, 9 invisible.
  fanout.ApplyChange(RichChange(5, v1::STATUS_ONLINE, v1::REASON_ACTIVITY));
  fanout.ApplyChange(RichChange(9, v1::STATUS_OFFLINE, v1::REASON_STATUS_SET));
  EXPECT_THAT(users(*fanout.SnapshotFor(&all)),
              ElementsAre("5 online", "12 online"));
}

TEST(FanoutTest, ChangeFramesAreServerSentEvents) {
  ExpectChange(ChangeFrame(Change(12, false, v1::REASON_MARK_OFFLINE)), 12,
               "offline", "mark_offline");
}

// Ids are exact JSON integers: a double would turn 2^53 + 1 into 2^53.
TEST(FanoutTest, WritesIdsAsExactDigits) {
  PresenceFanout fanout;
  RecordingSink sink;
  fanout.Subscribe(&sink, {});
  fanout.ApplySnapshot(Snapshot({9007199254740993, 9223372036854775807}));
  fanout.ApplyChange(Change(4611686018427387905, true));
  ASSERT_EQ(sink.frames.size(), 3u);
  EXPECT_THAT(sink.frames[0],
              ::testing::HasSubstr(
                  R"("online_users":[9007199254740993,9223372036854775807])"));
  EXPECT_THAT(sink.frames[0],
              ::testing::HasSubstr(R"({"user_id":9007199254740993,)"));
  EXPECT_THAT(sink.frames[1],
              ::testing::HasSubstr(R"("user_id":4611686018427387905)"));
  EXPECT_THAT(sink.frames[2],
              ::testing::HasSubstr(R"("user_id":4611686018427387905)"));
}

// A lost upstream: every sink hears `stale`, a new sink gets it after its
// snapshot, and the next snapshot goes to everyone.
TEST(FanoutTest, StaleUntilTheNextSnapshot) {
  PresenceFanout fanout;
  RecordingSink before;
  fanout.Subscribe(&before, {});
  fanout.ApplySnapshot(Snapshot({5}));
  fanout.MarkStale("cannot reach presenced");
  ASSERT_EQ(before.frames.size(), 2u);
  Event stale = Parse(before.frames[1]);
  EXPECT_EQ(stale.name, "stale");
  EXPECT_EQ(stale.data.fields().at("reason").string_value(),
            "cannot reach presenced");
  EXPECT_TRUE(fanout.stale());

  RecordingSink during;
  fanout.Subscribe(&during, {7});
  ASSERT_EQ(during.frames.size(), 2u);
  EXPECT_EQ(Parse(during.frames[0]).name, "snapshot");
  EXPECT_EQ(Parse(during.frames[1]).name, "stale");
  // A slow browser's resync while stale must not look live.
  SseFrame resync = fanout.SnapshotFor(&during);
  ASSERT_NE(resync, nullptr);
  EXPECT_THAT(*resync, ::testing::HasSubstr("event: stale"));

  fanout.ApplySnapshot(Snapshot({5, 7}));
  EXPECT_FALSE(fanout.stale());
  ASSERT_EQ(before.frames.size(), 3u);
  EXPECT_EQ(Parse(before.frames[2]).name, "snapshot");
  ASSERT_EQ(during.frames.size(), 3u);
  EXPECT_EQ(Parse(during.frames[2]).name, "snapshot");
  RecordingSink after;
  fanout.Subscribe(&after, {});
  ASSERT_EQ(after.frames.size(), 1u);  // live again: no stale
}

}  // namespace
}  // namespace presence::rest
