#include "service/request_validation.h"

#include <string>

#include "gtest/gtest.h"

namespace presence {
namespace {

struct Case {
  std::string name;
  int64_t user_id;
  std::string session_id;
  bool ok;
  std::string field;  // must appear in the error message
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class HeartbeatValidationTest : public ::testing::TestWithParam<Case> {};

TEST_P(HeartbeatValidationTest, ChecksUserAndSession) {
  const Case& c = GetParam();
  v1::HeartbeatRequest hb;
  hb.set_user_id(c.user_id);
  hb.set_session_id(c.session_id);
  v1::MarkOfflineRequest off;
  off.set_user_id(c.user_id);
  off.set_session_id(c.session_id);
  for (const absl::Status& s : {ValidateRequest(hb, RequestLimits{}),
                                ValidateRequest(off, RequestLimits{})}) {
    if (c.ok) {
      EXPECT_TRUE(s.ok()) << s;
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_NE(s.message().find(c.field), absl::string_view::npos) << s;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, HeartbeatValidationTest,
    ::testing::Values(
        Case{"Plain", 1, "tab-1", true, ""},
        Case{"DefaultSession", 42, "", true, ""},
        Case{"MaxSession", 42, std::string(128, 'x'), true, ""},
        Case{"PrintableAscii", 42, " ~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}", true,
             ""},
        Case{"ZeroUser", 0, "", false, "user_id"},
        Case{"NegativeUser", -5, "", false, "user_id"},
        Case{"LongSession", 42, std::string(129, 'x'), false, "session_id"},
        Case{"ControlByte", 42, "tab\n1", false, "session_id"},
        Case{"NonAscii", 42, "t\xc3\xa4", false, "session_id"},
        Case{"Nul", 42, std::string("a\0b", 3), false, "session_id"}),
    [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(ListValidationTest, IdsMustBePositiveAndBounded) {
  RequestLimits limits;
  limits.max_ids_per_request = 3;
  v1::GetPresenceRequest get;
  get.add_user_ids(1);
  get.add_user_ids(2);
  get.add_user_ids(3);
  EXPECT_TRUE(ValidateRequest(get, limits).ok());
  get.add_user_ids(4);
  absl::Status too_many = ValidateRequest(get, limits);
  EXPECT_EQ(too_many.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_many.message().find("user_ids"), absl::string_view::npos);

  v1::ListOnlineRequest list;
  list.add_user_ids(5);
  list.add_user_ids(0);
  absl::Status zero = ValidateRequest(list, limits);
  EXPECT_EQ(zero.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(zero.message().find("user_ids[1]"), absl::string_view::npos)
      << zero;
}

TEST(ListValidationTest, PageSizeDefaultsAndCap) {
  RequestLimits limits;
  v1::ListOnlineRequest list;
  EXPECT_EQ(EffectivePageSize(list, limits), 1000);
  list.set_page_size(20);
  EXPECT_EQ(EffectivePageSize(list, limits), 20);
  list.set_page_size(50'000);
  EXPECT_TRUE(ValidateRequest(list, limits).ok());
  EXPECT_EQ(EffectivePageSize(list, limits), 10'000);
  list.set_page_size(-1);
  absl::Status s = ValidateRequest(list, limits);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("page_size"), absl::string_view::npos);
}

TEST(PageTokenTest, RoundTripsAndRejectsForgeries) {
  EXPECT_EQ(*DecodePageToken(""), 0);
  EXPECT_EQ(*DecodePageToken(EncodePageToken(123456789012345)),
            123456789012345);
  for (const char* bad : {"123", "!!!", "YWZ0ZXI6LTE", "YWZ0ZXI6eA"}) {
    absl::StatusOr<int64_t> r = DecodePageToken(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("page_token"), absl::string_view::npos);
  }
  v1::ListOnlineRequest list;
  list.set_page_token("garbage");
  EXPECT_EQ(ValidateRequest(list, RequestLimits{}).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace presence
