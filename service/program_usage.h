#ifndef PRESENCE_SERVICE_PROGRAM_USAGE_H_
#define PRESENCE_SERVICE_PROGRAM_USAGE_H_

#include "absl/strings/string_view.h"

namespace presence {

// --help of one of our programs: `usage` as its message, and the flags
// defined in the files whose path contains `flags_file` (Abseil's default
// looks for a file named after the binary, which none of ours is). Call once,
// before absl::ParseCommandLine.
void SetUpProgramUsage(absl::string_view flags_file, absl::string_view usage);

}  // namespace presence

#endif  // PRESENCE_SERVICE_PROGRAM_USAGE_H_
