// The fan-out inside presence-rest: one WatchPresence stream to presenced
// feeds every Server-Sent Events client of the proxy.
#ifndef PRESENCE_GATEWAY_FANOUT_H_
#define PRESENCE_GATEWAY_FANOUT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "presence/v1/presence.pb.h"

namespace presence::rest {

// One SSE frame, formatted once and shared by every client it goes to.
using SseFrame = std::shared_ptr<const std::string>;

// A browser's event stream, as the fan-out sees it.
class SseSink {
 public:
  virtual ~SseSink() = default;
  // Queues `frame` for the client. Must not call back into the fan-out.
  virtual void Send(const SseFrame& frame) = 0;
};

// Mirrors who is online from presenced's WatchPresence messages and forwards
// them to subscribed sinks, each filtered to the users it asked for.
//
// Every client first gets a `snapshot` event of the users it watches who are
// online (as soon as the mirror has one), then a `change` event per
// transition. When presenced sends a fresh snapshot (it restarted, or the
// proxy's stream could not be resumed) every client gets a fresh snapshot
// too, so a browser never silently diverges.
//
// When the proxy's stream to presenced is lost, every client gets a `stale`
// event, {"reason": "..."}, and so does a client that subscribes while it
// is lost (after its snapshot, if the mirror has one): what it shows may be
// out of date. The next snapshot means the mirror is live again.
//
// Not thread-safe: every call on one thread (the proxy's I/O thread).
class PresenceFanout {
 public:
  void ApplySnapshot(const v1::Snapshot& snapshot);
  void ApplyChange(const v1::PresenceChange& change);
  // The mirror is no longer fed, for `reason` (for people). Until the next
  // ApplySnapshot().
  void MarkStale(const std::string& reason);

  // `users` empty: everyone. The sink must stay valid until Unsubscribe.
  void Subscribe(SseSink* sink, std::vector<int64_t> users);
  void Unsubscribe(SseSink* sink);
  // A snapshot event for `sink`'s filter, e.g. for a client whose queue
  // overflowed, followed by the stale event while the mirror is stale. Null
  // when there is neither.
  SseFrame SnapshotFor(SseSink* sink) const;
  // Sends `frame` to every sink, e.g. a keep-alive comment.
  void Broadcast(const SseFrame& frame);

  bool ready() const { return ready_; }
  bool stale() const { return stale_frame_ != nullptr; }
  size_t subscribers() const { return filters_.size(); }
  size_t online() const { return online_.size(); }

 private:
  SseFrame SnapshotFrame(const std::vector<int64_t>& users) const;

  bool ready_ = false;
  // The `stale` event while the mirror is stale, else null.
  SseFrame stale_frame_;
  absl::btree_set<int64_t> online_;
  // RFC 3339: when the mirror was last known right (the latest snapshot's
  // server_time, or the latest change's `at`).
  std::string server_time_;
  // The snapshot frame of everyone, for the mirror as it is; null once it
  // changes. Built on demand.
  mutable SseFrame everyone_snapshot_;
  // Each sink's filter (sorted, deduplicated; empty: everyone).
  absl::flat_hash_map<SseSink*, std::vector<int64_t>> filters_;
  absl::flat_hash_set<SseSink*> everyone_;
  absl::flat_hash_map<int64_t, std::vector<SseSink*>> by_user_;
};

// The SSE frame of one change: `event: change` with JSON data
// {"user_id":42,"status":"online","reason":"heartbeat","at":"..."}. Ids are
// exact JSON integers, whatever their size.
std::string ChangeFrame(const v1::PresenceChange& change);

// `event: stale` with JSON data {"reason":"..."}.
std::string StaleFrame(const std::string& reason);

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_FANOUT_H_
