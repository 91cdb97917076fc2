#include "gateway/fanout.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

namespace presence::rest {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Records what the fan-out sends to one browser.
class RecordingSink : public SseSink {
 public:
  void Send(const SseFrame& frame) override { frames.push_back(*frame); }
  std::vector<std::string> frames;
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
  ASSERT_EQ(all.frames.size(), 3u);  // snapshot + 2 changes
  ASSERT_EQ(watches_42.frames.size(), 3u);
  EXPECT_EQ(watches_7.frames.size(), 1u);  // the snapshot only
  ExpectChange(all.frames[1], 42, "online", "heartbeat");
  ExpectChange(all.frames[2], 42, "offline", "expired");
  EXPECT_EQ(watches_42.frames[1], all.frames[1]);
  EXPECT_EQ(watches_42.frames[2], all.frames[2]);
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
  EXPECT_EQ(other_9.frames.size(), 3u);
  EXPECT_EQ(other_9.frames[2], ": ping\n\n");
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
  ASSERT_EQ(sink.frames.size(), 2u);
  EXPECT_THAT(sink.frames[0],
              ::testing::HasSubstr(
                  R"("online_users":[9007199254740993,9223372036854775807])"));
  EXPECT_THAT(sink.frames[1],
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
