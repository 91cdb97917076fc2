#include "service/host_port.h"

#include <string>

#include "gtest/gtest.h"

namespace presence {
namespace {

TEST(HostPortTest, ParsesNamesAddressesAndBracketedIpv6) {
  struct Case {
    std::string text;
    std::string host;
    int port;
    std::string shown;
  };
  for (const Case& c : {
           Case{"127.0.0.1:50051", "127.0.0.1", 50051, "127.0.0.1"},
           Case{"localhost:0", "localhost", 0, "localhost"},
           Case{"[::1]:9464", "::1", 9464, "[::1]"},
           Case{"[::]:65535", "::", 65535, "[::]"},
           Case{":8080", "", 8080, ""},
       }) {
    absl::StatusOr<HostPort> parsed = ParseHostPort(c.text);
    ASSERT_TRUE(parsed.ok()) << c.text << ": " << parsed.status();
    EXPECT_EQ(parsed->host, c.host) << c.text;
    EXPECT_EQ(parsed->port, c.port) << c.text;
    EXPECT_EQ(ShownHost(*parsed), c.shown) << c.text;
  }
}

TEST(HostPortTest, RefusesWhatIsNotHostPortSayingWhy) {
  struct Case {
    std::string text;
    std::string message;
  };
  for (const Case& c : {
           Case{"localhost", "the address must be HOST:PORT"},
           Case{"9464", "the address must be HOST:PORT"},
           Case{"[::1]9464", "the address must be HOST:PORT"},
           Case{"[::1:0", "the address must be HOST:PORT"},
           Case{"127.0.0.1:", "the port must be a number from 0 to 65535"},
           Case{"127.0.0.1:65536", "the port must be a number from 0 to 65535"},
           Case{"127.0.0.1:+80", "the port must be a number from 0 to 65535"},
           Case{"127.0.0.1: 80", "the port must be a number from 0 to 65535"},
           Case{"127.0.0.1:9464s", "the port must be a number from 0 to 65535"},
       }) {
    absl::StatusOr<HostPort> parsed = ParseHostPort(c.text);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument)
        << c.text;
    EXPECT_EQ(parsed.status().message(), c.message) << c.text;
  }
}

}  // namespace
}  // namespace presence
