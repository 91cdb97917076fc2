#include "tools/presencectl_format.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace presence {

std::string FormatIsoTime(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string FormatAgo(absl::Time then, absl::Time now) {
  const absl::Duration d = now - then;
  const bool future = d < absl::ZeroDuration();
  const int64_t s = absl::ToInt64Seconds(absl::AbsDuration(d));
  if (s < 1) return "just now";
  std::string amount;
  if (s < 60) {
    amount = absl::StrCat(s, "s");
  } else if (s < 60 * 60) {
    amount = absl::StrCat(s / 60, "m");
  } else if (s < 48 * 60 * 60) {
    amount = absl::StrCat(s / 3600, "h");
  } else {
    amount = absl::StrCat(s / 86400, "d");
  }
  return future ? absl::StrCat("in ", amount) : absl::StrCat(amount, " ago");
}

std::string FormatPresenceTable(const v1::GetPresenceResponse& response) {
  const absl::Time now = FromProto(response.server_time());
  std::vector<std::vector<std::string>> rows = {
      {"USER", "STATUS", "LAST SEEN", "SESSIONS"}};
  for (const v1::UserPresence& user : response.users()) {
    std::string last_seen = "never";
    if (user.has_last_seen()) {
      const absl::Time seen = FromProto(user.last_seen());
      last_seen =
          absl::StrCat(FormatAgo(seen, now), " (", FormatIsoTime(seen), ")");
    }
    rows.push_back({absl::StrCat(user.user_id()),
                    user.status() == v1::STATUS_ONLINE ? "online" : "offline",
                    last_seen, absl::StrCat(user.live_sessions())});
  }
  size_t widths[3] = {0, 0, 0};
  for (const auto& row : rows) {
    for (int i = 0; i < 3; ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    absl::StrAppendFormat(&out, "%-*s  %-*s  %-*s  %s\n",
                          static_cast<int>(widths[0]), row[0],
                          static_cast<int>(widths[1]), row[1],
                          static_cast<int>(widths[2]), row[2], row[3]);
  }
  return out;
}

std::vector<v1::WatchPresenceResponse> WatchEventsOf(
    const v1::WatchPresenceResponse& message) {
  std::vector<v1::WatchPresenceResponse> events;
  if (!message.has_changes()) {
    events.push_back(message);
    if (message.has_change() && message.change().sequence() == 0) {
      events.back().mutable_change()->set_sequence(message.sequence());
    }
    return events;
  }
  events.reserve(message.changes().changes_size());
  for (const v1::PresenceChange& change : message.changes().changes()) {
    v1::WatchPresenceResponse& event = events.emplace_back();
    event.set_epoch(message.epoch());
    event.set_sequence(change.sequence());
    *event.mutable_change() = change;
  }
  return events;
}

}  // namespace presence
