// One WatchPresence stream, read by a test message by message.
#ifndef PRESENCE_TESTS_WATCH_STREAM_H_
#define PRESENCE_TESTS_WATCH_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <memory>

#include "presence/v1/presence.grpc.pb.h"

namespace presence::testing {

struct WatchStream {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::WatchPresenceResponse>> reader;

  // The next message; fails the test if the stream ends first.
  v1::WatchPresenceResponse Next();
};

// Calls WatchPresence(request) on `stub`, with a 30 s deadline as a bound on
// every Read(): a missing event fails instead of hanging.
std::unique_ptr<WatchStream> StartWatch(
    v1::PresenceService::Stub& stub, const v1::WatchPresenceRequest& request);

}  // namespace presence::testing

#endif  // PRESENCE_TESTS_WATCH_STREAM_H_
