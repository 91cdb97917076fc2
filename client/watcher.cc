#include "presence/watcher.h"

#include <algorithm>
#include <utility>

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

Watcher::Watcher(std::shared_ptr<grpc::Channel> channel, WatcherOptions options,
                 WatcherCallbacks callbacks)
    : options_(std::move(options)),
      callbacks_(std::move(callbacks)),
      stub_(v1::PresenceService::NewStub(channel)),
      thread_([this] { Run(); }) {}

Watcher::~Watcher() { Stop(); }

void Watcher::Stop() {
  absl::MutexLock stop_lock(&stop_mu_);  // one join at a time
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  {
    std::lock_guard<std::mutex> lock(backoff_mu_);
    backoff_stop_ = true;
  }
  backoff_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

grpc::Status Watcher::Follow(grpc::ClientContext* context) {
  v1::WatchPresenceRequest request;
  request.mutable_user_ids()->Add(options_.user_ids.begin(),
                                  options_.user_ids.end());
  request.set_max_batch(options_.max_batch);
  if (epoch_.empty()) {
    request.set_send_snapshot(true);
  } else {
    // presenced replays what came after, or sends a snapshot if it cannot.
    request.set_epoch(epoch_);
    request.set_resume_after(sequence_);
  }
  std::unique_ptr<grpc::ClientReader<v1::WatchPresenceResponse>> reader =
      stub_->WatchPresence(context, request);
  v1::WatchPresenceResponse message;
  while (reader->Read(&message)) Deliver(message);
  return reader->Finish();
}

void Watcher::Deliver(const v1::WatchPresenceResponse& message) {
  // A message is delivered whole before the next Read(), so its sequence,
  // which is its last change's, is where a new stream resumes.
  epoch_ = message.epoch();
  sequence_ = message.sequence();
  delivered_since_connect_ = true;
  if (callbacks_.on_message) callbacks_.on_message(message);
  switch (message.event_case()) {
    case v1::WatchPresenceResponse::kSnapshot:
      if (callbacks_.on_snapshot) callbacks_.on_snapshot(message.snapshot());
      break;
    case v1::WatchPresenceResponse::kChange:
      if (!callbacks_.on_change) break;
      if (message.change().sequence() != 0) {
        callbacks_.on_change(message.change());
      } else {
        // From a presenced older than PresenceChange.sequence.
        v1::PresenceChange change = message.change();
        change.set_sequence(message.sequence());
        callbacks_.on_change(change);
      }
      break;
    case v1::WatchPresenceResponse::kChanges:
      if (!callbacks_.on_change) break;
      for (const v1::PresenceChange& change : message.changes().changes()) {
        callbacks_.on_change(change);
      }
      break;
    default:  // a kind newer than this client
      break;
  }
}

void Watcher::Run() {
  absl::Duration backoff = options_.initial_backoff;
  for (;;) {
    grpc::ClientContext context;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      context_ = &context;
    }
    delivered_since_connect_ = false;
    const grpc::Status status = Follow(&context);
    {
      absl::MutexLock lock(&mu_);
      context_ = nullptr;
      if (stopping_) return;
    }
    if (delivered_since_connect_) backoff = options_.initial_backoff;
    const bool permanent = IsPermanent(status.error_code());
    if (callbacks_.on_disconnect) {
      callbacks_.on_disconnect(
          absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                       status.error_message()),
          permanent ? absl::InfiniteDuration() : backoff);
    }
    if (permanent) return;
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
