// watch_latency: how long a presence change takes to reach watchers, and how
// many changes presenced delivers per CPU-second.
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

  // presenced serves at most --max_concurrent_streams (1,000) calls at once
  // per connection, and a client queues the rest: the watch streams get
  // connections of their own, kWatchesPerConnection to each, and the
  // heartbeats and the baseline's checks keep `client`'s.
  constexpr int kWatchesPerConnection = 500;
  std::vector<std::unique_ptr<presence::v1::PresenceService::Stub>> stubs;
  for (int w = 0; w < watchers; w += kWatchesPerConnection) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // not shared
    args.SetMaxReceiveMessageSize(-1);
    stubs.push_back(
        presence::v1::PresenceService::NewStub(grpc::CreateCustomChannel(
            options.target, grpc::InsecureChannelCredentials(), args)));
  }
  // The connections first: the RSS growth below is the streams'.
  for (auto& stub : stubs) {
    grpc::ClientContext context;
    presence::v1::ListOnlineRequest request;
    request.set_page_size(1);
    presence::v1::ListOnlineResponse response;
    stub->ListOnline(&context, request, &response).IgnoreError();
  }
  const double rss_before = server_pid > 0 ? RssBytes(server_pid) : 0;
  Arrivals arrivals(watchers);
  std::atomic<int64_t> delivered{0};
  std::vector<std::unique_ptr<WatchStream>> streams;
  for (int w = 0; w < watchers; ++w) {
    streams.push_back(std::make_unique<WatchStream>(
        stubs[w / kWatchesPerConnection].get(), w, &arrivals,
        absl::GetFlag(FLAGS_max_batch), &delivered));
  }
  for (auto& s : streams) {
    if (!s->AwaitReady()) {
      std::fprintf(stderr, "watch_latency: a watch stream did not start\n");
      return 1;
    }
  }
  if (server_pid > 0) {
    std::printf("server RSS per idle stream: %.0f bytes (%d streams)\n",
                (RssBytes(server_pid) - rss_before) / watchers, watchers);
  }

  // Fresh ids each run, so that every heartbeat is a transition.
  absl::BitGen gen;
  int64_t next_user = absl::Uniform<int64_t>(gen, 1, int64_t{1} << 40);

  if (mode == "throughput") {
    const int rate = absl::GetFlag(FLAGS_rate);
    const int seconds = absl::GetFlag(FLAGS_seconds);
    // The streams are idle now: what they count from here is the load's.
    const uint64_t first = streams.front()->last_sequence();
    delivered.store(0);
    const double cpu_before =
        server_pid > 0 ? presence::ReadProcess(server_pid).cpu_seconds : 0;
    const absl::Time start = absl::Now();
    const int64_t failed = SendLoad(client, rate, seconds, next_user);
    const absl::Time sent = absl::Now();
    // Where the load ended, from a fresh stream's snapshot.
    std::atomic<int64_t> ignored{0};
    WatchStream probe(stubs.front().get(), 0, &arrivals, 0, &ignored);
    if (!probe.AwaitReady()) return 1;
    const uint64_t last = probe.last_sequence();
    probe.Cancel();
    const int64_t changes = static_cast<int64_t>(last - first);
    const int64_t expected = changes * watchers;
    auto caught_up = [&] {
      for (auto& st : streams) {
        if (st->last_sequence() < last) return false;
      }
      return true;
    };
    while (!caught_up() && absl::Now() - sent < absl::Seconds(60)) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    const absl::Time end = absl::Now();
    const double cpu =
        server_pid > 0
            ? presence::ReadProcess(server_pid).cpu_seconds - cpu_before
            : 0;
    int resnapshots = 0;
    for (auto& st : streams) resnapshots += st->resnapshots();
    const int64_t got = delivered.load();
    std::printf(
        "watchers=%d rate=%d changes/s seconds=%d max_batch=%u\n"
        "changes made %lld (%.0f/s, %lld calls failed), delivered %lld of "
        "%lld, resnapshots %d\n"
        "sending took %.2f s; every watcher had the last change %.3f s later\n",
        watchers, rate, seconds, absl::GetFlag(FLAGS_max_batch),
        static_cast<long long>(changes),
        changes / absl::ToDoubleSeconds(sent - start),
        static_cast<long long>(failed), static_cast<long long>(got),
        static_cast<long long>(expected), resnapshots,
        absl::ToDoubleSeconds(sent - start), absl::ToDoubleSeconds(end - sent));
    if (server_pid > 0 && cpu > 0) {
      std::printf(
          "server CPU %.2f s: %.0f changes delivered per CPU-second, "
          "%.3f us of CPU per delivered change\n",
          cpu, got / cpu, cpu * 1e6 / std::max<int64_t>(got, 1));
    }
    for (auto& st : streams) st->Cancel();
    return got == expected ? 0 : 1;
  }
  std::vector<double> sent_p50, sent_p99, answered_p50, answered_p99, check_p50,
      check_p99;
  for (int round = 0; round < rounds; ++round) {
    // Baseline: Health/Check round trips on the same channel.
    std::vector<double> checks;
    for (int i = 0; i < users; ++i) {
      grpc::ClientContext context;
      grpc::health::v1::HealthCheckRequest request;
      grpc::health::v1::HealthCheckResponse response;
      const absl::Time start = absl::Now();
      if (!health->Check(&context, request, &response).ok()) return 1;
      checks.push_back(Micros(absl::Now() - start));
    }

    const int64_t first = next_user;
    next_user += users;
    arrivals.Reset(users, first);
    std::vector<absl::Time> sent(users), answered(users);
    for (int i = 0; i < users; ++i) {
      if (i > 0)
        absl::SleepFor(absl::Milliseconds(absl::GetFlag(FLAGS_interval_ms)));
      sent[i] = absl::Now();
      absl::StatusOr<presence::v1::HeartbeatResponse> r =
          client.Heartbeat(first + i, "bench");
      answered[i] = absl::Now();
      if (!r.ok()) {
        std::fprintf(stderr, "watch_latency: heartbeat: %s\n",
                     r.status().ToString().c_str());
        return 1;
      }
    }
    if (!arrivals.AwaitAll(absl::Seconds(60))) {
      std::fprintf(stderr, "watch_latency: changes missing after 60 s\n");
      return 1;
    }
    std::vector<absl::Time> at = arrivals.Take();
    std::vector<double> from_sent, from_answered;
    for (int w = 0; w < watchers; ++w) {
      for (int i = 0; i < users; ++i) {
        const absl::Time t = at[static_cast<size_t>(w) * users + i];
        from_sent.push_back(Micros(t - sent[i]));
        from_answered.push_back(Micros(t - answered[i]));
      }
    }
    sent_p50.push_back(Median(from_sent));
    sent_p99.push_back(Percentile(from_sent, 0.99));
    answered_p50.push_back(Median(from_answered));
    answered_p99.push_back(Percentile(from_answered, 0.99));
    check_p50.push_back(Median(checks));
    check_p99.push_back(Percentile(checks, 0.99));
    // The users stay online (they expire after the window): logging them
    // out would put a burst of changes between the rounds.
  }
  for (auto& s : streams) s->Cancel();

  // Medians over rounds (BENCH.md).
  const double c50 = Median(check_p50), c99 = Median(check_p99);
  std::printf(
      "watchers=%d users=%d rounds=%d (medians of rounds, microseconds)\n",
      watchers, users, rounds);
  std::printf("%-42s %10s %10s\n", "", "p50", "p99");
  std::printf("%-42s %10.0f %10.0f\n", "Health/Check round trip (baseline)",
              c50, c99);
  std::printf("%-42s %10.0f %10.0f\n", "Heartbeat sent -> change received",
              Median(sent_p50), Median(sent_p99));
  std::printf("%-42s %10.0f %10.0f\n", "Heartbeat answered -> change received",
              Median(answered_p50), Median(answered_p99));
  std::printf("%-42s %10.2f %10.2f\n", "sent -> received / Check round trip",
              Median(sent_p50) / c50, Median(sent_p99) / c99);
  return 0;
}
