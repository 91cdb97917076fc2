// watch_latency: how long a presence change takes to reach watchers.
//
// Opens --watchers WatchPresence streams on a running presenced, then, for
// each of --users fresh users in turn, sends a Heartbeat (which makes the
// user online) and notes when it was sent, when it was answered and when
// each watcher received the ONLINE change. Repeats for --rounds rounds with
// new users. The baseline, measured in the same run on the same channel, is
// the round trip of grpc.health.v1.Health/Check (an almost empty call).
//
//   watch_latency --server=127.0.0.1:50051 --users=1000 --watchers=1

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

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "presenced's HOST:PORT.");
ABSL_FLAG(int, users, 1000, "Fresh users per round (one Heartbeat each).");
ABSL_FLAG(int, watchers, 1, "WatchPresence streams, each watching everyone.");
ABSL_FLAG(int, rounds, 3, "Rounds; the report gives the median of rounds.");

namespace {

using presence::v1::WatchPresenceResponse;

// When each watcher saw each user of the current round come online.
class Arrivals {
 public:
  void Reset(int watchers, int users, int64_t first_user) {
    absl::MutexLock lock(&mu_);
    users_ = users;
    first_user_ = first_user;
    at_.assign(static_cast<size_t>(watchers) * users, absl::InfinitePast());
    count_ = 0;
  }
  void Record(int watcher, int64_t user, absl::Time now) {
    absl::MutexLock lock(&mu_);
    const int64_t i = user - first_user_;
    if (i < 0 || i >= users_) return;  // another round's user
    absl::Time& slot = at_[static_cast<size_t>(watcher) * users_ + i];
    if (slot == absl::InfinitePast()) {
      slot = now;
      ++count_;
    }
  }
  bool AwaitAll(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto all = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return count_ == at_.size();
    };
    return mu_.AwaitWithTimeout(absl::Condition(&all), timeout);
  }
  std::vector<absl::Time> Take() {
    absl::MutexLock lock(&mu_);
    return at_;
  }

 private:
  absl::Mutex mu_;
  int users_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t first_user_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<absl::Time> at_ ABSL_GUARDED_BY(mu_);
  size_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

// One WatchPresence stream on gRPC's callback client API.
class WatchStream
    : public grpc::ClientReadReactor<presence::v1::WatchPresenceResponse> {
 public:
  WatchStream(presence::v1::PresenceService::Stub* stub, int index,
              Arrivals* arrivals)
      : index_(index), arrivals_(arrivals) {
    request_.set_send_snapshot(true);
    stub->async()->WatchPresence(&context_, &request_, this);
    StartRead(&message_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    const absl::Time now = absl::Now();
    if (message_.has_snapshot()) {
      // A snapshot (first, or after an overflow) delivers its users too.
      for (int64_t user : message_.snapshot().online_users()) {
        arrivals_->Record(index_, user, now);
      }
      absl::MutexLock lock(&mu_);
      ready_ = true;
    } else if (message_.change().status() == presence::v1::STATUS_ONLINE) {
      arrivals_->Record(index_, message_.change().user_id(), now);
    }
    StartRead(&message_);
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
  grpc::ClientContext context_;
  presence::v1::WatchPresenceRequest request_;
  presence::v1::WatchPresenceResponse message_;
  absl::Mutex mu_;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
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

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int users = absl::GetFlag(FLAGS_users);
  const int watchers = absl::GetFlag(FLAGS_watchers);
  const int rounds = absl::GetFlag(FLAGS_rounds);
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
  Arrivals arrivals;
  std::vector<std::unique_ptr<WatchStream>> streams;
  for (int w = 0; w < watchers; ++w) {
    streams.push_back(std::make_unique<WatchStream>(
        stubs[w / kWatchesPerConnection].get(), w, &arrivals));
  }
  for (auto& s : streams) {
    if (!s->AwaitReady()) {
      std::fprintf(stderr, "watch_latency: a watch stream did not start\n");
      return 1;
    }
  }

  // Fresh ids each run, so that every heartbeat is a transition.
  absl::BitGen gen;
  int64_t next_user = absl::Uniform<int64_t>(gen, 1, int64_t{1} << 40);
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
    arrivals.Reset(watchers, users, first);
    std::vector<absl::Time> sent(users), answered(users);
    for (int i = 0; i < users; ++i) {
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
