#ifndef PRESENCE_FUZZ_FUZZ_TRACE_H_
#define PRESENCE_FUZZ_FUZZ_TRACE_H_

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace presence::fuzz {

// PRESENCE_FUZZ_TRACE=1 prints every operation of an input, to read a
// reproducer.
inline bool Tracing() {
  static const bool tracing = [] {
    const char* value = std::getenv("PRESENCE_FUZZ_TRACE");
    return value != nullptr && *value != '\0' && std::strcmp(value, "0") != 0;
  }();
  return tracing;
}

inline std::string Show(absl::Time t) {
  return absl::FormatTime(t, absl::UTCTimeZone());
}

}  // namespace presence::fuzz

// The arguments are evaluated only while tracing.
#define FUZZ_TRACE(...)                                                \
  do {                                                                 \
    if (::presence::fuzz::Tracing()) {                                 \
      std::fprintf(stderr, "%s\n", absl::StrCat(__VA_ARGS__).c_str()); \
    }                                                                  \
  } while (false)

#endif  // PRESENCE_FUZZ_FUZZ_TRACE_H_
