#include "service/presence_registry.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <utility>

#include "absl/hash/hash.h"

namespace presence {

PresenceRegistry::PresenceRegistry(const Clock& clock,
                                   absl::Duration online_window,
                                   ChangeSink* changes, EventSink* events,
                                   int max_sessions_per_user)
    : clock_(clock),
      // Whole microseconds, like every time stored: an end of window between
      // two microseconds would never come due in the expiry index.
      online_window_(
          absl::Microseconds(absl::ToInt64Microseconds(online_window))),
      max_sessions_per_user_(max_sessions_per_user),
      changes_(changes),
      events_(events),
      shards_(new Shard[kNumShards]) {}

namespace {

int64_t ToUs(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromUs(int64_t us) { return absl::FromUnixMicros(us); }

int64_t SizeChange(size_t before, size_t after) {
  return static_cast<int64_t>(after) - static_cast<int64_t>(before);
}

}  // namespace

absl::Time PresenceRegistry::Now() const { return FromUs(ToUs(clock_.Now())); }

PresenceRegistry::Shard& PresenceRegistry::ShardFor(int64_t user_id) const {
  // Ids are often sequential; hashing spreads neighbours across shards. The
  // shard comes from the hash's top bits: the shard's own index tags each
  // slot with the hash's low 7 bits, which `% 64` made alike (but one) for
  // all of a shard's users, so most probes compared several records.
  static_assert(kNumShards == 64 && sizeof(size_t) == 8);
  return shards_[absl::Hash<int64_t>{}(user_id) >> 58];
}

absl::Time PresenceRegistry::OnlineUntil(const UserState& user) const {
  const int64_t latest = user.LatestHeartbeatUs();
  if (latest == kNeverUs) return absl::InfinitePast();
  return FromUs(latest) + online_window_;
}

uint64_t PresenceRegistry::Record(const SessionChange& change) {
  return changes_ == nullptr ? 0 : changes_->Record(change);
}

void PresenceRegistry::Announce(int64_t user_id, bool online,
                                PresenceEvent::Reason reason, absl::Time at) {
  if (events_ != nullptr) {
    events_->Publish(PresenceEvent{user_id, online, reason, at});
  }
}

void PresenceRegistry::AnnounceOnline(Shard& shard, uint32_t record,
                                      UserState& user,
                                      PresenceEvent::Reason reason,
                                      absl::Time now) {
  Announce(user.id(), true, reason, now);
  SetOnline(shard, record, user);
}

void PresenceRegistry::SetOnline(Shard& shard, uint32_t record,
                                 UserState& user) {
  user.set_announced_online(true);
  shard.online.insert(user.id());
  IndexExpiry(shard, record, user);
}

void PresenceRegistry::SetOffline(Shard& shard, UserState& user) {
  user.set_announced_online(false);
  shard.online.erase(user.id());
}

void PresenceRegistry::IndexExpiry(Shard& shard, uint32_t record,
                                   UserState& user) {
  const absl::Time online_until = OnlineUntil(user);
  // A live entry at or before the end is fine: when due, it is pushed back.
  if (user.indexed_until_us <= ToUs(online_until)) return;
  user.indexed_until_us = ToUs(online_until);
  shard.expiry.push_back(ExpiryEntry{user.indexed_until_us, record});
  std::push_heap(shard.expiry.begin(), shard.expiry.end(),
                 std::greater<ExpiryEntry>());
}

void PresenceRegistry::CatchUpExpiry(Shard& shard, UserState& user,
                                     absl::Time now) {
  if (!user.announced_online()) return;
  const absl::Time online_until = OnlineUntil(user);
  if (now < online_until) return;
  Announce(user.id(), false, PresenceEvent::Reason::kExpired, online_until);
  SetOffline(shard, user);
  // Every session is dead; last_seen keeps their latest heartbeat.
  shard.sessions -= static_cast<int64_t>(user.session_count());
  user.ClearSessions();
}

HeartbeatResult PresenceRegistry::Heartbeat(int64_t user_id,
                                            absl::string_view session_id) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  // Read the clock under the lock so that stamps of one user never go
  // backwards between two racing heartbeats.
  const absl::Time now = Now();
  uint32_t record;
  UserState& user = shard.users.FindOrAdd(user_id, &record);
  CatchUpExpiry(shard, user, now);
  const bool was_online = user.announced_online();
  SessionList sessions = user.TakeSessions();
  const size_t sessions_before = sessions.size();

  // Expired sessions are dropped as the user is touched, so a user's vector
  // stays as small as their live sessions.
  bool found = false;
  int64_t stamp_us = ToUs(now);
  sessions.erase(std::remove_if(sessions.begin(), sessions.end(),
                                [&](Session& s) {
                                  if (s.id.view() == session_id) {
                                    // A wall clock stepped back never shortens
                                    // presence.
                                    s.last_heartbeat_us = stamp_us =
                                        std::max(s.last_heartbeat_us, stamp_us);
                                    found = true;
                                    return false;
                                  }
                                  return FromUs(s.last_heartbeat_us) +
                                             online_window_ <=
                                         now;
                                }),
                 sessions.end());
  user.last_seen_us = std::max(user.last_seen_us, ToUs(now));
  bool evicted = false;
  if (!found) {
    if (max_sessions_per_user_ > 0 &&
        sessions.size() >= static_cast<size_t>(max_sessions_per_user_)) {
      // Make room by ending the session heard from least recently; the
      // store forgets it in the same order as this heartbeat's change.
      auto oldest =
          std::min_element(sessions.begin(), sessions.end(),
                           [](const Session& a, const Session& b) {
                             return a.last_heartbeat_us < b.last_heartbeat_us;
                           });
      Record(SessionChange{SessionChange::Kind::kEndSession, user_id,
                           std::string(oldest->id.view()), now,
                           FromUs(user.last_seen_us)});
      sessions.erase(oldest);
      evicted = true;
    }
    sessions.push_back(Session{SessionId(session_id), ToUs(now)});
  }
  shard.sessions += SizeChange(sessions_before, sessions.size());
  user.PutSessions(std::move(sessions));
  if (!was_online) {
    AnnounceOnline(shard, record, user, PresenceEvent::Reason::kHeartbeat, now);
  } else if (evicted) {
    // The ended session may have held the latest end of window (a stamp
    // ahead of a clock that stepped back): the end can move earlier.
    IndexExpiry(shard, record, user);
  }

  HeartbeatResult result;
  result.server_time = now;
  result.online_until = FromUs(stamp_us) + online_window_;
  result.became_online = !was_online;
  // The stamp kept, so that the store agrees with memory.
  result.write_ticket = Record(SessionChange{
      SessionChange::Kind::kHeartbeat, user_id, std::string(session_id),
      FromUs(stamp_us), FromUs(user.last_seen_us)});
  return result;
}

MarkOfflineResult PresenceRegistry::MarkOffline(int64_t user_id,
                                                absl::string_view session_id) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  const absl::Time now = Now();
  MarkOfflineResult result;
  result.server_time = now;

  uint32_t record;
  UserState* found = shard.users.Find(user_id, &record);
  if (found == nullptr) return result;
  UserState& user = *found;
  CatchUpExpiry(shard, user, now);
  const bool was_online = user.announced_online();
  const bool end_all = session_id.empty();
  SessionList sessions = user.TakeSessions();
  const size_t sessions_before = sessions.size();

  size_t removed = 0;
  sessions.erase(
      std::remove_if(sessions.begin(), sessions.end(),
                     [&](const Session& s) {
                       if (!end_all && s.id.view() != session_id) {
                         return false;
                       }
                       ++removed;
                       if (now < FromUs(s.last_heartbeat_us) + online_window_) {
                         ++result.sessions_ended;
                       }
                       return true;
                     }),
      sessions.end());
  user.PutSessions(std::move(sessions));
  // An empty session_id names the default session when heartbeating but
  // "every session" here; a client that only uses the default session gets
  // the same effect either way.
  if (removed == 0) {
    result.still_online = was_online;
    return result;
  }
  if (result.sessions_ended > 0) {
    user.last_seen_us = std::max(user.last_seen_us, ToUs(now));
  }
  result.still_online = now < OnlineUntil(user);
  result.went_offline = was_online && !result.still_online;
  if (result.went_offline) {
    Announce(user_id, false, PresenceEvent::Reason::kMarkOffline, now);
    SetOffline(shard, user);
  } else if (result.still_online) {
    // The ended session may have been the latest: the end can move earlier.
    IndexExpiry(shard, record, user);
  }
  // Sessions left now are all dead, and the sweeper skips offline users.
  if (!result.still_online) user.ClearSessions();
  shard.sessions += SizeChange(sessions_before, user.session_count());
  result.write_ticket = Record(SessionChange{
      end_all ? SessionChange::Kind::kEndAllSessions
              : SessionChange::Kind::kEndSession,
      user_id, std::string(session_id), now, FromUs(user.last_seen_us)});
  return result;
}

namespace {

// Appends up to `take` ids > `after` from `online` to `out`; true if more
// were left.
bool TakeAfter(const absl::btree_set<int64_t>& online, int64_t after,
               size_t take, std::vector<int64_t>* out) {
  auto it = online.upper_bound(after);
  for (size_t n = 0; it != online.end() && n < take; ++it, ++n) {
    out->push_back(*it);
  }
  return it != online.end();
}

// Sorts `ids`, made of ascending runs that start at the offsets in `starts`
// (the first 0), by merging the runs pairwise: log2(runs) linear passes
// instead of a sort's log2(ids), which was most of a page's cost.
void MergeRuns(std::vector<size_t> starts, std::vector<int64_t>* ids) {
  std::vector<int64_t> merged(ids->size());
  starts.push_back(ids->size());  // each run ends where the next starts
  while (starts.size() > 2) {
    std::vector<size_t> next;
    for (size_t r = 0; r + 1 < starts.size(); r += 2) {
      const auto lo = ids->begin() + starts[r];
      const auto mid = ids->begin() + starts[r + 1];
      const auto hi =
          r + 2 < starts.size() ? ids->begin() + starts[r + 2] : mid;
      std::merge(lo, mid, mid, hi, merged.begin() + starts[r]);
      next.push_back(starts[r]);
    }
    next.push_back(ids->size());
    ids->swap(merged);
    starts.swap(next);
  }
}

}  // namespace

OnlinePage PresenceRegistry::ListOnline(absl::Span<const int64_t> only,
                                        int64_t after_user_id, int page_size) {
  OnlinePage page;
  // One "now" for the whole listing, so every shard answers the same moment.
  const absl::Time now = Now();
  page.server_time = now;
  const size_t limit = static_cast<size_t>(std::max(page_size, 0));
  std::vector<int64_t> candidates;  // online ids after the cursor

  if (only.empty()) {
    // Ids are hashed across shards, so a page holds about share =
    // limit/kNumShards of each shard's ids, give or take sqrt(share): take
    // share + 4 sqrt(share) + 16 from each (everything taken beyond the
    // page is wasted work), and go back for more only to a shard whose
    // share turns out larger.
    const size_t share = limit / kNumShards;
    const size_t take =
        std::min(limit, share + 4 * static_cast<size_t>(std::sqrt(share)) + 16);
    std::vector<int64_t> last_taken(kNumShards, 0);
    std::vector<bool> more(kNumShards, false);
    // Each shard's ids come out ascending: one run each, merged below.
    std::vector<size_t> starts;
    starts.reserve(2 * kNumShards);
    for (int i = 0; i < kNumShards; ++i) {
      Shard& shard = shards_[i];
      absl::MutexLock lock(&shard.mu);
      SweepShard(shard, now);  // now `online` is exactly who is online
      page.total_online += static_cast<int64_t>(shard.online.size());
      starts.push_back(candidates.size());
      more[i] = TakeAfter(shard.online, after_user_id, take, &candidates);
      if (candidates.size() > starts.back()) last_taken[i] = candidates.back();
    }
    MergeRuns(starts, &candidates);
    const int64_t boundary = candidates.size() >= limit && limit > 0
                                 ? candidates[limit - 1]
                                 : std::numeric_limits<int64_t>::max();
    starts.assign(1, 0);  // the merged ids: one run
    for (int i = 0; i < kNumShards; ++i) {
      if (!more[i] || last_taken[i] >= boundary) continue;
      // This shard may hold ids of the page beyond those taken: ids after
      // its last taken one, so new to the page.
      Shard& shard = shards_[i];
      absl::MutexLock lock(&shard.mu);
      starts.push_back(candidates.size());
      more[i] = TakeAfter(shard.online, last_taken[i], limit, &candidates);
    }
    if (starts.size() > 1) MergeRuns(starts, &candidates);
    page.has_more = std::find(more.begin(), more.end(), true) != more.end();
  } else {
    std::vector<int64_t> ids(only.begin(), only.end());
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (int64_t id : ids) {
      const Shard& shard = ShardFor(id);
      absl::MutexLock lock(&shard.mu);
      const UserState* user = shard.users.Find(id);
      if (user != nullptr && now < OnlineUntil(*user)) {
        ++page.total_online;
        if (id > after_user_id) candidates.push_back(id);
      }
    }
    std::sort(candidates.begin(), candidates.end());
  }

  if (candidates.size() > limit) {
    candidates.resize(limit);
    page.has_more = true;
  }
  page.user_ids = std::move(candidates);
  return page;
}

PresenceLookup PresenceRegistry::GetPresence(
    absl::Span<const int64_t> user_ids) const {
  const absl::Time now = Now();
  PresenceLookup lookup;
  lookup.server_time = now;
  std::vector<UserPresenceInfo>& out = lookup.users;
  out.reserve(user_ids.size());
  for (int64_t id : user_ids) {
    UserPresenceInfo info;
    info.user_id = id;
    const Shard& shard = ShardFor(id);
    absl::MutexLock lock(&shard.mu);
    if (const UserState* found = shard.users.Find(id); found != nullptr) {
      const UserState& user = *found;
      if (user.last_seen_us != kNeverUs) {
        info.last_seen = FromUs(user.last_seen_us);
      }
      user.ForEachSession([&](absl::string_view, int64_t last_heartbeat_us) {
        if (now < FromUs(last_heartbeat_us) + online_window_) {
          ++info.live_sessions;
        }
      });
      info.online = info.live_sessions > 0;
      if (info.online) info.online_until = OnlineUntil(user);
    }
    out.push_back(info);
  }
  return lookup;
}

void PresenceRegistry::RestoreSession(int64_t user_id,
                                      absl::string_view session_id,
                                      absl::Time last_heartbeat) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  uint32_t record;
  UserState& user = shard.users.FindOrAdd(user_id, &record);
  SessionList sessions = user.TakeSessions();
  auto it =
      std::find_if(sessions.begin(), sessions.end(),
                   [&](const Session& s) { return s.id.view() == session_id; });
  const int64_t heartbeat_us = ToUs(last_heartbeat);
  if (it == sessions.end()) {
    sessions.push_back(Session{SessionId(session_id), heartbeat_us});
    ++shard.sessions;
  } else {
    it->last_heartbeat_us = std::max(it->last_heartbeat_us, heartbeat_us);
  }
  user.PutSessions(std::move(sessions));
  user.last_seen_us = std::max(user.last_seen_us, heartbeat_us);
  if (!user.announced_online() && Now() < OnlineUntil(user)) {
    SetOnline(shard, record, user);
    if (events_ != nullptr) events_->SeedOnline(user_id);
  } else if (user.announced_online()) {
    // A second restored session of the user may end earlier or later.
    IndexExpiry(shard, record, user);
  }
}

void PresenceRegistry::RestoreLastSeen(int64_t user_id, absl::Time last_seen) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  UserState& user = shard.users.FindOrAdd(user_id);
  user.last_seen_us = std::max(user.last_seen_us, ToUs(last_seen));
}

uint64_t PresenceRegistry::AdoptLastSeen(int64_t user_id,
                                         absl::Time last_seen) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  const absl::Time now = Now();
  UserState& user = shard.users.FindOrAdd(user_id);
  CatchUpExpiry(shard, user, now);
  last_seen = std::min(last_seen, now);  // another host's clock ran ahead
  if (user.announced_online() || ToUs(last_seen) <= user.last_seen_us) {
    return 0;
  }
  user.last_seen_us = ToUs(last_seen);
  return Record(SessionChange{SessionChange::Kind::kEndAllSessions, user_id, "",
                              now, last_seen});
}

int64_t PresenceRegistry::SweepExpired() {
  int64_t expired = 0;
  for (int i = 0; i < kNumShards; ++i) {
    Shard& shard = shards_[i];
    absl::MutexLock lock(&shard.mu);
    expired += SweepShard(shard, Now());
  }
  return expired;
}

int64_t PresenceRegistry::SweepShard(Shard& shard, absl::Time now) {
  int64_t expired = 0;
  auto& heap = shard.expiry;
  while (!heap.empty() && heap.front().online_until_us <= ToUs(now)) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<ExpiryEntry>());
    const ExpiryEntry entry = heap.back();
    heap.pop_back();
    UserState& user = shard.users.At(entry.record);
    if (user.indexed_until_us != entry.online_until_us) continue;  // stale
    user.indexed_until_us = kNoEntryUs;
    if (!user.announced_online()) continue;  // went offline otherwise
    if (OnlineUntil(user) <= now) {
      CatchUpExpiry(shard, user, now);
      ++expired;
    } else {
      // Heartbeats moved the end since the entry was made.
      IndexExpiry(shard, entry.record, user);
    }
  }
  return expired;
}

PresenceRegistry::Stats PresenceRegistry::stats() const {
  Stats stats;
  for (int i = 0; i < kNumShards; ++i) {
    const Shard& shard = shards_[i];
    absl::MutexLock lock(&shard.mu);
    stats.online_users += static_cast<int64_t>(shard.online.size());
    stats.sessions += shard.sessions;
  }
  return stats;
}

absl::Time PresenceRegistry::NextExpiry() const {
  absl::Time next = absl::InfiniteFuture();
  for (int i = 0; i < kNumShards; ++i) {
    const Shard& shard = shards_[i];
    absl::MutexLock lock(&shard.mu);
    if (!shard.expiry.empty()) {
      next = std::min(next, FromUs(shard.expiry.front().online_until_us));
    }
  }
  return next;
}

}  // namespace presence
