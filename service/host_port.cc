#include "service/host_port.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace presence {

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text) {
  HostPort out;
  absl::string_view port;
  bool parsed = false;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close != absl::string_view::npos && close + 1 < text.size() &&
        text[close + 1] == ':') {
      out.host = std::string(text.substr(1, close - 1));
      port = text.substr(close + 2);
      parsed = true;
    }
  } else if (const size_t colon = text.rfind(':');
             colon != absl::string_view::npos) {
    out.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
    parsed = true;
  }
  if (!parsed) {
    return absl::InvalidArgumentError("the address must be HOST:PORT");
  }
  // Digits only: SimpleAtoi alone would take "+80" or " 80".
  if (port.empty() ||
      !std::all_of(port.begin(), port.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(port, &out.port) || out.port > 65535) {
    return absl::InvalidArgumentError(
        "the port must be a number from 0 to 65535");
  }
  return out;
}

std::string ShownHost(const HostPort& address) {
  return address.host.find(':') == std::string::npos
             ? address.host
             : absl::StrCat("[", address.host, "]");
}

}  // namespace presence
