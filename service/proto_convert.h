#ifndef PRESENCE_SERVICE_PROTO_CONVERT_H_
#define PRESENCE_SERVICE_PROTO_CONVERT_H_

// The registry's and the hub's results as the API's messages, and the API's
// requests as the registry takes them: the one place where a domain type
// meets its presence.v1 counterpart, for every handler and the watch
// streams.

#include "presence/v1/presence.pb.h"
#include "service/event_hub.h"
#include "service/presence_registry.h"

namespace presence {

// `rich`: AWAY and DND in `status`; otherwise ONLINE for either, as clients
// before rich presence know it. The other fields are filled either way.
void FillPresence(const UserPresenceInfo& info, bool rich,
                  v1::UserPresence* out);

// One change of a watch stream. Not `rich`: only online/offline and the
// reasons clients before rich presence know (going or ceasing to be
// invisible reads as a logout or a heartbeat), and none of the rich fields.
void FillChange(const SequencedEvent& e, bool rich, v1::PresenceChange* change);

// A SetStatus request that ValidateRequest() passed, as the registry's
// update.
StatusUpdate ToStatusUpdate(const v1::SetStatusRequest& request);

}  // namespace presence

#endif  // PRESENCE_SERVICE_PROTO_CONVERT_H_
