#ifndef PRESENCE_TESTS_CRASH_CRASH_MODEL_H_
#define PRESENCE_TESTS_CRASH_CRASH_MODEL_H_

// What the crash-consistency test expects of one user after presenced is
// killed and restarted: the model of the user's durable state, the calls made
// since it was last confirmed, and the check of what the restarted server
// shows against them. Pure logic, no gRPC, so the check itself is tested
// (crash_model_test.cc) on histories where it must refuse.

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace presence::crash {

using SteadyTime = std::chrono::steady_clock::time_point;

// No last_seen: the user was never seen.
inline constexpr int64_t kNeverUs = std::numeric_limits<int64_t>::min();

// One user's presence as presenced holds it, with times in microseconds of
// the server's (wall) clock. With a window far longer than the test, no
// session expires, so every session here is live.
struct UserState {
  std::map<std::string, int64_t> sessions;  // session_id -> last_heartbeat
  int64_t last_seen_us = kNeverUs;

  bool operator==(const UserState& o) const {
    return sessions == o.sessions && last_seen_us == o.last_seen_us;
  }
};

// What GetPresence shows of one user.
struct Observed {
  bool online = false;
  int live_sessions = 0;
  int64_t online_until_us = kNeverUs;  // kNeverUs when offline
  int64_t last_seen_us = kNeverUs;     // kNeverUs when unset
};

// One Heartbeat or MarkOffline call.
struct Op {
  enum class Kind {
    kHeartbeat,   // Heartbeat(user, session_id)
    kEndSession,  // MarkOffline(user, session_id), session_id not empty
    kEndAll,      // MarkOffline(user, "")
  };
  Kind kind = Kind::kHeartbeat;
  std::string session_id;
  // The test's wall clock just before the call, floored to the microsecond:
  // the server cannot stamp the call earlier (same machine, same clock).
  int64_t sent_us = 0;

  // Answered OK, with what follows; otherwise the call failed or was in
  // flight at the kill, and may or may not have been applied.
  bool acked = false;
  int64_t server_time_us = 0;   // the response's server_time
  int64_t online_until_us = 0;  // Heartbeat only: the response's online_until
  SteadyTime acked_at;          // when the test received the answer
};

// How the restarted server must relate to the calls made before the kill.
struct KillInfo {
  // The server's clock cannot have stamped anything later than this (taken
  // once the killed process was reaped).
  int64_t dead_by_us = 0;
  // When SIGKILL was sent.
  SteadyTime killed_at;
  // nullopt: every acknowledged call must survive (--durability=commit, or a
  // graceful shutdown). Otherwise (--durability=async) only those answered
  // more than this long before the kill must; later ones may be lost, but
  // only as a suffix of the user's calls (the writer commits in order).
  std::optional<absl::Duration> loss_bound;
};

// What one check found, summed over users and kills for the report.
struct CheckStats {
  int64_t acked_required = 0;  // acknowledged calls that had to survive
  int64_t acked_survived = 0;  // acknowledged calls found applied
  int64_t acked_lost = 0;      // acknowledged calls found lost (async only)
  int64_t unknown_applied = 0;
  int64_t unknown_not_applied = 0;
  // The oldest lost acknowledged call, as the time from its answer to the
  // kill (async only).
  absl::Duration max_lost_age = absl::ZeroDuration();

  void Add(const CheckStats& o);
};

// One user's model. Not thread-safe: each user belongs to one client thread
// between kills, and to the checking thread while the clients are stopped.
// Calls on one user are sequential, and a failed call is the user's last
// before the next check (its thread stops), so at most one call per user is
// unknown, and it is the last.
class UserModel {
 public:
  explicit UserModel(absl::Duration online_window);

  // The state the live server must hold: the confirmed state with every call
  // since applied. Valid while no call is unknown.
  const UserState& current() const { return current_; }
  bool has_unknown() const { return !ops_.empty() && !ops_.back().acked; }
  int64_t ops_since_check() const { return static_cast<int64_t>(ops_.size()); }

  // An answered Heartbeat. Error if the answer contradicts the model
  // (became_online when the user already had a live session, or not when
  // they had none).
  absl::Status Heartbeat(Op op, bool became_online);
  // An answered MarkOffline. Error if sessions_ended or still_online differ
  // from the model.
  absl::Status MarkOffline(Op op, int sessions_ended, bool still_online);
  // A call that was not answered OK. Must be the last before Check().
  void Unknown(Op op);

  // After a restart: `seen` must be the confirmed state with a prefix of the
  // calls since applied, a prefix that holds every call `kill` requires. On
  // success that state becomes the confirmed one and the calls are dropped.
  // On error, the message describes the history.
  absl::Status Check(const Observed& seen, const KillInfo& kill,
                     CheckStats* stats);

 private:
  // Applies an acknowledged call to `state`.
  void Apply(const Op& op, UserState& state) const;
  bool Matches(const UserState& state, const Observed& seen) const;
  // Applies the unknown call `op` to `state` as `seen` shows it applied, if
  // it can have been (stamped within [op.sent_us, kill.dead_by_us]); false if
  // it cannot.
  bool ApplyUnknown(const Op& op, const Observed& seen, const KillInfo& kill,
                    UserState& state) const;
  std::string Describe(const Observed& seen, const KillInfo& kill) const;

  const int64_t window_us_;
  UserState confirmed_;
  UserState current_;
  std::vector<Op> ops_;  // since confirmed_
};

// The user's state as GetPresence would show it.
Observed Show(const UserState& state, absl::Duration online_window);

// For failure messages.
std::string ToString(const UserState& state);
std::string ToString(const Observed& seen);

}  // namespace presence::crash

#endif  // PRESENCE_TESTS_CRASH_CRASH_MODEL_H_
