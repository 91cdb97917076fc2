#ifndef PRESENCE_SERVICE_LOG_H_
#define PRESENCE_SERVICE_LOG_H_

#include "absl/strings/string_view.h"

namespace presence {

// One line to stderr: "<UTC time> <LEVEL> <message>". Abseil 20220623 has no
// logging library and presenced needs only these few lines.
void LogInfo(absl::string_view message);
void LogError(absl::string_view message);

}  // namespace presence

#endif  // PRESENCE_SERVICE_LOG_H_
