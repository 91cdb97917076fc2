#include "tools/presencectl_format.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

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

std::string StatusName(v1::Status status) {
  switch (status) {
    case v1::STATUS_ONLINE:
      return "online";
    case v1::STATUS_AWAY:
      return "away";
    case v1::STATUS_DND:
      return "dnd";
    case v1::STATUS_OFFLINE:
      return "offline";
    default:
      return absl::StrCat("unknown(", static_cast<int>(status), ")");
  }
}

std::string FormatAvailability(const v1::UserPresence& user) {
  std::string out;
  switch (user.availability()) {
    case v1::AVAILABILITY_DND:
      out = "dnd";
      break;
    case v1::AVAILABILITY_INVISIBLE:
      out = "invisible";
      break;
    case v1::AVAILABILITY_AUTO:
    case v1::AVAILABILITY_UNSPECIFIED:
      out = "auto";
      break;
    default:
      out =
          absl::StrCat("unknown(", static_cast<int>(user.availability()), ")");
      break;
  }
  if (user.has_availability_until()) {
    absl::StrAppend(&out, " until ",
                    FormatIsoTime(FromProto(user.availability_until())));
  }
  return out;
}

namespace {

// ":coffee: Lunch (until <ISO time>)", or "" for none.
std::string CustomStatusText(const v1::CustomStatus& status) {
  std::vector<absl::string_view> parts;
  if (!status.emoji().empty()) parts.push_back(status.emoji());
  if (!status.text().empty()) parts.push_back(status.text());
  std::string out = absl::StrJoin(parts, " ");
  if (status.has_expires_at()) {
    absl::StrAppend(&out, " (until ",
                    FormatIsoTime(FromProto(status.expires_at())), ")");
  }
  return out;
}

const char* ReasonText(v1::Reason reason) {
  switch (reason) {
    case v1::REASON_MARK_OFFLINE:
      return " (logout)";
    case v1::REASON_EXPIRED:
      return " (expired)";
    case v1::REASON_ACTIVITY:
      return " (activity)";
    case v1::REASON_STATUS_SET:
      return " (status set)";
    case v1::REASON_STATUS_EXPIRED:
      return " (status expired)";
    default:  // a heartbeat (the usual way online), or newer than this code
      return "";
  }
}

}  // namespace

std::string FormatCustomStatus(const v1::UserPresence& user) {
  if (!user.has_custom_status()) return "-";
  return CustomStatusText(user.custom_status());
}

std::string FormatPresenceTable(const v1::GetPresenceResponse& response) {
  const absl::Time now = FromProto(response.server_time());
  std::vector<std::vector<std::string>> rows = {{"USER", "STATUS", "LAST SEEN",
                                                 "SESSIONS", "AVAILABILITY",
                                                 "CUSTOM STATUS"}};
  for (const v1::UserPresence& user : response.users()) {
    std::string last_seen = "never";
    if (user.has_last_seen()) {
      const absl::Time seen = FromProto(user.last_seen());
      last_seen =
          absl::StrCat(FormatAgo(seen, now), " (", FormatIsoTime(seen), ")");
    }
    rows.push_back({absl::StrCat(user.user_id()), StatusName(user.status()),
                    last_seen, absl::StrCat(user.live_sessions()),
                    FormatAvailability(user), FormatCustomStatus(user)});
  }
  // Every column but the last is padded to its widest cell.
  const size_t columns = rows[0].size();
  std::vector<size_t> widths(columns, 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i + 1 < columns; ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    for (size_t i = 0; i + 1 < columns; ++i) {
      absl::StrAppendFormat(&out, "%-*s  ", static_cast<int>(widths[i]),
                            row[i]);
    }
    absl::StrAppend(&out, row.back(), "\n");
  }
  return out;
}

std::string FormatStatusLine(const v1::SetStatusResponse& response) {
  const v1::UserPresence& user = response.presence();
  return absl::StrCat(
      user.user_id(), " ", StatusName(user.status()), "; availability ",
      FormatAvailability(user), "; ",
      user.has_custom_status()
          ? absl::StrCat("custom status ", FormatCustomStatus(user))
          : "no custom status");
}

std::string FormatChange(const v1::PresenceChange& change) {
  std::string out =
      absl::StrCat(change.user_id(), " ", StatusName(change.status()));
  if (change.has_availability_until()) {
    absl::StrAppend(&out, " until ",
                    FormatIsoTime(FromProto(change.availability_until())));
  }
  absl::StrAppend(&out, ReasonText(change.reason()));
  if (change.has_custom_status()) {
    absl::StrAppend(&out, "; custom status ",
                    CustomStatusText(change.custom_status()));
  }
  return out;
}

std::string FormatSnapshot(const v1::Snapshot& snapshot) {
  const bool rich = snapshot.users_size() == snapshot.online_users_size();
  std::vector<std::string> users;
  users.reserve(snapshot.online_users_size());
  for (int i = 0; i < snapshot.online_users_size(); ++i) {
    std::string user = absl::StrCat(snapshot.online_users(i));
    const v1::Status status =
        rich ? snapshot.users(i).status() : v1::STATUS_ONLINE;
    if (status != v1::STATUS_ONLINE) {
      absl::StrAppend(&user, "(", StatusName(status), ")");
    }
    users.push_back(std::move(user));
  }
  return absl::StrCat("snapshot: ", snapshot.online_users_size(), " online",
                      users.empty() ? "" : ": ", absl::StrJoin(users, " "));
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

absl::StatusOr<StatusEnd> ParseStatusEnd(absl::string_view flag,
                                         absl::string_view text) {
  absl::Time at;
  std::string ignored;
  if (absl::ParseTime(absl::RFC3339_full, text, &at, &ignored)) return at;
  absl::Duration after;
  if (absl::ParseDuration(text, &after)) {
    if (after <= absl::ZeroDuration() || after == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, ": '", text, "' is not a positive, finite duration"));
    }
    return after;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(flag, ": '", text,
                   "' is neither an RFC 3339 time (such as "
                   "2026-11-28T10:30:00Z) nor a duration (such as 90m)"));
}

absl::StatusOr<v1::SetStatusRequest> StatusRequest(int64_t user,
                                                   const StatusFlags& flags) {
  v1::SetStatusRequest request;
  request.set_user_id(user);
  const int availabilities =
      int{flags.dnd} + int{flags.invisible} + int{flags.automatic};
  if (availabilities > 1) {
    return absl::InvalidArgumentError(
        "status takes one of --dnd, --invisible and --auto");
  }
  if (flags.dnd) request.set_availability(v1::AVAILABILITY_DND);
  if (flags.invisible) request.set_availability(v1::AVAILABILITY_INVISIBLE);
  if (flags.automatic) request.set_availability(v1::AVAILABILITY_AUTO);
  if (!flags.until.empty()) {
    if (!flags.dnd && !flags.invisible) {
      return absl::InvalidArgumentError(
          "--until is when --dnd or --invisible ends; give one of them (for "
          "a custom status that clears itself, use --expires)");
    }
    absl::StatusOr<StatusEnd> end = ParseStatusEnd("--until", flags.until);
    if (!end.ok()) return end.status();
    if (const absl::Time* at = std::get_if<absl::Time>(&*end)) {
      *request.mutable_availability_until() = ToProto(*at);
    } else {
      *request.mutable_availability_for() =
          ToProto(std::get<absl::Duration>(*end));
    }
  }
  const bool custom = !flags.text.empty() || !flags.emoji.empty();
  if (custom && flags.clear) {
    return absl::InvalidArgumentError(
        "--clear removes the custom status; it does not go with --text or "
        "--emoji, which replace it");
  }
  if (!flags.expires.empty() && !custom) {
    return absl::InvalidArgumentError(
        "--expires is when the custom status of --text or --emoji clears "
        "itself; give one of them (for --dnd or --invisible, use --until)");
  }
  if (custom) {
    v1::CustomStatus* status = request.mutable_custom_status();
    status->set_text(flags.text);
    status->set_emoji(flags.emoji);
    if (!flags.expires.empty()) {
      absl::StatusOr<StatusEnd> end =
          ParseStatusEnd("--expires", flags.expires);
      if (!end.ok()) return end.status();
      if (const absl::Time* at = std::get_if<absl::Time>(&*end)) {
        *status->mutable_expires_at() = ToProto(*at);
      } else {
        *request.mutable_custom_status_for() =
            ToProto(std::get<absl::Duration>(*end));
      }
    }
  }
  request.set_clear_custom_status(flags.clear);
  if (availabilities == 0 && !custom && !flags.clear) {
    return absl::InvalidArgumentError(
        "status needs something to set: --dnd, --invisible or --auto "
        "(optionally --until=TIME), --text and/or --emoji (optionally "
        "--expires=TIME), or --clear");
  }
  return request;
}

}  // namespace presence
