#ifndef PRESENCE_SERVICE_USER_TABLE_H_
#define PRESENCE_SERVICE_USER_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

namespace presence {

// The registry's storage of users, laid out for millions of them: what it
// costs per user is most of presenced's memory (docs/performance.md).
//
// Times are int64 microseconds since the epoch (8 bytes where absl::Time
// takes 16; the API's Timestamps carry microseconds too).
inline constexpr int64_t kNeverUs = std::numeric_limits<int64_t>::min();
inline constexpr int64_t kNoEntryUs = std::numeric_limits<int64_t>::max();

// A session id in one pointer: null for the default (empty) session, else a
// heap block holding a 2-byte length and the bytes.
class SessionId {
 public:
  SessionId() = default;
  explicit SessionId(absl::string_view id);
  absl::string_view view() const { return View(data_.get()); }

  // The block, for a UserState that keeps it as a raw pointer.
  char* release() { return data_.release(); }
  static SessionId Adopt(char* block);
  static absl::string_view View(const char* block);

 private:
  std::unique_ptr<char[]> data_;
};

struct Session {
  SessionId id;
  int64_t last_heartbeat_us;
  // The latest heartbeat that did not say idle (rich presence: the user is
  // AWAY once every live session's is --away_after old). At most
  // last_heartbeat_us.
  int64_t last_active_us;
};
// Most users have one session; a handful is the upper end in practice.
using SessionList = absl::InlinedVector<Session, 1>;

// One user in 48 bytes. A user with one session (nearly everyone) keeps it
// inline: its heartbeat and last activity, and its id as a pointer (null for
// the default session). Two or more sessions live in a heap block. The
// pointer's low 4 bits hold the flags: heap blocks are aligned to 16 bytes
// (the default new alignment, asserted).
//
// Sessions are edited by taking them out as a SessionList and putting them
// back (no allocation for one session; a block is reused while the user keeps
// two or more).
class UserState {
 public:
  explicit UserState(int64_t id = 0) : id_(id) {}
  ~UserState();
  UserState(const UserState&) = delete;
  UserState& operator=(const UserState&) = delete;

  int64_t id() const { return id_; }

  int64_t last_seen_us = kNeverUs;
  // The time of the user's live expiry index entry (kNoEntryUs: none).
  // Entries with another time are stale and skipped when they come due.
  int64_t indexed_until_us = kNoEntryUs;

  // What watchers were last told of the user (rich presence): 0 offline,
  // else online, with 2 away and 3 do-not-disturb (PublicStatus's values).
  int announced_status() const { return static_cast<int>(word_ & kStatusBits); }
  void set_announced_status(int status) {
    word_ =
        (word_ & ~kStatusBits) | (static_cast<uintptr_t>(status) & kStatusBits);
  }
  bool announced_online() const { return announced_status() != 0; }
  // The user has rich state (availability, custom status) in the shard's
  // side table: most users have none, and pay nothing for it here.
  bool has_rich() const { return (word_ & kRichBit) != 0; }
  void set_has_rich(bool rich) {
    word_ = rich ? word_ | kRichBit : word_ & ~kRichBit;
  }

  size_t session_count() const;
  // The latest heartbeat of any session; kNeverUs without sessions.
  int64_t LatestHeartbeatUs() const;
  // Calls f(const Session-like view) per session: f(absl::string_view id,
  // int64_t last_heartbeat_us, int64_t last_active_us).
  template <typename F>
  void ForEachSession(F&& f) const {
    if (multi()) {
      for (const Session& s : *list()) {
        f(s.id.view(), s.last_heartbeat_us, s.last_active_us);
      }
    } else if (hb_us_ != kNeverUs) {
      f(SessionId::View(single_id()), hb_us_, active_us_);
    }
  }

  // Moves the sessions out (the user then has none until PutSessions).
  SessionList TakeSessions();
  void PutSessions(SessionList sessions);
  void ClearSessions() { PutSessions({}); }

 private:
  static constexpr uintptr_t kStatusBits = 3;
  static constexpr uintptr_t kMultiBit = 4;
  static constexpr uintptr_t kRichBit = 8;
  static constexpr uintptr_t kFlags = kStatusBits | kMultiBit | kRichBit;

  bool multi() const { return (word_ & kMultiBit) != 0; }
  char* single_id() const { return reinterpret_cast<char*>(word_ & ~kFlags); }
  SessionList* list() const {
    return reinterpret_cast<SessionList*>(word_ & ~kFlags);
  }
  void SetPointer(const void* p, bool multi);

  friend class UserTable;  // numbers the records of a chunk
  int64_t id_;
  // The one session's heartbeat (kNeverUs: no session); unused when multi.
  int64_t hb_us_ = kNeverUs;
  int64_t active_us_ = kNeverUs;  // the one session's last activity
  uintptr_t word_ = 0;            // pointer (session id or SessionList) | flags
};

// Users by id, for one registry shard. Records are never removed (a user
// seen once keeps their last_seen) and never move: they sit in fixed chunks,
// so growing costs one chunk at a time instead of a copy of everything, and
// the id index holds only a 4-byte record number per user. Not thread-safe:
// the shard's lock guards it.
class UserTable {
 public:
  UserTable() : index_(0, IndexHash{this}, IndexEq{this}) {}
  UserTable(const UserTable&) = delete;
  UserTable& operator=(const UserTable&) = delete;

  // The user's record, or null; with `record`, its number too.
  UserState* Find(int64_t id, uint32_t* record = nullptr);
  const UserState* Find(int64_t id) const;
  // The user's record, added (with nothing known of them) if new.
  UserState& FindOrAdd(int64_t id, uint32_t* record = nullptr);
  // A record by number (as Find gave it): no hashing.
  UserState& At(uint32_t record) {
    return chunks_[record / kChunk][record % kChunk];
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint32_t kChunk = 256;
  struct IdKey {
    int64_t id;
  };
  // The index stores record numbers and hashes them by their user's id, so
  // it can be searched by id (heterogeneous lookup).
  struct IndexHash {
    using is_transparent = void;
    size_t operator()(uint32_t record) const {
      return absl::Hash<int64_t>{}(table->At(record).id());
    }
    size_t operator()(IdKey key) const { return absl::Hash<int64_t>{}(key.id); }
    const UserTable* table;
  };
  struct IndexEq {
    using is_transparent = void;
    bool operator()(uint32_t a, uint32_t b) const { return a == b; }
    bool operator()(uint32_t record, IdKey key) const {
      return table->At(record).id() == key.id;
    }
    bool operator()(IdKey key, uint32_t record) const {
      return (*this)(record, key);
    }
    const UserTable* table;
  };

  const UserState& At(uint32_t record) const {
    return chunks_[record / kChunk][record % kChunk];
  }

  std::vector<std::unique_ptr<UserState[]>> chunks_;
  size_t size_ = 0;
  absl::flat_hash_set<uint32_t, IndexHash, IndexEq> index_;
};

}  // namespace presence

#endif  // PRESENCE_SERVICE_USER_TABLE_H_
