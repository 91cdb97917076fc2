#ifndef PRESENCE_TOOLS_PRESENCECTL_FORMAT_H_
#define PRESENCE_TOOLS_PRESENCECTL_FORMAT_H_

#include <string>

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

}  // namespace presence

#endif  // PRESENCE_TOOLS_PRESENCECTL_FORMAT_H_
