// Verification of the JSON Web Tokens that callers of presence-rest present:
// HS256 with a shared secret, as Django REST framework SimpleJWT issues them
// (a `user_id` claim, `exp`, and `token_type` "access").
#ifndef PRESENCE_GATEWAY_JWT_H_
#define PRESENCE_GATEWAY_JWT_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace presence::rest {

// What a verified token says about its caller.
struct TokenClaims {
  int64_t user_id = 0;
  absl::Time expires;
};

// Verifies `token` (compact serialisation: header.payload.signature) against
// `secret` at `now`. Only HS256 is accepted: `alg: none` and every other
// algorithm are refused, so a token cannot choose how it is checked. The
// signature is compared in constant time (OpenSSL's CRYPTO_memcmp). `exp` is
// required and must be after `now`; `nbf`, if present, must not be after
// `now`; `token_type`, if present, must be "access" (a SimpleJWT refresh
// token is not a credential for API calls); `user_id` must be an integer
// > 0, as a JSON number or a string of digits.
//
// Errors are UNAUTHENTICATED with a message fit for the caller: it says what
// is wrong with the token, never anything about the secret.
absl::StatusOr<TokenClaims> VerifyHs256Jwt(absl::string_view token,
                                           absl::string_view secret,
                                           absl::Time now);

// Signs `payload_json` with HS256: for tests and tools that mint tokens.
std::string SignHs256Jwt(absl::string_view payload_json,
                         absl::string_view secret);

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_JWT_H_
