// soak: presenced under steady, realistic load for minutes or hours, then a
// check that every watcher's view equals ListOnline (tools/soak/README.md;
// soak.h says what a run does). This file only reads the flags, once, into
// a SoakOptions and runs the soak with it.
//
//   soak --server=127.0.0.1:50051 --server_pid=PID --seconds=600
//       --csv=/tmp/soak.csv
//
// Exit status: 0 if every check holds and no call failed, 1 otherwise, 2 on
// bad usage.

#include <cstdint>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/time.h"
#include "service/program_usage.h"
#include "tools/soak/options.h"
#include "tools/soak/soak.h"

using presence::soak::SoakOptions;

// Every default comes from SoakOptions's member initializers.
ABSL_FLAG(std::string, server, SoakOptions().server,
          "presenced's HOST:PORT (the proxy resolves HOST itself).");
ABSL_FLAG(int, server_pid, SoakOptions().server_pid,
          "presenced's process id, to sample its RSS, threads and CPU time "
          "from /proc; 0: no samples of the server.");
ABSL_FLAG(std::string, csv, SoakOptions().csv,
          "Where to write the samples; empty: nowhere.");
ABSL_FLAG(double, seconds, SoakOptions().seconds,
          "Length of the steady phase.");
ABSL_FLAG(int64_t, users, SoakOptions().users,
          "Simulated users present at a time.");
ABSL_FLAG(int, batch, SoakOptions().batch, "Heartbeats per BatchHeartbeat.");
ABSL_FLAG(double, unary_fraction, SoakOptions().unary_fraction,
          "Users whose sessions beat with unary Heartbeat calls.");
ABSL_FLAG(double, churn_per_minute, SoakOptions().churn_per_minute,
          "Fraction of --users leaving per minute (as many arrive).");
ABSL_FLAG(double, tab_churn_per_minute, SoakOptions().tab_churn_per_minute,
          "Fraction of --users closing or opening a tab per minute.");
ABSL_FLAG(int, load_threads, SoakOptions().load_threads,
          "Threads making the load's calls.");
ABSL_FLAG(absl::Duration, tick, SoakOptions().tick,
          "Scheduling step of the heartbeats.");
ABSL_FLAG(absl::Duration, deadline, SoakOptions().deadline,
          "Deadline of each load call.");
ABSL_FLAG(int, watchers, SoakOptions().watchers, "presence::Watcher streams.");
ABSL_FLAG(double, everyone_fraction, SoakOptions().everyone_fraction,
          "Watchers that watch everyone; the others watch --subset_size ids.");
ABSL_FLAG(int, subset_size, SoakOptions().subset_size,
          "Users watched by a subset watcher.");
ABSL_FLAG(int, watch_connections, SoakOptions().watch_connections,
          "TCP connections (channels) the watchers share through the proxy.");
ABSL_FLAG(absl::Duration, cut_every, SoakOptions().cut_every,
          "Cut one proxy connection this often (its watchers resume).");
ABSL_FLAG(absl::Duration, cut_all_every, SoakOptions().cut_all_every,
          "Cut every proxy connection this often (a reconnect storm).");
ABSL_FLAG(absl::Duration, recreate_every, SoakOptions().recreate_every,
          "Destroy and recreate one watcher this often (a fresh snapshot).");
ABSL_FLAG(absl::Duration, sample_every, SoakOptions().sample_every,
          "Sampling period of the CSV.");
ABSL_FLAG(absl::Duration, progress_every, SoakOptions().progress_every,
          "Period of the progress lines on stderr.");
ABSL_FLAG(absl::Duration, warmup, SoakOptions().warmup,
          "Start of the steady phase left out of the RSS drift; 0: two "
          "online windows.");

namespace {

SoakOptions ReadFlags() {
  SoakOptions options;
  options.server = absl::GetFlag(FLAGS_server);
  options.server_pid = absl::GetFlag(FLAGS_server_pid);
  options.csv = absl::GetFlag(FLAGS_csv);
  options.seconds = absl::GetFlag(FLAGS_seconds);
  options.users = absl::GetFlag(FLAGS_users);
  options.batch = absl::GetFlag(FLAGS_batch);
  options.unary_fraction = absl::GetFlag(FLAGS_unary_fraction);
  options.churn_per_minute = absl::GetFlag(FLAGS_churn_per_minute);
  options.tab_churn_per_minute = absl::GetFlag(FLAGS_tab_churn_per_minute);
  options.load_threads = absl::GetFlag(FLAGS_load_threads);
  options.tick = absl::GetFlag(FLAGS_tick);
  options.deadline = absl::GetFlag(FLAGS_deadline);
  options.watchers = absl::GetFlag(FLAGS_watchers);
  options.everyone_fraction = absl::GetFlag(FLAGS_everyone_fraction);
  options.subset_size = absl::GetFlag(FLAGS_subset_size);
  options.watch_connections = absl::GetFlag(FLAGS_watch_connections);
  options.cut_every = absl::GetFlag(FLAGS_cut_every);
  options.cut_all_every = absl::GetFlag(FLAGS_cut_all_every);
  options.recreate_every = absl::GetFlag(FLAGS_recreate_every);
  options.sample_every = absl::GetFlag(FLAGS_sample_every);
  options.progress_every = absl::GetFlag(FLAGS_progress_every);
  options.warmup = absl::GetFlag(FLAGS_warmup);
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  // The flags live here, not in a file named after the binary (soak.cc),
  // where Abseil's --help would look for them.
  presence::SetUpProgramUsage(
      "tools/soak/main",
      "soak: presenced under steady load with watchers that disconnect and "
      "resume; every view checked (tools/soak/README.md).");
  absl::ParseCommandLine(argc, argv);
  presence::soak::Soak soak(ReadFlags());
  return soak.Run();
}
