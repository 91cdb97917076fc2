#ifndef PRESENCE_CLIENT_WATCHER_H_
#define PRESENCE_CLIENT_WATCHER_H_

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "presence/v1/presence.grpc.pb.h"

namespace presence {

struct WatcherOptions {
  // Only these users; empty watches everyone.
  std::vector<int64_t> user_ids;
  // Up to this many changes per message (WatchPresenceRequest.max_batch;
  // presenced caps it at 1,000): a stream that falls behind catches up in
  // few messages. 0 or 1: one change per message. on_change sees each change
  // on its own either way.
  uint32_t max_batch = 1000;
  // Reconnect backoff: doubles from initial to max after each failed attempt,
  // back to initial once a stream delivers a message.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
};

// The callbacks of a Watcher, all called on its thread, one at a time.
struct WatcherCallbacks {
  // Who of the watched users is online: replaces everything known before.
  // Comes first, and again whenever changes could not be replayed (presenced
  // restarted, or this watcher fell too far behind).
  std::function<void(const v1::Snapshot& snapshot)> on_snapshot;
  // One transition, after the latest snapshot: once per change, in order,
  // whether presenced sent it alone or in a ChangeBatch. `change.sequence()`
  // is the change's own (a presenced older than PresenceChange.sequence
  // leaves it 0; the Watcher then sets it to the message's).
  std::function<void(const v1::PresenceChange& change)> on_change;
  // Every message as received, raw (with its epoch and sequence), before the
  // on_snapshot or on_change calls it makes. A message may be a ChangeBatch
  // (`changes`) of several changes, and its sequence is then its last
  // change's: follow changes with on_change, not here. Optional.
  std::function<void(const v1::WatchPresenceResponse& message)> on_message;
  // The stream ended with `status`; the watcher reconnects after `retry_in`.
  // For an error that a retry cannot fix (INVALID_ARGUMENT, UNAUTHENTICATED,
  // PERMISSION_DENIED, UNIMPLEMENTED) `retry_in` is InfiniteDuration() and
  // the watcher stops. Optional.
  std::function<void(const absl::Status& status, absl::Duration retry_in)>
      on_disconnect;
};

// Follows WatchPresence for as long as it lives. On a broken stream it
// reconnects with backoff and resumes after the last (epoch, sequence) it
// delivered (a whole message is delivered before the next is read, so that
// of its last change), so the consumer sees every change exactly once, or a
// fresh snapshot where presenced could not replay them: it never silently
// diverges from presenced.
class Watcher {
 public:
  // Starts watching at once, on a thread of its own.
  Watcher(std::shared_ptr<grpc::Channel> channel, WatcherOptions options,
          WatcherCallbacks callbacks);
  // Stop()s.
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Ends the stream and the thread; no callback runs after it returns.
  // Must not be called from a callback.
  void Stop();

 private:
  void Run();
  // Reads one stream until it ends; returns its status.
  grpc::Status Follow(grpc::ClientContext* context);
  // Hands one message to the callbacks and advances (epoch_, sequence_).
  void Deliver(const v1::WatchPresenceResponse& message);

  const WatcherOptions options_;
  const WatcherCallbacks callbacks_;
  const std::unique_ptr<v1::PresenceService::Stub> stub_;

  // Where to resume; touched only by the watcher's thread.
  std::string epoch_;
  uint64_t sequence_ = 0;
  bool delivered_since_connect_ = false;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  absl::Mutex stop_mu_;
  // The reconnect backoff sleeps on a std::condition_variable, which waits on
  // the monotonic clock: Abseil's timed waits use the wall clock, and a
  // clock stepped back would stretch the backoff by the step. Stop() sets
  // backoff_stop_ (under backoff_mu_) and wakes the sleep.
  std::mutex backoff_mu_;
  std::condition_variable backoff_cv_;
  bool backoff_stop_ = false;
  std::thread thread_;
};

}  // namespace presence

#endif  // PRESENCE_CLIENT_WATCHER_H_
