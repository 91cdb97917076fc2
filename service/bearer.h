#ifndef PRESENCE_SERVICE_BEARER_H_
#define PRESENCE_SERVICE_BEARER_H_

#include <optional>

#include "absl/strings/string_view.h"

namespace presence {

// The token of an authorization value "Bearer <token>" (RFC 6750 section
// 2.1), without the whitespace around it; the scheme is case-insensitive (RFC
// 7235 section 2.1). nullopt when the value has another scheme or none. The
// token may be empty: whoever checks it says "invalid token", which is more
// useful to the caller than "must be 'Bearer TOKEN'" for "Bearer ".
// presenced's token check and presence-rest's JWT check both use it, so the
// two accept the same header.
std::optional<absl::string_view> BearerToken(absl::string_view authorization);

}  // namespace presence

#endif  // PRESENCE_SERVICE_BEARER_H_
