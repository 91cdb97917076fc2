#include "tests/watch_stream.h"

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace presence::testing {

v1::WatchPresenceResponse WatchStream::Next() {
  v1::WatchPresenceResponse message;
  EXPECT_TRUE(reader->Read(&message)) << "stream ended";
  return message;
}

std::unique_ptr<WatchStream> StartWatch(
    v1::PresenceService::Stub& stub, const v1::WatchPresenceRequest& request) {
  auto stream = std::make_unique<WatchStream>();
  stream->context.set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  stream->reader = stub.WatchPresence(&stream->context, request);
  return stream;
}

}  // namespace presence::testing
