// presencectl reshard: after the shard list changed, hands each user that a
// shard set aside (it stored them, but the new list gives them to another
// shard) to its new owner. See docs/scale-out.md for the whole procedure.
#ifndef PRESENCE_TOOLS_RESHARD_H_
#define PRESENCE_TOOLS_RESHARD_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "presence/client.h"
#include "presence/shard_map.h"

namespace presence {

struct ReshardReport {
  struct Move {
    std::string from;
    std::string to;
    int64_t users = 0;    // handed over
    int64_t updated = 0;  // whose last_seen the owner raised
  };
  std::vector<Move> moves;  // one per (from, to) pair that moved anyone
  int64_t users = 0;        // every user handed over
};

// For every shard of `map` (each must already run with the new --shards):
// pages through its ListForeignUsers and sends each page's users to their
// owners under `map` with ImportLastSeen, in calls of at most
// `batch_size`. `connection` gives each call its credentials, token and
// deadline (its target is ignored: each shard's comes from `map`).
// Idempotent: a rerun changes nothing more. The first error stops it, with
// the shard named; users already imported stay imported.
// FAILED_PRECONDITION if a shard sets aside a user that `map` gives to that
// very shard: the map differs from the shards' --shards.
absl::StatusOr<ReshardReport> Reshard(const ShardMap& map,
                                      const ClientOptions& connection,
                                      int batch_size = 1'000);

}  // namespace presence

#endif  // PRESENCE_TOOLS_RESHARD_H_
