// soak: presenced under steady, realistic load for minutes or hours, then a
// check that every watcher's view equals ListOnline (tools/soak/README.md).
//
// Simulates --users users with 1-3 sessions each, every session beating once
// per heartbeat_interval (learned from presenced's answer), spread evenly
// over the interval: BatchHeartbeat in groups of --batch, and unary
// Heartbeat for --unary_fraction of the users. Churn: users leave (half stop
// beating and expire, half MarkOffline every session), as many arrive (new
// ids or returning ones), and tabs close (MarkOffline of one session) and
// open. --watchers presence::Watcher streams (changes come in batches and
// are checked one at a time), some watching everyone and the others a
// random subset, reach presenced through a TCP proxy in this process, which
// cuts their connections from time to time so that Watcher's own
// reconnect-and-resume path runs; a few watchers are also destroyed and
// recreated (a fresh snapshot).
//
// Phases: fill (one heartbeat of every session, before the watchers start),
// steady (--seconds), drain (no churn and no disconnects, for one
// online_window and a margin, so that leavers have expired), final (refresh
// every live session, one heartbeat of a sentinel user that every watcher
// watches, wait until each watcher has it, then compare each view with
// ListAllOnline, and ListAllOnline with what the simulation did).
//
// presenced's RSS, high-water mark, threads and CPU time (from /proc, with
// --server_pid) and the load's counters go to --csv every --sample_every.
// Exit status: 0 if every check holds and no call failed, 1 otherwise, 2 on
// bad usage.
//
//   soak --server=127.0.0.1:50051 --server_pid=PID --seconds=600
//       --csv=/tmp/soak.csv

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "presence/client.h"
#include "presence/watcher.h"
#include "service/host_port.h"
#include "tools/process_sample.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051",
          "presenced's HOST:PORT (the proxy resolves HOST itself).");
ABSL_FLAG(int, server_pid, 0,
          "presenced's process id, to sample its RSS, threads and CPU time "
          "from /proc; 0: no samples of the server.");
ABSL_FLAG(std::string, csv, "", "Where to write the samples; empty: nowhere.");
ABSL_FLAG(double, seconds, 600, "Length of the steady phase.");
ABSL_FLAG(int64_t, users, 100'000, "Simulated users present at a time.");
ABSL_FLAG(int, batch, 500, "Heartbeats per BatchHeartbeat.");
ABSL_FLAG(double, unary_fraction, 0.02,
          "Users whose sessions beat with unary Heartbeat calls.");
ABSL_FLAG(double, churn_per_minute, 0.02,
          "Fraction of --users leaving per minute (as many arrive).");
ABSL_FLAG(double, tab_churn_per_minute, 0.02,
          "Fraction of --users closing or opening a tab per minute.");
ABSL_FLAG(int, load_threads, 8, "Threads making the load's calls.");
ABSL_FLAG(absl::Duration, tick, absl::Milliseconds(100),
          "Scheduling step of the heartbeats.");
ABSL_FLAG(absl::Duration, deadline, absl::Seconds(30),
          "Deadline of each load call.");
ABSL_FLAG(int, watchers, 1000, "presence::Watcher streams.");
ABSL_FLAG(double, everyone_fraction, 0.1,
          "Watchers that watch everyone; the others watch --subset_size ids.");
ABSL_FLAG(int, subset_size, 1000, "Users watched by a subset watcher.");
ABSL_FLAG(int, watch_connections, 20,
          "TCP connections (channels) the watchers share through the proxy.");
ABSL_FLAG(absl::Duration, cut_every, absl::Seconds(5),
          "Cut one proxy connection this often (its watchers resume).");
ABSL_FLAG(absl::Duration, cut_all_every, absl::Seconds(60),
          "Cut every proxy connection this often (a reconnect storm).");
ABSL_FLAG(absl::Duration, recreate_every, absl::Seconds(2),
          "Destroy and recreate one watcher this often (a fresh snapshot).");
ABSL_FLAG(absl::Duration, sample_every, absl::Seconds(5),
          "Sampling period of the CSV.");
ABSL_FLAG(absl::Duration, progress_every, absl::Seconds(60),
          "Period of the progress lines on stderr.");
ABSL_FLAG(absl::Duration, warmup, absl::ZeroDuration(),
          "Start of the steady phase left out of the RSS drift; 0: two "
          "online windows.");

namespace {

using presence::HostPort;
using presence::ParseHostPort;
using presence::ProcessSample;
using presence::ReadProcess;
using presence::v1::PresenceChange;
using presence::v1::Snapshot;
using presence::v1::WatchPresenceResponse;

// Beats once at the end; every watcher watches it.
constexpr int64_t kSentinelUser = int64_t{1} << 40;

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// Outcomes of calls by "Method CODE"; thread-safe.
class CallStats {
 public:
  void Record(absl::string_view method, absl::StatusCode code, int64_t n = 1) {
    absl::MutexLock lock(&mu_);
    counts_[absl::StrCat(method, " ", absl::StatusCodeToString(code))] += n;
    if (code != absl::StatusCode::kOk && method != kWatch) errors_ += n;
  }
  // The ends of WatchPresence streams, most of them cut on purpose.
  static constexpr absl::string_view kWatch = "WatchPresence";
  // Failed calls other than WatchPresence's.
  int64_t errors() const {
    absl::MutexLock lock(&mu_);
    return errors_;
  }
  std::map<std::string, int64_t> counts() const {
    absl::MutexLock lock(&mu_);
    return counts_;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, int64_t> counts_ ABSL_GUARDED_BY(mu_);
  int64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
};

// A TCP proxy on a loopback port to one upstream address, whose connections
// can be cut (both sockets shut down at once), as a network failure would:
// the gRPC streams on a cut connection fail with UNAVAILABLE.
class TcpProxy {
 public:
  static absl::StatusOr<std::unique_ptr<TcpProxy>> Start(
      const std::string& upstream);
  // Cuts every connection and waits for its threads.
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  // Cuts up to `n` open connections picked at random (all if n < 0);
  // returns how many.
  int Cut(int n, absl::BitGen& gen);
  int64_t accepted() const { return accepted_.load(); }

 private:
  // Closed once both directions' pumps have let go of it.
  struct Connection {
    Connection(int d, int u) : downstream(d), upstream(u) {}
    ~Connection() {
      close(downstream);
      close(upstream);
    }
    void Shutdown() const {
      shutdown(downstream, SHUT_RDWR);
      shutdown(upstream, SHUT_RDWR);
    }
    const int downstream;
    const int upstream;
  };

  TcpProxy(int listen_fd, int port, addrinfo* upstream)
      : listen_fd_(listen_fd), port_(port), upstream_(upstream) {}
  void AcceptLoop();
  // Copies from one socket to the other until either ends or is cut.
  void Pump(std::shared_ptr<Connection> connection, int from, int to,
            uint64_t id);

  const int listen_fd_;
  const int port_;
  addrinfo* const upstream_;
  std::atomic<int64_t> accepted_{0};
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Connection>> open_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  int pumps_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread acceptor_;
};

absl::StatusOr<std::unique_ptr<TcpProxy>> TcpProxy::Start(
    const std::string& upstream) {
  absl::StatusOr<HostPort> server = ParseHostPort(upstream);
  if (!server.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--server: ", server.status().message(), ", got ", upstream));
  }
  const std::string& host = server->host;
  const std::string port = std::to_string(server->port);
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* resolved = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &resolved) != 0 ||
      resolved == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resolve ", host));
  }
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (fd < 0 ||
      bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(fd, 128) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const int error = errno;
    if (fd >= 0) close(fd);
    freeaddrinfo(resolved);
    return absl::ErrnoToStatus(error, "proxy listener");
  }
  std::unique_ptr<TcpProxy> proxy(
      new TcpProxy(fd, ntohs(address.sin_port), resolved));
  proxy->acceptor_ = std::thread([p = proxy.get()] { p->AcceptLoop(); });
  return proxy;
}

TcpProxy::~TcpProxy() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  acceptor_.join();
  close(listen_fd_);
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, connection] : open_) connection->Shutdown();
    auto idle = [this]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pumps_ == 0; };
    mu_.Await(absl::Condition(&idle));
  }
  freeaddrinfo(upstream_);
}

void TcpProxy::AcceptLoop() {
  for (;;) {
    const int downstream = accept(listen_fd_, nullptr, nullptr);
    if (downstream < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    const int upstream = socket(upstream_->ai_family, SOCK_STREAM, 0);
    if (upstream < 0 ||
        connect(upstream, upstream_->ai_addr, upstream_->ai_addrlen) != 0) {
      if (upstream >= 0) close(upstream);
      close(downstream);
      continue;
    }
    const int one = 1;
    setsockopt(downstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto connection = std::make_shared<Connection>(downstream, upstream);
    ++accepted_;
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    const uint64_t id = next_id_++;
    open_[id] = connection;
    pumps_ += 2;
    std::thread([this, connection, id] {
      Pump(connection, connection->downstream, connection->upstream, id);
    }).detach();
    std::thread([this, connection, id] {
      Pump(connection, connection->upstream, connection->downstream, id);
    }).detach();
  }
}

void TcpProxy::Pump(std::shared_ptr<Connection> connection, int from, int to,
                    uint64_t id) {
  std::vector<char> buffer(64 * 1024);
  for (;;) {
    const ssize_t n = recv(from, buffer.data(), buffer.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    ssize_t sent = 0;
    while (sent < n) {
      const ssize_t m = send(to, buffer.data() + sent, n - sent, MSG_NOSIGNAL);
      if (m < 0 && errno == EINTR) continue;
      if (m <= 0) break;
      sent += m;
    }
    if (sent < n) break;
  }
  // Either side ended or was cut: end both directions.
  connection->Shutdown();
  connection.reset();
  absl::MutexLock lock(&mu_);
  open_.erase(id);
  --pumps_;
}

int TcpProxy::Cut(int n, absl::BitGen& gen) {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Connection>> open;
  for (auto& [id, connection] : open_) open.push_back(connection);
  std::shuffle(open.begin(), open.end(), gen);
  if (n >= 0 && static_cast<size_t>(n) < open.size()) open.resize(n);
  for (auto& connection : open) connection->Shutdown();
  return static_cast<int>(open.size());
}

// Totals over every watcher, for the CSV and the summary.
struct WatchTotals {
  std::atomic<int64_t> snapshots{0};
  std::atomic<int64_t> changes{0};
  std::atomic<int64_t> disconnects{0};
  // The first message after a reconnect was a change (resumed by sequence)
  // or a snapshot (presenced could not replay).
  std::atomic<int64_t> resumed{0};
  std::atomic<int64_t> resnapshotted{0};
  // Disconnects of a stream that had delivered nothing yet (not even its
  // first snapshot): its next message is a snapshot, by design.
  std::atomic<int64_t> before_first_message{0};
  // Broken promises of the stream: a sequence out of order, a change that
  // does not change the view (ONLINE of a user already online, or OFFLINE
  // of one not online), another epoch, a watcher that gave up.
  std::atomic<int64_t> sequence_errors{0};
  std::atomic<int64_t> redundant_changes{0};
  std::atomic<int64_t> epoch_changes{0};
  std::atomic<int64_t> gave_up{0};
  // The sequence of the sentinel's change: how many changes presenced has
  // made in all.
  std::atomic<uint64_t> sentinel_sequence{0};
};

// What one watcher knows: who of its users is online, from its snapshots and
// changes. Its callbacks run on the watcher's thread; the accessors on any.
class View {
 public:
  View(bool everyone, WatchTotals* totals, CallStats* calls)
      : everyone_(everyone), totals_(totals), calls_(calls) {}
  View(const View&) = delete;
  View& operator=(const View&) = delete;

  presence::WatcherCallbacks Callbacks() {
    presence::WatcherCallbacks callbacks;
    callbacks.on_message = [this](const WatchPresenceResponse& m) {
      OnMessage(m);
    };
    callbacks.on_snapshot = [this](const Snapshot& s) { OnSnapshot(s); };
    callbacks.on_change = [this](const PresenceChange& c) { OnChange(c); };
    callbacks.on_disconnect = [this](const absl::Status& status,
                                     absl::Duration retry_in) {
      OnDisconnect(status, retry_in);
    };
    return callbacks;
  }

  bool has_snapshot() const {
    absl::MutexLock lock(&mu_);
    return has_snapshot_;
  }
  bool Contains(int64_t user) const {
    absl::MutexLock lock(&mu_);
    return online_.contains(user);
  }
  absl::flat_hash_set<int64_t> Online() const {
    absl::MutexLock lock(&mu_);
    return online_;
  }

 private:
  // Sequences of changes are checked in OnChange, one change at a time: a
  // message may carry a batch of them, and then has its last one's.
  void OnMessage(const WatchPresenceResponse& message) {
    const bool same_epoch = !epoch_.empty() && message.epoch() == epoch_;
    if (!epoch_.empty() && !same_epoch) ++totals_->epoch_changes;
    if (message.has_snapshot()) {
      if (same_epoch && message.sequence() < sequence_) {
        ++totals_->sequence_errors;
      }
      sequence_ = message.sequence();
    }
    epoch_ = message.epoch();
    if (reconnected_) {
      reconnected_ = false;
      ++(message.has_snapshot() ? totals_->resnapshotted : totals_->resumed);
    }
  }
  void OnSnapshot(const Snapshot& snapshot) {
    ++totals_->snapshots;
    absl::MutexLock lock(&mu_);
    online_.clear();
    online_.insert(snapshot.online_users().begin(),
                   snapshot.online_users().end());
    has_snapshot_ = true;
  }
  void OnChange(const PresenceChange& change) {
    ++totals_->changes;
    // The change's own sequence (presence::Watcher sets it for a presenced
    // that sends none). Everyone's stream has every sequence number; a
    // filtered one gaps.
    if (everyone_ ? change.sequence() != sequence_ + 1
                  : change.sequence() <= sequence_) {
      ++totals_->sequence_errors;
    }
    sequence_ = change.sequence();
    if (change.user_id() == kSentinelUser) {
      totals_->sentinel_sequence = change.sequence();
    }
    absl::MutexLock lock(&mu_);
    const bool changed = change.status() == presence::v1::STATUS_ONLINE
                             ? online_.insert(change.user_id()).second
                             : online_.erase(change.user_id()) == 1;
    if (!changed) ++totals_->redundant_changes;
  }
  void OnDisconnect(const absl::Status& status, absl::Duration retry_in) {
    ++totals_->disconnects;
    calls_->Record(CallStats::kWatch, status.code());
    if (retry_in == absl::InfiniteDuration()) ++totals_->gave_up;
    if (epoch_.empty()) {
      ++totals_->before_first_message;
    } else {
      reconnected_ = true;
    }
  }

  const bool everyone_;
  WatchTotals* const totals_;
  CallStats* const calls_;
  // Where the stream is; touched only by the watcher's thread.
  std::string epoch_;
  uint64_t sequence_ = 0;
  bool reconnected_ = false;
  mutable absl::Mutex mu_;
  absl::flat_hash_set<int64_t> online_ ABSL_GUARDED_BY(mu_);
  bool has_snapshot_ ABSL_GUARDED_BY(mu_) = false;
};

// One of the soak's watchers: what it watches, and the current Watcher.
struct WatchSlot {
  std::vector<int64_t> user_ids;  // empty: everyone
  int connection = 0;
  std::unique_ptr<View> view;
  std::unique_ptr<presence::Watcher> watcher;
};

// A load call to make, queued by the scheduler for the load's threads.
struct Job {
  enum Kind { kBatch, kHeartbeat, kMarkOffline };
  Kind kind = kBatch;
  // (user, session): one for kHeartbeat and kMarkOffline (an empty session
  // there ends every session), up to --batch for kBatch.
  std::vector<std::pair<int64_t, std::string>> items;
  absl::Time queued;
};

// The load's calls: a queue and the threads that make them.
class LoadRunner {
 public:
  LoadRunner(presence::Client* client, CallStats* calls, int threads)
      : client_(client), calls_(calls) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this] { Work(); });
    }
  }
  ~LoadRunner() {
    {
      absl::MutexLock lock(&mu_);
      closing_ = true;
    }
    for (auto& t : threads_) t.join();
  }
  LoadRunner(const LoadRunner&) = delete;
  LoadRunner& operator=(const LoadRunner&) = delete;

  void Push(Job job) {
    job.queued = absl::Now();
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(job));
  }
  // Until every queued call has been answered.
  void AwaitIdle() {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return queue_.empty() && busy_ == 0;
    };
    mu_.Await(absl::Condition(&idle));
  }

  int64_t heartbeats() const { return heartbeats_.load(); }
  int64_t mark_offlines() const { return mark_offlines_.load(); }
  // The longest a call waited in the queue, in ms: since the previous
  // TakeMaxLagMs(), and over the whole run.
  int64_t TakeMaxLagMs() { return recent_lag_ms_.exchange(0); }
  int64_t max_lag_ms() const { return max_lag_ms_.load(); }

 private:
  void Work() {
    for (;;) {
      Job job;
      {
        absl::MutexLock lock(&mu_);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return closing_ || !queue_.empty();
        };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty()) return;
        job = std::move(queue_.front());
        queue_.pop_front();
        ++busy_;
      }
      const int64_t lag = absl::ToInt64Milliseconds(absl::Now() - job.queued);
      for (std::atomic<int64_t>* max : {&recent_lag_ms_, &max_lag_ms_}) {
        int64_t seen = max->load();
        while (lag > seen && !max->compare_exchange_weak(seen, lag)) {
        }
      }
      Run(job);
      absl::MutexLock lock(&mu_);
      --busy_;
    }
  }

  void Run(const Job& job) {
    switch (job.kind) {
      case Job::kBatch: {
        presence::v1::BatchHeartbeatRequest request;
        for (const auto& [user, session] : job.items) {
          presence::v1::HeartbeatRequest* beat = request.add_heartbeats();
          beat->set_user_id(user);
          beat->set_session_id(session);
        }
        absl::StatusOr<presence::v1::BatchHeartbeatResponse> response =
            client_->BatchHeartbeat(request);
        calls_->Record("BatchHeartbeat", response.status().code());
        if (!response.ok()) return;
        if (response->results_size() != request.heartbeats_size()) {
          calls_->Record("BatchHeartbeat results count",
                         absl::StatusCode::kInternal);
        }
        int64_t applied = 0;
        for (const auto& result : response->results()) {
          if (result.has_error()) {
            calls_->Record("BatchHeartbeat item", static_cast<absl::StatusCode>(
                                                      result.error().code()));
          } else {
            ++applied;
          }
        }
        heartbeats_ += applied;
        return;
      }
      case Job::kHeartbeat: {
        const auto& [user, session] = job.items.front();
        absl::Status status = client_->Heartbeat(user, session).status();
        calls_->Record("Heartbeat", status.code());
        if (status.ok()) ++heartbeats_;
        return;
      }
      case Job::kMarkOffline: {
        const auto& [user, session] = job.items.front();
        absl::Status status = client_->MarkOffline(user, session).status();
        calls_->Record("MarkOffline", status.code());
        if (status.ok()) ++mark_offlines_;
        return;
      }
    }
  }

  presence::Client* const client_;
  CallStats* const calls_;
  std::atomic<int64_t> heartbeats_{0};
  std::atomic<int64_t> mark_offlines_{0};
  std::atomic<int64_t> recent_lag_ms_{0};
  std::atomic<int64_t> max_lag_ms_{0};
  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// A set of ids with a uniformly random pick, all O(1).
class IdPool {
 public:
  void Add(int64_t id) {
    if (index_.emplace(id, ids_.size()).second) ids_.push_back(id);
  }
  void Remove(int64_t id) {
    auto it = index_.find(id);
    if (it == index_.end()) return;
    const size_t i = it->second;
    index_.erase(it);
    if (i + 1 != ids_.size()) {
      ids_[i] = ids_.back();
      index_[ids_[i]] = i;
    }
    ids_.pop_back();
  }
  bool empty() const { return ids_.empty(); }
  size_t size() const { return ids_.size(); }
  int64_t Pick(absl::BitGen& gen) const {
    return ids_[absl::Uniform<size_t>(gen, 0, ids_.size())];
  }
  const std::vector<int64_t>& ids() const { return ids_; }

 private:
  std::vector<int64_t> ids_;
  absl::flat_hash_map<int64_t, size_t> index_;
};

// The simulated users: who is present with which sessions, and when each
// beats. Used by the scheduler's thread only.
class Population {
 public:
  Population(int64_t users, double unary_fraction, int ticks_per_interval,
             LoadRunner* load, int batch)
      : unary_fraction_(unary_fraction),
        buckets_(ticks_per_interval),
        load_(load),
        batch_(batch),
        initial_users_(users) {
    for (int64_t id = 1; id <= users; ++id) Arrive(NewUser(), false);
  }

  // Heartbeats of every present user, in batches (the fill, the refresh).
  void BeatEveryone() {
    Job job;
    for (int64_t id : present_.ids()) {
      for (const std::string& session : users_[id - 1].sessions) {
        job.items.emplace_back(id, session);
        if (static_cast<int>(job.items.size()) == batch_) {
          load_->Push(std::move(job));
          job = Job();
        }
      }
    }
    if (!job.items.empty()) load_->Push(std::move(job));
  }

  // The heartbeats due in tick `tick` (of the interval's ticks).
  void BeatTick(int64_t tick) {
    Job job;
    for (int64_t id : buckets_[tick % buckets_.size()]) {
      const User& user = users_[id - 1];
      for (const std::string& session : user.sessions) {
        if (user.unary) {
          Push(Job::kHeartbeat, id, session);
          continue;
        }
        job.items.emplace_back(id, session);
        if (static_cast<int>(job.items.size()) == batch_) {
          load_->Push(std::move(job));
          job = Job();
        }
      }
    }
    if (!job.items.empty()) load_->Push(std::move(job));
  }

  // One user leaves: stops beating (expires), or logs out everywhere.
  void Leave() {
    if (present_.empty()) return;
    const int64_t id = present_.Pick(gen_);
    User& user = users_[id - 1];
    if (absl::Bernoulli(gen_, 0.5)) {
      Push(Job::kMarkOffline, id, "");
      ++logouts_;
    } else {
      ++went_away_;
    }
    user.sessions.clear();
    present_.Remove(id);
    absent_.Add(id);
    RemoveFromBucket(id);
  }

  // One user arrives: a new one, or one who left before.
  void Arrive() {
    if (absent_.empty() || absl::Bernoulli(gen_, 0.5)) {
      Arrive(NewUser(), true);
      ++new_arrivals_;
    } else {
      const int64_t id = absent_.Pick(gen_);
      absent_.Remove(id);
      Arrive(id, true);
      ++returns_;
    }
  }

  // A present user closes a tab (MarkOffline of that session) or opens one.
  void TabChurn() {
    if (present_.empty()) return;
    const int64_t id = present_.Pick(gen_);
    User& user = users_[id - 1];
    const bool close =
        user.sessions.size() == 3 ||
        (user.sessions.size() == 2 && absl::Bernoulli(gen_, 0.5));
    if (close) {
      const size_t i = absl::Uniform<size_t>(gen_, 0, user.sessions.size());
      Push(Job::kMarkOffline, id, user.sessions[i]);
      user.sessions.erase(user.sessions.begin() + i);
      ++tabs_closed_;
    } else {
      user.sessions.push_back(absl::StrCat("tab-", user.next_tab++));
      Push(Job::kHeartbeat, id, user.sessions.back());
      ++tabs_opened_;
    }
  }

  const std::vector<int64_t>& present() const { return present_.ids(); }
  int64_t max_user_id() const { return static_cast<int64_t>(users_.size()); }
  // The online/offline transitions the simulation meant: every user online
  // once, then one per leave and one per arrival (none if a user returns
  // before expiring).
  int64_t intended_transitions() const {
    return initial_users_ + logouts_ + went_away_ + new_arrivals_ + returns_;
  }
  std::string ChurnSummary() const {
    return absl::StrFormat(
        "%d left (%d logged out, %d went away and expired), %d arrived (%d "
        "new, %d returning), %d tabs closed, %d opened",
        logouts_ + went_away_, logouts_, went_away_, new_arrivals_ + returns_,
        new_arrivals_, returns_, tabs_closed_, tabs_opened_);
  }

 private:
  struct User {
    std::vector<std::string> sessions;  // empty while absent
    bool unary = false;
    int next_tab = 0;
    size_t bucket = 0;
  };

  int64_t NewUser() {
    users_.emplace_back();
    User& user = users_.back();
    user.unary = absl::Bernoulli(gen_, unary_fraction_);
    user.bucket = absl::Uniform<size_t>(gen_, 0, buckets_.size());
    return static_cast<int64_t>(users_.size());
  }

  // 1-3 sessions; a third of the single-session users use the default one.
  void Arrive(int64_t id, bool beat_now) {
    User& user = users_[id - 1];
    const int sessions = absl::Uniform<int>(absl::IntervalClosed, gen_, 1, 3);
    if (sessions == 1 && absl::Bernoulli(gen_, 1.0 / 3)) {
      user.sessions.push_back("");
    } else {
      for (int s = 0; s < sessions; ++s) {
        user.sessions.push_back(absl::StrCat("tab-", user.next_tab++));
      }
    }
    present_.Add(id);
    buckets_[user.bucket].push_back(id);
    if (beat_now) {
      for (const std::string& session : user.sessions) {
        Push(Job::kHeartbeat, id, session);
      }
    }
  }

  void RemoveFromBucket(int64_t id) {
    std::vector<int64_t>& bucket = buckets_[users_[id - 1].bucket];
    auto it = std::find(bucket.begin(), bucket.end(), id);
    if (it == bucket.end()) return;
    *it = bucket.back();
    bucket.pop_back();
  }

  void Push(Job::Kind kind, int64_t id, const std::string& session) {
    Job job;
    job.kind = kind;
    job.items.emplace_back(id, session);
    load_->Push(std::move(job));
  }

  const double unary_fraction_;
  std::vector<std::vector<int64_t>> buckets_;
  LoadRunner* const load_;
  const int batch_;
  const int64_t initial_users_;
  absl::BitGen gen_;
  std::vector<User> users_;  // users_[id - 1]
  IdPool present_;
  IdPool absent_;
  int64_t logouts_ = 0, went_away_ = 0, new_arrivals_ = 0, returns_ = 0,
          tabs_closed_ = 0, tabs_opened_ = 0;
};

enum class Phase { kFill, kConnect, kSteady, kDrain, kFinal };

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kFill:
      return "fill";
    case Phase::kConnect:
      return "connect";
    case Phase::kSteady:
      return "steady";
    case Phase::kDrain:
      return "drain";
    case Phase::kFinal:
      return "final";
  }
  return "?";
}

struct Sample {
  double elapsed_s = 0;
  Phase phase = Phase::kFill;
  ProcessSample process;
  // Simulated users present now, and ever seen (presenced keeps every
  // user's last_seen, so the latter grows its memory by design).
  int64_t present = 0;
  int64_t known = 0;
};

// Samples presenced and the soak's counters into the CSV, on a thread of its
// own, and prints progress.
class Sampler {
 public:
  Sampler(int pid, const std::string& csv, const CallStats* calls,
          LoadRunner* load, const WatchTotals* watch)
      : pid_(pid), calls_(calls), load_(load), watch_(watch) {
    if (!csv.empty()) {
      csv_.open(csv);
      csv_ << "elapsed_s,phase,rss_kb,hwm_kb,threads,cpu_s,present_users,"
              "known_users,"
              "heartbeats,mark_offlines,load_errors,watcher_disconnects,"
              "resumed,resnapshotted,changes_received,max_queue_lag_ms\n";
    }
  }
  ~Sampler() { Stop(); }
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  bool csv_ok() const { return csv_.good(); }
  void Start(absl::Duration every, absl::Duration progress_every) {
    thread_ = std::thread([this, every, progress_every] {
      absl::Time next_progress = start_ + progress_every;
      do {
        const Sample sample = Take();
        if (absl::Now() >= next_progress) {
          Progress(sample);
          next_progress += progress_every;
        }
      } while (!stop_.WaitForNotificationWithTimeout(every));
    });
  }
  void Stop() {
    if (!thread_.joinable()) return;
    stop_.Notify();
    thread_.join();
    Take();  // the last one
  }
  void set_phase(Phase phase) {
    absl::MutexLock lock(&mu_);
    phase_ = phase;
  }
  void set_population(int64_t present, int64_t known) {
    present_ = present;
    known_ = known;
  }
  std::vector<Sample> samples() const {
    absl::MutexLock lock(&mu_);
    return samples_;
  }
  double Elapsed() const { return absl::ToDoubleSeconds(absl::Now() - start_); }

 private:
  Sample Take() {
    Sample sample;
    sample.elapsed_s = Elapsed();
    if (pid_ > 0) sample.process = ReadProcess(pid_);
    sample.present = present_.load();
    sample.known = known_.load();
    absl::MutexLock lock(&mu_);
    sample.phase = phase_;
    samples_.push_back(sample);
    if (csv_.is_open()) {
      csv_ << absl::StrFormat(
          "%.1f,%s,%d,%d,%d,%.2f,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d\n",
          sample.elapsed_s, PhaseName(sample.phase), sample.process.rss_kb,
          sample.process.hwm_kb, sample.process.threads,
          sample.process.cpu_seconds, sample.present, sample.known,
          load_->heartbeats(), load_->mark_offlines(), calls_->errors(),
          watch_->disconnects.load(), watch_->resumed.load(),
          watch_->resnapshotted.load(), watch_->changes.load(),
          load_->TakeMaxLagMs());
      csv_.flush();
    }
    return sample;
  }
  void Progress(const Sample& sample) {
    absl::FPrintF(
        stderr,
        "soak: %5.0fs %-7s rss %.1f MB, %d threads, %d present, %d "
        "heartbeats, %d load errors, %d watcher disconnects (%d resumed, %d "
        "snapshots)\n",
        sample.elapsed_s, PhaseName(sample.phase),
        sample.process.rss_kb / 1024.0, sample.process.threads, present_.load(),
        load_->heartbeats(), calls_->errors(), watch_->disconnects.load(),
        watch_->resumed.load(), watch_->resnapshotted.load());
  }

  const int pid_;
  const CallStats* const calls_;
  LoadRunner* const load_;
  const WatchTotals* const watch_;
  const absl::Time start_ = absl::Now();
  std::atomic<int64_t> present_{0};
  std::atomic<int64_t> known_{0};
  absl::Notification stop_;
  std::thread thread_;
  mutable absl::Mutex mu_;
  Phase phase_ ABSL_GUARDED_BY(mu_) = Phase::kFill;
  std::vector<Sample> samples_ ABSL_GUARDED_BY(mu_);
  std::ofstream csv_ ABSL_GUARDED_BY(mu_);
};

// The ids of `users` online in `online`, ascending.
std::vector<int64_t> Filter(const std::vector<int64_t>& online,
                            const std::vector<int64_t>& users) {
  if (users.empty()) return online;
  absl::flat_hash_set<int64_t> wanted(users.begin(), users.end());
  std::vector<int64_t> out;
  for (int64_t id : online) {
    if (wanted.contains(id)) out.push_back(id);
  }
  return out;
}

// `a` minus `b`, both ascending.
std::vector<int64_t> Minus(const std::vector<int64_t>& a,
                           const std::vector<int64_t>& b) {
  std::vector<int64_t> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(),
                      std::back_inserter(out));
  return out;
}

std::string Head(const std::vector<int64_t>& ids) {
  std::vector<int64_t> head(ids.begin(),
                            ids.begin() + std::min<size_t>(ids.size(), 5));
  return absl::StrCat(absl::StrJoin(head, ","), ids.size() > 5 ? ",..." : "");
}

std::string Megabytes(int64_t kb) {
  return absl::StrFormat("%.1f MB", kb / 1024.0);
}

class Soak {
 public:
  Soak()
      : load_client_(LoadOptions()),
        load_(&load_client_, &calls_, absl::GetFlag(FLAGS_load_threads)),
        sampler_(absl::GetFlag(FLAGS_server_pid), absl::GetFlag(FLAGS_csv),
                 &calls_, &load_, &watch_) {}

  int Run();

 private:
  static presence::ClientOptions LoadOptions() {
    presence::ClientOptions options;
    options.target = absl::GetFlag(FLAGS_server);
    options.deadline = absl::GetFlag(FLAGS_deadline);
    return options;
  }

  absl::Status Learn();
  absl::Status StartWatchers();
  void StartWatcher(WatchSlot& slot);
  // Cuts connections and recreates watchers until `stop`.
  void Disrupt(absl::Notification* stop);
  // Schedules heartbeats (and churn, if `churn`) until `end`.
  void Drive(absl::Time end, bool churn);
  bool Check();
  void Summarize(bool passed);
  // presenced's RSS and threads over the run, from the samples.
  void PrintMemory();
  void Fail(const std::string& what) {
    failures_.push_back(what);
    std::fprintf(stderr, "soak: FAIL: %s\n", what.c_str());
  }

  CallStats calls_;
  WatchTotals watch_;
  presence::Client load_client_;
  LoadRunner load_;
  Sampler sampler_;
  std::unique_ptr<Population> population_;
  std::unique_ptr<TcpProxy> proxy_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  // Touched by the disruptor's thread while it runs, else by main only.
  std::vector<WatchSlot> slots_;
  absl::Duration interval_, window_;
  int64_t tick_ = 0;
  double leave_credit_ = 0, tab_credit_ = 0;
  int64_t cuts_ = 0, cut_connections_ = 0, recreated_ = 0;
  double fill_s_ = 0, connect_s_ = 0, steady_start_s_ = 0, steady_end_s_ = 0;
  absl::Duration check_took_;
  int mismatched_ = 0;
  std::vector<std::string> failures_;
  std::vector<std::string> notes_;
};

// The interval and window presenced runs with, from the answer to a
// heartbeat of a throwaway session of user 1 (ended at once).
absl::Status Soak::Learn() {
  absl::StatusOr<presence::v1::HeartbeatResponse> beat =
      load_client_.Heartbeat(1, "soak-probe");
  calls_.Record("Heartbeat", beat.status().code());
  if (!beat.ok()) return beat.status();
  interval_ = FromProto(beat->heartbeat_interval());
  window_ = FromProto(beat->online_until()) - FromProto(beat->server_time());
  absl::Status ended = load_client_.MarkOffline(1, "soak-probe").status();
  calls_.Record("MarkOffline", ended.code());
  return ended;
}

void Soak::StartWatcher(WatchSlot& slot) {
  slot.watcher.reset();  // stops the old one: no callback after this
  slot.view = std::make_unique<View>(slot.user_ids.empty(), &watch_, &calls_);
  presence::WatcherOptions options;
  options.user_ids = slot.user_ids;
  slot.watcher = std::make_unique<presence::Watcher>(
      channels_[slot.connection], options, slot.view->Callbacks());
}

absl::Status Soak::StartWatchers() {
  absl::StatusOr<std::unique_ptr<TcpProxy>> proxy =
      TcpProxy::Start(absl::GetFlag(FLAGS_server));
  if (!proxy.ok()) return proxy.status();
  proxy_ = std::move(*proxy);
  const std::string target = absl::StrCat("127.0.0.1:", proxy_->port());
  for (int c = 0; c < std::max(1, absl::GetFlag(FLAGS_watch_connections));
       ++c) {
    grpc::ChannelArguments args;
    // A connection per channel: gRPC would otherwise share one between
    // channels to the same target.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(-1);  // snapshots of everyone
    // Reconnect soon after a cut, as Watcher retries from 100 ms.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    channels_.push_back(grpc::CreateCustomChannel(
        target, grpc::InsecureChannelCredentials(), args));
  }
  const int watchers = absl::GetFlag(FLAGS_watchers);
  const int everyone = static_cast<int>(
      std::lround(watchers * absl::GetFlag(FLAGS_everyone_fraction)));
  // Subsets include ids that will only arrive later.
  const int64_t id_space =
      population_->max_user_id() + population_->max_user_id() / 4;
  const int subset_size = static_cast<int>(
      std::min<int64_t>(absl::GetFlag(FLAGS_subset_size), id_space));
  absl::BitGen gen;
  slots_.resize(watchers);
  for (int w = 0; w < watchers; ++w) {
    WatchSlot& slot = slots_[w];
    // The first ones watch everyone; all are spread over the connections.
    slot.connection = w % static_cast<int>(channels_.size());
    if (w >= everyone) {
      absl::flat_hash_set<int64_t> ids = {kSentinelUser};
      while (static_cast<int>(ids.size()) < subset_size + 1) {
        ids.insert(
            absl::Uniform<int64_t>(absl::IntervalClosed, gen, 1, id_space));
      }
      slot.user_ids.assign(ids.begin(), ids.end());
    }
    StartWatcher(slot);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  for (WatchSlot& slot : slots_) {
    while (!slot.view->has_snapshot()) {
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(
            "a watcher had no snapshot after 120 s");
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  return absl::OkStatus();
}

void Soak::Disrupt(absl::Notification* stop) {
  absl::BitGen gen;
  const absl::Duration cut_every = absl::GetFlag(FLAGS_cut_every);
  const absl::Duration cut_all_every = absl::GetFlag(FLAGS_cut_all_every);
  const absl::Duration recreate_every = absl::GetFlag(FLAGS_recreate_every);
  const absl::Time start = absl::Now();
  absl::Time next_cut = start + cut_every;
  absl::Time next_cut_all = start + cut_all_every;
  absl::Time next_recreate = start + recreate_every;
  for (;;) {
    const absl::Time next = std::min({next_cut, next_cut_all, next_recreate});
    if (stop->WaitForNotificationWithTimeout(next - absl::Now())) return;
    const absl::Time now = absl::Now();
    if (now >= next_cut_all) {
      cut_connections_ += proxy_->Cut(-1, gen);
      ++cuts_;
      next_cut_all += cut_all_every;
    } else if (now >= next_cut) {
      cut_connections_ += proxy_->Cut(1, gen);
      ++cuts_;
    }
    if (now >= next_cut) next_cut += cut_every;
    if (now >= next_recreate && !slots_.empty()) {
      StartWatcher(slots_[absl::Uniform<size_t>(gen, 0, slots_.size())]);
      ++recreated_;
      next_recreate += recreate_every;
    }
  }
}

void Soak::Drive(absl::Time end, bool churn) {
  const absl::Duration tick = absl::GetFlag(FLAGS_tick);
  // Users per tick for a rate of 1 (all of them) per minute.
  const double all_per_tick = static_cast<double>(absl::GetFlag(FLAGS_users)) /
                              60 * absl::ToDoubleSeconds(tick);
  const double leaves = absl::GetFlag(FLAGS_churn_per_minute) * all_per_tick;
  const double tabs = absl::GetFlag(FLAGS_tab_churn_per_minute) * all_per_tick;
  absl::Time next = absl::Now();
  while (next < end) {
    population_->BeatTick(tick_++);
    if (churn) {
      for (leave_credit_ += leaves; leave_credit_ >= 1; leave_credit_ -= 1) {
        population_->Leave();
        population_->Arrive();
      }
      for (tab_credit_ += tabs; tab_credit_ >= 1; tab_credit_ -= 1) {
        population_->TabChurn();
      }
    }
    sampler_.set_population(static_cast<int64_t>(population_->present().size()),
                            population_->max_user_id());
    next += tick;
    absl::SleepFor(next - absl::Now());
  }
}

bool Soak::Check() {
  bool ok = true;
  // Every present session beats now, so nobody expires during the check.
  const absl::Time refreshed = absl::Now();
  population_->BeatEveryone();
  load_.AwaitIdle();
  absl::StatusOr<presence::v1::HeartbeatResponse> sentinel =
      load_client_.Heartbeat(kSentinelUser, "soak-sentinel");
  calls_.Record("Heartbeat", sentinel.status().code());
  if (!sentinel.ok()) {
    Fail(absl::StrCat("sentinel heartbeat: ", sentinel.status().ToString()));
    return false;
  }
  // Each stream is in order: a watcher with the sentinel has every change
  // made before it.
  const absl::Time sent = absl::Now();
  int behind = 0;
  for (const WatchSlot& slot : slots_) {
    while (!slot.view->Contains(kSentinelUser) &&
           absl::Now() < sent + absl::Seconds(60)) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    if (!slot.view->Contains(kSentinelUser)) ++behind;
  }
  notes_.push_back(
      absl::StrFormat("sentinel reached all watchers in %.0f ms",
                      absl::ToDoubleMilliseconds(absl::Now() - sent)));
  if (behind > 0) {
    Fail(absl::StrCat(behind, " watchers never saw the sentinel in 60 s"));
    ok = false;
  }
  absl::StatusOr<std::vector<int64_t>> listed = load_client_.ListAllOnline();
  calls_.Record("ListOnline", listed.status().code());
  if (!listed.ok()) {
    Fail(absl::StrCat("ListAllOnline: ", listed.status().ToString()));
    return false;
  }
  std::vector<int64_t> online = Minus(*listed, {kSentinelUser});

  // presenced against what the simulation did.
  std::vector<int64_t> present = population_->present();
  std::sort(present.begin(), present.end());
  const std::vector<int64_t> missing = Minus(present, online);
  const std::vector<int64_t> extra = Minus(online, present);
  notes_.push_back(absl::StrFormat(
      "ListOnline: %d online; simulation: %d present; %d missing, %d extra",
      online.size(), present.size(), missing.size(), extra.size()));
  if (!missing.empty() || !extra.empty()) {
    Fail(absl::StrCat("ListOnline differs from the simulation: missing ",
                      Head(missing), " extra ", Head(extra)));
    ok = false;
  }

  // Every watcher against ListOnline.
  int mismatched = 0;
  for (size_t w = 0; w < slots_.size(); ++w) {
    const WatchSlot& slot = slots_[w];
    absl::flat_hash_set<int64_t> seen = slot.view->Online();
    seen.erase(kSentinelUser);
    std::vector<int64_t> view(seen.begin(), seen.end());
    std::sort(view.begin(), view.end());
    const std::vector<int64_t> expected = Filter(online, slot.user_ids);
    if (view == expected) continue;
    if (++mismatched <= 5) {
      std::fprintf(stderr,
                   "soak: watcher %zu (%s): view has %zu, ListOnline %zu; "
                   "missing %s, extra %s\n",
                   w, slot.user_ids.empty() ? "everyone" : "subset",
                   view.size(), expected.size(),
                   Head(Minus(expected, view)).c_str(),
                   Head(Minus(view, expected)).c_str());
    }
  }
  mismatched_ = mismatched;
  if (mismatched > 0) {
    Fail(absl::StrCat(mismatched, " of ", slots_.size(),
                      " watchers' views differ from ListOnline"));
    ok = false;
  }

  // The comparison is only sound if nothing changed while it ran.
  absl::StatusOr<std::vector<int64_t>> again = load_client_.ListAllOnline();
  calls_.Record("ListOnline", again.status().code());
  check_took_ = absl::Now() - refreshed;
  if (!again.ok() || *again != *listed) {
    Fail("ListOnline changed during the check");
    ok = false;
  }
  if (check_took_ >= window_) {
    Fail(absl::StrCat("the check took ", absl::FormatDuration(check_took_),
                      ", longer than the online window"));
    ok = false;
  }
  return ok;
}

int Soak::Run() {
  if (absl::GetFlag(FLAGS_users) < 1 || absl::GetFlag(FLAGS_batch) < 1 ||
      absl::GetFlag(FLAGS_load_threads) < 1 ||
      absl::GetFlag(FLAGS_tick) <= absl::ZeroDuration()) {
    std::fprintf(stderr,
                 "soak: --users, --batch, --load_threads and --tick must be "
                 "positive\n");
    return 2;
  }
  if (!absl::GetFlag(FLAGS_csv).empty() && !sampler_.csv_ok()) {
    std::fprintf(stderr, "soak: cannot write %s\n",
                 absl::GetFlag(FLAGS_csv).c_str());
    return 2;
  }
  sampler_.Start(absl::GetFlag(FLAGS_sample_every),
                 absl::GetFlag(FLAGS_progress_every));

  if (absl::Status learned = Learn(); !learned.ok()) {
    std::fprintf(stderr, "soak: presenced at %s: %s\n",
                 absl::GetFlag(FLAGS_server).c_str(),
                 learned.ToString().c_str());
    return 1;
  }
  const absl::Duration tick = absl::GetFlag(FLAGS_tick);
  const int ticks = static_cast<int>(std::max<int64_t>(1, interval_ / tick));
  population_ = std::make_unique<Population>(
      absl::GetFlag(FLAGS_users), absl::GetFlag(FLAGS_unary_fraction), ticks,
      &load_, absl::GetFlag(FLAGS_batch));
  absl::FPrintF(stderr,
                "soak: heartbeat_interval %s, online_window %s; %d users, %d "
                "watchers, %.0f s steady\n",
                absl::FormatDuration(interval_), absl::FormatDuration(window_),
                absl::GetFlag(FLAGS_users), absl::GetFlag(FLAGS_watchers),
                absl::GetFlag(FLAGS_seconds));

  population_->BeatEveryone();
  load_.AwaitIdle();
  sampler_.set_population(static_cast<int64_t>(population_->present().size()),
                          population_->max_user_id());
  fill_s_ = sampler_.Elapsed();

  sampler_.set_phase(Phase::kConnect);
  if (absl::Status started = StartWatchers(); !started.ok()) {
    Fail(absl::StrCat("watchers: ", started.ToString()));
    Summarize(false);
    return 1;
  }
  connect_s_ = sampler_.Elapsed();

  sampler_.set_phase(Phase::kSteady);
  steady_start_s_ = sampler_.Elapsed();
  {
    absl::Notification stop;
    std::thread disruptor([this, &stop] { Disrupt(&stop); });
    Drive(absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_seconds)), true);
    stop.Notify();
    disruptor.join();
  }
  steady_end_s_ = sampler_.Elapsed();

  // Leavers' last heartbeats may still wait in the queue: let them expire
  // (3 s: a call's own time, and the sweeper's second to announce it).
  sampler_.set_phase(Phase::kDrain);
  Drive(absl::Now() + window_ + absl::Seconds(3) +
            absl::Milliseconds(load_.max_lag_ms()),
        false);
  load_.AwaitIdle();

  sampler_.set_phase(Phase::kFinal);
  const bool checked = Check();
  for (WatchSlot& slot : slots_) slot.watcher.reset();
  proxy_.reset();
  sampler_.Stop();

  if (calls_.errors() > 0) {
    // Watchers' UNAVAILABLE is what a cut connection gives; anything else
    // (and any failed load call) is a finding.
    int64_t unexpected = 0;
    for (const auto& [what, n] : calls_.counts()) {
      if (absl::EndsWith(what, " OK")) continue;
      if (what == "WatchPresence UNAVAILABLE") continue;
      unexpected += n;
    }
    if (unexpected > 0) Fail(absl::StrCat(unexpected, " calls failed"));
  }
  for (const auto& [what, n] : std::vector<std::pair<const char*, int64_t>>{
           {"changes out of sequence", watch_.sequence_errors.load()},
           {"changes that changed nothing (lost or repeated events)",
            watch_.redundant_changes.load()},
           {"epoch changes", watch_.epoch_changes.load()},
           {"watchers gave up", watch_.gave_up.load()}}) {
    if (n > 0) Fail(absl::StrCat(n, " ", what));
  }
  if (int pid = absl::GetFlag(FLAGS_server_pid);
      pid > 0 && ReadProcess(pid).rss_kb < 0) {
    Fail("presenced is gone");
  }
  const bool passed = checked && failures_.empty();
  Summarize(passed);
  return passed ? 0 : 1;
}

void Soak::Summarize(bool passed) {
  const int everyone = static_cast<int>(
      std::count_if(slots_.begin(), slots_.end(),
                    [](const WatchSlot& s) { return s.user_ids.empty(); }));
  absl::PrintF("== soak summary ==\n");
  absl::PrintF(
      "load: %d users, %d watchers (%d of everyone, %d of %d users each), "
      "heartbeat_interval %s, online_window %s\n",
      absl::GetFlag(FLAGS_users), slots_.size(), everyone,
      slots_.size() - everyone, absl::GetFlag(FLAGS_subset_size),
      absl::FormatDuration(interval_), absl::FormatDuration(window_));
  absl::PrintF(
      "phases: fill done at %.1f s, watchers connected at %.1f s, steady "
      "%.1f-%.1f s, drain and check until %.1f s\n",
      fill_s_, connect_s_, steady_start_s_, steady_end_s_, sampler_.Elapsed());
  absl::PrintF(
      "load: %d heartbeats (%.0f/s over the run), %d MarkOffline; longest "
      "wait of a call in the queue %d ms\n",
      load_.heartbeats(),
      load_.heartbeats() / std::max(1e-9, sampler_.Elapsed()),
      load_.mark_offlines(), load_.max_lag_ms());
  if (absl::Milliseconds(load_.max_lag_ms()) > window_ - interval_) {
    absl::PrintF(
        "load: the queue fell behind by more than online_window - "
        "heartbeat_interval: this machine could not keep the load steady "
        "(the changes line says whether users flapped)\n");
  }
  if (population_ != nullptr) {
    absl::PrintF("churn: %s\n", population_->ChurnSummary());
    if (const uint64_t made = watch_.sentinel_sequence.load(); made > 0) {
      // Less 3: the probe's two changes and the sentinel's.
      const int64_t intended = population_->intended_transitions();
      absl::PrintF(
          "changes: presenced made %d online/offline changes; the simulation "
          "meant at most %d; %d more (users who expired while present, as "
          "their heartbeats came late, or a heartbeat that overtook its "
          "user's logout in the load's queue)\n",
          made - 3, intended,
          std::max<int64_t>(0, static_cast<int64_t>(made) - 3 - intended));
    }
  }
  absl::PrintF("calls by code:");
  for (const auto& [what, n] : calls_.counts()) {
    absl::PrintF(" %s %d;", what, n);
  }
  absl::PrintF("\n");
  absl::PrintF(
      "watchers: %d snapshots and %d changes received; %d proxy cuts (%d "
      "connections), %d watchers recreated\n",
      watch_.snapshots.load(), watch_.changes.load(), cuts_, cut_connections_,
      recreated_);
  absl::PrintF(
      "watchers: %d disconnects: %d then resumed by sequence, %d got a "
      "snapshot instead, %d had no message before the next disconnect or the "
      "end, %d came before the stream's first snapshot\n",
      watch_.disconnects.load(), watch_.resumed.load(),
      watch_.resnapshotted.load(),
      watch_.disconnects.load() - watch_.resumed.load() -
          watch_.resnapshotted.load() - watch_.before_first_message.load(),
      watch_.before_first_message.load());
  absl::PrintF(
      "stream checks: %d changes out of sequence, %d that changed nothing, %d "
      "epoch changes, %d watchers gave up\n",
      watch_.sequence_errors.load(), watch_.redundant_changes.load(),
      watch_.epoch_changes.load(), watch_.gave_up.load());
  for (const std::string& note : notes_) absl::PrintF("check: %s\n", note);
  absl::PrintF(
      "check: %d of %d watchers' views differ from ListOnline (%d ms from the "
      "refresh to the second listing)\n",
      mismatched_, slots_.size(), absl::ToInt64Milliseconds(check_took_));
  PrintMemory();
  absl::PrintF("soak: %s\n", passed ? "PASS" : "FAIL");
  for (const std::string& failure : failures_) {
    absl::PrintF("soak: failed: %s\n", failure);
  }
}

void Soak::PrintMemory() {
  const std::vector<Sample> samples = sampler_.samples();
  if (absl::GetFlag(FLAGS_server_pid) <= 0 || samples.empty()) return;
  const double warmup_s =
      steady_start_s_ +
      absl::ToDoubleSeconds(absl::GetFlag(FLAGS_warmup) > absl::ZeroDuration()
                                ? absl::GetFlag(FLAGS_warmup)
                                : 2 * window_);
  const double middle_s = (warmup_s + steady_end_s_) / 2;
  const Sample* at_warmup = nullptr;
  const Sample* at_middle = nullptr;
  const Sample* at_steady_end = nullptr;
  int64_t max_rss = 0, max_threads = 0;
  for (const Sample& s : samples) {
    if (s.process.rss_kb < 0) continue;
    max_rss = std::max(max_rss, s.process.rss_kb);
    max_threads = std::max(max_threads, s.process.threads);
    if (at_warmup == nullptr && s.elapsed_s >= warmup_s) at_warmup = &s;
    if (at_middle == nullptr && s.elapsed_s >= middle_s) at_middle = &s;
    if (s.elapsed_s <= steady_end_s_) at_steady_end = &s;
  }
  const Sample& first = samples.front();
  const Sample& last = samples.back();
  absl::PrintF(
      "presenced: RSS at start %s, max %s, at the end %s; threads %d at "
      "start, max %d, %d at the end; %.1f CPU seconds\n",
      Megabytes(first.process.rss_kb), Megabytes(max_rss),
      Megabytes(last.process.rss_kb), first.process.threads, max_threads,
      last.process.threads,
      last.process.cpu_seconds - first.process.cpu_seconds);
  if (at_warmup == nullptr || at_middle == nullptr ||
      at_steady_end == nullptr ||
      at_steady_end->elapsed_s <= at_warmup->elapsed_s) {
    absl::PrintF(
        "presenced: RSS drift not computed: the steady phase is shorter "
        "than the warm-up (%.0f s)\n",
        warmup_s - steady_start_s_);
    return;
  }
  auto mb = [](const Sample* from, const Sample* to) {
    return (to->process.rss_kb - from->process.rss_kb) / 1024.0;
  };
  // In halves: memory that settles (allocator high-water marks after the
  // first reconnect storms) grows in the first, a leak in both.
  absl::PrintF(
      "presenced: RSS drift %+.1f MB from warm-up (%s at %.0f s) to the end "
      "of steady (%s at %.0f s): %+.1f MB in the first half, %+.1f MB in "
      "the second (from %.0f s); users ever seen %d, %d, %d at those "
      "moments\n",
      mb(at_warmup, at_steady_end), Megabytes(at_warmup->process.rss_kb),
      at_warmup->elapsed_s, Megabytes(at_steady_end->process.rss_kb),
      at_steady_end->elapsed_s, mb(at_warmup, at_middle),
      mb(at_middle, at_steady_end), at_middle->elapsed_s, at_warmup->known,
      at_middle->known, at_steady_end->known);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  Soak soak;
  return soak.Run();
}
