#include "service/user_table.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

namespace presence {

SessionId::SessionId(absl::string_view id) {
  if (id.empty()) return;
  // Ids are at most 128 bytes by validation (and the store holds only ids
  // that passed it); a 2-byte length covers far more.
  const uint16_t size = static_cast<uint16_t>(
      std::min<size_t>(id.size(), std::numeric_limits<uint16_t>::max()));
  data_ = std::make_unique<char[]>(sizeof(size) + size);
  std::memcpy(data_.get(), &size, sizeof(size));
  std::memcpy(data_.get() + sizeof(size), id.data(), size);
}

SessionId SessionId::Adopt(char* block) {
  SessionId id;
  id.data_.reset(block);
  return id;
}

absl::string_view SessionId::View(const char* block) {
  if (block == nullptr) return {};
  uint16_t size;
  std::memcpy(&size, block, sizeof(size));
  return absl::string_view(block + sizeof(size), size);
}

UserState::~UserState() { ClearSessions(); }

size_t UserState::session_count() const {
  if (multi()) return list()->size();
  return hb_us_ == kNeverUs ? 0 : 1;
}

int64_t UserState::LatestHeartbeatUs() const {
  if (!multi()) return hb_us_;
  int64_t latest = kNeverUs;
  for (const Session& s : *list()) {
    latest = std::max(latest, s.last_heartbeat_us);
  }
  return latest;
}

void UserState::SetPointer(const void* p, bool multi) {
  const auto bits = reinterpret_cast<uintptr_t>(p);
  // The flag bits must be free: glibc's blocks are 16-byte aligned, and the
  // standard's default new alignment is more than the flags.
  static_assert(__STDCPP_DEFAULT_NEW_ALIGNMENT__ > kFlags);
  assert((bits & kFlags) == 0);
  word_ = bits | (word_ & (kStatusBits | kRichBit)) | (multi ? kMultiBit : 0);
}

SessionList UserState::TakeSessions() {
  SessionList out;
  if (multi()) {
    // The block stays for PutSessions to refill; its heap storage moves out
    // and back without a copy.
    out = std::move(*list());
    list()->clear();
  } else if (hb_us_ != kNeverUs) {
    out.push_back(Session{SessionId::Adopt(single_id()), hb_us_, active_us_});
    SetPointer(nullptr, false);
    hb_us_ = kNeverUs;
  }
  return out;
}

void UserState::PutSessions(SessionList sessions) {
  if (sessions.size() >= 2) {
    if (multi()) {
      *list() = std::move(sessions);
    } else {
      TakeSessions();  // frees a single session's id, if any
      SetPointer(new SessionList(std::move(sessions)), true);
    }
    return;
  }
  if (multi()) {
    delete list();
  } else {
    delete[] single_id();  // a single session's id block, or null
  }
  SetPointer(nullptr, false);
  hb_us_ = kNeverUs;
  if (sessions.size() == 1) {
    // kNeverUs would read as "no session" (and lose the id block): a stamp
    // that early (a damaged database) is one microsecond later, as dead.
    hb_us_ = std::max(sessions[0].last_heartbeat_us, kNeverUs + 1);
    active_us_ = sessions[0].last_active_us;
    SetPointer(sessions[0].id.release(), false);
  }
}

UserState* UserTable::Find(int64_t id, uint32_t* record) {
  auto it = index_.find(IdKey{id});
  if (it == index_.end()) return nullptr;
  if (record != nullptr) *record = *it;
  return &At(*it);
}

const UserState* UserTable::Find(int64_t id) const {
  auto it = index_.find(IdKey{id});
  if (it == index_.end()) return nullptr;
  return &At(*it);
}

UserState& UserTable::FindOrAdd(int64_t id, uint32_t* record) {
  if (UserState* user = Find(id, record)) return *user;
  if (size_ % kChunk == 0) {
    chunks_.push_back(std::make_unique<UserState[]>(kChunk));
  }
  // 4-byte record numbers: 2^32 users of 40 bytes in one of 64 shards is
  // far beyond any memory presenced runs in.
  const auto added = static_cast<uint32_t>(size_++);
  UserState& user = At(added);
  user.id_ = id;
  index_.insert(added);  // hashes the record by the id just set
  if (record != nullptr) *record = added;
  return user;
}

}  // namespace presence
