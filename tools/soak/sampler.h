#ifndef PRESENCE_TOOLS_SOAK_SAMPLER_H_
#define PRESENCE_TOOLS_SOAK_SAMPLER_H_

#include <atomic>
#include <cstdint>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tools/process_sample.h"
#include "tools/soak/call_stats.h"
#include "tools/soak/load.h"
#include "tools/soak/watcher_view.h"

namespace presence::soak {

enum class Phase { kFill, kConnect, kSteady, kDrain, kFinal };

// The name in the CSV and the progress lines: "fill", "connect", ...
const char* PhaseName(Phase phase);

struct Sample {
  double elapsed_s = 0;
  Phase phase = Phase::kFill;
  ProcessSample process;
  // Simulated users present now, and ever seen (presenced keeps every
  // user's last_seen, so the latter grows its memory by design).
  int64_t present = 0;
  int64_t known = 0;
};

// Samples presenced (from /proc) and the soak's counters into the CSV, on a
// thread of its own, every `every`, and prints a progress line on stderr
// every `progress_every`. Keeps every sample for PrintMemory.
//
// Thread-safe. `calls`, `load` and `watch` must outlive the sampler.
class Sampler {
 public:
  // `pid` 0: presenced is not sampled. `csv` empty: no CSV; else it is
  // created here (see csv_ok()).
  Sampler(int pid, const std::string& csv, const CallStats* calls,
          LoadRunner* load, const WatchTotals* watch);
  ~Sampler() { Stop(); }
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // False if the CSV could not be written.
  bool csv_ok() const { return csv_.good(); }
  void Start(absl::Duration every, absl::Duration progress_every);
  // Stops the thread and takes one last sample; no-op if not started.
  void Stop();
  void set_phase(Phase phase);
  void set_population(int64_t present, int64_t known) {
    present_ = present;
    known_ = known;
  }
  std::vector<Sample> samples() const;
  // Seconds since the sampler was made: the clock of the CSV and summary.
  double Elapsed() const { return absl::ToDoubleSeconds(absl::Now() - start_); }

 private:
  Sample Take();
  void Progress(const Sample& sample);

  const int pid_;
  const CallStats* const calls_;
  LoadRunner* const load_;
  const WatchTotals* const watch_;
  const absl::Time start_ = absl::Now();
  std::atomic<int64_t> present_{0};
  std::atomic<int64_t> known_{0};
  absl::Notification stop_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kFill;
  std::vector<Sample> samples_ ABSL_GUARDED_BY(mu_);
  std::ofstream csv_ ABSL_GUARDED_BY(mu_);
};

// When the steady phase ran, in Sampler::Elapsed() seconds: the RSS drift is
// measured from the end of its warm-up to its end.
struct SteadySpan {
  double start_s = 0;
  double warmup_end_s = 0;
  double end_s = 0;
};

// The summary's lines on presenced's RSS, threads and CPU over the run, and
// its RSS drift after the warm-up, in two halves: memory that settles
// (allocator high-water marks after the first reconnect storms) grows in
// the first half only, a leak in both.
void PrintMemory(const std::vector<Sample>& samples, const SteadySpan& steady);

}  // namespace presence::soak

#endif  // PRESENCE_TOOLS_SOAK_SAMPLER_H_
