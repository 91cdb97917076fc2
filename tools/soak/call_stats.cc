#include "tools/soak/call_stats.h"

#include "absl/strings/str_cat.h"

namespace presence::soak {

void CallStats::Record(absl::string_view method, absl::StatusCode code,
                       int64_t n) {
  absl::MutexLock lock(&mu_);
  counts_[absl::StrCat(method, " ", absl::StatusCodeToString(code))] += n;
  if (code != absl::StatusCode::kOk && method != kWatch) errors_ += n;
}

int64_t CallStats::errors() const {
  absl::MutexLock lock(&mu_);
  return errors_;
}

std::map<std::string, int64_t> CallStats::counts() const {
  absl::MutexLock lock(&mu_);
  return counts_;
}

}  // namespace presence::soak
