#ifndef PRESENCE_SERVICE_SQLITE_PRESENCE_STORE_H_
#define PRESENCE_SERVICE_SQLITE_PRESENCE_STORE_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "SQLiteCpp/Database.h"
#include "SQLiteCpp/Statement.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/presence_store.h"

namespace presence {

// PresenceStore on one SQLite file in WAL mode. The schema carries a version
// number; Open() migrates older files (including a new, empty file) and
// refuses newer ones. A lock file beside the database (PATH.lock) keeps a
// second presenced off the same database.
class SqlitePresenceStore : public PresenceStore {
 public:
  static constexpr int kSchemaVersion = 2;
  // How long a commit waits for another program's write lock before it fails
  // (and is retried by the StoreWriter). In WAL mode readers never block a
  // commit, so only a foreign writer or a checkpoint by hand can. Short, so
  // that the calls waiting on a blocked commit are answered UNAVAILABLE
  // well within a client's deadline (5 s by default), not DEADLINE_EXCEEDED.
  static constexpr absl::Duration kBusyTimeout = absl::Seconds(1);

  struct Options {
    std::string path;
    // synchronous=FULL: a commit survives power loss, not only a crash of
    // presenced (which synchronous=NORMAL already survives in WAL mode).
    bool sync_full = true;
  };

  // Errors: UNAVAILABLE if the file cannot be opened or created, cannot be
  // written, or is locked by another presenced, DATA_LOSS if it is not a
  // SQLite database or is corrupt, FAILED_PRECONDITION if its schema is newer
  // than this binary's. Each names the file.
  static absl::StatusOr<std::unique_ptr<SqlitePresenceStore>> Open(
      const Options& options);

  SqlitePresenceStore(const SqlitePresenceStore&) = delete;
  SqlitePresenceStore& operator=(const SqlitePresenceStore&) = delete;

  // DATA_LOSS if the file turns out to be corrupt, else UNAVAILABLE with
  // SQLite's reason: "database or disk is full", "database is locked" (after
  // kBusyTimeout), "disk I/O error" with the operation that failed. The
  // store stays usable after an error, so a retry succeeds once the fault is
  // gone.
  absl::StatusOr<StoredState> Load(absl::Time live_after) override;
  // Also FAILED_PRECONDITION, before or after the transaction, if the
  // database file or its WAL was deleted or replaced: see Verify().
  absl::Status Commit(absl::Span<const SessionChange> changes) override;
  // FAILED_PRECONDITION if PATH or PATH-wal no longer names the file this
  // store has open (deleted, or another file moved over it): commits would
  // go to files that nobody will ever read again.
  absl::Status Verify() override;

 private:
  // Holds an exclusive flock(2) on PATH.lock for the store's lifetime. A
  // separate file, because closing any descriptor of the database file itself
  // would drop SQLite's own POSIX locks.
  class LockFile {
   public:
    explicit LockFile(int fd) : fd_(fd) {}
    ~LockFile();
    LockFile(const LockFile&) = delete;
    LockFile& operator=(const LockFile&) = delete;

   private:
    const int fd_;
  };

  SqlitePresenceStore(std::string path, std::unique_ptr<LockFile> lock,
                      std::unique_ptr<SQLite::Database> db, ino_t wal_inode);

  const std::string path_;
  // The inode of PATH-wal, opened with the database. SQLite keeps no record of
  // it (SQLITE_FCNTL_HAS_MOVED knows only the main file), so Verify() compares
  // it itself.
  const ino_t wal_inode_;
  // Declared before db_, destroyed after it: the lock outlives the connection.
  const std::unique_ptr<LockFile> lock_;
  const std::unique_ptr<SQLite::Database> db_;
  // kSetStatus: the user's row in user_status, or none.
  void CommitStatus(const SessionChange& change);

  SQLite::Statement upsert_session_;
  SQLite::Statement delete_session_;
  SQLite::Statement delete_user_sessions_;
  SQLite::Statement upsert_last_seen_;
  SQLite::Statement upsert_status_;
  SQLite::Statement delete_status_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_SQLITE_PRESENCE_STORE_H_
