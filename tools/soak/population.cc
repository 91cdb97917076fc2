#include "tools/soak/population.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace presence::soak {
namespace {

// Fills BatchHeartbeat jobs and queues each one once it holds `batch`
// heartbeats; Flush() queues the rest.
class Batcher {
 public:
  Batcher(LoadRunner* load, int batch) : load_(load), batch_(batch) {}

  void Add(int64_t id, const std::string& session) {
    job_.items.emplace_back(id, session);
    if (static_cast<int>(job_.items.size()) == batch_) Flush();
  }
  void Flush() {
    if (job_.items.empty()) return;
    load_->Push(std::move(job_));
    job_ = Job();
  }

 private:
  LoadRunner* const load_;
  const int batch_;
  Job job_;
};

}  // namespace

void IdPool::Add(int64_t id) {
  if (index_.emplace(id, ids_.size()).second) ids_.push_back(id);
}

void IdPool::Remove(int64_t id) {
  auto it = index_.find(id);
  if (it == index_.end()) return;
  const size_t i = it->second;
  index_.erase(it);
  if (i + 1 != ids_.size()) {
    ids_[i] = ids_.back();
    index_[ids_[i]] = i;
  }
  ids_.pop_back();
}

int64_t IdPool::Pick(absl::BitGen& gen) const {
  return ids_[absl::Uniform<size_t>(gen, 0, ids_.size())];
}

Population::Population(int64_t users, double unary_fraction,
                       int ticks_per_interval, LoadRunner* load, int batch)
    : unary_fraction_(unary_fraction),
      buckets_(ticks_per_interval),
      load_(load),
      batch_(batch),
      initial_users_(users) {
  for (int64_t id = 1; id <= users; ++id) Arrive(NewUser(), false);
}

void Population::BeatEveryone() {
  Batcher batcher(load_, batch_);
  for (int64_t id : present_.ids()) {
    for (const std::string& session : users_[id - 1].sessions) {
      batcher.Add(id, session);
    }
  }
  batcher.Flush();
}

void Population::BeatTick(int64_t tick) {
  Batcher batcher(load_, batch_);
  for (int64_t id : buckets_[tick % buckets_.size()]) {
    const User& user = users_[id - 1];
    for (const std::string& session : user.sessions) {
      if (user.unary) {
        Push(Job::kHeartbeat, id, session);
      } else {
        batcher.Add(id, session);
      }
    }
  }
  batcher.Flush();
}

void Population::Leave() {
  if (present_.empty()) return;
  const int64_t id = present_.Pick(gen_);
  User& user = users_[id - 1];
  if (absl::Bernoulli(gen_, 0.5)) {
    Push(Job::kMarkOffline, id, "");
    ++logouts_;
  } else {
    ++went_away_;
  }
  user.sessions.clear();
  present_.Remove(id);
  absent_.Add(id);
  RemoveFromBucket(id);
}

void Population::Arrive() {
  if (absent_.empty() || absl::Bernoulli(gen_, 0.5)) {
    Arrive(NewUser(), true);
    ++new_arrivals_;
  } else {
    const int64_t id = absent_.Pick(gen_);
    absent_.Remove(id);
    Arrive(id, true);
    ++returns_;
  }
}

void Population::TabChurn() {
  if (present_.empty()) return;
  const int64_t id = present_.Pick(gen_);
  User& user = users_[id - 1];
  const bool close = user.sessions.size() == 3 ||
                     (user.sessions.size() == 2 && absl::Bernoulli(gen_, 0.5));
  if (close) {
    const size_t i = absl::Uniform<size_t>(gen_, 0, user.sessions.size());
    Push(Job::kMarkOffline, id, user.sessions[i]);
    user.sessions.erase(user.sessions.begin() + i);
    ++tabs_closed_;
  } else {
    user.sessions.push_back(absl::StrCat("tab-", user.next_tab++));
    Push(Job::kHeartbeat, id, user.sessions.back());
    ++tabs_opened_;
  }
}

std::string Population::ChurnSummary() const {
  return absl::StrFormat(
      "%d left (%d logged out, %d went away and expired), %d arrived (%d "
      "new, %d returning), %d tabs closed, %d opened",
      logouts_ + went_away_, logouts_, went_away_, new_arrivals_ + returns_,
      new_arrivals_, returns_, tabs_closed_, tabs_opened_);
}

int64_t Population::NewUser() {
  users_.emplace_back();
  User& user = users_.back();
  user.unary = absl::Bernoulli(gen_, unary_fraction_);
  user.bucket = absl::Uniform<size_t>(gen_, 0, buckets_.size());
  return static_cast<int64_t>(users_.size());
}

// 1-3 sessions; a third of the single-session users use the default one.
void Population::Arrive(int64_t id, bool beat_now) {
  User& user = users_[id - 1];
  const int sessions = absl::Uniform<int>(absl::IntervalClosed, gen_, 1, 3);
  if (sessions == 1 && absl::Bernoulli(gen_, 1.0 / 3)) {
    user.sessions.push_back("");
  } else {
    for (int s = 0; s < sessions; ++s) {
      user.sessions.push_back(absl::StrCat("tab-", user.next_tab++));
    }
  }
  present_.Add(id);
  buckets_[user.bucket].push_back(id);
  if (beat_now) {
    for (const std::string& session : user.sessions) {
      Push(Job::kHeartbeat, id, session);
    }
  }
}

void Population::RemoveFromBucket(int64_t id) {
  std::vector<int64_t>& bucket = buckets_[users_[id - 1].bucket];
  auto it = std::find(bucket.begin(), bucket.end(), id);
  if (it == bucket.end()) return;
  *it = bucket.back();
  bucket.pop_back();
}

void Population::Push(Job::Kind kind, int64_t id, const std::string& session) {
  Job job;
  job.kind = kind;
  job.items.emplace_back(id, session);
  load_->Push(std::move(job));
}

}  // namespace presence::soak
