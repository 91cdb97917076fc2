#ifndef PRESENCE_SERVICE_PRESENCE_EVENT_H_
#define PRESENCE_SERVICE_PRESENCE_EVENT_H_

#include <cstdint>

#include "absl/time/time.h"

namespace presence {

// A transition of one user's aggregate presence.
struct PresenceEvent {
  enum class Reason {
    kHeartbeat,    // offline -> online: a heartbeat
    kMarkOffline,  // online -> offline: the last live session was ended
    kExpired,      // online -> offline: the last live session left the window
  };
  static constexpr int kNumReasons = 3;
  int64_t user_id;
  bool online;
  Reason reason;
  absl::Time at;
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
