// The files presence-rest serves itself, compiled in from client/web/ and
// tools/rest/static/ so that the binary needs nothing beside it.
#ifndef PRESENCE_TOOLS_REST_ASSETS_H_
#define PRESENCE_TOOLS_REST_ASSETS_H_

#include "absl/strings/string_view.h"

namespace presence::rest {

extern const absl::string_view kIndexHtml;   // the status page, at /
extern const absl::string_view kPresenceJs;  // client/web/presence.js

}  // namespace presence::rest

#endif  // PRESENCE_TOOLS_REST_ASSETS_H_
