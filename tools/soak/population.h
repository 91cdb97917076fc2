#ifndef PRESENCE_TOOLS_SOAK_POPULATION_H_
#define PRESENCE_TOOLS_SOAK_POPULATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "tools/soak/load.h"

namespace presence::soak {

// A set of ids with a uniformly random pick, all O(1). Not thread-safe.
class IdPool {
 public:
  void Add(int64_t id);
  void Remove(int64_t id);
  bool empty() const { return ids_.empty(); }
  size_t size() const { return ids_.size(); }
  int64_t Pick(absl::BitGen& gen) const;
  const std::vector<int64_t>& ids() const { return ids_; }

 private:
  std::vector<int64_t> ids_;
  absl::flat_hash_map<int64_t, size_t> index_;
};

// The simulated users: who is present with which sessions, and when each
// beats. Turns the simulation into load calls queued on a LoadRunner, and
// remembers what it did, which is what presenced must say at the end.
//
// Every session of a user beats in the same tick of the interval (the
// user's bucket), so the load is spread evenly and has no bursts.
// Not thread-safe: the scheduler's thread (the soak's main thread) only.
class Population {
 public:
  // `users` users present at once, from id 1 up; `ticks_per_interval`
  // buckets; `batch` heartbeats per BatchHeartbeat. `load` must outlive
  // the population.
  Population(int64_t users, double unary_fraction, int ticks_per_interval,
             LoadRunner* load, int batch);

  // Heartbeats of every present user, in batches (the fill, the refresh).
  void BeatEveryone();
  // The heartbeats due in tick `tick` (of the interval's ticks).
  void BeatTick(int64_t tick);
  // One user leaves: stops beating (expires), or logs out everywhere.
  void Leave();
  // One user arrives: a new one, or one who left before.
  void Arrive();
  // A present user closes a tab (MarkOffline of that session) or opens one.
  void TabChurn();

  const std::vector<int64_t>& present() const { return present_.ids(); }
  int64_t max_user_id() const { return static_cast<int64_t>(users_.size()); }
  // The online/offline transitions the simulation meant: every user online
  // once, then one per leave and one per arrival (none if a user returns
  // before expiring).
  int64_t intended_transitions() const {
    return initial_users_ + logouts_ + went_away_ + new_arrivals_ + returns_;
  }
  std::string ChurnSummary() const;

 private:
  struct User {
    std::vector<std::string> sessions;  // empty while absent
    bool unary = false;
    int next_tab = 0;
    size_t bucket = 0;
  };

  int64_t NewUser();
  void Arrive(int64_t id, bool beat_now);
  void RemoveFromBucket(int64_t id);
  void Push(Job::Kind kind, int64_t id, const std::string& session);

  const double unary_fraction_;
  std::vector<std::vector<int64_t>> buckets_;
  LoadRunner* const load_;
  const int batch_;
  const int64_t initial_users_;
  absl::BitGen gen_;
  std::vector<User> users_;  // users_[id - 1]
  IdPool present_;
  IdPool absent_;
  int64_t logouts_ = 0, went_away_ = 0, new_arrivals_ = 0, returns_ = 0,
          tabs_closed_ = 0, tabs_opened_ = 0;
};

}  // namespace presence::soak

#endif  // PRESENCE_TOOLS_SOAK_POPULATION_H_
