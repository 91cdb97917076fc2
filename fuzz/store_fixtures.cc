#include "fuzz/store_fixtures.h"

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <vector>

#include "SQLiteCpp/Database.h"
#include "SQLiteCpp/Exception.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "fuzz/fuzz_check.h"
#include "service/session_change.h"
#include "service/sqlite_presence_store.h"

namespace presence::fuzz {
namespace {

constexpr int64_t kMaxInt64 = std::numeric_limits<int64_t>::max();
constexpr int64_t kMinInt64 = std::numeric_limits<int64_t>::min();

int64_t Micros(absl::Time t) { return absl::ToUnixMicros(t); }

// Reads the payload front to back; zeros once it is used up. Simpler to
// write seeds for than FuzzedDataProvider, which takes integers from the end.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint8_t U8() {
    if (size_ == 0) return 0;
    --size_;
    return *data_++;
  }
  int64_t I64() {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{U8()} << (8 * i);
    return static_cast<int64_t>(v);
  }
  std::string Bytes(size_t max) {
    const size_t n = std::min<size_t>(U8() % (max + 1), size_);
    std::string out(reinterpret_cast<const char*>(data_), n);
    data_ += n;
    size_ -= n;
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
};

// A value of any storage class, as an SQL literal.
std::string Literal(Reader& in) {
  static constexpr int64_t kInts[] = {0,
                                      1,
                                      -1,
                                      2,
                                      kMaxInt64,
                                      kMinInt64,
                                      int64_t{1} << 32,
                                      (int64_t{1} << 32) - 1};
  static constexpr const char* kReals[] = {"0.5",    "-1.0",   "1e300",
                                           "9.3e18", "1.8e15", "-0.0"};
  switch (in.U8() % 8) {
    case 0:
      return absl::StrCat(kInts[in.U8() % std::size(kInts)]);
    case 1:
      return absl::StrCat(in.I64());
    case 2:
      // Minutes around the fixtures' time: live or expired at start-up.
      return absl::StrCat(
          Micros(kT0 + absl::Minutes(static_cast<int8_t>(in.U8()))));
    case 3: {
      std::string text = in.Bytes(24);
      for (char& c : text) {
        if (c == '\0') c = '?';
      }
      std::string quoted;
      for (char c : text) {
        quoted += c;
        if (c == '\'') quoted += '\'';
      }
      return absl::StrCat("'", quoted, "'");
    }
    case 4:
      // Text that looks like a number: stored as one in an INTEGER column.
      return absl::StrCat("'", Micros(kT0) + in.U8(), "'");
    case 5:
      return kReals[in.U8() % std::size(kReals)];
    case 6:
      return absl::StrCat("X'", absl::BytesToHexString(in.Bytes(8)), "'");
    default:
      return "NULL";
  }
}

}  // namespace

absl::Time StartupTime(uint8_t flags) {
  static const absl::Duration kOffsets[] = {
      absl::ZeroDuration(), absl::Minutes(3), absl::Hours(1), -absl::Hours(1)};
  return kT0 + kOffsets[(flags >> 1) & 3];
}

DatabaseFiles MakeStoreDatabase(const std::string& dir, Fixture fixture) {
  // The WAL's salts are random: seeded, the fixtures are the same bytes in
  // every process, so that an input found once does the same again.
  sqlite3_test_control(SQLITE_TESTCTRL_PRNG_SEED, 20261128, nullptr);
  const std::string path = absl::StrCat(dir, "/fixture.db");
  RemoveDatabaseFiles(path);
  {
    // The page size must be set before the file's first write.
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA page_size = 512");
    db.exec("PRAGMA journal_mode = WAL");
  }
  auto store = SqlitePresenceStore::Open({path, /*sync_full=*/false});
  FUZZ_CHECK_MSG(store.ok(), store.status().ToString());
  using Kind = SessionChange::Kind;
  const std::string long_id(128, '~');
  const std::vector<SessionChange> changes = {
      {Kind::kHeartbeat, 1, "", kT0 - absl::Minutes(1), kT0 - absl::Minutes(1)},
      {Kind::kHeartbeat, 1, "phone", kT0 - absl::Minutes(10),
       kT0 - absl::Minutes(1)},
      {Kind::kHeartbeat, 2, "tab-7f3a", kT0 - absl::Minutes(2),
       kT0 - absl::Minutes(2)},
      {Kind::kHeartbeat, 3, long_id, kT0, kT0},
      {Kind::kHeartbeat, kMaxInt64, "x", kT0 - absl::Minutes(4),
       kT0 - absl::Minutes(4)},
      {Kind::kHeartbeat, 4, "b", kT0 - absl::Minutes(30),
       kT0 - absl::Minutes(30)},
      {Kind::kHeartbeat, 5, "", kT0 - absl::Minutes(20),
       kT0 - absl::Minutes(20)},
  };
  const std::vector<SessionChange> later = {
      {Kind::kEndSession, 1, "phone", kT0 - absl::Minutes(9),
       kT0 - absl::Minutes(1)},
      {Kind::kEndAllSessions, 5, "", kT0 - absl::Minutes(19),
       kT0 - absl::Minutes(19)},
      {Kind::kHeartbeat, 2, "tab-7f3a", kT0 + absl::Minutes(1),
       kT0 + absl::Minutes(1)},
  };
  if (fixture != Fixture::kEmpty) {
    absl::Status status = (*store)->Commit(changes);
    FUZZ_CHECK_MSG(status.ok(), status.ToString());
    status = (*store)->Commit(later);
    FUZZ_CHECK_MSG(status.ok(), status.ToString());
  }
  DatabaseFiles files;
  if (fixture == Fixture::kWithWal) {
    // Copied while the store is open: its commits are in the WAL only.
    files.db = ReadFileOrDie(path);
    files.wal = ReadFileOrDie(path + "-wal");
    FUZZ_CHECK(!files.wal.empty());
  } else {
    store->reset();  // the last connection's close checkpoints the WAL
    files.db = ReadFileOrDie(path);
  }
  store->reset();
  RemoveDatabaseFiles(path);
  unlink((path + ".lock").c_str());
  return files;
}

void BuildStructuredDatabase(const std::string& path, const uint8_t* data,
                             size_t size) {
  Reader in(data, size);
  std::vector<std::string> sql = {"PRAGMA page_size = 512"};
  const uint8_t layout = in.U8();
  if (layout & 1) sql.push_back("PRAGMA journal_mode = WAL");

  // schema_version: none, typed, untyped, or a view.
  const int version_kind = (layout >> 1) & 3;
  if (version_kind == 1) {
    sql.push_back("CREATE TABLE schema_version (version INTEGER NOT NULL)");
  } else if (version_kind == 2) {
    sql.push_back("CREATE TABLE schema_version (version)");
  }
  const int versions = in.U8() % 4;
  for (int i = 0; i < versions; ++i) {
    const std::string value = Literal(in);
    if (version_kind == 1 || version_kind == 2) {
      sql.push_back(absl::StrCat(
          "INSERT OR IGNORE INTO schema_version VALUES (", value, ")"));
    } else if (version_kind == 3 && i == 0) {
      sql.push_back(absl::StrCat("CREATE VIEW schema_version AS SELECT ", value,
                                 " AS version"));
    }
  }

  // sessions: the real table, or one of the shapes a hand-edited or foreign
  // file may have.
  const int sessions_kind = in.U8() % 7;
  int session_columns = 3;
  std::string insert_sessions = "INSERT OR IGNORE INTO sessions VALUES";
  switch (sessions_kind) {
    case 0:
      sql.push_back(
          "CREATE TABLE sessions (user_id INTEGER NOT NULL, session_id TEXT "
          "NOT NULL, last_heartbeat_us INTEGER NOT NULL, PRIMARY KEY "
          "(user_id, session_id)) WITHOUT ROWID");
      break;
    case 1:
      sql.push_back(
          "CREATE TABLE sessions (user_id INTEGER, session_id TEXT, "
          "last_heartbeat_us INTEGER)");
      break;
    case 2:
      sql.push_back(
          "CREATE TABLE sessions (user_id, session_id, last_heartbeat_us, "
          "PRIMARY KEY (user_id, session_id))");
      break;
    case 3:
      sql.push_back(
          "CREATE TABLE sessions (user_id INTEGER, session_id TEXT, "
          "PRIMARY KEY (user_id, session_id))");
      session_columns = 2;
      break;
    case 4:
      sql.push_back(absl::StrCat("CREATE VIEW sessions AS SELECT ", Literal(in),
                                 " AS user_id, ", Literal(in),
                                 " AS session_id, ", Literal(in),
                                 " AS last_heartbeat_us"));
      session_columns = 0;
      break;
    case 5:
      session_columns = 0;
      break;
    default:
      sql.push_back(
          "CREATE TABLE sessions (session_id TEXT NOT NULL, extra TEXT NOT "
          "NULL DEFAULT 'x', last_heartbeat_us INTEGER NOT NULL, user_id "
          "INTEGER NOT NULL, PRIMARY KEY (user_id, session_id))");
      insert_sessions =
          "INSERT OR IGNORE INTO sessions (user_id, session_id, "
          "last_heartbeat_us) VALUES";
      break;
  }
  const int session_rows = in.U8() % 9;
  for (int i = 0; i < session_rows && session_columns > 0; ++i) {
    std::string row = absl::StrCat(insert_sessions, " (", Literal(in));
    for (int c = 1; c < session_columns; ++c) {
      absl::StrAppend(&row, ", ", Literal(in));
    }
    sql.push_back(row + ")");
  }

  const int users_kind = in.U8() % 5;
  bool users_table = true;
  switch (users_kind) {
    case 0:
      sql.push_back(
          "CREATE TABLE users (user_id INTEGER PRIMARY KEY, last_seen_us "
          "INTEGER NOT NULL)");
      break;
    case 1:
      sql.push_back(
          "CREATE TABLE users (user_id INTEGER, last_seen_us INTEGER)");
      break;
    case 2:
      sql.push_back("CREATE TABLE users (user_id PRIMARY KEY, last_seen_us)");
      break;
    case 3:
      sql.push_back(absl::StrCat("CREATE VIEW users AS SELECT ", Literal(in),
                                 " AS user_id, ", Literal(in),
                                 " AS last_seen_us"));
      users_table = false;
      break;
    default:
      users_table = false;
      break;
  }
  const int user_rows = in.U8() % 9;
  for (int i = 0; i < user_rows && users_table; ++i) {
    sql.push_back(absl::StrCat("INSERT OR IGNORE INTO users VALUES (",
                               Literal(in), ", ", Literal(in), ")"));
  }

  SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  for (const std::string& statement : sql) {
    try {
      db.exec(statement);
    } catch (const SQLite::Exception& e) {
      // An INTEGER PRIMARY KEY refuses a non-integer value even with OR
      // IGNORE ("datatype mismatch"); the row is simply not there.
      FUZZ_CHECK_MSG(e.getErrorCode() == SQLITE_MISMATCH,
                     absl::StrCat(statement, ": ", e.what()));
    }
  }
}

std::string MakeScratchDir() {
  std::string base;
  if (const char* dir = std::getenv("PRESENCE_FUZZ_TMPDIR"); dir && *dir) {
    base = dir;
  } else if (access("/dev/shm", W_OK) == 0) {
    base = "/dev/shm";
  } else if (const char* tmp = std::getenv("TMPDIR"); tmp && *tmp) {
    base = tmp;
  } else {
    base = "/tmp";
  }
  std::string dir = base + "/presence-fuzz-XXXXXX";
  FUZZ_CHECK_MSG(mkdtemp(dir.data()) != nullptr,
                 absl::StrCat(dir, ": ", std::strerror(errno)));
  return dir;
}

void RemoveDatabaseFiles(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    unlink((path + suffix).c_str());
  }
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  FUZZ_CHECK_MSG(in.good(), path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFileOrDie(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  FUZZ_CHECK_MSG(out.good(), path);
}

}  // namespace presence::fuzz
