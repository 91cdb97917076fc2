#include "gateway/cors.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/host_port.h"

namespace presence::rest {
namespace {

absl::Status BadOrigin(absl::string_view item, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "--cors_origins: '", item, "' is not an origin (", why,
      "); give scheme://host[:port], e.g. https://chat.example.com,"
      "http://localhost:3000"));
}

// Browsers send the Origin header serialised: lower-case scheme and host,
// no default port, no trailing slash. The configured origins are brought
// to that form, so that the check is an exact comparison.
absl::StatusOr<std::string> CanonicalOrigin(absl::string_view item) {
  std::string lower = absl::AsciiStrToLower(item);
  absl::string_view rest = lower;
  absl::string_view scheme;
  if (absl::ConsumePrefix(&rest, "https://")) {
    scheme = "https";
  } else if (absl::ConsumePrefix(&rest, "http://")) {
    scheme = "http";
  } else {
    return BadOrigin(item, "the scheme must be http:// or https://");
  }
  if (rest.empty()) return BadOrigin(item, "no host");
  if (absl::StrContains(rest, '/') || absl::StrContains(rest, '?') ||
      absl::StrContains(rest, '#')) {
    return BadOrigin(item, "an origin has no path, not even '/'");
  }
  if (rest == "*" || absl::StrContains(rest, '@')) {
    return BadOrigin(item, "a host is needed, exactly");
  }
  // With a port (after the host, or after an IPv6 address's bracket), the
  // one HOST:PORT parser of the project checks it.
  const size_t colon = rest.rfind(':');
  const bool has_port = colon != absl::string_view::npos &&
                        (rest.front() != '[' || rest.find(']') < colon);
  if (!has_port) return std::string(lower);
  absl::StatusOr<HostPort> host_port = ParseHostPort(rest);
  if (!host_port.ok()) return BadOrigin(item, host_port.status().message());
  if (host_port->host.empty() || host_port->port == 0) {
    return BadOrigin(item, "a host and a port from 1 to 65535 are needed");
  }
  const int default_port = scheme == "https" ? 443 : 80;
  if (host_port->port == default_port) {
    return absl::StrCat(scheme, "://", ShownHost(*host_port));
  }
  return std::string(lower);
}

}  // namespace

absl::StatusOr<CorsPolicy> CorsPolicy::Parse(absl::string_view origins) {
  CorsPolicy policy;
  if (absl::StripAsciiWhitespace(origins).empty()) return policy;
  for (absl::string_view item : absl::StrSplit(origins, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item.empty()) return BadOrigin(item, "an empty item");
    absl::StatusOr<std::string> origin = CanonicalOrigin(item);
    if (!origin.ok()) return origin.status();
    policy.origins_.insert(*std::move(origin));
  }
  return policy;
}

bool CorsPolicy::Allows(absl::string_view origin) const {
  return origins_.contains(origin);
}

}  // namespace presence::rest
