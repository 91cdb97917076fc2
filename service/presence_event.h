#ifndef PRESENCE_SERVICE_PRESENCE_EVENT_H_
#define PRESENCE_SERVICE_PRESENCE_EVENT_H_

#include <cstdint>
#include <memory>

#include "absl/time/time.h"
#include "service/rich_status.h"

namespace presence {

// A transition of one user's aggregate presence, as others see it.
struct PresenceEvent {
  enum class Reason {
    kHeartbeat,      // offline -> online: a heartbeat
    kMarkOffline,    // online -> offline: the last live session was ended
    kExpired,        // online -> offline: the last live session left the window
    kActivity,       // online <-> away
    kStatusSet,      // SetStatus changed what others see
    kStatusExpired,  // an availability or custom status reached its end
  };
  static constexpr int kNumReasons = 6;
  int64_t user_id;
  bool online;
  Reason reason;
  absl::Time at;
  // Rich presence: the status after the event, and whether `online` did not
  // change (a change of status or custom status only: rich watchers only).
  PublicStatus status = online ? PublicStatus::kOnline : PublicStatus::kOffline;
  bool status_only = false;
  // While DND: when it ends (InfiniteFuture: until changed).
  absl::Time availability_until = absl::InfiniteFuture();
  // The custom status others see after the event (null: none).
  std::shared_ptr<const CustomStatus> custom = nullptr;
};

// Receives every transition. The registry calls it with the user's shard
// lock held, so for each user the events come in the order they happened;
// an implementation must be quick and must not call back into the registry.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void Publish(const PresenceEvent& event) = 0;
  // Start-up only: the user is online (restored), without an event.
  virtual void SeedOnline(int64_t user_id) = 0;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_PRESENCE_EVENT_H_
