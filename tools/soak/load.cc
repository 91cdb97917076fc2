#include "tools/soak/load.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"

namespace presence::soak {

LoadRunner::LoadRunner(presence::Client* client, CallStats* calls, int threads)
    : client_(client), calls_(calls) {
  for (int t = 0; t < threads; ++t) {
    threads_.emplace_back([this] { Work(); });
  }
}

LoadRunner::~LoadRunner() {
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  for (auto& t : threads_) t.join();
}

void LoadRunner::Push(Job job) {
  job.queued = absl::Now();
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(job));
}

void LoadRunner::AwaitIdle() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.empty() && busy_ == 0;
  };
  mu_.Await(absl::Condition(&idle));
}

void LoadRunner::Work() {
  for (;;) {
    Job job;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return closing_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
    }
    RecordLag(job.queued);
    Run(job);
    absl::MutexLock lock(&mu_);
    --busy_;
  }
}

void LoadRunner::RecordLag(absl::Time queued) {
  const int64_t lag = absl::ToInt64Milliseconds(absl::Now() - queued);
  for (std::atomic<int64_t>* max : {&recent_lag_ms_, &max_lag_ms_}) {
    int64_t seen = max->load();
    while (lag > seen && !max->compare_exchange_weak(seen, lag)) {
    }
  }
}

void LoadRunner::Run(const Job& job) {
  switch (job.kind) {
    case Job::kBatch:
      RunBatch(job);
      return;
    case Job::kHeartbeat: {
      const auto& [user, session] = job.items.front();
      Count("Heartbeat", client_->Heartbeat(user, session).status(),
            heartbeats_);
      return;
    }
    case Job::kMarkOffline: {
      const auto& [user, session] = job.items.front();
      Count("MarkOffline", client_->MarkOffline(user, session).status(),
            mark_offlines_);
      return;
    }
  }
}

void LoadRunner::Count(absl::string_view method, const absl::Status& status,
                       std::atomic<int64_t>& succeeded) {
  calls_->Record(method, status.code());
  if (status.ok()) ++succeeded;
}

void LoadRunner::RunBatch(const Job& job) {
  v1::BatchHeartbeatRequest request;
  for (const auto& [user, session] : job.items) {
    v1::HeartbeatRequest* beat = request.add_heartbeats();
    beat->set_user_id(user);
    beat->set_session_id(session);
  }
  absl::StatusOr<v1::BatchHeartbeatResponse> response =
      client_->BatchHeartbeat(request);
  calls_->Record("BatchHeartbeat", response.status().code());
  if (!response.ok()) return;
  if (response->results_size() != request.heartbeats_size()) {
    calls_->Record("BatchHeartbeat results count", absl::StatusCode::kInternal);
  }
  int64_t applied = 0;
  for (const auto& result : response->results()) {
    if (result.has_error()) {
      calls_->Record("BatchHeartbeat item",
                     static_cast<absl::StatusCode>(result.error().code()));
    } else {
      ++applied;
    }
  }
  heartbeats_ += applied;
}

}  // namespace presence::soak
