#include "service/caller_auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "service/bearer.h"

namespace presence {
namespace {

// Below this a token is easier to guess. Shorter ones are accepted with a
// warning rather than refused: a start or a SIGHUP should not fail over a
// token the operator may not be free to change at once.
constexpr size_t kMinTokenLength = 16;

std::array<unsigned char, 32> Digest(absl::string_view token) {
  std::array<unsigned char, 32> digest;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(),
         digest.data());
  return digest;
}

// Blanks separate the fields; any other white space or control character in
// a field is refused, so that a token in the file is one a client can send:
// gRPC metadata values are printable ASCII. (Names are held to the same rule:
// they go into log lines and metric labels.)
bool IsPrintable(absl::string_view field) {
  for (char c : field) {
    if (!absl::ascii_isgraph(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

using CallerList = std::vector<std::shared_ptr<Caller>>;

struct TokenOwner {
  int line;
  std::string name;
};

using NameAndToken = std::pair<absl::string_view, absl::string_view>;

// A `NAME TOKEN` line (not a comment), its shape and characters checked. The
// error says what is wrong with the line; the caller names the line.
absl::StatusOr<NameAndToken> SplitLine(absl::string_view text) {
  const std::vector<absl::string_view> fields =
      absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  // The messages below quote a name only once the line is known to be
  // NAME TOKEN: a line of another shape may start with a token.
  if (fields.size() == 1) {
    return absl::InvalidArgumentError(
        "expected 'NAME TOKEN', got a NAME without a token");
  }
  if (fields.size() > 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected 'NAME TOKEN', got ", fields.size(),
        " fields: a token cannot contain white space, and a comment needs "
        "a line of its own"));
  }
  const absl::string_view name = fields[0];
  const absl::string_view token = fields[1];
  if (!IsPrintable(name)) {
    return absl::InvalidArgumentError(
        "the name contains a control character or a byte that is not "
        "printable ASCII");
  }
  if (!IsPrintable(token)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the token of '", name,
        "' contains a control character or a byte that is not printable "
        "ASCII; a client could not send it"));
  }
  return NameAndToken{name, token};
}

absl::StatusOr<std::shared_ptr<const CallerList>> Parse(
    const std::string& path, const CallerList* previous,
    std::vector<std::string>* warnings) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read the tokens file ", path, ": ", std::strerror(errno)));
  }
  absl::flat_hash_map<std::string, std::shared_ptr<Caller>> kept;
  if (previous != nullptr) {
    for (const auto& caller : *previous) kept[caller->name] = caller;
  }
  auto callers = std::make_shared<CallerList>();
  absl::flat_hash_map<std::string, int> names;  // name -> line
  // Keyed by digest so that no copy of a token outlives its line.
  absl::flat_hash_map<std::array<unsigned char, 32>, TokenOwner> tokens;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    absl::string_view text = line;
    if (absl::EndsWith(text, "\r")) text.remove_suffix(1);
    const size_t first = text.find_first_not_of(" \t");
    if (first == absl::string_view::npos || text[first] == '#') continue;
    auto where = [&] { return absl::StrCat(path, ":", number, ": "); };
    absl::StatusOr<NameAndToken> fields = SplitLine(text);
    if (!fields.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(), fields.status().message()));
    }
    const auto [name, token] = *fields;
    if (auto [seen, added] = names.try_emplace(name, number); !added) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(), "caller '", name,
                       "' appears twice (first on line ", seen->second, ")"));
    }
    const std::array<unsigned char, 32> digest = Digest(token);
    if (auto [seen, added] =
            tokens.try_emplace(digest, TokenOwner{number, std::string(name)});
        !added) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(), "the token of '", name, "' is the token of '",
                       seen->second.name, "' (line ", seen->second.line,
                       ") too; each caller needs its own"));
    }
    if (token.size() < kMinTokenLength) {
      warnings->push_back(absl::StrCat(
          where(), "the token of '", name, "' is shorter than ",
          kMinTokenLength,
          " bytes and easier to guess; make one with `openssl rand -hex 16`"));
    }
    auto caller = std::make_shared<Caller>();
    caller->name = std::string(name);
    caller->token_digest = digest;
    // Keep the counters of a caller that stays.
    if (auto old = kept.find(caller->name); old != kept.end()) {
      for (size_t i = 0; i < caller->calls.size(); ++i) {
        caller->calls[i].store(old->second->calls[i].load());
      }
    }
    callers->push_back(std::move(caller));
  }
  if (in.bad()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read the tokens file ", path, ": ", std::strerror(errno)));
  }
  if (callers->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": no callers (one 'NAME TOKEN' a line); nobody could call"));
  }
  return std::shared_ptr<const CallerList>(std::move(callers));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CallerAuth>> CallerAuth::Load(
    std::string path, std::vector<std::string>* warnings) {
  std::unique_ptr<CallerAuth> auth(new CallerAuth(std::move(path)));
  absl::StatusOr<size_t> loaded = auth->Reload(warnings);
  if (!loaded.ok()) return loaded.status();
  return auth;
}

absl::StatusOr<size_t> CallerAuth::Reload(std::vector<std::string>* warnings) {
  if (warnings != nullptr) warnings->clear();
  std::shared_ptr<const CallerList> previous;
  {
    absl::MutexLock lock(&mu_);
    previous = callers_;
  }
  std::vector<std::string> found;
  absl::StatusOr<std::shared_ptr<const CallerList>> parsed =
      Parse(path_, previous.get(), &found);
  if (!parsed.ok()) return parsed.status();
  if (warnings != nullptr) *warnings = std::move(found);
  size_t count = (*parsed)->size();
  absl::MutexLock lock(&mu_);
  callers_ = *std::move(parsed);
  return count;
}

absl::StatusOr<std::shared_ptr<Caller>> CallerAuth::Authenticate(
    absl::string_view authorization) const {
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "missing credentials: send metadata 'authorization: Bearer TOKEN'");
  }
  const std::optional<absl::string_view> token = BearerToken(authorization);
  if (!token) {
    return absl::UnauthenticatedError(
        "the authorization metadata must be 'Bearer TOKEN'");
  }
  const std::array<unsigned char, 32> presented = Digest(*token);
  std::shared_ptr<const CallerList> callers;
  {
    absl::MutexLock lock(&mu_);
    callers = callers_;
  }
  std::shared_ptr<Caller> match;
  for (const auto& caller : *callers) {
    // No early exit: every caller is compared, whether one matched or not.
    if (CRYPTO_memcmp(presented.data(), caller->token_digest.data(),
                      presented.size()) == 0) {
      match = caller;
    }
  }
  if (match == nullptr) {
    return absl::UnauthenticatedError("invalid token");
  }
  return match;
}

std::vector<std::shared_ptr<Caller>> CallerAuth::callers() const {
  absl::MutexLock lock(&mu_);
  return *callers_;
}

}  // namespace presence
