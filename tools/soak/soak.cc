#include "tools/soak/soak.h"

#include <algorithm>
#include <cstdio>
#include <thread>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "service/proto_time.h"
#include "tools/process_sample.h"
#include "tools/soak/sorted_ids.h"

namespace presence::soak {
namespace {

// The load goes to presenced directly: only the watchers' connections are
// cut, through the proxy.
presence::ClientOptions LoadClientOptions(const SoakOptions& options) {
  presence::ClientOptions client;
  client.target = options.server;
  client.deadline = options.deadline;
  return client;
}

}  // namespace

Soak::Soak(SoakOptions options)
    : options_(std::move(options)),
      load_client_(LoadClientOptions(options_)),
      load_(&load_client_, &calls_, options_.load_threads),
      sampler_(options_.server_pid, options_.csv, &calls_, &load_, &watch_),
      watchers_(options_, &watch_, &calls_) {}

int Soak::Run() {
  if (int usage = CheckUsage(); usage != 0) return usage;
  sampler_.Start(options_.sample_every, options_.progress_every);
  if (absl::Status learned = Learn(); !learned.ok()) {
    std::fprintf(stderr, "soak: presenced at %s: %s\n", options_.server.c_str(),
                 learned.ToString().c_str());
    return 1;
  }
  Fill();

  sampler_.set_phase(Phase::kConnect);
  if (absl::Status started = watchers_.Start(population_->max_user_id());
      !started.ok()) {
    Fail(absl::StrCat("watchers: ", started.ToString()));
    Summarize(false);
    return 1;
  }
  connect_s_ = sampler_.Elapsed();

  RunSteady();
  Drain();

  sampler_.set_phase(Phase::kFinal);
  const bool checked = Check();
  watchers_.Stop();
  sampler_.Stop();
  CollectFailures();
  const bool passed = checked && failures_.empty();
  Summarize(passed);
  return passed ? 0 : 1;
}

int Soak::CheckUsage() const {
  if (options_.users < 1 || options_.batch < 1 || options_.load_threads < 1 ||
      options_.tick <= absl::ZeroDuration()) {
    std::fprintf(stderr,
                 "soak: --users, --batch, --load_threads and --tick must be "
                 "positive\n");
    return 2;
  }
  if (!options_.csv.empty() && !sampler_.csv_ok()) {
    std::fprintf(stderr, "soak: cannot write %s\n", options_.csv.c_str());
    return 2;
  }
  return 0;
}

// From the answer to a heartbeat of a throwaway session of user 1, ended at
// once: the flags presenced was started with are not ours to read.
absl::Status Soak::Learn() {
  absl::StatusOr<v1::HeartbeatResponse> beat =
      load_client_.Heartbeat(1, "soak-probe");
  calls_.Record("Heartbeat", beat.status().code());
  if (!beat.ok()) return beat.status();
  interval_ = FromProto(beat->heartbeat_interval());
  window_ = FromProto(beat->online_until()) - FromProto(beat->server_time());
  absl::Status ended = load_client_.MarkOffline(1, "soak-probe").status();
  calls_.Record("MarkOffline", ended.code());
  return ended;
}

void Soak::Fill() {
  const int ticks =
      static_cast<int>(std::max<int64_t>(1, interval_ / options_.tick));
  population_ = std::make_unique<Population>(
      options_.users, options_.unary_fraction, ticks, &load_, options_.batch);
  absl::FPrintF(stderr,
                "soak: heartbeat_interval %s, online_window %s; %d users, %d "
                "watchers, %.0f s steady\n",
                absl::FormatDuration(interval_), absl::FormatDuration(window_),
                options_.users, options_.watchers, options_.seconds);
  population_->BeatEveryone();
  load_.AwaitIdle();
  sampler_.set_population(static_cast<int64_t>(population_->present().size()),
                          population_->max_user_id());
  fill_s_ = sampler_.Elapsed();
}

void Soak::RunSteady() {
  sampler_.set_phase(Phase::kSteady);
  steady_start_s_ = sampler_.Elapsed();
  absl::Notification stop;
  std::thread disruptor([this, &stop] { watchers_.Disrupt(&stop); });
  Drive(absl::Now() + absl::Seconds(options_.seconds), true);
  stop.Notify();
  disruptor.join();
  steady_end_s_ = sampler_.Elapsed();
}

// Leavers' last heartbeats may still wait in the queue: let them expire
// (3 s: a call's own time, and the sweeper's second to announce it).
void Soak::Drain() {
  sampler_.set_phase(Phase::kDrain);
  Drive(absl::Now() + window_ + absl::Seconds(3) +
            absl::Milliseconds(load_.max_lag_ms()),
        false);
  load_.AwaitIdle();
}

void Soak::Drive(absl::Time end, bool churn) {
  const absl::Duration tick = options_.tick;
  // Users per tick for a rate of 1 (all of them) per minute.
  const double all_per_tick =
      static_cast<double>(options_.users) / 60 * absl::ToDoubleSeconds(tick);
  const double leaves = options_.churn_per_minute * all_per_tick;
  const double tabs = options_.tab_churn_per_minute * all_per_tick;
  absl::Time next = absl::Now();
  while (next < end) {
    population_->BeatTick(tick_++);
    if (churn) Churn(leaves, tabs);
    sampler_.set_population(static_cast<int64_t>(population_->present().size()),
                            population_->max_user_id());
    next += tick;
    absl::SleepFor(next - absl::Now());
  }
}

// Rates below one a tick carry over as credit, so that churn keeps its rate
// at any --tick.
void Soak::Churn(double leaves, double tabs) {
  for (leave_credit_ += leaves; leave_credit_ >= 1; leave_credit_ -= 1) {
    population_->Leave();
    population_->Arrive();
  }
  for (tab_credit_ += tabs; tab_credit_ >= 1; tab_credit_ -= 1) {
    population_->TabChurn();
  }
}

bool Soak::Check() {
  // Every present session beats now, so nobody expires during the check.
  const absl::Time refreshed = absl::Now();
  population_->BeatEveryone();
  load_.AwaitIdle();
  if (!SendSentinel()) return false;
  bool ok = AwaitSentinel();
  absl::StatusOr<std::vector<int64_t>> listed = load_client_.ListAllOnline();
  calls_.Record("ListOnline", listed.status().code());
  if (!listed.ok()) {
    Fail(absl::StrCat("ListAllOnline: ", listed.status().ToString()));
    return false;
  }
  const std::vector<int64_t> online = Minus(*listed, {kSentinelUser});
  ok = CompareWithSimulation(online) && ok;
  ok = CompareViews(online) && ok;
  ok = CheckUnchanged(*listed, refreshed) && ok;
  return ok;
}

bool Soak::SendSentinel() {
  absl::StatusOr<v1::HeartbeatResponse> sentinel =
      load_client_.Heartbeat(kSentinelUser, "soak-sentinel");
  calls_.Record("Heartbeat", sentinel.status().code());
  if (!sentinel.ok()) {
    Fail(absl::StrCat("sentinel heartbeat: ", sentinel.status().ToString()));
    return false;
  }
  return true;
}

// Each stream is in order: a watcher with the sentinel has every change made
// before it, so the views can be compared once every watcher has it.
bool Soak::AwaitSentinel() {
  const absl::Time sent = absl::Now();
  const int behind = watchers_.AwaitSentinel(sent + absl::Seconds(60));
  notes_.push_back(
      absl::StrFormat("sentinel reached all watchers in %.0f ms",
                      absl::ToDoubleMilliseconds(absl::Now() - sent)));
  if (behind > 0) {
    Fail(absl::StrCat(behind, " watchers never saw the sentinel in 60 s"));
    return false;
  }
  return true;
}

bool Soak::CompareWithSimulation(const std::vector<int64_t>& online) {
  std::vector<int64_t> present = population_->present();
  std::sort(present.begin(), present.end());
  const std::vector<int64_t> missing = Minus(present, online);
  const std::vector<int64_t> extra = Minus(online, present);
  notes_.push_back(absl::StrFormat(
      "ListOnline: %d online; simulation: %d present; %d missing, %d extra",
      online.size(), present.size(), missing.size(), extra.size()));
  if (!missing.empty() || !extra.empty()) {
    Fail(absl::StrCat("ListOnline differs from the simulation: missing ",
                      Head(missing), " extra ", Head(extra)));
    return false;
  }
  return true;
}

bool Soak::CompareViews(const std::vector<int64_t>& online) {
  mismatched_ = watchers_.CountMismatches(online);
  if (mismatched_ > 0) {
    Fail(absl::StrCat(mismatched_, " of ", watchers_.size(),
                      " watchers' views differ from ListOnline"));
    return false;
  }
  return true;
}

// The comparison is only sound if nothing changed while it ran, and only
// meant something if nobody could expire during it.
bool Soak::CheckUnchanged(const std::vector<int64_t>& listed,
                          absl::Time refreshed) {
  bool ok = true;
  absl::StatusOr<std::vector<int64_t>> again = load_client_.ListAllOnline();
  calls_.Record("ListOnline", again.status().code());
  check_took_ = absl::Now() - refreshed;
  if (!again.ok() || *again != listed) {
    Fail("ListOnline changed during the check");
    ok = false;
  }
  if (check_took_ >= window_) {
    Fail(absl::StrCat("the check took ", absl::FormatDuration(check_took_),
                      ", longer than the online window"));
    ok = false;
  }
  return ok;
}

void Soak::CollectFailures() {
  if (calls_.errors() > 0) {
    // Watchers' UNAVAILABLE is what a cut connection gives; anything else
    // (and any failed load call) is a finding.
    int64_t unexpected = 0;
    for (const auto& [what, n] : calls_.counts()) {
      if (absl::EndsWith(what, " OK")) continue;
      if (what == "WatchPresence UNAVAILABLE") continue;
      unexpected += n;
    }
    if (unexpected > 0) Fail(absl::StrCat(unexpected, " calls failed"));
  }
  for (const auto& [what, n] : std::vector<std::pair<const char*, int64_t>>{
           {"changes out of sequence", watch_.sequence_errors.load()},
           {"changes that changed nothing (lost or repeated events)",
            watch_.redundant_changes.load()},
           {"epoch changes", watch_.epoch_changes.load()},
           {"watchers gave up", watch_.gave_up.load()}}) {
    if (n > 0) Fail(absl::StrCat(n, " ", what));
  }
  if (options_.server_pid > 0 && ReadProcess(options_.server_pid).rss_kb < 0) {
    Fail("presenced is gone");
  }
}

void Soak::Summarize(bool passed) {
  absl::PrintF("== soak summary ==\n");
  PrintLoad();
  PrintChurn();
  absl::PrintF("calls by code:");
  for (const auto& [what, n] : calls_.counts()) {
    absl::PrintF(" %s %d;", what, n);
  }
  absl::PrintF("\n");
  PrintWatchers();
  PrintChecks();
  if (options_.server_pid > 0) {
    const double warmup_s = absl::ToDoubleSeconds(
        options_.warmup > absl::ZeroDuration() ? options_.warmup : 2 * window_);
    PrintMemory(sampler_.samples(),
                {steady_start_s_, steady_start_s_ + warmup_s, steady_end_s_});
  }
  absl::PrintF("soak: %s\n", passed ? "PASS" : "FAIL");
  for (const std::string& failure : failures_) {
    absl::PrintF("soak: failed: %s\n", failure);
  }
}

void Soak::PrintLoad() {
  const int everyone = watchers_.everyone();
  absl::PrintF(
      "load: %d users, %d watchers (%d of everyone, %d of %d users each), "
      "heartbeat_interval %s, online_window %s\n",
      options_.users, watchers_.size(), everyone, watchers_.size() - everyone,
      options_.subset_size, absl::FormatDuration(interval_),
      absl::FormatDuration(window_));
  absl::PrintF(
      "phases: fill done at %.1f s, watchers connected at %.1f s, steady "
      "%.1f-%.1f s, drain and check until %.1f s\n",
      fill_s_, connect_s_, steady_start_s_, steady_end_s_, sampler_.Elapsed());
  absl::PrintF(
      "load: %d heartbeats (%.0f/s over the run), %d MarkOffline; longest "
      "wait of a call in the queue %d ms\n",
      load_.heartbeats(),
      load_.heartbeats() / std::max(1e-9, sampler_.Elapsed()),
      load_.mark_offlines(), load_.max_lag_ms());
  if (absl::Milliseconds(load_.max_lag_ms()) > window_ - interval_) {
    absl::PrintF(
        "load: the queue fell behind by more than online_window - "
        "heartbeat_interval: this machine could not keep the load steady "
        "(the changes line says whether users flapped)\n");
  }
}

void Soak::PrintChurn() {
  if (population_ == nullptr) return;
  absl::PrintF("churn: %s\n", population_->ChurnSummary());
  const uint64_t made = watch_.sentinel_sequence.load();
  if (made == 0) return;
  // Less 3: the probe's two changes and the sentinel's.
  const int64_t intended = population_->intended_transitions();
  absl::PrintF(
      "changes: presenced made %d online/offline changes; the simulation "
      "meant at most %d; %d more (users who expired while present, as "
      "their heartbeats came late, or a heartbeat that overtook its "
      "user's logout in the load's queue)\n",
      made - 3, intended,
      std::max<int64_t>(0, static_cast<int64_t>(made) - 3 - intended));
}

void Soak::PrintWatchers() {
  absl::PrintF(
      "watchers: %d snapshots and %d changes received; %d proxy cuts (%d "
      "connections), %d watchers recreated\n",
      watch_.snapshots.load(), watch_.changes.load(), watchers_.cuts(),
      watchers_.cut_connections(), watchers_.recreated());
  absl::PrintF(
      "watchers: %d disconnects: %d then resumed by sequence, %d got a "
      "snapshot instead, %d had no message before the next disconnect or the "
      "end, %d came before the stream's first snapshot\n",
      watch_.disconnects.load(), watch_.resumed.load(),
      watch_.resnapshotted.load(),
      watch_.disconnects.load() - watch_.resumed.load() -
          watch_.resnapshotted.load() - watch_.before_first_message.load(),
      watch_.before_first_message.load());
  absl::PrintF(
      "stream checks: %d changes out of sequence, %d that changed nothing, %d "
      "epoch changes, %d watchers gave up\n",
      watch_.sequence_errors.load(), watch_.redundant_changes.load(),
      watch_.epoch_changes.load(), watch_.gave_up.load());
}

void Soak::PrintChecks() {
  for (const std::string& note : notes_) absl::PrintF("check: %s\n", note);
  absl::PrintF(
      "check: %d of %d watchers' views differ from ListOnline (%d ms from the "
      "refresh to the second listing)\n",
      mismatched_, watchers_.size(), absl::ToInt64Milliseconds(check_took_));
}

void Soak::Fail(const std::string& what) {
  failures_.push_back(what);
  std::fprintf(stderr, "soak: FAIL: %s\n", what.c_str());
}

}  // namespace presence::soak
