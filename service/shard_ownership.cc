#include "service/shard_ownership.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace presence {

absl::StatusOr<ShardOwnership> ShardOwnership::Create(
    absl::string_view self, absl::string_view shards) {
  if (self.empty() && shards.empty()) return ShardOwnership();
  if (self.empty() || shards.empty()) {
    return absl::InvalidArgumentError(
        "--shard and --shards go together: --shard names this presenced, "
        "--shards every shard of the deployment (e.g. --shard=presenced-1 "
        "--shards=presenced-{0..2})");
  }
  absl::StatusOr<ShardMap> map = ShardMap::ParseNames(shards);
  if (!map.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--shards: ", map.status().message()));
  }
  const int self_index = map->IndexOf(self);
  if (self_index < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--shard=", self, " is not one of --shards (", map->ToString(), ")"));
  }
  ShardOwnership ownership;
  ownership.map_ = *std::move(map);
  ownership.self_ = static_cast<size_t>(self_index);
  return ownership;
}

const std::string& ShardOwnership::name() const {
  static const std::string* const kNone = new std::string();
  return map_.has_value() ? map_->shard(self_).name : *kNone;
}

std::string ShardOwnership::ShardNames() const {
  return map_.has_value() ? map_->ToString() : "";
}

absl::Status ShardOwnership::Check(int64_t user_id) const {
  if (Owns(user_id)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "user ", user_id, " belongs to shard ", map_->OwnerName(user_id),
      ", not to this one (", name(),
      "): send calls about a user to its owner, chosen by the rendezvous "
      "hash over the shard names (docs/scale-out.md), e.g. through a client "
      "given the shard map; `presencectl shard ",
      user_id, "` names the owner"));
}

absl::Status ShardOwnership::CheckAll(
    absl::Span<const int64_t> user_ids) const {
  if (!map_.has_value()) return absl::OkStatus();
  for (int64_t user_id : user_ids) {
    if (absl::Status s = Check(user_id); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace presence
