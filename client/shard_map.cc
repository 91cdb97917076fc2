#include "presence/shard_map.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace presence {
namespace {

constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr uint64_t kFnvPrime = 0x100000001b3ULL;
// Shard names end up in DNS labels, flags and log lines.
constexpr size_t kMaxNameBytes = 63;

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
         c == '_' || c == '.';
}

// `text` with its one {FIRST..LAST} range expanded, in order; `text` itself
// if it has no brace.
absl::StatusOr<std::vector<std::string>> Expand(absl::string_view text) {
  const size_t open = text.find('{');
  const size_t close = text.find('}');
  if (open == absl::string_view::npos && close == absl::string_view::npos) {
    return std::vector<std::string>{std::string(text)};
  }
  if (open == absl::string_view::npos || close == absl::string_view::npos ||
      close < open || text.find('{', open + 1) != absl::string_view::npos ||
      text.find('}', close + 1) != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text,
                     "\": a pattern has one range, {FIRST..LAST}, "
                     "e.g. presenced-{0..2}"));
  }
  const absl::string_view range = text.substr(open + 1, close - open - 1);
  const std::vector<absl::string_view> ends = absl::StrSplit(range, "..");
  uint32_t first = 0;
  uint32_t last = 0;
  if (ends.size() != 2 || !absl::SimpleAtoi(ends[0], &first) ||
      !absl::SimpleAtoi(ends[1], &last) || ends[0].empty() || ends[1].empty() ||
      !absl::ascii_isdigit(ends[0][0]) || !absl::ascii_isdigit(ends[1][0]) ||
      first > last) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", text, "\": the range must be {FIRST..LAST}, two ",
                     "numbers with FIRST <= LAST, e.g. {0..2}"));
  }
  if (last - first >= ShardMap::kMaxShards) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text, "\": at most ", ShardMap::kMaxShards, " shards"));
  }
  std::vector<std::string> out;
  for (uint32_t i = first; i <= last; ++i) {
    out.push_back(
        absl::StrCat(text.substr(0, open), i, text.substr(close + 1)));
  }
  return out;
}

// The first label of HOST in HOST:PORT: what a DNS pattern's shard is named.
absl::string_view FirstLabel(absl::string_view address) {
  const size_t end = address.find_first_of(".:");
  return address.substr(0, end);
}

}  // namespace

uint64_t ShardNameHash(absl::string_view name) {
  uint64_t h = kFnvOffset;
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= kFnvPrime;
  }
  return h;
}

uint64_t ShardWeight(uint64_t name_hash, int64_t user_id) {
  return Mix(name_hash ^ Mix(static_cast<uint64_t>(user_id)));
}

absl::StatusOr<ShardMap> ShardMap::Build(std::vector<Shard> shards) {
  if (shards.empty()) {
    return absl::InvalidArgumentError("no shard given");
  }
  if (shards.size() > kMaxShards) {
    return absl::InvalidArgumentError(
        absl::StrCat(shards.size(), " shards; at most ", kMaxShards));
  }
  absl::flat_hash_set<absl::string_view> seen;
  for (const Shard& shard : shards) {
    if (shard.name.empty() || shard.name.size() > kMaxNameBytes ||
        !std::all_of(shard.name.begin(), shard.name.end(), IsNameChar)) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard name \"", shard.name, "\": a name is 1 to ",
                       kMaxNameBytes, " letters, digits, '-', '_' or '.'"));
    }
    if (!seen.insert(shard.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard \"", shard.name, "\" is named twice"));
    }
  }
  ShardMap map;
  map.sharded_ = true;
  map.shards_ = std::move(shards);
  for (const Shard& shard : map.shards_) {
    map.name_hashes_.push_back(ShardNameHash(shard.name));
  }
  return map;
}

absl::StatusOr<ShardMap> ShardMap::Parse(absl::string_view spec) {
  spec = absl::StripAsciiWhitespace(spec);
  if (spec.empty()) {
    return absl::InvalidArgumentError(
        "no address: give HOST:PORT, NAME=HOST:PORT,... or a pattern such "
        "as presenced-{0..2}.presenced.NAMESPACE.svc:50051");
  }
  std::vector<Shard> shards;
  if (absl::StrContains(spec, '=')) {
    for (absl::string_view item : absl::StrSplit(spec, ',')) {
      item = absl::StripAsciiWhitespace(item);
      const std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(item, absl::MaxSplits('=', 1));
      const absl::string_view target = absl::StripAsciiWhitespace(kv.second);
      if (!absl::StrContains(item, '=') || target.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("\"", item, "\": each shard is NAME=HOST:PORT"));
      }
      shards.push_back(Shard{std::string(absl::StripAsciiWhitespace(kv.first)),
                             std::string(target)});
    }
    return Build(std::move(shards));
  }
  if (absl::StrContains(spec, '{') || absl::StrContains(spec, '}')) {
    absl::StatusOr<std::vector<std::string>> addresses = Expand(spec);
    if (!addresses.ok()) return addresses.status();
    for (std::string& address : *addresses) {
      shards.push_back(Shard{std::string(FirstLabel(address)), address});
    }
    absl::StatusOr<ShardMap> map = Build(std::move(shards));
    if (!map.ok() && absl::StrContains(map.status().message(), "twice")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", spec,
          "\": the {FIRST..LAST} range must be in the host's first label, "
          "which names each shard (presenced-{0..2}.presenced...)"));
    }
    return map;
  }
  return Single(std::string(spec));
}

absl::StatusOr<ShardMap> ShardMap::ParseNames(absl::string_view names) {
  std::vector<Shard> shards;
  for (absl::string_view item : absl::StrSplit(names, ',')) {
    item = absl::StripAsciiWhitespace(item);
    item = item.substr(0, item.find('='));  // NAME=HOST:PORT: the name
    absl::StatusOr<std::vector<std::string>> expanded =
        Expand(absl::StripAsciiWhitespace(item));
    if (!expanded.ok()) return expanded.status();
    for (std::string& name : *expanded) {
      shards.push_back(Shard{std::move(name), ""});
    }
  }
  return Build(std::move(shards));
}

ShardMap ShardMap::Single(std::string target) {
  ShardMap map;
  map.shards_.push_back(Shard{"", std::move(target)});
  map.name_hashes_.push_back(0);
  return map;
}

size_t ShardMap::OwnerIndex(int64_t user_id) const {
  size_t best = 0;
  uint64_t best_weight = ShardWeight(name_hashes_[0], user_id);
  for (size_t i = 1; i < shards_.size(); ++i) {
    const uint64_t weight = ShardWeight(name_hashes_[i], user_id);
    if (weight > best_weight ||
        (weight == best_weight && shards_[i].name < shards_[best].name)) {
      best = i;
      best_weight = weight;
    }
  }
  return best;
}

int ShardMap::IndexOf(absl::string_view name) const {
  for (size_t i = 0; i < shards_.size(); ++i) {
    if (shards_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

std::string ShardMap::ToString() const {
  if (!sharded_) return shards_[0].target;
  return absl::StrJoin(shards_, ",", [](std::string* out, const Shard& s) {
    absl::StrAppend(out, s.name, s.target.empty() ? "" : "=", s.target);
  });
}

}  // namespace presence
