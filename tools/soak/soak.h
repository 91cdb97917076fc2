#ifndef PRESENCE_TOOLS_SOAK_SOAK_H_
#define PRESENCE_TOOLS_SOAK_SOAK_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "presence/client.h"
#include "tools/soak/call_stats.h"
#include "tools/soak/load.h"
#include "tools/soak/options.h"
#include "tools/soak/population.h"
#include "tools/soak/sampler.h"
#include "tools/soak/watcher_fleet.h"
#include "tools/soak/watcher_view.h"

namespace presence::soak {

// One soak run against a running presenced (tools/soak/README.md).
//
// Simulates --users users with 1-3 sessions each, every session beating once
// per heartbeat_interval (learned from presenced's answer), spread evenly
// over the interval (Population, LoadRunner). Users leave and arrive, and
// tabs close and open. --watchers presence::Watcher streams, some watching
// everyone and the others a random subset, reach presenced through a TCP
// proxy that cuts their connections from time to time (WatcherFleet).
//
// Phases: fill (one heartbeat of every session, before the watchers start),
// connect, steady (--seconds, with churn and disruption), drain (no churn
// and no disconnects, for one online_window and a margin, so that leavers
// have expired), final (refresh every live session, one heartbeat of the
// sentinel user that every watcher watches, wait until each watcher has it,
// then compare each view with ListAllOnline, and ListAllOnline with what the
// simulation did). Samples go to --csv all along (Sampler).
//
// Run() once, from one thread; it starts and joins the threads it needs.
class Soak {
 public:
  explicit Soak(SoakOptions options);
  Soak(const Soak&) = delete;
  Soak& operator=(const Soak&) = delete;

  // Runs every phase and prints the summary on stdout. Returns the exit
  // status: 0 if every check holds and no call failed, 1 otherwise, 2 if
  // the options cannot make a run.
  int Run();

 private:
  // 2 with a message on stderr if the options cannot make a run, else 0.
  int CheckUsage() const;
  // The interval and window presenced runs with.
  absl::Status Learn();
  // Makes the population and beats every session once.
  void Fill();
  void RunSteady();
  void Drain();
  // Schedules heartbeats (and churn, if `churn`) until `end`.
  void Drive(absl::Time end, bool churn);
  void Churn(double leaves, double tabs);

  // The final check; false if anything in it failed.
  bool Check();
  // One heartbeat of the sentinel user; false if it failed.
  bool SendSentinel();
  bool AwaitSentinel();
  bool CompareWithSimulation(const std::vector<int64_t>& online);
  bool CompareViews(const std::vector<int64_t>& online);
  bool CheckUnchanged(const std::vector<int64_t>& listed, absl::Time refreshed);
  // Failures seen over the whole run: failed calls, broken stream promises,
  // presenced gone.
  void CollectFailures();

  void Summarize(bool passed);
  void PrintLoad();
  void PrintChurn();
  void PrintWatchers();
  void PrintChecks();
  void Fail(const std::string& what);

  const SoakOptions options_;
  CallStats calls_;
  WatchTotals watch_;
  presence::Client load_client_;
  LoadRunner load_;
  Sampler sampler_;
  std::unique_ptr<Population> population_;
  WatcherFleet watchers_;
  absl::Duration interval_, window_;
  int64_t tick_ = 0;
  double leave_credit_ = 0, tab_credit_ = 0;
  double fill_s_ = 0, connect_s_ = 0, steady_start_s_ = 0, steady_end_s_ = 0;
  absl::Duration check_took_;
  int mismatched_ = 0;
  std::vector<std::string> failures_;
  std::vector<std::string> notes_;
};

}  // namespace presence::soak

#endif  // PRESENCE_TOOLS_SOAK_SOAK_H_
