#include "service/caller_auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace presence {
namespace {

constexpr size_t kMinTokenLength = 16;

std::array<unsigned char, 32> Digest(absl::string_view token) {
  std::array<unsigned char, 32> digest;
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(),
         digest.data());
  return digest;
}

using CallerList = std::vector<std::shared_ptr<Caller>>;

absl::StatusOr<std::shared_ptr<const CallerList>> Parse(
    const std::string& path, const CallerList* previous) {
  std::ifstream in(path);
  if (!in) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read the tokens file ", path));
  }
  absl::flat_hash_map<std::string, std::shared_ptr<Caller>> kept;
  if (previous != nullptr) {
    for (const auto& caller : *previous) kept[caller->name] = caller;
  }
  auto callers = std::make_shared<CallerList>();
  absl::flat_hash_set<std::string> names, tokens;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    absl::string_view text = line;
    text = text.substr(0, text.find('#'));
    std::vector<absl::string_view> fields =
        absl::StrSplit(text, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    auto where = [&] { return absl::StrCat(path, ":", number, ": "); };
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          where(), "expected 'NAME TOKEN', got ", fields.size(), " fields"));
    }
    if (fields[1].size() < kMinTokenLength) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(), "the token of '", fields[0],
                       "' is shorter than ", kMinTokenLength, " characters"));
    }
    if (!names.insert(std::string(fields[0])).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(where(), "caller '", fields[0], "' appears twice"));
    }
    if (!tokens.insert(std::string(fields[1])).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          where(), "the token of '", fields[0], "' is another caller's too"));
    }
    auto caller = std::make_shared<Caller>();
    caller->name = std::string(fields[0]);
    caller->token_digest = Digest(fields[1]);
    // Keep the counters of a caller that stays.
    if (auto old = kept.find(caller->name); old != kept.end()) {
      for (size_t i = 0; i < caller->calls.size(); ++i) {
        caller->calls[i].store(old->second->calls[i].load());
      }
    }
    callers->push_back(std::move(caller));
  }
  if (callers->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": no callers (one 'NAME TOKEN' a line); nobody could call"));
  }
  return std::shared_ptr<const CallerList>(std::move(callers));
}

}  // namespace

absl::StatusOr<std::unique_ptr<CallerAuth>> CallerAuth::Load(std::string path) {
  std::unique_ptr<CallerAuth> auth(new CallerAuth(std::move(path)));
  absl::StatusOr<size_t> loaded = auth->Reload();
  if (!loaded.ok()) return loaded.status();
  return auth;
}

absl::StatusOr<size_t> CallerAuth::Reload() {
  std::shared_ptr<const CallerList> previous;
  {
    absl::MutexLock lock(&mu_);
    previous = callers_;
  }
  absl::StatusOr<std::shared_ptr<const CallerList>> parsed =
      Parse(path_, previous.get());
  if (!parsed.ok()) return parsed.status();
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
  if (!absl::StartsWithIgnoreCase(authorization, "Bearer ")) {
    return absl::UnauthenticatedError(
        "the authorization metadata must be 'Bearer TOKEN'");
  }
  const std::array<unsigned char, 32> presented =
      Digest(absl::StripAsciiWhitespace(authorization.substr(7)));
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
