#include "service/bearer.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace presence {

std::optional<absl::string_view> BearerToken(absl::string_view authorization) {
  constexpr absl::string_view kScheme = "Bearer ";
  if (!absl::StartsWithIgnoreCase(authorization, kScheme)) return std::nullopt;
  return absl::StripAsciiWhitespace(authorization.substr(kScheme.size()));
}

}  // namespace presence
