#ifndef PRESENCE_CLIENT_CLIENT_H_
#define PRESENCE_CLIENT_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "presence/shard_map.h"
#include "presence/v1/presence.grpc.pb.h"

namespace presence {

struct ClientOptions {
  // presenced's HOST:PORT (any gRPC target URI works), or the shards of a
  // sharded deployment in any form ShardMap::Parse() takes:
  // NAME=HOST:PORT,NAME=HOST:PORT,... or a DNS pattern such as
  // presenced-{0..2}.presenced.NAMESPACE.svc:50051.
  std::string target = "127.0.0.1:50051";
  // Deadline of each call, retries included.
  absl::Duration deadline = absl::Seconds(5);
  // Null: plaintext. See TlsCredentials().
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Sent as `authorization: Bearer <token>` with every call (presenced's
  // --auth_tokens_file). Empty: none.
  std::string token;
};

// TLS to presenced: trusting the CA in `ca_file` (empty: the system's
// roots), presenting the client certificate in `cert_file` with its key in
// `key_file` for mTLS (both empty: none). PEM files.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> TlsCredentials(
    const std::string& ca_file, const std::string& cert_file = "",
    const std::string& key_file = "");

namespace internal {
class AsyncCalls;
}  // namespace internal

// A shard that did not answer a listing, and its error.
struct MissingShard {
  std::string name;
  std::string target;
  absl::Status status;  // names the shard, like every sharded error
};

// Online users of the shards that answered (ListAllOnlinePartial).
struct OnlineUsers {
  std::vector<int64_t> users;  // ascending
  // Empty when every shard answered: `users` is then complete.
  std::vector<MissingShard> missing_shards;
};

// A typed client for presence.v1.PresenceService. Thread-safe; one Client
// (one channel, or one per shard) per process is the intended use.
//
// Every call has a deadline (ClientOptions::deadline), counted from the moment
// the call starts. Calls whose repetition is harmless (all but WatchPresence,
// which Watcher resumes) are retried by gRPC on UNAVAILABLE with backoff, per
// the channel's service config. Errors come back as absl::Status with the
// server's gRPC code and message; DEADLINE_EXCEEDED and UNAVAILABLE may also
// come from the client side.
//
// Sharded (a target naming several shards, see ShardMap), the Client keeps a
// channel to each shard, with the same credentials, token and service
// config, and sends each user's calls to the shard that owns the user
// (ShardMap::OwnerIndex). A call naming users of several shards is split,
// its parts sent to their shards concurrently, and the answers merged into
// what one presenced would have answered; each method says how. Every error
// a shard gives, or a call to it meets, names it: "shard NAME (HOST:PORT):
// message", with the code unchanged. A target in none of the map's forms
// (ShardMap::Parse fails) is taken as one gRPC target, as always: Create()
// reports it instead.
//
// Each call exists twice: blocking (Heartbeat) and asynchronous
// (HeartbeatAsync). Both build the same request, set the same deadline and
// convert the same way, so they answer alike. An asynchronous call returns at
// once and hands its result to `done` exactly once, on one of gRPC's threads.
// `done` should not block: it holds that thread, which other calls'
// completions need too. It may start more calls on the same Client.
//
// Destroying the Client cancels its asynchronous calls in flight and waits
// until each has run its `done` (with CANCELLED, unless its answer came
// first): no callback runs after the destructor returns, and the channel is
// released on the destroying thread. gRPC 1.51 aborts when the last channel
// using its callback API is released on one of its callback threads, so the
// Client must not be destroyed from a `done` of its own (that aborts with a
// message rather than wait for itself forever). A call started while the
// Client is being destroyed (a `done` starting another) gets CANCELLED at
// once.
class Client {
 public:
  // Receives the outcome of an asynchronous call.
  template <typename Response>
  using Callback = absl::AnyInvocable<void(absl::StatusOr<Response>) &&>;

  explicit Client(const ClientOptions& options);
  // The same, but INVALID_ARGUMENT if options.target is malformed as a
  // shard map (e.g. "a=host:1,b=").
  static absl::StatusOr<std::unique_ptr<Client>> Create(
      const ClientOptions& options);
  // For callers that build their own channel (e.g. in-process tests).
  explicit Client(std::shared_ptr<grpc::Channel> channel,
                  absl::Duration deadline = absl::Seconds(5));
  // Cancels the asynchronous calls in flight and waits for their callbacks.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // `idle`: the user did not use this session since its previous heartbeat
  // (HeartbeatRequest.idle: no input, window not focused, tab hidden). Once
  // every live session has been idle for presenced's --away_after, the user
  // is AWAY. Left false, as by callers older than it, the user is active.
  //
  // Sharded: sent to the user's shard (so are MarkOffline's and SetStatus's).
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(
      int64_t user_id, absl::string_view session_id = "", bool idle = false);
  void HeartbeatAsync(int64_t user_id, absl::string_view session_id,
                      Callback<v1::HeartbeatResponse> done);
  void HeartbeatAsync(int64_t user_id, absl::string_view session_id, bool idle,
                      Callback<v1::HeartbeatResponse> done);

  // Many heartbeats at once; see BatchHeartbeatResponse for per-item results.
  //
  // Sharded: the items are split by shard (keeping their order), one call
  // per shard, all at once, and the results put back in the request's
  // order; server_time is the latest shard's. The items of a shard whose
  // call failed get a per-item error with that call's code and a message
  // naming the shard; per-item errors of a shard name it too (with the
  // item's index in this request). Only if every shard's call failed does
  // the call fail, with the first failure (in the order of the shards'
  // first items). No item: one shard answers.
  absl::StatusOr<v1::BatchHeartbeatResponse> BatchHeartbeat(
      const v1::BatchHeartbeatRequest& request);
  void BatchHeartbeatAsync(v1::BatchHeartbeatRequest request,
                           Callback<v1::BatchHeartbeatResponse> done);

  // What the user chose: availability (AUTO, DND, INVISIBLE, optionally
  // until a moment or for a while) and/or custom status; see
  // SetStatusRequest. The answer is the user's own view after the change.
  // Retried on UNAVAILABLE like Heartbeat: setting the same status twice
  // leaves it as once (a relative end, availability_for or
  // custom_status_for, then counts from the later attempt).
  absl::StatusOr<v1::SetStatusResponse> SetStatus(
      const v1::SetStatusRequest& request);
  void SetStatusAsync(v1::SetStatusRequest request,
                      Callback<v1::SetStatusResponse> done);

  // An empty session_id ends every session of the user.
  absl::StatusOr<v1::MarkOfflineResponse> MarkOffline(
      int64_t user_id, absl::string_view session_id = "");
  void MarkOfflineAsync(int64_t user_id, absl::string_view session_id,
                        Callback<v1::MarkOfflineResponse> done);

  // One page; see ListAllOnline for every page.
  //
  // Sharded: each shard owning some of user_ids (or, with none, every
  // shard) is asked for page_size users after the page token's cursor, and
  // the page is the smallest ids of their union; total_online is the sum of
  // the shards' and server_time the latest. next_page_token is this
  // client's, not a shard's (web-safe base64 of "sharded-after:<ID>;done:
  // <NAME>,...": the cursor and the shards already exhausted). Any shard
  // failing fails the page.
  absl::StatusOr<v1::ListOnlineResponse> ListOnline(
      const v1::ListOnlineRequest& request);
  void ListOnlineAsync(v1::ListOnlineRequest request,
                       Callback<v1::ListOnlineResponse> done);

  // Every online user (of `only`, if not empty), ascending, following
  // next_page_token: one ListOnline call per page of up to 10,000 users, each
  // with its own deadline. The pages are taken at slightly different moments.
  // The first failing page's status is the result.
  //
  // Sharded: each shard's pages are followed on their own, all shards at
  // once, and merged; any shard failing fails the listing with its error
  // (UNAVAILABLE naming the shard when it is down).
  absl::StatusOr<std::vector<int64_t>> ListAllOnline(
      absl::Span<const int64_t> only = {});
  void ListAllOnlineAsync(absl::Span<const int64_t> only,
                          Callback<std::vector<int64_t>> done);

  // ListAllOnline that lists what it can: the users of the shards that
  // answered, and the shards that are down (missing_shards, each with its
  // error: UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED or RESOURCE_EXHAUSTED).
  // Any other error (a refused token, a map that is not the shards' own)
  // fails it, as does every shard being down. Unsharded it is
  // ListAllOnline with no shard missing.
  absl::StatusOr<OnlineUsers> ListAllOnlinePartial(
      absl::Span<const int64_t> only = {});
  void ListAllOnlinePartialAsync(absl::Span<const int64_t> only,
                                 Callback<OnlineUsers> done);

  // The same with a deadline of its own, e.g. a liveness check that must
  // fail sooner than the client's deadline.
  void ListOnlineAsync(v1::ListOnlineRequest request, absl::Duration deadline,
                       Callback<v1::ListOnlineResponse> done);

  // What others see of each user, with status ONLINE or OFFLINE only (an
  // AWAY or DND user is ONLINE): GetPresence of `user_ids` alone. The
  // request form says more: rich_status for AWAY and DND, viewer_user_id for
  // that user's own view of themself (the truth while INVISIBLE).
  //
  // Sharded: split by shard, all at once, merged back into request order
  // (duplicates repeated), server_time the latest shard's; every part keeps
  // the request's other fields (viewer_user_id, rich_status). Any shard
  // failing fails the call with its error.
  absl::StatusOr<v1::GetPresenceResponse> GetPresence(
      absl::Span<const int64_t> user_ids);
  absl::StatusOr<v1::GetPresenceResponse> GetPresence(
      const v1::GetPresenceRequest& request);
  void GetPresenceAsync(absl::Span<const int64_t> user_ids,
                        Callback<v1::GetPresenceResponse> done);
  void GetPresenceAsync(v1::GetPresenceRequest request,
                        Callback<v1::GetPresenceResponse> done);
  // The ids as a braced list, GetPresence({1, 2}) as always: without these,
  // {} and {0} would name a GetPresenceRequest as well as a Span.
  absl::StatusOr<v1::GetPresenceResponse> GetPresence(
      std::initializer_list<int64_t> user_ids) {
    return GetPresence(absl::Span<const int64_t>(user_ids));
  }
  void GetPresenceAsync(std::initializer_list<int64_t> user_ids,
                        Callback<v1::GetPresenceResponse> done) {
    GetPresenceAsync(absl::Span<const int64_t>(user_ids), std::move(done));
  }

  // A WatchPresence stream, for callers that follow it themselves (Watcher
  // is the one that resumes and reconnects): `on_message` gets each message
  // in order, then `on_done` the stream's end, once, both on gRPC's threads.
  // The stream has no deadline; `context->TryCancel()` ends it (on_done then
  // gets CANCELLED), as does destroying the Client, which waits for on_done
  // like for any asynchronous call.
  //
  // The request goes as given: rich_status asks for a rich stream (AWAY,
  // DND and custom status changes, Snapshot.users).
  //
  // Sharded: one stream per shard (owning some of user_ids, if given), all
  // cancelled through `context` (its deadline, if set, applies to each; the
  // rest of its settings, e.g. metadata, to the first shard's only).
  // With send_snapshot, the shards' snapshots, and the changes that arrive
  // before all are in, are folded into ONE Snapshot message, the sorted
  // union (sequence 0, no epoch; server_time the latest; with rich_status,
  // `users` in the same order: each user's entry as its shard's snapshot
  // had it, with the status, custom_status and availability_until of the
  // changes since, and for a user who came online since, those alone), and
  // every change after it is forwarded as its shard sent it (with that
  // shard's epoch and sequence: a user lives on one shard, so each user's
  // changes stay in order). A shard that sends a snapshot again later (its
  // watcher fell behind) gets a merged Snapshot again: the union with that
  // shard's part replaced. Without send_snapshot, every message is forwarded as
  // sent. When any shard's stream ends, the others are cancelled and `on_done`
  // gets, once all have ended, the first one's status naming the shard.
  // resume_after must be 0 (INVALID_ARGUMENT: resuming is per shard, which
  // Watcher does). `on_message` calls never overlap.
  void WatchPresenceAsync(
      std::shared_ptr<grpc::ClientContext> context,
      v1::WatchPresenceRequest request,
      absl::AnyInvocable<void(v1::WatchPresenceResponse)> on_message,
      absl::AnyInvocable<void(absl::Status) &&> on_done);

  // The service config applied to channels this class creates (JSON).
  static const char* ServiceConfigJson();

  // The shards this client routes to: ShardMap::Single(target) unsharded.
  const ShardMap& shard_map() const { return shard_map_; }

  // The generated stub, for what this class does not wrap (tests that read
  // a WatchPresence stream by hand). Calls made on it bypass the client's
  // deadline, status conversion and routing, and its destructor does not
  // wait for them. Sharded: the first shard's; stub(i) is shard i's (in
  // shard_map().shards()'s order).
  v1::PresenceService::Stub& stub() { return *stubs_[0]; }
  v1::PresenceService::Stub& stub(size_t shard) { return *stubs_[shard]; }
  // The channel, e.g. to share it with a Watcher. Sharded: the first
  // shard's; channel(i) is shard i's. A Watcher built from the Client
  // itself follows every shard.
  const std::shared_ptr<grpc::Channel>& channel() const { return channels_[0]; }
  const std::shared_ptr<grpc::Channel>& channel(size_t shard) const {
    return channels_[shard];
  }

  // Makes every channel try to connect now, instead of when gRPC's own
  // reconnect backoff (growing past a minute) says: for a caller with a
  // retry schedule of its own (grpc::experimental::
  // ChannelResetConnectionBackoff on each shard's channel).
  void ResetConnectionBackoff();

 private:
  Client(ShardMap shard_map, const ClientOptions& options);

  const absl::Duration deadline_;
  const ShardMap shard_map_;
  // One of each per shard, in shard_map_'s order.
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::PresenceService::Stub>> stubs_;
  // The asynchronous calls in flight. Shared with them: the last one may end
  // after the Client has stopped waiting for it.
  std::shared_ptr<internal::AsyncCalls> calls_;
};

}  // namespace presence

#endif  // PRESENCE_CLIENT_CLIENT_H_
