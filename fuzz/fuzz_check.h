#ifndef PRESENCE_FUZZ_FUZZ_CHECK_H_
#define PRESENCE_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <string>

// An invariant of the code under test. A violation prints what failed and
// aborts, which libFuzzer reports as a crash and saves the input for.
// `detail` is evaluated only on failure.
#define FUZZ_CHECK(cond) FUZZ_CHECK_MSG(cond, std::string())
#define FUZZ_CHECK_MSG(cond, detail)                                         \
  do {                                                                       \
    if (!(cond)) {                                                           \
      const std::string fuzz_check_detail = (detail);                        \
      std::fprintf(stderr, "%s:%d: invariant violated: %s%s%s\n", __FILE__,  \
                   __LINE__, #cond, fuzz_check_detail.empty() ? "" : "\n  ", \
                   fuzz_check_detail.c_str());                               \
      std::abort();                                                          \
    }                                                                        \
  } while (false)

#endif  // PRESENCE_FUZZ_FUZZ_CHECK_H_
