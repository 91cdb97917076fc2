// The machinery of presence::Client's calls, shared by client.cc (one
// presenced) and sharded_calls.cc (one call split over the shards). Not
// installed: nothing here is API.
#ifndef PRESENCE_CLIENT_CLIENT_INTERNAL_H_
#define PRESENCE_CLIENT_CLIENT_INTERNAL_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "presence/client.h"
#include "presence/shard_map.h"
#include "presence/v1/presence.grpc.pb.h"

namespace presence::internal {

using Stub = v1::PresenceService::Stub;

// What every call, blocking or not, gets on its context.
inline void PrepareContext(grpc::ClientContext* context,
                           absl::Duration deadline) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
}

// The one conversion of a call's status, blocking, asynchronous or a stream.
inline absl::Status ToStatus(const grpc::Status& status) {
  // grpc::StatusCode and absl::StatusCode share their numbering.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

template <typename Response>
absl::StatusOr<Response> ToResult(const grpc::Status& status,
                                  Response response) {
  if (status.ok()) return response;
  return ToStatus(status);
}

// `status` of a call to `shard`, saying so: "shard NAME (TARGET): message",
// same code. Every error of a sharded call goes through it.
absl::Status ShardError(const Shard& shard, const absl::Status& status);

// `done`, told which shard failed. `shard` lives as long as the Client.
template <typename Response>
Client::Callback<Response> NamingShard(const Shard* shard,
                                       Client::Callback<Response> done) {
  return
      [shard, done = std::move(done)](absl::StatusOr<Response> result) mutable {
        if (!result.ok()) result = ShardError(*shard, result.status());
        std::move(done)(std::move(result));
      };
}

// A Client's asynchronous calls in flight, so that its destructor can cancel
// them and wait for them; and what those calls need of the Client.
class AsyncCalls {
 public:
  // `stubs` parallel to `shard_map`'s shards; both owned by the Client.
  AsyncCalls(std::vector<Stub*> stubs, const ShardMap* shard_map,
             absl::Duration deadline)
      : stubs_(std::move(stubs)), shard_map_(shard_map), deadline_(deadline) {}

  // Valid while a call is in flight, or while the Client lives.
  Stub* stub(size_t shard) const { return stubs_[shard]; }
  const ShardMap& shard_map() const { return *shard_map_; }
  absl::Duration deadline() const { return deadline_; }

  // Counts a call about to start and makes it cancellable. False once the
  // Client is being destroyed.
  bool Start(grpc::ClientContext* context) {
    absl::MutexLock lock(&mu_);
    if (closing_) return false;
    ++in_flight_;
    contexts_.insert(context);
    return true;
  }
  // The call's context is about to go.
  void Forget(grpc::ClientContext* context) {
    absl::MutexLock lock(&mu_);
    contexts_.erase(context);
  }
  // The call's callback has returned: the Client may go.
  void End() {
    absl::MutexLock lock(&mu_);
    --in_flight_;
  }

  void CancelAllAndWait() {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    // gRPC runs no callback inline in TryCancel(), so holding mu_ is safe;
    // it keeps each context from being forgotten (and freed) meanwhile.
    for (grpc::ClientContext* context : contexts_) context->TryCancel();
    mu_.Await(absl::Condition(
        +[](int* in_flight) { return *in_flight == 0; }, &in_flight_));
  }

 private:
  const std::vector<Stub*> stubs_;
  const ShardMap* const shard_map_;
  const absl::Duration deadline_;
  absl::Mutex mu_;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_set<grpc::ClientContext*> contexts_ ABSL_GUARDED_BY(mu_);
};

// The calls whose callback this thread is running, to catch a Client
// destroyed from its own callback.
inline thread_local const AsyncCalls* running_callback_of = nullptr;

// The error of a call the Client refused to start.
inline absl::Status Destroying() {
  return absl::CancelledError("the presence::Client is being destroyed");
}

template <typename Request, typename Response>
using AsyncMethod = void (Stub::async::*)(grpc::ClientContext*, const Request*,
                                          Response*,
                                          std::function<void(grpc::Status)>);

// Everything an asynchronous call uses until it ends: gRPC's callback API
// needs the context, request and response to outlive the call.
template <typename Request, typename Response>
struct AsyncCall {
  std::shared_ptr<AsyncCalls> calls;
  grpc::ClientContext context;
  Request request;
  Response response;
  Client::Callback<Response> done;
};

// One unary call to `shard`; `done` runs once, on one of gRPC's threads (on
// the caller's if the Client is being destroyed), counted as in flight.
template <typename Request, typename Response>
void CallAsync(const std::shared_ptr<AsyncCalls>& calls, size_t shard,
               AsyncMethod<Request, Response> method, Request request,
               Client::Callback<Response> done,
               std::optional<absl::Duration> deadline = std::nullopt) {
  auto call = std::make_unique<AsyncCall<Request, Response>>();
  PrepareContext(&call->context, deadline.value_or(calls->deadline()));
  if (!calls->Start(&call->context)) return std::move(done)(Destroying());
  call->calls = calls;
  call->request = std::move(request);
  call->done = std::move(done);
  AsyncCall<Request, Response>* raw = call.release();
  // gRPC calls the lambda exactly once, whatever becomes of the call.
  (calls->stub(shard)->async()->*method)(
      &raw->context, &raw->request, &raw->response, [raw](grpc::Status status) {
        std::unique_ptr<AsyncCall<Request, Response>> owned(raw);
        std::shared_ptr<AsyncCalls> calls = std::move(owned->calls);
        absl::StatusOr<Response> result =
            ToResult(status, std::move(owned->response));
        Client::Callback<Response> done = std::move(owned->done);
        calls->Forget(&owned->context);
        owned.reset();
        const AsyncCalls* outer = running_callback_of;
        running_callback_of = calls.get();
        std::move(done)(std::move(result));
        // Whatever the callback holds goes while the Client still lives.
        done = nullptr;
        running_callback_of = outer;
        calls->End();
      });
}

// One WatchPresence stream to `shard`. Deletes itself when gRPC is done
// with it.
class WatchStream final
    : public grpc::ClientReadReactor<v1::WatchPresenceResponse> {
 public:
  WatchStream(std::shared_ptr<AsyncCalls> calls, size_t shard,
              std::shared_ptr<grpc::ClientContext> context,
              v1::WatchPresenceRequest request,
              absl::AnyInvocable<void(v1::WatchPresenceResponse)> on_message,
              absl::AnyInvocable<void(absl::Status) &&> on_done)
      : calls_(std::move(calls)),
        shard_(shard),
        context_(std::move(context)),
        request_(std::move(request)),
        on_message_(std::move(on_message)),
        on_done_(std::move(on_done)) {}

  // False (and nothing started) once the Client is being destroyed.
  bool Start() {
    if (!calls_->Start(context_.get())) return false;
    calls_->stub(shard_)->async()->WatchPresence(context_.get(), &request_,
                                                 this);
    StartRead(&message_);
    StartCall();
    return true;
  }

  // Instead of Start(), when that refused.
  void Refuse() && { std::move(on_done_)(Destroying()); }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows with the status
    on_message_(std::move(message_));
    message_.Clear();
    StartRead(&message_);
  }

  void OnDone(const grpc::Status& status) override {
    std::shared_ptr<AsyncCalls> calls = std::move(calls_);
    absl::AnyInvocable<void(absl::Status)&&> on_done = std::move(on_done_);
    calls->Forget(context_.get());
    delete this;
    const AsyncCalls* outer = running_callback_of;
    running_callback_of = calls.get();
    std::move(on_done)(ToStatus(status));
    on_done = nullptr;
    running_callback_of = outer;
    calls->End();
  }

 private:
  std::shared_ptr<AsyncCalls> calls_;
  const size_t shard_;
  const std::shared_ptr<grpc::ClientContext> context_;
  const v1::WatchPresenceRequest request_;
  absl::AnyInvocable<void(v1::WatchPresenceResponse)> on_message_;
  absl::AnyInvocable<void(absl::Status) &&> on_done_;
  v1::WatchPresenceResponse message_;
};

// Whether a user with `status` counts as online: ONLINE, AWAY and DND do
// (rich streams tell all three; others ONLINE alone).
bool IsOnline(v1::Status status);

// One shard's online users, as its stream has told them: its latest
// snapshot with the changes since applied; with `rich` (a rich_status
// stream), each one's presence as others see it too, for a merged
// Snapshot.users. A change carries status, custom_status and
// availability_until, so that is what it updates of a user's entry
// (availability follows from the status: DND, or AUTO as others see it);
// the rest (last_seen, online_until, live_sessions) stays as the snapshot
// had it, and a user who came online since has only what the change says.
class OnlinePart {
 public:
  explicit OnlinePart(bool rich) : rich_(rich) {}

  // Replaces everything known with the snapshot's. A snapshot without
  // `users` (from a presenced older than rich presence) gives each user an
  // entry with status ONLINE.
  void Reset(const v1::Snapshot& snapshot);
  void Apply(const v1::PresenceChange& change);
  size_t size() const { return rich_ ? presences_.size() : users_.size(); }

  // The union of `parts` as one Snapshot: online_users ascending, `users`
  // (when the parts are rich) in the same order, and `server_time`.
  static v1::Snapshot Merge(absl::Span<const OnlinePart* const> parts,
                            const google::protobuf::Timestamp& server_time);

 private:
  bool rich_;
  absl::flat_hash_set<int64_t> users_;                        // without rich
  absl::flat_hash_map<int64_t, v1::UserPresence> presences_;  // with rich
};

// Every online user of one shard, following its pages (ListAllOnline of
// one presenced).
void ListAllPagesAsync(const std::shared_ptr<AsyncCalls>& calls, size_t shard,
                       absl::Span<const int64_t> only,
                       Client::Callback<std::vector<int64_t>> done);

// Shared by the sharded calls and the sharded watch (sharded_calls.cc).
// Each shard's ids of `ids`, in their order (empty for shards owning none).
std::vector<std::vector<int64_t>> IdsByOwner(const ShardMap& map,
                                             absl::Span<const int64_t> ids);
// presenced's check of user_ids, made before splitting them so that the
// index it names is the caller's.
absl::Status CheckUserIds(absl::Span<const int64_t> ids);
// Keeps in `latest` the latest of the server times seen.
void KeepLatest(const google::protobuf::Timestamp& time,
                google::protobuf::Timestamp* latest);

// The sharded forms of Client's calls (sharded_calls.cc; the watch in
// sharded_watch.cc). The blocking
// ones wait on a completion queue of their own (they need none of gRPC's
// callback threads, so a callback may make them); the asynchronous ones
// answer `done` once, like CallAsync.
absl::StatusOr<v1::BatchHeartbeatResponse> ShardedBatchHeartbeat(
    const AsyncCalls& calls, const v1::BatchHeartbeatRequest& request);
absl::StatusOr<v1::GetPresenceResponse> ShardedGetPresence(
    const AsyncCalls& calls, const v1::GetPresenceRequest& request);
absl::StatusOr<v1::ListOnlineResponse> ShardedListOnline(
    const AsyncCalls& calls, const v1::ListOnlineRequest& request);
absl::StatusOr<OnlineUsers> ShardedListAllOnline(const AsyncCalls& calls,
                                                 absl::Span<const int64_t> only,
                                                 bool allow_missing);
void ShardedBatchHeartbeatAsync(const std::shared_ptr<AsyncCalls>& calls,
                                v1::BatchHeartbeatRequest request,
                                Client::Callback<v1::BatchHeartbeatResponse>);
void ShardedGetPresenceAsync(const std::shared_ptr<AsyncCalls>& calls,
                             const v1::GetPresenceRequest& request,
                             Client::Callback<v1::GetPresenceResponse> done);
void ShardedListOnlineAsync(const std::shared_ptr<AsyncCalls>& calls,
                            v1::ListOnlineRequest request,
                            std::optional<absl::Duration> deadline,
                            Client::Callback<v1::ListOnlineResponse> done);
// Every shard's users (of `only`); with `allow_missing`, the shards that
// fail are listed as missing instead of failing the listing (unless all
// fail).
void ShardedListAllOnlineAsync(const std::shared_ptr<AsyncCalls>& calls,
                               absl::Span<const int64_t> only,
                               bool allow_missing,
                               Client::Callback<OnlineUsers> done);
void ShardedWatchPresenceAsync(
    const std::shared_ptr<AsyncCalls>& calls,
    std::shared_ptr<grpc::ClientContext> context,
    v1::WatchPresenceRequest request,
    absl::AnyInvocable<void(v1::WatchPresenceResponse)> on_message,
    absl::AnyInvocable<void(absl::Status) &&> on_done);

}  // namespace presence::internal

#endif  // PRESENCE_CLIENT_CLIENT_INTERNAL_H_
