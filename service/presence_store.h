#ifndef PRESENCE_SERVICE_PRESENCE_STORE_H_
#define PRESENCE_SERVICE_PRESENCE_STORE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "service/rich_status.h"
#include "service/session_change.h"

namespace presence {

struct StoredSession {
  int64_t user_id;
  std::string session_id;
  absl::Time last_heartbeat;
  // InfinitePast: at last_heartbeat (a row written before rich presence).
  absl::Time last_active = absl::InfinitePast();
};

struct StoredLastSeen {
  int64_t user_id;
  absl::Time last_seen;
};

struct StoredStatus {
  int64_t user_id;
  StatusChoice choice;
};

struct StoredState {
  std::vector<StoredSession> live_sessions;
  std::vector<StoredLastSeen> last_seen;
  std::vector<StoredStatus> statuses;
};

// Durable presence state. The seam where storage faults are injected in
// tests. Not thread-safe: presenced calls Load() once at start-up and then
// Commit() and Verify() from its single writer thread only.
class PresenceStore {
 public:
  virtual ~PresenceStore() = default;

  // Returns the sessions with last_heartbeat > `live_after`, every user's
  // last_seen, and what users chose (rich presence). Sessions at or before it
  // have expired: they are folded into their users' last_seen and deleted.
  virtual absl::StatusOr<StoredState> Load(absl::Time live_after) = 0;

  // Applies `changes` in order, atomically: on error none of them is durable.
  // An error must leave the store usable: the writer retries the same changes
  // (with newer ones) until a commit succeeds, so once the fault is gone (disk
  // space freed, lock released) a later call must be able to succeed.
  //
  // FAILED_PRECONDITION means the store can never commit again, e.g. its
  // file was deleted or replaced while open: commits would go to a file
  // nobody will read. The writer then stops accepting changes for good.
  virtual absl::Status Commit(absl::Span<const SessionChange> changes) = 0;

  // Asked by an idle writer now and then: FAILED_PRECONDITION, as Commit()
  // would return it, if the store can never commit again; else OK. Cheap
  // (a stat, not a transaction).
  virtual absl::Status Verify() { return absl::OkStatus(); }
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_PRESENCE_STORE_H_
