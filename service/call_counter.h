#ifndef PRESENCE_SERVICE_CALL_COUNTER_H_
#define PRESENCE_SERVICE_CALL_COUNTER_H_

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"
#include "service/wakeup.h"

namespace presence {

// Counts the calls in flight, so that shutdown can let them finish and then
// cut idle connections at once: a unary call from its start until its answer
// is queued, a stream until gRPC is done with it (OnDone). Thread-safe.
class CallCounter {
 public:
  // Sequentially consistent (see Leave()): a call that enters after
  // AwaitZero() saw none must find the service's "not admitting" flag.
  void Enter() { in_flight_.fetch_add(1); }
  void Leave();
  int64_t in_flight() const { return in_flight_.load(); }
  // True once in_flight() is 0, false after `timeout` (monotonic clock).
  bool AwaitZero(absl::Duration timeout);

 private:
  std::atomic<int64_t> in_flight_{0};
  std::atomic<bool> awaited_{false};
  Wakeup zero_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_CALL_COUNTER_H_
