#ifndef PRESENCE_SERVICE_HOST_PORT_H_
#define PRESENCE_SERVICE_HOST_PORT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace presence {

// A listen address as the flags take it.
struct HostPort {
  std::string host;  // a name or an address, without brackets; may be empty
  int port = 0;      // 0 to 65535
};

// Parses HOST:PORT, where HOST is a name, an IPv4 address, an IPv6 address
// in brackets ([::1]), or empty, and PORT is 0 to 65535 in decimal digits.
// INVALID_ARGUMENT "the address must be HOST:PORT" or "the port must be a
// number from 0 to 65535"; callers add their context (the flag, the text).
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text);

// HOST as given in HOST:PORT: an IPv6 address back in brackets.
std::string ShownHost(const HostPort& address);

}  // namespace presence

#endif  // PRESENCE_SERVICE_HOST_PORT_H_
