#ifndef PRESENCE_FUZZ_REGISTRY_COMPARISON_H_
#define PRESENCE_FUZZ_REGISTRY_COMPARISON_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "fuzz/checking_sinks.h"
#include "fuzz/registry_oracle.h"
#include "service/clock.h"
#include "service/presence_registry.h"
#include "service/session_change.h"

namespace presence::fuzz {

// A PresenceRegistry on a FakeClock, and a RegistryOracle driven in step
// with it: each operation is applied to both, and every answer, change and
// event of the registry is compared with the oracle's (FUZZ_CHECK: a
// difference aborts). After the clock has stepped back, answers are no
// longer compared with the oracle (see its "forgetting"); the registry must
// still agree with itself (ListOnline with GetPresence, events, stats).
//
// The registry has no rich presence (away_after = InfiniteDuration(), no
// SetStatus), as the oracle has none. The operations take valid arguments
// only: request validation is the caller's.
class RegistryComparison {
 public:
  // `window` may hold a sub-microsecond part, which the registry must drop.
  RegistryComparison(absl::Time start, absl::Duration window,
                     int max_sessions_per_user);
  RegistryComparison(const RegistryComparison&) = delete;
  RegistryComparison& operator=(const RegistryComparison&) = delete;

  // The clock, and the registry's now (the clock in whole microseconds).
  absl::Time ClockNow() const { return clock_.Now(); }
  absl::Time Now() const;
  // The window as the registry keeps it: whole microseconds.
  absl::Duration window() const { return window_; }
  const RegistryOracle& oracle() const { return oracle_; }
  // Users that had a session (restored or by heartbeat), or a last_seen.
  const std::set<int64_t>& known_users() const { return known_; }

  // Moves the clock (not more than a thousand years from the start: the
  // registry's int64 microseconds end around the year 294,000).
  void AdvanceTo(absl::Time t);

  // Start-up: a session over the session limit is left out.
  void RestoreSession(int64_t user_id, const std::string& session_id,
                      absl::Time last_heartbeat);
  void RestoreLastSeen(int64_t user_id, absl::Time last_seen);
  // After the restores: nothing recorded or published, the users seeded
  // online are the online ones.
  void CheckRestored();

  void Heartbeat(int64_t user_id, const std::string& session_id);
  void MarkOffline(int64_t user_id, const std::string& session_id);
  void GetPresence(const std::vector<int64_t>& user_ids);
  void Sweep();
  // One ListOnline page (`only` as asked, duplicates and all).
  OnlinePage ListPage(const std::vector<int64_t>& only, int64_t after,
                      int page_size);
  // A page of everyone online, in a listing from the first page to the last;
  // then CheckListedEveryone() with all the pages' users.
  OnlinePage ListEveryonePage(int64_t after, int page_size);
  void CheckListedEveryone(const std::vector<int64_t>& listed);

  // After every operation: stats() and NextExpiry() agree with the users
  // announced online.
  void CheckGlobal();

 private:
  void CheckEviction(int64_t user_id, const std::string& session_id,
                     const SessionChange& ended,
                     const RegistryOracle::HeartbeatOutcome& expected);
  // What holds whether the clock stepped back or not.
  void CheckHeartbeatChange(int64_t user_id, const std::string& session_id,
                            const HeartbeatResult& result,
                            const SessionChange& change);
  void CheckMarkOfflineAnswer(
      int64_t user_id, const MarkOfflineResult& result,
      const std::vector<SessionChange>& changes,
      const RegistryOracle::MarkOfflineOutcome& expected);
  void CheckPageShape(const OnlinePage& page, const std::vector<int64_t>& only,
                      int64_t after, int page_size) const;
  void CheckEvents(const std::vector<PresenceEvent>& got,
                   const std::vector<PresenceEvent>& expected) const;
  // EXPIRED events of a sweep (or a listing of everyone): each for a user
  // announced online whose window has ended, at its end.
  void CheckExpiries(const std::vector<PresenceEvent>& events,
                     const std::set<int64_t>& announced_before,
                     absl::Time now) const;
  // Who GetPresence() calls online among the known users.
  std::vector<int64_t> OnlineByGetPresence() const;

  const absl::Time start_;
  FakeClock clock_;
  const absl::Duration window_;
  const int max_sessions_;  // per user; 0: no limit
  RegistryOracle oracle_;
  RecordingChanges changes_;
  CheckingEvents events_;
  PresenceRegistry registry_;
  // False once the clock stepped back.
  bool exact_ = true;
  std::set<int64_t> known_;
};

}  // namespace presence::fuzz

#endif  // PRESENCE_FUZZ_REGISTRY_COMPARISON_H_
