// The files presence-rest serves itself, compiled in from gateway/web/
// so that the binary needs nothing beside it.
#ifndef PRESENCE_GATEWAY_ASSETS_H_
#define PRESENCE_GATEWAY_ASSETS_H_

#include "absl/strings/string_view.h"

namespace presence::rest {

extern const absl::string_view kIndexHtml;   // the status page, at /
extern const absl::string_view kPresenceJs;  // gateway/web/presence.js

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_ASSETS_H_
