// Who may call presenced: the callers of --auth_tokens_file and their bearer
// tokens.
#ifndef PRESENCE_SERVICE_CALLER_AUTH_H_
#define PRESENCE_SERVICE_CALLER_AUTH_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace presence {

// One caller of the tokens file. Its counters survive a reload that keeps
// its name.
struct Caller {
  std::string name;
  std::array<unsigned char, 32> token_digest;  // SHA-256 of the token
  // Authenticated calls, by presence.v1 method (see metrics.h's Rpc).
  std::array<std::atomic<uint64_t>, 6> calls = {};
  // Whether its first call since the file was (re)loaded has been logged.
  std::atomic<bool> logged{false};
};

// The tokens file: one caller a line, `NAME TOKEN` separated by white space;
// `#` starts a comment; blank lines are ignored. Names and tokens are unique;
// a token has at least 16 characters. Thread-safe.
class CallerAuth {
 public:
  // Reads `path`; an error names the line and what is wrong with it.
  static absl::StatusOr<std::unique_ptr<CallerAuth>> Load(std::string path);

  // Reads the file again (SIGHUP). On error the callers stay as they were.
  // Returns the number of callers loaded.
  absl::StatusOr<size_t> Reload();

  // The caller whose token `authorization` carries ("Bearer <token>",
  // scheme case-insensitive), or UNAUTHENTICATED with a message fit for the
  // caller. Takes the same time whichever caller, if any, matches: the
  // presented token's digest is compared with every caller's, each in
  // constant time (OpenSSL's CRYPTO_memcmp).
  absl::StatusOr<std::shared_ptr<Caller>> Authenticate(
      absl::string_view authorization) const;

  // The callers now, e.g. for metrics.
  std::vector<std::shared_ptr<Caller>> callers() const;
  const std::string& path() const { return path_; }

 private:
  explicit CallerAuth(std::string path) : path_(std::move(path)) {}

  const std::string path_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const std::vector<std::shared_ptr<Caller>>> callers_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_CALLER_AUTH_H_
