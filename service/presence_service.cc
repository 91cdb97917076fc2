#include "service/presence_service.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/stubs/logging.h"
#include "service/log.h"
#include "service/proto_time.h"
#include "service/status_macros.h"

namespace presence {
namespace {

using WatchWriteReactor = grpc::ServerWriteReactor<grpc::ByteBuffer>;

// Where protobuf's log lines go while this thread parses a request: into the
// call's answer rather than presenced's log.
thread_local std::string* protobuf_complaints = nullptr;

void OnProtobufLog(google::protobuf::LogLevel level, const char* filename,
                   int line, const std::string& message) {
  if (protobuf_complaints != nullptr) {
    if (!protobuf_complaints->empty()) protobuf_complaints->append("; ");
    protobuf_complaints->append(message);
    return;
  }
  if (level == google::protobuf::LOGLEVEL_INFO) return;
  // Anything else protobuf says could be made to repeat by a peer.
  static ThrottledErrorLog* const log = new ThrottledErrorLog();
  log->Log(absl::StrCat("protobuf (", filename, ":", line, "): ", message));
}

template <typename Message>
absl::Status Parse(const grpc::ByteBuffer& bytes, Message* message) {
  grpc::ByteBuffer copy(bytes);  // shares the slices; Deserialize drains it
  std::string complaints;
  protobuf_complaints = &complaints;
  const grpc::Status parsed =
      grpc::SerializationTraits<Message>::Deserialize(&copy, message);
  protobuf_complaints = nullptr;
  if (parsed.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "the request is not a valid ", Message::descriptor()->full_name(),
      " message: ",
      !complaints.empty() ? complaints
                          : "its protobuf encoding is truncated or malformed"));
}

// Replaces *out with `message`'s bytes.
void Serialize(const google::protobuf::Message& message,
               grpc::ByteBuffer* out) {
  out->Clear();  // gRPC's writer wants an empty buffer
  bool own_buffer;
  grpc::SerializationTraits<google::protobuf::Message>::Serialize(message, out,
                                                                  &own_buffer)
      .IgnoreError();  // fails only for a message over 2 GiB
}

using CallCounter = PresenceServiceImpl::CallCounter;

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

v1::Status StatusToProto(PublicStatus status) {
  switch (status) {
    case PublicStatus::kOnline:
      return v1::STATUS_ONLINE;
    case PublicStatus::kAway:
      return v1::STATUS_AWAY;
    case PublicStatus::kDnd:
      return v1::STATUS_DND;
    case PublicStatus::kOffline:
      break;
  }
  return v1::STATUS_OFFLINE;
}

v1::Availability AvailabilityToProto(Availability availability) {
  switch (availability) {
    case Availability::kDnd:
      return v1::AVAILABILITY_DND;
    case Availability::kInvisible:
      return v1::AVAILABILITY_INVISIBLE;
    case Availability::kAuto:
      break;
  }
  return v1::AVAILABILITY_AUTO;
}

void FillCustomStatus(const CustomStatus& custom, v1::CustomStatus* out);

// `rich`: AWAY and DND in `status`; otherwise ONLINE for either, as clients
// before rich presence know it. The other fields are filled either way.
void FillPresence(const UserPresenceInfo& info, bool rich,
                  v1::UserPresence* out) {
  out->set_user_id(info.user_id);
  out->set_status(rich          ? StatusToProto(info.status)
                  : info.online ? v1::STATUS_ONLINE
                                : v1::STATUS_OFFLINE);
  if (info.last_seen != absl::InfinitePast()) {
    *out->mutable_last_seen() = ToProto(info.last_seen);
  }
  out->set_live_sessions(info.live_sessions);
  if (info.online) *out->mutable_online_until() = ToProto(info.online_until);
  out->set_availability(AvailabilityToProto(info.availability));
  if (info.availability_until != absl::InfiniteFuture()) {
    *out->mutable_availability_until() = ToProto(info.availability_until);
  }
  if (info.custom.has_value()) {
    FillCustomStatus(*info.custom, out->mutable_custom_status());
  }
}

// `rich`: the stream asked for rich_status. Otherwise only the reasons
// clients before rich presence know: an online/offline transition caused by
// a status (going or ceasing to be invisible) reads as a heartbeat or a
// logout.
v1::Reason ReasonToProto(const PresenceEvent& event, bool rich) {
  switch (event.reason) {
    case PresenceEvent::Reason::kHeartbeat:
      return v1::REASON_HEARTBEAT;
    case PresenceEvent::Reason::kMarkOffline:
      return v1::REASON_MARK_OFFLINE;
    case PresenceEvent::Reason::kExpired:
      return v1::REASON_EXPIRED;
    case PresenceEvent::Reason::kActivity:
    case PresenceEvent::Reason::kStatusSet:
    case PresenceEvent::Reason::kStatusExpired:
      break;
  }
  if (!rich) {
    return event.online ? v1::REASON_HEARTBEAT : v1::REASON_MARK_OFFLINE;
  }
  switch (event.reason) {
    case PresenceEvent::Reason::kActivity:
      return v1::REASON_ACTIVITY;
    case PresenceEvent::Reason::kStatusSet:
      return v1::REASON_STATUS_SET;
    default:
      return v1::REASON_STATUS_EXPIRED;
  }
}

void FillCustomStatus(const CustomStatus& custom, v1::CustomStatus* out) {
  out->set_text(custom.text);
  out->set_emoji(custom.emoji);
  if (custom.expires_at != absl::InfiniteFuture()) {
    *out->mutable_expires_at() = ToProto(custom.expires_at);
  }
}

void FillChange(const SequencedEvent& e, bool rich,
                v1::PresenceChange* change) {
  change->set_user_id(e.event.user_id);
  change->set_status(rich             ? StatusToProto(e.event.status)
                     : e.event.online ? v1::STATUS_ONLINE
                                      : v1::STATUS_OFFLINE);
  *change->mutable_at() = ToProto(e.event.at);
  change->set_reason(ReasonToProto(e.event, rich));
  change->set_sequence(e.sequence);
  if (!rich) return;
  if (e.event.custom != nullptr) {
    FillCustomStatus(*e.event.custom, change->mutable_custom_status());
  }
  if (e.event.availability_until != absl::InfiniteFuture()) {
    *change->mutable_availability_until() = ToProto(e.event.availability_until);
  }
}

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
  Serialize(*response, out);
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

// One unary call: gRPC's default reactor, the call's timer, and its place
// among the calls in flight. gRPC's default reactor, not one of presenced's:
// gRPC runs the OnDone of its own inline, but hands a custom reactor's to
// another thread, which cost about a third of the Heartbeat throughput.
class UnaryCall {
 public:
  UnaryCall(grpc::CallbackServerContext* context, CallCounter* calls,
            ServerMetrics* metrics, Rpc rpc)
      : reactor_(context->DefaultReactor()),
        calls_(calls),
        timer_(metrics, rpc) {
    calls_->Enter();
  }

  // Answers now. Once per call, this or AnswerWhenDurable().
  grpc::ServerUnaryReactor* Answer(const absl::Status& status) const {
    Finish(reactor_, calls_, &timer_, status);
    return reactor_;
  }

  // Answers once the change behind `ticket` is durable (see
  // StoreWriter::WhenDurable).
  grpc::ServerUnaryReactor* AnswerWhenDurable(StoreWriter* writer,
                                              uint64_t ticket) const {
    grpc::ServerUnaryReactor* reactor = reactor_;
    CallCounter* calls = calls_;
    if (!timer_.active()) {
      // Two pointers: fit AnyInvocable's inline storage, so no allocation
      // per call when metrics are off.
      writer->WhenDurable(ticket, [reactor, calls](absl::Status status) {
        Finish(reactor, calls, nullptr, status);
      });
    } else {
      writer->WhenDurable(
          ticket, [reactor, calls, timer = timer_](absl::Status status) {
            Finish(reactor, calls, &timer, status);
          });
    }
    return reactor_;
  }

 private:
  // The call leaves the count once its answer is queued; shutdown's wait
  // after the GOAWAY lets it go out. `timer` null: no metrics.
  static void Finish(grpc::ServerUnaryReactor* reactor, CallCounter* calls,
                     const RpcTimer* timer, const absl::Status& status) {
    grpc::Status finish = ToGrpcStatus(status);
    if (timer != nullptr) timer->Stop(finish.error_code());
    reactor->Finish(finish);
    calls->Leave();
  }

  grpc::ServerUnaryReactor* const reactor_;
  CallCounter* const calls_;
  const RpcTimer timer_;
};

}  // namespace

void PresenceServiceImpl::CallCounter::Leave() {
  // Sequentially consistent, as in AwaitZero(): with weaker orders each side
  // could miss the other's write (a store then a load on each side), and
  // shutdown would sleep its whole grace with nothing in flight.
  if (in_flight_.fetch_sub(1) == 1 && awaited_.load()) {
    zero_.Signal();
  }
}

bool PresenceServiceImpl::CallCounter::AwaitZero(absl::Duration timeout) {
  awaited_.store(true);
  const auto deadline =
      std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  while (in_flight() > 0) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return false;
    zero_.SleepFor(absl::FromChrono(left));
  }
  return true;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl::StatusCode mirrors the gRPC code numbering by design.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

PresenceServiceImpl::PresenceServiceImpl(PresenceRegistry* registry,
                                         StoreWriter* writer, EventHub* hub,
                                         Options options)
    : registry_(registry), writer_(writer), hub_(hub), options_(options) {}

void PresenceServiceImpl::StopAdmitting() {
  admitting_.store(false);  // seq_cst, against Enter() then Admit()
}

bool PresenceServiceImpl::AwaitNoCallsInFlight(absl::Duration timeout) {
  return calls_.AwaitZero(timeout);
}

absl::Status PresenceServiceImpl::Authorize(
    const grpc::CallbackServerContext& context, Rpc rpc) const {
  if (options_.auth == nullptr) return absl::OkStatus();
  absl::string_view authorization;
  auto it = context.client_metadata().find("authorization");
  if (it != context.client_metadata().end()) {
    authorization = absl::string_view(it->second.data(), it->second.size());
  }
  absl::StatusOr<std::shared_ptr<Caller>> caller =
      options_.auth->Authenticate(authorization);
  if (!caller.ok()) {
    rejections_.Log(absl::StrCat("refused a call from ", context.peer(), ": ",
                                 caller.status().message()));
    return caller.status();
  }
  (*caller)->calls[static_cast<int>(rpc)].fetch_add(1,
                                                    std::memory_order_relaxed);
  if (!(*caller)->logged.exchange(true, std::memory_order_relaxed)) {
    LogInfo(absl::StrCat("caller '", (*caller)->name, "' authenticated from ",
                         context.peer()));
  }
  return absl::OkStatus();
}

void InstallProtobufLogHandler() {
  google::protobuf::SetLogHandler(&OnProtobufLog);
}

namespace {
// The users a request is about, for the shard's ownership check.
// BatchHeartbeat's items are checked one by one, each with its own result.
absl::Status CheckOwner(const ShardOwnership& o,
                        const v1::HeartbeatRequest& r) {
  return o.Check(r.user_id());
}
absl::Status CheckOwner(const ShardOwnership& o,
                        const v1::MarkOfflineRequest& r) {
  return o.Check(r.user_id());
}
absl::Status CheckOwner(const ShardOwnership& o,
                        const v1::SetStatusRequest& r) {
  return o.Check(r.user_id());
}
absl::Status CheckOwner(const ShardOwnership&,
                        const v1::BatchHeartbeatRequest&) {
  return absl::OkStatus();
}
// The hand-over calls exist for resharding only: an unsharded presenced
// refuses them, so that they are no way around Heartbeat on a single node.
absl::Status HandOverOnlyWhenSharded(const ShardOwnership& o) {
  if (o.sharded()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "this presenced is not sharded (no --shards): it has no users to hand "
      "over or take over; ListForeignUsers and ImportLastSeen are for "
      "resharding (docs/scale-out.md)");
}
absl::Status CheckOwner(const ShardOwnership& o,
                        const v1::ListForeignUsersRequest&) {
  return HandOverOnlyWhenSharded(o);
}
// Each item's owner is checked by the handler, before any is applied.
absl::Status CheckOwner(const ShardOwnership& o,
                        const v1::ImportLastSeenRequest&) {
  return HandOverOnlyWhenSharded(o);
}
template <typename Request>
absl::Status CheckOwner(const ShardOwnership& o, const Request& r) {
  return o.CheckAll(r.user_ids());
}

}  // namespace

template <typename Request>
absl::Status PresenceServiceImpl::Admit(
    const grpc::CallbackServerContext& context, Rpc rpc,
    const grpc::ByteBuffer& bytes, Request* request, bool is_change) const {
  if (!admitting_.load()) {
    return absl::UnavailableError(
        "presenced is shutting down; retry (it is likely restarting)");
  }
  PRESENCE_RETURN_IF_ERROR(Authorize(context, rpc));
  PRESENCE_RETURN_IF_ERROR(Parse(bytes, request));
  PRESENCE_RETURN_IF_ERROR(ValidateRequest(*request, options_.limits));
  PRESENCE_RETURN_IF_ERROR(CheckOwner(options_.ownership, *request));
  // Refused before it is applied: memory must not hold what cannot be kept.
  if (is_change) PRESENCE_RETURN_IF_ERROR(writer_->accepting());
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* PresenceServiceImpl::Heartbeat(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  const UnaryCall call(context, &calls_, options_.metrics, Rpc::kHeartbeat);
  v1::HeartbeatRequest request;
  if (absl::Status s = Admit(*context, Rpc::kHeartbeat, *bytes, &request, true);
      !s.ok()) {
    return call.Answer(s);
  }
  // client_time is deliberately not read: only the server's clock decides.
  const HeartbeatResult result = registry_->Heartbeat(
      request.user_id(), request.session_id(), request.idle());
  v1::HeartbeatResponse response;
  FillHeartbeat(result, &response);
  Serialize(response, answer);
  return call.AnswerWhenDurable(writer_, result.write_ticket);
}

void PresenceServiceImpl::FillHeartbeat(const HeartbeatResult& result,
                                        v1::HeartbeatResponse* response) const {
  *response->mutable_server_time() = ToProto(result.server_time);
  *response->mutable_online_until() = ToProto(result.online_until);
  *response->mutable_heartbeat_interval() =
      ToProto(options_.heartbeat_interval);
  response->set_became_online(result.became_online);
}

grpc::ServerUnaryReactor* PresenceServiceImpl::BatchHeartbeat(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  const UnaryCall call(context, &calls_, options_.metrics,
                       Rpc::kBatchHeartbeat);
  // The request's and the answer's small messages (several per item) come
  // from one arena, not a malloc and a free each.
  google::protobuf::ArenaOptions arena_options;
  arena_options.start_block_size = 16 * 1024;
  arena_options.max_block_size = 256 * 1024;
  google::protobuf::Arena arena(arena_options);
  v1::BatchHeartbeatRequest& request =
      *google::protobuf::Arena::CreateMessage<v1::BatchHeartbeatRequest>(
          &arena);
  if (absl::Status s =
          Admit(*context, Rpc::kBatchHeartbeat, *bytes, &request, true);
      !s.ok()) {
    return call.Answer(s);
  }
  // Tickets grow in the order changes are recorded and commits are in
  // order, so the batch is durable once its largest ticket is.
  v1::BatchHeartbeatResponse& response =
      *google::protobuf::Arena::CreateMessage<v1::BatchHeartbeatResponse>(
          &arena);
  uint64_t last_ticket = 0;
  absl::Time server_time = absl::InfinitePast();
  for (int i = 0; i < request.heartbeats_size(); ++i) {
    const v1::HeartbeatRequest& item = request.heartbeats(i);
    v1::BatchHeartbeatResult* result = response.add_results();
    absl::Status s = ValidateRequest(item, options_.limits);
    if (s.ok()) s = options_.ownership.Check(item.user_id());
    if (!s.ok()) {
      result->mutable_error()->set_code(static_cast<int32_t>(s.code()));
      result->mutable_error()->set_message(
          absl::StrCat("heartbeats[", i, "].", s.message()));
      continue;
    }
    const HeartbeatResult applied =
        registry_->Heartbeat(item.user_id(), item.session_id(), item.idle());
    FillHeartbeat(applied, result->mutable_heartbeat());
    last_ticket = std::max(last_ticket, applied.write_ticket);
    server_time = std::max(server_time, applied.server_time);
  }
  if (server_time != absl::InfinitePast()) {
    *response.mutable_server_time() = ToProto(server_time);
  }
  Serialize(response, answer);
  return call.AnswerWhenDurable(writer_, last_ticket);
}

grpc::ServerUnaryReactor* PresenceServiceImpl::MarkOffline(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  const UnaryCall call(context, &calls_, options_.metrics, Rpc::kMarkOffline);
  v1::MarkOfflineRequest request;
  if (absl::Status s =
          Admit(*context, Rpc::kMarkOffline, *bytes, &request, true);
      !s.ok()) {
    return call.Answer(s);
  }
  const MarkOfflineResult result =
      registry_->MarkOffline(request.user_id(), request.session_id());
  v1::MarkOfflineResponse response;
  *response.mutable_server_time() = ToProto(result.server_time);
  response.set_still_online(result.still_online);
  response.set_sessions_ended(result.sessions_ended);
  Serialize(response, answer);
  // Ticket 0 when nothing was left to end: the writer then waits for what
  // an earlier attempt of this logout may still have pending.
  return call.AnswerWhenDurable(writer_, result.write_ticket);
}

grpc::ServerUnaryReactor* PresenceServiceImpl::ListOnline(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  const UnaryCall call(context, &calls_, options_.metrics, Rpc::kListOnline);
  v1::ListOnlineRequest request;
  if (absl::Status s =
          Admit(*context, Rpc::kListOnline, *bytes, &request, false);
      !s.ok()) {
    return call.Answer(s);
  }
  const int64_t after = *DecodePageToken(request.page_token());
  const OnlinePage page = registry_->ListOnline(
      request.user_ids(), after, EffectivePageSize(request, options_.limits));
  v1::ListOnlineResponse response;
  response.mutable_online_users()->Add(page.user_ids.begin(),
                                       page.user_ids.end());
  if (page.has_more) {
    response.set_next_page_token(EncodePageToken(page.user_ids.back()));
  }
  *response.mutable_server_time() = ToProto(page.server_time);
  response.set_total_online(page.total_online);
  Serialize(response, answer);
  return call.Answer(absl::OkStatus());
}

grpc::ServerUnaryReactor* PresenceServiceImpl::GetPresence(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  const UnaryCall call(context, &calls_, options_.metrics, Rpc::kGetPresence);
  v1::GetPresenceRequest request;
  if (absl::Status s =
          Admit(*context, Rpc::kGetPresence, *bytes, &request, false);
      !s.ok()) {
    return call.Answer(s);
  }
  const PresenceLookup lookup =
      registry_->GetPresence(request.user_ids(), request.viewer_user_id());
  v1::GetPresenceResponse response;
  *response.mutable_server_time() = ToProto(lookup.server_time);
  for (const UserPresenceInfo& info : lookup.users) {
    FillPresence(info, request.rich_status(), response.add_users());
  }
  Serialize(response, answer);
  return call.Answer(absl::OkStatus());
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* PresenceServiceImpl::WatchPresence(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes) {
  const RpcTimer timer(options_.metrics, Rpc::kWatchPresence);
  v1::WatchPresenceRequest request;
  if (absl::Status s =
          Admit(*context, Rpc::kWatchPresence, *bytes, &request, false);
      !s.ok()) {
    return new RejectedWatch(&calls_, s, timer);
  }
  WatchRequest watch;
  watch.user_ids.assign(request.user_ids().begin(), request.user_ids().end());
  watch.send_snapshot = request.send_snapshot();
  watch.resume_after = request.resume_after();
  watch.epoch = request.epoch();
  watch.rich_status = request.rich_status();
  return WatchReactor::Start(
      hub_, registry_, &calls_, watch,
      static_cast<int>(std::min<uint32_t>(request.max_batch(), kMaxBatch)),
      timer);
}

grpc::ServerUnaryReactor* PresenceServiceImpl::ListForeignUsers(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  const UnaryCall call(context, &calls_, options_.metrics,
                       Rpc::kListForeignUsers);
  v1::ListForeignUsersRequest request;
  if (absl::Status s =
          Admit(*context, Rpc::kListForeignUsers, *bytes, &request, false);
      !s.ok()) {
    return call.Answer(s);
  }
  const int64_t after = *DecodePageToken(request.page_token());
  const int page_size = EffectivePageSize(request, options_.limits);
  auto it = std::upper_bound(
      foreign_.begin(), foreign_.end(), after,
      [](int64_t id, const StoredLastSeen& u) { return id < u.user_id; });
  v1::ListForeignUsersResponse response;
  for (int n = 0; it != foreign_.end() && n < page_size; ++it, ++n) {
    v1::UserLastSeen* out = response.add_users();
    out->set_user_id(it->user_id);
    *out->mutable_last_seen() = ToProto(it->last_seen);
  }
  if (it != foreign_.end()) {
    response.set_next_page_token(EncodePageToken(std::prev(it)->user_id));
  }
  response.set_total(static_cast<int64_t>(foreign_.size()));
  Serialize(response, answer);
  return call.Answer(absl::OkStatus());
}

grpc::ServerUnaryReactor* PresenceServiceImpl::ImportLastSeen(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  const UnaryCall call(context, &calls_, options_.metrics,
                       Rpc::kImportLastSeen);
  v1::ImportLastSeenRequest request;
  if (absl::Status s =
          Admit(*context, Rpc::kImportLastSeen, *bytes, &request, true);
      !s.ok()) {
    return call.Answer(s);
  }
  // All or nothing on ownership: a tool given the wrong map learns it
  // before anything is imported.
  for (const v1::UserLastSeen& user : request.users()) {
    if (absl::Status s = options_.ownership.Check(user.user_id()); !s.ok()) {
      return call.Answer(s);
    }
  }
  uint64_t last_ticket = 0;
  int32_t updated = 0;
  for (const v1::UserLastSeen& user : request.users()) {
    const uint64_t ticket =
        registry_->AdoptLastSeen(user.user_id(), FromProto(user.last_seen()));
    if (ticket != 0) ++updated;
    last_ticket = std::max(last_ticket, ticket);
  }
  // Rare (a reshard) and a change of state no event announces: on record.
  LogInfo(absl::StrCat("ImportLastSeen from ", context->peer(), ": ",
                       request.users_size(), " users, last_seen raised for ",
                       updated));
  v1::ImportLastSeenResponse response;
  response.set_updated(updated);
  Serialize(response, answer);
  return call.AnswerWhenDurable(writer_, last_ticket);
}

namespace {

// The request as the registry takes it; ValidateRequest passed it.
StatusUpdate ToStatusUpdate(const v1::SetStatusRequest& request) {
  StatusUpdate update;
  switch (request.availability()) {
    case v1::AVAILABILITY_AUTO:
      update.availability = Availability::kAuto;
      break;
    case v1::AVAILABILITY_DND:
      update.availability = Availability::kDnd;
      break;
    case v1::AVAILABILITY_INVISIBLE:
      update.availability = Availability::kInvisible;
      break;
    default:
      break;  // unchanged
  }
  if (request.has_availability_until()) {
    update.availability_until = FromProto(request.availability_until());
  } else if (request.has_availability_for()) {
    update.availability_for = FromProto(request.availability_for());
  }
  if (request.has_custom_status()) {
    const v1::CustomStatus& custom = request.custom_status();
    update.custom_action = StatusUpdate::Custom::kReplace;
    update.custom.text = custom.text();
    update.custom.emoji = custom.emoji();
    if (custom.has_expires_at()) {
      update.custom.expires_at = FromProto(custom.expires_at());
    } else if (request.has_custom_status_for()) {
      update.custom_for = FromProto(request.custom_status_for());
    }
  } else if (request.clear_custom_status()) {
    update.custom_action = StatusUpdate::Custom::kClear;
  }
  return update;
}

}  // namespace

grpc::ServerUnaryReactor* PresenceServiceImpl::SetStatus(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* bytes,
    grpc::ByteBuffer* answer) {
  const UnaryCall call(context, &calls_, options_.metrics, Rpc::kSetStatus);
  v1::SetStatusRequest request;
  if (absl::Status s = Admit(*context, Rpc::kSetStatus, *bytes, &request, true);
      !s.ok()) {
    return call.Answer(s);
  }
  absl::StatusOr<SetStatusResult> result =
      registry_->SetStatus(request.user_id(), ToStatusUpdate(request));
  if (!result.ok()) return call.Answer(result.status());
  v1::SetStatusResponse response;
  FillPresence(result->self, /*rich=*/true, response.mutable_presence());
  *response.mutable_server_time() = ToProto(result->server_time);
  Serialize(response, answer);
  return call.AnswerWhenDurable(writer_, result->write_ticket);
}

}  // namespace presence
