// presenced: the presence gRPC server. See README.md for the flags' effects.

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "service/caller_auth.h"
#include "service/log.h"
#include "service/presence_server.h"
#include "service/program_usage.h"
#include "service/status_macros.h"
#include "service/tls_files.h"

namespace {

// The flags' defaults are ServerOptions' (presence_server.h): one place.
const presence::ServerOptions& Defaults() {
  static const presence::ServerOptions* const defaults =
      new presence::ServerOptions();
  return *defaults;
}

const char* DurabilityName(presence::Durability durability) {
  return durability == presence::Durability::kCommit ? "commit" : "async";
}

}  // namespace

ABSL_FLAG(std::string, listen, Defaults().listen,
          "HOST:PORT to serve gRPC on. Port 0 picks a free port; the "
          "'serving on' log line names it.");
ABSL_FLAG(std::string, metrics_listen, "",
          "HOST:PORT to serve Prometheus metrics on, at /metrics (plain "
          "HTTP). Port 0 picks a free port; the 'metrics on' log line names "
          "it. Empty: no metrics.");
ABSL_FLAG(std::string, shard, "",
          "This presenced's shard name in a sharded deployment (e.g. the "
          "StatefulSet pod's name, presenced-1); with --shards. Empty: "
          "unsharded, owns every user");
ABSL_FLAG(std::string, shards, "",
          "Every shard's name: a,b,c or a pattern such as presenced-{0..2} "
          "(a NAME=HOST:PORT map works too). A user belongs to the shard the "
          "rendezvous hash of its id picks (docs/scale-out.md); calls about "
          "other shards' users fail FAILED_PRECONDITION naming the owner");
ABSL_FLAG(std::string, db, Defaults().db_path,
          "SQLite database file, created if missing. DB.lock beside it keeps "
          "a second presenced off the same file.");
ABSL_FLAG(absl::Duration, online_window, Defaults().online_window,
          "A user is online while one of their sessions had a heartbeat "
          "less than this long ago. At least 2 x --heartbeat_interval.");
ABSL_FLAG(absl::Duration, away_after, Defaults().away_after,
          "Rich presence: a user is AWAY once every live session has been "
          "idle (heartbeats with idle set) this long. At least 1us.");
ABSL_FLAG(absl::Duration, heartbeat_interval, Defaults().heartbeat_interval,
          "The heartbeat period presenced asks clients to keep (returned in "
          "every HeartbeatResponse).");
ABSL_FLAG(std::string, durability, DurabilityName(Defaults().durability),
          "commit: a change is answered only after it is committed to SQLite "
          "(synchronous=FULL), so nothing answered is lost, even on power "
          "loss. async: answered at once and committed within "
          "--commit_interval; a crash can lose that much.");
ABSL_FLAG(absl::Duration, commit_interval, Defaults().commit_interval,
          "With --durability=async: the longest an answered change waits "
          "before its commit starts.");
ABSL_FLAG(int32_t, max_ids_per_request, Defaults().limits.max_ids_per_request,
          "The most user ids one ListOnline, GetPresence or WatchPresence "
          "request may carry (more is INVALID_ARGUMENT).");
ABSL_FLAG(int32_t, max_watchers, Defaults().watch.max_watchers,
          "The most WatchPresence streams at once; more are refused with "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, watch_ring_size, Defaults().watch.ring_size,
          "Presence changes kept in memory, shared by every watcher: a "
          "watcher of everyone that falls further behind than this (or "
          "resumes after a gap this long) gets one fresh snapshot instead.");
ABSL_FLAG(int32_t, watcher_queue_size, Defaults().watch.queue_size,
          "Changes queued for one watcher of a list of users that reads too "
          "slowly; past this its queue is replaced by one fresh snapshot, so "
          "a stuck watcher cannot grow presenced's memory.");
ABSL_FLAG(int32_t, watch_dispatch_threads, Defaults().watch.dispatch_threads,
          "Threads that wake idle WatchPresence streams when changes arrive; "
          "0: one per core, at least 2.");

ABSL_FLAG(int32_t, max_sessions_per_user, Defaults().max_sessions_per_user,
          "A user's sessions at most; a heartbeat of a new session beyond it "
          "ends the user's oldest session. 0: no limit.");
ABSL_FLAG(int32_t, max_request_bytes, Defaults().max_request_bytes,
          "The largest request message accepted; larger ones are refused "
          "with RESOURCE_EXHAUSTED.");
ABSL_FLAG(int32_t, max_connections, Defaults().max_connections,
          "Client connections open at once; one more is accepted and closed "
          "at once. Lowered at start to fit the open-file limit.");
ABSL_FLAG(int32_t, max_concurrent_streams, Defaults().max_concurrent_streams,
          "Calls (watch streams included) open at once on one connection; a "
          "client queues those beyond it.");
ABSL_FLAG(int32_t, grpc_memory_quota_mb,
          static_cast<int32_t>(Defaults().grpc_memory_quota_bytes >> 20),
          "MiB that gRPC may take for connections and calls (buffers, call "
          "state); near it, gRPC slows readers down, then drops idle "
          "connections and calls.");
ABSL_FLAG(absl::Duration, keepalive_time, Defaults().keepalive_time,
          "Ping each client connection this often; one that does not answer "
          "within --keepalive_timeout is closed (dead watchers are reaped).");
ABSL_FLAG(absl::Duration, keepalive_timeout, Defaults().keepalive_timeout,
          "How long a keepalive ping may go unanswered.");
ABSL_FLAG(absl::Duration, max_connection_idle, Defaults().max_connection_idle,
          "Close a client connection that had no call for this long (the "
          "client reconnects when it needs to).");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "Callers and their bearer tokens, one 'NAME TOKEN' a line, "
          "separated by blanks. A line starting with '#' (after optional "
          "blanks) is a comment; elsewhere '#' is part of a token. Tokens "
          "shorter than 16 bytes are accepted with a warning. Every RPC but "
          "grpc.health.v1.Health then needs 'authorization: Bearer TOKEN', "
          "checked before the request is read. SIGHUP reloads it. Empty: no "
          "authentication.");
ABSL_FLAG(std::string, tls_cert, "",
          "Serve TLS with this certificate chain (PEM), with --tls_key.");
ABSL_FLAG(std::string, tls_key, "", "The private key of --tls_cert (PEM).");
ABSL_FLAG(std::string, tls_client_ca, "",
          "mTLS: refuse clients without a certificate signed by this CA "
          "(PEM). Needs --tls_cert.");
ABSL_FLAG(std::string, reflection, "auto",
          "Server reflection: on, off, or auto (on without "
          "--auth_tokens_file, off with it; when on, it needs a token like "
          "every call).");

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

void LogTokenWarnings(const std::vector<std::string>& warnings) {
  for (const std::string& warning : warnings) {
    presence::LogError(absl::StrCat("WARNING --auth_tokens_file: ", warning));
  }
}

// TLS material from the --tls_* flags, checked; nullopt for plaintext.
absl::StatusOr<std::optional<presence::TlsMaterial>> Tls() {
  presence::TlsFiles files;
  files.cert = absl::GetFlag(FLAGS_tls_cert);
  files.key = absl::GetFlag(FLAGS_tls_key);
  files.client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  if (files.cert.empty() && files.key.empty() && files.client_ca.empty()) {
    return std::nullopt;
  }
  if (files.cert.empty() || files.key.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both --tls_cert and --tls_key");
  }
  PRESENCE_ASSIGN_OR_RETURN(presence::TlsMaterial tls,
                            presence::LoadTlsMaterial(files, absl::Now()));
  for (const std::string& warning : tls.warnings) {
    presence::LogError(absl::StrCat("WARNING ", warning));
  }
  presence::LogInfo(absl::StrCat(
      "TLS with ", files.cert, " (valid until ",
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", tls.not_after,
                       absl::UTCTimeZone()),
      ")", files.client_ca.empty() ? "" : ", client certificates required"));
  return tls;
}

// Raises the soft open-file limit to the hard one: every client connection
// takes a descriptor, and the soft limit is often a low default (1024).
void RaiseOpenFileLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 ||
      limit.rlim_cur >= limit.rlim_max) {
    return;
  }
  const rlim_t before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    // An unlimited hard limit is more than the kernel's fs.nr_open allows.
    std::ifstream nr_open("/proc/sys/fs/nr_open");
    rlim_t most = 0;
    if (nr_open >> most && most > before) {
      limit.rlim_cur = most;
      if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    } else {
      return;
    }
  }
  presence::LogInfo(
      absl::StrCat("raised the open-file limit (RLIMIT_NOFILE) "
                   "from ",
                   before, " to ", limit.rlim_cur));
}

// What main() starts the server with: the options, and the callers it
// points to (owned here, reloaded on SIGHUP).
struct Startup {
  presence::ServerOptions options;
  std::unique_ptr<presence::CallerAuth> auth;
};

absl::StatusOr<presence::Durability> ParseDurability(const std::string& name) {
  if (name == "commit") return presence::Durability::kCommit;
  if (name == "async") return presence::Durability::kAsync;
  return absl::InvalidArgumentError(absl::StrCat(
      "--durability must be 'commit' or 'async', got '", name, "'"));
}

// --reflection's on/off/auto, once it is known whether tokens are required.
absl::StatusOr<bool> ParseReflection(const std::string& value, bool auth) {
  if (value == "auto") return !auth;
  if (value == "on" || value == "off") return value == "on";
  return absl::InvalidArgumentError(
      absl::StrCat("--reflection must be on, off or auto, got '", value, "'"));
}

// --auth_tokens_file, loaded; null without it.
absl::StatusOr<std::unique_ptr<presence::CallerAuth>> LoadAuth() {
  const std::string path = absl::GetFlag(FLAGS_auth_tokens_file);
  if (path.empty()) return nullptr;
  std::vector<std::string> warnings;
  absl::StatusOr<std::unique_ptr<presence::CallerAuth>> loaded =
      presence::CallerAuth::Load(path, &warnings);
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--auth_tokens_file: ", loaded.status().message()));
  }
  LogTokenWarnings(warnings);
  return loaded;
}

// The flags that are plain values, copied into `options`.
void CopyPlainFlags(presence::ServerOptions& options) {
  options.listen = absl::GetFlag(FLAGS_listen);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options.db_path = absl::GetFlag(FLAGS_db);
  options.online_window = absl::GetFlag(FLAGS_online_window);
  options.away_after = absl::GetFlag(FLAGS_away_after);
  options.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  options.commit_interval = absl::GetFlag(FLAGS_commit_interval);
  options.limits.max_ids_per_request = absl::GetFlag(FLAGS_max_ids_per_request);
  options.watch.max_watchers = absl::GetFlag(FLAGS_max_watchers);
  options.watch.ring_size = absl::GetFlag(FLAGS_watch_ring_size);
  options.watch.queue_size = absl::GetFlag(FLAGS_watcher_queue_size);
  options.watch.dispatch_threads = absl::GetFlag(FLAGS_watch_dispatch_threads);
  options.max_sessions_per_user = absl::GetFlag(FLAGS_max_sessions_per_user);
  options.max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes);
  options.max_connections = absl::GetFlag(FLAGS_max_connections);
  options.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  options.grpc_memory_quota_bytes =
      int64_t{absl::GetFlag(FLAGS_grpc_memory_quota_mb)} << 20;
  options.keepalive_time = absl::GetFlag(FLAGS_keepalive_time);
  options.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  options.max_connection_idle = absl::GetFlag(FLAGS_max_connection_idle);
}

// Every flag read once, parsed and checked: the options to start with, or
// an error naming the flag at fault.
absl::StatusOr<Startup> StartupFromFlags() {
  Startup startup;
  presence::ServerOptions& options = startup.options;
  CopyPlainFlags(options);
  PRESENCE_ASSIGN_OR_RETURN(
      options.ownership,
      presence::ShardOwnership::Create(absl::GetFlag(FLAGS_shard),
                                       absl::GetFlag(FLAGS_shards)));
  PRESENCE_ASSIGN_OR_RETURN(options.durability,
                            ParseDurability(absl::GetFlag(FLAGS_durability)));
  if (absl::Status s = presence::ValidateServerOptions(options); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--", s.message()));
  }
  PRESENCE_ASSIGN_OR_RETURN(options.tls, Tls());
  PRESENCE_ASSIGN_OR_RETURN(startup.auth, LoadAuth());
  options.auth = startup.auth.get();
  PRESENCE_ASSIGN_OR_RETURN(options.reflection,
                            ParseReflection(absl::GetFlag(FLAGS_reflection),
                                            options.auth != nullptr));
  return startup;
}

void LogServing(const presence::PresenceServer& server,
                const presence::ServerOptions& options) {
  if (const std::string& metrics = server.metrics_address(); !metrics.empty()) {
    presence::LogInfo(absl::StrCat("metrics on http://", metrics, "/metrics"));
  }
  presence::LogInfo(absl::StrCat(
      "serving on ", server.address(), " (db ", options.db_path,
      ", durability ", DurabilityName(options.durability), ", online_window ",
      absl::FormatDuration(options.online_window), ", away_after ",
      absl::FormatDuration(options.away_after), ", heartbeat_interval ",
      absl::FormatDuration(options.heartbeat_interval),
      options.ownership.sharded()
          ? absl::StrCat(", shard ", options.ownership.name(), " of ",
                         options.ownership.ShardNames())
          : "",
      ")"));
  if (options.auth != nullptr) {
    presence::LogInfo(absl::StrCat(
        "authentication on: ", options.auth->callers().size(), " callers from ",
        options.auth->path(), "; SIGHUP reloads it"));
  }
}

// SIGHUP: reload --auth_tokens_file, keeping the callers if it fails.
void ReloadAuth(presence::CallerAuth* auth) {
  if (auth == nullptr) {
    presence::LogInfo("SIGHUP: no --auth_tokens_file to reload");
    return;
  }
  std::vector<std::string> warnings;
  absl::StatusOr<size_t> reloaded = auth->Reload(&warnings);
  LogTokenWarnings(warnings);
  if (reloaded.ok()) {
    presence::LogInfo(absl::StrCat("SIGHUP: reloaded ", *reloaded,
                                   " callers from ", auth->path()));
  } else {
    presence::LogError(absl::StrCat("SIGHUP: kept the previous callers: ",
                                    reloaded.status().message()));
  }
}

// Serves until SIGINT or SIGTERM (`signals`, blocked in every thread),
// reloading the callers on SIGHUP; then shuts down gracefully.
int ServeUntilSignal(presence::PresenceServer& server,
                     presence::CallerAuth* auth, const sigset_t& signals) {
  int signal_number = 0;
  while (sigwait(&signals, &signal_number) == 0 && signal_number == SIGHUP) {
    ReloadAuth(auth);
  }
  presence::LogInfo(
      absl::StrCat("received ", strsignal(signal_number), ", shutting down"));
  if (absl::Status s = server.Shutdown(); !s.ok()) {
    return Fail(absl::StrCat("shutdown: ", s.message()));
  }
  presence::LogInfo("stopped");
  return 0;
}

// Process-wide settings, before any thread starts.
void ConfigureProcess() {
  // Debian's Abseil checks every Mutex::Lock for lock-order cycles: under
  // load its mutex code took ~8% of presenced's samples in a profile, 1.5%
  // in the cycle detector itself. The tests keep the check (they do not
  // call this).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // glibc raises its mmap threshold to the size of every large block freed,
  // up to 32 MiB: after a burst (a million users arriving), blocks of a few
  // MiB (commit batches, an index array before it grew) came from the heap
  // and stayed resident once freed, ~10 bytes per user at 1M. A fixed
  // threshold (this call turns the adjustment off) returns them to the
  // system. Not lower: at 128 KiB every ListOnline page and many gRPC
  // buffers were fresh mappings, and a full listing took ~70% longer.
  mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
  RaiseOpenFileLimit();
}

}  // namespace

int main(int argc, char** argv) {
  presence::SetUpProgramUsage("server_main", kUsage);
  std::vector<char*> rest = absl::ParseCommandLine(argc, argv);
  if (rest.size() > 1) {
    return Fail(absl::StrCat("unexpected argument '", rest[1],
                             "'; flags are --name=value, see --help"));
  }
  // Block the shutdown signals before any thread starts (creating gRPC
  // credentials already starts gRPC's threads), so that every thread
  // inherits the mask and only sigwait() receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);  // reloads --auth_tokens_file
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ConfigureProcess();

  absl::StatusOr<Startup> startup = StartupFromFlags();
  if (!startup.ok()) return Fail(std::string(startup.status().message()));
  absl::StatusOr<std::unique_ptr<presence::PresenceServer>> server =
      presence::PresenceServer::Start(startup->options);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  LogServing(**server, startup->options);
  return ServeUntilSignal(**server, startup->auth.get(), signals);
}
