#ifndef PRESENCE_SERVICE_RICH_STATUS_H_
#define PRESENCE_SERVICE_RICH_STATUS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"

namespace presence {

// Rich presence's domain types (docs/rich-presence.md), shared by the
// registry, the store and the hub; the API's enums map onto them in the
// service.

// What others see of a user. The values are stored in UserState's flag bits
// (0 must be offline: a new record is offline).
enum class PublicStatus : uint8_t {
  kOffline = 0,
  kOnline = 1,  // some live session was active within --away_after
  kAway = 2,    // every live session idle for --away_after
  kDnd = 3,     // online, with availability DND
};

// What the user chose. Stored: the numbers are the store's.
enum class Availability : uint8_t {
  kAuto = 0,
  kDnd = 1,
  kInvisible = 2,
};

struct CustomStatus {
  std::string text;
  std::string emoji;
  absl::Time expires_at = absl::InfiniteFuture();  // InfiniteFuture: never

  bool operator==(const CustomStatus& o) const {
    return text == o.text && emoji == o.emoji && expires_at == o.expires_at;
  }
};

// Everything a user set (SetStatus), as kept in memory and in the store.
struct StatusChoice {
  Availability availability = Availability::kAuto;
  // When a DND or INVISIBLE availability returns to AUTO.
  absl::Time availability_until = absl::InfiniteFuture();
  std::optional<CustomStatus> custom;
  // Others see last_seen no later than this (InfiniteFuture: no cap): set
  // when the user goes invisible, so their last_seen as others see it stops
  // there; kept after invisibility ends until the user is seen again (a
  // heartbeat), so it does not reveal what they did while invisible.
  absl::Time last_seen_cap = absl::InfiniteFuture();

  // Nothing set: the user needs no rich state.
  bool empty() const {
    return availability == Availability::kAuto && !custom.has_value() &&
           last_seen_cap == absl::InfiniteFuture();
  }
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_RICH_STATUS_H_
