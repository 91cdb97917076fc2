// The query string of a request target, decoded as browsers encode it
// (application/x-www-form-urlencoded: `+` is a space, `%XX` a byte).
#ifndef PRESENCE_GATEWAY_QUERY_H_
#define PRESENCE_GATEWAY_QUERY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace presence::rest {

class Query {
 public:
  // Decodes every name and value of `target`'s query (after `?`). Errors are
  // INVALID_ARGUMENT naming the bad item: a `%` not followed by two hex
  // digits, or a name given twice (which of the two was meant is unknown).
  static absl::StatusOr<Query> Parse(absl::string_view target);

  // The decoded value of `name`, if present.
  std::optional<absl::string_view> Get(absl::string_view name) const;

 private:
  absl::flat_hash_map<std::string, std::string> values_;
};

// The path of a request target, without its query.
absl::string_view PathOf(absl::string_view target);

// A decoded `user_ids` value: ids > 0 in decimal digits, separated by
// commas. INVALID_ARGUMENT naming the first item that is not one.
absl::StatusOr<std::vector<int64_t>> ParseUserIds(absl::string_view list);

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_QUERY_H_
