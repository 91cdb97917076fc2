#include "service/sqlite_presence_store.h"

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

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

TEST(SqliteStoreTest, StatusesAndActivitySurviveReopen) {
  testing::TempDir dir;
  const std::string path = dir.File("p.db");
  auto dnd = std::make_shared<StatusChoice>();
  dnd->availability = Availability::kDnd;
  dnd->availability_until = kT0 + absl::Hours(1);
  dnd->custom =
      CustomStatus{"Focus time", ":headphones:", kT0 + absl::Minutes(30)};
  auto invisible = std::make_shared<StatusChoice>();
  invisible->availability = Availability::kInvisible;
  invisible->last_seen_cap = absl::InfinitePast();  // never seen by others
  auto gone = std::make_shared<StatusChoice>();
  gone->custom = CustomStatus{"x", "", absl::InfiniteFuture()};
  {
    auto store = OpenOrDie(path);
    ASSERT_NE(store, nullptr);
    SessionChange idle{Kind::kHeartbeat, 1, "tab", kT0, kT0};
    idle.last_active = kT0 - absl::Minutes(3);
    SessionChange set_dnd{Kind::kSetStatus, 1, "", kT0, kT0};
    set_dnd.status = dnd;
    SessionChange set_invisible{Kind::kSetStatus, 2, "", kT0, kT0};
    set_invisible.status = invisible;
    SessionChange set_gone{Kind::kSetStatus, 3, "", kT0, kT0};
    set_gone.status = gone;
    ASSERT_TRUE(store->Commit({idle, set_dnd, set_invisible, set_gone}).ok());
    // An empty choice removes the user's row.
    SessionChange cleared{Kind::kSetStatus, 3, "", kT0, kT0};
    cleared.status = std::make_shared<StatusChoice>();
    ASSERT_TRUE(store->Commit({cleared}).ok());
  }
  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  absl::StatusOr<StoredState> state = store->Load(kT0 - absl::Minutes(5));
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_EQ(state->live_sessions.size(), 1u);
  EXPECT_EQ(state->live_sessions[0].last_active, kT0 - absl::Minutes(3));
  std::map<int64_t, StatusChoice> statuses;
  for (const StoredStatus& s : state->statuses) statuses[s.user_id] = s.choice;
  ASSERT_EQ(statuses.size(), 2u);
  EXPECT_EQ(statuses[1].availability, Availability::kDnd);
  EXPECT_EQ(statuses[1].availability_until, kT0 + absl::Hours(1));
  ASSERT_TRUE(statuses[1].custom.has_value());
  EXPECT_EQ(*statuses[1].custom, *dnd->custom);
  EXPECT_EQ(statuses[1].last_seen_cap, absl::InfiniteFuture());
  EXPECT_EQ(statuses[2].availability, Availability::kInvisible);
  EXPECT_EQ(statuses[2].availability_until, absl::InfiniteFuture());
  EXPECT_FALSE(statuses[2].custom.has_value());
  EXPECT_EQ(statuses[2].last_seen_cap, absl::InfinitePast());
}

// A file as presenced wrote it before rich presence (schema 1, made here
// with that version's exact statements) opens, upgrades in place and keeps
// everything it held.
TEST(SqliteStoreTest, UpgradesADatabaseWrittenBeforeRichPresence) {
  testing::TempDir dir;
  const std::string path = dir.File("v1.db");
  {
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec(R"sql(
      CREATE TABLE schema_version (version INTEGER NOT NULL);
      CREATE TABLE sessions (
        user_id INTEGER NOT NULL,
        session_id TEXT NOT NULL,
        last_heartbeat_us INTEGER NOT NULL,
        PRIMARY KEY (user_id, session_id)
      ) WITHOUT ROWID;
      CREATE TABLE users (
        user_id INTEGER PRIMARY KEY,
        last_seen_us INTEGER NOT NULL
      );
      INSERT INTO schema_version VALUES (1);
    )sql");
    db.exec("INSERT INTO sessions VALUES (1, 'tab', " +
            std::to_string(absl::ToUnixMicros(kT0)) + ")");
    db.exec("INSERT INTO users VALUES (2, " +
            std::to_string(absl::ToUnixMicros(kT0 - absl::Hours(1))) + ")");
  }
  {
    auto store = OpenOrDie(path);
    ASSERT_NE(store, nullptr);
    absl::StatusOr<StoredState> state = store->Load(kT0 - absl::Minutes(5));
    ASSERT_TRUE(state.ok()) << state.status();
    ASSERT_EQ(state->live_sessions.size(), 1u);
    EXPECT_EQ(state->live_sessions[0].last_heartbeat, kT0);
    // No activity time stored: the registry reads it as the heartbeat.
    EXPECT_EQ(state->live_sessions[0].last_active, absl::InfinitePast());
    EXPECT_EQ(LastSeen(*state)[2], kT0 - absl::Hours(1));
    EXPECT_TRUE(state->statuses.empty());
    // And it takes the new kinds of change.
    SessionChange set{Kind::kSetStatus, 2, "", kT0, kT0};
    auto dnd = std::make_shared<StatusChoice>();
    dnd->availability = Availability::kDnd;
    set.status = dnd;
    SessionChange idle{Kind::kHeartbeat, 1, "tab", kT0 + absl::Seconds(1),
                       kT0 + absl::Seconds(1)};
    idle.last_active = kT0;
    ASSERT_TRUE(store->Commit({set, idle}).ok());
  }
  SQLite::Database db(path);
  EXPECT_EQ(db.execAndGet("SELECT version FROM schema_version").getInt(),
            SqlitePresenceStore::kSchemaVersion);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM user_status").getInt(), 1);
  EXPECT_EQ(db.execAndGet("SELECT last_active_us FROM sessions").getInt64(),
            absl::ToUnixMicros(kT0));
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

// A database deleted or replaced under a running server: commits would go to
// files nobody will read again. Each way of losing the files is noticed by
// Verify() and by the next Commit().
TEST(SqliteStoreTest, DeletedOrReplacedFilesAreNoticed) {
  const SessionChange beat{Kind::kHeartbeat, 1, "", kT0, kT0};
  struct Case {
    const char* name;
    std::vector<std::string> remove;  // suffixes of the path
    bool replace;                     // a fresh database moved over PATH
  };
  const Case cases[] = {
      {"all three files, as rm presence.db*", {"", "-wal", "-shm"}, false},
      {"the database file alone", {""}, false},
      {"the WAL alone", {"-wal"}, false},
      {"another database moved over it", {}, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    testing::TempDir dir;
    const std::string path = dir.File("p.db");
    auto store = OpenOrDie(path);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Commit({beat}).ok());
    ASSERT_TRUE(store->Verify().ok());
    for (const std::string& suffix : c.remove) {
      ASSERT_EQ(std::remove((path + suffix).c_str()), 0) << suffix;
    }
    if (c.replace) {
      const std::string other = dir.File("other.db");
      SQLite::Database(other, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE)
          .exec("CREATE TABLE t (x)");
      ASSERT_EQ(std::rename(other.c_str(), path.c_str()), 0);
    }
    const absl::Status verified = store->Verify();
    EXPECT_EQ(verified.code(), absl::StatusCode::kFailedPrecondition)
        << verified;
    EXPECT_NE(verified.message().find(path), std::string::npos) << verified;
    EXPECT_NE(verified.message().find("deleted or replaced"), std::string::npos)
        << verified;
    EXPECT_EQ(store->Commit({beat}).code(),
              absl::StatusCode::kFailedPrecondition);
  }
}

// Readers and writers of other programs come and go; the files stay the same.
TEST(SqliteStoreTest, AnotherConnectionDoesNotLookLikeADeletion) {
  testing::TempDir dir;
  const std::string path = dir.File("p.db");
  auto store = OpenOrDie(path);
  ASSERT_NE(store, nullptr);
  {
    SQLite::Database reader(path, SQLite::OPEN_READONLY);
    EXPECT_EQ(reader.execAndGet("SELECT COUNT(*) FROM sessions").getInt(), 0);
  }
  EXPECT_TRUE(store->Verify().ok());
  EXPECT_TRUE(store->Commit({{Kind::kHeartbeat, 1, "", kT0, kT0}}).ok());
}

}  // namespace
}  // namespace presence
