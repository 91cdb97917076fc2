#include "fuzz/registry_comparison.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fuzz/fuzz_check.h"
#include "fuzz/fuzz_trace.h"

namespace presence::fuzz {
namespace {

// The clock never goes further than this from its start: absl::Time would
// go on, but the registry's int64 microseconds end around the year 294,000.
constexpr absl::Duration kMaxClockTravel = absl::Hours(24 * 365 * 1000);

}  // namespace

RegistryComparison::RegistryComparison(absl::Time start, absl::Duration window,
                                       int max_sessions_per_user)
    : start_(start),
      clock_(start),
      window_(absl::Microseconds(absl::ToInt64Microseconds(window))),
      max_sessions_(max_sessions_per_user),
      oracle_(window_, max_sessions_per_user),
      // Rich presence's AWAY is out of the oracle (online/offline only):
      // its heartbeats are all active, and away never comes.
      registry_(clock_, window, &changes_, &events_, max_sessions_per_user,
                absl::InfiniteDuration()) {
  FUZZ_CHECK(registry_.online_window() == window_);
}

absl::Time RegistryComparison::Now() const {
  return absl::FromUnixMicros(absl::ToUnixMicros(clock_.Now()));
}

void RegistryComparison::AdvanceTo(absl::Time t) {
  if (t - start_ > kMaxClockTravel) return;
  FUZZ_TRACE("clock ", Show(t), t < clock_.Now() ? " (back)" : "");
  if (t < clock_.Now()) exact_ = false;
  clock_.Set(t);
}

// ------------------------------------------------------------------ start-up

void RegistryComparison::RestoreSession(int64_t user_id,
                                        const std::string& session_id,
                                        absl::Time last_heartbeat) {
  if (!oracle_.RestoreSession(user_id, session_id, last_heartbeat)) return;
  FUZZ_TRACE("RestoreSession(", user_id, ", \"", absl::CEscape(session_id),
             "\", ", Show(last_heartbeat), ")");
  registry_.RestoreSession(user_id, session_id, last_heartbeat);
  known_.insert(user_id);
}

void RegistryComparison::RestoreLastSeen(int64_t user_id,
                                         absl::Time last_seen) {
  FUZZ_TRACE("RestoreLastSeen(", user_id, ", ", Show(last_seen), ")");
  registry_.RestoreLastSeen(user_id, last_seen);
  oracle_.RestoreLastSeen(user_id, last_seen);
  known_.insert(user_id);
}

void RegistryComparison::CheckRestored() {
  FUZZ_CHECK(changes_.Take().empty());
  FUZZ_CHECK(events_.Take().empty());
  const std::vector<int64_t> online = oracle_.OnlineUsers(Now());
  FUZZ_CHECK(std::set<int64_t>(online.begin(), online.end()) ==
             events_.announced());
}

// ----------------------------------------------------------------- Heartbeat

void RegistryComparison::Heartbeat(int64_t user_id,
                                   const std::string& session_id) {
  const absl::Time now = Now();
  const RegistryOracle::HeartbeatOutcome expected =
      oracle_.Heartbeat(user_id, session_id, now, events_.announced(user_id));

  const HeartbeatResult result = registry_.Heartbeat(user_id, session_id);
  FUZZ_TRACE("Heartbeat(", user_id, ", \"", absl::CEscape(session_id),
             "\") at ", Show(now), ": online_until ", Show(result.online_until),
             result.became_online ? ", became online" : "");
  for (const SessionChange& c : changes_.pending()) {
    FUZZ_TRACE("  change ", static_cast<int>(c.kind), " \"",
               absl::CEscape(c.session_id), "\" at ", Show(c.at));
  }

  std::vector<SessionChange> changes = changes_.Take();
  FUZZ_CHECK(!changes.empty());
  if (changes.size() == 2) {
    // A new session beyond the limit ended the user's oldest live one.
    CheckEviction(user_id, session_id, changes[0], expected);
    oracle_.EndSession(user_id, changes[0].session_id);
    changes.erase(changes.begin());
  } else if (exact_ &&
             expected.eviction == RegistryOracle::Eviction::kRequired) {
    // A session never seen (or ended) is new: the limit applies.
    FUZZ_CHECK_MSG(false, absl::StrCat("user ", user_id, " has ",
                                       expected.other_live_sessions,
                                       " live sessions, limit ", max_sessions_,
                                       ", and a new one"));
  }
  FUZZ_CHECK(changes.size() == 1);
  known_.insert(user_id);
  CheckHeartbeatChange(user_id, session_id, result, changes[0]);

  const std::vector<PresenceEvent> events = events_.Take();
  FUZZ_CHECK(events_.announced(user_id));
  for (const PresenceEvent& e : events) FUZZ_CHECK(e.user_id == user_id);
  FUZZ_CHECK(result.became_online == (!events.empty() && events.back().online));
  if (!exact_) return;
  FUZZ_CHECK_MSG(result.online_until == expected.online_until,
                 absl::StrCat(Show(result.online_until), " vs ",
                              Show(expected.online_until)));
  FUZZ_CHECK_MSG(result.became_online == expected.became_online,
                 absl::StrCat("user ", user_id, " at ", Show(now)));
  FUZZ_CHECK(changes[0].last_seen == expected.last_seen);
  CheckEvents(events, expected.events);
}

void RegistryComparison::CheckEviction(
    int64_t user_id, const std::string& session_id, const SessionChange& ended,
    const RegistryOracle::HeartbeatOutcome& expected) {
  FUZZ_CHECK(max_sessions_ > 0);
  FUZZ_CHECK(ended.kind == SessionChange::Kind::kEndSession);
  FUZZ_CHECK(ended.user_id == user_id && ended.session_id != session_id);
  FUZZ_CHECK(ended.at == Now());
  if (!exact_) return;
  FUZZ_CHECK_MSG(
      expected.eviction != RegistryOracle::Eviction::kNone,
      absl::StrCat("\"", absl::CEscape(session_id), "\" of user ", user_id,
                   " live or not new; ", expected.other_live_sessions,
                   " other live sessions, limit ", max_sessions_));
  const std::vector<std::string>& oldest = expected.oldest_live;
  FUZZ_CHECK_MSG(
      std::find(oldest.begin(), oldest.end(), ended.session_id) != oldest.end(),
      absl::StrCat("ended \"", absl::CEscape(ended.session_id),
                   "\", the oldest live are of ",
                   Show(expected.oldest_heartbeat), ": \"",
                   absl::CEscape(absl::StrJoin(oldest, "\", \"")), "\""));
  FUZZ_CHECK(ended.last_seen == expected.last_seen);
}

void RegistryComparison::CheckHeartbeatChange(int64_t user_id,
                                              const std::string& session_id,
                                              const HeartbeatResult& result,
                                              const SessionChange& change) {
  const absl::Time now = Now();
  FUZZ_CHECK(result.server_time == now);
  FUZZ_CHECK(result.online_until > now);
  if (max_sessions_ > 0) {
    const PresenceLookup lookup = registry_.GetPresence({user_id});
    FUZZ_CHECK_MSG(
        lookup.users[0].live_sessions <= max_sessions_,
        absl::StrCat("user ", user_id, ": ", lookup.users[0].live_sessions,
                     " live sessions, limit ", max_sessions_));
  }
  FUZZ_CHECK(result.write_ticket == changes_.last_ticket());
  FUZZ_CHECK(change.kind == SessionChange::Kind::kHeartbeat);
  FUZZ_CHECK(change.user_id == user_id && change.session_id == session_id);
  FUZZ_CHECK(change.at == result.online_until - window_);
  FUZZ_CHECK(change.last_seen >= change.at);
}

// --------------------------------------------------------------- MarkOffline

void RegistryComparison::MarkOffline(int64_t user_id,
                                     const std::string& session_id) {
  const absl::Time now = Now();
  const bool announced_before = events_.announced(user_id);
  const MarkOfflineResult result = registry_.MarkOffline(user_id, session_id);
  FUZZ_TRACE("MarkOffline(", user_id, ", \"", absl::CEscape(session_id),
             "\") at ", Show(now), ": ended ", result.sessions_ended,
             result.still_online ? ", still online" : "",
             result.went_offline ? ", went offline" : "");
  const RegistryOracle::MarkOfflineOutcome expected =
      oracle_.MarkOffline(user_id, session_id, now, announced_before);

  FUZZ_CHECK(result.server_time == now);
  FUZZ_CHECK(result.sessions_ended >= 0);
  FUZZ_CHECK(!(result.went_offline && result.still_online));
  const std::vector<SessionChange> changes = changes_.Take();
  FUZZ_CHECK(changes.size() <= 1);
  FUZZ_CHECK(result.write_ticket ==
             (changes.empty() ? 0 : changes_.last_ticket()));
  if (!changes.empty()) {
    FUZZ_CHECK(changes[0].kind == (session_id.empty()
                                       ? SessionChange::Kind::kEndAllSessions
                                       : SessionChange::Kind::kEndSession));
    FUZZ_CHECK(changes[0].user_id == user_id && changes[0].at == now);
    if (!session_id.empty()) FUZZ_CHECK(changes[0].session_id == session_id);
  }
  CheckMarkOfflineAnswer(user_id, result, changes, expected);
}

void RegistryComparison::CheckMarkOfflineAnswer(
    int64_t user_id, const MarkOfflineResult& result,
    const std::vector<SessionChange>& changes,
    const RegistryOracle::MarkOfflineOutcome& expected) {
  const std::vector<PresenceEvent> events = events_.Take();
  for (const PresenceEvent& e : events) {
    FUZZ_CHECK(e.user_id == user_id && !e.online);
  }
  FUZZ_CHECK(result.still_online == events_.announced(user_id));
  if (!exact_) return;

  FUZZ_CHECK_MSG(
      result.sessions_ended == expected.sessions_ended,
      absl::StrCat(result.sessions_ended, " vs ", expected.sessions_ended));
  FUZZ_CHECK(result.still_online == expected.still_online);
  FUZZ_CHECK(result.went_offline == expected.went_offline);
  // A session only the oracle still holds (it has expired) may or may not
  // still be in the registry: either way is right.
  if (expected.sessions_ended > 0) FUZZ_CHECK(changes.size() == 1);
  if (expected.sessions_matching == 0) FUZZ_CHECK(changes.empty());
  if (!changes.empty()) FUZZ_CHECK(changes[0].last_seen == expected.last_seen);
  CheckEvents(events, expected.events);
}

// --------------------------------------------------------------------- reads

void RegistryComparison::GetPresence(const std::vector<int64_t>& user_ids) {
  const absl::Time now = Now();
  const PresenceLookup lookup = registry_.GetPresence(user_ids);
  FUZZ_CHECK(lookup.server_time == now);
  FUZZ_CHECK(lookup.users.size() == user_ids.size());
  for (size_t i = 0; i < user_ids.size(); ++i) {
    const UserPresenceInfo& info = lookup.users[i];
    const int64_t id = user_ids[i];
    FUZZ_CHECK(info.user_id == id);
    FUZZ_CHECK(info.online == (info.live_sessions > 0));
    if (info.online) {
      FUZZ_CHECK(info.online_until > now);
      // The latest heartbeat is part of last_seen.
      FUZZ_CHECK(info.last_seen >= info.online_until - window_);
    }
    if (!exact_) continue;
    const UserPresenceInfo truth = oracle_.Presence(id, now);
    FUZZ_CHECK_MSG(
        info.live_sessions == truth.live_sessions,
        absl::StrCat("user ", id, ": ", info.live_sessions,
                     " live sessions, oracle ", truth.live_sessions));
    if (info.online) FUZZ_CHECK(info.online_until == truth.online_until);
    FUZZ_CHECK_MSG(
        info.last_seen == truth.last_seen,
        absl::StrCat("user ", id, ": last_seen ", Show(info.last_seen),
                     ", oracle ", Show(truth.last_seen)));
  }
  FUZZ_CHECK(events_.Take().empty());
  FUZZ_CHECK(changes_.Take().empty());
}

void RegistryComparison::Sweep() {
  const absl::Time now = Now();
  const std::set<int64_t> announced_before = events_.announced();
  const int64_t expired = registry_.SweepExpired();
  FUZZ_TRACE("SweepExpired() at ", Show(now), ": ", expired, " expired");
  const std::vector<PresenceEvent> events = events_.Take();
  FUZZ_CHECK(expired == static_cast<int64_t>(events.size()));
  CheckExpiries(events, announced_before, now);
  FUZZ_CHECK(changes_.Take().empty());
  // Nothing due is left behind.
  FUZZ_CHECK_MSG(registry_.NextExpiry() > now,
                 absl::StrCat(Show(registry_.NextExpiry()), " <= ", Show(now)));
}

OnlinePage RegistryComparison::ListPage(const std::vector<int64_t>& only,
                                        int64_t after, int page_size) {
  const absl::Time now = Now();
  const std::set<int64_t> announced_before = events_.announced();

  const OnlinePage page = registry_.ListOnline(only, after, page_size);
  FUZZ_TRACE("ListOnline([", absl::StrJoin(only, ","), "], ", after, ", ",
             page_size, ") at ", Show(now), ": [",
             absl::StrJoin(page.user_ids, ","), "] of ", page.total_online,
             page.has_more ? ", more" : "");
  CheckPageShape(page, only, after, page_size);
  const std::vector<PresenceEvent> events = events_.Take();
  if (only.empty()) {
    CheckExpiries(events, announced_before, now);
  } else {
    FUZZ_CHECK(events.empty());
  }
  FUZZ_CHECK(changes_.Take().empty());
  if (!exact_) return page;

  const OnlinePage expected = oracle_.ListOnline(only, after, page_size, now);
  FUZZ_CHECK_MSG(
      page.total_online == expected.total_online,
      absl::StrCat(page.total_online, " vs ", expected.total_online));
  FUZZ_CHECK_MSG(
      page.user_ids == expected.user_ids,
      absl::StrCat("page [", absl::StrJoin(page.user_ids, ","), "], expected [",
                   absl::StrJoin(expected.user_ids, ","), "] after ", after));
  FUZZ_CHECK(page.has_more == expected.has_more);
  return page;
}

// What any page must be: ascending after the cursor, among `only`, no larger
// than asked, and with users left only if it has some.
void RegistryComparison::CheckPageShape(const OnlinePage& page,
                                        const std::vector<int64_t>& only,
                                        int64_t after, int page_size) const {
  FUZZ_CHECK(page.server_time == Now());
  FUZZ_CHECK(page.user_ids.size() <= static_cast<size_t>(page_size));
  // The service answers next_page_token from the last id.
  FUZZ_CHECK(!page.has_more || !page.user_ids.empty());
  int64_t previous = after;
  for (int64_t id : page.user_ids) {
    FUZZ_CHECK_MSG(id > previous, absl::StrCat(id, " after ", previous));
    previous = id;
    if (!only.empty()) {
      FUZZ_CHECK(std::find(only.begin(), only.end(), id) != only.end());
    }
  }
  FUZZ_CHECK(page.total_online >= static_cast<int64_t>(page.user_ids.size()));
}

OnlinePage RegistryComparison::ListEveryonePage(int64_t after, int page_size) {
  const absl::Time now = Now();
  const std::set<int64_t> announced_before = events_.announced();
  const OnlinePage page = registry_.ListOnline({}, after, page_size);
  CheckExpiries(events_.Take(), announced_before, now);
  FUZZ_CHECK(!page.has_more || !page.user_ids.empty());
  return page;
}

void RegistryComparison::CheckListedEveryone(
    const std::vector<int64_t>& listed) {
  FUZZ_CHECK(std::is_sorted(listed.begin(), listed.end()));
  FUZZ_CHECK(std::adjacent_find(listed.begin(), listed.end()) == listed.end());
  FUZZ_CHECK_MSG(listed == OnlineByGetPresence(),
                 absl::StrCat("listed [", absl::StrJoin(listed, ","),
                              "], GetPresence online [",
                              absl::StrJoin(OnlineByGetPresence(), ","), "]"));
  if (exact_) FUZZ_CHECK(listed == oracle_.OnlineUsers(Now()));
}

std::vector<int64_t> RegistryComparison::OnlineByGetPresence() const {
  const std::vector<int64_t> ids(known_.begin(), known_.end());
  const PresenceLookup lookup = registry_.GetPresence(ids);
  std::vector<int64_t> online;
  for (const UserPresenceInfo& info : lookup.users) {
    if (info.online) online.push_back(info.user_id);
  }
  return online;
}

// -------------------------------------------------------------------- events

void RegistryComparison::CheckEvents(
    const std::vector<PresenceEvent>& got,
    const std::vector<PresenceEvent>& expected) const {
  FUZZ_CHECK_MSG(
      got.size() == expected.size(),
      absl::StrCat(got.size(), " events, expected ", expected.size()));
  for (size_t i = 0; i < got.size(); ++i) {
    FUZZ_CHECK(got[i].user_id == expected[i].user_id);
    FUZZ_CHECK(got[i].online == expected[i].online);
    FUZZ_CHECK(got[i].reason == expected[i].reason);
    FUZZ_CHECK_MSG(
        got[i].at == expected[i].at,
        absl::StrCat("user ", got[i].user_id, ": at ", Show(got[i].at),
                     ", expected ", Show(expected[i].at)));
  }
}

void RegistryComparison::CheckExpiries(
    const std::vector<PresenceEvent>& events,
    const std::set<int64_t>& announced_before, absl::Time now) const {
  for (const PresenceEvent& e : events) {
    FUZZ_CHECK(!e.online && e.reason == PresenceEvent::Reason::kExpired);
    FUZZ_CHECK(announced_before.count(e.user_id));
    FUZZ_CHECK(e.at <= now);
    if (exact_) FUZZ_CHECK(e.at == oracle_.WindowEnd(e.user_id));
  }
  if (exact_) {
    const std::vector<int64_t> online = oracle_.OnlineUsers(now);
    FUZZ_CHECK(std::set<int64_t>(online.begin(), online.end()) ==
               events_.announced());
  }
}

void RegistryComparison::CheckGlobal() {
  const PresenceRegistry::Stats stats = registry_.stats();
  FUZZ_CHECK_MSG(
      stats.online_users == static_cast<int64_t>(events_.announced().size()),
      absl::StrCat(stats.online_users, " vs ", events_.announced().size()));
  if (!exact_) return;
  const absl::Time now = Now();
  FUZZ_CHECK(stats.sessions >= oracle_.LiveSessions(now));
  FUZZ_CHECK(stats.sessions <= oracle_.HeldSessions());
  // The sweeper waits until NextExpiry(): never past an announced user's
  // end of window, or their EXPIRED event would come late.
  absl::Time first_end = absl::InfiniteFuture();
  for (int64_t id : events_.announced()) {
    first_end = std::min(first_end, oracle_.WindowEnd(id));
  }
  FUZZ_CHECK_MSG(
      registry_.NextExpiry() <= first_end,
      absl::StrCat(Show(registry_.NextExpiry()), " > ", Show(first_end)));
}

}  // namespace presence::fuzz
