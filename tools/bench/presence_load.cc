// presence_load: a load generator for presenced with many distinct users,
// for what h2load's one fixed request body cannot do. Prints key=value
// lines for tools/bench/run.sh.
//
//   presence_load --mode=fill  --users=1000000 --batch=1000 --threads=4
//       one heartbeat for each of users 1..N (BatchHeartbeat), then reports
//   presence_load --mode=batch --users=100000 --batch=100 --threads=16
//   --seconds=5
//       BatchHeartbeat throughput (heartbeats/s) over users 1..N
//   presence_load --mode=list  --rounds=3
//       time to list every online user (ListOnline, all pages)

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/time/clock.h"
#include "presence/client.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "presenced's HOST:PORT.");
ABSL_FLAG(std::string, mode, "fill", "fill, batch or list.");
ABSL_FLAG(int64_t, users, 100'000, "fill, batch: user ids 1..users.");
ABSL_FLAG(int, batch, 100, "fill, batch: heartbeats per BatchHeartbeat.");
ABSL_FLAG(int, threads, 4, "fill, batch: concurrent callers.");
ABSL_FLAG(double, seconds, 5, "batch: how long.");
ABSL_FLAG(int, rounds, 3, "list: full listings; the median is reported.");
ABSL_FLAG(int, page_size, 10'000, "list: users per page.");

namespace {

presence::ClientOptions Options() {
  presence::ClientOptions options;
  options.target = absl::GetFlag(FLAGS_server);
  options.deadline = absl::Seconds(120);
  return options;
}

// Sends heartbeats for users [first, last] in batches; false on an error.
bool Beat(presence::Client& client, int64_t first, int64_t last, int batch) {
  presence::v1::BatchHeartbeatRequest request;
  for (int64_t user = first; user <= last; user += batch) {
    request.clear_heartbeats();
    for (int64_t u = user; u <= std::min(last, user + batch - 1); ++u) {
      request.add_heartbeats()->set_user_id(u);
    }
    absl::StatusOr<presence::v1::BatchHeartbeatResponse> r =
        client.BatchHeartbeat(request);
    if (!r.ok()) {
      std::fprintf(stderr, "presence_load: %s\n",
                   r.status().ToString().c_str());
      return false;
    }
    for (const presence::v1::BatchHeartbeatResult& result : r->results()) {
      if (result.has_error()) {
        std::fprintf(stderr, "presence_load: %s\n",
                     result.error().message().c_str());
        return false;
      }
    }
  }
  return true;
}

int Fill() {
  const int64_t users = absl::GetFlag(FLAGS_users);
  const int threads = absl::GetFlag(FLAGS_threads);
  const int batch = absl::GetFlag(FLAGS_batch);
  presence::Client client(Options());
  std::atomic<bool> ok{true};
  const absl::Time start = absl::Now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const int64_t per = (users + threads - 1) / threads;
      const int64_t first = 1 + t * per;
      const int64_t last = std::min(users, first + per - 1);
      if (first <= last && !Beat(client, first, last, batch)) ok = false;
    });
  }
  for (auto& w : workers) w.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("filled=%lld seconds=%.3f heartbeats_per_second=%.0f\n",
              static_cast<long long>(users), seconds, users / seconds);
  return ok ? 0 : 1;
}

int Batch() {
  const int64_t users = absl::GetFlag(FLAGS_users);
  const int threads = absl::GetFlag(FLAGS_threads);
  const int batch = absl::GetFlag(FLAGS_batch);
  const absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  presence::Client client(Options());
  std::atomic<int64_t> sent{0};
  std::atomic<bool> ok{true};
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      int64_t next = 1 + (users / threads) * t;
      while (absl::Now() < end && ok) {
        const int64_t first = next;
        const int64_t last = std::min(users, first + batch - 1);
        if (!Beat(client, first, last, batch)) {
          ok = false;
          break;
        }
        sent += last - first + 1;
        next = last >= users ? 1 : last + 1;
      }
    });
  }
  for (auto& w : workers) w.join();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("heartbeats=%lld seconds=%.3f heartbeats_per_second=%.0f\n",
              static_cast<long long>(sent.load()), seconds,
              sent.load() / seconds);
  return ok ? 0 : 1;
}

int List() {
  presence::Client client(Options());
  std::vector<double> ms;
  int64_t count = 0;
  for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
    presence::v1::ListOnlineRequest request;
    request.set_page_size(absl::GetFlag(FLAGS_page_size));
    count = 0;
    const absl::Time start = absl::Now();
    do {
      absl::StatusOr<presence::v1::ListOnlineResponse> page =
          client.ListOnline(request);
      if (!page.ok()) {
        std::fprintf(stderr, "presence_load: %s\n",
                     page.status().ToString().c_str());
        return 1;
      }
      count += page->online_users_size();
      request.set_page_token(page->next_page_token());
    } while (!request.page_token().empty());
    ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
  }
  std::sort(ms.begin(), ms.end());
  std::printf("listed=%lld median_ms=%.1f\n", static_cast<long long>(count),
              ms[ms.size() / 2]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "fill") return Fill();
  if (mode == "batch") return Batch();
  if (mode == "list") return List();
  std::fprintf(stderr, "presence_load: unknown --mode=%s\n", mode.c_str());
  return 2;
}
