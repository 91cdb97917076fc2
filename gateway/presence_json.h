// The JSON of rich presence (docs: gateway/README.md, "Rich presence"), the
// same in every answer and event: status, availability and custom status
// as browsers read them. Ids are exact integers (json.h).
#ifndef PRESENCE_GATEWAY_PRESENCE_JSON_H_
#define PRESENCE_GATEWAY_PRESENCE_JSON_H_

#include <cstdint>
#include <string>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "presence/v1/presence.pb.h"

namespace presence::rest {

// What others see of a user: "online", "away", "dnd" or "offline" (a
// status this proxy does not know yet counts as "online" if presenced
// lists the user as online, see IsOnline()).
const char* StatusName(v1::Status status);

// ONLINE, AWAY and DND: online in the classic sense (online-users, the
// `change` events). An unknown status is taken as online: presenced sends
// STATUS_OFFLINE for everyone who appears offline.
bool IsOnline(v1::Status status);

// "auto", "dnd" or "invisible".
const char* AvailabilityName(v1::Availability availability);

// An RFC 3339 string, or null when `has` is false.
google::protobuf::Value TimeValue(bool has,
                                  const google::protobuf::Timestamp& time);

// {"text": "...", "emoji": "...", "expires_at": "..." | null}, or null when
// `has` is false.
google::protobuf::Value CustomStatusValue(bool has,
                                          const v1::CustomStatus& status);

// {"status": "dnd", "last_seen": "..." | null, "availability": "dnd",
//  "availability_until": "..." | null, "custom_status": {...} | null}: one
// user as the viewer sees them, without the user_id (an exact integer,
// which a Struct cannot hold: see UserPresenceJson()).
google::protobuf::Struct UserPresenceFields(const v1::UserPresence& presence);

// UserPresenceFields() with "user_id" first.
std::string UserPresenceJson(const v1::UserPresence& presence);

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_PRESENCE_JSON_H_
