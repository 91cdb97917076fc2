#include "service/watch_reactor.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/arena.h"
#include "presence/v1/presence.pb.h"
#include "service/grpc_codec.h"
#include "service/proto_convert.h"
#include "service/proto_time.h"

namespace presence {
namespace {

// A watch that ends before its first message (bad request, no capacity).
class RejectedWatch : public WatchWriteReactor {
 public:
  RejectedWatch(CallCounter* calls, const absl::Status& status,
                const RpcTimer& timer)
      : calls_(calls) {
    calls_->Enter();
    grpc::Status finish = ToGrpcStatus(status);
    timer.Stop(finish.error_code());
    Finish(finish);
  }
  void OnDone() override {
    calls_->Leave();
    delete this;
  }

 private:
  CallCounter* const calls_;
};

// The most changes a stream that asks for batches gets in one message
// (WatchPresenceRequest.max_batch is capped to it): at 40 bytes a change at
// most, a message stays under 40 KiB, so a slow stream holds little.
constexpr int kMaxBatch = 1'000;

// Encodes one hub message as the stream asked: changes one per message, or
// in a ChangeBatch. `registry` (rich streams only): a Snapshot carries each
// online user's presence, read from it.
void EncodeWatchMessage(const WatchMessage& message, const std::string& epoch,
                        bool batches, const PresenceRegistry* registry,
                        grpc::ByteBuffer* out) {
  // The messages are built on this thread's arena and gone after the
  // encoding: no stream keeps a message (up to kMaxBatch changes) between
  // writes, and a batch costs no allocation per change.
  constexpr size_t kBlock = 64 * 1024;
  thread_local std::unique_ptr<char[]> block(new char[kBlock]);
  thread_local google::protobuf::Arena arena([] {
    google::protobuf::ArenaOptions options;
    options.initial_block = block.get();
    options.initial_block_size = kBlock;
    return options;
  }());
  auto* response =
      google::protobuf::Arena::CreateMessage<v1::WatchPresenceResponse>(&arena);
  response->set_sequence(message.sequence);
  response->set_epoch(epoch);
  if (message.kind == WatchMessage::Kind::kSnapshot) {
    v1::Snapshot* snapshot = response->mutable_snapshot();
    *snapshot->mutable_server_time() = ToProto(message.snapshot_time);
    snapshot->mutable_online_users()->Add(message.online_users.begin(),
                                          message.online_users.end());
    if (registry != nullptr) {
      // Read after the hub's snapshot: the changes that follow it may
      // already show here, and apply again on top without harm (each
      // carries the whole status).
      const PresenceLookup lookup = registry->GetPresence(message.online_users);
      for (const UserPresenceInfo& info : lookup.users) {
        FillPresence(info, /*rich=*/true, snapshot->add_users());
      }
    }
  } else if (!batches) {
    FillChange(message.changes.front(), registry != nullptr,
               response->mutable_change());
  } else {
    auto* changes = response->mutable_changes()->mutable_changes();
    changes->Reserve(static_cast<int>(message.changes.size()));
    for (const SequencedEvent& e : message.changes) {
      FillChange(e, registry != nullptr, changes->Add());
    }
  }
  SerializeMessage(*response, out);
  arena.Reset();
}

// One WatchPresence stream. It pulls messages from the hub and keeps exactly
// one write in flight: MaybeWrite() starts the next write (or the Finish)
// only when none is in flight, OnWriteDone() calls it again, and the hub's
// dispatchers call it (OnReady) when changes arrive for an idle stream.
// Each write carries every change waiting, up to the stream's max_batch, so
// a stream that falls behind catches up in few messages.
//
// Lifetime: owned by shared_ptrs, self_ until OnDone(); the hub holds a
// weak_ptr, so a wake that races with OnDone() finds the stream alive or
// not at all. No lock is held while calling into gRPC.
class WatchReactor : public WatchWriteReactor, public WatchSink {
 public:
  // `registry`: for a rich stream's snapshots (null: not rich).
  static WatchWriteReactor* Start(EventHub* hub,
                                  const PresenceRegistry* registry,
                                  CallCounter* calls,
                                  const WatchRequest& request, int max_batch,
                                  const RpcTimer& timer) {
    auto reactor = std::shared_ptr<WatchReactor>(
        new WatchReactor(hub, request.rich_status ? registry : nullptr, calls,
                         max_batch, timer));
    absl::StatusOr<EventHub::WatchId> id = hub->Watch(request, reactor);
    if (!id.ok()) return new RejectedWatch(calls, id.status(), timer);
    calls->Enter();
    reactor->id_ = *id;
    reactor->self_ = reactor;
    // The hub wakes a watch only after a Pop() found it empty, so nothing
    // else runs MaybeWrite() before this first call.
    reactor->MaybeWrite();
    return reactor.get();
  }

  void OnReady() override { MaybeWrite(); }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      write_in_flight_ = false;
      current_bytes_.Clear();   // an idle stream holds no message
      if (!ok) broken_ = true;  // the client is gone or the call was cancelled
    }
    MaybeWrite();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      broken_ = true;
    }
    MaybeWrite();
  }

  void OnDone() override {
    hub_->Unwatch(id_);
    calls_->Leave();
    // May destroy this reactor (unless a wake holds it): the last statement.
    self_.reset();
  }

 private:
  WatchReactor(EventHub* hub, const PresenceRegistry* registry,
               CallCounter* calls, int max_batch, const RpcTimer& timer)
      : hub_(hub),
        registry_(registry),
        calls_(calls),
        timer_(timer),
        max_changes_(std::clamp(max_batch, 1, kMaxBatch)),
        batches_(max_batch > 1) {}

  void MaybeWrite() {
    // This thread's: a stream keeps no hub message between its writes.
    thread_local WatchMessage message;
    bool finishing = false;
    grpc::Status finish;
    {
      absl::MutexLock lock(&mu_);
      if (write_in_flight_ || finished_) return;
      absl::Status closed;
      EventHub::PopResult next =
          broken_ ? EventHub::PopResult::kClosed
                  : hub_->Pop(id_, max_changes_, &message, &closed);
      switch (next) {
        case EventHub::PopResult::kEmpty:
          return;
        case EventHub::PopResult::kMessage:
          EncodeWatchMessage(message, hub_->epoch(), batches_, registry_,
                             &current_bytes_);
          if (message.online_users.capacity() > 65'536) {
            // A snapshot of everyone: don't keep its memory on this thread.
            std::vector<int64_t>().swap(message.online_users);
          }
          write_in_flight_ = true;
          break;
        case EventHub::PopResult::kClosed:
          finished_ = true;
          finishing = true;
          finish = broken_ ? grpc::Status::CANCELLED : ToGrpcStatus(closed);
          break;
      }
    }
    // current_bytes_ is not touched again until OnWriteDone.
    if (finishing) {
      timer_.Stop(finish.error_code());
      Finish(finish);
    } else {
      StartWrite(&current_bytes_);
    }
  }

  EventHub* const hub_;
  const PresenceRegistry* const registry_;  // null: not a rich stream
  CallCounter* const calls_;
  const RpcTimer timer_;
  const int max_changes_;
  const bool batches_;
  EventHub::WatchId id_ = 0;
  std::shared_ptr<WatchReactor> self_;

  absl::Mutex mu_;
  grpc::ByteBuffer current_bytes_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

WatchWriteReactor* StartWatch(EventHub* hub, const PresenceRegistry* registry,
                              CallCounter* calls, const WatchRequest& request,
                              uint32_t max_batch, const RpcTimer& timer) {
  return WatchReactor::Start(
      hub, registry, calls, request,
      static_cast<int>(std::min<uint32_t>(max_batch, kMaxBatch)), timer);
}

WatchWriteReactor* RejectWatch(CallCounter* calls, const absl::Status& status,
                               const RpcTimer& timer) {
  return new RejectedWatch(calls, status, timer);
}

}  // namespace presence
