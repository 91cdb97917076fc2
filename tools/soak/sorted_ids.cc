#include "tools/soak/sorted_ids.h"

#include <algorithm>
#include <iterator>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace presence::soak {

std::vector<int64_t> Filter(const std::vector<int64_t>& online,
                            const std::vector<int64_t>& users) {
  if (users.empty()) return online;
  absl::flat_hash_set<int64_t> wanted(users.begin(), users.end());
  std::vector<int64_t> out;
  for (int64_t id : online) {
    if (wanted.contains(id)) out.push_back(id);
  }
  return out;
}

std::vector<int64_t> Minus(const std::vector<int64_t>& a,
                           const std::vector<int64_t>& b) {
  std::vector<int64_t> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(),
                      std::back_inserter(out));
  return out;
}

std::string Head(const std::vector<int64_t>& ids) {
  std::vector<int64_t> head(ids.begin(),
                            ids.begin() + std::min<size_t>(ids.size(), 5));
  return absl::StrCat(absl::StrJoin(head, ","), ids.size() > 5 ? ",..." : "");
}

}  // namespace presence::soak
