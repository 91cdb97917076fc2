#ifndef PRESENCE_SERVICE_WATCH_REACTOR_H_
#define PRESENCE_SERVICE_WATCH_REACTOR_H_

// WatchPresence's streams on gRPC's callback API: each pulls its messages
// from the hub (event_hub.h) and encodes them as the stream asked.

#include <grpcpp/grpcpp.h>

#include <cstdint>

#include "absl/status/status.h"
#include "service/call_counter.h"
#include "service/event_hub.h"
#include "service/metrics.h"
#include "service/presence_registry.h"

namespace presence {

using WatchWriteReactor = grpc::ServerWriteReactor<grpc::ByteBuffer>;

// Starts one stream for `request`, counted in `calls` until gRPC is done with
// it, and recorded by `timer` when it ends. `registry`: read for a rich
// stream's snapshots. `max_batch`: the request's (0 or 1: one change per
// message). A watch the hub refuses (no capacity, a bad resume point) ends
// at once with the hub's status.
WatchWriteReactor* StartWatch(EventHub* hub, const PresenceRegistry* registry,
                              CallCounter* calls, const WatchRequest& request,
                              uint32_t max_batch, const RpcTimer& timer);

// A stream refused before its first message (a bad request, shutdown).
WatchWriteReactor* RejectWatch(CallCounter* calls, const absl::Status& status,
                               const RpcTimer& timer);

}  // namespace presence

#endif  // PRESENCE_SERVICE_WATCH_REACTOR_H_
