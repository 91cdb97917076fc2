#ifndef PRESENCE_SERVICE_WAKEUP_H_
#define PRESENCE_SERVICE_WAKEUP_H_

#include <condition_variable>
#include <mutex>

#include "absl/time/time.h"

namespace presence {

// A wake-up call for one sleeping thread, whose timed wait runs on the
// monotonic clock.
//
// Every timed wait of Abseil 20220623 (Mutex::AwaitWithTimeout,
// Notification::WaitForNotificationWithTimeout, CondVar::WaitWithTimeout)
// becomes an absolute deadline on the wall clock, so a wall clock stepped
// back by an hour stretches a 100 ms wait by that hour. libstdc++'s
// condition_variable waits on steady_clock with
// pthread_cond_clockwait(CLOCK_MONOTONIC), which no clock step moves. Every
// internal timed wait of presenced sleeps here; the state it waits for stays
// under its own absl::Mutex, checked before and after each sleep.
//
// Thread-safe.
class Wakeup {
 public:
  Wakeup() = default;
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;

  // Wakes the thread sleeping in SleepFor(), or, if none is, makes the next
  // SleepFor() return at once: a signal sent between a sleeper's check of its
  // state and its sleep is never lost.
  void Signal();

  // Sleeps until Signal() or until `timeout` has passed on the monotonic
  // clock, whichever is first. Returns true if woken by Signal() (and
  // consumes the signal).
  bool SleepFor(absl::Duration timeout);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool signalled_ = false;  // under mu_ (std::mutex carries no annotations)
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_WAKEUP_H_
