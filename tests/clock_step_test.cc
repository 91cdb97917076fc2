// Issue 7 ("Time"): a step of the wall clock must not stall presenced's
// sweeper, its writer's --commit_interval loop, or the C++ Watcher's
// reconnect backoff. Real processes, whose wall clock libfaketime steps by an
// hour each way while they run.
//
// Stamps stay wall-clock by design (docs/reliability.md, Clocks): after a
// step forward, sessions stamped before it expire early; after a step back
// they stay online longer. So this checks only what holds whatever the step:
// a session heartbeated after a step expires on time, a change made after a
// step is committed within the commit interval, and a watcher keeps its
// backoff and reconnects within it.
//
// How libfaketime steps a clock, and why both directions. libfaketime
// (Debian's `faketime`), preloaded into a process, adds the offset written
// in FAKETIME_TIMESTAMP_FILE to every clock_gettime(CLOCK_REALTIME) and
// gettimeofday() the process makes; FAKETIME_NO_CACHE=1 makes it re-read the
// file on every call, and FAKETIME_DONT_FAKE_MONOTONIC=1 leaves
// CLOCK_MONOTONIC alone, as a real step does. It cannot move the kernel's
// own clock, though, and it does not intercept syscall(): Abseil 20220623
// turns every timed wait into an absolute deadline on its (faked)
// absl::Now() and hands it to syscall(SYS_futex, FUTEX_WAIT_BITSET |
// FUTEX_CLOCK_REALTIME), which the kernel measures on the real clock. So
// under libfaketime a wall-clock wait begun at offset +X sleeps X longer (a
// step forward stalls it, and it stays stalled after a step back to 0), and
// one begun at offset -X returns at once (a step back turns the loop into a
// busy loop). A real clock_settime() does the reverse: a step back of X
// stretches the waits in progress by X, a step forward cuts them short.
// Either way the cadence follows the wall clock. A wait on the monotonic
// clock (std::condition_variable on steady_clock waits with
// pthread_cond_clockwait(CLOCK_MONOTONIC), which libfaketime does not touch)
// keeps it. Hence presenced's clock goes forward to +1h, back to 0, back to
// -1h and forward to 0: before the fix the first step stalls it here (as a
// step back would on a real clock); after it, every step in both directions
// must leave the cadence as it was.
//
// The watching process (presencectl watch; presenced runs on the real clock
// there) is stepped back only, to -1h, then forward to 0:
// gRPC 1.51 itself waits through the same Abseil (its timer thread, the
// channel's reconnect backoff, its backup poller), so at a positive offset
// a channel that has lost its server never reconnects, whatever the Watcher
// does (measured: a Watcher with a monotonic backoff stayed disconnected for
// the whole run). At a negative offset gRPC's timers still fire on time,
// while a Watcher whose backoff follows the wall clock retries in a busy
// loop, thousands of times a second.
//
// PRESENCED_BINARY and PRESENCECTL_BINARY run the test against other builds
// (e.g. a checkout from before the fix, to see it fail).

#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "SQLiteCpp/SQLiteCpp.h"
#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "presence/client.h"
#include "presence/watcher.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using google::protobuf::util::TimeUtil;
using testing::Subprocess;
using testing::TempDir;
using Mono = std::chrono::steady_clock;

constexpr char kLibFaketime[] =
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

// presenced's windows, short so that each step takes seconds.
constexpr absl::Duration kOnlineWindow = absl::Seconds(2);
constexpr absl::Duration kCommitInterval = absl::Milliseconds(100);

// The bounds. An EXPIRED event is announced within 1 s of the end of
// the window (the sweeper wakes at least every 100 ms).
constexpr absl::Duration kExpiryLateness = absl::Seconds(1);
// An async change waits at most commit_interval for its commit to start. The
// slack covers the commit itself (a few ms in WAL mode with
// synchronous=NORMAL), the commit in progress when the change came, the
// 5 ms poll of the file, and scheduling on a loaded 2-core runner. A wait
// stalled by a step is an hour.
constexpr absl::Duration kCommitSlack = absl::Milliseconds(400);
// The Watcher's longest backoff (WatcherOptions::max_backoff, 5 s), plus
// gRPC's own reconnect backoff of the channel (1 s, growing while presenced
// was down) and a loaded runner.
constexpr absl::Duration kReconnectBound = absl::Seconds(10);
// How long past a bound the test keeps waiting, to say how late it was.
constexpr absl::Duration kReportGrace = absl::Seconds(5);

// absl::Now() re-reads clock_gettime() only about every 2 s and extrapolates
// on the CPU's cycle counter in between, so a process follows a step within
// that (measured: 1.6 s).
constexpr absl::Duration kClockFollows = absl::Milliseconds(2500);

struct Step {
  const char* name;
  int offset_seconds;  // the processes' wall clock: real time + this
};

constexpr Step kServerSteps[] = {
    {"forward 1h, to +1h", 3600},
    {"back 1h, to 0", 0},
    {"back 1h, to -1h", -3600},
    {"forward 1h, to 0", 0},
};

constexpr Step kWatcherSteps[] = {
    {"back 1h, to -1h", -3600},
    {"forward 1h, to 0", 0},
};

std::string Binary(const char* variable, const char* built) {
  const char* value = std::getenv(variable);
  return value != nullptr && *value != '\0' ? value : built;
}

absl::Duration Since(Mono::time_point start) {
  return absl::FromChrono(Mono::now() - start);
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixMicros(TimeUtil::TimestampToMicroseconds(t));
}

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

// The wall clock of the processes started with Wrap(): real time plus the
// offset in a file that libfaketime re-reads on every clock call.
class SteppedClock {
 public:
  explicit SteppedClock(std::string path) : path_(std::move(path)) { Set(0); }

  void Set(int offset_seconds) {
    // A rename, so that libfaketime never reads a half-written file.
    const std::string next = path_ + ".next";
    {
      std::ofstream out(next, std::ios::trunc);
      out << (offset_seconds < 0 ? "" : "+") << offset_seconds << "\n";
    }
    std::error_code error;
    std::filesystem::rename(next, path_, error);
    ASSERT_FALSE(error) << "rename " << next << ": " << error.message();
    offset_ = absl::Seconds(offset_seconds);
  }
  absl::Duration offset() const { return offset_; }

  // `argv` run under libfaketime with this clock (through env, since
  // Subprocess takes an argv only).
  std::vector<std::string> Wrap(const std::vector<std::string>& argv,
                                const std::vector<std::string>& env) const {
    const char* asan = std::getenv("ASAN_OPTIONS");
    std::vector<std::string> wrapped = {
        "/usr/bin/env", absl::StrCat("LD_PRELOAD=", kLibFaketime),
        "FAKETIME_TIMESTAMP_FILE=" + path_, "FAKETIME_NO_CACHE=1",
        "FAKETIME_DONT_FAKE_MONOTONIC=1",
        // In an AddressSanitizer build the preloaded libfaketime comes
        // before ASan's runtime, which ASan refuses unless told.
        absl::StrCat("ASAN_OPTIONS=", asan != nullptr ? asan : "",
                     asan != nullptr && *asan != '\0' ? ":" : "",
                     "verify_asan_link_order=0")};
    wrapped.insert(wrapped.end(), env.begin(), env.end());
    wrapped.insert(wrapped.end(), argv.begin(), argv.end());
    return wrapped;
  }

 private:
  const std::string path_;
  absl::Duration offset_;
};

// A child process that is ended with SIGTERM, so that libfaketime removes
// its shared memory (it leaves /dev/shm/faketime_shm_<pid> behind when
// killed; removed here then).
class Child {
 public:
  explicit Child(std::vector<std::string> argv)
      : process_(std::make_unique<Subprocess>(std::move(argv))) {}
  ~Child() { End(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  Subprocess& operator*() { return *process_; }
  Subprocess* operator->() { return process_.get(); }

  Subprocess::Exit End() {
    const pid_t pid = process_->pid();
    process_->Signal(SIGTERM);
    Subprocess::Exit exit = process_->Wait(absl::Seconds(20));
    std::error_code ignored;
    std::filesystem::remove(absl::StrCat("/dev/shm/faketime_shm_", pid),
                            ignored);
    std::filesystem::remove(absl::StrCat("/dev/shm/sem.faketime_sem_", pid),
                            ignored);
    return exit;
  }

 private:
  std::unique_ptr<Subprocess> process_;
};

// The address of presenced's "serving on HOST:PORT" line, or "".
std::string WaitUntilServing(Subprocess& presenced) {
  const std::string needle = "serving on ";
  std::optional<std::string> err =
      presenced.WaitForStderr(needle, absl::Seconds(30));
  if (!err.has_value()) return "";
  const size_t at = err->find(needle) + needle.size();
  return err->substr(at, err->find(' ', at) - at);
}

// The text a child wrote to stderr so far (an empty needle is found at once).
std::string StderrSoFar(Subprocess& process) {
  return process.WaitForStderr("", absl::ZeroDuration()).value_or("");
}

std::unique_ptr<Client> Connect(const std::string& address) {
  ClientOptions options;
  options.target = address;
  return std::make_unique<Client>(options);
}

// The EXPIRED events a Watcher in this (unstepped) process received, with
// the moment each arrived.
class ExpiryLog {
 public:
  struct Expiry {
    absl::Time at;          // the change's `at`, presenced's clock
    Mono::time_point seen;  // arrival here
  };

  WatcherCallbacks Callbacks() {
    WatcherCallbacks callbacks;
    callbacks.on_snapshot = [this](const v1::Snapshot&) {
      absl::MutexLock lock(&mu_);
      snapshot_ = true;
    };
    callbacks.on_change = [this](const v1::PresenceChange& change) {
      if (change.status() != v1::STATUS_OFFLINE ||
          change.reason() != v1::REASON_EXPIRED) {
        return;
      }
      absl::MutexLock lock(&mu_);
      expired_.emplace(change.user_id(),
                       Expiry{FromProto(change.at()), Mono::now()});
    };
    return callbacks;
  }

  bool WaitForSnapshot(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&snapshot_), timeout);
  }

  std::optional<Expiry> WaitForExpiry(int64_t user, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return expired_.count(user) > 0;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&seen), timeout)) {
      return std::nullopt;
    }
    return expired_.at(user);
  }

 private:
  absl::Mutex mu_;
  bool snapshot_ ABSL_GUARDED_BY(mu_) = false;
  std::map<int64_t, Expiry> expired_ ABSL_GUARDED_BY(mu_);
};

// Waits until presenced's answers carry real time + `offset` (libfaketime
// reads the file on presenced's next clock call, absl::Now() follows within
// kClockFollows).
bool WaitForServerClock(Client& client, absl::Duration offset,
                        absl::Duration timeout) {
  constexpr int64_t kProbeUser = 999'999'999;  // read only, never changed
  const Mono::time_point start = Mono::now();
  while (Since(start) < timeout) {
    absl::StatusOr<v1::GetPresenceResponse> r =
        client.GetPresence(std::vector<int64_t>{kProbeUser});
    if (r.ok() && absl::AbsDuration(FromProto(r->server_time()) - absl::Now() -
                                    offset) < absl::Minutes(1)) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

// How long after `answered` the session's heartbeat at `stamp` was visible
// in the database file, or nullopt if not within `timeout`.
std::optional<absl::Duration> WaitForCommit(SQLite::Database& db, int64_t user,
                                            const std::string& session,
                                            absl::Time stamp,
                                            Mono::time_point answered,
                                            absl::Duration timeout) {
  try {
    SQLite::Statement query(db,
                            "SELECT last_heartbeat_us FROM sessions "
                            "WHERE user_id = ? AND session_id = ?");
    for (;;) {
      query.bind(1, static_cast<int64_t>(user));
      query.bind(2, session);
      // Each query is a read transaction of its own: it sees every commit
      // made before it began.
      const bool committed =
          query.executeStep() &&
          query.getColumn(0).getInt64() >= absl::ToUnixMicros(stamp);
      query.reset();
      if (committed) return Since(answered);
      if (Since(answered) > timeout) return std::nullopt;
      absl::SleepFor(absl::Milliseconds(5));
    }
  } catch (const SQLite::Exception& e) {
    ADD_FAILURE() << "reading the database: " << e.what();
    return std::nullopt;
  }
}

// Heartbeats one user every 20 ms until destroyed, so that the writer is
// always between commits, in its commit_interval wait, when the clock steps.
class Load {
 public:
  explicit Load(Client& client)
      : thread_([this, &client] {
          do {
            client.Heartbeat(kUser).IgnoreError();
          } while (
              !stop_.WaitForNotificationWithTimeout(absl::Milliseconds(20)));
        }) {}
  ~Load() {
    stop_.Notify();
    thread_.join();
  }
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;

 private:
  static constexpr int64_t kUser = 900'000;
  absl::Notification stop_;
  std::thread thread_;
};

bool FaketimeInstalled() {
  std::error_code ignored;
  return std::filesystem::exists(kLibFaketime, ignored);
}

class ClockStepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!FaketimeInstalled()) {
      GTEST_SKIP() << kLibFaketime
                   << " is missing: install Debian's faketime package "
                      "(tools/install-deps.sh does)";
    }
  }
};

// presenced's sweeper and writer across steps of its clock, watched from
// this process (whose clock is not stepped) and read from its database file.
TEST_F(ClockStepTest, ExpiryEventsAndCommitsKeepTheirCadence) {
  TempDir dir;
  SteppedClock clock(dir.File("faketime"));
  const std::string db_path = dir.File("presence.db");
  Child presenced(
      clock.Wrap({Binary("PRESENCED_BINARY", PRESENCED_PATH),
                  "--listen=127.0.0.1:0", "--db=" + db_path,
                  "--online_window=" + absl::FormatDuration(kOnlineWindow),
                  "--heartbeat_interval=1s", "--durability=async",
                  "--commit_interval=" + absl::FormatDuration(kCommitInterval)},
                 {}));
  const std::string address = WaitUntilServing(*presenced);
  ASSERT_FALSE(address.empty()) << presenced.End().err;

  std::unique_ptr<Client> client = Connect(address);
  ExpiryLog expiries;
  Watcher watcher(client->channel(), WatcherOptions{}, expiries.Callbacks());
  ASSERT_TRUE(expiries.WaitForSnapshot(absl::Seconds(10)));
  SQLite::Database db(db_path, SQLite::OPEN_READONLY);
  db.setBusyTimeout(1000);
  Load load(*client);

  for (size_t i = 0; i < std::size(kServerSteps); ++i) {
    const Step& step = kServerSteps[i];
    SCOPED_TRACE(absl::StrCat("clock step ", i + 1, ": ", step.name));
    clock.Set(step.offset_seconds);
    ASSERT_TRUE(WaitForServerClock(*client, clock.offset(), absl::Seconds(10)))
        << "presenced's clock did not follow the step";

    // A session heartbeated after the step; nothing touches its user again
    // (any operation on the user would announce its expiry itself).
    const int64_t expiring = 100 + static_cast<int64_t>(i);
    absl::StatusOr<v1::HeartbeatResponse> beat = client->Heartbeat(expiring);
    ASSERT_TRUE(beat.ok()) << beat.status();
    const Mono::time_point beat_answered = Mono::now();

    // Changes made after the step, committed one by one.
    absl::Duration slowest_commit;
    for (int k = 0; k < 8; ++k) {
      const int64_t user = 200 + static_cast<int64_t>(i);
      const std::string session = absl::StrCat("c", k);
      absl::StatusOr<v1::HeartbeatResponse> change =
          client->Heartbeat(user, session);
      ASSERT_TRUE(change.ok()) << change.status();
      const Mono::time_point answered = Mono::now();
      const absl::Time stamp =
          FromProto(change->online_until()) - kOnlineWindow;
      std::optional<absl::Duration> latency =
          WaitForCommit(db, user, session, stamp, answered,
                        kCommitInterval + kCommitSlack + kReportGrace);
      if (!latency.has_value()) {
        ADD_FAILURE() << "a heartbeat answered in async mode was not "
                         "committed within "
                      << kCommitInterval + kCommitSlack + kReportGrace
                      << " (commit_interval " << kCommitInterval << ")";
        break;
      }
      EXPECT_LE(*latency, kCommitInterval + kCommitSlack)
          << "a heartbeat answered in async mode was committed " << *latency
          << " later (commit_interval " << kCommitInterval << ")";
      slowest_commit = std::max(slowest_commit, *latency);
    }

    const absl::Duration bound = kOnlineWindow + kExpiryLateness;
    std::optional<ExpiryLog::Expiry> expiry = expiries.WaitForExpiry(
        expiring, bound + kReportGrace - Since(beat_answered));
    if (!expiry.has_value()) {
      ADD_FAILURE() << "no EXPIRED event for user " << expiring << " within "
                    << bound + kReportGrace
                    << " of its only heartbeat (online_window " << kOnlineWindow
                    << ")";
    } else {
      const absl::Duration after =
          absl::FromChrono(expiry->seen - beat_answered);
      EXPECT_LE(after, bound)
          << "EXPIRED event for user " << expiring << " " << after
          << " after its only heartbeat (online_window " << kOnlineWindow
          << ")";
      EXPECT_EQ(expiry->at, FromProto(beat->online_until()));
      std::printf(
          "[ step %s ] EXPIRED %s after the heartbeat (window %s); "
          "commits within %s (interval %s)\n",
          step.name, absl::FormatDuration(after).c_str(),
          absl::FormatDuration(kOnlineWindow).c_str(),
          absl::FormatDuration(slowest_commit).c_str(),
          absl::FormatDuration(kCommitInterval).c_str());
    }
    if (HasFailure()) {
      // The waits this step stalled would stall the next steps too.
      ADD_FAILURE() << "the remaining steps are not tried";
      break;
    }
  }
  watcher.Stop();
}

// The epoch of the presenced at `address`: what a watcher that reconnected
// to it prints.
std::string EpochOf(const std::string& address) {
  std::unique_ptr<Client> client = Connect(address);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::WatchPresenceRequest request;
  request.set_send_snapshot(true);
  std::unique_ptr<grpc::ClientReader<v1::WatchPresenceResponse>> reader =
      client->stub().WatchPresence(&context, request);
  v1::WatchPresenceResponse message;
  if (!reader->Read(&message)) return "";
  context.TryCancel();
  reader->Finish();
  return message.epoch();
}

// presence::Watcher (in presencectl watch) across steps of its clock:
// presenced restarts after each, and the watcher must neither hammer it while
// it is down nor miss its return.
TEST_F(ClockStepTest, WatcherKeepsItsBackoffAndReconnects) {
  TempDir dir;
  SteppedClock clock(dir.File("faketime"));
  const std::vector<std::string> presenced_argv = {
      Binary("PRESENCED_BINARY", PRESENCED_PATH),
      "--db=" + dir.File("presence.db")};
  auto start_presenced = [&](const std::string& listen) {
    std::vector<std::string> argv = presenced_argv;
    argv.push_back("--listen=" + listen);
    return std::make_unique<Child>(argv);
  };
  std::unique_ptr<Child> presenced = start_presenced("127.0.0.1:0");
  const std::string address = WaitUntilServing(**presenced);
  ASSERT_FALSE(address.empty()) << presenced->End().err;

  // presencectl's watch is a presence::Watcher. gRPC's backup poller finds a
  // connection that came back only every 5 s by default: every 100 ms here,
  // so that the reconnect is the Watcher's doing.
  Child watch(clock.Wrap({Binary("PRESENCECTL_BINARY", PRESENCECTL_PATH),
                          "--server=" + address, "watch", "--json"},
                         {"GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS=100"}));
  ASSERT_TRUE(watch->WaitForStdout("\"snapshot\"", absl::Seconds(20)))
      << watch.End().err;

  // presenced stays down this long after it exited; the Watcher's waits of
  // 100, 200, 400 and 800 ms fill it, so it announces about 5 disconnects
  // (the stream's end and the failed reconnects; measured: 5). 8 leaves
  // room for presenced's shutdown; a backoff that collapsed makes thousands.
  constexpr absl::Duration kDowntime = absl::Milliseconds(1500);
  constexpr int kMostDisconnects = 8;
  const std::string kDisconnect = "reconnecting in";
  for (size_t i = 0; i < std::size(kWatcherSteps); ++i) {
    const Step& step = kWatcherSteps[i];
    SCOPED_TRACE(absl::StrCat("clock step ", i + 1, ": ", step.name));
    clock.Set(step.offset_seconds);
    // presencectl's clock cannot be read from here: give it the time it
    // takes.
    absl::SleepFor(kClockFollows);

    const int before = Count(StderrSoFar(*watch), kDisconnect);
    presenced.reset();  // SIGTERM: its streams end with UNAVAILABLE
    absl::SleepFor(kDowntime);
    const int disconnects = Count(StderrSoFar(*watch), kDisconnect) - before;
    EXPECT_LE(disconnects, kMostDisconnects)
        << "the watcher retried " << disconnects << " times in " << kDowntime
        << ", not after its backoff of 100 ms doubling";

    presenced = start_presenced(address);
    ASSERT_EQ(WaitUntilServing(**presenced), address)
        << "presenced did not start again on " << address;
    const Mono::time_point serving = Mono::now();
    const std::string epoch = EpochOf(address);
    ASSERT_FALSE(epoch.empty());
    const bool back =
        watch
            ->WaitForStdout(absl::StrCat("\"epoch\":\"", epoch, "\""),
                            kReconnectBound + kReportGrace)
            .has_value();
    const absl::Duration after = Since(serving);
    if (!back) {
      ADD_FAILURE() << "the watcher did not reconnect within " << after
                    << " of presenced serving again";
    } else {
      EXPECT_LE(after, kReconnectBound) << "the watcher reconnected " << after
                                        << " after presenced served again";
    }
    std::printf(
        "[ step %s ] %d disconnects in %s down; reconnected %s after "
        "the restart%s\n",
        step.name, disconnects, absl::FormatDuration(kDowntime).c_str(),
        absl::FormatDuration(after).c_str(), back ? "" : " (not)");
    if (HasFailure()) break;
  }
  Subprocess::Exit exit = watch.End();
  EXPECT_EQ(exit.code, 0) << exit.err.substr(0, 2000);
}

}  // namespace
}  // namespace presence
