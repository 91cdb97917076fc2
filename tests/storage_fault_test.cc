// Storage faults: a full disk, an unwritable or locked database, a corrupt
// database at start-up. Real faults where the machine allows them (a tiny
// tmpfs, an immutable WAL file, another process's SQLite lock, a damaged
// file); the same fault injected at the store seam, so that it is tested
// everywhere. What each must give: a clear log line, NOT_SERVING while
// commits fail, UNAVAILABLE (never OK) for a change that is not durable in
// commit mode, recovery without a restart, and never a crash.

#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "SQLiteCpp/Database.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "presence/v1/presence.grpc.pb.h"
#include "service/presence_server.h"
#include "service/sqlite_presence_store.h"
#include "service/store_writer.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using google::protobuf::util::TimeUtil;
using grpc::health::v1::HealthCheckResponse;
using testing::RunningPresenced;
using testing::StartPresenced;
using testing::Subprocess;
using testing::TempDir;

constexpr HealthCheckResponse::ServingStatus kServing =
    HealthCheckResponse::SERVING;
constexpr HealthCheckResponse::ServingStatus kNotServing =
    HealthCheckResponse::NOT_SERVING;

// What SqlitePresenceStore::Commit returns when the disk is full (ENOSPC
// gives SQLITE_FULL).
constexpr char kDiskFull[] =
    "cannot commit presence changes: database or disk is full";

// A real SQLite store whose commits fail as on a full disk while full().
class DiskFullStore : public PresenceStore {
 public:
  explicit DiskFullStore(std::unique_ptr<PresenceStore> store)
      : store_(std::move(store)) {}

  absl::StatusOr<StoredState> Load(absl::Time live_after) override {
    return store_->Load(live_after);
  }
  absl::Status Commit(absl::Span<const SessionChange> changes) override {
    ++attempts_;
    if (full_) return absl::UnavailableError(kDiskFull);
    return store_->Commit(changes);
  }

  void set_full(bool full) { full_ = full; }
  int attempts() const { return attempts_; }

 private:
  const std::unique_ptr<PresenceStore> store_;
  std::atomic<bool> full_{false};
  std::atomic<int> attempts_{0};
};

// gRPC calls without the C++ client's retries, so that every answer is seen.
class Caller {
 public:
  explicit Caller(const std::string& address)
      : channel_(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
        stub_(v1::PresenceService::NewStub(channel_)),
        health_(grpc::health::v1::Health::NewStub(channel_)) {}

  grpc::Status Heartbeat(int64_t user, v1::HeartbeatResponse* response,
                         const std::string& session = "") {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::HeartbeatRequest request;
    request.set_user_id(user);
    request.set_session_id(session);
    return stub_->Heartbeat(&context, request, response);
  }
  grpc::Status Heartbeat(int64_t user, const std::string& session) {
    v1::HeartbeatResponse response;
    return Heartbeat(user, &response, session);
  }
  grpc::Status Heartbeat(int64_t user) {
    v1::HeartbeatResponse response;
    return Heartbeat(user, &response);
  }
  grpc::Status BatchHeartbeat(const std::vector<int64_t>& users) {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::BatchHeartbeatRequest request;
    for (int64_t user : users) request.add_heartbeats()->set_user_id(user);
    v1::BatchHeartbeatResponse response;
    return stub_->BatchHeartbeat(&context, request, &response);
  }
  grpc::Status MarkOffline(int64_t user) {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::MarkOfflineRequest request;
    request.set_user_id(user);
    v1::MarkOfflineResponse response;
    return stub_->MarkOffline(&context, request, &response);
  }
  // user -> presence; empty if the call fails (a test failure).
  std::map<int64_t, v1::UserPresence> GetPresence(
      const std::vector<int64_t>& users) {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::GetPresenceRequest request;
    for (int64_t user : users) request.add_user_ids(user);
    v1::GetPresenceResponse response;
    grpc::Status status = stub_->GetPresence(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    std::map<int64_t, v1::UserPresence> out;
    for (const v1::UserPresence& p : response.users()) out[p.user_id()] = p;
    return out;
  }
  grpc::Status ListOnlineStatus() {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::ListOnlineResponse response;
    return stub_->ListOnline(&context, v1::ListOnlineRequest(), &response);
  }
  std::vector<int64_t> ListOnline() {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::ListOnlineRequest request;
    v1::ListOnlineResponse response;
    grpc::Status status = stub_->ListOnline(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.online_users().begin(), response.online_users().end()};
  }

  // The status of `service`, or UNKNOWN if the check itself fails.
  HealthCheckResponse::ServingStatus Health(const std::string& service) {
    grpc::ClientContext context;
    SetDeadline(context);
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    HealthCheckResponse response;
    if (!health_->Check(&context, request, &response).ok()) {
      return HealthCheckResponse::UNKNOWN;
    }
    return response.status();
  }
  // True once the whole server and presence.v1.PresenceService both report
  // `want`, at once or within `timeout`.
  bool AwaitHealth(HealthCheckResponse::ServingStatus want,
                   absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      if (Health("") == want &&
          Health(v1::PresenceService::service_full_name()) == want) {
        return true;
      }
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

 private:
  static void SetDeadline(grpc::ClientContext& context) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(30));
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::PresenceService::Stub> stub_;
  std::unique_ptr<grpc::health::v1::Health::Stub> health_;
};

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

int64_t SessionRows(const std::string& db_path, int64_t user) {
  SQLite::Database db(db_path, SQLite::OPEN_READONLY);
  SQLite::Statement count(db,
                          "SELECT COUNT(*) FROM sessions WHERE user_id = ?");
  count.bind(1, user);
  count.executeStep();
  return count.getColumn(0).getInt64();
}

// --- Injected at the store seam: runs everywhere -------------------------

class InjectedDiskFullTest : public ::testing::Test {
 protected:
  void Start(Durability durability) {
    db_path_ = dir_.File("presence.db");
    absl::StatusOr<std::unique_ptr<SqlitePresenceStore>> sqlite =
        SqlitePresenceStore::Open({db_path_});
    ASSERT_TRUE(sqlite.ok()) << sqlite.status();
    auto store = std::make_unique<DiskFullStore>(*std::move(sqlite));
    store_ = store.get();
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.db_path = db_path_;
    options.durability = durability;
    options.commit_interval = absl::Milliseconds(10);
    absl::StatusOr<std::unique_ptr<PresenceServer>> server =
        PresenceServer::Start(options, std::move(store));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    caller_ = std::make_unique<Caller>(server_->address());
  }

  TempDir dir_;
  std::string db_path_;
  DiskFullStore* store_ = nullptr;  // owned by server_
  std::unique_ptr<PresenceServer> server_;
  std::unique_ptr<Caller> caller_;
};

TEST_F(InjectedDiskFullTest, CommitModeIsUnavailableAndNotServingThenRecovers) {
  Start(Durability::kCommit);
  ASSERT_TRUE(caller_->Heartbeat(1).ok());
  ASSERT_TRUE(caller_->AwaitHealth(kServing, absl::ZeroDuration()));

  store_->set_full(true);
  grpc::Status beat = caller_->Heartbeat(2);
  EXPECT_EQ(beat.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(beat.error_message().find("could not be made durable"),
            std::string::npos)
      << beat.error_message();
  EXPECT_NE(beat.error_message().find("disk is full"), std::string::npos)
      << beat.error_message();
  // Set before the failed calls are answered: no wait.
  EXPECT_TRUE(caller_->AwaitHealth(kNotServing, absl::ZeroDuration()));
  EXPECT_EQ(caller_->MarkOffline(1).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(caller_->BatchHeartbeat({3, 4}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(caller_->AwaitHealth(kNotServing, absl::ZeroDuration()));

  // Reads are answered from memory, which holds the changes.
  EXPECT_EQ(caller_->ListOnline(), (std::vector<int64_t>{2, 3, 4}));
  std::map<int64_t, v1::UserPresence> p = caller_->GetPresence({1, 2});
  EXPECT_EQ(p[1].status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(p[2].status(), v1::STATUS_ONLINE);
  EXPECT_EQ(SessionRows(db_path_, 2), 0);  // not durable

  const int attempts = store_->attempts();
  store_->set_full(false);
  EXPECT_TRUE(caller_->AwaitHealth(kServing));
  EXPECT_GT(store_->attempts(), attempts);  // retried without a new call
  // The changes answered UNAVAILABLE were kept and are now committed.
  EXPECT_EQ(SessionRows(db_path_, 1), 0);
  EXPECT_EQ(SessionRows(db_path_, 2), 1);
  EXPECT_EQ(SessionRows(db_path_, 4), 1);
  EXPECT_TRUE(caller_->Heartbeat(5).ok());
  EXPECT_EQ(SessionRows(db_path_, 5), 1);
  EXPECT_TRUE(server_->Shutdown().ok());
}

// The lost-logout repro: the first MarkOffline ends both sessions in memory
// and fails UNAVAILABLE; the client's retry finds nothing left to end. Were
// that retry answered OK, a crash before the disk heals would bring back a
// user the caller was told is logged out.
TEST_F(InjectedDiskFullTest, ARetriedLogoutIsNotOkUntilItsChangeIsDurable) {
  Start(Durability::kCommit);
  ASSERT_TRUE(caller_->Heartbeat(42).ok());
  ASSERT_TRUE(caller_->Heartbeat(42, "phone").ok());
  store_->set_full(true);
  EXPECT_EQ(caller_->MarkOffline(42).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(caller_->GetPresence({42})[42].status(), v1::STATUS_OFFLINE);
  for (int retry = 0; retry < 3; ++retry) {
    grpc::Status again = caller_->MarkOffline(42);
    EXPECT_EQ(again.error_code(), grpc::StatusCode::UNAVAILABLE) << retry;
    EXPECT_NE(again.error_message().find("disk is full"), std::string::npos)
        << again.error_message();
  }
  EXPECT_EQ(SessionRows(db_path_, 42), 2);  // what a crash now would load

  store_->set_full(false);
  EXPECT_TRUE(caller_->AwaitHealth(kServing));
  EXPECT_TRUE(caller_->MarkOffline(42).ok());
  EXPECT_EQ(SessionRows(db_path_, 42), 0);
}

TEST_F(InjectedDiskFullTest, AsyncModeAnswersOkButIsNotServingUntilCommitted) {
  Start(Durability::kAsync);
  store_->set_full(true);
  // Acknowledged at once, as async mode promises; not durable yet.
  ASSERT_TRUE(caller_->Heartbeat(7).ok());
  EXPECT_TRUE(caller_->AwaitHealth(kNotServing));
  EXPECT_EQ(caller_->ListOnline(), std::vector<int64_t>{7});
  EXPECT_EQ(SessionRows(db_path_, 7), 0);

  store_->set_full(false);
  EXPECT_TRUE(caller_->AwaitHealth(kServing));
  EXPECT_EQ(SessionRows(db_path_, 7), 1);
}

TEST_F(InjectedDiskFullTest, ShutdownWhileTheDiskIsFullReportsTheLoss) {
  Start(Durability::kAsync);
  store_->set_full(true);
  ASSERT_TRUE(caller_->Heartbeat(7).ok());
  ASSERT_TRUE(caller_->AwaitHealth(kNotServing));
  absl::Status stopped = server_->Shutdown();
  EXPECT_EQ(stopped.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(stopped.message().find("disk is full"), std::string::npos)
      << stopped;
}

// A real SQLite store whose commits wait while held.
class HeldStore : public PresenceStore {
 public:
  explicit HeldStore(std::unique_ptr<PresenceStore> store)
      : store_(std::move(store)) {}
  absl::StatusOr<StoredState> Load(absl::Time live_after) override {
    return store_->Load(live_after);
  }
  absl::Status Commit(absl::Span<const SessionChange> changes) override {
    {
      absl::MutexLock lock(&mu_);
      ++entered_;
      mu_.Await(absl::Condition(
          +[](bool* held) { return !*held; }, &held_));
    }
    return store_->Commit(changes);
  }
  void Hold() {
    absl::MutexLock lock(&mu_);
    held_ = true;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    held_ = false;
  }
  void AwaitEntered(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return entered_ >= n;
    };
    mu_.Await(absl::Condition(&reached));
  }

 private:
  const std::unique_ptr<PresenceStore> store_;
  absl::Mutex mu_;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  int entered_ ABSL_GUARDED_BY(mu_) = 0;
};

// Shutdown lets a call in flight finish (here: one waiting for its commit)
// and answers it OK, while new calls are refused UNAVAILABLE; then it ends
// at once, although an idle connection stays open.
TEST(ShutdownTest, CallsInFlightFinishNewOnesAreRefusedIdleOnesDoNotWait) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<SqlitePresenceStore>> sqlite =
      SqlitePresenceStore::Open({dir.File("p.db")});
  ASSERT_TRUE(sqlite.ok()) << sqlite.status();
  auto held = std::make_unique<HeldStore>(*std::move(sqlite));
  HeldStore* store = held.get();
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir.File("p.db");
  absl::StatusOr<std::unique_ptr<PresenceServer>> server =
      PresenceServer::Start(options, std::move(held));
  ASSERT_TRUE(server.ok()) << server.status();
  Caller idle((*server)->address());
  ASSERT_TRUE(idle.Heartbeat(1).ok());  // then kept open, unused

  store->Hold();
  Caller in_flight((*server)->address());
  grpc::Status answer;
  std::thread call([&] { answer = in_flight.Heartbeat(2); });
  store->AwaitEntered(2);  // the call waits for its commit

  absl::Status stopped;
  absl::Notification done;
  std::thread stopper([&] {
    stopped = (*server)->Shutdown();
    done.Notify();
  });
  // New calls are refused (UNAVAILABLE from presenced, or by gRPC once the
  // connection got its GOAWAY), before they are applied.
  // Reads (which wait for no commit) tell when the refusals begin.
  for (const absl::Time end = absl::Now() + absl::Seconds(4);
       idle.ListOnlineStatus().ok() && absl::Now() < end;) {
  }
  const grpc::Status late = idle.Heartbeat(3);
  // A call that races gRPC's own shutdown of the server is cancelled by the
  // transport (about 1 run in 40 under load), never applied either way: the
  // rows checked below say so.
  EXPECT_THAT(late.error_code(), ::testing::AnyOf(grpc::StatusCode::UNAVAILABLE,
                                                  grpc::StatusCode::CANCELLED))
      << late.error_message();
  EXPECT_FALSE(done.HasBeenNotified());  // still waiting for the call

  const absl::Time released = absl::Now();
  store->Release();
  call.join();
  EXPECT_TRUE(answer.ok()) << answer.error_message();
  done.WaitForNotification();
  EXPECT_LT(absl::Now() - released, absl::Seconds(1));
  stopper.join();
  EXPECT_TRUE(stopped.ok()) << stopped;
  EXPECT_EQ(SessionRows(options.db_path, 2), 1);
  EXPECT_EQ(SessionRows(options.db_path, 3), 0);
}

// The writer reports an outage once, however many retries it takes.
class FlakyStore : public PresenceStore {
 public:
  explicit FlakyStore(int failures) : failures_left_(failures) {}
  absl::StatusOr<StoredState> Load(absl::Time) override {
    return StoredState{};
  }
  absl::Status Commit(absl::Span<const SessionChange>) override {
    absl::MutexLock lock(&mu_);
    ++attempts_;
    if (failures_left_ > 0) {
      --failures_left_;
      return absl::UnavailableError(kDiskFull);
    }
    return absl::OkStatus();
  }
  int attempts() {
    absl::MutexLock lock(&mu_);
    return attempts_;
  }

 private:
  absl::Mutex mu_;
  int failures_left_ ABSL_GUARDED_BY(mu_);
  int attempts_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(StoreWriterHealthTest, OneReportPerOutageNotPerRetry) {
  for (Durability durability : {Durability::kCommit, Durability::kAsync}) {
    FlakyStore store(/*failures=*/20);
    absl::Mutex mu;
    std::vector<absl::Status> reports;
    StoreWriter::Options options;
    options.durability = durability;
    options.commit_interval = absl::ZeroDuration();
    options.retry_backoff = absl::Milliseconds(1);
    options.on_health_change = [&](const absl::Status& s) {
      absl::MutexLock lock(&mu);
      reports.push_back(s);
    };
    StoreWriter writer(&store, options);
    const absl::Time t = absl::FromUnixSeconds(1'800'000'000);
    writer.Record({SessionChange::Kind::kHeartbeat, 1, "", t, t});
    auto recovered = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return reports.size() >= 2;
    };
    {
      absl::MutexLock lock(&mu);
      ASSERT_TRUE(
          mu.AwaitWithTimeout(absl::Condition(&recovered), absl::Seconds(30)));
    }
    EXPECT_TRUE(writer.Stop().ok());
    EXPECT_EQ(store.attempts(), 21);
    absl::MutexLock lock(&mu);
    ASSERT_EQ(reports.size(), 2u);
    EXPECT_EQ(reports[0].code(), absl::StatusCode::kUnavailable);
    EXPECT_TRUE(reports[1].ok());
  }
}

// --- Real faults on the presenced binary ----------------------------------

// A tmpfs of `bytes` at `dir`, unmounted (lazily, in case presenced still
// holds files there) on destruction. Needs CAP_SYS_ADMIN.
class TmpfsMount {
 public:
  TmpfsMount(const std::string& dir, size_t bytes) : dir_(dir) {
    mkdir(dir.c_str(), 0755);
    const std::string data = absl::StrCat("size=", bytes);
    if (mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
              data.c_str()) != 0) {
      error_ = std::strerror(errno);
    }
  }
  ~TmpfsMount() {
    if (error_.empty()) umount2(dir_.c_str(), MNT_DETACH);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

  // Empty if mounted, else why not.
  const std::string& error() const { return error_; }

 private:
  const std::string dir_;
  std::string error_;
};

// Writes `path` until the filesystem has no byte left.
void FillDisk(const std::string& path) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  const std::string zeros(64 * 1024, '\0');
  size_t chunk = zeros.size();
  while (chunk > 0) {
    if (write(fd, zeros.data(), chunk) > 0) continue;
    ASSERT_EQ(errno, ENOSPC) << std::strerror(errno);
    chunk /= 2;  // squeeze the last partial pages
  }
  close(fd);
}

// Sets or clears the immutable attribute (chattr +i): even root can then not
// write the file, through descriptors opened before too. Empty if done,
// else why not (not root, or a filesystem without attributes).
std::string SetImmutable(const std::string& path, bool immutable) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::strerror(errno);
  int flags = 0;
  std::string error;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) {
    error = std::strerror(errno);
  } else {
    flags = immutable ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    if (ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0) error = std::strerror(errno);
  }
  close(fd);
  return error;
}

// Clears the immutable attribute on destruction, so that TempDir can remove
// the file even when a test fails half-way.
class ImmutableGuard {
 public:
  explicit ImmutableGuard(std::string path) : path_(std::move(path)) {}
  ~ImmutableGuard() { SetImmutable(path_, false); }
  ImmutableGuard(const ImmutableGuard&) = delete;
  ImmutableGuard& operator=(const ImmutableGuard&) = delete;

 private:
  const std::string path_;
};

int64_t Micros(const google::protobuf::Timestamp& t) {
  return TimeUtil::TimestampToMicroseconds(t);
}

TEST(RealStorageFaultTest, FullDiskThenSpaceFreedThenKillNine) {
  TempDir dir;
  const std::string disk = dir.File("disk");
  TmpfsMount mount(disk, 2 << 20);
  if (!mount.error().empty()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << mount.error()
                 << "; needs root or CAP_SYS_ADMIN): the injected "
                    "InjectedDiskFullTest covers the full disk instead";
  }
  const std::string db = disk + "/presence.db";
  const std::string filler = disk + "/filler";
  std::map<int64_t, int64_t> online_until;  // answered OK
  std::vector<int64_t> unavailable_then_kept;
  std::vector<int64_t> lost;  // answered UNAVAILABLE, then kill -9
  {
    RunningPresenced server = StartPresenced({"--db=" + db});
    ASSERT_FALSE(server.address.empty());
    Caller caller(server.address);
    for (int64_t user = 1; user <= 20; ++user) {
      v1::HeartbeatResponse r;
      ASSERT_TRUE(caller.Heartbeat(user, &r).ok());
      online_until[user] = Micros(r.online_until());
    }

    FillDisk(filler);
    for (int64_t user = 101; user <= 110; ++user) {
      grpc::Status s = caller.Heartbeat(user);
      ASSERT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << user;
      EXPECT_NE(s.error_message().find("database or disk is full"),
                std::string::npos)
          << s.error_message();
      unavailable_then_kept.push_back(user);
    }
    EXPECT_TRUE(caller.AwaitHealth(kNotServing, absl::ZeroDuration()));
    EXPECT_EQ(caller.GetPresence({105})[105].status(), v1::STATUS_ONLINE);
    ASSERT_TRUE(server.process->WaitForStderr(
        "ERROR store commits fail, retrying every 200ms", absl::Seconds(5)));

    ASSERT_EQ(unlink(filler.c_str()), 0);
    EXPECT_TRUE(caller.AwaitHealth(kServing));
    ASSERT_TRUE(server.process->WaitForStderr("store commits succeed again",
                                              absl::Seconds(5)));
    v1::HeartbeatResponse r;
    ASSERT_TRUE(caller.Heartbeat(201, &r).ok());
    online_until[201] = Micros(r.online_until());

    // A second outage, and presenced dies in it.
    FillDisk(filler);
    for (int64_t user = 301; user <= 305; ++user) {
      ASSERT_EQ(caller.Heartbeat(user).error_code(),
                grpc::StatusCode::UNAVAILABLE);
      lost.push_back(user);
    }
    server.process->Signal(SIGKILL);
    Subprocess::Exit exit = server.process->Wait();
    EXPECT_EQ(exit.signal, SIGKILL);
    // One line per outage start and end, not one per retry.
    EXPECT_EQ(Count(exit.err, "store commits fail"), 2u) << exit.err;
    EXPECT_EQ(Count(exit.err, "store commits succeed again"), 1u) << exit.err;
  }

  // No room for the start-up's own write: a clear refusal, not a crash.
  Subprocess::Exit full =
      testing::Run({PRESENCED_PATH, "--listen=127.0.0.1:0", "--db=" + db});
  EXPECT_EQ(full.code, 1) << full.err;
  EXPECT_NE(full.err.find(db), std::string::npos) << full.err;
  EXPECT_NE(full.err.find("disk is full"), std::string::npos) << full.err;

  ASSERT_EQ(unlink(filler.c_str()), 0);
  RunningPresenced server = StartPresenced({"--db=" + db});
  ASSERT_FALSE(server.address.empty());
  Caller caller(server.address);
  std::vector<int64_t> users;
  for (const auto& [user, until] : online_until) users.push_back(user);
  users.insert(users.end(), unavailable_then_kept.begin(),
               unavailable_then_kept.end());
  users.insert(users.end(), lost.begin(), lost.end());
  std::map<int64_t, v1::UserPresence> p = caller.GetPresence(users);
  for (const auto& [user, until] : online_until) {
    EXPECT_EQ(p[user].status(), v1::STATUS_ONLINE) << user;
    EXPECT_EQ(Micros(p[user].online_until()), until) << user;
  }
  // Answered UNAVAILABLE, kept, and committed once space was freed.
  for (int64_t user : unavailable_then_kept) {
    EXPECT_EQ(p[user].status(), v1::STATUS_ONLINE) << user;
  }
  // Answered UNAVAILABLE and lost with the process: never seen.
  for (int64_t user : lost) {
    EXPECT_EQ(p[user].status(), v1::STATUS_OFFLINE) << user;
    EXPECT_FALSE(p[user].has_last_seen()) << user;
  }
}

TEST(RealStorageFaultTest, LockedByAnotherProgramThenReleased) {
  TempDir dir;
  const std::string db = dir.File("presence.db");
  RunningPresenced server = StartPresenced({"--db=" + db});
  ASSERT_FALSE(server.address.empty());
  auto caller = std::make_unique<Caller>(server.address);
  ASSERT_TRUE(caller->Heartbeat(1).ok());

  SQLite::Database other(db, SQLite::OPEN_READWRITE);
  other.exec("BEGIN EXCLUSIVE");
  const absl::Time sent = absl::Now();
  grpc::Status s = caller->Heartbeat(2);
  const absl::Duration waited = absl::Now() - sent;
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(s.error_message().find("database is locked"), std::string::npos)
      << s.error_message();
  // After the busy timeout, and well within a client's default deadline.
  EXPECT_GE(waited, SqlitePresenceStore::kBusyTimeout - absl::Milliseconds(50));
  EXPECT_LT(waited, absl::Seconds(4));
  EXPECT_TRUE(caller->AwaitHealth(kNotServing, absl::ZeroDuration()));
  EXPECT_EQ(caller->ListOnline(), (std::vector<int64_t>{1, 2}));

  other.exec("ROLLBACK");
  EXPECT_TRUE(caller->AwaitHealth(kServing));
  EXPECT_EQ(SessionRows(db, 2), 1);
  EXPECT_TRUE(caller->Heartbeat(3).ok());

  caller.reset();  // an open channel would hold the shutdown for its grace
  server.process->Signal(SIGTERM);
  Subprocess::Exit exit = server.process->Wait();
  EXPECT_EQ(exit.code, 0) << exit.err;
  EXPECT_EQ(Count(exit.err, "store commits fail"), 1u) << exit.err;
  EXPECT_NE(exit.err.find("another program holds a write lock"),
            std::string::npos)
      << exit.err;
  EXPECT_EQ(Count(exit.err, "store commits succeed again"), 1u) << exit.err;
}

TEST(RealStorageFaultTest, UnwritableWalFileThenWritableAgain) {
  TempDir dir;
  const std::string db = dir.File("presence.db");
  RunningPresenced server = StartPresenced({"--db=" + db});
  ASSERT_FALSE(server.address.empty());
  auto caller = std::make_unique<Caller>(server.address);
  ASSERT_TRUE(caller->Heartbeat(1).ok());  // the WAL file exists now

  const std::string wal = db + "-wal";
  ImmutableGuard guard(wal);
  if (std::string error = SetImmutable(wal, true); !error.empty()) {
    GTEST_SKIP() << "cannot make " << wal << " immutable (" << error
                 << "; needs root and a filesystem with attributes, e.g. "
                    "ext4): the injected faults cover a failing commit";
  }
  grpc::Status s = caller->Heartbeat(2);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(s.error_message().find("a write failed"), std::string::npos)
      << s.error_message();
  EXPECT_TRUE(caller->AwaitHealth(kNotServing, absl::ZeroDuration()));

  ASSERT_EQ(SetImmutable(wal, false), "");
  EXPECT_TRUE(caller->AwaitHealth(kServing));
  EXPECT_TRUE(caller->Heartbeat(3).ok());
  EXPECT_EQ(SessionRows(db, 2), 1);
  caller.reset();
  server.process->Signal(SIGTERM);
  EXPECT_EQ(server.process->Wait().code, 0);
}

TEST(RealStorageFaultTest, UnwritableDatabaseAtStartUpIsAClearError) {
  TempDir dir;
  const std::string db = dir.File("presence.db");
  ASSERT_TRUE(SqlitePresenceStore::Open({db}).ok());
  ImmutableGuard guard(db);
  if (std::string error = SetImmutable(db, true); !error.empty()) {
    GTEST_SKIP() << "cannot make " << db << " immutable (" << error << ")";
  }
  Subprocess::Exit exit =
      testing::Run({PRESENCED_PATH, "--listen=127.0.0.1:0", "--db=" + db});
  EXPECT_EQ(exit.code, 1) << exit.err;
  EXPECT_NE(exit.err.find("cannot open database " + db + " for writing"),
            std::string::npos)
      << exit.err;
  EXPECT_EQ(exit.err.find("serving on"), std::string::npos) << exit.err;
}

// A database closed cleanly has no -shm file; on a full disk SQLite fails to
// size a new one with "disk I/O error (SQLite code 4874)". Say the disk is
// full.
TEST(RealStorageFaultTest, StartingOnAFullDiskSaysTheDiskIsFull) {
  TempDir dir;
  const std::string disk = dir.File("disk");
  TmpfsMount mount(disk, 1 << 20);
  if (!mount.error().empty()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << mount.error() << ")";
  }
  const std::string db = disk + "/presence.db";
  {
    absl::StatusOr<std::unique_ptr<SqlitePresenceStore>> store =
        SqlitePresenceStore::Open({db});
    ASSERT_TRUE(store.ok()) << store.status();
    const absl::Time t = absl::Now();
    ASSERT_TRUE((*store)
                    ->Commit({{SessionChange::Kind::kHeartbeat, 1, "", t, t}})
                    .ok());
  }  // closed: the WAL and the -shm file are gone
  FillDisk(disk + "/filler");
  Subprocess::Exit exit =
      testing::Run({PRESENCED_PATH, "--listen=127.0.0.1:0", "--db=" + db});
  EXPECT_EQ(exit.code, 1) << exit.err;
  EXPECT_NE(exit.err.find("cannot open database " + db + ": the disk is full"),
            std::string::npos)
      << exit.err;
}

// The repro, with presencectl (and the C++ client's retries) on a
// real full disk: the logout is never reported done, and after kill -9 the
// state is what the answers said.
TEST(RealStorageFaultTest, LogoutOnAFullDiskIsNeverReportedDone) {
  TempDir dir;
  const std::string disk = dir.File("disk");
  TmpfsMount mount(disk, 1 << 20);
  if (!mount.error().empty()) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << mount.error()
                 << "): InjectedDiskFullTest.ARetriedLogout... covers it";
  }
  const std::string db = disk + "/presence.db";
  const std::string filler = disk + "/filler";
  {
    RunningPresenced server = StartPresenced({"--db=" + db});
    ASSERT_FALSE(server.address.empty());
    auto ctl = [&](std::vector<std::string> args) {
      args.insert(args.begin(),
                  {PRESENCECTL_PATH, "--server=" + server.address});
      return testing::Run(args);
    };
    ASSERT_EQ(ctl({"heartbeat", "42"}).code, 0);
    ASSERT_EQ(ctl({"heartbeat", "42", "--session=phone"}).code, 0);
    FillDisk(filler);
    Subprocess::Exit offline = ctl({"offline", "42"});
    EXPECT_EQ(offline.code, 1) << offline.out << offline.err;
    EXPECT_NE(offline.err.find("disk is full"), std::string::npos)
        << offline.err;
    server.process->Signal(SIGKILL);
    server.process->Wait();
  }
  ASSERT_EQ(unlink(filler.c_str()), 0);
  RunningPresenced server = StartPresenced({"--db=" + db});
  ASSERT_FALSE(server.address.empty());
  // Not logged out, as the failed answer said.
  std::map<int64_t, v1::UserPresence> p =
      Caller(server.address).GetPresence({42});
  EXPECT_EQ(p[42].status(), v1::STATUS_ONLINE);
  EXPECT_EQ(p[42].live_sessions(), 2);
}

// rm presence.db presence.db-wal presence.db-shm under a running presenced:
// within 2 s health is NOT_SERVING and every change is refused UNAVAILABLE,
// naming the cause; nothing is answered OK from then on, in either mode.
TEST(RealStorageFaultTest, DatabaseDeletedWhileServingStopsEveryChange) {
  for (const std::string durability : {"commit", "async"}) {
    SCOPED_TRACE(durability);
    TempDir dir;
    const std::string db = dir.File("presence.db");
    RunningPresenced server = StartPresenced(
        {"--db=" + db, "--durability=" + durability, "--commit_interval=10ms"});
    ASSERT_FALSE(server.address.empty());
    auto caller = std::make_unique<Caller>(server.address);
    ASSERT_TRUE(caller->Heartbeat(1).ok());
    ASSERT_TRUE(caller->AwaitHealth(kServing, absl::ZeroDuration()));

    for (const char* suffix : {"", "-wal", "-shm"}) {
      ASSERT_EQ(unlink((db + suffix).c_str()), 0) << suffix;
    }
    // No change comes: presenced notices by itself.
    EXPECT_TRUE(caller->AwaitHealth(kNotServing, absl::Seconds(2)));
    int ok = 0;
    for (int64_t user = 100; user < 120; ++user) {
      grpc::Status s = caller->Heartbeat(user);
      if (s.ok()) ++ok;
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
      EXPECT_NE(s.error_message().find(db), std::string::npos)
          << s.error_message();
      EXPECT_NE(s.error_message().find("was deleted or replaced"),
                std::string::npos)
          << s.error_message();
    }
    EXPECT_EQ(ok, 0);
    EXPECT_EQ(caller->MarkOffline(1).error_code(),
              grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(caller->BatchHeartbeat({3, 4}).error_code(),
              grpc::StatusCode::UNAVAILABLE);
    // Refused changes were not applied; reads still answer from memory.
    EXPECT_EQ(caller->ListOnline(), std::vector<int64_t>{1});
    EXPECT_TRUE(caller->AwaitHealth(kNotServing, absl::ZeroDuration()));
    ASSERT_TRUE(server.process->WaitForStderr(
        "ERROR store: changes can no longer be made durable",
        absl::Seconds(5)));
    caller.reset();
    server.process->Signal(SIGTERM);
    Subprocess::Exit exit = server.process->Wait();
    // Not a clean stop: what was committed is not in the file at the path.
    EXPECT_EQ(exit.code, 1) << exit.err;
    EXPECT_EQ(Count(exit.err,
                    "ERROR store: changes can no longer be made "
                    "durable"),
              1u)
        << exit.err;
    EXPECT_NE(exit.err.find("presenced: shutdown: changes can no longer"),
              std::string::npos)
        << exit.err;
  }
}

// --- A corrupt database at start-up ---------------------------------------

struct Damage {
  std::string name;
  // What is done to the file, given its size (a whole number of pages).
  void (*apply)(const std::string& path, size_t size);
};

void PrintTo(const Damage& d, std::ostream* os) { *os << d.name; }

constexpr size_t kPage = 4096;

void Overwrite(const std::string& path, size_t offset, const std::string& s) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

std::string Garbage(size_t n) {
  std::mt19937 random(42);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(random());
  return s;
}

class CorruptDatabaseTest : public ::testing::TestWithParam<Damage> {};

TEST_P(CorruptDatabaseTest, RefusedWithTheFileAndWhatToDoNeverACrash) {
  TempDir dir;
  const std::string db = dir.File("presence.db");
  {
    // Enough rows for several pages per table.
    auto store = SqlitePresenceStore::Open({db});
    ASSERT_TRUE(store.ok()) << store.status();
    std::vector<SessionChange> changes;
    const absl::Time t = absl::Now();
    for (int64_t user = 1; user <= 2000; ++user) {
      changes.push_back(
          {SessionChange::Kind::kHeartbeat, user, std::string(40, 'x'), t, t});
      if (user % 2 == 0) {
        changes.push_back(
            {SessionChange::Kind::kEndAllSessions, user, "", t, t});
      }
    }
    ASSERT_TRUE((*store)->Commit(changes).ok());
  }  // closed: the WAL is checkpointed into the file and removed
  struct stat st;
  ASSERT_EQ(stat(db.c_str(), &st), 0);
  ASSERT_GT(static_cast<size_t>(st.st_size), 8 * kPage);
  GetParam().apply(db, static_cast<size_t>(st.st_size));

  Subprocess::Exit exit =
      testing::Run({PRESENCED_PATH, "--listen=127.0.0.1:0", "--db=" + db});
  EXPECT_EQ(exit.signal, 0) << exit.err;
  EXPECT_EQ(exit.code, 1) << exit.err;
  EXPECT_NE(exit.err.find(db), std::string::npos) << exit.err;
  EXPECT_NE(exit.err.find("is corrupt; restore it from a backup or move it "
                          "away to start empty"),
            std::string::npos)
      << exit.err;
  EXPECT_EQ(exit.err.find("serving on"), std::string::npos) << exit.err;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CorruptDatabaseTest,
    ::testing::Values(
        // The header and the schema intact, every table's pages garbage.
        Damage{"GarbagePages",
               [](const std::string& path, size_t size) {
                 Overwrite(path, kPage, Garbage(size - kPage));
               }},
        // Only the rows' pages: the schema reads well, the load fails.
        Damage{"GarbageRowPages",
               [](const std::string& path, size_t size) {
                 Overwrite(path, 4 * kPage, Garbage(size - 4 * kPage));
               }},
        Damage{"ZeroedPages",
               [](const std::string& path, size_t size) {
                 Overwrite(path, kPage, std::string(size - kPage, '\0'));
               }},
        // Cut short, as by a copy that did not finish.
        Damage{"Truncated",
               [](const std::string& path, size_t size) {
                 ASSERT_EQ(
                     truncate(path.c_str(), static_cast<off_t>(size / 2 + 100)),
                     0);
               }},
        // The schema page damaged past its header.
        Damage{"DamagedSchemaPage",
               [](const std::string& path, size_t) {
                 Overwrite(path, 100, Garbage(kPage - 100));
               }}),
    [](const ::testing::TestParamInfo<Damage>& info) {
      return info.param.name;
    });

}  // namespace
}  // namespace presence
