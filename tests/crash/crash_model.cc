#include "tests/crash/crash_model.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace presence::crash {
namespace {

std::string KindName(Op::Kind kind) {
  switch (kind) {
    case Op::Kind::kHeartbeat:
      return "Heartbeat";
    case Op::Kind::kEndSession:
      return "MarkOffline";
    case Op::Kind::kEndAll:
      return "MarkOffline";  // session "" ends them all
  }
  return "?";
}

std::string Us(int64_t us) {
  return us == kNeverUs ? std::string("never") : absl::StrCat(us);
}

// The sessions `op` (a MarkOffline) ends in `state`.
std::vector<std::string> Ended(const Op& op, const UserState& state) {
  std::vector<std::string> ended;
  for (const auto& entry : state.sessions) {
    if (op.kind == Op::Kind::kEndAll || entry.first == op.session_id) {
      ended.push_back(entry.first);
    }
  }
  return ended;
}

}  // namespace

std::string ToString(const UserState& state) {
  std::vector<std::string> sessions;
  for (const auto& [id, beat] : state.sessions) {
    sessions.push_back(absl::StrCat("'", id, "'@", beat));
  }
  return absl::StrCat("{sessions [", absl::StrJoin(sessions, ", "),
                      "], last_seen ", Us(state.last_seen_us), "}");
}

std::string ToString(const Observed& seen) {
  return absl::StrCat("{", seen.online ? "online" : "offline", ", ",
                      seen.live_sessions, " live, online_until ",
                      Us(seen.online_until_us), ", last_seen ",
                      Us(seen.last_seen_us), "}");
}

void CheckStats::Add(const CheckStats& o) {
  acked_required += o.acked_required;
  acked_survived += o.acked_survived;
  acked_lost += o.acked_lost;
  unknown_applied += o.unknown_applied;
  unknown_not_applied += o.unknown_not_applied;
  max_lost_age = std::max(max_lost_age, o.max_lost_age);
}

Observed Show(const UserState& state, absl::Duration online_window) {
  Observed seen;
  seen.last_seen_us = state.last_seen_us;
  seen.live_sessions = static_cast<int>(state.sessions.size());
  seen.online = !state.sessions.empty();
  for (const auto& entry : state.sessions) {
    seen.online_until_us =
        std::max(seen.online_until_us,
                 entry.second + absl::ToInt64Microseconds(online_window));
  }
  return seen;
}

UserModel::UserModel(absl::Duration online_window)
    : window_us_(absl::ToInt64Microseconds(online_window)) {}

void UserModel::Apply(const Op& op, UserState& state) const {
  if (op.kind == Op::Kind::kHeartbeat) {
    // The session keeps the stamp behind online_until; last_seen takes the
    // call's time (the two differ only if the server's clock stepped back).
    state.sessions[op.session_id] = op.online_until_us - window_us_;
    state.last_seen_us = std::max(state.last_seen_us, op.server_time_us);
    return;
  }
  const std::vector<std::string> ended = Ended(op, state);
  for (const std::string& id : ended) state.sessions.erase(id);
  if (!ended.empty()) {
    state.last_seen_us = std::max(state.last_seen_us, op.server_time_us);
  }
}

absl::Status UserModel::Heartbeat(Op op, bool became_online) {
  const bool was_offline = current_.sessions.empty();
  op.acked = true;
  Apply(op, current_);
  ops_.push_back(std::move(op));
  if (became_online != was_offline) {
    return absl::InternalError(absl::StrCat(
        "Heartbeat answered became_online=", became_online,
        " but the model had ", was_offline ? "no" : "a", " live session"));
  }
  return absl::OkStatus();
}

absl::Status UserModel::MarkOffline(Op op, int sessions_ended,
                                    bool still_online) {
  const size_t ended = Ended(op, current_).size();
  op.acked = true;
  Apply(op, current_);
  const std::string session = op.session_id;
  ops_.push_back(std::move(op));
  if (static_cast<size_t>(sessions_ended) != ended ||
      still_online == current_.sessions.empty()) {
    return absl::InternalError(absl::StrCat(
        "MarkOffline('", session, "') answered sessions_ended=", sessions_ended,
        " still_online=", still_online, "; the model expected ", ended, " and ",
        !current_.sessions.empty(), " (now ", ToString(current_), ")"));
  }
  return absl::OkStatus();
}

void UserModel::Unknown(Op op) {
  op.acked = false;
  ops_.push_back(std::move(op));
}

bool UserModel::Matches(const UserState& state, const Observed& seen) const {
  const Observed expected = Show(state, absl::Microseconds(window_us_));
  return expected.online == seen.online &&
         expected.live_sessions == seen.live_sessions &&
         expected.online_until_us == seen.online_until_us &&
         expected.last_seen_us == seen.last_seen_us;
}

bool UserModel::ApplyUnknown(const Op& op, const Observed& seen,
                             const KillInfo& kill, UserState& state) const {
  // Applied, the call was the user's latest: its stamp is the latest
  // heartbeat (online_until - window) or the latest last_seen.
  int64_t stamp;
  if (op.kind == Op::Kind::kHeartbeat) {
    if (!seen.online) return false;
    stamp = seen.online_until_us - window_us_;
  } else {
    if (Ended(op, state).empty()) return true;  // ends nothing: no change
    stamp = seen.last_seen_us;
  }
  if (stamp < op.sent_us || stamp > kill.dead_by_us) return false;
  Op applied = op;
  applied.server_time_us = stamp;
  applied.online_until_us = stamp + window_us_;
  Apply(applied, state);
  return true;
}

absl::Status UserModel::Check(const Observed& seen, const KillInfo& kill,
                              CheckStats* stats) {
  size_t required = 0;
  for (size_t i = 0; i < ops_.size(); ++i) {
    const Op& op = ops_[i];
    if (op.acked &&
        (!kill.loss_bound.has_value() ||
         absl::FromChrono(kill.killed_at - op.acked_at) > *kill.loss_bound)) {
      required = i + 1;
    }
  }
  UserState state = confirmed_;
  for (size_t i = 0; i < required; ++i) Apply(ops_[i], state);
  // Every call changes last_seen to its own, later time, unless it changes
  // nothing at all; so at most one prefix can match, up to calls that change
  // nothing.
  size_t applied = required;
  while (!Matches(state, seen)) {
    if (applied == ops_.size()) {
      return absl::DataLossError(Describe(seen, kill));
    }
    const Op& op = ops_[applied];
    if (op.acked) {
      Apply(op, state);
    } else if (!ApplyUnknown(op, seen, kill, state)) {
      return absl::DataLossError(Describe(seen, kill));
    }
    ++applied;
  }
  // Calls after the match that would change nothing (a logout of a session
  // that is not there) cannot be told lost: count them as applied.
  while (applied < ops_.size()) {
    UserState next = state;
    const Op& op = ops_[applied];
    if (op.acked) {
      Apply(op, next);
    } else if (!ApplyUnknown(op, seen, kill, next)) {
      break;
    }
    if (!(next == state)) break;
    ++applied;
  }

  CheckStats found;
  found.acked_required = static_cast<int64_t>(required);
  for (size_t i = 0; i < ops_.size(); ++i) {
    const Op& op = ops_[i];
    if (i < applied) {
      ++(op.acked ? found.acked_survived : found.unknown_applied);
    } else if (!op.acked) {
      ++found.unknown_not_applied;
    } else {
      ++found.acked_lost;
      found.max_lost_age = std::max(
          found.max_lost_age, absl::FromChrono(kill.killed_at - op.acked_at));
    }
  }
  if (stats != nullptr) stats->Add(found);
  confirmed_ = state;
  current_ = std::move(state);
  ops_.clear();
  return absl::OkStatus();
}

std::string UserModel::Describe(const Observed& seen,
                                const KillInfo& kill) const {
  std::string out = absl::StrCat(
      "the restarted server shows ", ToString(seen),
      ", which no allowed prefix of the calls explains.\n  confirmed state ",
      ToString(confirmed_), "\n  calls since (",
      kill.loss_bound.has_value()
          ? absl::StrCat("those answered more than ",
                         absl::FormatDuration(*kill.loss_bound),
                         " before the kill must survive")
          : std::string("every answered one must survive"),
      "):");
  for (const Op& op : ops_) {
    absl::StrAppend(&out, "\n    ", KindName(op.kind), "('", op.session_id,
                    "') sent at ", op.sent_us);
    if (op.acked) {
      absl::StrAppend(
          &out, ", answered OK: server_time ", op.server_time_us,
          op.kind == Op::Kind::kHeartbeat
              ? absl::StrCat(", online_until ", op.online_until_us)
              : std::string(),
          ", ",
          absl::FormatDuration(absl::FromChrono(kill.killed_at - op.acked_at)),
          " before the kill");
    } else {
      absl::StrAppend(&out, ", not answered (server dead by ", kill.dead_by_us,
                      ")");
    }
  }
  absl::StrAppend(&out,
                  "\n  with every answered call applied: ", ToString(current_));
  return out;
}

}  // namespace presence::crash
