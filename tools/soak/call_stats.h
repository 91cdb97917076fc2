#ifndef PRESENCE_TOOLS_SOAK_CALL_STATS_H_
#define PRESENCE_TOOLS_SOAK_CALL_STATS_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace presence::soak {

// The outcome of every call the soak makes, counted by "Method CODE", for
// the summary's "calls by code" and for the verdict. Thread-safe: the
// load's threads and every watcher's thread record into one.
class CallStats {
 public:
  // The ends of WatchPresence streams, most of them cut on purpose: counted,
  // but not in errors().
  static constexpr absl::string_view kWatch = "WatchPresence";

  void Record(absl::string_view method, absl::StatusCode code, int64_t n = 1);
  // Failed calls other than kWatch's.
  int64_t errors() const;
  std::map<std::string, int64_t> counts() const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, int64_t> counts_ ABSL_GUARDED_BY(mu_);
  int64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace presence::soak

#endif  // PRESENCE_TOOLS_SOAK_CALL_STATS_H_
