#ifndef PRESENCE_SERVICE_SESSION_CHANGE_H_
#define PRESENCE_SERVICE_SESSION_CHANGE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "service/rich_status.h"

namespace presence {

// One change to a user's durable presence state, as the registry applied it.
struct SessionChange {
  enum class Kind {
    kHeartbeat,       // session_id's last_heartbeat became `at`
    kEndSession,      // session_id ended at `at`
    kEndAllSessions,  // every session of the user ended at `at`
    kSetStatus,       // the user's StatusChoice became `status`
  };
  Kind kind;
  int64_t user_id;
  std::string session_id;  // unused for kEndAllSessions
  absl::Time at;
  // The user's last_seen after the change.
  absl::Time last_seen;
  // kHeartbeat: the session's last activity (the latest heartbeat that did
  // not say idle), at most `at`.
  absl::Time last_active = absl::InfinitePast();
  // kSetStatus: what the user's choice became (empty(): none left).
  std::shared_ptr<const StatusChoice> status = nullptr;
};

// Receives every change the registry applies. The registry calls Record()
// with the user's shard lock held, so for each user the calls come in the
// order the changes were applied; an implementation must be quick and must
// not call back into the registry.
class ChangeSink {
 public:
  virtual ~ChangeSink() = default;
  // Returns a ticket (> 0) that identifies this change to the sink, e.g. to
  // wait until it is durable.
  virtual uint64_t Record(const SessionChange& change) = 0;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_SESSION_CHANGE_H_
