#ifndef PRESENCE_SERVICE_PRESENCE_REGISTRY_H_
#define PRESENCE_SERVICE_PRESENCE_REGISTRY_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "service/clock.h"
#include "service/presence_event.h"
#include "service/rich_status.h"
#include "service/session_change.h"
#include "service/user_table.h"

namespace presence {

struct HeartbeatResult {
  absl::Time server_time;
  absl::Time online_until;
  bool became_online = false;
  // The sink's ticket for the change (0 without a sink).
  uint64_t write_ticket = 0;
};

struct MarkOfflineResult {
  absl::Time server_time;
  bool still_online = false;
  int sessions_ended = 0;     // live sessions ended by this call
  bool went_offline = false;  // the call ended the user's last live session
  uint64_t write_ticket = 0;  // 0: nothing changed, nothing to wait for
};

// A user as one viewer sees them: others (an invisible user is offline,
// with last_seen capped), or the user themselves (the truth).
struct UserPresenceInfo {
  int64_t user_id = 0;
  bool online = false;  // status != kOffline
  PublicStatus status = PublicStatus::kOffline;
  absl::Time last_seen = absl::InfinitePast();  // InfinitePast: never seen
  int live_sessions = 0;
  absl::Time online_until = absl::InfinitePast();  // meaningful while online
  Availability availability = Availability::kAuto;
  absl::Time availability_until = absl::InfiniteFuture();  // Future: none
  std::optional<CustomStatus> custom;
};

// What SetStatus changes; unset parts stay as they are.
struct StatusUpdate {
  std::optional<Availability> availability;
  // With `availability`: when it returns to AUTO, as a moment or (if > 0)
  // as a duration from the registry's now; neither: until changed.
  absl::Time availability_until = absl::InfiniteFuture();
  absl::Duration availability_for = absl::ZeroDuration();
  enum class Custom { kKeep, kReplace, kClear };
  Custom custom_action = Custom::kKeep;
  CustomStatus custom;  // kReplace; expires_at, or custom_for if > 0
  absl::Duration custom_for = absl::ZeroDuration();
};

struct SetStatusResult {
  absl::Time server_time;
  UserPresenceInfo self;  // the user's own view after the change
  uint64_t write_ticket = 0;
};

struct PresenceLookup {
  absl::Time server_time;
  std::vector<UserPresenceInfo> users;  // in the order asked
};

struct OnlinePage {
  absl::Time server_time;
  std::vector<int64_t> user_ids;  // ascending
  int64_t total_online = 0;       // over all pages
  bool has_more = false;
};

// The in-memory truth of who is online. Pure logic: no gRPC, no SQL.
//
// A session is (user_id, session_id). A user is online while some session
// has now < last_heartbeat + online_window, "now" always from the injected
// clock. Reads compute from now, so they never depend on expired sessions
// having been pruned.
//
// It also decides the transitions watchers are told about. A user is
// "announced" online from the heartbeat that made them online until an
// OFFLINE event: MarkOffline of the last live session, or expiry. Expiry is
// announced by SweepExpired(), driven by an expiry index, or by the next
// operation on the user, whichever comes first, always with `at` = the
// moment the window ended, and always before anything that follows it.
//
// Thread-safe: users are sharded by id, each shard under its own mutex; no
// operation holds two shard locks. Every change is passed to the ChangeSink
// and every transition to the EventSink (either may be null) under the
// user's shard lock, in the order they happened.
class PresenceRegistry {
 public:
  // `clock`, `changes` and `events` must outlive the registry. A user holds
  // at most `max_sessions_per_user` sessions (0: no limit): a heartbeat of a
  // new session beyond it ends the user's oldest session (the one with the
  // oldest heartbeat), recorded as a kEndSession change, so that a client
  // that invents a session id per request cannot grow memory without bound.
  //
  // Rich presence (docs/rich-presence.md): a user is AWAY once every live
  // session has been idle (heartbeats that say so) for `away_after`; what the
  // user chose (SetStatus) decides DND and INVISIBLE. Every view others get
  // (reads, events, the online set) is the public one. The events' index
  // (the "due" heap) holds, per user, the next moment their view may change
  // on its own: end of window, going away, an availability's or custom
  // status's end.
  PresenceRegistry(const Clock& clock, absl::Duration online_window,
                   ChangeSink* changes, EventSink* events = nullptr,
                   int max_sessions_per_user = 0,
                   absl::Duration away_after = absl::Minutes(10));
  PresenceRegistry(const PresenceRegistry&) = delete;
  PresenceRegistry& operator=(const PresenceRegistry&) = delete;

  absl::Duration online_window() const { return online_window_; }

  // Stamps the session with now; unless `idle`, its last activity too (a
  // session's first heartbeat always counts as activity).
  HeartbeatResult Heartbeat(int64_t user_id, absl::string_view session_id,
                            bool idle = false);

  // Changes what the user chose. INVALID_ARGUMENT for an end that is not
  // after now. Recorded as a kSetStatus change; announced if others see a
  // difference.
  absl::StatusOr<SetStatusResult> SetStatus(int64_t user_id,
                                            const StatusUpdate& update);

  // Ends `session_id`, or every session of the user if it is empty. last_seen
  // becomes now if a live session was ended.
  MarkOfflineResult MarkOffline(int64_t user_id, absl::string_view session_id);

  // Online users with id > `after_user_id`, ascending, at most `page_size`.
  // With a non-empty `only`, just those of them (duplicates ignored).
  // Without, a page costs O(page_size + shards x log n) for ids spread
  // evenly over the shards (up to a page more per crowded shard), not a
  // scan of every user; it announces expiries that are due (as SweepExpired
  // would).
  OnlinePage ListOnline(absl::Span<const int64_t> only, int64_t after_user_id,
                        int page_size);

  // One entry per id, in the given order; `viewer_user_id`'s own entry is
  // the truth, everyone else's the public view.
  PresenceLookup GetPresence(absl::Span<const int64_t> user_ids,
                             int64_t viewer_user_id = 0) const;

  // Start-up only: put back persisted state without recording a change or
  // publishing an event (a live restored session seeds the EventSink).
  // Restore statuses before sessions: a restored session seeds the user
  // online only if others can see them.
  void RestoreStatus(int64_t user_id, const StatusChoice& choice);
  // `last_active`: InfinitePast means at the heartbeat (a row from before
  // rich presence).
  void RestoreSession(int64_t user_id, absl::string_view session_id,
                      absl::Time last_heartbeat,
                      absl::Time last_active = absl::InfinitePast());
  void RestoreLastSeen(int64_t user_id, absl::Time last_seen);

  // Scale-out: the last_seen another shard kept for a user this one now
  // owns (ImportLastSeen). Raises the user's last_seen to it if it is later
  // and the user is not online (an online user's own heartbeats are newer;
  // a last_seen after now counts as now),
  // recorded as a change (a kEndAllSessions with no session left) so the
  // store keeps it. No event: the user stays offline. Returns the change's
  // ticket, or 0 if nothing changed.
  uint64_t AdoptLastSeen(int64_t user_id, absl::Time last_seen);

  // Announces every change due at now: expiries (online_until <= now),
  // users gone AWAY, availabilities and custom statuses that ended; forgets
  // the expired users' sessions (their last_seen stays). Cost: O(log n) per
  // index entry due, not a scan. Returns the number of EXPIRED events.
  int64_t SweepExpired();
  // The earliest moment SweepExpired() may have something to do
  // (InfiniteFuture if nothing is timed).
  absl::Time NextExpiry() const;

  struct Stats {
    // Users announced online (those of them whose window ended are counted
    // until the sweep or their next operation announces it).
    int64_t online_users = 0;
    // Sessions held in memory: the live sessions of online users, plus a
    // session that stopped heartbeating while its user stays online through
    // another one, until that user's next heartbeat or MarkOffline.
    int64_t sessions = 0;
    // Of online_users, as announced: AWAY and DND (the rest are ONLINE).
    int64_t away_users = 0;
    int64_t dnd_users = 0;
    // Users whose availability is INVISIBLE, online or not.
    int64_t invisible_users = 0;
  };
  // Counts for metrics; takes each shard's lock in turn, O(shards).
  Stats stats() const;

 private:
  // 12 bytes: the heap holds one per online user, with millions of them.
#pragma pack(push, 4)
  struct ExpiryEntry {
    int64_t online_until_us;  // may be stale: checked when due
    uint32_t record;          // the user's, in the shard's UserTable
    bool operator>(const ExpiryEntry& o) const {
      return online_until_us > o.online_until_us;
    }
  };
#pragma pack(pop)
  static_assert(sizeof(ExpiryEntry) == 12);

  struct Shard {
    mutable absl::Mutex mu;
    UserTable users ABSL_GUARDED_BY(mu);
    // Min-heap by online_until of announced-online users, one live entry per
    // user, never later than the user's real end of window. A heartbeat only
    // moves that end later, so it does not touch the heap: an entry that
    // comes due early is pushed back with the current online_until, and each
    // heartbeat costs O(1) here. Ending a session can move the end earlier:
    // then a new, earlier entry replaces the live one.
    std::vector<ExpiryEntry> expiry ABSL_GUARDED_BY(mu);
    // The announced-online users, ordered for ListOnline's pages. After
    // SweepShard(now) it holds exactly the users online at now.
    absl::btree_set<int64_t> online ABSL_GUARDED_BY(mu);
    // The sessions held by `users`, kept in step with their records.
    int64_t sessions ABSL_GUARDED_BY(mu) = 0;
    // What users chose, for the few that chose something (UserState's
    // has_rich), by record.
    absl::flat_hash_map<uint32_t, StatusChoice> rich ABSL_GUARDED_BY(mu);
    // Announced users by PublicStatus (index 0 unused), and INVISIBLE ones.
    int64_t by_status[4] ABSL_GUARDED_BY(mu) = {};
    int64_t invisible ABSL_GUARDED_BY(mu) = 0;
  };
  // A user as others (or they themselves) see them at a moment.
  struct View {
    PublicStatus status = PublicStatus::kOffline;
    bool live = false;  // some session within the window
    int live_sessions = 0;
    absl::Time online_until = absl::InfinitePast();
    // The moment every live session will have been idle for away_after.
    absl::Time away_at = absl::InfinitePast();
    // The earliest end of window among live sessions.
    absl::Time first_session_end = absl::InfiniteFuture();
  };
  // What set off a reconciliation: decides an event's reason.
  enum class Cause { kHeartbeat, kMarkOffline, kSetStatus, kTime };
  static constexpr int kNumShards = 64;

  Shard& ShardFor(int64_t user_id) const;
  // The clock's now, at the microsecond resolution stored.
  absl::Time Now() const;
  uint64_t Record(const SessionChange& change);
  // The user's choice, or null.
  static const StatusChoice* ChoiceOf(const Shard& shard, uint32_t record,
                                      const UserState& user)
      ABSL_SHARED_LOCKS_REQUIRED(shard.mu);
  // Replaces the user's choice (an empty() one is dropped), with the
  // INVISIBLE count kept in step.
  static void PutChoice(Shard& shard, uint32_t record, UserState& user,
                        const StatusChoice& choice)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // PutChoice, recorded as a kSetStatus change (so the store keeps it);
  // returns the change's ticket.
  uint64_t ChangeChoice(Shard& shard, uint32_t record, UserState& user,
                        const StatusChoice& choice, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // The next moment after `now` the view may change on its own: the
  // earliest live session's end of window, going AWAY, the choice's ends
  // (an end already passed: due at once). InfiniteFuture: nothing timed.
  static absl::Time NextDue(const View& view, const StatusChoice* choice,
                            absl::Time now);
  // The user at `now`, as others see them or (`as_self`) as they are.
  // Availabilities and custom statuses that ended by now count as gone.
  View Evaluate(const UserState& user, const StatusChoice* choice,
                absl::Time now, bool as_self) const;
  UserPresenceInfo Describe(const UserState& user, const StatusChoice* choice,
                            absl::Time now, bool as_self) const;
  // Brings what was announced of the user in line with the view at `now`:
  // drops ended availabilities and custom statuses (recorded), announces a
  // difference, forgets dead sessions, and indexes the next due moment.
  // `detail_changed`: SetStatus changed what others see beyond the status
  // (the custom status, a DND's end). `due_at` (kTime): the index entry that
  // came due; a change found then happened after it, so its event is not
  // stamped earlier (the events before it are earlier still).
  void Reconcile(Shard& shard, uint32_t record, UserState& user, absl::Time now,
                 Cause cause, bool detail_changed = false,
                 absl::Time due_at = absl::InfinitePast())
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Heartbeat of a new session at the session limit: ends the user's
  // session heard from least recently, recorded.
  void EndOldestSession(int64_t user_id, const UserState& user,
                        SessionList& sessions, absl::Time now);
  // Heartbeat while visible: a last_seen frozen by invisibility (as others
  // see it) moves on again.
  void UncapLastSeen(Shard& shard, uint32_t record, UserState& user,
                     absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Reconcile(kTime) if something became due by `now`: run first in every
  // operation, so what happened on time is announced before what follows.
  void CatchUp(Shard& shard, uint32_t record, UserState& user, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Sets the announced status, with the ordered online set and counts.
  void SetAnnounced(Shard& shard, UserState& user, PublicStatus status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Makes sure the user's live index entry is not later than `due`.
  void IndexDue(Shard& shard, uint32_t record, UserState& user, absl::Time due)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // SweepExpired() for one shard; returns the EXPIRED events announced.
  int64_t SweepShard(Shard& shard, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  const Clock& clock_;
  const absl::Duration online_window_;
  const int max_sessions_per_user_;
  const absl::Duration away_after_;
  ChangeSink* const changes_;
  EventSink* const events_;
  const std::unique_ptr<Shard[]> shards_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_PRESENCE_REGISTRY_H_
