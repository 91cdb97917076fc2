// The body of POST /api/chat/status/ (gateway/README.md, "Rich presence"),
// read into presenced's SetStatusRequest.
#ifndef PRESENCE_GATEWAY_STATUS_BODY_H_
#define PRESENCE_GATEWAY_STATUS_BODY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "presence/v1/presence.pb.h"

namespace presence::rest {

// `body`, a JSON object with any of
//
//   "availability": "auto" | "dnd" | "invisible"
//   "until": RFC 3339 time, or "for": a duration ("90m", "2h", "1h30m", or
//       a number of seconds): when dnd or invisible returns to auto
//   "text", "emoji": the custom status (either may be left out)
//   "expires_at": RFC 3339 time, or "expires_in": a duration: when it
//       clears itself
//   "clear": true: remove the custom status
//
// (a member that is null counts as absent), as the request for `user_id`.
// INVALID_ARGUMENT, with a message that says what to send instead, for
// anything else: not a JSON object, an unknown member, a wrong type, a
// malformed time or duration, a duration that is not positive, until with
// for, an end without dnd or invisible, an expiry without a custom
// status, clear with a custom status, an empty custom status, or nothing
// to set. What presenced checks itself (a text over 100 characters, an
// emoji that is not one, an end in the past) it answers, also
// INVALID_ARGUMENT.
absl::StatusOr<v1::SetStatusRequest> ParseStatusBody(absl::string_view body,
                                                     int64_t user_id);

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_STATUS_BODY_H_
