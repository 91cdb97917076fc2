#include "service/caller_auth.h"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using presence::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kAlphaToken[] = "alpha-5c1e9a7b3d2f4e60";
constexpr char kBetaToken[] = "beta-8a2d6f0c4e1b7395";
constexpr char kHashToken[] = "abcdefghijklmnop#qrstuvwxyz";

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

std::string NameOf(const absl::StatusOr<std::shared_ptr<Caller>>& caller) {
  return caller.ok() ? (*caller)->name : caller.status().ToString();
}

class CallerAuthTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& content) {
    WriteFile(path_, content);
    return path_;
  }

  TempDir dir_;
  const std::string path_ = dir_.File("tokens");
};

TEST_F(CallerAuthTest, ParsesTheTokensFile) {
  struct Case {
    const char* what;
    std::string content;
    // Empty: the file loads. Else a part of the error after "PATH".
    std::string error;
    size_t callers = 0;
    std::vector<std::string> warnings = {};  // each after "PATH"
  };
  const Case cases[] = {
      {"comments start a line, after blanks; blank lines are ignored",
       absl::StrCat("# callers\n  \t# indented\n\n \t \nalpha ", kAlphaToken,
                    "\n\tbeta\t \t", kBetaToken, "\n"),
       "", 2},
      {"'#' inside a token is part of it", absl::StrCat("alpha ", kHashToken),
       "", 1},
      {"'#' may start a token", "alpha #abcdefghijklmnopq\n", "", 1},
      {"a comment cannot follow a caller",
       absl::StrCat("alpha ", kAlphaToken, " # the chat backend\n"),
       ":1: expected 'NAME TOKEN', got 6 fields: a token cannot contain white "
       "space, and a comment needs a line of its own"},
      {"a comment right after the token is part of it",
       absl::StrCat("alpha ", kAlphaToken, "#note\n"), "", 1},
      {"white space inside a token",
       absl::StrCat("# x\nalpha abcdefgh ijklmnopqrst\n"),
       ":2: expected 'NAME TOKEN', got 3 fields: a token cannot contain white "
       "space"},
      {"a name without a token", absl::StrCat("\nalpha\n"),
       ":2: expected 'NAME TOKEN', got a NAME without a token"},
      {"a control character in a token", "alpha abcdefgh\x01ijklmnopqrst\n",
       ":1: the token of 'alpha' contains a control character"},
      {"a vertical tab is not a blank", "alpha abcdefgh\vijklmnopqrst\n",
       ":1: the token of 'alpha' contains a control character"},
      {"a carriage return inside a line", "alpha abcdefgh\rijklmnopqrst\n",
       ":1: the token of 'alpha' contains a control character"},
      {"a NUL in a token", std::string("alpha abcdefgh\0ijklmnopqrst\n", 28),
       ":1: the token of 'alpha' contains a control character"},
      {"a byte that is not ASCII in a token",
       "alpha abcdefgh\xc3\xa9ijklmnop\n",
       ":1: the token of 'alpha' contains a control character or a byte that "
       "is not printable ASCII"},
      {"a control character in a name",
       absl::StrCat("al\x1b[31mpha ", kAlphaToken, "\n"),
       ":1: the name contains a control character"},
      {"a byte that is not ASCII in a name",
       absl::StrCat("\xc3\xa9lodie ", kAlphaToken, "\n"),
       ":1: the name contains a control character or a byte that is not "
       "printable ASCII"},
      {"a DEL in a token", "alpha abcdefgh\x7fijklmnop\n",
       ":1: the token of 'alpha' contains a control character"},
      {"an error after a warning: only the error",
       absl::StrCat("beta tiny-7\nalpha\n"),
       ":2: expected 'NAME TOKEN', got a NAME without a token"},
      {"a short token is accepted with a warning",
       absl::StrCat("alpha ", kAlphaToken, "\nbeta tiny-7\n"),
       "",
       2,
       {":2: the token of 'beta' is shorter than 16 bytes"}},
      {"16 bytes is long enough", "alpha 0123456789abcdef\n", "", 1},
      {"a name twice",
       absl::StrCat("a ", kAlphaToken, "\nb ", kBetaToken, "\na ",
                    "another-token-1234567\n"),
       ":3: caller 'a' appears twice (first on line 1)"},
      {"a token twice",
       absl::StrCat("a ", kAlphaToken, "\n# b\nb ", kAlphaToken, "\n"),
       ":3: the token of 'b' is the token of 'a' (line 1) too"},
      {"CRLF lines",
       absl::StrCat("# callers\r\nalpha ", kAlphaToken, "\r\n\r\nbeta ",
                    kBetaToken, "\r\n"),
       "", 2},
      {"no newline at the end", absl::StrCat("alpha ", kAlphaToken), "", 1},
      {"an empty file", "", ": no callers"},
      {"only comments", "# nobody yet\n\n", ": no callers"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::vector<std::string> warnings = {"left over"};
    absl::StatusOr<std::unique_ptr<CallerAuth>> auth =
        CallerAuth::Load(Write(c.content), &warnings);
    if (c.error.empty()) {
      ASSERT_TRUE(auth.ok()) << auth.status();
      EXPECT_EQ((*auth)->callers().size(), c.callers);
      ASSERT_EQ(warnings.size(), c.warnings.size());
      for (size_t i = 0; i < warnings.size(); ++i) {
        EXPECT_THAT(warnings[i], StartsWith(path_ + c.warnings[i]));
      }
    } else {
      ASSERT_FALSE(auth.ok());
      EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(auth.status().message()),
                  StartsWith(path_ + c.error));
      EXPECT_THAT(warnings, IsEmpty());
    }
    // No message quotes a token.
    for (const char* token :
         {kAlphaToken, kBetaToken, "tiny-7", "abcdefgh", "ijklmnop"}) {
      EXPECT_THAT(std::string(auth.status().message()), Not(HasSubstr(token)));
      for (const std::string& warning : warnings) {
        EXPECT_THAT(warning, Not(HasSubstr(token)));
      }
    }
  }
}

TEST_F(CallerAuthTest, AMissingFileIsNamed) {
  absl::StatusOr<std::unique_ptr<CallerAuth>> auth =
      CallerAuth::Load(dir_.File("nothing"));
  ASSERT_FALSE(auth.ok());
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(auth.status().message(),
            absl::StrCat("cannot read the tokens file ", dir_.File("nothing"),
                         ": No such file or directory"));
}

TEST_F(CallerAuthTest, AFileThatCannotBeReadIsNamed) {
  absl::StatusOr<std::unique_ptr<CallerAuth>> auth =
      CallerAuth::Load(dir_.path());  // a directory: opens, cannot be read
  ASSERT_FALSE(auth.ok());
  EXPECT_EQ(auth.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(auth.status().message()),
              StartsWith("cannot read the tokens file " + dir_.path() + ": "));
}

TEST_F(CallerAuthTest, AHashInsideATokenIsPartOfIt) {
  absl::StatusOr<std::unique_ptr<CallerAuth>> auth =
      CallerAuth::Load(Write(absl::StrCat("alpha ", kHashToken, "\n")));
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(NameOf((*auth)->Authenticate(absl::StrCat("Bearer ", kHashToken))),
            "alpha");
  // The issue: the part before '#' used to be the whole token.
  absl::StatusOr<std::shared_ptr<Caller>> prefix =
      (*auth)->Authenticate("Bearer abcdefghijklmnop");
  EXPECT_EQ(prefix.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(CallerAuthTest, CrlfLinesKeepTheirTokensWithoutTheCarriageReturn) {
  absl::StatusOr<std::unique_ptr<CallerAuth>> auth = CallerAuth::Load(
      Write(absl::StrCat("alpha ", kAlphaToken, "\r\nbeta ", kBetaToken)));
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(NameOf((*auth)->Authenticate(absl::StrCat("Bearer ", kAlphaToken))),
            "alpha");
  EXPECT_EQ(NameOf((*auth)->Authenticate(absl::StrCat("Bearer ", kBetaToken))),
            "beta");
}

TEST_F(CallerAuthTest, Authenticates) {
  absl::StatusOr<std::unique_ptr<CallerAuth>> auth = CallerAuth::Load(
      Write(absl::StrCat("alpha ", kAlphaToken, "\nbeta ", kBetaToken, "\n")));
  ASSERT_TRUE(auth.ok()) << auth.status();
  struct Case {
    std::string authorization;
    std::string caller;  // empty: refused
    std::string error;
  } cases[] = {
      {absl::StrCat("Bearer ", kAlphaToken), "alpha", ""},
      {absl::StrCat("bearer ", kBetaToken), "beta", ""},
      {absl::StrCat("BEARER ", kAlphaToken), "alpha", ""},
      {absl::StrCat("Bearer  ", kAlphaToken, " "), "alpha", ""},
      {"", "",
       "missing credentials: send metadata 'authorization: Bearer "
       "TOKEN'"},
      {absl::StrCat("Basic ", kAlphaToken), "",
       "the authorization metadata must be 'Bearer TOKEN'"},
      {kAlphaToken, "", "the authorization metadata must be 'Bearer TOKEN'"},
      {"Bearer alpha-5c1e9a7b3d2f4e6X", "", "invalid token"},
      {"Bearer ", "", "invalid token"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.authorization);
    absl::StatusOr<std::shared_ptr<Caller>> caller =
        (*auth)->Authenticate(c.authorization);
    if (c.caller.empty()) {
      EXPECT_EQ(caller.status().code(), absl::StatusCode::kUnauthenticated);
      EXPECT_EQ(caller.status().message(), c.error);
    } else {
      EXPECT_EQ(NameOf(caller), c.caller);
    }
  }
}

TEST_F(CallerAuthTest, ReloadSwapsTheCallersAndKeepsTheCountersOfThoseWhoStay) {
  absl::StatusOr<std::unique_ptr<CallerAuth>> auth = CallerAuth::Load(
      Write(absl::StrCat("alpha ", kAlphaToken, "\nbeta ", kBetaToken, "\n")));
  ASSERT_TRUE(auth.ok()) << auth.status();
  absl::StatusOr<std::shared_ptr<Caller>> alpha =
      (*auth)->Authenticate(absl::StrCat("Bearer ", kAlphaToken));
  ASSERT_TRUE(alpha.ok()) << alpha.status();
  (*alpha)->calls[0] += 3;
  (*alpha)->calls[5] += 1;

  // alpha stays with a new token, beta goes, gamma comes (with a short token).
  Write("alpha alpha-rotated-token-0001\ngamma tiny-7\n");
  std::vector<std::string> warnings;
  absl::StatusOr<size_t> reloaded = (*auth)->Reload(&warnings);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ(*reloaded, 2u);
  EXPECT_THAT(warnings,
              ElementsAre(StartsWith(
                  path_ + ":2: the token of 'gamma' is shorter than 16")));
  std::vector<std::shared_ptr<Caller>> callers = (*auth)->callers();
  ASSERT_EQ(callers.size(), 2u);
  EXPECT_EQ(callers[0]->name, "alpha");
  EXPECT_EQ(callers[0]->calls[0].load(), 3u);
  EXPECT_EQ(callers[0]->calls[5].load(), 1u);
  EXPECT_EQ(callers[1]->calls[0].load(), 0u);
  EXPECT_EQ(NameOf((*auth)->Authenticate("Bearer alpha-rotated-token-0001")),
            "alpha");
  EXPECT_EQ(NameOf((*auth)->Authenticate("Bearer tiny-7")), "gamma");
  for (const char* gone : {kAlphaToken, kBetaToken}) {
    EXPECT_EQ(
        (*auth)->Authenticate(absl::StrCat("Bearer ", gone)).status().code(),
        absl::StatusCode::kUnauthenticated);
  }

  // A broken file is refused; the callers stay as they were.
  Write("# oops\nalpha alpha-rotated-token-0001 # rotated\n");
  absl::StatusOr<size_t> broken = (*auth)->Reload(&warnings);
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(std::string(broken.status().message()),
              StartsWith(path_ + ":2: expected 'NAME TOKEN', got 4 fields"));
  EXPECT_THAT(warnings, IsEmpty());
  EXPECT_EQ((*auth)->callers().size(), 2u);
  EXPECT_EQ(NameOf((*auth)->Authenticate("Bearer tiny-7")), "gamma");
  EXPECT_EQ((*auth)->callers()[0]->calls[0].load(), 3u);

  // So is a file that is gone.
  std::remove(path_.c_str());
  EXPECT_EQ((*auth)->Reload().status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(NameOf((*auth)->Authenticate("Bearer alpha-rotated-token-0001")),
            "alpha");
}

// Every counter of every caller that stays, wherever its line moves and
// whatever its token becomes; a caller that comes back after a reload
// without it starts again from zero. Whether a caller's first call was logged
// starts again at every reload.
TEST_F(CallerAuthTest, ReloadKeepsEveryCounterOfEachCallerThatStays) {
  absl::StatusOr<std::unique_ptr<CallerAuth>> auth = CallerAuth::Load(
      Write(absl::StrCat("alpha ", kAlphaToken, "\nbeta ", kBetaToken, "\n")));
  ASSERT_TRUE(auth.ok()) << auth.status();
  for (const std::shared_ptr<Caller>& caller : (*auth)->callers()) {
    const uint64_t base = caller->name == "alpha" ? 100 : 200;
    for (int rpc = 0; rpc < kNumRpcs; ++rpc) caller->calls[rpc] = base + rpc;
    caller->logged = true;
  }
  auto counters_of = [&](const std::string& name) {
    std::vector<uint64_t> counters;
    for (const std::shared_ptr<Caller>& caller : (*auth)->callers()) {
      if (caller->name != name) continue;
      for (const auto& calls : caller->calls) counters.push_back(calls.load());
      EXPECT_FALSE(caller->logged.load()) << name;
    }
    return counters;
  };
  std::vector<uint64_t> alpha, beta, zero(kNumRpcs, 0);
  for (int rpc = 0; rpc < kNumRpcs; ++rpc) {
    alpha.push_back(100 + rpc);
    beta.push_back(200 + rpc);
  }

  // beta first with a new token, then a newcomer, then alpha.
  Write(absl::StrCat("beta beta-rotated-token-0002\ngamma ", kHashToken,
                     "\n# alpha last\nalpha ", kAlphaToken, "\n"));
  ASSERT_EQ((*auth)->Reload().value_or(0), 3u);
  EXPECT_EQ(counters_of("alpha"), alpha);
  EXPECT_EQ(counters_of("beta"), beta);
  EXPECT_EQ(counters_of("gamma"), zero);

  // beta goes, then comes back.
  Write(absl::StrCat("alpha ", kAlphaToken, "\n"));
  ASSERT_EQ((*auth)->Reload().value_or(0), 1u);
  Write(absl::StrCat("alpha ", kAlphaToken, "\nbeta ", kBetaToken, "\n"));
  ASSERT_EQ((*auth)->Reload().value_or(0), 2u);
  EXPECT_EQ(counters_of("alpha"), alpha);
  EXPECT_EQ(counters_of("beta"), zero);
}

// Whatever is wrong with the new file, the callers stay as they were: the
// same callers, tokens and counters, and a later good file keeps the counters
// counted meanwhile.
TEST_F(CallerAuthTest, AFailedReloadKeepsTheCallersForEveryKindOfError) {
  absl::StatusOr<std::unique_ptr<CallerAuth>> auth = CallerAuth::Load(
      Write(absl::StrCat("alpha ", kAlphaToken, "\nbeta ", kBetaToken, "\n")));
  ASSERT_TRUE(auth.ok()) << auth.status();
  const std::vector<std::shared_ptr<Caller>> before = (*auth)->callers();
  const struct {
    const char* what;
    std::string content;
  } cases[] = {
      {"an empty file", ""},
      {"only comments", "# nobody\n"},
      {"a name without a token", "alpha\n"},
      {"three fields", absl::StrCat("alpha ", kAlphaToken, " # note\n")},
      {"a control character in a name",
       absl::StrCat("al\x01pha ", kAlphaToken, "\n")},
      {"a control character in a token", "alpha abcdefgh\x01ijklmnop\n"},
      {"a name twice",
       absl::StrCat("alpha ", kAlphaToken, "\nalpha ", kBetaToken, "\n")},
      {"a token twice",
       absl::StrCat("alpha ", kAlphaToken, "\ngamma ", kAlphaToken, "\n")},
      // Good callers before the bad line are not taken either, nor is the
      // warning about one of them reported.
      {"a new caller and a short token, then a bad line",
       absl::StrCat("gamma ", kHashToken, "\nbeta tiny-7\nalpha\n")},
  };
  uint64_t counted = 0;  // alpha's heartbeats meanwhile
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    (*auth)->callers()[0]->calls[0] += 1;
    ++counted;
    Write(c.content);
    std::vector<std::string> warnings = {"left over"};
    absl::StatusOr<size_t> reloaded = (*auth)->Reload(&warnings);
    ASSERT_FALSE(reloaded.ok());
    EXPECT_EQ(reloaded.status().code(), absl::StatusCode::kInvalidArgument)
        << reloaded.status();
    EXPECT_THAT(warnings, IsEmpty());
    EXPECT_EQ((*auth)->callers(), before);
    EXPECT_EQ(
        NameOf((*auth)->Authenticate(absl::StrCat("Bearer ", kAlphaToken))),
        "alpha");
    EXPECT_EQ(
        NameOf((*auth)->Authenticate(absl::StrCat("Bearer ", kBetaToken))),
        "beta");
    EXPECT_EQ((*auth)
                  ->Authenticate(absl::StrCat("Bearer ", kHashToken))
                  .status()
                  .code(),
              absl::StatusCode::kUnauthenticated);
  }
  // Nor a file that is gone.
  std::remove(path_.c_str());
  EXPECT_EQ((*auth)->Reload().status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*auth)->callers(), before);

  Write(absl::StrCat("alpha ", kAlphaToken, "\n"));
  ASSERT_EQ((*auth)->Reload().value_or(0), 1u);
  ASSERT_EQ((*auth)->callers().size(), 1u);
  EXPECT_EQ((*auth)->callers()[0]->calls[0].load(), counted);
}

}  // namespace
}  // namespace presence
