#include "service/sqlite_presence_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "SQLiteCpp/Exception.h"
#include "SQLiteCpp/Transaction.h"
#include "absl/strings/str_cat.h"

namespace presence {
namespace {

// Each entry migrates the schema from version i to i + 1. Append only: files
// in the field were made by the earlier entries.
constexpr const char* kMigrations[] = {
    // 0 -> 1
    R"sql(
      CREATE TABLE sessions (
        user_id INTEGER NOT NULL,
        session_id TEXT NOT NULL,
        last_heartbeat_us INTEGER NOT NULL,
        PRIMARY KEY (user_id, session_id)
      ) WITHOUT ROWID;
      -- last_seen of users whose sessions have all ended. A live session's
      -- last_heartbeat also counts towards its user's last_seen, so heartbeats
      -- touch only the sessions table.
      CREATE TABLE users (
        user_id INTEGER PRIMARY KEY,
        last_seen_us INTEGER NOT NULL
      );
    )sql",
    // 1 -> 2: rich presence. A session row from before has no activity
    // time: NULL reads as active at its last heartbeat.
    R"sql(
      ALTER TABLE sessions ADD COLUMN last_active_us INTEGER;
      -- What users chose (SetStatus): only users who chose something.
      -- NULL times: none (until changed, no cap); NULL text and emoji: no
      -- custom status.
      CREATE TABLE user_status (
        user_id INTEGER PRIMARY KEY,
        availability INTEGER NOT NULL,  -- 0 auto, 1 dnd, 2 invisible
        availability_until_us INTEGER,
        status_text TEXT,
        status_emoji TEXT,
        status_expires_us INTEGER,
        last_seen_cap_us INTEGER
      );
    )sql",
};
static_assert(std::size(kMigrations) == SqlitePresenceStore::kSchemaVersion,
              "one migration per schema version");

// SQLite says "disk I/O error" whatever failed; its extended code and the
// system's errno say more.
std::string IoErrorDetail(int extended_code, int system_error) {
  std::string what;
  switch (extended_code) {
    case SQLITE_IOERR_READ:
    case SQLITE_IOERR_SHORT_READ:
      what = "a read failed";
      break;
    case SQLITE_IOERR_WRITE:
      what = "a write failed";
      break;
    case SQLITE_IOERR_FSYNC:
    case SQLITE_IOERR_DIR_FSYNC:
      what = "a flush to disk failed";
      break;
    case SQLITE_IOERR_SHMOPEN:
    case SQLITE_IOERR_SHMSIZE:
    case SQLITE_IOERR_SHMMAP:
      what = "the -shm file beside the database could not be made";
      break;
    default:
      what = absl::StrCat("SQLite code ", extended_code);
  }
  if (system_error != 0) {
    absl::StrAppend(&what, ": ", std::strerror(system_error));
  }
  return absl::StrCat(" (", what,
                      "; check the disk, and that the file and its "
                      "filesystem are writable)");
}

// `db`: the connection, if there is one, for the system's errno.
absl::Status SqliteError(const SQLite::Exception& e, absl::string_view what,
                         sqlite3* db = nullptr) {
  const int code = e.getErrorCode() & 0xff;  // primary result code
  const int system_error = db != nullptr ? sqlite3_system_errno(db) : 0;
  std::string message = absl::StrCat(what, ": ", e.what());
  if (code == SQLITE_FULL || (code == SQLITE_IOERR && system_error == ENOSPC)) {
    // SQLite says "disk I/O error" when the disk fills while it sizes its
    // -shm file; either way, what to do is the same.
    return absl::UnavailableError(absl::StrCat(
        what, ": the disk is full (", e.what(),
        "); free space on the filesystem that holds the database"));
  }
  if (code == SQLITE_IOERR) {
    message += IoErrorDetail(e.getExtendedErrorCode(), system_error);
  }
  switch (code) {
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return absl::DataLossError(absl::StrCat(
          message,
          " (the file is not a presenced database or is corrupt; "
          "restore it from a backup or move it away to start empty)"));
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(
          absl::StrCat(message, " (another program holds a write lock on it)"));
    default:
      return absl::UnavailableError(message);
  }
}

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

// A nullable time column: NULL stands for an infinite time.
absl::Time OptionalTime(const SQLite::Column& column, absl::Time if_null) {
  return column.isNull() ? if_null : FromMicros(column.getInt64());
}
void BindOptionalTime(SQLite::Statement& statement, int index, absl::Time t) {
  if (t == absl::InfiniteFuture() || t == absl::InfinitePast()) {
    statement.bind(index);  // NULL
  } else {
    statement.bind(index, ToMicros(t));
  }
}

absl::Status Migrate(SQLite::Database& db) {
  SQLite::Transaction txn(db);
  db.exec(
      "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
  SQLite::Column stored =
      db.execAndGet("SELECT IFNULL(MAX(version), 0) FROM schema_version");
  // Read as 64 bits and checked: a damaged row (-1, 2^32 - 1, a REAL) must
  // not index the migrations out of range (found by fuzz/).
  const int64_t stored_version = stored.getInt64();
  if (stored.getType() != SQLITE_INTEGER || stored_version < 0) {
    return absl::DataLossError(
        absl::StrCat("database schema version '", stored.getString(),
                     "' is not a version presenced writes; the file is "
                     "damaged or not presenced's"));
  }
  if (stored_version > SqlitePresenceStore::kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "database schema version ", stored_version,
        " is newer than this presenced (", SqlitePresenceStore::kSchemaVersion,
        "); run a newer presenced"));
  }
  int version = static_cast<int>(stored_version);
  for (; version < SqlitePresenceStore::kSchemaVersion; ++version) {
    db.exec(kMigrations[version]);
  }
  db.exec("DELETE FROM schema_version");
  db.exec(absl::StrCat("INSERT INTO schema_version VALUES (", version, ")"));
  txn.commit();
  return absl::OkStatus();
}

}  // namespace

SqlitePresenceStore::LockFile::~LockFile() { close(fd_); }

SqlitePresenceStore::SqlitePresenceStore(std::string path,
                                         std::unique_ptr<LockFile> lock,
                                         std::unique_ptr<SQLite::Database> db,
                                         ino_t wal_inode)
    : path_(std::move(path)),
      wal_inode_(wal_inode),
      lock_(std::move(lock)),
      db_(std::move(db)),
      upsert_session_(*db_,
                      "INSERT INTO sessions (user_id, session_id, "
                      "last_heartbeat_us, last_active_us) VALUES (?1, ?2, ?3, "
                      "?4) ON CONFLICT (user_id, session_id) DO UPDATE SET "
                      "last_heartbeat_us = excluded.last_heartbeat_us, "
                      "last_active_us = excluded.last_active_us"),
      delete_session_(
          *db_, "DELETE FROM sessions WHERE user_id = ?1 AND session_id = ?2"),
      delete_user_sessions_(*db_, "DELETE FROM sessions WHERE user_id = ?1"),
      upsert_last_seen_(
          *db_,
          "INSERT INTO users (user_id, last_seen_us) "
          "VALUES (?1, ?2) ON CONFLICT (user_id) DO UPDATE SET "
          "last_seen_us = MAX(last_seen_us, excluded.last_seen_us)"),
      upsert_status_(*db_,
                     "INSERT OR REPLACE INTO user_status (user_id, "
                     "availability, availability_until_us, status_text, "
                     "status_emoji, status_expires_us, last_seen_cap_us) "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
      delete_status_(*db_, "DELETE FROM user_status WHERE user_id = ?1") {}

absl::StatusOr<std::unique_ptr<SqlitePresenceStore>> SqlitePresenceStore::Open(
    const Options& options) {
  const std::string lock_path = options.path + ".lock";
  const int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot open database ", options.path, ": cannot create its lock file ",
        lock_path, ": ", std::strerror(errno)));
  }
  auto lock = std::make_unique<LockFile>(fd);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "database ", options.path, " is in use by another presenced (",
        lock_path, " is locked)"));
  }

  std::unique_ptr<SQLite::Database> db;
  try {
    db = std::make_unique<SQLite::Database>(
        options.path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
  } catch (const SQLite::Exception& e) {
    return SqliteError(e, absl::StrCat("cannot open database ", options.path));
  }
  // SQLite silently falls back to read-only when the file cannot be opened
  // for writing; every commit would then fail.
  if (sqlite3_db_readonly(db->getHandle(), "main") == 1) {
    const int error = access(options.path.c_str(), W_OK) != 0 ? errno : 0;
    return absl::UnavailableError(absl::StrCat(
        "cannot open database ", options.path, " for writing",
        error != 0 ? absl::StrCat(": ", std::strerror(error)) : "",
        " (check the file's owner, mode and attributes (lsattr), and that its "
        "filesystem is not mounted read-only)"));
  }
  struct stat wal;
  try {
    // The first statement that reads the file: a file that is not a database
    // fails here, before anything is written to it.
    db->exec("PRAGMA journal_mode = WAL");
    db->exec(options.sync_full ? "PRAGMA synchronous = FULL"
                               : "PRAGMA synchronous = NORMAL");
    db->setBusyTimeout(
        static_cast<int>(absl::ToInt64Milliseconds(kBusyTimeout)));
    if (absl::Status s = Migrate(*db); !s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat("database ", options.path, ": ", s.message()));
    }
  } catch (const SQLite::Exception& e) {
    return SqliteError(e, absl::StrCat("cannot open database ", options.path),
                       db->getHandle());
  }
  // Migrate() wrote a transaction: the WAL file exists, and it stays while
  // this connection is open.
  const std::string wal_path = options.path + "-wal";
  if (stat(wal_path.c_str(), &wal) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot open database ", options.path, ": its WAL file ", wal_path,
        " is missing after the first write: ", std::strerror(errno)));
  }
  try {
    // Prepares the statements; `db` is the store's from here, and gone if
    // this throws.
    return std::unique_ptr<SqlitePresenceStore>(new SqlitePresenceStore(
        options.path, std::move(lock), std::move(db), wal.st_ino));
  } catch (const SQLite::Exception& e) {
    return SqliteError(e, absl::StrCat("cannot open database ", options.path));
  }
}

absl::StatusOr<StoredState> SqlitePresenceStore::Load(absl::Time live_after) {
  try {
    StoredState state;
    SQLite::Transaction txn(*db_);
    // Sessions that expired while presenced was down still count for their
    // user's last_seen; fold them in before deleting them.
    SQLite::Statement fold(
        *db_,
        "INSERT INTO users (user_id, last_seen_us) "
        "SELECT user_id, MAX(last_heartbeat_us) FROM sessions "
        "WHERE last_heartbeat_us <= ?1 GROUP BY user_id "
        "ON CONFLICT (user_id) DO UPDATE SET "
        "last_seen_us = MAX(last_seen_us, excluded.last_seen_us)");
    fold.bind(1, ToMicros(live_after));
    fold.exec();
    SQLite::Statement prune(
        *db_, "DELETE FROM sessions WHERE last_heartbeat_us <= ?1");
    prune.bind(1, ToMicros(live_after));
    prune.exec();

    SQLite::Statement sessions(*db_,
                               "SELECT user_id, session_id, last_heartbeat_us, "
                               "last_active_us FROM sessions");
    while (sessions.executeStep()) {
      state.live_sessions.push_back(StoredSession{
          sessions.getColumn(0).getInt64(), sessions.getColumn(1).getString(),
          FromMicros(sessions.getColumn(2).getInt64()),
          OptionalTime(sessions.getColumn(3), absl::InfinitePast())});
    }
    SQLite::Statement statuses(
        *db_,
        "SELECT user_id, availability, availability_until_us, status_text, "
        "status_emoji, status_expires_us, last_seen_cap_us FROM user_status");
    while (statuses.executeStep()) {
      StatusChoice choice;
      const int64_t availability = statuses.getColumn(1).getInt64();
      // A value this presenced does not know (a damaged row) is AUTO.
      if (availability == static_cast<int>(Availability::kDnd) ||
          availability == static_cast<int>(Availability::kInvisible)) {
        choice.availability = static_cast<Availability>(availability);
        choice.availability_until =
            OptionalTime(statuses.getColumn(2), absl::InfiniteFuture());
      }
      if (!statuses.getColumn(3).isNull() || !statuses.getColumn(4).isNull()) {
        choice.custom = CustomStatus{
            statuses.getColumn(3).getString(),
            statuses.getColumn(4).getString(),
            OptionalTime(statuses.getColumn(5), absl::InfiniteFuture())};
      }
      // INT64_MIN: capped at "never seen" (invisible before ever seen).
      const SQLite::Column cap = statuses.getColumn(6);
      choice.last_seen_cap =
          !cap.isNull() && cap.getInt64() == std::numeric_limits<int64_t>::min()
              ? absl::InfinitePast()
              : OptionalTime(cap, absl::InfiniteFuture());
      state.statuses.push_back(
          StoredStatus{statuses.getColumn(0).getInt64(), std::move(choice)});
    }
    SQLite::Statement users(*db_, "SELECT user_id, last_seen_us FROM users");
    while (users.executeStep()) {
      state.last_seen.push_back(
          StoredLastSeen{users.getColumn(0).getInt64(),
                         FromMicros(users.getColumn(1).getInt64())});
    }
    txn.commit();
    return state;
  } catch (const SQLite::Exception& e) {
    return SqliteError(e,
                       absl::StrCat("cannot load presence state from ", path_),
                       db_->getHandle());
  }
}

absl::Status SqlitePresenceStore::Verify() {
  int moved = 0;
  // SQLite's unix VFS compares the inode it opened with what PATH names now.
  if (sqlite3_file_control(db_->getHandle(), "main", SQLITE_FCNTL_HAS_MOVED,
                           &moved) != SQLITE_OK) {
    moved = 0;  // a VFS without the check: nothing to say
  }
  std::string what = path_;
  if (moved == 0) {
    struct stat wal;
    what = path_ + "-wal";
    moved = stat(what.c_str(), &wal) != 0 || wal.st_ino != wal_inode_;
  }
  if (moved == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "the database file ", what,
      " was deleted or replaced while presenced was running, so nothing "
      "committed now would survive a restart (restore the files from a "
      "backup, or restart presenced to begin again from what ",
      path_, " holds)"));
}

void SqlitePresenceStore::CommitStatus(const SessionChange& c) {
  if (c.status == nullptr || c.status->empty()) {
    delete_status_.reset();
    delete_status_.bind(1, c.user_id);
    delete_status_.exec();
    return;
  }
  const StatusChoice& s = *c.status;
  upsert_status_.reset();
  upsert_status_.bind(1, c.user_id);
  upsert_status_.bind(2, static_cast<int>(s.availability));
  BindOptionalTime(upsert_status_, 3, s.availability_until);
  if (s.custom.has_value()) {
    upsert_status_.bindNoCopy(4, s.custom->text);
    upsert_status_.bindNoCopy(5, s.custom->emoji);
    BindOptionalTime(upsert_status_, 6, s.custom->expires_at);
  } else {
    upsert_status_.bind(4);
    upsert_status_.bind(5);
    upsert_status_.bind(6);
  }
  if (s.last_seen_cap == absl::InfinitePast()) {
    upsert_status_.bind(7, std::numeric_limits<int64_t>::min());
  } else {
    BindOptionalTime(upsert_status_, 7, s.last_seen_cap);
  }
  upsert_status_.exec();
}

absl::Status SqlitePresenceStore::Commit(
    absl::Span<const SessionChange> changes) {
  // Before the transaction, and after it: a commit into a file deleted
  // meanwhile is not durable either.
  if (absl::Status s = Verify(); !s.ok()) return s;
  try {
    // A failed commit is rolled back by SQLite or by ~Transaction. Should a
    // transaction still be open, every BEGIN would fail from now on, and the
    // writer's retries would never succeed once the fault is gone.
    if (sqlite3_get_autocommit(db_->getHandle()) == 0) db_->exec("ROLLBACK");
    SQLite::Transaction txn(*db_);
    for (const SessionChange& c : changes) {
      switch (c.kind) {
        case SessionChange::Kind::kHeartbeat:
          upsert_session_.reset();
          upsert_session_.bind(1, c.user_id);
          upsert_session_.bindNoCopy(2, c.session_id);
          upsert_session_.bind(3, ToMicros(c.at));
          BindOptionalTime(upsert_session_, 4, c.last_active);
          upsert_session_.exec();
          continue;
        case SessionChange::Kind::kSetStatus:
          CommitStatus(c);
          continue;
        case SessionChange::Kind::kEndSession:
          delete_session_.reset();
          delete_session_.bind(1, c.user_id);
          delete_session_.bindNoCopy(2, c.session_id);
          delete_session_.exec();
          break;
        case SessionChange::Kind::kEndAllSessions:
          delete_user_sessions_.reset();
          delete_user_sessions_.bind(1, c.user_id);
          delete_user_sessions_.exec();
          break;
      }
      // The ended sessions' heartbeats no longer carry last_seen: the users
      // row must.
      upsert_last_seen_.reset();
      upsert_last_seen_.bind(1, c.user_id);
      upsert_last_seen_.bind(2, ToMicros(c.last_seen));
      upsert_last_seen_.exec();
    }
    txn.commit();
  } catch (const SQLite::Exception& e) {
    return SqliteError(e, "cannot commit presence changes", db_->getHandle());
  }
  return Verify();
}

}  // namespace presence
