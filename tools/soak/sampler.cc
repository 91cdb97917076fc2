#include "tools/soak/sampler.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_format.h"

namespace presence::soak {

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kFill:
      return "fill";
    case Phase::kConnect:
      return "connect";
    case Phase::kSteady:
      return "steady";
    case Phase::kDrain:
      return "drain";
    case Phase::kFinal:
      return "final";
  }
  return "?";
}

Sampler::Sampler(int pid, const std::string& csv, const CallStats* calls,
                 LoadRunner* load, const WatchTotals* watch)
    : pid_(pid), calls_(calls), load_(load), watch_(watch) {
  if (!csv.empty()) {
    csv_.open(csv);
    csv_ << "elapsed_s,phase,rss_kb,hwm_kb,threads,cpu_s,present_users,"
            "known_users,"
            "heartbeats,mark_offlines,load_errors,watcher_disconnects,"
            "resumed,resnapshotted,changes_received,max_queue_lag_ms\n";
  }
}

void Sampler::Start(absl::Duration every, absl::Duration progress_every) {
  thread_ = std::thread([this, every, progress_every] {
    absl::Time next_progress = start_ + progress_every;
    do {
      const Sample sample = Take();
      if (absl::Now() >= next_progress) {
        Progress(sample);
        next_progress += progress_every;
      }
    } while (!stop_.WaitForNotificationWithTimeout(every));
  });
}

void Sampler::Stop() {
  if (!thread_.joinable()) return;
  stop_.Notify();
  thread_.join();
  Take();  // the last one
}

void Sampler::set_phase(Phase phase) {
  absl::MutexLock lock(&mu_);
  phase_ = phase;
}

std::vector<Sample> Sampler::samples() const {
  absl::MutexLock lock(&mu_);
  return samples_;
}

Sample Sampler::Take() {
  Sample sample;
  sample.elapsed_s = Elapsed();
  if (pid_ > 0) sample.process = ReadProcess(pid_);
  sample.present = present_.load();
  sample.known = known_.load();
  absl::MutexLock lock(&mu_);
  sample.phase = phase_;
  samples_.push_back(sample);
  if (csv_.is_open()) {
    csv_ << absl::StrFormat(
        "%.1f,%s,%d,%d,%d,%.2f,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d\n",
        sample.elapsed_s, PhaseName(sample.phase), sample.process.rss_kb,
        sample.process.hwm_kb, sample.process.threads,
        sample.process.cpu_seconds, sample.present, sample.known,
        load_->heartbeats(), load_->mark_offlines(), calls_->errors(),
        watch_->disconnects.load(), watch_->resumed.load(),
        watch_->resnapshotted.load(), watch_->changes.load(),
        load_->TakeMaxLagMs());
    csv_.flush();
  }
  return sample;
}

void Sampler::Progress(const Sample& sample) {
  absl::FPrintF(
      stderr,
      "soak: %5.0fs %-7s rss %.1f MB, %d threads, %d present, %d "
      "heartbeats, %d load errors, %d watcher disconnects (%d resumed, %d "
      "snapshots)\n",
      sample.elapsed_s, PhaseName(sample.phase), sample.process.rss_kb / 1024.0,
      sample.process.threads, present_.load(), load_->heartbeats(),
      calls_->errors(), watch_->disconnects.load(), watch_->resumed.load(),
      watch_->resnapshotted.load());
}

namespace {

std::string Megabytes(int64_t kb) {
  return absl::StrFormat("%.1f MB", kb / 1024.0);
}

// The samples the drift is measured at: the first at or after the end of
// the warm-up and the middle of what follows, and the last one of the
// steady phase. Null where there is none.
struct DriftPoints {
  const Sample* warmup = nullptr;
  const Sample* middle = nullptr;
  const Sample* steady_end = nullptr;
  int64_t max_rss = 0;
  int64_t max_threads = 0;
};

DriftPoints FindDriftPoints(const std::vector<Sample>& samples,
                            const SteadySpan& steady) {
  const double middle_s = (steady.warmup_end_s + steady.end_s) / 2;
  DriftPoints points;
  for (const Sample& s : samples) {
    if (s.process.rss_kb < 0) continue;
    points.max_rss = std::max(points.max_rss, s.process.rss_kb);
    points.max_threads = std::max(points.max_threads, s.process.threads);
    if (points.warmup == nullptr && s.elapsed_s >= steady.warmup_end_s) {
      points.warmup = &s;
    }
    if (points.middle == nullptr && s.elapsed_s >= middle_s) {
      points.middle = &s;
    }
    if (s.elapsed_s <= steady.end_s) points.steady_end = &s;
  }
  return points;
}

}  // namespace

void PrintMemory(const std::vector<Sample>& samples, const SteadySpan& steady) {
  if (samples.empty()) return;
  const DriftPoints p = FindDriftPoints(samples, steady);
  const Sample& first = samples.front();
  const Sample& last = samples.back();
  absl::PrintF(
      "presenced: RSS at start %s, max %s, at the end %s; threads %d at "
      "start, max %d, %d at the end; %.1f CPU seconds\n",
      Megabytes(first.process.rss_kb), Megabytes(p.max_rss),
      Megabytes(last.process.rss_kb), first.process.threads, p.max_threads,
      last.process.threads,
      last.process.cpu_seconds - first.process.cpu_seconds);
  if (p.warmup == nullptr || p.middle == nullptr || p.steady_end == nullptr ||
      p.steady_end->elapsed_s <= p.warmup->elapsed_s) {
    absl::PrintF(
        "presenced: RSS drift not computed: the steady phase is shorter "
        "than the warm-up (%.0f s)\n",
        steady.warmup_end_s - steady.start_s);
    return;
  }
  auto mb = [](const Sample* from, const Sample* to) {
    return (to->process.rss_kb - from->process.rss_kb) / 1024.0;
  };
  absl::PrintF(
      "presenced: RSS drift %+.1f MB from warm-up (%s at %.0f s) to the end "
      "of steady (%s at %.0f s): %+.1f MB in the first half, %+.1f MB in "
      "the second (from %.0f s); users ever seen %d, %d, %d at those "
      "moments\n",
      mb(p.warmup, p.steady_end), Megabytes(p.warmup->process.rss_kb),
      p.warmup->elapsed_s, Megabytes(p.steady_end->process.rss_kb),
      p.steady_end->elapsed_s, mb(p.warmup, p.middle),
      mb(p.middle, p.steady_end), p.middle->elapsed_s, p.warmup->known,
      p.middle->known, p.steady_end->known);
}

}  // namespace presence::soak
