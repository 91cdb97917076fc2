// ThreadSanitizer builds only. Debian's Abseil is not built with TSan, so
// TSan cannot see absl::Mutex or absl::Notification synchronise, and would
// report every access to ABSL_GUARDED_BY state as a race. This file
// interposes the exported entry points we use and tells TSan what they do
// (acquire/release on the object's address), then calls the real function.
// It changes no behaviour and is linked into nothing but the TSan build.

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

template <typename F>
F Real(const char* mangled) {
  void* f = dlsym(RTLD_NEXT, mangled);
  if (f == nullptr) {
    std::fprintf(stderr, "absl_tsan_annotations: %s not found\n", mangled);
    std::abort();
  }
  return reinterpret_cast<F>(f);
}

#define REAL(type, mangled)                     \
  static const auto real = Real<type>(mangled); \
  (void)0

// The mutex this thread is inside a call of. Abseil evaluates a Condition
// inside Await/LockWhen (the waiter, as it takes the mutex back) and inside
// Unlock (on behalf of waiters), with the mutex held but out of our sight:
// each evaluation is annotated as a short critical section of its own.
thread_local const void* inside_mutex = nullptr;

class Inside {
 public:
  explicit Inside(const void* mu) : saved_(inside_mutex) { inside_mutex = mu; }
  ~Inside() { inside_mutex = saved_; }

 private:
  const void* const saved_;
};

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex4LockEv");
  real(this);
  __tsan_acquire(this);
}

bool Mutex::TryLock() {
  REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::Unlock() {
  REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex6UnlockEv");
  __tsan_release(this);
  Inside inside(this);
  real(this);
}

void Mutex::ReaderLock() {
  REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex10ReaderLockEv");
  real(this);
  __tsan_acquire(this);
}

void Mutex::ReaderUnlock() {
  REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  __tsan_release(this);
  real(this);
}

// Await* release the mutex while they wait and hold it again on return.
void Mutex::Await(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&),
       "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  __tsan_release(this);
  Inside inside(this);
  real(this, cond);
  __tsan_acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  REAL(bool (*)(Mutex*, const Condition&, Duration),
       "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_"
       "8DurationE");
  __tsan_release(this);
  Inside inside(this);
  const bool met = real(this, cond, timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  REAL(bool (*)(Mutex*, const Condition&, Time),
       "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  __tsan_release(this);
  Inside inside(this);
  const bool met = real(this, cond, deadline);
  __tsan_acquire(this);
  return met;
}

void Mutex::LockWhen(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&),
       "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  Inside inside(this);
  real(this, cond);
  __tsan_acquire(this);
}

void Notification::Notify() {
  REAL(void (*)(Notification*), "_ZN4absl7debian312Notification6NotifyEv");
  __tsan_release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  REAL(void (*)(const Notification*),
       "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  REAL(bool (*)(const Notification*, Duration),
       "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_"
       "8DurationE");
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Condition::Eval() const {
  REAL(bool (*)(const Condition*), "_ZNK4absl7debian39Condition4EvalEv");
  void* mu = const_cast<void*>(inside_mutex);
  if (mu == nullptr) return real(this);
  // Evaluated with the mutex held; if false, Abseil lets it go right after.
  __tsan_acquire(mu);
  const bool result = real(this);
  __tsan_release(mu);
  return result;
}

ABSL_NAMESPACE_END
}  // namespace absl
