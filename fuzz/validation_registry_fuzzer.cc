// Request validation and PresenceRegistry, driven by a sequence of operations
// decoded from the input: requests with fuzzed fields go through validation,
// the valid ones are applied to a registry on a FakeClock that the input also
// moves (small steps, exact ends of windows, years, and steps back), and every
// answer is compared with RegistryOracle, a reference model of DESIGN.md's
// semantics (registry_oracle.h; the comparison is registry_comparison.h).
//
// What is checked (fuzz/README.md lists it too):
// - validation accepts exactly the requests DESIGN.md calls valid, and a
//   rejection is INVALID_ARGUMENT naming a violated field; page tokens
//   round-trip;
// - every Heartbeat / MarkOffline / GetPresence / ListOnline answer equals
//   the oracle's, ListOnline pages are ascending, complete and consistent
//   with total_online and has_more, following next_page_token lists everyone
//   once;
// - the ChangeSink gets exactly the changes the answers imply, the EventSink
//   gets alternating transitions per user, with the oracle's reasons and
//   times, and after SweepExpired() (or a full ListOnline) the users
//   announced online are exactly the online ones;
// - stats() and NextExpiry() agree with the announced users (the sweeper is
//   never told to wake later than the first end of window);
// - with max_sessions_per_user, a new session beyond the limit ends the
//   user's oldest live one, and no user has more live sessions.
// After the clock has stepped back, answers are no longer compared with the
// oracle (the registry forgets expired sessions, which a step back would
// revive in the oracle); the registry must still agree with itself.

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "fuzz/fuzz_check.h"
#include "fuzz/fuzz_trace.h"
#include "fuzz/registry_comparison.h"
#include "presence/v1/presence.pb.h"
#include "service/presence_registry.h"
#include "service/request_validation.h"

namespace presence::fuzz {
namespace {

constexpr int kMaxOps = 256;
constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();
constexpr int64_t kMinInt64 = std::numeric_limits<int64_t>::min();

// ------------------------------------------------------ validation's rules

bool SessionIdValid(const std::string& id) {
  if (id.size() > 128) return false;
  for (unsigned char c : id) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
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

// A page token decodes to a cursor > 0, or to 0 if empty, and a cursor's
// token decodes to it; `cursor`: what the token was made from, if known.
void CheckPageToken(const std::string& token,
                    const absl::StatusOr<int64_t>& decoded,
                    std::optional<int64_t> cursor) {
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
}

// ------------------------------------------------------------------ harness

// Decodes the operations from the input and drives a RegistryComparison
// with the requests that pass validation.
class Harness {
 public:
  Harness(FuzzedDataProvider& in, absl::Time start, absl::Duration window,
          const RequestLimits& limits, int max_sessions_per_user)
      : in_(in),
        limits_(limits),
        registry_(start, window, max_sessions_per_user) {}

  void Run() {
    Restore();
    for (int i = 0; i < kMaxOps && in_.remaining_bytes() > 0; ++i) {
      Step();
      registry_.CheckGlobal();
    }
    // A last full sweep: whatever the input did, the end state must agree.
    registry_.AdvanceTo(registry_.Now() + registry_.window());
    registry_.Sweep();
    registry_.CheckGlobal();
    ListAll(limits_.max_page_size);
  }

 private:
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
    const absl::Time now = registry_.Now();
    const absl::Duration window = registry_.window();
    const int sessions = in_.ConsumeIntegralInRange(0, 4);
    for (int i = 0; i < sessions; ++i) {
      const int64_t user = PickValidUserId();
      std::string session = PickSessionId();
      if (!SessionIdValid(session)) session.clear();
      const absl::Time last =
          now - window +
          absl::Microseconds(in_.ConsumeIntegralInRange<int64_t>(
              1, 3 * absl::ToInt64Microseconds(window)));
      registry_.RestoreSession(user, session, last);
    }
    const int last_seen = in_.ConsumeIntegralInRange(0, 2);
    for (int i = 0; i < last_seen; ++i) {
      const int64_t user = PickValidUserId();
      const absl::Time at =
          now - absl::Seconds(in_.ConsumeIntegralInRange<int64_t>(0, 1 << 30));
      registry_.RestoreLastSeen(user, at);
    }
    registry_.CheckRestored();
  }

  void Step() {
    const int64_t window_us = absl::ToInt64Microseconds(registry_.window());
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
        return registry_.AdvanceTo(
            registry_.ClockNow() +
            absl::Microseconds(
                in_.ConsumeIntegralInRange<int64_t>(0, 2 * window_us)) +
            absl::Nanoseconds(in_.ConsumeIntegralInRange(0, 999)));
      case 9:
        return AdvanceToAnEndOfWindow();
      case 10: {
        static constexpr absl::Duration kJumps[] = {
            absl::Hours(1), absl::Hours(24), absl::Hours(24 * 365),
            absl::Hours(24 * 365 * 100)};
        return registry_.AdvanceTo(registry_.ClockNow() +
                                   in_.PickValueInArray(kJumps) *
                                       in_.ConsumeIntegralInRange(1, 3));
      }
      case 11:
        return registry_.Sweep();
      case 12:
        // A wall clock stepped back (NTP): no longer comparable with the
        // oracle.
        return registry_.AdvanceTo(
            registry_.ClockNow() -
            absl::Microseconds(
                in_.ConsumeIntegralInRange<int64_t>(1, 2 * window_us)));
      default:
        // Forget the saved page tokens (a client starting over).
        tokens_.clear();
        return;
    }
  }

  // The clock to the end of a session's window, give or take a tick: the
  // boundary ("exactly at the boundary: offline") is where bugs live.
  void AdvanceToAnEndOfWindow() {
    const std::vector<absl::Time> ends = registry_.oracle().SessionWindowEnds();
    if (ends.empty()) return;
    static constexpr absl::Duration kTicks[] = {
        absl::Microseconds(-1), absl::Nanoseconds(-1), absl::ZeroDuration(),
        absl::Nanoseconds(1), absl::Microseconds(1)};
    const absl::Time target =
        ends[in_.ConsumeIntegralInRange<size_t>(0, ends.size() - 1)] +
        in_.PickValueInArray(kTicks);
    if (target >= registry_.ClockNow()) registry_.AdvanceTo(target);
  }

  void Heartbeat(const v1::HeartbeatRequest& request) {
    const absl::Status status = ValidateRequest(request, limits_);
    CheckVerdict(status,
                 {{request.user_id() <= 0, "user_id"},
                  {!SessionIdValid(request.session_id()), "session_id"}},
                 "HeartbeatRequest");
    if (status.ok())
      registry_.Heartbeat(request.user_id(), request.session_id());
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
    if (status.ok()) {
      registry_.MarkOffline(request.user_id(), request.session_id());
    }
  }

  // One page of a ListOnline request with fuzzed fields.
  void ListOnline() {
    v1::ListOnlineRequest request;
    const std::vector<int64_t> ids = PickUserIds();
    request.mutable_user_ids()->Add(ids.begin(), ids.end());
    request.set_page_size(PickPageSize());
    const auto [token, cursor] = PickPageToken();
    request.set_page_token(token);

    const absl::StatusOr<int64_t> decoded = DecodePageToken(token);
    CheckPageToken(token, decoded, cursor);
    const absl::Status status = ValidateRequest(request, limits_);
    CheckVerdict(status,
                 {{request.page_size() < 0, "page_size"},
                  {!decoded.ok(), "page_token"},
                  {!IdsValid(ids, limits_), "user_ids"}},
                 "ListOnlineRequest");
    if (!status.ok()) return;
    const int page_size = EffectivePageSize(request, limits_);
    const int32_t requested = request.page_size();
    FUZZ_CHECK(page_size == (requested == 0
                                 ? limits_.default_page_size
                                 : std::min(requested, limits_.max_page_size)));
    const OnlinePage page = registry_.ListPage(ids, *decoded, page_size);
    if (!page.has_more) return;
    // next_page_token, as the service makes it.
    std::string next = EncodePageToken(page.user_ids.back());
    const absl::StatusOr<int64_t> next_decoded = DecodePageToken(next);
    FUZZ_CHECK(next_decoded.ok() && *next_decoded == page.user_ids.back());
    if (tokens_.size() < 16) tokens_.push_back(std::move(next));
  }

  // Everyone online, page by page through next_page_token, at one moment.
  void ListAll(int32_t page_size) {
    std::vector<int64_t> listed;
    v1::ListOnlineRequest request;
    request.set_page_size(page_size);
    for (int pages = 0;; ++pages) {
      FUZZ_CHECK(pages <= static_cast<int>(registry_.known_users().size()) + 1);
      FUZZ_CHECK(ValidateRequest(request, limits_).ok());
      const absl::StatusOr<int64_t> after =
          DecodePageToken(request.page_token());
      FUZZ_CHECK(after.ok());
      const OnlinePage page = registry_.ListEveryonePage(
          *after, EffectivePageSize(request, limits_));
      listed.insert(listed.end(), page.user_ids.begin(), page.user_ids.end());
      if (!page.has_more) {
        FUZZ_CHECK(page.total_online == static_cast<int64_t>(listed.size()));
        break;
      }
      request.set_page_token(EncodePageToken(page.user_ids.back()));
    }
    registry_.CheckListedEveryone(listed);
  }

  void GetPresence() {
    v1::GetPresenceRequest request;
    const std::vector<int64_t> ids = PickUserIds();
    request.mutable_user_ids()->Add(ids.begin(), ids.end());
    const absl::Status status = ValidateRequest(request, limits_);
    CheckVerdict(status, {{!IdsValid(ids, limits_), "user_ids"}},
                 "GetPresenceRequest");
    if (status.ok()) registry_.GetPresence(ids);
  }

  void WatchPresence() {
    v1::WatchPresenceRequest request;
    const std::vector<int64_t> ids = PickUserIds();
    request.mutable_user_ids()->Add(ids.begin(), ids.end());
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

  FuzzedDataProvider& in_;
  const RequestLimits limits_;
  RegistryComparison registry_;
  // next_page_tokens answered, for later requests (at most 16).
  std::vector<std::string> tokens_;
};

}  // namespace
}  // namespace presence::fuzz

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

  FUZZ_TRACE("window ", absl::FormatDuration(window), ", start ",
             fuzz::Show(start), ", max_sessions_per_user ",
             max_sessions_per_user, ", ids <= ", limits.max_ids_per_request,
             ", pages of ", limits.default_page_size, " (max ",
             limits.max_page_size, ")");
  fuzz::Harness harness(in, start, window, limits, max_sessions_per_user);
  harness.Run();
  return 0;
}
