#include "service/log.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace presence {
namespace {

void Log(absl::string_view level, absl::string_view message) {
  const std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                    absl::UTCTimeZone()),
                   " ", level, " ", message, "\n");
  // One write per line keeps lines whole when threads log at once.
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace

void LogInfo(absl::string_view message) { Log("INFO", message); }
void LogError(absl::string_view message) { Log("ERROR", message); }

void ThrottledErrorLog::Log(absl::string_view message) {
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  int64_t last = last_second_.load(std::memory_order_relaxed);
  if (now == last || !last_second_.compare_exchange_strong(
                         last, now, std::memory_order_relaxed)) {
    not_logged_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const int64_t skipped = not_logged_.exchange(0, std::memory_order_relaxed);
  if (skipped == 0) {
    LogError(message);
  } else {
    LogError(absl::StrCat(message, " (and ", skipped,
                          " more like it not logged since the last line)"));
  }
}

}  // namespace presence
