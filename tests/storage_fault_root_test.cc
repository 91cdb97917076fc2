// Storage faults that only root can make real (the injected ones in
// storage_fault_test.cc cover them everywhere): a full disk (a tiny tmpfs,
// mounted with CAP_SYS_ADMIN) and an unwritable database or WAL file (chattr
// +i). Each test skips, saying why, where the machine does not allow it. CTest
// label `root`.

#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "service/sqlite_presence_store.h"
#include "tests/storage_fault_util.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using google::protobuf::util::TimeUtil;
using testing::Count;
using testing::kNotServing;
using testing::kServing;
using testing::NoRetryClient;
using testing::RunningPresenced;
using testing::StartPresenced;
using testing::Subprocess;
using testing::TempDir;

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
    NoRetryClient client(server.address);
    for (int64_t user = 1; user <= 20; ++user) {
      v1::HeartbeatResponse r;
      ASSERT_TRUE(client.Heartbeat(user, &r).ok());
      online_until[user] = Micros(r.online_until());
    }

    FillDisk(filler);
    for (int64_t user = 101; user <= 110; ++user) {
      grpc::Status s = client.Heartbeat(user);
      ASSERT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << user;
      EXPECT_NE(s.error_message().find("database or disk is full"),
                std::string::npos)
          << s.error_message();
      unavailable_then_kept.push_back(user);
    }
    EXPECT_TRUE(client.AwaitHealth(kNotServing, absl::ZeroDuration()));
    EXPECT_EQ(client.GetPresence({105})[105].status(), v1::STATUS_ONLINE);
    ASSERT_TRUE(server.process->WaitForStderr(
        "ERROR store commits fail, retrying every 200ms", absl::Seconds(5)));

    ASSERT_EQ(unlink(filler.c_str()), 0);
    EXPECT_TRUE(client.AwaitHealth(kServing));
    ASSERT_TRUE(server.process->WaitForStderr("store commits succeed again",
                                              absl::Seconds(5)));
    v1::HeartbeatResponse r;
    ASSERT_TRUE(client.Heartbeat(201, &r).ok());
    online_until[201] = Micros(r.online_until());

    // A second outage, and presenced dies in it.
    FillDisk(filler);
    for (int64_t user = 301; user <= 305; ++user) {
      ASSERT_EQ(client.Heartbeat(user).error_code(),
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
  NoRetryClient client(server.address);
  std::vector<int64_t> users;
  for (const auto& [user, until] : online_until) users.push_back(user);
  users.insert(users.end(), unavailable_then_kept.begin(),
               unavailable_then_kept.end());
  users.insert(users.end(), lost.begin(), lost.end());
  std::map<int64_t, v1::UserPresence> p = client.GetPresence(users);
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

TEST(RealStorageFaultTest, UnwritableWalFileThenWritableAgain) {
  TempDir dir;
  const std::string db = dir.File("presence.db");
  RunningPresenced server = StartPresenced({"--db=" + db});
  ASSERT_FALSE(server.address.empty());
  auto client = std::make_unique<NoRetryClient>(server.address);
  ASSERT_TRUE(client->Heartbeat(1).ok());  // the WAL file exists now

  const std::string wal = db + "-wal";
  ImmutableGuard guard(wal);
  if (std::string error = SetImmutable(wal, true); !error.empty()) {
    GTEST_SKIP() << "cannot make " << wal << " immutable (" << error
                 << "; needs root and a filesystem with attributes, e.g. "
                    "ext4): the injected faults cover a failing commit";
  }
  grpc::Status s = client->Heartbeat(2);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(s.error_message().find("a write failed"), std::string::npos)
      << s.error_message();
  EXPECT_TRUE(client->AwaitHealth(kNotServing, absl::ZeroDuration()));

  ASSERT_EQ(SetImmutable(wal, false), "");
  EXPECT_TRUE(client->AwaitHealth(kServing));
  EXPECT_TRUE(client->Heartbeat(3).ok());
  EXPECT_EQ(testing::SessionRows(db, 2), 1);
  client.reset();
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
      NoRetryClient(server.address).GetPresence({42});
  EXPECT_EQ(p[42].status(), v1::STATUS_ONLINE);
  EXPECT_EQ(p[42].live_sessions(), 2);
}

}  // namespace
}  // namespace presence
