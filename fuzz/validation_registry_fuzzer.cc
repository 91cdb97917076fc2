// Request validation and PresenceRegistry, driven by a sequence of operations
// decoded from the input: requests with fuzzed fields go through validation,
// the valid ones are applied to a registry on a FakeClock that the input also
// moves (small steps, exact ends of windows, years, and steps back), and every
// answer is compared with a reference model of DESIGN.md's semantics: a map of
// (user, session) -> last heartbeat, a user online while
// now < last_heartbeat + online_window for one of their sessions.
//
// What is checked (fuzz/README.md lists it too):
// - validation accepts exactly the requests DESIGN.md calls valid, and a
//   rejection is INVALID_ARGUMENT naming a violated field; page tokens
//   round-trip;
// - every Heartbeat / MarkOffline / GetPresence / ListOnline answer equals
//   the model's, ListOnline pages are ascending, complete and consistent with
//   total_online and has_more, following next_page_token lists everyone once;
// - the ChangeSink gets exactly the changes the answers imply, the EventSink
//   gets alternating transitions per user, with the model's reasons and times,
//   and after SweepExpired() (or a full ListOnline) the users announced
//   online are exactly the online ones;
// - stats() and NextExpiry() agree with the announced users (the sweeper is
//   never told to wake later than the first end of window);
// - with max_sessions_per_user, a new session beyond the limit ends the
//   user's oldest live one, and no user has more live sessions.
// After the clock has stepped back, answers are no longer compared with the
// model (the registry forgets expired sessions, which a step back would
// revive in the model); the registry must still agree with itself.

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "fuzz/fuzz_check.h"
#include "presence/v1/presence.pb.h"
#include "service/clock.h"
#include "service/presence_event.h"
#include "service/presence_registry.h"
#include "service/request_validation.h"
#include "service/session_change.h"

namespace presence {
namespace {

constexpr int kMaxOps = 256;
constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();
constexpr int64_t kMinInt64 = std::numeric_limits<int64_t>::min();
// The clock never goes further than this from its start: absl::Time would
// go on, but the registry's int64 microseconds end around the year 294,000.
constexpr absl::Duration kMaxClockTravel = absl::Hours(24 * 365 * 1000);

std::string Show(absl::Time t) {
  return absl::FormatTime(t, absl::UTCTimeZone());
}

// PRESENCE_FUZZ_TRACE=1 prints every operation, to read a reproducer.
bool Tracing() {
  static const bool tracing = [] {
    const char* value = std::getenv("PRESENCE_FUZZ_TRACE");
    return value != nullptr && *value != '\0' && std::strcmp(value, "0") != 0;
  }();
  return tracing;
}
#define TRACE(...)                                                     \
  do {                                                                 \
    if (Tracing()) {                                                   \
      std::fprintf(stderr, "%s\n", absl::StrCat(__VA_ARGS__).c_str()); \
    }                                                                  \
  } while (false)

// ---------------------------------------------------------------- the sinks

class RecordingChanges : public ChangeSink {
 public:
  uint64_t Record(const SessionChange& change) override {
    pending_.push_back(change);
    return ++tickets_;
  }
  // The changes since the last call, and the ticket of the latest one.
  std::vector<SessionChange> Take() { return std::exchange(pending_, {}); }
  const std::vector<SessionChange>& pending() const { return pending_; }
  uint64_t last_ticket() const { return tickets_; }

 private:
  std::vector<SessionChange> pending_;
  uint64_t tickets_ = 0;
};

// Checks that each user's events alternate online / offline with the right
// kind of reason, and keeps who is announced online.
class CheckingEvents : public EventSink {
 public:
  void Publish(const PresenceEvent& event) override {
    FUZZ_CHECK_MSG(!event.status_only,
                   absl::StrCat("user ", event.user_id,
                                ": a status event without a status change"));
    const bool was = announced_.count(event.user_id) > 0;
    FUZZ_CHECK_MSG(event.online != was,
                   absl::StrCat("user ", event.user_id, " announced ",
                                event.online ? "online" : "offline", " twice"));
    FUZZ_CHECK(event.online ==
               (event.reason == PresenceEvent::Reason::kHeartbeat));
    if (event.online) {
      announced_.insert(event.user_id);
    } else {
      announced_.erase(event.user_id);
    }
    pending_.push_back(event);
  }
  void SeedOnline(int64_t user_id) override {
    FUZZ_CHECK(announced_.insert(user_id).second);
  }

  std::vector<PresenceEvent> Take() { return std::exchange(pending_, {}); }
  const std::set<int64_t>& announced() const { return announced_; }
  bool announced(int64_t user_id) const { return announced_.count(user_id); }

 private:
  std::vector<PresenceEvent> pending_;
  std::set<int64_t> announced_;
};

// ------------------------------------------------------------------- model

// DESIGN.md's semantics, as directly as they can be written.
class Model {
 public:
  struct User {
    std::map<std::string, absl::Time> sessions;  // session -> last heartbeat
    absl::Time last_seen = absl::InfinitePast();
  };

  explicit Model(absl::Duration window) : window_(window) {}

  User& user(int64_t id) { return users_[id]; }
  const std::map<int64_t, User>& users() const { return users_; }

  int Live(int64_t id, absl::Time now) const {
    auto it = users_.find(id);
    if (it == users_.end()) return 0;
    int live = 0;
    for (const auto& [session, last] : it->second.sessions) {
      if (now < last + window_) ++live;
    }
    return live;
  }
  bool Online(int64_t id, absl::Time now) const { return Live(id, now) > 0; }
  // The latest last heartbeat + window (InfinitePast without sessions).
  absl::Time End(int64_t id) const {
    absl::Time end = absl::InfinitePast();
    auto it = users_.find(id);
    if (it == users_.end()) return end;
    for (const auto& [session, last] : it->second.sessions) {
      end = std::max(end, last + window_);
    }
    return end;
  }
  absl::Time LastSeen(int64_t id) const {
    auto it = users_.find(id);
    return it == users_.end() ? absl::InfinitePast() : it->second.last_seen;
  }
  std::vector<int64_t> OnlineUsers(absl::Time now) const {
    std::vector<int64_t> out;
    for (const auto& [id, user] : users_) {
      if (Online(id, now)) out.push_back(id);
    }
    return out;  // ascending: std::map order
  }
  int64_t LiveSessions(absl::Time now) const {
    int64_t n = 0;
    for (const auto& [id, user] : users_) n += Live(id, now);
    return n;
  }
  int64_t AllSessions() const {
    int64_t n = 0;
    for (const auto& [id, user] : users_) n += user.sessions.size();
    return n;
  }

 private:
  const absl::Duration window_;
  std::map<int64_t, User> users_;
};

// ------------------------------------------------------- reference checks

bool SessionIdValid(const std::string& id) {
  if (id.size() > 128) return false;
  for (unsigned char c : id) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

struct Violation {
  bool violated;
  const char* field;
};

// `status` must be OK exactly when no rule is violated, and otherwise
// INVALID_ARGUMENT naming one of the violated fields.
void CheckVerdict(const absl::Status& status,
                  std::initializer_list<Violation> rules, const char* what) {
  std::vector<const char*> violated;
  for (const Violation& v : rules) {
    if (v.violated) violated.push_back(v.field);
  }
  FUZZ_CHECK_MSG(status.ok() == violated.empty(),
                 absl::StrCat(what, ": got ", status.ToString(),
                              "; violated: ", absl::StrJoin(violated, ", ")));
  if (status.ok()) return;
  FUZZ_CHECK_MSG(status.code() == absl::StatusCode::kInvalidArgument,
                 absl::StrCat(what, ": ", status.ToString()));
  bool named = false;
  for (const char* field : violated) {
    named = named || absl::StrContains(status.message(), field);
  }
  FUZZ_CHECK_MSG(named,
                 absl::StrCat(what, ": '", status.message(), "' names none of ",
                              absl::StrJoin(violated, ", ")));
}

template <typename Ids>
bool IdsValid(const Ids& ids, const RequestLimits& limits) {
  if (ids.size() > static_cast<size_t>(limits.max_ids_per_request)) {
    return false;
  }
  for (int64_t id : ids) {
    if (id <= 0) return false;
  }
  return true;
}

// ------------------------------------------------------------------ harness

class Harness {
 public:
  Harness(FuzzedDataProvider& in, absl::Time start, absl::Duration window,
          const RequestLimits& limits, int max_sessions_per_user)
      : in_(in),
        start_(start),
        clock_(start),
        limits_(limits),
        window_(absl::Microseconds(absl::ToInt64Microseconds(window))),
        max_sessions_(max_sessions_per_user),
        model_(window_),
        // Rich presence's AWAY is out of this model (online/offline only):
        // its heartbeats are all active, and away never comes.
        registry_(clock_, window, &changes_, &events_, max_sessions_per_user,
                  absl::InfiniteDuration()) {
    FUZZ_CHECK(registry_.online_window() == window_);
  }

  void Run() {
    Restore();
    for (int i = 0; i < kMaxOps && in_.remaining_bytes() > 0; ++i) {
      Step();
      CheckGlobal();
    }
    // A last full sweep: whatever the input did, the end state must agree.
    AdvanceTo(Now() + window_);
    Sweep();
    CheckGlobal();
    ListAll(limits_.max_page_size);
  }

 private:
  // The registry's now: the clock at microsecond resolution.
  absl::Time Now() const {
    return absl::FromUnixMicros(absl::ToUnixMicros(clock_.Now()));
  }

  void AdvanceTo(absl::Time t) {
    if (t - start_ > kMaxClockTravel) return;
    TRACE("clock ", Show(t), t < clock_.Now() ? " (back)" : "");
    if (t < clock_.Now()) exact_ = false;
    clock_.Set(t);
  }

  // ------------------------------------------------ decoding of the input

  int64_t PickUserId() {
    static constexpr int64_t kValid[] = {
        1,        2, 3, 4, 5, 64, 65, 1000, int64_t{1} << 32, kMaxInt64 - 1,
        kMaxInt64};
    static constexpr int64_t kInvalid[] = {0, -1, -64, kMinInt64};
    const int pick = in_.ConsumeIntegralInRange(0, 15);
    if (pick <= 10) return kValid[pick];
    if (pick <= 12) return in_.PickValueInArray(kInvalid);
    return in_.ConsumeIntegral<int64_t>();
  }

  int64_t PickValidUserId() {
    const int64_t id = PickUserId();
    return id > 0 ? id : 1;
  }

  std::string PickSessionId() {
    static const char* const kPool[] = {"a", "b", "phone", "tab-7f3a"};
    switch (in_.ConsumeIntegralInRange(0, 9)) {
      case 0:
      case 1:
      case 2:
        return "";
      case 3:
      case 4:
      case 5:
      case 6:
        return in_.PickValueInArray(kPool);
      case 7: {
        // Around the 128-byte limit: printable, but for the last byte.
        std::string id(in_.ConsumeIntegralInRange<size_t>(126, 130),
                       in_.ConsumeIntegralInRange<char>(0x20, 0x7e));
        id.back() = static_cast<char>(in_.ConsumeIntegral<uint8_t>());
        return id;
      }
      case 8: {
        std::string id = in_.PickValueInArray(kPool);
        id[in_.ConsumeIntegralInRange<size_t>(0, id.size() - 1)] =
            static_cast<char>(in_.ConsumeIntegral<uint8_t>());
        return id;
      }
      default:
        return in_.ConsumeRandomLengthString(160);
    }
  }

  std::vector<int64_t> PickUserIds() {
    std::vector<int64_t> ids(
        in_.ConsumeIntegralInRange(0, limits_.max_ids_per_request + 1));
    for (int64_t& id : ids) id = PickUserId();
    return ids;
  }

  template <typename Repeated>
  static void Fill(const std::vector<int64_t>& ids, Repeated* out) {
    out->Add(ids.begin(), ids.end());
  }

  // A page token and, if it was made from a known cursor, that cursor.
  std::pair<std::string, std::optional<int64_t>> PickPageToken() {
    switch (in_.ConsumeIntegralInRange(0, 5)) {
      case 0:
        return {"", 0};
      case 1:
        if (tokens_.empty()) return {"", 0};
        return {
            tokens_[in_.ConsumeIntegralInRange<size_t>(0, tokens_.size() - 1)],
            std::nullopt};
      case 2: {
        const int64_t after = PickUserId();
        return {EncodePageToken(after), after};
      }
      case 3:
        return {absl::WebSafeBase64Escape(
                    absl::StrCat("after:", in_.ConsumeRandomLengthString(24))),
                std::nullopt};
      case 4: {
        std::string token =
            tokens_.empty() ? EncodePageToken(1) : tokens_.back();
        token.resize(in_.ConsumeIntegralInRange<size_t>(0, token.size()));
        if (!token.empty() && in_.ConsumeBool()) {
          token[in_.ConsumeIntegralInRange<size_t>(0, token.size() - 1)] =
              static_cast<char>(in_.ConsumeIntegral<uint8_t>());
        }
        return {token, std::nullopt};
      }
      default:
        return {in_.ConsumeRandomLengthString(40), std::nullopt};
    }
  }

  int32_t PickPageSize() {
    switch (in_.ConsumeIntegralInRange(0, 4)) {
      case 0:
        return 0;
      case 1:
        return in_.ConsumeIntegralInRange(1, 4);
      case 2:
        return limits_.max_page_size + in_.ConsumeIntegralInRange(-1, 1);
      case 3:
        return -in_.ConsumeIntegralInRange(1, 2);
      default:
        return in_.ConsumeIntegral<int32_t>();
    }
  }

  v1::HeartbeatRequest PickHeartbeat() {
    v1::HeartbeatRequest request;
    request.set_user_id(PickUserId());
    request.set_session_id(PickSessionId());
    if (in_.ConsumeBool()) {
      // Informational only: a client clock anywhere changes nothing.
      request.mutable_client_time()->set_seconds(
          in_.ConsumeIntegral<int64_t>());
      request.mutable_client_time()->set_nanos(in_.ConsumeIntegral<int32_t>());
    }
    return request;
  }

  // ---------------------------------------------------------- operations

  // Start-up: sessions put back as the store returns them (last heartbeat
  // after now - window, possibly ahead of now if the clock went back between
  // two runs), and last_seen of users without a live session.
  void Restore() {
    const absl::Time now = Now();
    const int sessions = in_.ConsumeIntegralInRange(0, 4);
    for (int i = 0; i < sessions; ++i) {
      const int64_t user = PickValidUserId();
      std::string session = PickSessionId();
      if (!SessionIdValid(session)) session.clear();
      const absl::Time last =
          now - window_ +
          absl::Microseconds(in_.ConsumeIntegralInRange<int64_t>(
              1, 3 * absl::ToInt64Microseconds(window_)));
      Model::User& u = model_.user(user);
      // Restored state was within the limit when it was written.
      if (max_sessions_ > 0 && !u.sessions.count(session) &&
          u.sessions.size() >= static_cast<size_t>(max_sessions_)) {
        continue;
      }
      TRACE("RestoreSession(", user, ", \"", absl::CEscape(session), "\", ",
            Show(last), ")");
      registry_.RestoreSession(user, session, last);
      auto [it, inserted] = u.sessions.emplace(session, last);
      if (!inserted) it->second = std::max(it->second, last);
      u.last_seen = std::max(u.last_seen, last);
      known_.insert(user);
    }
    const int last_seen = in_.ConsumeIntegralInRange(0, 2);
    for (int i = 0; i < last_seen; ++i) {
      const int64_t user = PickValidUserId();
      const absl::Time at =
          now - absl::Seconds(in_.ConsumeIntegralInRange<int64_t>(0, 1 << 30));
      TRACE("RestoreLastSeen(", user, ", ", Show(at), ")");
      registry_.RestoreLastSeen(user, at);
      Model::User& u = model_.user(user);
      u.last_seen = std::max(u.last_seen, at);
      known_.insert(user);
    }
    FUZZ_CHECK(changes_.Take().empty());
    FUZZ_CHECK(events_.Take().empty());
    const std::vector<int64_t> online = model_.OnlineUsers(now);
    FUZZ_CHECK(std::set<int64_t>(online.begin(), online.end()) ==
               events_.announced());
  }

  void Step() {
    switch (in_.ConsumeIntegralInRange(0, 13)) {
      case 0:
      case 1:
        return Heartbeat(PickHeartbeat());
      case 2:
        return MarkOffline();
      case 3:
        return ListOnline();
      case 4:
        return ListAll(in_.ConsumeIntegralInRange(1, 5));
      case 5:
        return GetPresence();
      case 6:
        return WatchPresence();
      case 7:
        return BatchHeartbeat();
      case 8:
        return AdvanceTo(clock_.Now() +
                         absl::Microseconds(in_.ConsumeIntegralInRange<int64_t>(
                             0, 2 * absl::ToInt64Microseconds(window_))) +
                         absl::Nanoseconds(in_.ConsumeIntegralInRange(0, 999)));
      case 9:
        return AdvanceToAnEndOfWindow();
      case 10: {
        static constexpr absl::Duration kJumps[] = {
            absl::Hours(1), absl::Hours(24), absl::Hours(24 * 365),
            absl::Hours(24 * 365 * 100)};
        return AdvanceTo(clock_.Now() + in_.PickValueInArray(kJumps) *
                                            in_.ConsumeIntegralInRange(1, 3));
      }
      case 11:
        return Sweep();
      case 12:
        // A wall clock stepped back (NTP): no longer comparable with the model.
        return AdvanceTo(clock_.Now() -
                         absl::Microseconds(in_.ConsumeIntegralInRange<int64_t>(
                             1, 2 * absl::ToInt64Microseconds(window_))));
      default:
        return RestartListing();
    }
  }

  // The clock to the end of a session's window, give or take a tick: the
  // boundary ("exactly at the boundary: offline") is where bugs live.
  void AdvanceToAnEndOfWindow() {
    std::vector<absl::Time> lasts;
    for (const auto& [id, user] : model_.users()) {
      for (const auto& [session, last] : user.sessions) lasts.push_back(last);
    }
    if (lasts.empty()) return;
    static constexpr absl::Duration kTicks[] = {
        absl::Microseconds(-1), absl::Nanoseconds(-1), absl::ZeroDuration(),
        absl::Nanoseconds(1), absl::Microseconds(1)};
    const absl::Time target =
        lasts[in_.ConsumeIntegralInRange<size_t>(0, lasts.size() - 1)] +
        window_ + in_.PickValueInArray(kTicks);
    if (target >= clock_.Now()) AdvanceTo(target);
  }

  void Heartbeat(const v1::HeartbeatRequest& request) {
    const absl::Status status = ValidateRequest(request, limits_);
    CheckVerdict(status,
                 {{request.user_id() <= 0, "user_id"},
                  {!SessionIdValid(request.session_id()), "session_id"}},
                 "HeartbeatRequest");
    if (!status.ok()) return;
    const int64_t id = request.user_id();
    const std::string& session = request.session_id();
    const absl::Time now = Now();
    const bool online_before = model_.Online(id, now);
    const absl::Time end_before = model_.End(id);
    const bool announced_before = events_.announced(id);
    // The other sessions live before, and whether this one was.
    std::vector<std::pair<std::string, absl::Time>> others_live;
    bool session_live = false;
    for (const auto& [other, last] : model_.user(id).sessions) {
      if (!(now < last + window_)) continue;
      if (other == session) {
        session_live = true;
      } else {
        others_live.emplace_back(other, last);
      }
    }
    const bool session_known = model_.user(id).sessions.count(session) > 0;

    const HeartbeatResult result = registry_.Heartbeat(id, session);
    TRACE("Heartbeat(", id, ", \"", absl::CEscape(session), "\") at ",
          Show(now), ": online_until ", Show(result.online_until),
          result.became_online ? ", became online" : "");
    for (const SessionChange& c : changes_.pending()) {
      TRACE("  change ", static_cast<int>(c.kind), " \"",
            absl::CEscape(c.session_id), "\" at ", Show(c.at));
    }

    std::vector<SessionChange> changes = changes_.Take();
    FUZZ_CHECK(!changes.empty());
    if (changes.size() == 2) {
      // A new session beyond the limit ended the user's oldest live one.
      const SessionChange& ended = changes[0];
      FUZZ_CHECK(max_sessions_ > 0);
      FUZZ_CHECK(ended.kind == SessionChange::Kind::kEndSession);
      FUZZ_CHECK(ended.user_id == id && ended.session_id != session);
      FUZZ_CHECK(ended.at == now);
      if (exact_) {
        FUZZ_CHECK(!session_live);
        FUZZ_CHECK_MSG(others_live.size() >= static_cast<size_t>(max_sessions_),
                       absl::StrCat(others_live.size(),
                                    " live sessions, limit ", max_sessions_));
        absl::Time oldest = absl::InfiniteFuture();
        absl::Time ended_last = absl::InfinitePast();
        for (const auto& [other, last] : others_live) {
          oldest = std::min(oldest, last);
          if (other == ended.session_id) ended_last = last;
        }
        FUZZ_CHECK_MSG(ended_last == oldest,
                       absl::StrCat("ended \"", absl::CEscape(ended.session_id),
                                    "\" of ", Show(ended_last),
                                    ", the oldest is of ", Show(oldest)));
        FUZZ_CHECK(ended.last_seen == std::max(model_.LastSeen(id), now));
      }
      model_.user(id).sessions.erase(ended.session_id);
      changes.erase(changes.begin());
    } else if (exact_ && max_sessions_ > 0 && !session_known &&
               others_live.size() >= static_cast<size_t>(max_sessions_)) {
      // A session never seen (or ended) is new: the limit applies.
      FUZZ_CHECK_MSG(false,
                     absl::StrCat("user ", id, " has ", others_live.size(),
                                  " live sessions, limit ", max_sessions_,
                                  ", and a new one"));
    }
    FUZZ_CHECK(changes.size() == 1);

    Model::User& user = model_.user(id);
    auto [it, inserted] = user.sessions.emplace(session, now);
    // A clock stepped back never shortens presence.
    if (!inserted) it->second = std::max(it->second, now);
    const absl::Time stamp = it->second;
    user.last_seen = std::max(user.last_seen, now);
    known_.insert(id);

    FUZZ_CHECK(result.server_time == now);
    FUZZ_CHECK(result.online_until > now);
    if (max_sessions_ > 0) {
      const PresenceLookup lookup = registry_.GetPresence({id});
      FUZZ_CHECK_MSG(
          lookup.users[0].live_sessions <= max_sessions_,
          absl::StrCat("user ", id, ": ", lookup.users[0].live_sessions,
                       " live sessions, limit ", max_sessions_));
    }
    const SessionChange& change = changes[0];
    FUZZ_CHECK(result.write_ticket == changes_.last_ticket());
    FUZZ_CHECK(change.kind == SessionChange::Kind::kHeartbeat);
    FUZZ_CHECK(change.user_id == id && change.session_id == session);
    FUZZ_CHECK(change.at == result.online_until - window_);
    FUZZ_CHECK(change.last_seen >= change.at);
    const std::vector<PresenceEvent> events = events_.Take();
    FUZZ_CHECK(events_.announced(id));
    for (const PresenceEvent& e : events) FUZZ_CHECK(e.user_id == id);
    FUZZ_CHECK(result.became_online ==
               (!events.empty() && events.back().online));
    if (!exact_) return;

    FUZZ_CHECK_MSG(
        result.online_until == stamp + window_,
        absl::StrCat(Show(result.online_until), " vs ", Show(stamp + window_)));
    FUZZ_CHECK_MSG(result.became_online == !online_before,
                   absl::StrCat("user ", id, " at ", Show(now)));
    FUZZ_CHECK(change.last_seen == user.last_seen);
    std::vector<PresenceEvent> expected;
    if (announced_before && !online_before) {
      expected.push_back(
          {id, false, PresenceEvent::Reason::kExpired, end_before});
    }
    if (!online_before) {
      expected.push_back({id, true, PresenceEvent::Reason::kHeartbeat, now});
    }
    CheckEvents(events, expected);
  }

  void MarkOffline() {
    v1::MarkOfflineRequest request;
    request.set_user_id(PickUserId());
    request.set_session_id(PickSessionId());
    const absl::Status status = ValidateRequest(request, limits_);
    CheckVerdict(status,
                 {{request.user_id() <= 0, "user_id"},
                  {!SessionIdValid(request.session_id()), "session_id"}},
                 "MarkOfflineRequest");
    if (!status.ok()) return;
    const int64_t id = request.user_id();
    const std::string& session = request.session_id();
    const absl::Time now = Now();
    const bool online_before = model_.Online(id, now);
    const absl::Time end_before = model_.End(id);
    const bool announced_before = events_.announced(id);

    const MarkOfflineResult result = registry_.MarkOffline(id, session);
    TRACE("MarkOffline(", id, ", \"", absl::CEscape(session), "\") at ",
          Show(now), ": ended ", result.sessions_ended,
          result.still_online ? ", still online" : "",
          result.went_offline ? ", went offline" : "");

    // An empty session_id ends every session of the user.
    Model::User& user = model_.user(id);
    int matching = 0;
    int ended = 0;
    for (auto it = user.sessions.begin(); it != user.sessions.end();) {
      if (!session.empty() && it->first != session) {
        ++it;
        continue;
      }
      ++matching;
      if (now < it->second + window_) ++ended;
      it = user.sessions.erase(it);
    }
    if (ended > 0) user.last_seen = std::max(user.last_seen, now);
    const bool still_online = model_.Online(id, now);

    FUZZ_CHECK(result.server_time == now);
    FUZZ_CHECK(result.sessions_ended >= 0);
    FUZZ_CHECK(!(result.went_offline && result.still_online));
    const std::vector<SessionChange> changes = changes_.Take();
    FUZZ_CHECK(changes.size() <= 1);
    FUZZ_CHECK(result.write_ticket ==
               (changes.empty() ? 0 : changes_.last_ticket()));
    if (!changes.empty()) {
      FUZZ_CHECK(changes[0].kind == (session.empty()
                                         ? SessionChange::Kind::kEndAllSessions
                                         : SessionChange::Kind::kEndSession));
      FUZZ_CHECK(changes[0].user_id == id && changes[0].at == now);
      if (!session.empty()) FUZZ_CHECK(changes[0].session_id == session);
    }
    const std::vector<PresenceEvent> events = events_.Take();
    for (const PresenceEvent& e : events) {
      FUZZ_CHECK(e.user_id == id && !e.online);
    }
    FUZZ_CHECK(result.still_online == events_.announced(id));
    if (!exact_) return;

    FUZZ_CHECK_MSG(result.sessions_ended == ended,
                   absl::StrCat(result.sessions_ended, " vs ", ended));
    FUZZ_CHECK(result.still_online == still_online);
    FUZZ_CHECK(result.went_offline == (online_before && !still_online));
    // A session only the model still holds (it has expired) may or may not
    // still be in the registry: either way is right.
    if (ended > 0) FUZZ_CHECK(changes.size() == 1);
    if (matching == 0) FUZZ_CHECK(changes.empty());
    if (!changes.empty()) FUZZ_CHECK(changes[0].last_seen == user.last_seen);
    std::vector<PresenceEvent> expected;
    if (announced_before && !online_before) {
      expected.push_back(
          {id, false, PresenceEvent::Reason::kExpired, end_before});
    }
    if (online_before && !still_online) {
      expected.push_back({id, false, PresenceEvent::Reason::kMarkOffline, now});
    }
    CheckEvents(events, expected);
  }

  void CheckEvents(const std::vector<PresenceEvent>& got,
                   const std::vector<PresenceEvent>& expected) {
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

  // EXPIRED events of a sweep (or a full listing): each for a user announced
  // online whose window has ended, at its end.
  void CheckExpiries(const std::vector<PresenceEvent>& events,
                     const std::set<int64_t>& announced_before,
                     absl::Time now) {
    for (const PresenceEvent& e : events) {
      FUZZ_CHECK(!e.online && e.reason == PresenceEvent::Reason::kExpired);
      FUZZ_CHECK(announced_before.count(e.user_id));
      FUZZ_CHECK(e.at <= now);
      if (exact_) FUZZ_CHECK(e.at == model_.End(e.user_id));
    }
    if (exact_) {
      const std::vector<int64_t> online = model_.OnlineUsers(now);
      FUZZ_CHECK(std::set<int64_t>(online.begin(), online.end()) ==
                 events_.announced());
    }
  }

  void Sweep() {
    const absl::Time now = Now();
    const std::set<int64_t> announced_before = events_.announced();
    const int64_t expired = registry_.SweepExpired();
    TRACE("SweepExpired() at ", Show(now), ": ", expired, " expired");
    const std::vector<PresenceEvent> events = events_.Take();
    FUZZ_CHECK(expired == static_cast<int64_t>(events.size()));
    CheckExpiries(events, announced_before, now);
    FUZZ_CHECK(changes_.Take().empty());
    // Nothing due is left behind.
    FUZZ_CHECK_MSG(
        registry_.NextExpiry() > now,
        absl::StrCat(Show(registry_.NextExpiry()), " <= ", Show(now)));
  }

  // Who GetPresence() calls online among every user ever touched.
  std::vector<int64_t> OnlineByGetPresence() {
    const std::vector<int64_t> ids(known_.begin(), known_.end());
    const PresenceLookup lookup = registry_.GetPresence(ids);
    std::vector<int64_t> online;
    for (const UserPresenceInfo& info : lookup.users) {
      if (info.online) online.push_back(info.user_id);
    }
    return online;
  }

  // One page of a ListOnline request with fuzzed fields.
  void ListOnline() {
    v1::ListOnlineRequest request;
    const std::vector<int64_t> ids = PickUserIds();
    Fill(ids, request.mutable_user_ids());
    request.set_page_size(PickPageSize());
    const auto [token, cursor] = PickPageToken();
    request.set_page_token(token);

    const absl::StatusOr<int64_t> decoded = DecodePageToken(token);
    if (decoded.ok()) {
      FUZZ_CHECK(token.empty() ? *decoded == 0 : *decoded > 0);
      if (*decoded > 0) {
        const absl::StatusOr<int64_t> again =
            DecodePageToken(EncodePageToken(*decoded));
        FUZZ_CHECK(again.ok() && *again == *decoded);
      }
    }
    if (cursor.has_value() && !token.empty()) {
      FUZZ_CHECK(decoded.ok() == (*cursor > 0));
      if (decoded.ok()) FUZZ_CHECK(*decoded == *cursor);
    }
    const absl::Status status = ValidateRequest(request, limits_);
    CheckVerdict(status,
                 {{request.page_size() < 0, "page_size"},
                  {!decoded.ok(), "page_token"},
                  {!IdsValid(ids, limits_), "user_ids"}},
                 "ListOnlineRequest");
    if (!status.ok()) return;
    ListPage(ids, *decoded, EffectivePageSize(request, limits_),
             request.page_size());
  }

  // Returns the page's next_page_token, as the service makes it.
  std::string ListPage(const std::vector<int64_t>& ids, int64_t after,
                       int page_size, int32_t requested) {
    FUZZ_CHECK(page_size == (requested == 0
                                 ? limits_.default_page_size
                                 : std::min(requested, limits_.max_page_size)));
    const absl::Time now = Now();
    const std::set<int64_t> announced_before = events_.announced();

    const OnlinePage page = registry_.ListOnline(ids, after, page_size);
    TRACE("ListOnline([", absl::StrJoin(ids, ","), "], ", after, ", ",
          page_size, ") at ", Show(now), ": [",
          absl::StrJoin(page.user_ids, ","), "] of ", page.total_online,
          page.has_more ? ", more" : "");

    FUZZ_CHECK(page.server_time == now);
    FUZZ_CHECK(page.user_ids.size() <= static_cast<size_t>(page_size));
    // The service answers next_page_token from the last id.
    FUZZ_CHECK(!page.has_more || !page.user_ids.empty());
    int64_t previous = after;
    for (int64_t id : page.user_ids) {
      FUZZ_CHECK_MSG(id > previous, absl::StrCat(id, " after ", previous));
      previous = id;
      if (!ids.empty()) {
        FUZZ_CHECK(std::find(ids.begin(), ids.end(), id) != ids.end());
      }
    }
    FUZZ_CHECK(page.total_online >= static_cast<int64_t>(page.user_ids.size()));
    const std::vector<PresenceEvent> events = events_.Take();
    if (ids.empty()) {
      CheckExpiries(events, announced_before, now);
    } else {
      FUZZ_CHECK(events.empty());
    }
    FUZZ_CHECK(changes_.Take().empty());

    if (exact_) {
      std::vector<int64_t> online = model_.OnlineUsers(now);
      if (!ids.empty()) {
        const std::set<int64_t> only(ids.begin(), ids.end());
        online.erase(
            std::remove_if(online.begin(), online.end(),
                           [&](int64_t id) { return !only.count(id); }),
            online.end());
      }
      FUZZ_CHECK_MSG(page.total_online == static_cast<int64_t>(online.size()),
                     absl::StrCat(page.total_online, " vs ", online.size()));
      std::vector<int64_t> rest(
          std::upper_bound(online.begin(), online.end(), after), online.end());
      const bool more = rest.size() > static_cast<size_t>(page_size);
      if (more) rest.resize(page_size);
      FUZZ_CHECK_MSG(page.user_ids == rest,
                     absl::StrCat("page [", absl::StrJoin(page.user_ids, ","),
                                  "], expected [", absl::StrJoin(rest, ","),
                                  "] after ", after));
      FUZZ_CHECK(page.has_more == more);
    }
    if (!page.has_more) return "";
    std::string token = EncodePageToken(page.user_ids.back());
    const absl::StatusOr<int64_t> decoded = DecodePageToken(token);
    FUZZ_CHECK(decoded.ok() && *decoded == page.user_ids.back());
    if (tokens_.size() < 16) tokens_.push_back(token);
    return token;
  }

  // Everyone online, page by page through next_page_token, at one moment.
  void ListAll(int32_t page_size) {
    std::vector<int64_t> listed;
    v1::ListOnlineRequest request;
    request.set_page_size(page_size);
    for (int pages = 0;; ++pages) {
      FUZZ_CHECK(pages <= static_cast<int>(known_.size()) + 1);
      FUZZ_CHECK(ValidateRequest(request, limits_).ok());
      const absl::StatusOr<int64_t> after =
          DecodePageToken(request.page_token());
      FUZZ_CHECK(after.ok());
      const int size = EffectivePageSize(request, limits_);
      const absl::Time now = Now();
      const std::set<int64_t> announced_before = events_.announced();
      const OnlinePage page = registry_.ListOnline({}, *after, size);
      CheckExpiries(events_.Take(), announced_before, now);
      listed.insert(listed.end(), page.user_ids.begin(), page.user_ids.end());
      FUZZ_CHECK(!page.has_more || !page.user_ids.empty());
      if (!page.has_more) {
        FUZZ_CHECK(page.total_online == static_cast<int64_t>(listed.size()));
        break;
      }
      request.set_page_token(EncodePageToken(page.user_ids.back()));
    }
    FUZZ_CHECK(std::is_sorted(listed.begin(), listed.end()));
    FUZZ_CHECK(std::adjacent_find(listed.begin(), listed.end()) ==
               listed.end());
    FUZZ_CHECK_MSG(
        listed == OnlineByGetPresence(),
        absl::StrCat("listed [", absl::StrJoin(listed, ","),
                     "], GetPresence online [",
                     absl::StrJoin(OnlineByGetPresence(), ","), "]"));
    if (exact_) FUZZ_CHECK(listed == model_.OnlineUsers(Now()));
  }

  // Forget the saved page tokens (a client starting over).
  void RestartListing() { tokens_.clear(); }

  void GetPresence() {
    v1::GetPresenceRequest request;
    const std::vector<int64_t> ids = PickUserIds();
    Fill(ids, request.mutable_user_ids());
    const absl::Status status = ValidateRequest(request, limits_);
    CheckVerdict(status, {{!IdsValid(ids, limits_), "user_ids"}},
                 "GetPresenceRequest");
    if (!status.ok()) return;
    const absl::Time now = Now();
    const PresenceLookup lookup = registry_.GetPresence(ids);
    FUZZ_CHECK(lookup.server_time == now);
    FUZZ_CHECK(lookup.users.size() == ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      const UserPresenceInfo& info = lookup.users[i];
      const int64_t id = ids[i];
      FUZZ_CHECK(info.user_id == id);
      FUZZ_CHECK(info.online == (info.live_sessions > 0));
      if (info.online) {
        FUZZ_CHECK(info.online_until > now);
        // The latest heartbeat is part of last_seen.
        FUZZ_CHECK(info.last_seen >= info.online_until - window_);
      }
      if (!exact_) continue;
      FUZZ_CHECK_MSG(
          info.live_sessions == model_.Live(id, now),
          absl::StrCat("user ", id, ": ", info.live_sessions,
                       " live sessions, model ", model_.Live(id, now)));
      if (info.online) FUZZ_CHECK(info.online_until == model_.End(id));
      FUZZ_CHECK_MSG(
          info.last_seen == model_.LastSeen(id),
          absl::StrCat("user ", id, ": last_seen ", Show(info.last_seen),
                       ", model ", Show(model_.LastSeen(id))));
    }
    FUZZ_CHECK(events_.Take().empty());
    FUZZ_CHECK(changes_.Take().empty());
  }

  void WatchPresence() {
    v1::WatchPresenceRequest request;
    const std::vector<int64_t> ids = PickUserIds();
    Fill(ids, request.mutable_user_ids());
    request.set_send_snapshot(in_.ConsumeBool());
    request.set_resume_after(
        in_.ConsumeBool() ? 0 : in_.ConsumeIntegral<uint64_t>());
    request.set_epoch(in_.ConsumeRandomLengthString(80));
    CheckVerdict(
        ValidateRequest(request, limits_),
        {{request.resume_after() > 0 && request.epoch().empty(), "epoch"},
         {request.epoch().size() > 64, "epoch"},
         {!IdsValid(ids, limits_), "user_ids"}},
        "WatchPresenceRequest");
  }

  // As the service does it: the batch's size, then each item on its own.
  void BatchHeartbeat() {
    v1::BatchHeartbeatRequest request;
    const int items =
        in_.ConsumeIntegralInRange(0, limits_.max_ids_per_request + 1);
    for (int i = 0; i < items; ++i) *request.add_heartbeats() = PickHeartbeat();
    const absl::Status status = ValidateRequest(request, limits_);
    CheckVerdict(status, {{items > limits_.max_ids_per_request, "heartbeats"}},
                 "BatchHeartbeatRequest");
    if (!status.ok()) return;
    for (const v1::HeartbeatRequest& item : request.heartbeats()) {
      Heartbeat(item);
    }
  }

  // After every operation.
  void CheckGlobal() {
    const PresenceRegistry::Stats stats = registry_.stats();
    FUZZ_CHECK_MSG(
        stats.online_users == static_cast<int64_t>(events_.announced().size()),
        absl::StrCat(stats.online_users, " vs ", events_.announced().size()));
    if (!exact_) return;
    const absl::Time now = Now();
    FUZZ_CHECK(stats.sessions >= model_.LiveSessions(now));
    FUZZ_CHECK(stats.sessions <= model_.AllSessions());
    // The sweeper waits until NextExpiry(): never past an announced user's
    // end of window, or their EXPIRED event would come late.
    absl::Time first_end = absl::InfiniteFuture();
    for (int64_t id : events_.announced()) {
      first_end = std::min(first_end, model_.End(id));
    }
    FUZZ_CHECK_MSG(
        registry_.NextExpiry() <= first_end,
        absl::StrCat(Show(registry_.NextExpiry()), " > ", Show(first_end)));
  }

  FuzzedDataProvider& in_;
  const absl::Time start_;
  FakeClock clock_;
  const RequestLimits limits_;
  // As the registry keeps it: whole microseconds.
  const absl::Duration window_;
  const int max_sessions_;  // per user; 0: no limit
  Model model_;
  RecordingChanges changes_;
  CheckingEvents events_;
  PresenceRegistry registry_;
  // False once the clock stepped back.
  bool exact_ = true;
  std::set<int64_t> known_;
  std::vector<std::string> tokens_;
};

}  // namespace
}  // namespace presence

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace presence;
  FuzzedDataProvider in(data, size);

  // The configuration: limits small enough to reach, a window of at least a
  // microsecond (the registry keeps whole microseconds; a shorter one is
  // refused at start-up), a start anywhere from before 1970 to 2096.
  RequestLimits limits;
  limits.max_ids_per_request = in.ConsumeIntegralInRange(1, 8);
  limits.default_page_size = in.ConsumeIntegralInRange(1, 6);
  limits.max_page_size =
      limits.default_page_size + in.ConsumeIntegralInRange(0, 6);
  static constexpr int64_t kWindowsUs[] = {1, 2, 1'000, 1'000'000, 300'000'000};
  const int64_t window_us =
      in.ConsumeBool() ? in.PickValueInArray(kWindowsUs)
                       : in.ConsumeIntegralInRange<int64_t>(1, 3'600'000'000);
  const absl::Duration window =
      absl::Microseconds(window_us) +
      absl::Nanoseconds(in.ConsumeIntegralInRange(0, 999));
  const absl::Time start =
      in.ConsumeBool() ? absl::FromUnixSeconds(1'800'000'000)
                       : absl::FromUnixNanos(in.ConsumeIntegralInRange<int64_t>(
                             -(int64_t{1} << 62), int64_t{1} << 62));

  // Sessions per user: 0 is no limit.
  const int max_sessions_per_user = in.ConsumeIntegralInRange(0, 3);

  TRACE("window ", absl::FormatDuration(window), ", start ", Show(start),
        ", max_sessions_per_user ", max_sessions_per_user,
        ", ids <= ", limits.max_ids_per_request, ", pages of ",
        limits.default_page_size, " (max ", limits.max_page_size, ")");
  Harness harness(in, start, window, limits, max_sessions_per_user);
  harness.Run();
  return 0;
}
