#ifndef PRESENCE_FUZZ_REGISTRY_ORACLE_H_
#define PRESENCE_FUZZ_REGISTRY_ORACLE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "absl/types/span.h"
#include "service/presence_event.h"
#include "service/presence_registry.h"

namespace presence::fuzz {

// A reference model of PresenceRegistry's online/offline semantics
// (DESIGN.md), written as directly as they can be, to compare a registry
// with: a map of (user, session) -> last heartbeat, and each user's
// last_seen.
//
// What it models:
// - a user is online while now < last_heartbeat + online_window for one of
//   their sessions; exactly at the end of the window they are offline;
// - Heartbeat stamps the session with now, never earlier than its stamp (a
//   clock stepped back never shortens presence), and raises last_seen to now;
// - MarkOffline ends the session, or every session of the user for an empty
//   session_id; last_seen becomes now if a live session was ended;
// - max_sessions_per_user: when a heartbeat must, or may, end the user's
//   oldest live session, and which sessions count as the oldest;
// - the events a Heartbeat or MarkOffline publishes (an EXPIRED one first,
//   at the end of the window, if the watchers were still told "online");
// - GetPresence's truth of a user, ListOnline's pages, and bounds on the
//   number of sessions the registry holds;
// - start-up: RestoreSession and RestoreLastSeen.
//
// What it does not model (compare none of it with the oracle):
// - rich presence: AWAY, DND, INVISIBLE, custom statuses, SetStatus, idle
//   heartbeats and viewers. Every heartbeat is active and everyone sees the
//   truth, so the registry compared must never go AWAY (away_after =
//   absl::InfiniteDuration()) and get no SetStatus;
// - forgetting: the oracle keeps every session, expired or not, where the
//   registry forgets expired ones (at a sweep, or its next operation on the
//   user). The two agree while the clock only moves forward; once it steps
//   back, a session the registry forgot may be live again in the oracle, and
//   their answers rightly differ (stop comparing then, but keep applying
//   every operation to both);
// - when an expiry is announced (SweepExpired, a full ListOnline, or the
//   user's next operation): callers say what the watchers were last told;
// - the registry's bookkeeping: NextExpiry(), the exact stats(), change
//   tickets, the ChangeSink's records, page tokens, request validation,
//   AdoptLastSeen;
// - time resolution: the registry keeps whole microseconds; the window and
//   every time given here must already be whole microseconds.
//
// A value type; not thread-safe.
class RegistryOracle {
 public:
  // What a heartbeat does to the session limit.
  enum class Eviction {
    kNone,      // must end no session
    kMaybe,     // may end the oldest live one: the session has expired, and
                // the registry may or may not have forgotten it
    kRequired,  // must end the oldest live one: a new session over the limit
  };

  // What Heartbeat at `now` must answer and publish.
  struct HeartbeatOutcome {
    absl::Time online_until;  // of this session, after the stamp
    bool became_online = false;
    absl::Time last_seen;  // the user's, after it
    Eviction eviction = Eviction::kNone;
    // Before the heartbeat: the user's other live sessions, and which of
    // them are the oldest (the ones the limit may end).
    int other_live_sessions = 0;
    std::vector<std::string> oldest_live;
    absl::Time oldest_heartbeat = absl::InfiniteFuture();
    std::vector<PresenceEvent> events;
  };

  // What MarkOffline at `now` must answer and publish.
  struct MarkOfflineOutcome {
    int sessions_matching = 0;  // held by the oracle, live or expired
    int sessions_ended = 0;     // live ones
    bool still_online = false;
    bool went_offline = false;
    absl::Time last_seen;  // the user's, after it
    std::vector<PresenceEvent> events;
  };

  // `online_window` in whole microseconds, as the registry keeps it;
  // `max_sessions_per_user` 0 for no limit.
  RegistryOracle(absl::Duration online_window, int max_sessions_per_user);

  absl::Duration online_window() const { return window_; }

  // Start-up. A restored session over the limit is left out (restored state
  // was within it when it was written): returns false, and the caller must
  // not restore it into the registry either.
  bool RestoreSession(int64_t user_id, const std::string& session_id,
                      absl::Time last_heartbeat);
  void RestoreLastSeen(int64_t user_id, absl::Time last_seen);

  // The operations: each applies itself and returns what the registry must
  // have answered and published. `announced_online`: whether the watchers
  // were last told the user is online (an expiry not yet announced is
  // announced first).
  //
  // A session the limit ended is not ended here: the registry picks among
  // the equally old ones, and the caller ends that one with EndSession().
  HeartbeatOutcome Heartbeat(int64_t user_id, const std::string& session_id,
                             absl::Time now, bool announced_online);
  void EndSession(int64_t user_id, const std::string& session_id);
  MarkOfflineOutcome MarkOffline(int64_t user_id, const std::string& session_id,
                                 absl::Time now, bool announced_online);

  // Reads, at `now`.
  int LiveSessions(int64_t user_id, absl::Time now) const;
  bool Online(int64_t user_id, absl::Time now) const {
    return LiveSessions(user_id, now) > 0;
  }
  // The latest last heartbeat + window: online_until while online, the
  // moment of expiry after (InfinitePast for a user without sessions).
  absl::Time WindowEnd(int64_t user_id) const;
  absl::Time LastSeen(int64_t user_id) const;  // InfinitePast: never seen
  // GetPresence's answer for the user themselves (status ONLINE or OFFLINE).
  UserPresenceInfo Presence(int64_t user_id, absl::Time now) const;
  // Every user online, ascending.
  std::vector<int64_t> OnlineUsers(absl::Time now) const;
  // ListOnline(only, after, page_size) at `now`.
  OnlinePage ListOnline(absl::Span<const int64_t> only, int64_t after_user_id,
                        int page_size, absl::Time now) const;
  // Each session's end of window (last heartbeat + window), live or not.
  std::vector<absl::Time> SessionWindowEnds() const;
  // stats().sessions lies between these: the live sessions, and every
  // session the oracle holds.
  int64_t LiveSessions(absl::Time now) const;
  int64_t HeldSessions() const;

 private:
  struct User {
    std::map<std::string, absl::Time> sessions;  // session -> last heartbeat
    absl::Time last_seen = absl::InfinitePast();
  };

  const User* Find(int64_t user_id) const;
  bool Live(absl::Time last_heartbeat, absl::Time now) const {
    return now < last_heartbeat + window_;
  }
  // The user's other live sessions, the oldest of them, and what the limit
  // does to them.
  void FindOldestLive(const User& user, const std::string& session_id,
                      absl::Time now, HeartbeatOutcome* outcome) const;
  Eviction EvictionFor(const User& user, const std::string& session_id,
                       absl::Time now, int other_live) const;
  // The EXPIRED event owed before anything else, if any.
  void AddExpiryOwed(int64_t user_id, absl::Time now, bool announced_online,
                     std::vector<PresenceEvent>* events) const;

  const absl::Duration window_;
  const int max_sessions_;  // 0: no limit
  std::map<int64_t, User> users_;
};

}  // namespace presence::fuzz

#endif  // PRESENCE_FUZZ_REGISTRY_ORACLE_H_
