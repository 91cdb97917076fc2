#include "presence/watcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/client_internal.h"

namespace presence {
namespace {

// Errors about the request itself: the same request fails again.
bool IsPermanent(grpc::StatusCode code) {
  return code == grpc::StatusCode::INVALID_ARGUMENT ||
         code == grpc::StatusCode::UNAUTHENTICATED ||
         code == grpc::StatusCode::PERMISSION_DENIED ||
         code == grpc::StatusCode::UNIMPLEMENTED;
}

}  // namespace

struct Watcher::Stream {
  explicit Stream(bool rich) : online(rich) {}

  size_t index = 0;
  // The shard followed (unsharded: no name).
  Shard shard;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::PresenceService::Stub> stub;
  std::vector<int64_t> user_ids;

  // Where to resume; touched only by the stream's thread.
  std::string epoch;
  uint64_t sequence = 0;
  bool delivered_since_connect = false;

  // Several streams: what this one's shard says is online, whether it has
  // sent a snapshot, and whether that is in the last snapshot delivered.
  // Under deliver_mu_.
  internal::OnlinePart online;
  bool has_snapshot = false;
  bool delivered = false;

  std::thread thread;
};

Watcher::Watcher(std::shared_ptr<grpc::Channel> channel, WatcherOptions options,
                 WatcherCallbacks callbacks)
    : options_(std::move(options)),
      callbacks_(std::move(callbacks)),
      sharded_(false) {
  AddStream(Shard(), std::move(channel), options_.user_ids);
  Start();
}

Watcher::Watcher(const Client& client, WatcherOptions options,
                 WatcherCallbacks callbacks)
    : options_(std::move(options)),
      callbacks_(std::move(callbacks)),
      sharded_(client.shard_map().sharded()) {
  const ShardMap& map = client.shard_map();
  if (!sharded_) {
    AddStream(map.shard(0), client.channel(0), options_.user_ids);
  } else {
    std::vector<std::vector<int64_t>> ids(map.size());
    for (int64_t id : options_.user_ids) ids[map.OwnerIndex(id)].push_back(id);
    for (size_t i = 0; i < map.size(); ++i) {
      if (!options_.user_ids.empty() && ids[i].empty()) continue;
      AddStream(map.shard(i), client.channel(i), std::move(ids[i]));
    }
  }
  Start();
}

Watcher::~Watcher() { Stop(); }

void Watcher::AddStream(const Shard& shard,
                        std::shared_ptr<grpc::Channel> channel,
                        std::vector<int64_t> user_ids) {
  auto stream = std::make_unique<Stream>(options_.rich_status);
  stream->index = streams_.size();
  stream->shard = shard;
  stream->stub = v1::PresenceService::NewStub(channel);
  stream->channel = std::move(channel);
  stream->user_ids = std::move(user_ids);
  streams_.push_back(std::move(stream));
}

void Watcher::Start() {
  {
    absl::MutexLock lock(&mu_);
    contexts_.assign(streams_.size(), nullptr);
  }
  for (const std::unique_ptr<Stream>& stream : streams_) {
    Stream* followed = stream.get();
    stream->thread = std::thread([this, followed] { Run(*followed); });
  }
}

void Watcher::EndAll() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (grpc::ClientContext* context : contexts_) {
      if (context != nullptr) context->TryCancel();
    }
  }
  {
    std::lock_guard<std::mutex> lock(backoff_mu_);
    backoff_stop_ = true;
  }
  backoff_cv_.notify_all();
}

void Watcher::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);  // one join at a time
  EndAll();
  for (const std::unique_ptr<Stream>& stream : streams_) {
    if (stream->thread.joinable()) stream->thread.join();
  }
}

grpc::Status Watcher::Follow(Stream& stream, grpc::ClientContext* context) {
  v1::WatchPresenceRequest request;
  request.mutable_user_ids()->Add(stream.user_ids.begin(),
                                  stream.user_ids.end());
  request.set_max_batch(options_.max_batch);
  request.set_rich_status(options_.rich_status);
  if (stream.epoch.empty()) {
    request.set_send_snapshot(true);
  } else {
    // presenced replays what came after, or sends a snapshot if it cannot.
    request.set_epoch(stream.epoch);
    request.set_resume_after(stream.sequence);
  }
  std::unique_ptr<grpc::ClientReader<v1::WatchPresenceResponse>> reader =
      stream.stub->WatchPresence(context, request);
  v1::WatchPresenceResponse message;
  while (reader->Read(&message)) {
    absl::MutexLock lock(&deliver_mu_);
    if (streams_.size() == 1) {
      Deliver(stream, message);
    } else {
      DeliverMerged(stream, message);
    }
  }
  return reader->Finish();
}

void Watcher::DeliverChange(const v1::PresenceChange& change,
                            uint64_t sequence) {
  if (!callbacks_.on_change) return;
  if (change.sequence() != 0) return callbacks_.on_change(change);
  // From a presenced older than PresenceChange.sequence.
  v1::PresenceChange numbered = change;
  numbered.set_sequence(sequence);
  callbacks_.on_change(numbered);
}

void Watcher::Advance(Stream& stream,
                      const v1::WatchPresenceResponse& message) {
  // A message is delivered whole before the next Read(), so its sequence,
  // which is its last change's, is where a new stream resumes.
  stream.epoch = message.epoch();
  stream.sequence = message.sequence();
  stream.delivered_since_connect = true;
  if (callbacks_.on_message) callbacks_.on_message(message);
}

void Watcher::Deliver(Stream& stream,
                      const v1::WatchPresenceResponse& message) {
  Advance(stream, message);
  switch (message.event_case()) {
    case v1::WatchPresenceResponse::kSnapshot:
      if (callbacks_.on_snapshot) callbacks_.on_snapshot(message.snapshot());
      break;
    case v1::WatchPresenceResponse::kChange:
      DeliverChange(message.change(), message.sequence());
      break;
    case v1::WatchPresenceResponse::kChanges:
      for (const v1::PresenceChange& change : message.changes().changes()) {
        DeliverChange(change, change.sequence());
      }
      break;
    default:  // a kind newer than this client
      break;
  }
}

void Watcher::DeliverMerged(Stream& stream,
                            const v1::WatchPresenceResponse& message) {
  Advance(stream, message);
  switch (message.event_case()) {
    case v1::WatchPresenceResponse::kSnapshot: {
      stream.online.Reset(message.snapshot());
      stream.has_snapshot = true;
      const bool all = std::all_of(
          streams_.begin(), streams_.end(),
          [](const std::unique_ptr<Stream>& s) { return s->has_snapshot; });
      if (!all && !snapshot_delivered_ && !options_.partial_snapshots) break;
      std::vector<const internal::OnlinePart*> parts;
      for (const std::unique_ptr<Stream>& s : streams_) {
        if (!s->has_snapshot) continue;
        parts.push_back(&s->online);
        s->delivered = true;
      }
      snapshot_delivered_ = true;
      if (!callbacks_.on_snapshot) break;
      callbacks_.on_snapshot(
          internal::OnlinePart::Merge(parts, message.snapshot().server_time()));
      break;
    }
    case v1::WatchPresenceResponse::kChange:
      ApplyChange(stream, message.change(), message.sequence());
      break;
    case v1::WatchPresenceResponse::kChanges:
      for (const v1::PresenceChange& change : message.changes().changes()) {
        ApplyChange(stream, change, change.sequence());
      }
      break;
    default:  // a kind newer than this client
      break;
  }
}

void Watcher::ApplyChange(Stream& stream, const v1::PresenceChange& change,
                          uint64_t sequence) {
  stream.online.Apply(change);
  // Until its part is in a delivered snapshot, a shard's changes are in the
  // part only.
  if (stream.delivered) DeliverChange(change, sequence);
}

void Watcher::Run(Stream& stream) {
  absl::Duration backoff = options_.initial_backoff;
  for (bool first = true;; first = false) {
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      contexts_[stream.index] = &context;
    }
    if (sharded_ && !first) {
      // gRPC's own reconnect backoff (growing past a minute) would decide
      // when a shard that came back is tried again; this watcher's should.
      grpc::experimental::ChannelResetConnectionBackoff(stream.channel.get());
    }
    stream.delivered_since_connect = false;
    const grpc::Status status = Follow(stream, &context);
    {
      absl::MutexLock lock(&mu_);
      contexts_[stream.index] = nullptr;
      if (stopping_) return;
    }
    if (stream.delivered_since_connect) backoff = options_.initial_backoff;
    const bool permanent = IsPermanent(status.error_code());
    if (callbacks_.on_disconnect) {
      std::string error = status.error_message();
      if (sharded_) {
        error = absl::StrCat("shard ", stream.shard.name, " (",
                             stream.shard.target, "): ", error);
      }
      absl::MutexLock lock(&deliver_mu_);
      callbacks_.on_disconnect(
          absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                       error),
          permanent ? absl::InfiniteDuration() : backoff);
    }
    if (permanent) {
      // One shard's view alone is no view of everyone: all stop.
      EndAll();
      return;
    }
    {
      std::unique_lock<std::mutex> lock(backoff_mu_);
      backoff_cv_.wait_for(
          lock, absl::ToChronoNanoseconds(std::min(backoff, absl::Hours(24))),
          [this] { return backoff_stop_; });
    }
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

}  // namespace presence
