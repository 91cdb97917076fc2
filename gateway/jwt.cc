#include "gateway/jwt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "presence/v1/presence.pb.h"

namespace presence::rest {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

absl::Status Unauthenticated(absl::string_view why) {
  return absl::UnauthenticatedError(absl::StrCat("invalid token: ", why));
}

std::string HmacSha256(absl::string_view key, absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest,
       &length);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

absl::StatusOr<Struct> DecodeJsonPart(absl::string_view part,
                                      absl::string_view name,
                                      std::string* json_out = nullptr) {
  std::string json;
  if (!absl::WebSafeBase64Unescape(part, &json)) {
    return Unauthenticated(absl::StrCat(name, " is not base64url"));
  }
  Struct object;
  if (!google::protobuf::util::JsonStringToMessage(json, &object).ok()) {
    return Unauthenticated(absl::StrCat(name, " is not a JSON object"));
  }
  if (json_out != nullptr) *json_out = std::move(json);
  return object;
}

// A NumericDate claim (seconds since the epoch), if present.
absl::StatusOr<const Value*> FindNumber(const Struct& claims,
                                        absl::string_view name) {
  auto it = claims.fields().find(std::string(name));
  if (it == claims.fields().end()) return nullptr;
  if (it->second.kind_case() != Value::kNumberValue ||
      !std::isfinite(it->second.number_value())) {
    return Unauthenticated(absl::StrCat("'", name, "' must be a number"));
  }
  return &it->second;
}

// A JSON number `user_id`, exactly. Struct holds numbers as doubles, which
// cannot tell 2^53 + 1 from 2^53; protobuf's JSON parser reads an int64
// field's digits exactly, and HeartbeatRequest's `user_id` is one. nullopt
// if the payload does not parse as one (a claim of another type under one
// of its other field names).
std::optional<int64_t> ExactUserId(absl::string_view payload_json) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  v1::HeartbeatRequest parsed;
  if (!google::protobuf::util::JsonStringToMessage(std::string(payload_json),
                                                   &parsed, options)
           .ok()) {
    return std::nullopt;
  }
  return parsed.user_id();
}

absl::StatusOr<int64_t> UserId(const Struct& claims,
                               absl::string_view payload_json) {
  auto it = claims.fields().find("user_id");
  if (it == claims.fields().end()) {
    return Unauthenticated("no 'user_id' claim");
  }
  int64_t user_id = 0;
  const Value& value = it->second;
  if (value.kind_case() == Value::kNumberValue) {
    double number = value.number_value();
    if (number == std::floor(number) && number > 0) {
      user_id = ExactUserId(payload_json).value_or(0);
    }
  } else if (value.kind_case() == Value::kStringValue) {
    if (!absl::SimpleAtoi(value.string_value(), &user_id)) user_id = 0;
  }
  if (user_id <= 0) {
    return Unauthenticated("'user_id' must be an integer > 0");
  }
  return user_id;
}

}  // namespace

absl::StatusOr<TokenClaims> VerifyHs256Jwt(absl::string_view token,
                                           absl::string_view secret,
                                           absl::Time now) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) {
    return Unauthenticated("expected header.payload.signature");
  }
  absl::StatusOr<Struct> header = DecodeJsonPart(parts[0], "header");
  if (!header.ok()) return header.status();
  auto alg = header->fields().find("alg");
  if (alg == header->fields().end() ||
      alg->second.kind_case() != Value::kStringValue ||
      alg->second.string_value() != "HS256") {
    return Unauthenticated("only alg HS256 is accepted");
  }

  std::string signature;
  if (!absl::WebSafeBase64Unescape(parts[2], &signature)) {
    return Unauthenticated("signature is not base64url");
  }
  std::string expected = HmacSha256(
      secret, token.substr(0, parts[0].size() + 1 + parts[1].size()));
  if (signature.size() != expected.size() ||
      CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) != 0) {
    return Unauthenticated("bad signature");
  }

  // Only now is the payload trusted enough to read.
  std::string payload_json;
  absl::StatusOr<Struct> claims =
      DecodeJsonPart(parts[1], "payload", &payload_json);
  if (!claims.ok()) return claims.status();
  absl::StatusOr<const Value*> exp = FindNumber(*claims, "exp");
  if (!exp.ok()) return exp.status();
  if (*exp == nullptr) return Unauthenticated("no 'exp' claim");
  absl::Time expires =
      absl::UnixEpoch() + absl::Seconds((*exp)->number_value());
  if (now >= expires) return Unauthenticated("expired");
  absl::StatusOr<const Value*> nbf = FindNumber(*claims, "nbf");
  if (!nbf.ok()) return nbf.status();
  if (*nbf != nullptr &&
      now < absl::UnixEpoch() + absl::Seconds((*nbf)->number_value())) {
    return Unauthenticated("not valid yet ('nbf')");
  }
  auto type = claims->fields().find("token_type");
  if (type != claims->fields().end() &&
      (type->second.kind_case() != Value::kStringValue ||
       type->second.string_value() != "access")) {
    return Unauthenticated("not an access token");
  }
  absl::StatusOr<int64_t> user_id = UserId(*claims, payload_json);
  if (!user_id.ok()) return user_id.status();
  return TokenClaims{*user_id, expires};
}

std::string SignHs256Jwt(absl::string_view payload_json,
                         absl::string_view secret) {
  std::string signing_input =
      absl::StrCat(absl::WebSafeBase64Escape(R"({"alg":"HS256","typ":"JWT"})"),
                   ".", absl::WebSafeBase64Escape(payload_json));
  std::string signature = HmacSha256(secret, signing_input);
  return absl::StrCat(signing_input, ".", absl::WebSafeBase64Escape(signature));
}

}  // namespace presence::rest
