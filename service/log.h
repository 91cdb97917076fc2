#ifndef PRESENCE_SERVICE_LOG_H_
#define PRESENCE_SERVICE_LOG_H_

#include <atomic>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace presence {

// One line to stderr: "<UTC time> <LEVEL> <message>". Abseil 20220623 has no
// logging library and presenced needs only these few lines.
void LogInfo(absl::string_view message);
void LogError(absl::string_view message);

// An error line for something a peer can make happen at will (a refused
// call, a malformed request, a connection flood): at most one line a second,
// each saying how many were not logged since the one before, so that a flood
// of bad input cannot flood the log too. Thread-safe.
class ThrottledErrorLog {
 public:
  void Log(absl::string_view message);

 private:
  std::atomic<int64_t> last_second_{0};
  std::atomic<int64_t> not_logged_{0};
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_LOG_H_
