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
#include "presence/client.h"
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
  // Sharded: deliver a snapshot as soon as one shard has sent its own (and
  // a merged one as each further shard's comes), instead of waiting for
  // every shard's before the first on_snapshot. A shard's changes reach
  // on_change once its part has been in a delivered snapshot.
  bool partial_snapshots = false;
  // Ask for a rich stream (WatchPresenceRequest.rich_status): the status
  // transitions of online users too (ONLINE, AWAY, DND; reasons ACTIVITY,
  // STATUS_SET, STATUS_EXPIRED), custom status changes, and snapshots that
  // carry each online user's presence in Snapshot.users. Without it:
  // online/offline transitions only, as before rich presence. Sharded, a
  // merged snapshot's `users` is, for each user, their entry in their
  // shard's latest snapshot with the status, custom_status and
  // availability_until of the changes since (see Client::WatchPresenceAsync).
  bool rich_status = false;
};

// The callbacks of a Watcher, all called on its threads (one per shard),
// one at a time.
struct WatcherCallbacks {
  // Who of the watched users is online (ONLINE, AWAY or DND; with
  // rich_status, `users` says which, in online_users' order): replaces
  // everything known before.
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
  // change's: follow changes with on_change, not here. Sharded: each
  // shard's messages, with that shard's epoch and sequence. Optional.
  std::function<void(const v1::WatchPresenceResponse& message)> on_message;
  // The stream ended with `status`; the watcher reconnects after `retry_in`.
  // For an error that a retry cannot fix (INVALID_ARGUMENT, UNAUTHENTICATED,
  // PERMISSION_DENIED, UNIMPLEMENTED) `retry_in` is InfiniteDuration() and
  // the watcher stops. Sharded: one shard's stream ended, and `status`
  // names the shard ("shard NAME (HOST:PORT): ..."); the other shards'
  // streams go on (but all stop on an error a retry cannot fix). Optional.
  std::function<void(const absl::Status& status, absl::Duration retry_in)>
      on_disconnect;
};

// Follows WatchPresence for as long as it lives. On a broken stream it
// reconnects with backoff and resumes after the last (epoch, sequence) it
// delivered (a whole message is delivered before the next is read, so that
// of its last change), so the consumer sees every change exactly once, or a
// fresh snapshot where presenced could not replay them: it never silently
// diverges from presenced.
//
// Sharded (built from a sharded Client), it follows one stream per shard
// (only the shards owning options.user_ids, if given, each for its own
// users), each on its own thread, reconnecting and resuming after its own
// (epoch, sequence) as above. It keeps each shard's online users, so that
// on_snapshot still replaces everything known before: the first comes once
// every shard has sent its snapshot (their union, with the changes that
// came meanwhile), and when a shard sends a snapshot again (it restarted,
// or this watcher fell behind), on_snapshot gets the union again with that
// shard's part replaced. Changes of a shard come in that shard's order; a
// user lives on one shard, so each user's changes are in order. Before each
// reconnect to a shard, its channel's connection backoff is reset, so that
// a shard coming back is found on the watcher's schedule, not gRPC's.
class Watcher {
 public:
  // Starts watching at once, on a thread of its own (one per shard when
  // sharded).
  Watcher(std::shared_ptr<grpc::Channel> channel, WatcherOptions options,
          WatcherCallbacks callbacks);
  // Follows what `client` routes to: its one presenced, or every shard of
  // its shard map, through the client's channels (so with its credentials
  // and token). The Client may be destroyed before the Watcher.
  Watcher(const Client& client, WatcherOptions options,
          WatcherCallbacks callbacks);
  // Stop()s.
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Ends the streams and their threads; no callback runs after it returns.
  // Must not be called from a callback.
  void Stop();

 private:
  // One stream followed (a shard's), with its thread and resume point.
  struct Stream;

  // Adds a stream to follow; all before Start().
  void AddStream(const Shard& shard, std::shared_ptr<grpc::Channel> channel,
                 std::vector<int64_t> user_ids);
  // Starts each stream's thread.
  void Start();
  void Run(Stream& stream);
  // Reads one stream until it ends; returns its status.
  grpc::Status Follow(Stream& stream, grpc::ClientContext* context);
  // Advances the stream's (epoch, sequence) past `message` and hands it to
  // on_message: what Deliver and DeliverMerged do first.
  void Advance(Stream& stream, const v1::WatchPresenceResponse& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(deliver_mu_);
  // Hands one message to the callbacks and advances the stream's (epoch,
  // sequence).
  void Deliver(Stream& stream, const v1::WatchPresenceResponse& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(deliver_mu_);
  // The same when several streams make one view.
  void DeliverMerged(Stream& stream, const v1::WatchPresenceResponse& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(deliver_mu_);
  void DeliverChange(const v1::PresenceChange& change, uint64_t sequence)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(deliver_mu_);
  // A change of a stream that is merged with others.
  void ApplyChange(Stream& stream, const v1::PresenceChange& change,
                   uint64_t sequence)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(deliver_mu_);
  // Ends every stream (an error no retry fixes, or Stop()).
  void EndAll();

  const WatcherOptions options_;
  const WatcherCallbacks callbacks_;
  // Errors name the shard.
  const bool sharded_;
  // Filled by the constructor, before any thread starts.
  std::vector<std::unique_ptr<Stream>> streams_;

  // Held while a callback runs: one at a time. Guards the streams' online
  // users and snapshot state too.
  absl::Mutex deliver_mu_;
  bool snapshot_delivered_ ABSL_GUARDED_BY(deliver_mu_) = false;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // By stream: the context of its open stream, or null.
  std::vector<grpc::ClientContext*> contexts_ ABSL_GUARDED_BY(mu_);
  absl::Mutex stop_mu_;
  // The reconnect backoff sleeps on a std::condition_variable, which waits on
  // the monotonic clock: Abseil's timed waits use the wall clock, and a
  // clock stepped back would stretch the backoff by the step. Stop() sets
  // backoff_stop_ (under backoff_mu_) and wakes the sleep.
  std::mutex backoff_mu_;
  std::condition_variable backoff_cv_;
  bool backoff_stop_ = false;
};

}  // namespace presence

#endif  // PRESENCE_CLIENT_WATCHER_H_
