#include "service/sqlite_presence_store.h"

#include <fstream>
#include <map>
#include <string>

#include "SQLiteCpp/Database.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace presence {
namespace {

using Kind = SessionChange::Kind;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

std::unique_ptr<SqlitePresenceStore> OpenOrDie(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SqlitePresenceStore>> store =
      SqlitePresenceStore::Open({path});
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

std::map<std::pair<int64_t, std::string>, absl::Time> Sessions(
    const StoredState& state) {
  std::map<std::pair<int64_t, std::string>, absl::Time> out;
  for (const StoredSession& s : state.live_sessions) {
    out[{s.user_id, s.session_id}] = s.last_heartbeat;
  }
  return out;
}

std::map<int64_t, absl::Time> LastSeen(const StoredState& state) {
  std::map<int64_t, absl::Time> out;
  for (const StoredLastSeen& u : state.last_seen) out[u.user_id] = u.last_seen;
  return out;
}

TEST(SqliteStoreTest, NewFileGetsTheCurrentSchema) {
  testing::TempDir dir;
  const std::string path = dir.File("p.db");
  ASSERT_NE(OpenOrDie(path), nullptr);
  SQLite::Database db(path);
  EXPECT_EQ(db.execAndGet("SELECT version FROM schema_version").getInt(),
            SqlitePresenceStore::kSchemaVersion);
  EXPECT_EQ(db.execAndGet("PRAGMA journal_mode").getString(), "wal");
  EXPECT_TRUE(db.tableExists("sessions"));
  EXPECT_TRUE(db.tableExists("users"));
}

TEST(SqliteStoreTest, MigratesAnExistingEmptyFile) {
  testing::TempDir dir;
  const std::string path = dir.File("empty.db");
  std::ofstream(path).close();  // zero bytes, as `touch` leaves it
  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  absl::StatusOr<StoredState> state = store->Load(kT0);
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_TRUE(state->live_sessions.empty());
}

TEST(SqliteStoreTest, ChangesSurviveReopen) {
  testing::TempDir dir;
  const std::string path = dir.File("p.db");
  {
    auto store = OpenOrDie(path);
    ASSERT_NE(store, nullptr);
    std::vector<SessionChange> batch = {
        {Kind::kHeartbeat, 1, "phone", kT0, kT0},
        {Kind::kHeartbeat, 1, "laptop", kT0 + absl::Seconds(1),
         kT0 + absl::Seconds(1)},
        {Kind::kHeartbeat, 2, "", kT0, kT0},
        {Kind::kHeartbeat, 3, "a", kT0, kT0},
        {Kind::kHeartbeat, 3, "b", kT0, kT0},
    };
    ASSERT_TRUE(store->Commit(batch).ok());
    std::vector<SessionChange> later = {
        {Kind::kHeartbeat, 1, "phone", kT0 + absl::Seconds(2),
         kT0 + absl::Seconds(2)},
        {Kind::kEndSession, 1, "laptop", kT0 + absl::Seconds(3),
         kT0 + absl::Seconds(3)},
        {Kind::kEndAllSessions, 3, "", kT0 + absl::Seconds(4),
         kT0 + absl::Seconds(4)},
    };
    ASSERT_TRUE(store->Commit(later).ok());
  }
  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  absl::StatusOr<StoredState> state = store->Load(kT0 - absl::Minutes(5));
  ASSERT_TRUE(state.ok()) << state.status();
  auto sessions = Sessions(*state);
  EXPECT_EQ(sessions.size(), 2u);
  EXPECT_EQ((sessions[{1, "phone"}]), kT0 + absl::Seconds(2));
  EXPECT_EQ((sessions[{2, ""}]), kT0);
  auto last_seen = LastSeen(*state);
  EXPECT_EQ(last_seen[1], kT0 + absl::Seconds(3));
  EXPECT_EQ(last_seen[3], kT0 + absl::Seconds(4));
  EXPECT_EQ(last_seen.count(2), 0u);  // carried by its live session
}

TEST(SqliteStoreTest, LoadPrunesExpiredSessionsIntoLastSeen) {
  testing::TempDir dir;
  auto store = OpenOrDie(dir.File("p.db"));
  ASSERT_NE(store, nullptr);
  std::vector<SessionChange> batch = {
      {Kind::kHeartbeat, 1, "old", kT0, kT0},
      {Kind::kHeartbeat, 1, "older", kT0 - absl::Hours(1), kT0},
      {Kind::kHeartbeat, 2, "", kT0 + absl::Minutes(10),
       kT0 + absl::Minutes(10)},
  };
  ASSERT_TRUE(store->Commit(batch).ok());
  // Sessions at or before live_after have expired.
  absl::StatusOr<StoredState> state = store->Load(kT0);
  ASSERT_TRUE(state.ok()) << state.status();
  auto sessions = Sessions(*state);
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions.begin()->first.first, 2);
  EXPECT_EQ(LastSeen(*state)[1], kT0);
  // And they are gone from the file, not only from the answer.
  absl::StatusOr<StoredState> again = store->Load(kT0 - absl::Hours(2));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->live_sessions.size(), 1u);
}

TEST(SqliteStoreTest, FileThatIsNotADatabaseIsDataLoss) {
  testing::TempDir dir;
  const std::string path = dir.File("corrupt.db");
  std::ofstream(path) << std::string(8192, 'z');
  absl::StatusOr<std::unique_ptr<SqlitePresenceStore>> store =
      SqlitePresenceStore::Open({path});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(store.status().message().find(path), absl::string_view::npos);
  EXPECT_NE(store.status().message().find("not a presenced database"),
            absl::string_view::npos)
      << store.status();
}

TEST(SqliteStoreTest, NewerSchemaIsRefused) {
  testing::TempDir dir;
  const std::string path = dir.File("p.db");
  ASSERT_NE(OpenOrDie(path), nullptr);
  {
    SQLite::Database db(path, SQLite::OPEN_READWRITE);
    db.exec("UPDATE schema_version SET version = 99");
  }
  absl::StatusOr<std::unique_ptr<SqlitePresenceStore>> store =
      SqlitePresenceStore::Open({path});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("99"), absl::string_view::npos);
}

// A damaged version row must not index the migrations out of range (found
// by fuzz/store_recovery_fuzzer: -1, 2^32 - 1 and 1e300 all read as -1
// through a 32-bit int).
TEST(SqliteStoreTest, DamagedSchemaVersionIsDataLoss) {
  for (const char* version : {"-1", "4294967295", "1e300", "'one'"}) {
    testing::TempDir dir;
    const std::string path = dir.File("p.db");
    ASSERT_NE(OpenOrDie(path), nullptr);
    {
      SQLite::Database db(path, SQLite::OPEN_READWRITE);
      db.exec(std::string("UPDATE schema_version SET version = ") + version);
    }
    absl::StatusOr<std::unique_ptr<SqlitePresenceStore>> store =
        SqlitePresenceStore::Open({path});
    ASSERT_FALSE(store.ok()) << version;
    EXPECT_TRUE(store.status().code() == absl::StatusCode::kDataLoss ||
                store.status().code() == absl::StatusCode::kFailedPrecondition)
        << version << ": " << store.status();
  }
}

TEST(SqliteStoreTest, SecondOpenOfTheSameFileIsRefused) {
  testing::TempDir dir;
  const std::string path = dir.File("p.db");
  auto first = OpenOrDie(path);
  ASSERT_NE(first, nullptr);
  absl::StatusOr<std::unique_ptr<SqlitePresenceStore>> second =
      SqlitePresenceStore::Open({path});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find("in use"), absl::string_view::npos);
  first.reset();
  EXPECT_NE(OpenOrDie(path), nullptr);  // the lock went with the store
}

TEST(SqliteStoreTest, MissingDirectoryIsAClearError) {
  testing::TempDir dir;
  const std::string path = dir.File("no/such/dir/p.db");
  absl::StatusOr<std::unique_ptr<SqlitePresenceStore>> store =
      SqlitePresenceStore::Open({path});
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(store.status().message().find(path), absl::string_view::npos)
      << store.status();
}

}  // namespace
}  // namespace presence
