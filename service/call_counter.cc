#include "service/call_counter.h"

#include <chrono>

namespace presence {

void CallCounter::Leave() {
  // Sequentially consistent, as in AwaitZero(): with weaker orders each side
  // could miss the other's write (a store then a load on each side), and
  // shutdown would sleep its whole grace with nothing in flight.
  if (in_flight_.fetch_sub(1) == 1 && awaited_.load()) {
    zero_.Signal();
  }
}

bool CallCounter::AwaitZero(absl::Duration timeout) {
  awaited_.store(true);
  const auto deadline =
      std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  while (in_flight() > 0) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return false;
    zero_.SleepFor(absl::FromChrono(left));
  }
  return true;
}

}  // namespace presence
