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

// Whether the call changes what is stored: such a call is refused while the
// store cannot keep a change, and answered only once its change is durable.
constexpr bool ChangesState(Rpc rpc) {
  switch (rpc) {
    case Rpc::kHeartbeat:
    case Rpc::kBatchHeartbeat:
    case Rpc::kMarkOffline:
    case Rpc::kImportLastSeen:
    case Rpc::kSetStatus:
      return true;
    case Rpc::kListOnline:
    case Rpc::kGetPresence:
    case Rpc::kWatchPresence:
    case Rpc::kListForeignUsers:
      break;
  }
  return false;
}

}  // namespace presence

#endif  // PRESENCE_SERVICE_RPC_H_
