// presenced: the presence gRPC server. See README.md for the flags' effects.

#include <pthread.h>
#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/log.h"
#include "service/presence_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "HOST:PORT to serve gRPC on. Port 0 picks a free port; the "
          "'serving on' log line names it.");
ABSL_FLAG(std::string, metrics_listen, "",
          "HOST:PORT to serve Prometheus metrics on, at /metrics (plain "
          "HTTP). Port 0 picks a free port; the 'metrics on' log line names "
          "it. Empty: no metrics.");
ABSL_FLAG(std::string, db, "presence.db",
          "SQLite database file, created if missing. DB.lock beside it keeps "
          "a second presenced off the same file.");
ABSL_FLAG(absl::Duration, online_window, absl::Minutes(5),
          "A user is online while one of their sessions had a heartbeat "
          "less than this long ago. At least 2 x --heartbeat_interval.");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Minutes(2),
          "The heartbeat period presenced asks clients to keep (returned in "
          "every HeartbeatResponse).");
ABSL_FLAG(std::string, durability, "commit",
          "commit: a change is answered only after it is committed to SQLite "
          "(synchronous=FULL), so nothing answered is lost, even on power "
          "loss. async: answered at once and committed within "
          "--commit_interval; a crash can lose that much.");
ABSL_FLAG(absl::Duration, commit_interval, absl::Milliseconds(100),
          "With --durability=async: the longest an answered change waits "
          "before its commit starts.");
ABSL_FLAG(int32_t, max_ids_per_request, 10'000,
          "The most user ids one ListOnline, GetPresence or WatchPresence "
          "request may carry (more is INVALID_ARGUMENT).");
ABSL_FLAG(int32_t, max_watchers, 10'000,
          "The most WatchPresence streams at once; more are refused with "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, watch_ring_size, 65'536,
          "Presence changes kept in memory so that a watcher can resume "
          "after a disconnect (resume_after + epoch) without a new snapshot.");
ABSL_FLAG(int32_t, watcher_queue_size, 1'024,
          "Changes queued for one watcher that reads too slowly; past this "
          "its queue is replaced by one fresh snapshot, so a stuck watcher "
          "cannot grow presenced's memory.");

namespace {

constexpr char kUsage[] =
    "presenced: who is online, over gRPC, persisted in SQLite.\n\n"
    "  presenced [--listen=127.0.0.1:50051] [--db=presence.db] [flags]\n\n"
    "SIGTERM or SIGINT shuts down gracefully: stop accepting, finish calls in "
    "flight, commit, exit 0.";

int Fail(const std::string& message) {
  std::fprintf(stderr, "presenced: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::FlagsUsageConfig usage_config;
  // --help lists the flags of this file (Abseil's default looks for a file
  // named after the binary).
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "server_main");
  };
  usage_config.contains_helpshort_flags = usage_config.contains_help_flags;
  absl::SetFlagsUsageConfig(usage_config);
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  // Debian's Abseil checks every Mutex::Lock for lock-order cycles: under
  // load its mutex code took ~8% of presenced's samples in a profile, 1.5%
  // in the cycle detector itself. The tests keep the check (they do not
  // call this).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  if (rest.size() > 1) {
    return Fail(absl::StrCat("unexpected argument '", rest[1],
                             "'; flags are --name=value, see --help"));
  }

  presence::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.db_path = absl::GetFlag(FLAGS_db);
  options.online_window = absl::GetFlag(FLAGS_online_window);
  options.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  options.commit_interval = absl::GetFlag(FLAGS_commit_interval);
  options.limits.max_ids_per_request = absl::GetFlag(FLAGS_max_ids_per_request);
  options.watch.max_watchers = absl::GetFlag(FLAGS_max_watchers);
  options.watch.ring_size = absl::GetFlag(FLAGS_watch_ring_size);
  options.watch.queue_size = absl::GetFlag(FLAGS_watcher_queue_size);
  const std::string durability = absl::GetFlag(FLAGS_durability);
  if (durability == "commit") {
    options.durability = presence::Durability::kCommit;
  } else if (durability == "async") {
    options.durability = presence::Durability::kAsync;
  } else {
    return Fail(absl::StrCat("--durability must be 'commit' or 'async', got '",
                             durability, "'"));
  }
  if (absl::Status s = presence::ValidateServerOptions(options); !s.ok()) {
    return Fail(absl::StrCat("--", s.message()));
  }

  // Block the shutdown signals before any thread starts, so that every
  // thread inherits the mask and only sigwait() below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<presence::PresenceServer>> server =
      presence::PresenceServer::Start(options);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  if (const std::string& metrics = (*server)->metrics_address();
      !metrics.empty()) {
    presence::LogInfo(absl::StrCat("metrics on http://", metrics, "/metrics"));
  }
  presence::LogInfo(absl::StrCat(
      "serving on ", (*server)->address(), " (db ", options.db_path,
      ", durability ", durability, ", online_window ",
      absl::FormatDuration(options.online_window), ", heartbeat_interval ",
      absl::FormatDuration(options.heartbeat_interval), ")"));

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  presence::LogInfo(
      absl::StrCat("received ", strsignal(signal_number), ", shutting down"));
  if (absl::Status s = (*server)->Shutdown(); !s.ok()) {
    return Fail(absl::StrCat("shutdown: ", s.message()));
  }
  presence::LogInfo("stopped");
  return 0;
}
