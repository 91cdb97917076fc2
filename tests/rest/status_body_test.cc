#include "gateway/status_body.h"

#include <string>

#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

namespace presence::rest {
namespace {

using google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;

constexpr int64_t kUser = 42;

v1::SetStatusRequest Request() {
  v1::SetStatusRequest request;
  request.set_user_id(kUser);
  return request;
}

google::protobuf::Timestamp Time(const char* rfc3339) {
  google::protobuf::Timestamp time;
  EXPECT_TRUE(TimeUtil::FromString(rfc3339, &time)) << rfc3339;
  return time;
}

TEST(StatusBodyTest, ReadsWhatTheUserChose) {
  struct Case {
    std::string body;
    v1::SetStatusRequest want;
  };
  std::vector<Case> cases;
  {
    v1::SetStatusRequest want = Request();
    want.set_availability(v1::AVAILABILITY_DND);
    *want.mutable_availability_for() = TimeUtil::SecondsToDuration(5400);
    cases.push_back({R"({"availability": "dnd", "for": "90m"})", want});
    cases.push_back({R"({"availability": "dnd", "for": 5400})", want});
    cases.push_back({R"({"availability": "dnd", "for": "1h30m"})", want});
  }
  {
    v1::SetStatusRequest want = Request();
    want.set_availability(v1::AVAILABILITY_INVISIBLE);
    *want.mutable_availability_until() = Time("2030-01-01T17:00:00Z");
    cases.push_back(
        {R"({"availability": "invisible", "until": "2030-01-01T18:00:00+01:00"})",
         want});
  }
  {
    v1::SetStatusRequest want = Request();
    want.mutable_custom_status()->set_text("In a meeting");
    want.mutable_custom_status()->set_emoji(":calendar:");
    *want.mutable_custom_status_for() = TimeUtil::SecondsToDuration(3600);
    // A null member counts as absent.
    cases.push_back({R"({"text": "In a meeting", "emoji": ":calendar:",
                         "expires_in": "1h", "availability": null})",
                     want});
  }
  {
    v1::SetStatusRequest want = Request();
    want.mutable_custom_status()->set_emoji("\xe2\x98\x95");
    *want.mutable_custom_status()->mutable_expires_at() =
        Time("2030-01-01T00:00:00Z");
    cases.push_back(
        {R"({"emoji": "\u2615", "expires_at": "2030-01-01T00:00:00Z"})", want});
  }
  {
    v1::SetStatusRequest want = Request();
    want.set_availability(v1::AVAILABILITY_AUTO);
    want.set_clear_custom_status(true);
    cases.push_back({R"({"availability": "auto", "clear": true})", want});
  }
  for (const Case& c : cases) {
    absl::StatusOr<v1::SetStatusRequest> request =
        ParseStatusBody(c.body, kUser);
    ASSERT_TRUE(request.ok()) << c.body << ": " << request.status();
    EXPECT_TRUE(
        google::protobuf::util::MessageDifferencer::Equals(*request, c.want))
        << c.body << "\n got: " << request->ShortDebugString()
        << "\nwant: " << c.want.ShortDebugString();
  }
}

TEST(StatusBodyTest, SaysWhatToSendInstead) {
  struct Case {
    std::string body;
    std::string error;
  } cases[] = {
      {"", "body must be a JSON object"},
      {"[1]", "body must be a JSON object"},
      {"{}", "nothing to set"},
      {R"({"clear": false})", "nothing to set"},
      {R"({"availabilty": "dnd"})", "unknown member 'availabilty'"},
      {R"({"availability": "busy"})",
       R"('busy' is not one of "auto", "dnd", "invisible")"},
      {R"({"availability": 2})", "availability: must be a string"},
      {R"({"availability": "dnd", "for": "soon"})",
       "for: 'soon' is not a duration"},
      {R"({"availability": "dnd", "for": -5})", "for: must be positive"},
      {R"({"availability": "dnd", "for": "0s"})", "for: must be positive"},
      {R"({"availability": "dnd", "for": true})", "for: must be a number"},
      {R"({"availability": "dnd", "until": "tomorrow"})",
       "until: 'tomorrow' is not an RFC 3339 time"},
      {R"({"availability": "dnd", "until": "2030-01-01T00:00:00Z",
           "for": "1h"})",
       "not both"},
      {R"({"for": "1h"})", "send them with availability"},
      {R"({"availability": "auto", "until": "2030-01-01T00:00:00Z"})",
       "send them with availability"},
      {R"({"expires_in": "1h"})", "send them with text and/or emoji"},
      {R"({"text": "a", "expires_in": "1h", "expires_at": "2030-01-01T00:00:00Z"})",
       "not both"},
      {R"({"text": "a", "expires_in": "an hour"})",
       "expires_in: 'an hour' is not a duration"},
      {R"({"text": "a", "clear": true})", "not both"},
      {R"({"clear": "yes"})", "clear: must be true or false"},
      {R"({"text": 5})", "text: must be a string"},
      {R"({"text": "", "emoji": ""})", R"(send {"clear": true})"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<v1::SetStatusRequest> request =
        ParseStatusBody(c.body, kUser);
    ASSERT_FALSE(request.ok()) << c.body;
    EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(request.status().message(), HasSubstr(c.error)) << c.body;
  }
}

}  // namespace
}  // namespace presence::rest
