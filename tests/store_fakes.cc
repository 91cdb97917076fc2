#include "tests/store_fakes.h"

namespace presence::testing {

void CommitGate::Hold() {
  absl::MutexLock lock(&mu_);
  held_ = true;
}

void CommitGate::Release() {
  absl::MutexLock lock(&mu_);
  held_ = false;
}

absl::Status CommitGate::Pass(absl::FunctionRef<absl::Status()> commit) {
  // The commit runs under the gate's lock, as the fakes' did before they
  // shared this gate: a test's Hold() or Release() then never lands in the
  // middle of a commit (StoreWriterTest.AStoreThatCanNeverCommitAgain...
  // failed 99 times in 100 without it). Release() and AwaitEntered() wait
  // while a commit runs; the lock order is always gate, then store.
  absl::MutexLock lock(&mu_);
  ++entered_;
  mu_.Await(absl::Condition(
      +[](bool* held) { return !*held; }, &held_));
  return commit();
}

void CommitGate::AwaitEntered(int n) {
  absl::MutexLock lock(&mu_);
  auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return entered_ >= n;
  };
  mu_.Await(absl::Condition(&reached));
}

namespace {

absl::Status Gone() {
  return absl::FailedPreconditionError("the database file was deleted");
}

}  // namespace

absl::StatusOr<StoredState> ControlledStore::Load(absl::Time) {
  return StoredState{};
}

absl::Status ControlledStore::Commit(absl::Span<const SessionChange> changes) {
  return gate_.Pass([&] {
    absl::MutexLock lock(&mu_);
    if (gone_) return Gone();
    if (failures_left_ > 0) {
      --failures_left_;
      return absl::ResourceExhaustedError("disk full (injected)");
    }
    batches_.emplace_back(changes.begin(), changes.end());
    return absl::OkStatus();
  });
}

absl::Status ControlledStore::Verify() {
  absl::MutexLock lock(&mu_);
  ++verifications_;
  return gone_ ? Gone() : absl::OkStatus();
}

void ControlledStore::SetGone() {
  absl::MutexLock lock(&mu_);
  gone_ = true;
}

int ControlledStore::verifications() {
  absl::MutexLock lock(&mu_);
  return verifications_;
}

void ControlledStore::FailNext(int n) {
  absl::MutexLock lock(&mu_);
  failures_left_ = n;
}

std::vector<std::vector<SessionChange>> ControlledStore::batches() {
  absl::MutexLock lock(&mu_);
  return batches_;
}

std::vector<int64_t> ControlledStore::committed_users() {
  std::vector<int64_t> users;
  for (const auto& batch : batches()) {
    for (const SessionChange& c : batch) users.push_back(c.user_id);
  }
  return users;
}

absl::StatusOr<StoredState> FlakyStore::Load(absl::Time) {
  return StoredState{};
}

absl::Status FlakyStore::Commit(absl::Span<const SessionChange>) {
  absl::MutexLock lock(&mu_);
  ++attempts_;
  if (failures_left_ > 0) {
    --failures_left_;
    return absl::UnavailableError(kDiskFull);
  }
  return absl::OkStatus();
}

int FlakyStore::attempts() {
  absl::MutexLock lock(&mu_);
  return attempts_;
}

absl::StatusOr<StoredState> WrappedStore::Load(absl::Time live_after) {
  return store_->Load(live_after);
}

absl::Status WrappedStore::Commit(absl::Span<const SessionChange> changes) {
  return store_->Commit(changes);
}

absl::Status DiskFullStore::Commit(absl::Span<const SessionChange> changes) {
  ++attempts_;
  if (full_) return absl::UnavailableError(kDiskFull);
  return WrappedStore::Commit(changes);
}

absl::Status HeldStore::Commit(absl::Span<const SessionChange> changes) {
  return gate_.Pass([&] { return WrappedStore::Commit(changes); });
}

}  // namespace presence::testing
