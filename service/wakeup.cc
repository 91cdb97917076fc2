#include "service/wakeup.h"

#include <chrono>

namespace presence {

void Wakeup::Signal() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    signalled_ = true;
  }
  cv_.notify_one();
}

bool Wakeup::SleepFor(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  auto signalled = [this] { return signalled_; };
  // wait_for measures `timeout` on steady_clock; a timeout of a year or more
  // (InfiniteDuration among them) would overflow the time_point it adds to.
  if (timeout >= absl::Hours(24 * 365)) {
    cv_.wait(lock, signalled);
  } else {
    cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), signalled);
  }
  const bool woken = signalled_;
  signalled_ = false;
  return woken;
}

}  // namespace presence
