// watch_latency: how long a presence change takes to reach watchers, and how
// many changes presenced delivers per CPU-second. One program of one role,
// kept in one file (~600 lines): its two modes share the fleet of streams,
// the baseline and the report, and tools/bench/watch_latency.sh runs it.
//
// Opens --watchers WatchPresence streams of everyone on a running presenced
// (asking for up to --max_batch changes per message; 0 is the original one
// change per message), then:
//
// --mode=latency: for each of --users fresh users in turn, sends a Heartbeat
// (which makes the user online) and notes when it was sent, when it was
// answered and when each watcher received the ONLINE change. Repeats for
// --rounds rounds with new users. The baseline, measured in the same run on
// the same channel, is the round trip of grpc.health.v1.Health/Check (an
// almost empty call).
//
// --mode=throughput: for --seconds, sends --rate Heartbeats a second of
// distinct users, each followed by a MarkOffline of the same user (two
// changes per user), then waits until every watcher has every change. With
// --server_pid it reports presenced's CPU time over the run and the changes
// delivered per CPU-second.
//
// With --server_pid both modes report presenced's RSS per idle stream: its
// growth from before the streams were opened to once all have their snapshot.
//
//   watch_latency --server=127.0.0.1:50051 --users=1000 --watchers=1
//   watch_latency --mode=throughput --watchers=1000 --rate=5000
//       --server_pid=$(pidof presenced)

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "presence/client.h"
#include "tools/process_sample.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "presenced's HOST:PORT.");
ABSL_FLAG(int, users, 1000, "Fresh users per round (one Heartbeat each).");
ABSL_FLAG(int, watchers, 1, "WatchPresence streams, each watching everyone.");
ABSL_FLAG(int, rounds, 3, "Rounds; the report gives the median of rounds.");
ABSL_FLAG(std::string, mode, "latency", "latency or throughput.");
ABSL_FLAG(int, interval_ms, 0,
          "latency: a pause between heartbeats (0: back to back), to see one "
          "change's fan-out alone.");
ABSL_FLAG(uint32_t, max_batch, 1000,
          "WatchPresenceRequest.max_batch: changes per message at most; 0 for "
          "one change per message.");
ABSL_FLAG(int, rate, 5000,
          "throughput: Heartbeats per second (each user "
          "is then marked offline too: two changes per Heartbeat).");
ABSL_FLAG(int, seconds, 10, "throughput: how long to send.");
ABSL_FLAG(int, server_pid, 0,
          "presenced's pid, to read its CPU time and RSS from /proc (0: not "
          "reported).");

namespace {

using presence::v1::WatchPresenceResponse;

// When each watcher saw each user of the current round come online. Each
// watcher records under a lock of its own: one lock for all of them made
// the streams' reading threads queue behind each other, which the latency
// measured then included.
class Arrivals {
 public:
  explicit Arrivals(int watchers) {
    for (int w = 0; w < watchers; ++w) {
      per_watcher_.push_back(std::make_unique<PerWatcher>());
    }
  }
  // Between rounds. Users only grow from round to round, so a late arrival
  // of an earlier round's user falls before first_user and is ignored.
  void Reset(int users, int64_t first_user) {
    for (auto& w : per_watcher_) {
      absl::MutexLock lock(&w->mu);
      w->at.assign(users, absl::InfinitePast());
    }
    users_.store(users);
    first_user_.store(first_user);
    count_.store(0);
  }
  void Record(int watcher, int64_t user, absl::Time now) {
    const int64_t i = user - first_user_.load();
    if (i < 0 || i >= users_.load()) return;  // another round's user
    PerWatcher& w = *per_watcher_[watcher];
    absl::MutexLock lock(&w.mu);
    if (i >= static_cast<int64_t>(w.at.size())) return;
    absl::Time& slot = w.at[i];
    if (slot == absl::InfinitePast()) {
      slot = now;
      count_.fetch_add(1);
    }
  }
  bool AwaitAll(absl::Duration timeout) {
    const size_t all = per_watcher_.size() * static_cast<size_t>(users_.load());
    const absl::Time deadline = absl::Now() + timeout;
    // Polled: each arrival's time is taken when it arrives, not here.
    while (count_.load() < all) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return true;
  }
  // Watcher-major: watcher w's arrivals at [w * users, (w + 1) * users).
  std::vector<absl::Time> Take() {
    std::vector<absl::Time> out;
    for (auto& w : per_watcher_) {
      absl::MutexLock lock(&w->mu);
      out.insert(out.end(), w->at.begin(), w->at.end());
    }
    return out;
  }

 private:
  struct PerWatcher {
    absl::Mutex mu;
    std::vector<absl::Time> at ABSL_GUARDED_BY(mu);
  };
  std::vector<std::unique_ptr<PerWatcher>> per_watcher_;
  std::atomic<int64_t> first_user_{0};
  std::atomic<int64_t> users_{0};
  std::atomic<size_t> count_{0};
};

// One WatchPresence stream on gRPC's callback client API.
class WatchStream
    : public grpc::ClientReadReactor<presence::v1::WatchPresenceResponse> {
 public:
  WatchStream(presence::v1::PresenceService::Stub* stub, int index,
              Arrivals* arrivals, uint32_t max_batch,
              std::atomic<int64_t>* delivered)
      : index_(index), arrivals_(arrivals), delivered_(delivered) {
    request_.set_send_snapshot(true);
    request_.set_max_batch(max_batch);
    stub->async()->WatchPresence(&context_, &request_, this);
    StartRead(&message_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    const absl::Time now = absl::Now();
    last_sequence_.store(message_.sequence(), std::memory_order_relaxed);
    if (message_.has_snapshot()) {
      // A snapshot (first, or after an overflow) delivers its users too.
      for (int64_t user : message_.snapshot().online_users()) {
        arrivals_->Record(index_, user, now);
      }
      absl::MutexLock lock(&mu_);
      if (ready_) ++resnapshots_;
      ready_ = true;
    } else if (message_.has_change()) {
      OnChange(message_.change(), now);
      delivered_->fetch_add(1, std::memory_order_relaxed);
    } else {
      for (const auto& change : message_.changes().changes()) {
        OnChange(change, now);
      }
      delivered_->fetch_add(message_.changes().changes_size(),
                            std::memory_order_relaxed);
    }
    StartRead(&message_);
  }
  void OnChange(const presence::v1::PresenceChange& change, absl::Time now) {
    if (change.status() == presence::v1::STATUS_ONLINE) {
      arrivals_->Record(index_, change.user_id(), now);
    }
  }
  uint64_t last_sequence() const {
    return last_sequence_.load(std::memory_order_relaxed);
  }
  // Snapshots after the first: changes this stream did not get one by one.
  int resnapshots() {
    absl::MutexLock lock(&mu_);
    return resnapshots_;
  }
  void OnDone(const grpc::Status& status) override {
    absl::MutexLock lock(&mu_);
    done_ = true;
    status_ = status;
  }
  bool AwaitReady() {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return ready_ || done_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(30));
    if (!ready_) {
      std::fprintf(stderr, "watch_latency: stream %d: %s\n", index_,
                   done_ ? status_.error_message().c_str() : "no snapshot");
    }
    return ready_;
  }
  void Cancel() {
    context_.TryCancel();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
  }

 private:
  const int index_;
  Arrivals* const arrivals_;
  std::atomic<int64_t>* const delivered_;
  std::atomic<uint64_t> last_sequence_{0};
  grpc::ClientContext context_;
  presence::v1::WatchPresenceRequest request_;
  presence::v1::WatchPresenceResponse message_;
  absl::Mutex mu_;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  int resnapshots_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * v.size()));
  return v[i];
}

double Median(std::vector<double> v) { return Percentile(std::move(v), 0.5); }

double Micros(absl::Duration d) { return absl::ToDoubleMicroseconds(d); }

double RssBytes(int pid) {
  return static_cast<double>(presence::ReadProcess(pid).rss_kb) * 1024;
}

// For `seconds`, makes `rate` presence changes a second: fresh users come
// online with a Heartbeat and, once it is answered, leave with a
// MarkOffline (so rate / 2 users a second). At most `max_in_flight` calls
// are outstanding: a server that cannot keep up slows the load down rather
// than collecting timeouts. Returns the calls that failed.
int64_t SendLoad(presence::Client& client, int rate, int seconds,
                 int64_t first_user) {
  constexpr int64_t kMaxInFlight = 2'000;
  absl::Mutex mu;
  int64_t in_flight = 0, failed = 0;
  std::string first_error;
  auto done = [&](const absl::Status& status) {
    absl::MutexLock lock(&mu);
    --in_flight;
    if (!status.ok()) {
      if (failed++ == 0) first_error = status.ToString();
    }
  };
  const absl::Time start = absl::Now();
  const int64_t users = static_cast<int64_t>(rate) / 2 * seconds;
  for (int64_t i = 0; i < users; ++i) {
    // Paced by the clock: user i comes online at start + i / (rate / 2).
    const absl::Time due = start + absl::Seconds(2) * i / rate;
    const absl::Duration ahead = due - absl::Now();
    if (ahead > absl::ZeroDuration()) absl::SleepFor(ahead);
    {
      absl::MutexLock lock(&mu);
      auto room = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
        return in_flight < kMaxInFlight;
      };
      mu.Await(absl::Condition(&room));
      in_flight += 2;
    }
    const int64_t user = first_user + i;
    client.HeartbeatAsync(
        user, "", [&, user](absl::StatusOr<presence::v1::HeartbeatResponse> r) {
          if (!r.ok()) {
            done(absl::OkStatus());  // the MarkOffline that won't be sent
            return done(r.status());
          }
          client.MarkOfflineAsync(
              user, "",
              [&](absl::StatusOr<presence::v1::MarkOfflineResponse> m) {
                done(m.status());
              });
          done(absl::OkStatus());
        });
  }
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(
      +[](int64_t* n) { return *n == 0; }, &in_flight));
  if (failed > 0) {
    std::fprintf(stderr, "watch_latency: %lld calls failed, the first: %s\n",
                 static_cast<long long>(failed), first_error.c_str());
  }
  return failed;
}

// presenced serves at most --max_concurrent_streams (1,000) calls at once
// per connection, and a client queues the rest: the watch streams get
// connections of their own, kWatchesPerConnection to each, and the
// heartbeats and the baseline's checks keep the client's.
constexpr int kWatchesPerConnection = 500;

// The watch streams, on connections of their own, and what they saw.
struct WatchFleet {
  explicit WatchFleet(int watchers) : watchers(watchers), arrivals(watchers) {}

  const int watchers;
  std::vector<std::unique_ptr<presence::v1::PresenceService::Stub>> stubs;
  Arrivals arrivals;
  std::atomic<int64_t> delivered{0};
  std::vector<std::unique_ptr<WatchStream>> streams;
};

// A connection per kWatchesPerConnection watchers, each connected before
// it returns: the RSS growth measured after is the streams'.
std::vector<std::unique_ptr<presence::v1::PresenceService::Stub>>
WatchConnections(const std::string& target, int watchers) {
  std::vector<std::unique_ptr<presence::v1::PresenceService::Stub>> stubs;
  for (int w = 0; w < watchers; w += kWatchesPerConnection) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // not shared
    args.SetMaxReceiveMessageSize(-1);
    stubs.push_back(
        presence::v1::PresenceService::NewStub(grpc::CreateCustomChannel(
            target, grpc::InsecureChannelCredentials(), args)));
  }
  for (auto& stub : stubs) {
    grpc::ClientContext context;
    presence::v1::ListOnlineRequest request;
    request.set_page_size(1);
    presence::v1::ListOnlineResponse response;
    stub->ListOnline(&context, request, &response).IgnoreError();
  }
  return stubs;
}

// Opens the streams and waits for each one's snapshot; false if one did not
// start.
bool StartStreams(WatchFleet& fleet, uint32_t max_batch) {
  for (int w = 0; w < fleet.watchers; ++w) {
    fleet.streams.push_back(std::make_unique<WatchStream>(
        fleet.stubs[w / kWatchesPerConnection].get(), w, &fleet.arrivals,
        max_batch, &fleet.delivered));
  }
  for (auto& s : fleet.streams) {
    if (!s->AwaitReady()) {
      std::fprintf(stderr, "watch_latency: a watch stream did not start\n");
      return false;
    }
  }
  return true;
}

double CpuSeconds(int server_pid) {
  return server_pid > 0 ? presence::ReadProcess(server_pid).cpu_seconds : 0;
}

// Where the changes have got to, from a fresh stream's snapshot.
std::optional<uint64_t> CurrentSequence(WatchFleet& fleet) {
  std::atomic<int64_t> ignored{0};
  WatchStream probe(fleet.stubs.front().get(), 0, &fleet.arrivals, 0, &ignored);
  if (!probe.AwaitReady()) return std::nullopt;
  const uint64_t last = probe.last_sequence();
  probe.Cancel();
  return last;
}

// Waits until every stream has had change `last`, for up to 60 s after
// `sent`.
void AwaitCaughtUp(const WatchFleet& fleet, uint64_t last, absl::Time sent) {
  auto caught_up = [&] {
    for (auto& st : fleet.streams) {
      if (st->last_sequence() < last) return false;
    }
    return true;
  };
  while (!caught_up() && absl::Now() - sent < absl::Seconds(60)) {
    absl::SleepFor(absl::Milliseconds(5));
  }
}

// What --mode=throughput measured.
struct ThroughputResult {
  int64_t changes = 0;  // made by the load
  int64_t failed = 0;   // calls
  int64_t got = 0;      // changes delivered, over all watchers
  int64_t expected = 0;
  int resnapshots = 0;
  absl::Time start;  // of the load
  absl::Time sent;   // the load's end
  absl::Time end;    // every watcher had the last change
  double cpu = 0;    // presenced's CPU seconds, 0 without --server_pid
};

void PrintThroughput(const ThroughputResult& r, int watchers, int rate,
                     int seconds, int server_pid) {
  std::printf(
      "watchers=%d rate=%d changes/s seconds=%d max_batch=%u\n"
      "changes made %lld (%.0f/s, %lld calls failed), delivered %lld of "
      "%lld, resnapshots %d\n"
      "sending took %.2f s; every watcher had the last change %.3f s later\n",
      watchers, rate, seconds, absl::GetFlag(FLAGS_max_batch),
      static_cast<long long>(r.changes),
      r.changes / absl::ToDoubleSeconds(r.sent - r.start),
      static_cast<long long>(r.failed), static_cast<long long>(r.got),
      static_cast<long long>(r.expected), r.resnapshots,
      absl::ToDoubleSeconds(r.sent - r.start),
      absl::ToDoubleSeconds(r.end - r.sent));
  if (server_pid > 0 && r.cpu > 0) {
    std::printf(
        "server CPU %.2f s: %.0f changes delivered per CPU-second, "
        "%.3f us of CPU per delivered change\n",
        r.cpu, r.got / r.cpu, r.cpu * 1e6 / std::max<int64_t>(r.got, 1));
  }
}

// --mode=throughput, with users from `first_user` on.
int RunThroughput(presence::Client& client, WatchFleet& fleet,
                  int64_t first_user, int server_pid) {
  const int rate = absl::GetFlag(FLAGS_rate);
  const int seconds = absl::GetFlag(FLAGS_seconds);
  // The streams are idle now: what they count from here is the load's.
  const uint64_t first = fleet.streams.front()->last_sequence();
  fleet.delivered.store(0);
  const double cpu_before = CpuSeconds(server_pid);
  ThroughputResult result;
  result.start = absl::Now();
  result.failed = SendLoad(client, rate, seconds, first_user);
  result.sent = absl::Now();
  const std::optional<uint64_t> last = CurrentSequence(fleet);
  if (!last) return 1;
  result.changes = static_cast<int64_t>(*last - first);
  result.expected = result.changes * fleet.watchers;
  AwaitCaughtUp(fleet, *last, result.sent);
  result.end = absl::Now();
  result.cpu = server_pid > 0 ? CpuSeconds(server_pid) - cpu_before : 0;
  for (auto& st : fleet.streams) result.resnapshots += st->resnapshots();
  result.got = fleet.delivered.load();
  PrintThroughput(result, fleet.watchers, rate, seconds, server_pid);
  for (auto& st : fleet.streams) st->Cancel();
  return result.got == result.expected ? 0 : 1;
}

// The Health/Check round trips of one round, in microseconds: the
// baseline, on the heartbeats' channel. Nothing if a check failed.
std::optional<std::vector<double>> CheckRoundTrips(
    grpc::health::v1::Health::Stub& health, int count) {
  std::vector<double> checks;
  for (int i = 0; i < count; ++i) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    const absl::Time start = absl::Now();
    if (!health.Check(&context, request, &response).ok()) return std::nullopt;
    checks.push_back(Micros(absl::Now() - start));
  }
  return checks;
}

// When each user's heartbeat was sent, and when it was answered.
struct HeartbeatTimes {
  std::vector<absl::Time> sent;
  std::vector<absl::Time> answered;
};

// Makes `users` users from `first_user` on online, one heartbeat at a time
// (--interval_ms apart). Nothing if a heartbeat failed.
std::optional<HeartbeatTimes> SendHeartbeats(presence::Client& client,
                                             int64_t first_user, int users) {
  const absl::Duration interval =
      absl::Milliseconds(absl::GetFlag(FLAGS_interval_ms));
  HeartbeatTimes times{std::vector<absl::Time>(users),
                       std::vector<absl::Time>(users)};
  for (int i = 0; i < users; ++i) {
    if (i > 0) absl::SleepFor(interval);
    times.sent[i] = absl::Now();
    absl::StatusOr<presence::v1::HeartbeatResponse> r =
        client.Heartbeat(first_user + i, "bench");
    times.answered[i] = absl::Now();
    if (!r.ok()) {
      std::fprintf(stderr, "watch_latency: heartbeat: %s\n",
                   r.status().ToString().c_str());
      return std::nullopt;
    }
  }
  return times;
}

// Microseconds from `since[i]` to each watcher's arrival of user i, where
// `at` is watcher-major (Arrivals::Take).
std::vector<double> DelaysSince(const std::vector<absl::Time>& at,
                                const std::vector<absl::Time>& since) {
  std::vector<double> delays;
  delays.reserve(at.size());
  for (size_t k = 0; k < at.size(); ++k) {
    delays.push_back(Micros(at[k] - since[k % since.size()]));
  }
  return delays;
}

// Per round of --mode=latency, the p50 and p99 of each measure.
struct LatencyRounds {
  std::vector<double> sent_p50, sent_p99, answered_p50, answered_p99, check_p50,
      check_p99;
};

// One round of --mode=latency, with users from `first_user` on, added to
// `rounds`; false if it failed.
bool MeasureRound(presence::Client& client,
                  grpc::health::v1::Health::Stub& health, Arrivals& arrivals,
                  int64_t first_user, int users, LatencyRounds* rounds) {
  std::optional<std::vector<double>> checks = CheckRoundTrips(health, users);
  if (!checks) return false;
  arrivals.Reset(users, first_user);
  std::optional<HeartbeatTimes> times =
      SendHeartbeats(client, first_user, users);
  if (!times) return false;
  if (!arrivals.AwaitAll(absl::Seconds(60))) {
    std::fprintf(stderr, "watch_latency: changes missing after 60 s\n");
    return false;
  }
  const std::vector<absl::Time> at = arrivals.Take();
  const std::vector<double> from_sent = DelaysSince(at, times->sent);
  const std::vector<double> from_answered = DelaysSince(at, times->answered);
  rounds->sent_p50.push_back(Median(from_sent));
  rounds->sent_p99.push_back(Percentile(from_sent, 0.99));
  rounds->answered_p50.push_back(Median(from_answered));
  rounds->answered_p99.push_back(Percentile(from_answered, 0.99));
  rounds->check_p50.push_back(Median(*checks));
  rounds->check_p99.push_back(Percentile(*checks, 0.99));
  return true;
}

// Medians over rounds (BENCH.md).
void PrintLatency(const LatencyRounds& rounds, int watchers, int users,
                  int round_count) {
  const double c50 = Median(rounds.check_p50), c99 = Median(rounds.check_p99);
  std::printf(
      "watchers=%d users=%d rounds=%d (medians of rounds, microseconds)\n",
      watchers, users, round_count);
  std::printf("%-42s %10s %10s\n", "", "p50", "p99");
  std::printf("%-42s %10.0f %10.0f\n", "Health/Check round trip (baseline)",
              c50, c99);
  std::printf("%-42s %10.0f %10.0f\n", "Heartbeat sent -> change received",
              Median(rounds.sent_p50), Median(rounds.sent_p99));
  std::printf("%-42s %10.0f %10.0f\n", "Heartbeat answered -> change received",
              Median(rounds.answered_p50), Median(rounds.answered_p99));
  std::printf("%-42s %10.2f %10.2f\n", "sent -> received / Check round trip",
              Median(rounds.sent_p50) / c50, Median(rounds.sent_p99) / c99);
}

// --mode=latency, with users from `first_user` on.
int RunLatency(presence::Client& client, grpc::health::v1::Health::Stub& health,
               WatchFleet& fleet, int64_t first_user, int users, int rounds) {
  LatencyRounds measured;
  int64_t next_user = first_user;
  for (int round = 0; round < rounds; ++round) {
    if (!MeasureRound(client, health, fleet.arrivals, next_user, users,
                      &measured)) {
      return 1;
    }
    next_user += users;
    // The users stay online (they expire after the window): logging them
    // out would put a burst of changes between the rounds.
  }
  for (auto& s : fleet.streams) s->Cancel();
  PrintLatency(measured, fleet.watchers, users, rounds);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int users = absl::GetFlag(FLAGS_users);
  const int watchers = absl::GetFlag(FLAGS_watchers);
  const int rounds = absl::GetFlag(FLAGS_rounds);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  const int server_pid = absl::GetFlag(FLAGS_server_pid);
  if (mode != "latency" && mode != "throughput") {
    std::fprintf(stderr, "watch_latency: --mode is latency or throughput\n");
    return 2;
  }
  presence::ClientOptions options;
  options.target = absl::GetFlag(FLAGS_server);
  presence::Client client(options);
  auto health = grpc::health::v1::Health::NewStub(client.channel());
  WatchFleet fleet(watchers);
  fleet.stubs = WatchConnections(options.target, watchers);
  const double rss_before = server_pid > 0 ? RssBytes(server_pid) : 0;
  if (!StartStreams(fleet, absl::GetFlag(FLAGS_max_batch))) return 1;
  if (server_pid > 0) {
    std::printf("server RSS per idle stream: %.0f bytes (%d streams)\n",
                (RssBytes(server_pid) - rss_before) / watchers, watchers);
  }

  // Fresh ids each run, so that every heartbeat is a transition.
  absl::BitGen gen;
  const int64_t first_user = absl::Uniform<int64_t>(gen, 1, int64_t{1} << 40);
  if (mode == "throughput") {
    return RunThroughput(client, fleet, first_user, server_pid);
  }
  return RunLatency(client, *health, fleet, first_user, users, rounds);
}
