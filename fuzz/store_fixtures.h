#ifndef PRESENCE_FUZZ_STORE_FIXTURES_H_
#define PRESENCE_FUZZ_STORE_FIXTURES_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"

// What store_recovery_fuzzer and store_seed_generator share: scratch files,
// the databases the store itself writes, and the input layout.
namespace presence::fuzz {

// The time the fixture databases are written at.
inline const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);
inline constexpr absl::Duration kWindow = absl::Minutes(5);

// Input layout of store_recovery_fuzzer: byte 0 picks the mode, byte 1 holds
// flags (bit 0: synchronous=FULL; bits 1-2: the moment of start-up, see
// StartupTime), the rest is the mode's payload.
enum class Mode : uint8_t {
  // The payload is the database file.
  kRaw = 0,
  // The store's database (kCheckpointed) with patches: a sequence of
  // [offset: 2 bytes LE][length: 1 byte][bytes], offset modulo size + 1.
  kPatch = 1,
  // The store's database cut at [2 bytes LE] modulo size + 1, then the rest of
  // the payload appended (a torn or extended file).
  kTruncateAppend = 2,
  // The store's database with its last commits still in the WAL
  // (kWithWal): the WAL is cut at [2 bytes LE] modulo size + 1, then patched
  // as in kPatch.
  kWal = 3,
  // A database built with SQL from the payload (BuildStructuredDatabase):
  // odd schemas, schema versions and column types, which byte patches hardly
  // reach past SQLite's checks.
  kStructured = 4,
};
inline constexpr int kNumModes = 5;

// The moment presenced starts, from flags bits 1-2: around the fixtures'
// heartbeats, so that some sessions are live and some expired.
absl::Time StartupTime(uint8_t flags);

enum class Fixture {
  kCheckpointed,  // everything in the main file (as after a clean stop)
  kWithWal,       // the last commits still in PATH-wal (as after kill -9)
  kEmpty,         // a new store: schema only
};

struct DatabaseFiles {
  std::string db;
  std::string wal;  // empty if none
};

// A database written by SqlitePresenceStore (with 512-byte pages, to keep it
// small): live and expired sessions, ended users, odd but valid ids. `dir`
// must exist; the files are written there and read back. Deterministic.
DatabaseFiles MakeStoreDatabase(const std::string& dir, Fixture fixture);

// Builds a database at `path` from `data` (see kStructured). Never fails on
// any input; aborts only on a bug of its own.
void BuildStructuredDatabase(const std::string& path, const uint8_t* data,
                             size_t size);

// A fresh directory under $PRESENCE_FUZZ_TMPDIR, else /dev/shm (tmpfs: no
// disk writes at every execution), else $TMPDIR or /tmp.
std::string MakeScratchDir();
// PATH and SQLite's files beside it (-wal, -shm, -journal); not PATH.lock.
void RemoveDatabaseFiles(const std::string& path);
std::string ReadFileOrDie(const std::string& path);
void WriteFileOrDie(const std::string& path, const std::string& bytes);

}  // namespace presence::fuzz

#endif  // PRESENCE_FUZZ_STORE_FIXTURES_H_
