#include "service/clock.h"

namespace presence {
namespace {

class SystemClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace

Clock& RealClock() {
  static SystemClock* const clock = new SystemClock();
  return *clock;
}

}  // namespace presence
