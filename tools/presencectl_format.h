#ifndef PRESENCE_TOOLS_PRESENCECTL_FORMAT_H_
#define PRESENCE_TOOLS_PRESENCECTL_FORMAT_H_

// presencectl's text: what it prints of presenced's answers, and the
// command line of `status`, which it turns into a SetStatusRequest. No I/O,
// so that every rule here has a unit test.

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "presence/v1/presence.pb.h"
#include "service/proto_time.h"

namespace presence {

// "2026-11-28T06:20:00Z" (UTC, seconds).
std::string FormatIsoTime(absl::Time t);

// How long before `now` `then` was: "just now", "42s ago", "3m ago", "5h ago",
// "2d ago"; "in 3m" if `then` is later than `now`.
std::string FormatAgo(absl::Time then, absl::Time now);

// "online", "away", "dnd", "offline"; "unknown(N)" for a value newer than
// this presencectl.
std::string StatusName(v1::Status status);

// A user's availability: "auto", "dnd" or "invisible", with " until <ISO
// time>" when it ends on its own. UNSPECIFIED (a presenced older than rich
// presence) is "auto": that is what such a server applies.
std::string FormatAvailability(const v1::UserPresence& user);

// A custom status: ":coffee: Lunch", with " (until <ISO time>)" when it
// clears itself; "-" for none.
std::string FormatCustomStatus(const v1::UserPresence& user);

// A human-readable table of a GetPresence answer: user, status (online,
// away, dnd, offline), last seen ("3m ago (ISO time)", relative to the
// server's time), live sessions, availability, custom status.
std::string FormatPresenceTable(const v1::GetPresenceResponse& response);

// What `presencectl status` prints of SetStatus's answer, the user's own
// view: "42 dnd; availability dnd until <ISO time>; custom status :coffee:
// Lunch".
std::string FormatStatusLine(const v1::SetStatusResponse& response);

// A line of `presencectl watch` after the change's time: "42 online",
// "42 offline (logout)", "42 offline (expired)", and on rich streams "42 away
// (activity)", "42 dnd until <ISO time> (status set)", "42 online (status
// expired)", each followed by "; custom status :coffee: Lunch" when the
// change carries one.
std::string FormatChange(const v1::PresenceChange& change);

// A line of `presencectl watch` for a snapshot, after its time: "snapshot: 3
// online: 7 9 42". With Snapshot.users (a rich stream) a user who is not
// plainly online says how: "7 9(dnd) 42(away)".
std::string FormatSnapshot(const v1::Snapshot& snapshot);

// What `presencectl watch --json` prints of a WatchPresence message, one
// line each: a ChangeBatch becomes one message per change, in order, each in
// the single `change` form with the change's own sequence (also as the
// message's), so that every line is one event, whatever the stream's
// batching. Any other message stays as it is (a change without its own
// sequence, from an older presenced, gets the message's).
std::vector<v1::WatchPresenceResponse> WatchEventsOf(
    const v1::WatchPresenceResponse& message);

// When something set with `presencectl status` ends (--until, --expires):
// a moment, or a duration from presenced's now. A duration is sent as such
// (availability_for, custom_status_for) so that the server's clock, not
// this machine's, decides when it ends.
using StatusEnd = std::variant<absl::Time, absl::Duration>;

// TIME as the command line gives it: RFC 3339 ("2026-11-28T10:30:00Z",
// "2026-11-28T11:30:00+01:00") or a positive duration ("90m", "1h30m",
// "45s"). INVALID_ARGUMENT, naming `flag`, for anything else.
absl::StatusOr<StatusEnd> ParseStatusEnd(absl::string_view flag,
                                         absl::string_view text);

// The flags of `presencectl status USER`, as given (an empty string: not
// given).
struct StatusFlags {
  bool dnd = false;
  bool invisible = false;
  bool automatic = false;  // --auto
  std::string until;       // with --dnd or --invisible
  std::string text;
  std::string emoji;
  std::string expires;  // with --text or --emoji
  bool clear = false;   // removes the custom status
};

// The SetStatusRequest that `presencectl status USER` sends, or
// INVALID_ARGUMENT saying which flags do not go together: at most one of
// --dnd, --invisible, --auto; --until only with --dnd or --invisible;
// --expires only with --text or --emoji; --clear not with either; and at
// least something to set. What the server checks (text length, emoji form,
// an end in the past) is left to it.
absl::StatusOr<v1::SetStatusRequest> StatusRequest(int64_t user,
                                                   const StatusFlags& flags);

}  // namespace presence

#endif  // PRESENCE_TOOLS_PRESENCECTL_FORMAT_H_
