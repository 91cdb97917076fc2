// The fan-out inside presence-rest: one WatchPresence stream to presenced
// feeds every Server-Sent Events client of the proxy.
#ifndef PRESENCE_GATEWAY_FANOUT_H_
#define PRESENCE_GATEWAY_FANOUT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
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
// online, with their status (as soon as the mirror has one), then, per
// transition, a `change` event when the user came online or went offline
// (online meaning online, away or dnd, as in the classic endpoints) and a
// `status` event for every change of what others see: status, custom
// status or the end of a dnd (the two of one transition in one frame, so
// that a browser's queue counts transitions). When presenced sends a fresh
// snapshot (it
// restarted, or the proxy's stream could not be resumed) every client gets
// a fresh snapshot too, so a browser never silently diverges.
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
  void Send(int64_t user, const SseFrame& frame);

  bool ready_ = false;
  // The `stale` event while the mirror is stale, else null.
  SseFrame stale_frame_;
  // Who is online, each with the JSON of their entry in a snapshot's
  // `users` (StatusEntry()), made once per change.
  absl::btree_map<int64_t, std::string> online_;
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

// The SSE frame of one change of online-ness: `event: change` with JSON
// data {"user_id":42,"status":"online","reason":"heartbeat","at":"..."},
// status "online" (for online, away and dnd) or "offline", reason
// "heartbeat", "mark_offline" or "expired" as presenced's classic streams
// say them (an invisible user appearing is a heartbeat, disappearing a
// mark_offline). Ids are exact JSON integers, whatever their size.
std::string ChangeFrame(const v1::PresenceChange& change);

// The SSE frame of one change of what others see: `event: status` with
// JSON data {"user_id":42,"status":"dnd","reason":"status_set","at":"...",
// "custom_status":{"text":"...","emoji":"...","expires_at":...}|null,
// "availability_until":"..."|null}; status "online", "away", "dnd" or
// "offline"; reason one of change's or "activity", "status_set",
// "status_expired".
std::string StatusFrame(const v1::PresenceChange& change);

// `event: stale` with JSON data {"reason":"..."}.
std::string StaleFrame(const std::string& reason);

}  // namespace presence::rest

#endif  // PRESENCE_GATEWAY_FANOUT_H_
