#include "service/bearer.h"

#include <optional>
#include <string>

#include "gtest/gtest.h"

namespace presence {
namespace {

TEST(BearerTest, TakesTheTokenWhateverTheSchemesCaseAndTheSpaces) {
  EXPECT_EQ(BearerToken("Bearer abc.def.ghi"), "abc.def.ghi");
  EXPECT_EQ(BearerToken("bearer abc"), "abc");
  EXPECT_EQ(BearerToken("BEARER abc"), "abc");
  EXPECT_EQ(BearerToken("Bearer   abc \t"), "abc");
  // An empty token is a token: the checker then says "invalid token".
  EXPECT_EQ(BearerToken("Bearer "), "");
}

TEST(BearerTest, RefusesOtherSchemesAndBareTokens) {
  for (const std::string text :
       {"", "Basic dXNlcjpwYXNz", "abc.def.ghi", "Bearer", "Bearerabc",
        " Bearer abc", "Token abc"}) {
    EXPECT_EQ(BearerToken(text), std::nullopt) << "'" << text << "'";
  }
}

}  // namespace
}  // namespace presence
