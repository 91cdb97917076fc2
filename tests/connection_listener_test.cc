// presenced's accept loop on real sockets, with a recording acceptor in place
// of gRPC: the cap on connections, running out of descriptors and healing,
// bind errors, and Stop().
#include "service/connection_listener.h"

#include <arpa/inet.h>
#include <grpcpp/server_builder.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace presence {
namespace {

// Takes the connections gRPC would take, and closes them when told.
class RecordingAcceptor
    : public grpc::experimental::ExternalConnectionAcceptor {
 public:
  explicit RecordingAcceptor(absl::Mutex* mu, std::vector<int>* fds)
      : mu_(mu), fds_(fds) {}
  void HandleNewConnection(NewConnectionParameters* p) override {
    absl::MutexLock lock(mu_);
    fds_->push_back(p->fd);
  }

 private:
  absl::Mutex* const mu_;
  std::vector<int>* const fds_;
};

class ListenerTest : public ::testing::Test {
 protected:
  void Start(int max_connections) {
    ConnectionListener::Options options;
    options.address = "127.0.0.1:0";
    options.max_connections = max_connections;
    absl::StatusOr<std::unique_ptr<ConnectionListener>> listener =
        ConnectionListener::Bind(options);
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = *std::move(listener);
    ASSERT_GT(listener_->port(), 0);
    listener_->Start(std::make_unique<RecordingAcceptor>(&mu_, &handed_));
  }
  void TearDown() override {
    if (listener_ != nullptr) listener_->Stop();
    CloseHanded();
    for (int fd : clients_) close(fd);
  }

  // A socket, not connected yet.
  int NewClient() {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    clients_.push_back(fd);
    return fd;
  }
  bool Connect(int fd) {
    sockaddr_in address = {};
    address.sin_family = AF_INET;
    address.sin_port = htons(listener_->port());
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return connect(fd, reinterpret_cast<sockaddr*>(&address),
                   sizeof(address)) == 0;
  }
  // True if the server closed the client's connection (EOF or reset)
  // within `timeout`.
  static bool ClosedByServer(int fd, absl::Duration timeout) {
    timeval tv = absl::ToTimeval(timeout);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char c;
    const ssize_t n = recv(fd, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }
  size_t Handed() {
    absl::MutexLock lock(&mu_);
    return handed_.size();
  }
  bool AwaitHanded(size_t n, absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return handed_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }
  // As gRPC closes a connection that ends.
  void CloseHanded() {
    absl::MutexLock lock(&mu_);
    for (int fd : handed_) close(fd);
    handed_.clear();
  }
  // Polls `done` every 10 ms until it holds or `timeout` passes.
  template <typename F>
  static bool Eventually(F done, absl::Duration timeout = absl::Seconds(10)) {
    for (const absl::Time end = absl::Now() + timeout; absl::Now() < end;
         absl::SleepFor(absl::Milliseconds(10))) {
      if (done()) return true;
    }
    return done();
  }

  absl::Mutex mu_;
  std::vector<int> handed_ ABSL_GUARDED_BY(mu_);
  std::vector<int> clients_;
  std::unique_ptr<ConnectionListener> listener_;
};

TEST_F(ListenerTest, HandsEachConnectionToGrpcAndCountsItUntilClosed) {
  Start(100);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Connect(NewClient()));
  ASSERT_TRUE(AwaitHanded(3));
  EXPECT_EQ(listener_->accepted(), 3);
  EXPECT_EQ(listener_->open_connections(), 3);
  CloseHanded();
  // Noticed at the next check, within about a second.
  EXPECT_TRUE(Eventually([&] { return listener_->open_connections() == 0; }));
  EXPECT_EQ(listener_->refused(), 0);
}

TEST_F(ListenerTest, ConnectionsOverTheCapAreClosedAtOnceNotLeftWaiting) {
  Start(2);
  std::vector<int> clients;
  for (int i = 0; i < 5; ++i) {
    clients.push_back(NewClient());
    ASSERT_TRUE(Connect(clients.back()));
  }
  ASSERT_TRUE(AwaitHanded(2));
  for (int i = 2; i < 5; ++i) {
    EXPECT_TRUE(ClosedByServer(clients[i], absl::Seconds(5))) << i;
  }
  EXPECT_EQ(Handed(), 2u);
  EXPECT_EQ(listener_->refused(), 3);
  // A connection that ends makes room for the next, once the listener has
  // seen it closed (at its next check, within about a second).
  CloseHanded();
  EXPECT_TRUE(Eventually([&] { return listener_->open_connections() == 0; }));
  const int later = NewClient();
  ASSERT_TRUE(Connect(later));
  EXPECT_TRUE(AwaitHanded(1));
}

// The process runs out of descriptors: waiting connections are accepted and
// closed with the reserve descriptor instead of piling up unanswered, and as
// soon as descriptors are free again new connections are served. gRPC 1.51's
// own accept loop stops for good at the first EMFILE.
TEST_F(ListenerTest, RunningOutOfDescriptorsNeverLeavesItDeaf) {
#if defined(__SANITIZE_THREAD__)
  // TSan's symbolizer is a process on a pipe: out of descriptors, its
  // reports (of the fstat suppressed in tests/tsan/) lose their symbols and
  // cannot be matched.
  GTEST_SKIP() << "needs a build without TSan";
#endif
  Start(10'000);
  // Every client socket exists before the limit is lowered: connect()
  // takes no descriptor, so only the listener's accepts hit the limit.
  std::vector<int> clients;
  for (int i = 0; i < 40; ++i) clients.push_back(NewClient());
  const int open_now = static_cast<int>(
      std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                    std::filesystem::directory_iterator()));
  rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  // Restored however the test ends: later tests need their descriptors.
  struct Restore {
    rlimit limit;
    ~Restore() { setrlimit(RLIMIT_NOFILE, &limit); }
  } restore{saved};
  rlimit low = saved;
  low.rlim_cur = static_cast<rlim_t>(open_now + 5);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0) << std::strerror(errno);
  for (int fd : clients) ASSERT_TRUE(Connect(fd));
  // The first few are handed over; the rest are closed at once.
  EXPECT_TRUE(Eventually([&] {
    return listener_->refused() + static_cast<int64_t>(Handed()) >= 40;
  }));
  // About five descriptors were free (one is the reserve's).
  const size_t handed = Handed();
  EXPECT_GE(handed, 1u);
  EXPECT_LE(handed, 8u);
  EXPECT_EQ(listener_->refused(), 40 - static_cast<int64_t>(handed));
  int closed = 0;
  for (int fd : clients) closed += ClosedByServer(fd, absl::Milliseconds(200));
  EXPECT_EQ(closed, 40 - static_cast<int>(handed));
  // Out of descriptors and nothing waiting: the loop sleeps in poll() rather
  // than spinning on accept4(), which fails with EMFILE even then.
  const int64_t refused = listener_->refused();
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(listener_->refused(), refused);
  rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  absl::SleepFor(absl::Milliseconds(500));
  getrusage(RUSAGE_SELF, &after);
  const absl::Duration cpu = absl::DurationFromTimeval(after.ru_utime) +
                             absl::DurationFromTimeval(after.ru_stime) -
                             absl::DurationFromTimeval(before.ru_utime) -
                             absl::DurationFromTimeval(before.ru_stime);
  EXPECT_LT(cpu, absl::Milliseconds(100));

  // Descriptors come back (the connections end); the limit stays as low.
  CloseHanded();
  const int late = NewClient();
  ASSERT_TRUE(Connect(late));
  EXPECT_TRUE(AwaitHanded(1));
}

TEST_F(ListenerTest, StopRefusesNewConnections) {
  Start(100);
  ASSERT_TRUE(Connect(NewClient()));
  ASSERT_TRUE(AwaitHanded(1));
  listener_->Stop();
  EXPECT_FALSE(Connect(NewClient()));
  EXPECT_EQ(errno, ECONNREFUSED);
}

TEST(ListenerBindTest, ErrorsNameTheAddressAndTheReason) {
  ConnectionListener::Options options;
  options.address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<ConnectionListener>> first =
      ConnectionListener::Bind(options);
  ASSERT_TRUE(first.ok()) << first.status();
  const std::string taken = absl::StrCat("127.0.0.1:", (*first)->port());
  struct Case {
    std::string address;
    std::string message;
  };
  for (const Case& c : {
           Case{taken,
                "cannot listen on " + taken + ": Address already in use"},
           Case{"127.0.0.1:70000", "port must be a number from 0 to 65535"},
           Case{"localhost", "must be HOST:PORT"},
           Case{"no-such-host.invalid:0",
                "cannot resolve 'no-such-host.invalid'"},
       }) {
    options.address = c.address;
    absl::StatusOr<std::unique_ptr<ConnectionListener>> bound =
        ConnectionListener::Bind(options);
    EXPECT_EQ(bound.status().code(), absl::StatusCode::kUnavailable)
        << c.address;
    EXPECT_NE(bound.status().message().find(c.message), std::string::npos)
        << bound.status();
  }
}

// True if a TCP connection to `address` (IPv4 or IPv6 literal) and `port`
// succeeds.
bool Reachable(const std::string& address, int port) {
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (getaddrinfo(address.c_str(), std::to_string(port).c_str(), &hints,
                  &found) != 0) {
    return false;
  }
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool ok =
      fd >= 0 && connect(fd, found->ai_addr, found->ai_addrlen) == 0;
  if (fd >= 0) close(fd);
  freeaddrinfo(found);
  return ok;
}

bool HaveIpv6Loopback() {
  ConnectionListener::Options options;
  options.address = "[::1]:0";
  return ConnectionListener::Bind(options).ok();
}

// Each address a name resolves to is bound, on one port.
TEST(ListenerBindTest, ANameBindsEveryAddressOnOnePort) {
  ConnectionListener::Options options;
  options.address = "localhost:0";
  absl::StatusOr<std::unique_ptr<ConnectionListener>> bound =
      ConnectionListener::Bind(options);
  ASSERT_TRUE(bound.ok()) << bound.status();
  const int port = (*bound)->port();
  EXPECT_TRUE(Reachable("127.0.0.1", port));
  if (!HaveIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback here";
  addrinfo hints = {};
  hints.ai_family = AF_INET6;
  addrinfo* found = nullptr;
  const bool localhost_has_v6 =
      getaddrinfo("localhost", nullptr, &hints, &found) == 0;
  if (found != nullptr) freeaddrinfo(found);
  if (localhost_has_v6) {
    EXPECT_TRUE(Reachable("::1", port));
  }
}

// 0.0.0.0, as gRPC reads it: every interface, IPv6 included.
TEST(ListenerBindTest, EveryInterfaceTakesIpv4AndIpv6) {
  ConnectionListener::Options options;
  options.address = "0.0.0.0:0";
  absl::StatusOr<std::unique_ptr<ConnectionListener>> bound =
      ConnectionListener::Bind(options);
  ASSERT_TRUE(bound.ok()) << bound.status();
  EXPECT_TRUE(Reachable("127.0.0.1", (*bound)->port()));
  if (!HaveIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback here";
  EXPECT_TRUE(Reachable("::1", (*bound)->port()));
}

}  // namespace
}  // namespace presence
