#ifndef PRESENCE_TOOLS_SOAK_LOAD_H_
#define PRESENCE_TOOLS_SOAK_LOAD_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "presence/client.h"
#include "tools/soak/call_stats.h"

namespace presence::soak {

// A load call to make, queued by the scheduler for the load's threads.
struct Job {
  enum Kind { kBatch, kHeartbeat, kMarkOffline };
  Kind kind = kBatch;
  // (user, session): one for kHeartbeat and kMarkOffline (an empty session
  // there ends every session), up to --batch for kBatch.
  std::vector<std::pair<int64_t, std::string>> items;
  absl::Time queued;
};

// The load's calls: a queue and the threads that make them, so that the
// scheduler keeps its pace however slowly presenced answers, and the wait
// in the queue shows when this machine cannot keep up.
//
// Thread-safe. The destructor makes the calls still queued, then joins the
// threads. `client` and `calls` must outlive the runner.
class LoadRunner {
 public:
  LoadRunner(presence::Client* client, CallStats* calls, int threads);
  ~LoadRunner();
  LoadRunner(const LoadRunner&) = delete;
  LoadRunner& operator=(const LoadRunner&) = delete;

  void Push(Job job);
  // Until every queued call has been answered.
  void AwaitIdle();

  // Heartbeats that presenced applied, and MarkOffline calls answered OK.
  int64_t heartbeats() const { return heartbeats_.load(); }
  int64_t mark_offlines() const { return mark_offlines_.load(); }
  // The longest a call waited in the queue, in ms: since the previous
  // TakeMaxLagMs(), and over the whole run.
  int64_t TakeMaxLagMs() { return recent_lag_ms_.exchange(0); }
  int64_t max_lag_ms() const { return max_lag_ms_.load(); }

 private:
  void Work();
  void RecordLag(absl::Time queued);
  void Run(const Job& job);
  void RunBatch(const Job& job);
  // Records a unary call's outcome, and counts it in `succeeded` if OK.
  void Count(absl::string_view method, const absl::Status& status,
             std::atomic<int64_t>& succeeded);

  presence::Client* const client_;
  CallStats* const calls_;
  std::atomic<int64_t> heartbeats_{0};
  std::atomic<int64_t> mark_offlines_{0};
  std::atomic<int64_t> recent_lag_ms_{0};
  std::atomic<int64_t> max_lag_ms_{0};
  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace presence::soak

#endif  // PRESENCE_TOOLS_SOAK_LOAD_H_
