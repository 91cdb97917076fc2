#ifndef PRESENCE_TOOLS_SOAK_SORTED_IDS_H_
#define PRESENCE_TOOLS_SOAK_SORTED_IDS_H_

// The final check's arithmetic on lists of user ids, each ascending and
// without repeats (as ListOnline answers). Pure functions.

#include <cstdint>
#include <string>
#include <vector>

namespace presence::soak {

// The ids of `users` (any order; empty: everyone) in `online`.
std::vector<int64_t> Filter(const std::vector<int64_t>& online,
                            const std::vector<int64_t>& users);

// `a` minus `b`.
std::vector<int64_t> Minus(const std::vector<int64_t>& a,
                           const std::vector<int64_t>& b);

// The first five ids, for a failure message: "1,2,3,4,5,...".
std::string Head(const std::vector<int64_t>& ids);

}  // namespace presence::soak

#endif  // PRESENCE_TOOLS_SOAK_SORTED_IDS_H_
