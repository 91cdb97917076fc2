#include "tools/presencectl_format.h"

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_split.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
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

// 2027-01-15T08:00:00Z
constexpr int64_t kNow = 1'800'000'000;

google::protobuf::Timestamp At(int64_t seconds) {
  google::protobuf::Timestamp t;
  t.set_seconds(seconds);
  return t;
}

TEST(StatusNameTest, EveryStatusAndOneNewerThanThisCode) {
  EXPECT_EQ(StatusName(v1::STATUS_ONLINE), "online");
  EXPECT_EQ(StatusName(v1::STATUS_AWAY), "away");
  EXPECT_EQ(StatusName(v1::STATUS_DND), "dnd");
  EXPECT_EQ(StatusName(v1::STATUS_OFFLINE), "offline");
  EXPECT_EQ(StatusName(static_cast<v1::Status>(9)), "unknown(9)");
}

TEST(FormatAvailabilityTest, NameAndEnd) {
  v1::UserPresence user;
  EXPECT_EQ(FormatAvailability(user), "auto");  // an older presenced
  user.set_availability(v1::AVAILABILITY_AUTO);
  EXPECT_EQ(FormatAvailability(user), "auto");
  user.set_availability(v1::AVAILABILITY_INVISIBLE);
  EXPECT_EQ(FormatAvailability(user), "invisible");
  user.set_availability(v1::AVAILABILITY_DND);
  *user.mutable_availability_until() = At(kNow + 5400);
  EXPECT_EQ(FormatAvailability(user), "dnd until 2027-01-15T09:30:00Z");
}

TEST(FormatCustomStatusTest, EmojiTextAndExpiry) {
  v1::UserPresence user;
  EXPECT_EQ(FormatCustomStatus(user), "-");
  user.mutable_custom_status()->set_text("In a meeting");
  EXPECT_EQ(FormatCustomStatus(user), "In a meeting");
  user.mutable_custom_status()->set_emoji(":calendar:");
  EXPECT_EQ(FormatCustomStatus(user), ":calendar: In a meeting");
  user.mutable_custom_status()->clear_text();
  *user.mutable_custom_status()->mutable_expires_at() = At(kNow + 60);
  EXPECT_EQ(FormatCustomStatus(user),
            ":calendar: (until 2027-01-15T08:01:00Z)");
}

TEST(FormatPresenceTableTest, EveryColumnAligned) {
  v1::GetPresenceResponse response;
  *response.mutable_server_time() = At(kNow);
  v1::UserPresence* dnd = response.add_users();
  dnd->set_user_id(42);
  dnd->set_status(v1::STATUS_DND);
  dnd->set_live_sessions(2);
  *dnd->mutable_last_seen() = At(kNow - 8);
  dnd->set_availability(v1::AVAILABILITY_DND);
  *dnd->mutable_availability_until() = At(kNow + 3600);
  dnd->mutable_custom_status()->set_text("Focus");
  dnd->mutable_custom_status()->set_emoji(":headphones:");
  v1::UserPresence* offline = response.add_users();
  offline->set_user_id(7);
  offline->set_status(v1::STATUS_OFFLINE);
  offline->set_availability(v1::AVAILABILITY_AUTO);
  v1::UserPresence* away = response.add_users();
  away->set_user_id(1000);
  away->set_status(v1::STATUS_AWAY);
  away->set_live_sessions(1);
  *away->mutable_last_seen() = At(kNow - 700);
  away->set_availability(v1::AVAILABILITY_AUTO);
  EXPECT_EQ(FormatPresenceTable(response),
            "USER  STATUS   LAST SEEN                       SESSIONS  "
            "AVAILABILITY                    CUSTOM STATUS\n"
            "42    dnd      8s ago (2027-01-15T07:59:52Z)   2         "
            "dnd until 2027-01-15T09:00:00Z  :headphones: Focus\n"
            "7     offline  never                           0         "
            "auto                            -\n"
            "1000  away     11m ago (2027-01-15T07:48:20Z)  1         "
            "auto                            -\n");
}

TEST(FormatStatusLineTest, TheUsersOwnView) {
  v1::SetStatusResponse response;
  v1::UserPresence* user = response.mutable_presence();
  user->set_user_id(42);
  user->set_status(v1::STATUS_ONLINE);
  user->set_availability(v1::AVAILABILITY_INVISIBLE);
  *user->mutable_availability_until() = At(kNow + 3600);
  EXPECT_EQ(FormatStatusLine(response),
            "42 online; availability invisible until 2027-01-15T09:00:00Z; no "
            "custom status");
  user->mutable_custom_status()->set_emoji(":coffee:");
  user->set_availability(v1::AVAILABILITY_AUTO);
  user->clear_availability_until();
  EXPECT_EQ(FormatStatusLine(response),
            "42 online; availability auto; custom status :coffee:");
}

TEST(FormatChangeTest, OnlineOfflineAsBeforeAndRichChanges) {
  v1::PresenceChange change = Change(42, 1);
  EXPECT_EQ(FormatChange(change), "42 online");
  change.set_status(v1::STATUS_OFFLINE);
  change.set_reason(v1::REASON_MARK_OFFLINE);
  EXPECT_EQ(FormatChange(change), "42 offline (logout)");
  change.set_reason(v1::REASON_EXPIRED);
  EXPECT_EQ(FormatChange(change), "42 offline (expired)");
  change.set_status(v1::STATUS_AWAY);
  change.set_reason(v1::REASON_ACTIVITY);
  EXPECT_EQ(FormatChange(change), "42 away (activity)");
  change.set_status(v1::STATUS_DND);
  change.set_reason(v1::REASON_STATUS_SET);
  *change.mutable_availability_until() = At(kNow + 600);
  change.mutable_custom_status()->set_text("Lunch");
  change.mutable_custom_status()->set_emoji(":pizza:");
  EXPECT_EQ(FormatChange(change),
            "42 dnd until 2027-01-15T08:10:00Z (status set); custom status "
            ":pizza: Lunch");
  change.clear_availability_until();
  change.clear_custom_status();
  change.set_status(v1::STATUS_ONLINE);
  change.set_reason(v1::REASON_STATUS_EXPIRED);
  EXPECT_EQ(FormatChange(change), "42 online (status expired)");
}

TEST(FormatSnapshotTest, PlainAndRich) {
  v1::Snapshot snapshot;
  EXPECT_EQ(FormatSnapshot(snapshot), "snapshot: 0 online");
  for (int64_t id : {7, 9, 42}) snapshot.add_online_users(id);
  EXPECT_EQ(FormatSnapshot(snapshot), "snapshot: 3 online: 7 9 42");
  for (v1::Status status :
       {v1::STATUS_ONLINE, v1::STATUS_DND, v1::STATUS_AWAY}) {
    v1::UserPresence* user = snapshot.add_users();
    user->set_user_id(snapshot.online_users(snapshot.users_size() - 1));
    user->set_status(status);
  }
  EXPECT_EQ(FormatSnapshot(snapshot), "snapshot: 3 online: 7 9(dnd) 42(away)");
}

TEST(ParseStatusEndTest, Rfc3339OrAPositiveDuration) {
  absl::StatusOr<StatusEnd> end =
      ParseStatusEnd("--until", "2027-01-15T09:30:00Z");
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(std::get<absl::Time>(*end), absl::FromUnixSeconds(kNow + 5400));
  end = ParseStatusEnd("--until", "2027-01-15T10:30:00.5+01:00");
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(std::get<absl::Time>(*end),
            absl::FromUnixSeconds(kNow + 5400) + absl::Milliseconds(500));
  end = ParseStatusEnd("--until", "90m");
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(std::get<absl::Duration>(*end), absl::Minutes(90));
  end = ParseStatusEnd("--expires", "1h30m");
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_EQ(std::get<absl::Duration>(*end), absl::Minutes(90));

  for (const char* bad : {"", "0s", "-5m", "inf", "tomorrow", "90",
                          "2027-01-15 09:30:00", "2027-01-15T09:30:00"}) {
    end = ParseStatusEnd("--until", bad);
    EXPECT_EQ(end.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(end.status().message().find("--until: '"), std::string::npos)
        << end.status();
  }
}

// StatusFlags as `presencectl status` fills them from its command line,
// e.g. "--dnd --until=90m" (values without spaces).
StatusFlags Flags(absl::string_view command_line) {
  StatusFlags flags;
  for (absl::string_view arg :
       absl::StrSplit(command_line, ' ', absl::SkipEmpty())) {
    const std::pair<absl::string_view, absl::string_view> flag =
        absl::StrSplit(arg, absl::MaxSplits('=', 1));
    if (flag.first == "--dnd") flags.dnd = true;
    if (flag.first == "--invisible") flags.invisible = true;
    if (flag.first == "--auto") flags.automatic = true;
    if (flag.first == "--clear") flags.clear = true;
    if (flag.first == "--until") flags.until = std::string(flag.second);
    if (flag.first == "--text") flags.text = std::string(flag.second);
    if (flag.first == "--emoji") flags.emoji = std::string(flag.second);
    if (flag.first == "--expires") flags.expires = std::string(flag.second);
  }
  return flags;
}

v1::SetStatusRequest Parsed(const char* text) {
  v1::SetStatusRequest request;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &request))
      << text;
  return request;
}

TEST(StatusRequestTest, WhatEachCombinationOfFlagsSends) {
  struct Case {
    const char* flags;
    const char* request;  // text format
  } cases[] = {
      {"--dnd", "user_id: 42 availability: AVAILABILITY_DND"},
      {"--dnd --until=90m",
       "user_id: 42 availability: AVAILABILITY_DND "
       "availability_for { seconds: 5400 }"},
      {"--invisible --until=2027-01-15T09:30:00Z",
       "user_id: 42 availability: AVAILABILITY_INVISIBLE "
       "availability_until { seconds: 1800005400 }"},
      {"--auto", "user_id: 42 availability: AVAILABILITY_AUTO"},
      {"--text=Lunch", "user_id: 42 custom_status { text: 'Lunch' }"},
      {"--emoji=:pizza: --expires=30m",
       "user_id: 42 custom_status { emoji: ':pizza:' } "
       "custom_status_for { seconds: 1800 }"},
      {"--text=Off --expires=2027-01-15T09:30:00Z",
       "user_id: 42 custom_status { text: 'Off' "
       "expires_at { seconds: 1800005400 } }"},
      {"--dnd --until=1h --text=Focus --emoji=:headphones:",
       "user_id: 42 availability: AVAILABILITY_DND "
       "availability_for { seconds: 3600 } "
       "custom_status { text: 'Focus' emoji: ':headphones:' }"},
      {"--clear", "user_id: 42 clear_custom_status: true"},
      {"--auto --clear",
       "user_id: 42 availability: AVAILABILITY_AUTO clear_custom_status: "
       "true"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<v1::SetStatusRequest> request =
        StatusRequest(42, Flags(c.flags));
    ASSERT_TRUE(request.ok()) << c.request << ": " << request.status();
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(
        *request, Parsed(c.request)))
        << "want " << c.request << "\ngot " << request->ShortDebugString();
  }
}

TEST(StatusRequestTest, FlagsThatDoNotGoTogetherAreRefusedSayingWhy) {
  struct Case {
    const char* flags;
    const char* says;
  } cases[] = {
      {"", "status needs something to set"},
      {"--dnd --invisible", "one of --dnd, --invisible and --auto"},
      {"--dnd --auto", "one of --dnd, --invisible and --auto"},
      {"--auto --until=90m", "--until is when --dnd"},
      {"--until=90m --text=x", "--until is when --dnd"},
      {"--dnd --until=soon", "--until: 'soon' is neither"},
      {"--dnd --expires=90m", "--expires is when the custom status"},
      {"--text=x --expires=0s", "--expires: '0s'"},
      {"--text=x --clear", "--clear removes the custom status"},
      {"--emoji=:x: --clear", "--clear removes the custom status"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<v1::SetStatusRequest> request =
        StatusRequest(42, Flags(c.flags));
    EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument)
        << c.says;
    EXPECT_NE(request.status().message().find(c.says), std::string::npos)
        << request.status();
  }
}

}  // namespace
}  // namespace presence
