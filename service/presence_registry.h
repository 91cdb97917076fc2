#ifndef PRESENCE_SERVICE_PRESENCE_REGISTRY_H_
#define PRESENCE_SERVICE_PRESENCE_REGISTRY_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "service/clock.h"
#include "service/presence_event.h"
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

struct UserPresenceInfo {
  int64_t user_id = 0;
  bool online = false;
  absl::Time last_seen = absl::InfinitePast();  // InfinitePast: never seen
  int live_sessions = 0;
  absl::Time online_until = absl::InfinitePast();  // meaningful while online
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
  PresenceRegistry(const Clock& clock, absl::Duration online_window,
                   ChangeSink* changes, EventSink* events = nullptr,
                   int max_sessions_per_user = 0);
  PresenceRegistry(const PresenceRegistry&) = delete;
  PresenceRegistry& operator=(const PresenceRegistry&) = delete;

  absl::Duration online_window() const { return online_window_; }

  // Stamps the session with now.
  HeartbeatResult Heartbeat(int64_t user_id, absl::string_view session_id);

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

  // One entry per id, in the given order.
  PresenceLookup GetPresence(absl::Span<const int64_t> user_ids) const;

  // Start-up only: put back persisted state without recording a change or
  // publishing an event (a live restored session seeds the EventSink).
  void RestoreSession(int64_t user_id, absl::string_view session_id,
                      absl::Time last_heartbeat);
  void RestoreLastSeen(int64_t user_id, absl::Time last_seen);

  // Scale-out: the last_seen another shard kept for a user this one now
  // owns (ImportLastSeen). Raises the user's last_seen to it if it is later
  // and the user is not online (an online user's own heartbeats are newer;
  // a last_seen after now counts as now),
  // recorded as a change (a kEndAllSessions with no session left) so the
  // store keeps it. No event: the user stays offline. Returns the change's
  // ticket, or 0 if nothing changed.
  uint64_t AdoptLastSeen(int64_t user_id, absl::Time last_seen);

  // Announces every expiry due at now (online_until <= now) and forgets the
  // expired users' sessions (their last_seen stays). Cost: O(log n) per
  // expiry index entry due, not a scan. Returns the number of EXPIRED events.
  int64_t SweepExpired();
  // The earliest moment SweepExpired() may have something to do
  // (InfiniteFuture if no user is online).
  absl::Time NextExpiry() const;

  struct Stats {
    // Users announced online (those of them whose window ended are counted
    // until the sweep or their next operation announces it).
    int64_t online_users = 0;
    // Sessions held in memory: the live sessions of online users, plus a
    // session that stopped heartbeating while its user stays online through
    // another one, until that user's next heartbeat or MarkOffline.
    int64_t sessions = 0;
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
  };
  static constexpr int kNumShards = 64;

  Shard& ShardFor(int64_t user_id) const;
  // The clock's now, at the microsecond resolution stored.
  absl::Time Now() const;
  // The end of the user's presence: the latest last_heartbeat + window.
  absl::Time OnlineUntil(const UserState& user) const;
  uint64_t Record(const SessionChange& change);
  void Announce(int64_t user_id, bool online, PresenceEvent::Reason reason,
                absl::Time at);
  // Marks the user announced online and indexes their expiry.
  void AnnounceOnline(Shard& shard, uint32_t record, UserState& user,
                      PresenceEvent::Reason reason, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // Makes sure the user's live index entry is not later than their end of
  // window.
  void IndexExpiry(Shard& shard, uint32_t record, UserState& user)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // If the user's window ended by `now` but no OFFLINE was announced yet,
  // announces EXPIRED (at the window's end) and drops the dead sessions.
  void CatchUpExpiry(Shard& shard, UserState& user, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // The user's announced state, with the ordered online set (and, going
  // online, the expiry index) kept in step.
  void SetOnline(Shard& shard, uint32_t record, UserState& user)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  void SetOffline(Shard& shard, UserState& user)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);
  // SweepExpired() for one shard; returns the EXPIRED events announced.
  int64_t SweepShard(Shard& shard, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(shard.mu);

  const Clock& clock_;
  const absl::Duration online_window_;
  const int max_sessions_per_user_;
  ChangeSink* const changes_;
  EventSink* const events_;
  const std::unique_ptr<Shard[]> shards_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_PRESENCE_REGISTRY_H_
