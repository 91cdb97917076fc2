#include "gateway/jwt.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace presence::rest {
namespace {

using ::testing::HasSubstr;

constexpr char kSecret[] = "a-shared-secret-of-thirty-two-bytes!";
const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

// A SimpleJWT-style access token for user 42 valid for 5 more minutes.
std::string AccessToken(absl::string_view extra_claims = "") {
  return SignHs256Jwt(
      absl::StrCat(
          R"({"token_type":"access","exp":1800000300,"iat":1799999700,)",
          R"("jti":"5f0c","user_id":42)", extra_claims, "}"),
      kSecret);
}

void ExpectRejected(const std::string& token, absl::string_view why) {
  absl::StatusOr<TokenClaims> claims = VerifyHs256Jwt(token, kSecret, kNow);
  ASSERT_FALSE(claims.ok()) << token;
  EXPECT_EQ(claims.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(claims.status().message(), HasSubstr(why));
}

TEST(JwtTest, AcceptsAValidAccessToken) {
  absl::StatusOr<TokenClaims> claims =
      VerifyHs256Jwt(AccessToken(), kSecret, kNow);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->user_id, 42);
  EXPECT_EQ(claims->expires, absl::FromUnixSeconds(1'800'000'300));
}

// A token signed by another implementation (Python's hmac and base64, as
// PyJWT does for SimpleJWT): a known-answer check that both sides agree on
// the encoding and the HMAC.
TEST(JwtTest, AcceptsATokenSignedElsewhere) {
  const std::string token =
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
      "eyJ1c2VyX2lkIjogNywgImV4cCI6IDE4MDAwMDAzMDAsICJ0b2tlbl90eXBlIjogImFjY2Vz"
      "cyJ9.7U__JVH_YxZNL_s5wlekqeJSXS-0WjO3MQirSdk-EMU";
  absl::StatusOr<TokenClaims> claims = VerifyHs256Jwt(token, kSecret, kNow);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->user_id, 7);
  // One changed character in the signature and it no longer verifies.
  std::string flipped = token;
  char& c = flipped[flipped.size() - 5];
  c = c == 'A' ? 'B' : 'A';
  ExpectRejected(flipped, "bad signature");
}

TEST(JwtTest, AcceptsUserIdAsAString) {
  absl::StatusOr<TokenClaims> claims = VerifyHs256Jwt(
      SignHs256Jwt(R"({"user_id":"1234567890123","exp":1800000300})", kSecret),
      kSecret, kNow);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->user_id, 1234567890123);
}

// A JSON number past 2^53 is read exactly, not through a double (which
// would make 2^53 + 1 into 2^53, another user).
TEST(JwtTest, ReadsLargeNumericUserIdsExactly) {
  for (int64_t user : {int64_t{9007199254740993}, int64_t{9223372036854775807},
                       int64_t{4611686018427387905}}) {
    absl::StatusOr<TokenClaims> claims = VerifyHs256Jwt(
        SignHs256Jwt(
            absl::StrCat(R"({"user_id":)", user,
                         R"(,"exp":1800000300,"token_type":"access"})"),
            kSecret),
        kSecret, kNow);
    ASSERT_TRUE(claims.ok()) << claims.status();
    EXPECT_EQ(claims->user_id, user);
  }
  ExpectRejected(
      SignHs256Jwt(R"({"exp":1800000300,"user_id":9223372036854775808})",
                   kSecret),
      "'user_id' must be an integer > 0");
}

TEST(JwtTest, RejectsAWrongSignature) {
  ExpectRejected(
      SignHs256Jwt(R"({"user_id":42,"exp":1800000300})", "another-secret"),
      "bad signature");
}

TEST(JwtTest, RejectsATamperedPayload) {
  std::string token = AccessToken();
  size_t first = token.find('.');
  size_t second = token.find('.', first + 1);
  std::string forged = absl::StrCat(
      token.substr(0, first + 1),
      absl::WebSafeBase64Escape(
          R"({"token_type":"access","exp":1800000300,"user_id":1})"),
      token.substr(second));
  ExpectRejected(forged, "bad signature");
}

TEST(JwtTest, RejectsAlgNone) {
  // The classic attack: an unsigned token that names no algorithm.
  std::string token = absl::StrCat(
      absl::WebSafeBase64Escape(R"({"alg":"none","typ":"JWT"})"), ".",
      absl::WebSafeBase64Escape(R"({"user_id":42,"exp":1800000300})"), ".");
  ExpectRejected(token, "only alg HS256");
  ExpectRejected(absl::StrCat(absl::WebSafeBase64Escape(R"({"alg":"None"})"),
                              ".", absl::WebSafeBase64Escape("{}"), "."),
                 "only alg HS256");
}

TEST(JwtTest, RejectsOtherAlgorithms) {
  for (const char* alg : {"HS512", "RS256", "hs256", ""}) {
    std::string header = absl::StrCat(R"({"alg":")", alg, R"("})");
    std::string token = AccessToken();
    token = absl::StrCat(absl::WebSafeBase64Escape(header),
                         token.substr(token.find('.')));
    ExpectRejected(token, "only alg HS256");
  }
}

TEST(JwtTest, RejectsExpiredTokens) {
  ExpectRejected(SignHs256Jwt(R"({"user_id":42,"exp":1799999999})", kSecret),
                 "expired");
  // At exactly `exp` the token is no longer valid (RFC 7519 4.1.4).
  ExpectRejected(SignHs256Jwt(R"({"user_id":42,"exp":1800000000})", kSecret),
                 "expired");
  ExpectRejected(SignHs256Jwt(R"({"user_id":42})", kSecret), "no 'exp'");
  ExpectRejected(SignHs256Jwt(R"({"user_id":42,"exp":"soon"})", kSecret),
                 "'exp' must be a number");
}

TEST(JwtTest, RejectsTokensNotValidYet) {
  ExpectRejected(AccessToken(R"(,"nbf":1800000001)"), "not valid yet");
  EXPECT_TRUE(
      VerifyHs256Jwt(AccessToken(R"(,"nbf":1800000000)"), kSecret, kNow).ok());
}

TEST(JwtTest, RejectsRefreshTokens) {
  ExpectRejected(SignHs256Jwt(R"({"token_type":"refresh","user_id":42,)"
                              R"("exp":1800000300})",
                              kSecret),
                 "not an access token");
}

TEST(JwtTest, RejectsBadUserIds) {
  for (const char* user_id :
       {"0", "-3", "1.5", "\"abc\"", "null", "true", "1e300", "\"\""}) {
    ExpectRejected(SignHs256Jwt(absl::StrCat(R"({"exp":1800000300,"user_id":)",
                                             user_id, "}"),
                                kSecret),
                   "'user_id' must be an integer > 0");
  }
  ExpectRejected(SignHs256Jwt(R"({"exp":1800000300})", kSecret),
                 "no 'user_id'");
}

TEST(JwtTest, RejectsMalformedTokens) {
  ExpectRejected("", "expected header.payload.signature");
  ExpectRejected("abc", "expected header.payload.signature");
  ExpectRejected("a.b.c.d", "expected header.payload.signature");
  ExpectRejected("!!!.e30.sig", "header is not base64url");
  ExpectRejected(absl::StrCat(absl::WebSafeBase64Escape("not json"), ".e30.x"),
                 "header is not a JSON object");
  std::string token = AccessToken();
  ExpectRejected(token.substr(0, token.rfind('.') + 1) + "***",
                 "signature is not base64url");
  // A valid signature over a payload that is not a JSON object.
  ExpectRejected(SignHs256Jwt("[1,2]", kSecret),
                 "payload is not a JSON object");
}

}  // namespace
}  // namespace presence::rest
