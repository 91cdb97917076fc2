#include "tools/presencectl_format.h"

#include "gtest/gtest.h"

namespace presence {
namespace {

TEST(FormatAgoTest, ReadableAmounts) {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  struct Case {
    absl::Duration ago;
    const char* text;
  } cases[] = {
      {absl::ZeroDuration(), "just now"},
      {absl::Milliseconds(999), "just now"},
      {absl::Seconds(42), "42s ago"},
      {absl::Seconds(60), "1m ago"},
      {absl::Minutes(3) + absl::Seconds(59), "3m ago"},
      {absl::Hours(5), "5h ago"},
      {absl::Hours(47), "47h ago"},
      {absl::Hours(48), "2d ago"},
      {-absl::Minutes(3), "in 3m"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(FormatAgo(now - c.ago, now), c.text) << c.ago;
  }
}

TEST(FormatIsoTimeTest, UtcSeconds) {
  EXPECT_EQ(FormatIsoTime(absl::FromUnixSeconds(1'800'000'000)),
            "2027-01-15T08:00:00Z");
}

}  // namespace
}  // namespace presence
