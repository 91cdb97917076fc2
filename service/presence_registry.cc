// PresenceRegistry's operations. One role, kept whole (~800 lines): every
// operation follows the same steps under its user's shard lock (CatchUp,
// change the sessions or the choice, Reconcile, Record), and the ordering
// rules between them (an event never stamped before the one it follows, the
// store told in the order memory changed) are checked by reading those steps
// side by side. The user table (user_table.h) and the status types
// (rich_status.h) are in files of their own.
#include "service/presence_registry.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"

namespace presence {

PresenceRegistry::PresenceRegistry(const Clock& clock,
                                   absl::Duration online_window,
                                   ChangeSink* changes, EventSink* events,
                                   int max_sessions_per_user,
                                   absl::Duration away_after)
    : clock_(clock),
      // Whole microseconds, like every time stored: an end of window between
      // two microseconds would never come due in the expiry index.
      online_window_(
          absl::Microseconds(absl::ToInt64Microseconds(online_window))),
      max_sessions_per_user_(max_sessions_per_user),
      // Whole microseconds too; infinite (never away) stays infinite.
      away_after_(
          away_after == absl::InfiniteDuration()
              ? away_after
              : absl::Microseconds(absl::ToInt64Microseconds(away_after))),
      changes_(changes),
      events_(events),
      shards_(new Shard[kNumShards]) {}

namespace {

int64_t ToUs(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromUs(int64_t us) { return absl::FromUnixMicros(us); }

// InfinitePast for a user never seen.
absl::Time LastSeen(const UserState& user) {
  return user.last_seen_us == kNeverUs ? absl::InfinitePast()
                                       : FromUs(user.last_seen_us);
}

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

uint64_t PresenceRegistry::Record(const SessionChange& change) {
  return changes_ == nullptr ? 0 : changes_->Record(change);
}

const StatusChoice* PresenceRegistry::ChoiceOf(const Shard& shard,
                                               uint32_t record,
                                               const UserState& user) {
  if (!user.has_rich()) return nullptr;
  auto it = shard.rich.find(record);
  return it == shard.rich.end() ? nullptr : &it->second;
}

void PresenceRegistry::PutChoice(Shard& shard, uint32_t record, UserState& user,
                                 const StatusChoice& choice) {
  if (const StatusChoice* old = ChoiceOf(shard, record, user);
      old != nullptr && old->availability == Availability::kInvisible) {
    --shard.invisible;
  }
  if (choice.availability == Availability::kInvisible) ++shard.invisible;
  if (choice.empty()) {
    shard.rich.erase(record);
    user.set_has_rich(false);
  } else {
    shard.rich[record] = choice;
    user.set_has_rich(true);
  }
}

PresenceRegistry::View PresenceRegistry::Evaluate(const UserState& user,
                                                  const StatusChoice* choice,
                                                  absl::Time now,
                                                  bool as_self) const {
  View view;
  int64_t latest_active_us = kNeverUs;
  user.ForEachSession(
      [&](absl::string_view, int64_t heartbeat_us, int64_t active_us) {
        const absl::Time end = FromUs(heartbeat_us) + online_window_;
        if (now >= end) return;
        ++view.live_sessions;
        view.online_until = std::max(view.online_until, end);
        view.first_session_end = std::min(view.first_session_end, end);
        latest_active_us = std::max(latest_active_us, active_us);
      });
  view.live = view.live_sessions > 0;
  if (!view.live) return view;
  view.away_at = FromUs(latest_active_us) + away_after_;
  Availability availability = Availability::kAuto;
  if (choice != nullptr && now < choice->availability_until) {
    availability = choice->availability;
  }
  if (availability == Availability::kInvisible && !as_self) {
    view.status = PublicStatus::kOffline;
  } else if (availability == Availability::kDnd) {
    view.status = PublicStatus::kDnd;
  } else {
    view.status =
        now < view.away_at ? PublicStatus::kOnline : PublicStatus::kAway;
  }
  return view;
}

UserPresenceInfo PresenceRegistry::Describe(const UserState& user,
                                            const StatusChoice* choice,
                                            absl::Time now,
                                            bool as_self) const {
  const View view = Evaluate(user, choice, now, as_self);
  UserPresenceInfo info;
  info.user_id = user.id();
  info.status = view.status;
  info.online = view.status != PublicStatus::kOffline;
  info.last_seen = LastSeen(user);
  if (info.online) {
    info.live_sessions = view.live_sessions;
    info.online_until = view.online_until;
  }
  if (choice == nullptr) return info;
  const bool hidden = !as_self &&
                      choice->availability == Availability::kInvisible &&
                      now < choice->availability_until;
  // While capped, others see exactly what they saw when the user went
  // invisible: a later heartbeat must not move it (that would tell them
  // the user is active), nor an earlier one show before the moment they
  // were last seen online.
  if (!as_self && choice->last_seen_cap != absl::InfiniteFuture()) {
    info.last_seen = choice->last_seen_cap;
  }
  if (now < choice->availability_until && !hidden) {
    info.availability = choice->availability;
    info.availability_until = choice->availability_until;
  }
  if (choice->custom.has_value() && now < choice->custom->expires_at &&
      (as_self || info.online)) {
    info.custom = choice->custom;
  }
  return info;
}

void PresenceRegistry::SetAnnounced(Shard& shard, UserState& user,
                                    PublicStatus status) {
  const auto old = static_cast<PublicStatus>(user.announced_status());
  if (old == status) return;
  --shard.by_status[static_cast<int>(old)];
  ++shard.by_status[static_cast<int>(status)];
  user.set_announced_status(static_cast<int>(status));
  if (old == PublicStatus::kOffline) {
    shard.online.insert(user.id());
  } else if (status == PublicStatus::kOffline) {
    shard.online.erase(user.id());
  }
}

uint64_t PresenceRegistry::ChangeChoice(Shard& shard, uint32_t record,
                                        UserState& user,
                                        const StatusChoice& choice,
                                        absl::Time now) {
  PutChoice(shard, record, user, choice);
  return Record(SessionChange{SessionChange::Kind::kSetStatus, user.id(), "",
                              now, FromUs(user.last_seen_us),
                              absl::InfinitePast(),
                              std::make_shared<const StatusChoice>(choice)});
}

absl::Time PresenceRegistry::NextDue(const View& view,
                                     const StatusChoice* choice,
                                     absl::Time now) {
  absl::Time due = absl::InfiniteFuture();
  if (view.live) {
    due = view.first_session_end;  // the earliest can change activity
    if (now < view.away_at) due = std::min(due, view.away_at);
  }
  if (choice != nullptr) {
    due = std::min(due, choice->availability_until);
    if (choice->custom.has_value()) {
      due = std::min(due, choice->custom->expires_at);
    }
  }
  return due;
}

void PresenceRegistry::IndexDue(Shard& shard, uint32_t record, UserState& user,
                                absl::Time due) {
  if (due == absl::InfiniteFuture()) return;
  // A live entry at or before `due` is fine: when due, the user is
  // reconciled and indexed again.
  if (user.indexed_until_us <= ToUs(due)) return;
  user.indexed_until_us = ToUs(due);
  shard.expiry.push_back(ExpiryEntry{user.indexed_until_us, record});
  std::push_heap(shard.expiry.begin(), shard.expiry.end(),
                 std::greater<ExpiryEntry>());
}

void PresenceRegistry::CatchUp(Shard& shard, uint32_t record, UserState& user,
                               absl::Time now) {
  // The index entry is never later than the next change the user's view
  // makes on its own: nothing due, nothing changed.
  if (user.indexed_until_us > ToUs(now)) return;
  const absl::Time due_at = FromUs(user.indexed_until_us);
  user.indexed_until_us = kNoEntryUs;  // the entry is stale from here
  Reconcile(shard, record, user, now, Cause::kTime, false, due_at);
}

void PresenceRegistry::Reconcile(Shard& shard, uint32_t record, UserState& user,
                                 absl::Time now, Cause cause,
                                 bool detail_changed, absl::Time due_at) {
  // Ended choices go first, recorded, so the store forgets them too.
  absl::Time expired_at = absl::InfinitePast();
  const StatusChoice* choice = ChoiceOf(shard, record, user);
  if (choice != nullptr &&
      (choice->availability_until <= now ||
       (choice->custom.has_value() && choice->custom->expires_at <= now))) {
    StatusChoice ended = *choice;
    if (ended.availability_until <= now) {
      expired_at = ended.availability_until;
      ended.availability = Availability::kAuto;
      ended.availability_until = absl::InfiniteFuture();
      // Invisibility over while online: back in sight now, so last_seen
      // is no longer capped (offline, the cap stays until a heartbeat).
      if (Evaluate(user, nullptr, now, true).live) {
        ended.last_seen_cap = absl::InfiniteFuture();
      }
    }
    if (ended.custom.has_value() && ended.custom->expires_at <= now) {
      expired_at = std::max(expired_at, ended.custom->expires_at);
      ended.custom.reset();
      detail_changed = true;
    }
    ChangeChoice(shard, record, user, ended, now);
    choice = ChoiceOf(shard, record, user);
  }

  const View view = Evaluate(user, choice, now, /*as_self=*/false);
  const auto old = static_cast<PublicStatus>(user.announced_status());
  const bool was_online = old != PublicStatus::kOffline;
  const bool online = view.status != PublicStatus::kOffline;
  if (view.status != old || (detail_changed && online)) {
    PresenceEvent event{user.id(), online, PresenceEvent::Reason::kActivity,
                        now};
    event.status = view.status;
    event.status_only = was_online == online;
    const bool by_choice = cause == Cause::kSetStatus;
    const bool by_expiry = expired_at != absl::InfinitePast();
    if (was_online && !online && !view.live) {
      // The last live session ended: marked offline, or its window ended.
      if (cause == Cause::kMarkOffline) {
        event.reason = PresenceEvent::Reason::kMarkOffline;
      } else {
        event.reason = PresenceEvent::Reason::kExpired;
        event.at =
            std::min(now, FromUs(user.LatestHeartbeatUs()) + online_window_);
      }
    } else if (by_choice) {
      event.reason = PresenceEvent::Reason::kStatusSet;
    } else if (by_expiry) {
      event.reason = PresenceEvent::Reason::kStatusExpired;
      event.at = expired_at;
    } else if (!was_online) {
      event.reason = PresenceEvent::Reason::kHeartbeat;
    } else if (cause == Cause::kTime && view.status == PublicStatus::kAway) {
      // Every live session idle since away_at; but the session that was
      // active may have ended only at due_at (its window), after it.
      event.at = std::clamp(view.away_at, std::min(due_at, now), now);
    }
    if (online) {
      if (view.status == PublicStatus::kDnd) {
        event.availability_until = choice->availability_until;
      }
      if (choice != nullptr && choice->custom.has_value()) {
        event.custom = std::make_shared<const CustomStatus>(*choice->custom);
      }
    }
    SetAnnounced(shard, user, view.status);
    if (events_ != nullptr) events_->Publish(event);
  }
  if (!view.live && user.session_count() > 0) {
    // Every session is dead; last_seen keeps their latest heartbeat.
    shard.sessions -= static_cast<int64_t>(user.session_count());
    user.ClearSessions();
  }

  IndexDue(shard, record, user, NextDue(view, choice, now));
}

void PresenceRegistry::EndOldestSession(int64_t user_id, const UserState& user,
                                        SessionList& sessions, absl::Time now) {
  // The session heard from least recently; the store forgets it in the same
  // order as the heartbeat's change that made room.
  auto oldest = std::min_element(
      sessions.begin(), sessions.end(), [](const Session& a, const Session& b) {
        return a.last_heartbeat_us < b.last_heartbeat_us;
      });
  Record(SessionChange{SessionChange::Kind::kEndSession, user_id,
                       std::string(oldest->id.view()), now,
                       FromUs(user.last_seen_us)});
  sessions.erase(oldest);
}

void PresenceRegistry::UncapLastSeen(Shard& shard, uint32_t record,
                                     UserState& user, absl::Time now) {
  const StatusChoice* choice = ChoiceOf(shard, record, user);
  if (choice == nullptr || choice->last_seen_cap == absl::InfiniteFuture() ||
      (choice->availability == Availability::kInvisible &&
       now < choice->availability_until)) {
    return;
  }
  StatusChoice seen = *choice;
  seen.last_seen_cap = absl::InfiniteFuture();
  ChangeChoice(shard, record, user, seen, now);
}

HeartbeatResult PresenceRegistry::Heartbeat(int64_t user_id,
                                            absl::string_view session_id,
                                            bool idle) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  // Read the clock under the lock so that stamps of one user never go
  // backwards between two racing heartbeats.
  const absl::Time now = Now();
  uint32_t record;
  UserState& user = shard.users.FindOrAdd(user_id, &record);
  CatchUp(shard, record, user, now);
  SessionList sessions = user.TakeSessions();
  const size_t sessions_before = sessions.size();

  // Expired sessions are dropped as the user is touched, so a user's vector
  // stays as small as their live sessions.
  bool found = false;
  bool was_live = false;
  int64_t stamp_us = ToUs(now);
  int64_t active_us = kNeverUs;
  sessions.erase(std::remove_if(sessions.begin(), sessions.end(),
                                [&](Session& s) {
                                  const bool live =
                                      now < FromUs(s.last_heartbeat_us) +
                                                online_window_;
                                  was_live = was_live || live;
                                  if (s.id.view() == session_id) {
                                    // A wall clock stepped back never shortens
                                    // presence.
                                    s.last_heartbeat_us = stamp_us =
                                        std::max(s.last_heartbeat_us, stamp_us);
                                    // A session that outlived its window starts
                                    // over.
                                    if (!idle || !live)
                                      s.last_active_us = stamp_us;
                                    active_us = s.last_active_us;
                                    found = true;
                                    return false;
                                  }
                                  return !live;
                                }),
                 sessions.end());
  user.last_seen_us = std::max(user.last_seen_us, ToUs(now));
  if (!found) {
    if (max_sessions_per_user_ > 0 &&
        sessions.size() >= static_cast<size_t>(max_sessions_per_user_)) {
      EndOldestSession(user_id, user, sessions, now);
    }
    // A session's first heartbeat is activity: it was just opened.
    active_us = ToUs(now);
    sessions.push_back(Session{SessionId(session_id), active_us, active_us});
  }
  shard.sessions += SizeChange(sessions_before, sessions.size());
  user.PutSessions(std::move(sessions));
  UncapLastSeen(shard, record, user, now);
  Reconcile(shard, record, user, now, Cause::kHeartbeat);

  HeartbeatResult result;
  result.server_time = now;
  result.online_until = FromUs(stamp_us) + online_window_;
  result.became_online = !was_live;
  // The stamp kept, so that the store agrees with memory.
  result.write_ticket = Record(SessionChange{
      SessionChange::Kind::kHeartbeat, user_id, std::string(session_id),
      FromUs(stamp_us), FromUs(user.last_seen_us), FromUs(active_us)});
  return result;
}

absl::StatusOr<SetStatusResult> PresenceRegistry::SetStatus(
    int64_t user_id, const StatusUpdate& update) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  const absl::Time now = Now();
  // Ends at microseconds, like every time stored.
  auto end = [&](absl::Time at, absl::Duration after) {
    if (after > absl::ZeroDuration()) at = now + after;
    return at == absl::InfiniteFuture() ? at : FromUs(ToUs(at));
  };
  const absl::Time availability_until =
      end(update.availability_until, update.availability_for);
  const absl::Time custom_until =
      end(update.custom.expires_at, update.custom_for);
  if (update.availability.has_value() && availability_until <= now) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the availability's end (", absl::FormatTime(availability_until),
        ") is not after the server's time (", absl::FormatTime(now),
        "); give a later moment or a positive duration"));
  }
  if (update.custom_action == StatusUpdate::Custom::kReplace &&
      custom_until <= now) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the custom status's expiry (", absl::FormatTime(custom_until),
        ") is not after the server's time (", absl::FormatTime(now),
        "); give a later moment or a positive duration"));
  }

  uint32_t record;
  UserState& user = shard.users.FindOrAdd(user_id, &record);
  CatchUp(shard, record, user, now);
  const StatusChoice* old = ChoiceOf(shard, record, user);
  StatusChoice choice = old != nullptr ? *old : StatusChoice{};
  const bool was_invisible = choice.availability == Availability::kInvisible;
  if (update.availability.has_value()) {
    choice.availability = *update.availability;
    choice.availability_until = *update.availability == Availability::kAuto
                                    ? absl::InfiniteFuture()
                                    : availability_until;
  }
  const bool invisible = choice.availability == Availability::kInvisible;
  if (invisible && !was_invisible) {
    // Others saw the user last now if they saw them online, else at the
    // last_seen they see.
    choice.last_seen_cap = user.announced_online()
                               ? now
                               : std::min(LastSeen(user), choice.last_seen_cap);
  } else if (!invisible && Evaluate(user, nullptr, now, true).live) {
    choice.last_seen_cap = absl::InfiniteFuture();  // back in sight now
  }
  // A DND's end is shown with it: a new end is news to rich watchers.
  bool detail_changed =
      choice.availability == Availability::kDnd &&
      (old == nullptr || old->availability != Availability::kDnd ||
       old->availability_until != choice.availability_until);
  if (update.custom_action == StatusUpdate::Custom::kReplace) {
    CustomStatus custom = update.custom;
    custom.expires_at = custom_until;
    detail_changed |= !choice.custom.has_value() || !(*choice.custom == custom);
    choice.custom = std::move(custom);
  } else if (update.custom_action == StatusUpdate::Custom::kClear) {
    detail_changed |= choice.custom.has_value();
    choice.custom.reset();
  }
  SetStatusResult result;
  result.server_time = now;
  result.write_ticket = ChangeChoice(shard, record, user, choice, now);
  Reconcile(shard, record, user, now, Cause::kSetStatus, detail_changed);
  result.self = Describe(user, ChoiceOf(shard, record, user), now, true);
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
  CatchUp(shard, record, user, now);
  const bool was_live = Evaluate(user, nullptr, now, true).live;
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
  shard.sessions += SizeChange(sessions_before, user.session_count());
  // An empty session_id names the default session when heartbeating but
  // "every session" here; a client that only uses the default session gets
  // the same effect either way.
  if (removed == 0) {
    result.still_online = was_live;
    return result;
  }
  if (result.sessions_ended > 0) {
    user.last_seen_us = std::max(user.last_seen_us, ToUs(now));
  }
  result.still_online = Evaluate(user, nullptr, now, true).live;
  result.went_offline = was_live && !result.still_online;
  // Announces the change, and forgets the dead sessions left.
  Reconcile(shard, record, user, now, Cause::kMarkOffline);
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
      Shard& shard = ShardFor(id);
      absl::MutexLock lock(&shard.mu);
      uint32_t record;
      const UserState* user = shard.users.Find(id, &record);
      if (user != nullptr &&
          Evaluate(*user, ChoiceOf(shard, record, *user), now, false).status !=
              PublicStatus::kOffline) {
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

PresenceLookup PresenceRegistry::GetPresence(absl::Span<const int64_t> user_ids,
                                             int64_t viewer_user_id) const {
  const absl::Time now = Now();
  PresenceLookup lookup;
  lookup.server_time = now;
  std::vector<UserPresenceInfo>& out = lookup.users;
  out.reserve(user_ids.size());
  for (int64_t id : user_ids) {
    Shard& shard = ShardFor(id);
    absl::MutexLock lock(&shard.mu);
    uint32_t record;
    if (const UserState* user = shard.users.Find(id, &record);
        user != nullptr) {
      out.push_back(Describe(*user, ChoiceOf(shard, record, *user), now,
                             id == viewer_user_id));
    } else {
      out.emplace_back().user_id = id;
    }
  }
  return lookup;
}

void PresenceRegistry::RestoreStatus(int64_t user_id,
                                     const StatusChoice& choice) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  uint32_t record;
  UserState& user = shard.users.FindOrAdd(user_id, &record);
  PutChoice(shard, record, user, choice);
  // Ends that passed while presenced was down are dropped when due: at once.
  IndexDue(shard, record, user, NextDue(View{}, &choice, Now()));
}

void PresenceRegistry::RestoreSession(int64_t user_id,
                                      absl::string_view session_id,
                                      absl::Time last_heartbeat,
                                      absl::Time last_active) {
  Shard& shard = ShardFor(user_id);
  absl::MutexLock lock(&shard.mu);
  uint32_t record;
  UserState& user = shard.users.FindOrAdd(user_id, &record);
  SessionList sessions = user.TakeSessions();
  auto it =
      std::find_if(sessions.begin(), sessions.end(),
                   [&](const Session& s) { return s.id.view() == session_id; });
  const int64_t heartbeat_us = ToUs(last_heartbeat);
  const int64_t active_us = last_active == absl::InfinitePast()
                                ? heartbeat_us
                                : std::min(ToUs(last_active), heartbeat_us);
  if (it == sessions.end()) {
    sessions.push_back(Session{SessionId(session_id), heartbeat_us, active_us});
    ++shard.sessions;
  } else {
    it->last_heartbeat_us = std::max(it->last_heartbeat_us, heartbeat_us);
    it->last_active_us = std::max(it->last_active_us, active_us);
  }
  user.PutSessions(std::move(sessions));
  user.last_seen_us = std::max(user.last_seen_us, heartbeat_us);
  const absl::Time now = Now();
  const View view = Evaluate(user, ChoiceOf(shard, record, user), now, false);
  const bool was_online = user.announced_online();
  // No event: watchers start after the restore. Others see the status the
  // user has now.
  SetAnnounced(shard, user, view.status);
  if (!was_online && user.announced_online() && events_ != nullptr) {
    events_->SeedOnline(user_id);
  }
  IndexDue(shard, record, user,
           NextDue(view, ChoiceOf(shard, record, user), now));
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
  uint32_t record;
  UserState& user = shard.users.FindOrAdd(user_id, &record);
  CatchUp(shard, record, user, now);
  last_seen = std::min(last_seen, now);  // another host's clock ran ahead
  if (Evaluate(user, nullptr, now, true).live ||
      ToUs(last_seen) <= user.last_seen_us) {
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
    const bool was_online = user.announced_online();
    // Reconciles, or (heartbeats moved the end since the entry was made)
    // indexes the user again.
    CatchUp(shard, entry.record, user, now);
    if (was_online && !user.announced_online() && user.session_count() == 0) {
      ++expired;
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
    stats.away_users += shard.by_status[static_cast<int>(PublicStatus::kAway)];
    stats.dnd_users += shard.by_status[static_cast<int>(PublicStatus::kDnd)];
    stats.invisible_users += shard.invisible;
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
