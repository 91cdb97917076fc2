#ifndef PRESENCE_FUZZ_CHECKING_SINKS_H_
#define PRESENCE_FUZZ_CHECKING_SINKS_H_

#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_check.h"
#include "service/presence_event.h"
#include "service/session_change.h"

namespace presence::fuzz {

// A ChangeSink that keeps the changes until they are taken.
class RecordingChanges : public ChangeSink {
 public:
  uint64_t Record(const SessionChange& change) override {
    pending_.push_back(change);
    return ++tickets_;
  }
  // The changes since the last call.
  std::vector<SessionChange> Take() { return std::exchange(pending_, {}); }
  const std::vector<SessionChange>& pending() const { return pending_; }
  // The ticket of the latest change.
  uint64_t last_ticket() const { return tickets_; }

 private:
  std::vector<SessionChange> pending_;
  uint64_t tickets_ = 0;
};

// An EventSink that checks that each user's events alternate online /
// offline with the right kind of reason (and are never status-only: the
// registry compared has no rich presence), keeps who is announced online,
// and keeps the events until they are taken.
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

}  // namespace presence::fuzz

#endif  // PRESENCE_FUZZ_CHECKING_SINKS_H_
