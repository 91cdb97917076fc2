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
#include "service/rpc.h"

namespace presence {

// One caller of the tokens file. Its counters survive a reload that keeps
// its name.
struct Caller {
  std::string name;
  std::array<unsigned char, 32> token_digest;  // SHA-256 of the token
  // Authenticated calls, by presence.v1 method (indexed by Rpc).
  std::array<std::atomic<uint64_t>, kNumRpcs> calls = {};
  // Whether its first call since the file was (re)loaded has been logged.
  std::atomic<bool> logged{false};
};

// The tokens file: one caller a line, `NAME TOKEN` separated by blanks
// (spaces or tabs; a trailing \r is ignored, so CRLF files work). A line whose
// first non-blank character is `#` is a comment and blank lines are ignored;
// anywhere else `#` is an ordinary character, so a token may contain it and a
// comment cannot follow a caller on its line. Names and tokens are printable
// ASCII without blanks (a token travels as gRPC metadata; a name goes into
// log lines and metric labels). Names are unique, and so are tokens. A token
// shorter than 16 bytes is accepted with a warning. No error or warning ever
// contains a token. Thread-safe.
class CallerAuth {
 public:
  // Reads `path`. An error is INVALID_ARGUMENT "PATH:LINE: ..." saying what is
  // wrong with that line (or "PATH: no callers ..." for a file without any),
  // or FAILED_PRECONDITION if the file cannot be read. If `warnings` is not
  // null it is cleared and, on success, receives one "PATH:LINE: ..." line for
  // each thing accepted but worth fixing (a short token).
  static absl::StatusOr<std::unique_ptr<CallerAuth>> Load(
      std::string path, std::vector<std::string>* warnings = nullptr);

  // Reads the file again (SIGHUP), with the errors and warnings of Load. On
  // error the callers stay as they were. A caller whose name stays keeps its
  // counters. Returns the number of callers loaded.
  absl::StatusOr<size_t> Reload(std::vector<std::string>* warnings = nullptr);

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
