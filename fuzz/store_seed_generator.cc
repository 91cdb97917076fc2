// Writes the seed inputs of store_recovery_fuzzer (fuzz/corpus/
// store_recovery_fuzzer/) from databases the store itself writes. Run by
// fuzz/run.sh --regenerate-seeds; the output is committed.
//
//   store_seed_generator OUT_DIR

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "SQLiteCpp/Database.h"
#include "absl/strings/str_cat.h"
#include "fuzz/store_fixtures.h"

namespace presence::fuzz {
namespace {

std::string Input(Mode mode, uint8_t flags, const std::string& payload) {
  std::string input;
  input += static_cast<char>(mode);
  input += static_cast<char>(flags);
  return input + payload;
}

std::string U16(size_t v) {
  return std::string{static_cast<char>(v & 0xff),
                     static_cast<char>((v >> 8) & 0xff)};
}

std::string Patch(size_t offset, const std::string& bytes) {
  return U16(offset) + static_cast<char>(bytes.size()) + bytes;
}

// The checkpointed fixture, changed with SQL (the store would refuse to).
std::string Edited(const std::string& dir, const std::string& db,
                   const std::vector<std::string>& sql) {
  const std::string path = dir + "/edited.db";
  RemoveDatabaseFiles(path);
  WriteFileOrDie(path, db);
  {
    SQLite::Database edit(path, SQLite::OPEN_READWRITE);
    for (const std::string& statement : sql) edit.exec(statement);
  }
  std::string bytes = ReadFileOrDie(path);
  RemoveDatabaseFiles(path);
  return bytes;
}

// A payload for kStructured, byte by byte as BuildStructuredDatabase reads it.
struct Structured {
  std::string bytes;
  Structured& U8(int v) {
    bytes += static_cast<char>(v);
    return *this;
  }
  Structured& Int(int pool_index) { return U8(0).U8(pool_index); }
  Structured& Minutes(int offset) { return U8(2).U8(offset & 0xff); }
  Structured& Text(const std::string& s) {
    return U8(3).U8(static_cast<int>(s.size())).Raw(s);
  }
  Structured& Null() { return U8(7); }
  Structured& Raw(const std::string& s) {
    bytes += s;
    return *this;
  }
};
// Literal()'s integer pool: 0, 1, -1, 2, ...
constexpr int kOne = 1;
constexpr int kTwo = 3;

int Main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string out = argv[1];
  const std::string dir = MakeScratchDir();
  const DatabaseFiles store = MakeStoreDatabase(dir, Fixture::kCheckpointed);
  const DatabaseFiles wal = MakeStoreDatabase(dir, Fixture::kWithWal);
  const DatabaseFiles empty = MakeStoreDatabase(dir, Fixture::kEmpty);
  const uint8_t kLater = 1 << 1;      // start-up 3 min after the fixtures
  const uint8_t kMuchLater = 2 << 1;  // 1 h after: every session expired

  std::vector<std::pair<std::string, std::string>> seeds = {
      {"raw-store", Input(Mode::kRaw, 0, store.db)},
      {"raw-store-later-full-sync", Input(Mode::kRaw, kLater | 1, store.db)},
      {"raw-store-all-expired", Input(Mode::kRaw, kMuchLater, store.db)},
      {"raw-empty-store", Input(Mode::kRaw, 0, empty.db)},
      {"raw-zero-bytes", Input(Mode::kRaw, 0, "")},
      {"raw-not-a-database",
       Input(Mode::kRaw, 0,
             std::string("SQLite format 3\0", 16) + std::string(84, 'x'))},
      {"raw-newer-schema",
       Input(Mode::kRaw, 0,
             Edited(dir, store.db, {"UPDATE schema_version SET version = 2"}))},
      {"raw-foreign-database",
       Input(Mode::kRaw, 0,
             Edited(dir, empty.db,
                    {"DROP TABLE sessions", "DROP TABLE users",
                     "DROP TABLE schema_version",
                     "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
                     "INSERT INTO notes (body) VALUES ('hello')"}))},
      {"raw-rollback-journal",
       Input(Mode::kRaw, 0,
             Edited(dir, store.db, {"PRAGMA journal_mode = DELETE"}))},
      // The header's page size and page count.
      {"patch-header",
       Input(Mode::kPatch, 0,
             Patch(16, std::string("\x10\x00", 2)) +
                 Patch(28, std::string("\x00\x00\x00\x01", 4)))},
      // The first bytes of pages 2 and 3: b-tree page headers.
      {"patch-btree-pages",
       Input(Mode::kPatch, 0, Patch(512, "\x0d\xff") + Patch(1024, "\x05"))},
      {"truncate-to-two-pages", Input(Mode::kTruncateAppend, 0, U16(1024))},
      {"truncate-mid-page-append",
       Input(Mode::kTruncateAppend, 0, U16(1300) + std::string(40, '\xa5'))},
      {"wal-intact", Input(Mode::kWal, 0, U16(wal.wal.size()))},
      {"wal-torn-last-frame",
       Input(Mode::kWal, kLater, U16(wal.wal.size() - 100))},
      // A byte of the first frame's page: its checksum no longer matches.
      {"wal-patched-frame",
       Input(Mode::kWal, 0, U16(wal.wal.size()) + Patch(32 + 24 + 8, "\x01"))},
      {"structured-like-the-store",
       Input(Mode::kStructured, 0,
             Structured()
                 .U8(1 | (1 << 1))  // WAL; typed schema_version
                 .U8(1)
                 .Int(kOne)
                 .U8(0)  // sessions as the store makes them
                 .U8(2)
                 .Int(kOne)
                 .Text("phone")
                 .Minutes(0)
                 .Int(kTwo)
                 .Null()
                 .Minutes(-2)
                 .U8(0)  // users as the store makes them
                 .U8(1)
                 .Int(kTwo)
                 .Minutes(-30)
                 .bytes)},
      {"structured-newer-version",
       Input(Mode::kStructured, 0,
             Structured()
                 .U8(1 << 1)
                 .U8(1)
                 .Int(kTwo)
                 .U8(0)
                 .U8(0)
                 .U8(0)
                 .U8(0)
                 .bytes)},
      {"structured-text-timestamps", Input(Mode::kStructured, 0,
                                           Structured()
                                               .U8(1 << 1)
                                               .U8(1)
                                               .Int(kOne)  // schema version 1
                                               .U8(2)      // untyped sessions
                                               .U8(2)
                                               .Int(kOne)
                                               .Text("a")
                                               .Text("soon")
                                               .Int(kTwo)
                                               .Text("b")
                                               .Minutes(1)
                                               .U8(2)  // untyped users
                                               .U8(1)
                                               .Text("x")
                                               .Minutes(-5)
                                               .bytes)},
      {"structured-sessions-view",
       Input(Mode::kStructured, 0,
             Structured()
                 .U8(1 << 1)
                 .U8(1)
                 .Int(kOne)
                 .U8(4)
                 .Int(kOne)
                 .Text("v")
                 .Minutes(0)
                 .U8(0)
                 .U8(0)
                 .bytes)},
  };
  for (const auto& [name, bytes] : seeds) {
    WriteFileOrDie(absl::StrCat(out, "/", name), bytes);
  }
  rmdir(dir.c_str());
  std::printf("%zu seeds in %s\n", seeds.size(), out.c_str());
  return 0;
}

}  // namespace
}  // namespace presence::fuzz

int main(int argc, char** argv) { return presence::fuzz::Main(argc, argv); }
