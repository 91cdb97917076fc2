#ifndef PRESENCE_TOOLS_PRESENCECTL_FORMAT_H_
#define PRESENCE_TOOLS_PRESENCECTL_FORMAT_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "presence/v1/presence.pb.h"
#include "service/proto_time.h"

namespace presence {

// "2026-11-28T06:20:00Z" (UTC, seconds).
std::string FormatIsoTime(absl::Time t);

// How long before `now` `then` was: "just now", "42s ago", "3m ago", "5h ago",
// "2d ago"; "in 3m" if `then` is later than `now`.
std::string FormatAgo(absl::Time then, absl::Time now);

// A human-readable table of a GetPresence answer: user, online/offline, last
// seen ("3m ago (ISO time)", relative to the server's time), live sessions.
std::string FormatPresenceTable(const v1::GetPresenceResponse& response);

// What `presencectl watch --json` prints of a WatchPresence message, one
// line each: a ChangeBatch becomes one message per change, in order, each in
// the single `change` form with the change's own sequence (also as the
// message's), so that every line is one event, whatever the stream's
// batching. Any other message stays as it is (a change without its own
// sequence, from an older presenced, gets the message's).
std::vector<v1::WatchPresenceResponse> WatchEventsOf(
    const v1::WatchPresenceResponse& message);

}  // namespace presence

#endif  // PRESENCE_TOOLS_PRESENCECTL_FORMAT_H_
