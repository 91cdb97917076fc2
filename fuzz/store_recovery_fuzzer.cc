// SqlitePresenceStore's start-up on whatever file it finds: raw bytes, the
// store's own database with patched bytes, cut short or extended, its WAL
// torn or patched, or a database of odd schema and values built with SQL
// (store_fixtures.h describes the input layout).
//
// Each execution does what presenced does at start-up, then a commit and a
// restart: Open, Load(now - window), the loaded state put back into a
// PresenceRegistry, Load again, Commit, close, Open and Load again. It must
// never crash, hang or leak. Each step either fails cleanly (Open:
// UNAVAILABLE, DATA_LOSS or FAILED_PRECONDITION; Load and Commit: UNAVAILABLE
// or DATA_LOSS) or yields a state the registry serves consistently:
// GetPresence and ListOnline agree, last_seen is the latest time loaded,
// a second Load returns the same state.
//
// PRESENCE_FUZZ_STRICT=1 also requires the loaded rows to be ones presenced
// could have written (user_id > 0, a valid session_id, last_heartbeat after
// live_after, no duplicates), and a committed heartbeat to be loaded after
// the restart, for files SQLite's integrity_check finds sound. See
// fuzz/README.md for why this is not the default yet.

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "SQLiteCpp/Database.h"
#include "SQLiteCpp/Exception.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "fuzz/fuzz_check.h"
#include "fuzz/store_fixtures.h"
#include "service/clock.h"
#include "service/presence_event.h"
#include "service/presence_registry.h"
#include "service/presence_store.h"
#include "service/session_change.h"
#include "service/sqlite_presence_store.h"

namespace presence::fuzz {
namespace {

struct Scratch {
  std::string dir;
  std::string db;  // the database path of every execution
  DatabaseFiles checkpointed;
  DatabaseFiles with_wal;
};

Scratch* scratch = nullptr;

void RemoveScratch() {
  RemoveDatabaseFiles(scratch->db);
  unlink((scratch->db + ".lock").c_str());
  rmdir(scratch->dir.c_str());
}

const Scratch& GetScratch() {
  if (scratch == nullptr) {
    scratch = new Scratch;
    scratch->dir = MakeScratchDir();
    scratch->db = scratch->dir + "/presence.db";
    scratch->checkpointed =
        MakeStoreDatabase(scratch->dir, Fixture::kCheckpointed);
    scratch->with_wal = MakeStoreDatabase(scratch->dir, Fixture::kWithWal);
    std::atexit(RemoveScratch);
  }
  return *scratch;
}

bool Strict() {
  static const bool strict = [] {
    const char* value = std::getenv("PRESENCE_FUZZ_STRICT");
    return value != nullptr && *value != '\0' && std::strcmp(value, "0") != 0;
  }();
  return strict;
}

size_t U16(const uint8_t*& p, size_t& n) {
  if (n < 2) {
    n = 0;
    return 0;
  }
  const size_t v = p[0] | (size_t{p[1]} << 8);
  p += 2;
  n -= 2;
  return v;
}

// [offset: 2 bytes LE][length: 1 byte][bytes], repeated.
void ApplyPatches(std::string& bytes, const uint8_t* p, size_t n) {
  while (n >= 3) {
    const size_t offset = U16(p, n) % (bytes.size() + 1);
    const size_t length = std::min<size_t>(*p, n - 1);
    ++p;
    --n;
    if (offset + length > bytes.size()) bytes.resize(offset + length);
    std::memcpy(bytes.data() + offset, p, length);
    p += length;
    n -= length;
  }
}

void CheckError(const absl::Status& status,
                std::initializer_list<absl::StatusCode> allowed,
                const char* what) {
  FUZZ_CHECK(!status.ok());
  FUZZ_CHECK_MSG(
      std::find(allowed.begin(), allowed.end(), status.code()) != allowed.end(),
      absl::StrCat(what, ": ", status.ToString()));
  FUZZ_CHECK(!status.message().empty());
}

constexpr std::initializer_list<absl::StatusCode> kOpenErrors = {
    absl::StatusCode::kUnavailable, absl::StatusCode::kDataLoss,
    absl::StatusCode::kFailedPrecondition};
constexpr std::initializer_list<absl::StatusCode> kIoErrors = {
    absl::StatusCode::kUnavailable, absl::StatusCode::kDataLoss};

using Row = std::tuple<int64_t, std::string, absl::Time>;

// A state as sets, for comparing two loads.
std::pair<std::multiset<Row>, std::multiset<std::pair<int64_t, absl::Time>>>
Canonical(const StoredState& state) {
  std::multiset<Row> sessions;
  for (const StoredSession& s : state.live_sessions) {
    sessions.emplace(s.user_id, s.session_id, s.last_heartbeat);
  }
  std::multiset<std::pair<int64_t, absl::Time>> last_seen;
  for (const StoredLastSeen& u : state.last_seen) {
    last_seen.emplace(u.user_id, u.last_seen);
  }
  return {sessions, last_seen};
}

std::string Describe(const StoredState& state) {
  std::string out;
  for (const StoredSession& s : state.live_sessions) {
    absl::StrAppend(&out, "  session (", s.user_id, ", \"",
                    absl::CEscape(s.session_id), "\", ",
                    absl::ToUnixMicros(s.last_heartbeat), ")\n");
  }
  for (const StoredLastSeen& u : state.last_seen) {
    absl::StrAppend(&out, "  last_seen (", u.user_id, ", ",
                    absl::ToUnixMicros(u.last_seen), ")\n");
  }
  return out;
}

bool SessionIdValid(const std::string& id) {
  if (id.size() > 128) return false;
  for (unsigned char c : id) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

// Whether SQLite finds the file sound. Asked only once an invariant on the
// loaded data fails: a page that is corrupt in a way SQLite does not notice
// on the way (integrity_check does) yields whatever rows it holds, and a
// DELETE may miss some of them.
bool Intact(const std::string& path) {
  try {
    SQLite::Database db(path, SQLite::OPEN_READONLY);
    return db.execAndGet("PRAGMA integrity_check").getString() == "ok";
  } catch (const SQLite::Exception&) {
    return false;
  }
}

// The first loaded row presenced could not have written itself, or "".
std::string OddRow(const StoredState& state, absl::Time live_after) {
  std::set<std::pair<int64_t, std::string>> sessions;
  for (const StoredSession& s : state.live_sessions) {
    const std::string row = absl::StrCat(
        "session (", s.user_id, ", \"", absl::CEscape(s.session_id), "\", ",
        absl::FormatTime(s.last_heartbeat), ") loaded with live_after ",
        absl::FormatTime(live_after));
    if (s.user_id <= 0 || !SessionIdValid(s.session_id) ||
        s.last_heartbeat <= live_after) {
      return row;
    }
    if (!sessions.emplace(s.user_id, s.session_id).second) {
      return "duplicate " + row;
    }
  }
  std::set<int64_t> users;
  for (const StoredLastSeen& u : state.last_seen) {
    if (u.user_id <= 0) return absl::StrCat("last_seen of user ", u.user_id);
    if (!users.insert(u.user_id).second) {
      return absl::StrCat("last_seen of user ", u.user_id, " twice");
    }
  }
  return "";
}

// PRESENCE_FUZZ_STRICT only: loaded rows are ones presenced could have
// written, unless SQLite finds the file corrupt.
void CheckRows(const StoredState& state, absl::Time live_after,
               const std::string& path) {
  if (!Strict()) return;
  const std::string odd = OddRow(state, live_after);
  if (!odd.empty()) FUZZ_CHECK_MSG(!Intact(path), odd);
}

class CountingEvents : public EventSink {
 public:
  void Publish(const PresenceEvent& event) override {
    FUZZ_CHECK(!event.online);  // only expiries: no heartbeat here
    FUZZ_CHECK(online_.erase(event.user_id) == 1);
  }
  void SeedOnline(int64_t user_id) override {
    FUZZ_CHECK(online_.insert(user_id).second);
  }
  const std::set<int64_t>& online() const { return online_; }

 private:
  std::set<int64_t> online_;
};

// What presenced does with a loaded state (PresenceServer::Load), and what
// it then answers.
void CheckRestored(const StoredState& state, absl::Time now) {
  FakeClock clock(now);
  CountingEvents events;
  PresenceRegistry registry(clock, kWindow, /*changes=*/nullptr, &events);
  for (const StoredLastSeen& u : state.last_seen) {
    registry.RestoreLastSeen(u.user_id, u.last_seen);
  }
  for (const StoredSession& s : state.live_sessions) {
    registry.RestoreSession(s.user_id, s.session_id, s.last_heartbeat);
  }

  // Expected, from the rows: per user, the latest heartbeat per session and
  // the latest time seen.
  std::map<int64_t, std::map<std::string, absl::Time>> sessions;
  std::map<int64_t, absl::Time> last_seen;
  auto seen = [&](int64_t user, absl::Time t) {
    auto [it, inserted] = last_seen.emplace(user, t);
    if (!inserted) it->second = std::max(it->second, t);
  };
  for (const StoredLastSeen& u : state.last_seen) seen(u.user_id, u.last_seen);
  for (const StoredSession& s : state.live_sessions) {
    auto [it, inserted] =
        sessions[s.user_id].emplace(s.session_id, s.last_heartbeat);
    if (!inserted) it->second = std::max(it->second, s.last_heartbeat);
    seen(s.user_id, s.last_heartbeat);
  }

  std::vector<int64_t> ids;
  for (const auto& [id, t] : last_seen) ids.push_back(id);
  const PresenceLookup lookup = registry.GetPresence(ids);
  FUZZ_CHECK(lookup.users.size() == ids.size());
  std::set<int64_t> online;
  for (const UserPresenceInfo& info : lookup.users) {
    int live = 0;
    absl::Time end = absl::InfinitePast();
    for (const auto& [session, last] : sessions[info.user_id]) {
      if (now < last + kWindow) ++live;
      end = std::max(end, last + kWindow);
    }
    const std::string user = absl::StrCat("user ", info.user_id);
    FUZZ_CHECK_MSG(info.live_sessions == live,
                   absl::StrCat(user, ": ", info.live_sessions, " vs ", live));
    FUZZ_CHECK(info.online == (live > 0));
    if (info.online) {
      FUZZ_CHECK_MSG(info.online_until == end, user);
      FUZZ_CHECK(info.online_until > now);
      online.insert(info.user_id);
    }
    // The registry keeps "never" as the smallest time it can store.
    absl::Time expected_seen = last_seen[info.user_id];
    if (absl::ToUnixMicros(expected_seen) ==
        std::numeric_limits<int64_t>::min()) {
      expected_seen = absl::InfinitePast();
    }
    FUZZ_CHECK_MSG(
        info.last_seen == expected_seen,
        absl::StrCat(user, ": last_seen ", absl::FormatTime(info.last_seen),
                     " vs ", absl::FormatTime(expected_seen)));
  }
  // Restored users are online without an event, and only those.
  FUZZ_CHECK(events.online() == online);

  // Every page, from the start. A cursor starts after 0, so users with ids
  // <= 0 (which validation keeps out of every request, but a file may hold)
  // are counted in total_online and never listed.
  std::vector<int64_t> listed;
  int64_t total = -1;
  for (int64_t after = 0;;) {
    const OnlinePage page = registry.ListOnline({}, after, 3);
    if (total >= 0) FUZZ_CHECK(page.total_online == total);
    total = page.total_online;
    listed.insert(listed.end(), page.user_ids.begin(), page.user_ids.end());
    if (!page.has_more) break;
    FUZZ_CHECK(!page.user_ids.empty() && page.user_ids.back() > after);
    after = page.user_ids.back();
  }
  FUZZ_CHECK(total == static_cast<int64_t>(online.size()));
  std::vector<int64_t> positive(online.upper_bound(0), online.end());
  FUZZ_CHECK(listed == positive);

  // Nothing restored is due at now; all of it by the end of the window,
  // except heartbeats from the far future.
  FUZZ_CHECK(registry.SweepExpired() == 0);
  clock.Advance(kWindow);
  registry.SweepExpired();
  for (int64_t id : events.online()) {
    FUZZ_CHECK(registry.GetPresence({id}).users[0].online);
  }
}

void Recover(const std::string& path, uint8_t flags) {
  const absl::Time now = StartupTime(flags);
  const absl::Time live_after = now - kWindow;
  SqlitePresenceStore::Options options;
  options.path = path;
  options.sync_full = (flags & 1) != 0;

  absl::StatusOr<std::unique_ptr<SqlitePresenceStore>> store =
      SqlitePresenceStore::Open(options);
  if (!store.ok()) {
    CheckError(store.status(), kOpenErrors, "Open");
    return;
  }
  const absl::StatusOr<StoredState> state = (*store)->Load(live_after);
  if (!state.ok()) {
    CheckError(state.status(), kIoErrors, "Load");
    // presenced would stop here; trying again must not crash either.
    const absl::StatusOr<StoredState> again = (*store)->Load(live_after);
    if (!again.ok()) CheckError(again.status(), kIoErrors, "second Load");
    return;
  }
  CheckRows(*state, live_after, path);
  CheckRestored(*state, now);

  // What the first Load pruned is gone; the rest comes back unchanged.
  const absl::StatusOr<StoredState> again = (*store)->Load(live_after);
  if (again.ok()) {
    if (Canonical(*again) != Canonical(*state)) {
      FUZZ_CHECK_MSG(!Intact(path),
                     absl::StrCat("first Load:\n", Describe(*state),
                                  "second Load:\n", Describe(*again)));
    }
  } else {
    CheckError(again.status(), kIoErrors, "second Load");
  }

  // Serving: a commit on whatever was recovered, then a restart.
  using Kind = SessionChange::Kind;
  const std::vector<SessionChange> changes = {
      {Kind::kHeartbeat, 7, "fuzz", now, now},
      {Kind::kEndSession, 1, "phone", now, now},
      {Kind::kEndAllSessions, 5, "", now, now},
  };
  const absl::Status committed = (*store)->Commit(changes);
  if (!committed.ok()) CheckError(committed, kIoErrors, "Commit");
  store->reset();

  store = SqlitePresenceStore::Open(options);
  if (!store.ok()) {
    CheckError(store.status(), kOpenErrors, "Open after restart");
    return;
  }
  const absl::StatusOr<StoredState> reloaded = (*store)->Load(live_after);
  if (!reloaded.ok()) {
    CheckError(reloaded.status(), kIoErrors, "Load after restart");
    return;
  }
  CheckRows(*reloaded, live_after, path);
  CheckRestored(*reloaded, now);
  if (Strict() && committed.ok()) {
    // What was committed survives the restart.
    bool kept = false;
    for (const StoredSession& s : reloaded->live_sessions) {
      kept = kept || (s.user_id == 7 && s.session_id == "fuzz" &&
                      s.last_heartbeat == now);
    }
    if (!kept) {
      FUZZ_CHECK_MSG(!Intact(path),
                     absl::StrCat("committed heartbeat (7, \"fuzz\") lost:\n",
                                  Describe(*reloaded)));
    }
  }
}

}  // namespace
}  // namespace presence::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace presence::fuzz;
  if (size < 2) return 0;
  const Scratch& s = GetScratch();
  const auto mode = static_cast<Mode>(data[0] % kNumModes);
  const uint8_t flags = data[1];
  const uint8_t* payload = data + 2;
  size_t n = size - 2;

  RemoveDatabaseFiles(s.db);
  switch (mode) {
    case Mode::kRaw:
      WriteFileOrDie(s.db,
                     std::string(reinterpret_cast<const char*>(payload), n));
      break;
    case Mode::kPatch: {
      std::string bytes = s.checkpointed.db;
      ApplyPatches(bytes, payload, n);
      WriteFileOrDie(s.db, bytes);
      break;
    }
    case Mode::kTruncateAppend: {
      std::string bytes = s.checkpointed.db;
      bytes.resize(U16(payload, n) % (bytes.size() + 1));
      bytes.append(reinterpret_cast<const char*>(payload), n);
      WriteFileOrDie(s.db, bytes);
      break;
    }
    case Mode::kWal: {
      std::string wal = s.with_wal.wal;
      wal.resize(U16(payload, n) % (wal.size() + 1));
      ApplyPatches(wal, payload, n);
      WriteFileOrDie(s.db, s.with_wal.db);
      WriteFileOrDie(s.db + "-wal", wal);
      break;
    }
    case Mode::kStructured:
      BuildStructuredDatabase(s.db, payload, n);
      break;
  }
  Recover(s.db, flags);
  return 0;
}
