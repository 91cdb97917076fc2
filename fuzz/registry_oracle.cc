#include "fuzz/registry_oracle.h"

#include <algorithm>
#include <set>

namespace presence::fuzz {

RegistryOracle::RegistryOracle(absl::Duration online_window,
                               int max_sessions_per_user)
    : window_(online_window), max_sessions_(max_sessions_per_user) {}

const RegistryOracle::User* RegistryOracle::Find(int64_t user_id) const {
  auto it = users_.find(user_id);
  return it == users_.end() ? nullptr : &it->second;
}

bool RegistryOracle::RestoreSession(int64_t user_id,
                                    const std::string& session_id,
                                    absl::Time last_heartbeat) {
  User& user = users_[user_id];
  if (max_sessions_ > 0 && user.sessions.count(session_id) == 0 &&
      user.sessions.size() >= static_cast<size_t>(max_sessions_)) {
    return false;
  }
  auto [it, inserted] = user.sessions.emplace(session_id, last_heartbeat);
  if (!inserted) it->second = std::max(it->second, last_heartbeat);
  user.last_seen = std::max(user.last_seen, last_heartbeat);
  return true;
}

void RegistryOracle::RestoreLastSeen(int64_t user_id, absl::Time last_seen) {
  User& user = users_[user_id];
  user.last_seen = std::max(user.last_seen, last_seen);
}

void RegistryOracle::AddExpiryOwed(int64_t user_id, absl::Time now,
                                   bool announced_online,
                                   std::vector<PresenceEvent>* events) const {
  if (announced_online && !Online(user_id, now)) {
    events->push_back(
        {user_id, false, PresenceEvent::Reason::kExpired, WindowEnd(user_id)});
  }
}

void RegistryOracle::FindOldestLive(const User& user,
                                    const std::string& session_id,
                                    absl::Time now,
                                    HeartbeatOutcome* outcome) const {
  for (const auto& [other, last] : user.sessions) {
    if (other == session_id || !Live(last, now)) continue;
    ++outcome->other_live_sessions;
    outcome->oldest_heartbeat = std::min(outcome->oldest_heartbeat, last);
  }
  for (const auto& [other, last] : user.sessions) {
    if (other != session_id && Live(last, now) &&
        last == outcome->oldest_heartbeat) {
      outcome->oldest_live.push_back(other);
    }
  }
}

// A new session (one the user never had, or had ended) over the limit ends
// the oldest live one. An expired session the oracle still holds may be new
// to the registry too, if it forgot it.
RegistryOracle::Eviction RegistryOracle::EvictionFor(
    const User& user, const std::string& session_id, absl::Time now,
    int other_live) const {
  if (max_sessions_ == 0 || other_live < max_sessions_) return Eviction::kNone;
  auto it = user.sessions.find(session_id);
  if (it == user.sessions.end()) return Eviction::kRequired;
  return Live(it->second, now) ? Eviction::kNone : Eviction::kMaybe;
}

RegistryOracle::HeartbeatOutcome RegistryOracle::Heartbeat(
    int64_t user_id, const std::string& session_id, absl::Time now,
    bool announced_online) {
  HeartbeatOutcome outcome;
  const bool online_before = Online(user_id, now);
  User& user = users_[user_id];
  FindOldestLive(user, session_id, now, &outcome);
  outcome.eviction =
      EvictionFor(user, session_id, now, outcome.other_live_sessions);
  AddExpiryOwed(user_id, now, announced_online, &outcome.events);
  if (!online_before) {
    outcome.events.push_back(
        {user_id, true, PresenceEvent::Reason::kHeartbeat, now});
  }
  outcome.became_online = !online_before;

  auto [it, inserted] = user.sessions.emplace(session_id, now);
  // A clock stepped back never shortens presence.
  if (!inserted) it->second = std::max(it->second, now);
  user.last_seen = std::max(user.last_seen, now);
  outcome.online_until = it->second + window_;
  outcome.last_seen = user.last_seen;
  return outcome;
}

void RegistryOracle::EndSession(int64_t user_id,
                                const std::string& session_id) {
  users_[user_id].sessions.erase(session_id);
}

RegistryOracle::MarkOfflineOutcome RegistryOracle::MarkOffline(
    int64_t user_id, const std::string& session_id, absl::Time now,
    bool announced_online) {
  MarkOfflineOutcome outcome;
  const bool online_before = Online(user_id, now);
  AddExpiryOwed(user_id, now, announced_online, &outcome.events);
  User& user = users_[user_id];
  for (auto it = user.sessions.begin(); it != user.sessions.end();) {
    // An empty session_id ends every session of the user.
    if (!session_id.empty() && it->first != session_id) {
      ++it;
      continue;
    }
    ++outcome.sessions_matching;
    if (Live(it->second, now)) ++outcome.sessions_ended;
    it = user.sessions.erase(it);
  }
  if (outcome.sessions_ended > 0) {
    user.last_seen = std::max(user.last_seen, now);
  }
  outcome.last_seen = user.last_seen;
  outcome.still_online = Online(user_id, now);
  outcome.went_offline = online_before && !outcome.still_online;
  if (outcome.went_offline) {
    outcome.events.push_back(
        {user_id, false, PresenceEvent::Reason::kMarkOffline, now});
  }
  return outcome;
}

int RegistryOracle::LiveSessions(int64_t user_id, absl::Time now) const {
  const User* user = Find(user_id);
  if (user == nullptr) return 0;
  int live = 0;
  for (const auto& [session, last] : user->sessions) {
    if (Live(last, now)) ++live;
  }
  return live;
}

absl::Time RegistryOracle::WindowEnd(int64_t user_id) const {
  absl::Time end = absl::InfinitePast();
  if (const User* user = Find(user_id); user != nullptr) {
    for (const auto& [session, last] : user->sessions) {
      end = std::max(end, last + window_);
    }
  }
  return end;
}

absl::Time RegistryOracle::LastSeen(int64_t user_id) const {
  const User* user = Find(user_id);
  return user == nullptr ? absl::InfinitePast() : user->last_seen;
}

UserPresenceInfo RegistryOracle::Presence(int64_t user_id,
                                          absl::Time now) const {
  UserPresenceInfo info;
  info.user_id = user_id;
  info.live_sessions = LiveSessions(user_id, now);
  info.online = info.live_sessions > 0;
  info.status = info.online ? PublicStatus::kOnline : PublicStatus::kOffline;
  info.last_seen = LastSeen(user_id);
  if (info.online) info.online_until = WindowEnd(user_id);
  return info;
}

std::vector<int64_t> RegistryOracle::OnlineUsers(absl::Time now) const {
  std::vector<int64_t> online;
  for (const auto& [id, user] : users_) {
    if (Online(id, now)) online.push_back(id);
  }
  return online;  // ascending: std::map's order
}

OnlinePage RegistryOracle::ListOnline(absl::Span<const int64_t> only,
                                      int64_t after_user_id, int page_size,
                                      absl::Time now) const {
  std::vector<int64_t> online = OnlineUsers(now);
  if (!only.empty()) {
    const std::set<int64_t> wanted(only.begin(), only.end());
    online.erase(std::remove_if(online.begin(), online.end(),
                                [&](int64_t id) { return !wanted.count(id); }),
                 online.end());
  }
  OnlinePage page;
  page.server_time = now;
  page.total_online = static_cast<int64_t>(online.size());
  page.user_ids.assign(
      std::upper_bound(online.begin(), online.end(), after_user_id),
      online.end());
  page.has_more = page.user_ids.size() > static_cast<size_t>(page_size);
  if (page.has_more) page.user_ids.resize(page_size);
  return page;
}

std::vector<absl::Time> RegistryOracle::SessionWindowEnds() const {
  std::vector<absl::Time> ends;
  for (const auto& [id, user] : users_) {
    for (const auto& [session, last] : user.sessions) {
      ends.push_back(last + window_);
    }
  }
  return ends;
}

int64_t RegistryOracle::LiveSessions(absl::Time now) const {
  int64_t live = 0;
  for (const auto& [id, user] : users_) live += LiveSessions(id, now);
  return live;
}

int64_t RegistryOracle::HeldSessions() const {
  int64_t held = 0;
  for (const auto& [id, user] : users_) held += user.sessions.size();
  return held;
}

}  // namespace presence::fuzz
