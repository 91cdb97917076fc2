// Scale-out: which shard owns a user, and how a shard map is written.
//
// A sharded deployment is N presenced processes, each given its own shard
// name and the names of all (`--shard=presenced-1
// --shards=presenced-{0..2}`). A user belongs to one shard, chosen by
// rendezvous (highest-random-weight) hashing of the user id over the shard
// names. The hash is part of the API: every client library, in every
// language, must compute it bit for bit alike (docs/scale-out.md gives it
// with test vectors; tests/testdata/shard_vectors.txt is checked by the C++
// and the Python implementation):
//
//   name_hash(name)     = FNV-1a 64 of the name's bytes
//                         (offset 0xcbf29ce484222325, prime 0x100000001b3)
//   mix(x)              = the SplitMix64 finaliser:
//                           x += 0x9e3779b97f4a7c15
//                           x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
//                           x = (x ^ (x >> 27)) * 0x94d049bb133111eb
//                           x ^ (x >> 31)
//   weight(name, user)  = mix(name_hash(name) XOR mix(user as uint64))
//   owner(user)         = the shard of largest weight; on a tie (never seen
//                         in practice) the bytewise smaller name
//
// all arithmetic modulo 2^64; a negative user id is taken as its two's
// complement. Removing or adding one of N shards moves only the users whose
// owner is (or becomes) that shard, about 1/N of them.
#ifndef PRESENCE_CLIENT_SHARD_MAP_H_
#define PRESENCE_CLIENT_SHARD_MAP_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace presence {

uint64_t ShardNameHash(absl::string_view name);
uint64_t ShardWeight(uint64_t name_hash, int64_t user_id);

struct Shard {
  // Its name, as presenced's --shard gives it (e.g. the pod's name).
  std::string name;
  // Where it listens, a gRPC target (HOST:PORT); empty in a list of names.
  std::string target;
};

// The shards of a deployment, from one of the forms a client takes wherever
// it takes presenced's address (a flag, a setting):
//
//   HOST:PORT (or any gRPC target URI)   one unsharded presenced
//   NAME=HOST:PORT,NAME=HOST:PORT,...    shards by name and address
//   presenced-{0..2}.presenced.NS.svc:50051
//                                        a DNS pattern (a StatefulSet's pods
//                                        behind a headless Service): one
//                                        {FIRST..LAST} range, in the host's
//                                        first label, which names the shard
//                                        (presenced-0, presenced-1, ...)
//
// and presenced's --shards, which takes names only: `a,b,c` or
// `presenced-{0..2}` (a NAME=HOST:PORT list is accepted, its addresses
// ignored, so one map can serve both).
class ShardMap {
 public:
  // The most shards a map may name.
  static constexpr size_t kMaxShards = 1024;

  // INVALID_ARGUMENT saying what is wrong with `spec` (an empty name, a
  // name given twice, a malformed range...).
  static absl::StatusOr<ShardMap> Parse(absl::string_view spec);
  static absl::StatusOr<ShardMap> ParseNames(absl::string_view names);

  // One unsharded presenced at `target`.
  static ShardMap Single(std::string target);

  // False for one unsharded presenced (a plain target): it owns everyone.
  bool sharded() const { return sharded_; }
  size_t size() const { return shards_.size(); }
  const std::vector<Shard>& shards() const { return shards_; }
  const Shard& shard(size_t index) const { return shards_[index]; }

  // The index in shards() of the shard that owns `user_id` (0 unsharded).
  size_t OwnerIndex(int64_t user_id) const;
  const std::string& OwnerName(int64_t user_id) const {
    return shards_[OwnerIndex(user_id)].name;
  }
  // shards()'s index of the shard named `name`, or -1.
  int IndexOf(absl::string_view name) const;

  // The map written back in NAME=TARGET form (or the plain target).
  std::string ToString() const;

 private:
  ShardMap() = default;
  // Checks names (non-empty, [A-Za-z0-9._-], at most 63 bytes, unique) and
  // hashes them.
  static absl::StatusOr<ShardMap> Build(std::vector<Shard> shards);

  bool sharded_ = false;
  std::vector<Shard> shards_;
  std::vector<uint64_t> name_hashes_;  // parallel to shards_
};

}  // namespace presence

#endif  // PRESENCE_CLIENT_SHARD_MAP_H_
