// Cross-origin requests (CORS) from the pages of other origins that
// --cors_origins lists.
#ifndef PRESENCE_GATEWAY_CORS_H_
#define PRESENCE_GATEWAY_CORS_H_

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace presence::rest {

class CorsPolicy {
 public:
  // `origins`: exact origins, comma-separated, each scheme://host[:port]
  // with scheme http or https and no path (`https://chat.example.com`,
  // `http://localhost:3000`). Empty: same-origin only, no CORS headers.
  // INVALID_ARGUMENT naming the bad item and what an origin looks like.
  static absl::StatusOr<CorsPolicy> Parse(absl::string_view origins);

  // Whether a page of `origin` (the Origin request header) may call us.
  bool Allows(absl::string_view origin) const;
  bool enabled() const { return !origins_.empty(); }

  static constexpr char kAllowHeaders[] =
      "Authorization, Content-Type, X-Presence-Session";
  // How long a browser may cache a preflight's answer. Browsers cap it
  // (Chromium at 2 hours); 10 minutes lets a changed list take effect soon.
  static constexpr char kMaxAgeSeconds[] = "600";

 private:
  absl::flat_hash_set<std::string> origins_;
};

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_CORS_H_
