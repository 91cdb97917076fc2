#ifndef PRESENCE_SERVICE_RPC_H_
#define PRESENCE_SERVICE_RPC_H_

namespace presence {

// The RPCs of presence.v1.PresenceService: the `method` label of the
// metrics, and the index of each caller's call counters (caller_auth.h).
// Append only: the names in metrics.cc follow this order.
enum class Rpc {
  kHeartbeat,
  kBatchHeartbeat,
  kMarkOffline,
  kListOnline,
  kGetPresence,
  kWatchPresence,
  kListForeignUsers,
  kImportLastSeen,
  kSetStatus,
};
inline constexpr int kNumRpcs = static_cast<int>(Rpc::kSetStatus) + 1;

}  // namespace presence

#endif  // PRESENCE_SERVICE_RPC_H_
