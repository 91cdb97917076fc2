// Storage faults: a full disk, an unwritable or locked database, a corrupt
// database at start-up. Real faults where the machine allows them without
// privileges (another process's SQLite lock, a deleted or damaged file; those
// that need root are in storage_fault_root_test.cc); the same fault injected
// at the store seam (tests/store_fakes.h), so that it is tested everywhere.
// What each must give: a clear log line, NOT_SERVING while commits fail,
// UNAVAILABLE (never OK) for a change that is not durable in commit mode,
// recovery without a restart, and never a crash.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "SQLiteCpp/Database.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/presence_server.h"
#include "service/sqlite_presence_store.h"
#include "tests/storage_fault_util.h"
#include "tests/store_fakes.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using testing::Count;
using testing::DiskFullStore;
using testing::HeldStore;
using testing::kNotServing;
using testing::kServing;
using testing::NoRetryClient;
using testing::RunningPresenced;
using testing::SessionRows;
using testing::StartPresenced;
using testing::Subprocess;
using testing::TempDir;

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
    client_ = std::make_unique<NoRetryClient>(server_->address());
  }

  TempDir dir_;
  std::string db_path_;
  DiskFullStore* store_ = nullptr;  // owned by server_
  std::unique_ptr<PresenceServer> server_;
  std::unique_ptr<NoRetryClient> client_;
};

TEST_F(InjectedDiskFullTest, CommitModeIsUnavailableAndNotServingThenRecovers) {
  Start(Durability::kCommit);
  ASSERT_TRUE(client_->Heartbeat(1).ok());
  ASSERT_TRUE(client_->AwaitHealth(kServing, absl::ZeroDuration()));

  store_->set_full(true);
  grpc::Status beat = client_->Heartbeat(2);
  EXPECT_EQ(beat.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(beat.error_message().find("could not be made durable"),
            std::string::npos)
      << beat.error_message();
  EXPECT_NE(beat.error_message().find("disk is full"), std::string::npos)
      << beat.error_message();
  // Set before the failed calls are answered: no wait.
  EXPECT_TRUE(client_->AwaitHealth(kNotServing, absl::ZeroDuration()));
  EXPECT_EQ(client_->MarkOffline(1).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(client_->BatchHeartbeat({3, 4}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(client_->AwaitHealth(kNotServing, absl::ZeroDuration()));

  // Reads are answered from memory, which holds the changes.
  EXPECT_EQ(client_->ListOnline(), (std::vector<int64_t>{2, 3, 4}));
  std::map<int64_t, v1::UserPresence> p = client_->GetPresence({1, 2});
  EXPECT_EQ(p[1].status(), v1::STATUS_OFFLINE);
  EXPECT_EQ(p[2].status(), v1::STATUS_ONLINE);
  EXPECT_EQ(SessionRows(db_path_, 2), 0);  // not durable

  const int attempts = store_->attempts();
  store_->set_full(false);
  EXPECT_TRUE(client_->AwaitHealth(kServing));
  EXPECT_GT(store_->attempts(), attempts);  // retried without a new call
  // The changes answered UNAVAILABLE were kept and are now committed.
  EXPECT_EQ(SessionRows(db_path_, 1), 0);
  EXPECT_EQ(SessionRows(db_path_, 2), 1);
  EXPECT_EQ(SessionRows(db_path_, 4), 1);
  EXPECT_TRUE(client_->Heartbeat(5).ok());
  EXPECT_EQ(SessionRows(db_path_, 5), 1);
  EXPECT_TRUE(server_->Shutdown().ok());
}

// The lost-logout repro: the first MarkOffline ends both sessions in memory
// and fails UNAVAILABLE; the client's retry finds nothing left to end. Were
// that retry answered OK, a crash before the disk heals would bring back a
// user the client was told is logged out.
TEST_F(InjectedDiskFullTest, ARetriedLogoutIsNotOkUntilItsChangeIsDurable) {
  Start(Durability::kCommit);
  ASSERT_TRUE(client_->Heartbeat(42).ok());
  ASSERT_TRUE(client_->Heartbeat(42, "phone").ok());
  store_->set_full(true);
  EXPECT_EQ(client_->MarkOffline(42).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(client_->GetPresence({42})[42].status(), v1::STATUS_OFFLINE);
  for (int retry = 0; retry < 3; ++retry) {
    grpc::Status again = client_->MarkOffline(42);
    EXPECT_EQ(again.error_code(), grpc::StatusCode::UNAVAILABLE) << retry;
    EXPECT_NE(again.error_message().find("disk is full"), std::string::npos)
        << again.error_message();
  }
  EXPECT_EQ(SessionRows(db_path_, 42), 2);  // what a crash now would load

  store_->set_full(false);
  EXPECT_TRUE(client_->AwaitHealth(kServing));
  EXPECT_TRUE(client_->MarkOffline(42).ok());
  EXPECT_EQ(SessionRows(db_path_, 42), 0);
}

TEST_F(InjectedDiskFullTest, AsyncModeAnswersOkButIsNotServingUntilCommitted) {
  Start(Durability::kAsync);
  store_->set_full(true);
  // Acknowledged at once, as async mode promises; not durable yet.
  ASSERT_TRUE(client_->Heartbeat(7).ok());
  EXPECT_TRUE(client_->AwaitHealth(kNotServing));
  EXPECT_EQ(client_->ListOnline(), std::vector<int64_t>{7});
  EXPECT_EQ(SessionRows(db_path_, 7), 0);

  store_->set_full(false);
  EXPECT_TRUE(client_->AwaitHealth(kServing));
  EXPECT_EQ(SessionRows(db_path_, 7), 1);
}

TEST_F(InjectedDiskFullTest, ShutdownWhileTheDiskIsFullReportsTheLoss) {
  Start(Durability::kAsync);
  store_->set_full(true);
  ASSERT_TRUE(client_->Heartbeat(7).ok());
  ASSERT_TRUE(client_->AwaitHealth(kNotServing));
  absl::Status stopped = server_->Shutdown();
  EXPECT_EQ(stopped.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(stopped.message().find("disk is full"), std::string::npos)
      << stopped;
}

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
  NoRetryClient idle((*server)->address());
  ASSERT_TRUE(idle.Heartbeat(1).ok());  // then kept open, unused

  store->Hold();
  NoRetryClient in_flight((*server)->address());
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

// --- Real faults on the presenced binary, without privileges -------------

TEST(RealStorageFaultTest, LockedByAnotherProgramThenReleased) {
  TempDir dir;
  const std::string db = dir.File("presence.db");
  RunningPresenced server = StartPresenced({"--db=" + db});
  ASSERT_FALSE(server.address.empty());
  auto client = std::make_unique<NoRetryClient>(server.address);
  ASSERT_TRUE(client->Heartbeat(1).ok());

  SQLite::Database other(db, SQLite::OPEN_READWRITE);
  other.exec("BEGIN EXCLUSIVE");
  const absl::Time sent = absl::Now();
  grpc::Status s = client->Heartbeat(2);
  const absl::Duration waited = absl::Now() - sent;
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_NE(s.error_message().find("database is locked"), std::string::npos)
      << s.error_message();
  // After the busy timeout, and well within a client's default deadline.
  EXPECT_GE(waited, SqlitePresenceStore::kBusyTimeout - absl::Milliseconds(50));
  EXPECT_LT(waited, absl::Seconds(4));
  EXPECT_TRUE(client->AwaitHealth(kNotServing, absl::ZeroDuration()));
  EXPECT_EQ(client->ListOnline(), (std::vector<int64_t>{1, 2}));

  other.exec("ROLLBACK");
  EXPECT_TRUE(client->AwaitHealth(kServing));
  EXPECT_EQ(SessionRows(db, 2), 1);
  EXPECT_TRUE(client->Heartbeat(3).ok());

  client.reset();  // an open channel would hold the shutdown for its grace
  server.process->Signal(SIGTERM);
  Subprocess::Exit exit = server.process->Wait();
  EXPECT_EQ(exit.code, 0) << exit.err;
  EXPECT_EQ(Count(exit.err, "store commits fail"), 1u) << exit.err;
  EXPECT_NE(exit.err.find("another program holds a write lock"),
            std::string::npos)
      << exit.err;
  EXPECT_EQ(Count(exit.err, "store commits succeed again"), 1u) << exit.err;
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
    auto client = std::make_unique<NoRetryClient>(server.address);
    ASSERT_TRUE(client->Heartbeat(1).ok());
    ASSERT_TRUE(client->AwaitHealth(kServing, absl::ZeroDuration()));

    for (const char* suffix : {"", "-wal", "-shm"}) {
      ASSERT_EQ(unlink((db + suffix).c_str()), 0) << suffix;
    }
    // No change comes: presenced notices by itself.
    EXPECT_TRUE(client->AwaitHealth(kNotServing, absl::Seconds(2)));
    int ok = 0;
    for (int64_t user = 100; user < 120; ++user) {
      grpc::Status s = client->Heartbeat(user);
      if (s.ok()) ++ok;
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
      EXPECT_NE(s.error_message().find(db), std::string::npos)
          << s.error_message();
      EXPECT_NE(s.error_message().find("was deleted or replaced"),
                std::string::npos)
          << s.error_message();
    }
    EXPECT_EQ(ok, 0);
    EXPECT_EQ(client->MarkOffline(1).error_code(),
              grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(client->BatchHeartbeat({3, 4}).error_code(),
              grpc::StatusCode::UNAVAILABLE);
    // Refused changes were not applied; reads still answer from memory.
    EXPECT_EQ(client->ListOnline(), std::vector<int64_t>{1});
    EXPECT_TRUE(client->AwaitHealth(kNotServing, absl::ZeroDuration()));
    ASSERT_TRUE(server.process->WaitForStderr(
        "ERROR store: changes can no longer be made durable",
        absl::Seconds(5)));
    client.reset();
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
