// This presenced's place in a sharded deployment: which users it owns.
#ifndef PRESENCE_SERVICE_SHARD_OWNERSHIP_H_
#define PRESENCE_SERVICE_SHARD_OWNERSHIP_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "presence/shard_map.h"

namespace presence {

// --shard and --shards: a shard owns the users that the rendezvous hash
// over all shard names places on it (presence/shard_map.h), and refuses
// calls about anyone else, so that a misrouted call can never split one
// user's state over two shards. Default-constructed: one unsharded
// presenced, which owns everyone. Immutable, so thread-safe.
class ShardOwnership {
 public:
  ShardOwnership() = default;

  // `self` among `shards` (ShardMap::ParseNames: "a,b,c", "presenced-{0..2}"
  // or a NAME=HOST:PORT map). Both empty: unsharded. INVALID_ARGUMENT naming
  // the flag if only one is given, the list does not parse, or `self` is not
  // in it.
  static absl::StatusOr<ShardOwnership> Create(absl::string_view self,
                                               absl::string_view shards);

  bool sharded() const { return map_.has_value(); }
  // This shard's name; empty unsharded.
  const std::string& name() const;
  // The shard names, in the order given; empty unsharded.
  std::string ShardNames() const;

  bool Owns(int64_t user_id) const {
    return !map_.has_value() || map_->OwnerIndex(user_id) == self_;
  }
  // OK if this shard owns `user_id`, else FAILED_PRECONDITION "user U
  // belongs to shard OWNER, not to this one (SELF) ...", which clients and
  // people can act on.
  absl::Status Check(int64_t user_id) const;
  // The first user of `user_ids` that this shard does not own, as Check().
  absl::Status CheckAll(absl::Span<const int64_t> user_ids) const;

 private:
  std::optional<ShardMap> map_;
  size_t self_ = 0;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_SHARD_OWNERSHIP_H_
