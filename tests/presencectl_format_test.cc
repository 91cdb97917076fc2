#include "tools/presencectl_format.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace presence {
namespace {

TEST(FormatAgoTest, ReadableAmounts) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  struct Case {
    absl::Duration ago;
    const char* text;
  } cases[] = {
      {absl::ZeroDuration(), "just now"},
      {absl::Milliseconds(999), "just now"},
      {absl::Seconds(42), "42s ago"},
      {absl::Seconds(60), "1m ago"},
      {absl::Minutes(3) + absl::Seconds(59), "3m ago"},
      {absl::Hours(5), "5h ago"},
      {absl::Hours(47), "47h ago"},
      {absl::Hours(48), "2d ago"},
      {-absl::Minutes(3), "in 3m"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(FormatAgo(now - c.ago, now), c.text) << c.ago;
  }
}

TEST(FormatIsoTimeTest, UtcSeconds) {
  EXPECT_EQ(FormatIsoTime(absl::FromUnixSeconds(1'800'000'000)),
            "2027-01-15T08:00:00Z");
}

v1::PresenceChange Change(int64_t user, uint64_t sequence) {
  v1::PresenceChange change;
  change.set_user_id(user);
  change.set_status(v1::STATUS_ONLINE);
  change.set_reason(v1::REASON_HEARTBEAT);
  change.mutable_at()->set_seconds(1'800'000'000);
  change.set_sequence(sequence);
  return change;
}

TEST(WatchEventsOfTest, ABatchIsOneSingleChangeMessagePerChangeInOrder) {
  v1::WatchPresenceResponse batch;
  batch.set_epoch("0123456789abcdef");
  batch.set_sequence(12);
  for (uint64_t sequence : {10, 11, 12}) {
    *batch.mutable_changes()->add_changes() =
        Change(static_cast<int64_t>(sequence) * 100, sequence);
  }
  std::vector<v1::WatchPresenceResponse> events = WatchEventsOf(batch);
  ASSERT_EQ(events.size(), 3u);
  for (size_t i = 0; i < events.size(); ++i) {
    const uint64_t sequence = 10 + i;
    SCOPED_TRACE(sequence);
    EXPECT_EQ(events[i].epoch(), "0123456789abcdef");
    EXPECT_EQ(events[i].sequence(), sequence);
    ASSERT_TRUE(events[i].has_change());
    EXPECT_EQ(events[i].change().user_id(),
              static_cast<int64_t>(sequence) * 100);
    EXPECT_EQ(events[i].change().sequence(), sequence);
    EXPECT_EQ(events[i].change().at().seconds(), 1'800'000'000);
  }
}

TEST(WatchEventsOfTest, OtherMessagesStayAsTheyAre) {
  v1::WatchPresenceResponse snapshot;
  snapshot.set_epoch("e");
  snapshot.set_sequence(4);
  snapshot.mutable_snapshot()->add_online_users(7);
  std::vector<v1::WatchPresenceResponse> events = WatchEventsOf(snapshot);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].SerializeAsString(), snapshot.SerializeAsString());

  v1::WatchPresenceResponse single;
  single.set_epoch("e");
  single.set_sequence(5);
  *single.mutable_change() = Change(42, 5);
  events = WatchEventsOf(single);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].SerializeAsString(), single.SerializeAsString());

  // From a presenced older than PresenceChange.sequence.
  single.mutable_change()->clear_sequence();
  events = WatchEventsOf(single);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].sequence(), 5u);
  EXPECT_EQ(events[0].change().sequence(), 5u);
  EXPECT_EQ(events[0].change().user_id(), 42);
}

}  // namespace
}  // namespace presence
