// Many idle browsers on presence-rest's event stream: what they cost the
// proxy, and how long one change takes to reach all of them.
//
//   sse_clients --rest=127.0.0.1:8080 --rest_pid=PID --jwt_secret_file=F
//       --clients=10000 --rounds=5
//
// Opens --clients event streams (one I/O thread, all asynchronous), waits
// for every snapshot, reads the proxy's RSS and thread count from /proc, then
// per round makes one user online with a heartbeat through the proxy and
// times, per client, from just before the heartbeat is sent to that client
// receiving the change. Prints one line per figure (see sse_fanout.sh).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "boost/asio/connect.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/read_until.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "gateway/jwt.h"
#include "service/host_port.h"
#include "tools/process_sample.h"

ABSL_FLAG(std::string, rest, "127.0.0.1:8080", "presence-rest's HOST:PORT");
ABSL_FLAG(int, rest_pid, 0, "presence-rest's pid, for /proc/PID/status");
ABSL_FLAG(std::string, jwt_secret_file, "", "the proxy's HS256 secret");
ABSL_FLAG(int, clients, 10'000, "event streams to open");
ABSL_FLAG(int, rounds, 5, "changes to time");
ABSL_FLAG(int64_t, first_user, 1'000'001,
          "round r makes user first_user + r - 1 online: pick users that "
          "are offline");

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

std::string Token(const std::string& secret, int64_t user) {
  return presence::rest::SignHs256Jwt(
      absl::StrCat(R"({"token_type":"access","user_id":)", user, R"(,"exp":)",
                   absl::ToUnixSeconds(absl::Now() + absl::Hours(1)), "}"),
      secret);
}

struct Stream {
  explicit Stream(asio::io_context& io) : socket(io) {}
  tcp::socket socket;
  std::string buffer;
  bool snapshot = false;
  int64_t waiting_for = 0;  // the user whose change this round times
  Clock::time_point received;
};

class Clients {
 public:
  Clients(asio::io_context& io, tcp::endpoint endpoint, std::string target)
      : io_(io), endpoint_(endpoint), target_(std::move(target)) {}

  void Open(int count) {
    for (int i = 0; i < count; ++i) {
      streams_.push_back(std::make_unique<Stream>(io_));
      Stream* stream = streams_.back().get();
      beast::error_code error;
      stream->socket.connect(endpoint_, error);
      if (error) {
        std::fprintf(stderr, "connect %d: %s\n", i, error.message().c_str());
        std::exit(1);
      }
      asio::write(stream->socket,
                  asio::buffer(absl::StrCat(
                      "GET ", target_, " HTTP/1.1\r\nHost: bench\r\n\r\n")));
      Read(stream);
    }
  }

  // Runs the I/O loop until `done()` or the timeout.
  template <typename Done>
  bool RunUntil(Done done, absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (!done()) {
      if (absl::Now() > deadline) return false;
      io_.restart();
      io_.run_for(std::chrono::milliseconds(20));
    }
    return true;
  }

  int snapshots = 0;
  int changes = 0;
  std::vector<std::unique_ptr<Stream>>& streams() { return streams_; }

 private:
  void Read(Stream* stream) {
    asio::async_read_until(
        stream->socket, asio::dynamic_buffer(stream->buffer), "\n\n",
        [this, stream](beast::error_code error, size_t) {
          if (error) {
            std::fprintf(stderr, "stream ended: %s\n", error.message().c_str());
            std::exit(1);
          }
          size_t end;
          while ((end = stream->buffer.find("\n\n")) != std::string::npos) {
            std::string frame = stream->buffer.substr(0, end);
            stream->buffer.erase(0, end + 2);
            if (frame.find("event: snapshot") != std::string::npos &&
                !stream->snapshot) {
              stream->snapshot = true;
              ++snapshots;
            } else if (stream->waiting_for != 0 &&
                       frame.find("event: change") != std::string::npos &&
                       frame.find(
                           absl::StrCat("\"user_id\":", stream->waiting_for)) !=
                           std::string::npos) {
              stream->waiting_for = 0;
              stream->received = Clock::now();
              ++changes;
            }
          }
          Read(stream);
        });
  }

  asio::io_context& io_;
  tcp::endpoint endpoint_;
  std::string target_;
  std::vector<std::unique_ptr<Stream>> streams_;
};

void Heartbeat(tcp::endpoint endpoint, const std::string& token) {
  asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(endpoint);
  http::request<http::string_body> request{http::verb::post,
                                           "/api/chat/heartbeat/", 11};
  request.set(http::field::host, "bench");
  request.set(http::field::authorization, "Bearer " + token);
  request.prepare_payload();
  http::write(stream, request);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(stream, buffer, response);
  if (response.result_int() != 200) {
    std::fprintf(stderr, "heartbeat: %d %s\n", response.result_int(),
                 response.body().c_str());
    std::exit(1);
  }
}

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  return values[std::min(values.size() - 1,
                         static_cast<size_t>(p * values.size()))];
}

// Every stream holds a descriptor: up to the hard limit.
void RaiseOpenFileLimit() {
  rlimit limit;
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
}

// The proxy's HS256 secret, without trailing newlines.
std::string ReadJwtSecret(const std::string& path) {
  std::ifstream in(path);
  std::stringstream secret_stream;
  secret_stream << in.rdbuf();
  std::string secret = secret_stream.str();
  while (!secret.empty() && secret.back() == '\n') secret.pop_back();
  return secret;
}

// What the open streams cost the proxy, from /proc.
struct OpenCost {
  presence::ProcessSample one_stream;
  presence::ProcessSample all_streams;
  double open_seconds = 0;  // from one stream to all
};

// Opens `count` streams and waits for every snapshot. Nothing (after saying
// why) if they did not all come.
std::optional<OpenCost> OpenStreams(Clients& clients, int count, int pid) {
  // One stream first, so that the baseline includes the proxy's steady
  // state (the watcher's mirror, buffers of the first stream).
  clients.Open(1);
  if (!clients.RunUntil([&] { return clients.snapshots == 1; },
                        absl::Seconds(30))) {
    std::fprintf(stderr, "no snapshot on the first stream\n");
    return std::nullopt;
  }
  OpenCost cost;
  cost.one_stream = presence::ReadProcess(pid);
  absl::Time opening = absl::Now();
  clients.Open(count - 1);
  if (!clients.RunUntil([&] { return clients.snapshots == count; },
                        absl::Minutes(5))) {
    std::fprintf(stderr, "only %d of %d snapshots\n", clients.snapshots, count);
    return std::nullopt;
  }
  cost.open_seconds = absl::ToDoubleSeconds(absl::Now() - opening);
  cost.all_streams = presence::ReadProcess(pid);
  return cost;
}

void PrintOpenCost(int count, const OpenCost& cost) {
  const presence::ProcessSample& before = cost.one_stream;
  const presence::ProcessSample& after = cost.all_streams;
  std::printf("clients %d\n", count);
  std::printf("open_seconds %.2f\n", cost.open_seconds);
  std::printf("rss_kb_one_stream %lld\n",
              static_cast<long long>(before.rss_kb));
  std::printf("rss_kb_all_streams %lld\n",
              static_cast<long long>(after.rss_kb));
  std::printf("bytes_per_stream %.0f\n",
              count > 1 ? static_cast<double>(after.rss_kb - before.rss_kb) *
                              1024.0 / (count - 1)
                        : 0);
  std::printf("threads_one_stream %lld\n",
              static_cast<long long>(before.threads));
  std::printf("threads_all_streams %lld\n",
              static_cast<long long>(after.threads));
}

// Round `round`: makes `user` online with a heartbeat through the proxy.
// Returns, per client, the milliseconds from just before the heartbeat to
// the change; nothing (after saying so) if not every client got it.
std::optional<std::vector<double>> TimeChange(Clients& clients, int count,
                                              tcp::endpoint endpoint,
                                              const std::string& secret,
                                              int round, int64_t user) {
  for (auto& stream : clients.streams()) stream->waiting_for = user;
  clients.changes = 0;
  Clock::time_point sent = Clock::now();
  std::thread beat(Heartbeat, endpoint, Token(secret, user));
  bool all = clients.RunUntil([&] { return clients.changes == count; },
                              absl::Seconds(60));
  beat.join();
  if (!all) {
    std::fprintf(stderr, "round %d: %d of %d got the change\n", round,
                 clients.changes, count);
    return std::nullopt;
  }
  std::vector<double> ms;
  for (auto& stream : clients.streams()) {
    ms.push_back(
        std::chrono::duration<double, std::milli>(stream->received - sent)
            .count());
  }
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  RaiseOpenFileLimit();
  const std::string secret =
      ReadJwtSecret(absl::GetFlag(FLAGS_jwt_secret_file));

  std::string rest = absl::GetFlag(FLAGS_rest);
  absl::StatusOr<presence::HostPort> address = presence::ParseHostPort(rest);
  if (!address.ok()) return 2;
  tcp::endpoint endpoint(asio::ip::make_address(address->host),
                         static_cast<uint16_t>(address->port));
  const int pid = absl::GetFlag(FLAGS_rest_pid);
  const int count = absl::GetFlag(FLAGS_clients);

  asio::io_context io;
  Clients clients(io, endpoint,
                  "/api/chat/presence/stream?access_token=" + Token(secret, 1));
  std::optional<OpenCost> cost = OpenStreams(clients, count, pid);
  if (!cost) return 1;
  PrintOpenCost(count, *cost);

  std::vector<double> p50s, p99s, maxes;
  for (int round = 1; round <= absl::GetFlag(FLAGS_rounds); ++round) {
    const int64_t user = absl::GetFlag(FLAGS_first_user) + round - 1;
    std::optional<std::vector<double>> ms =
        TimeChange(clients, count, endpoint, secret, round, user);
    if (!ms) return 1;
    p50s.push_back(Percentile(*ms, 0.50));
    p99s.push_back(Percentile(*ms, 0.99));
    maxes.push_back(Percentile(*ms, 1.0));
  }
  std::printf("change_p50_ms %.2f\n", Percentile(p50s, 0.5));
  std::printf("change_p99_ms %.2f\n", Percentile(p99s, 0.5));
  std::printf("change_max_ms %.2f\n", Percentile(maxes, 0.5));
  return 0;
}
