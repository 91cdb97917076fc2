#ifndef PRESENCE_TESTS_TEST_UTIL_H_
#define PRESENCE_TESTS_TEST_UTIL_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace presence::testing {

// A fresh directory, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A child process whose stdout and stderr are collected by a reader thread.
class Subprocess {
 public:
  struct Exit {
    int code = -1;    // exit status, or -1 if killed by a signal
    int signal = 0;   // the signal that ended it, or 0
    std::string out;  // all of stdout
    std::string err;  // all of stderr
  };

  // argv[0] is the binary's path. Dies (test failure) if fork/exec fails.
  explicit Subprocess(std::vector<std::string> argv);
  ~Subprocess();  // SIGKILLs the child if still running
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  // Waits until stderr contains `needle` (or the child's streams close, or
  // `timeout` passes); returns stderr so far if found.
  std::optional<std::string> WaitForStderr(const std::string& needle,
                                           absl::Duration timeout);
  // The same for stdout.
  std::optional<std::string> WaitForStdout(const std::string& needle,
                                           absl::Duration timeout);
  void Signal(int signal);
  // Waits for the child to end (after `timeout`: SIGKILL) and returns how.
  Exit Wait(absl::Duration timeout = absl::Seconds(30));

 private:
  void ReadLoop(int out_fd, int err_fd);
  std::optional<std::string> WaitFor(std::string Subprocess::*stream,
                                     const std::string& needle,
                                     absl::Duration timeout);

  pid_t pid_ = -1;
  bool reaped_ = false;
  Exit exit_;
  absl::Mutex mu_;
  std::string out_ ABSL_GUARDED_BY(mu_);
  std::string err_ ABSL_GUARDED_BY(mu_);
  bool streams_closed_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reader_;
};

// Starts one asynchronous call with `start` (given the call's callback, of
// presence::Client::Callback's type) and waits up to `timeout` for its
// result.
template <typename T>
absl::StatusOr<T> Await(
    const std::function<void(absl::AnyInvocable<void(absl::StatusOr<T>) &&>)>&
        start,
    absl::Duration timeout = absl::Seconds(60)) {
  struct Outcome {
    absl::Notification done;
    absl::StatusOr<T> result = absl::UnknownError("no callback");
  };
  auto outcome = std::make_shared<Outcome>();
  start([outcome](absl::StatusOr<T> result) {
    outcome->result = std::move(result);
    outcome->done.Notify();
  });
  if (!outcome->done.WaitForNotificationWithTimeout(timeout)) {
    return absl::InternalError("the test gave up waiting for the callback");
  }
  return outcome->result;
}

// Runs a command to completion.
Subprocess::Exit Run(std::vector<std::string> argv,
                     absl::Duration timeout = absl::Seconds(30));

// A started presenced binary on 127.0.0.1:0, with its real address.
struct RunningPresenced {
  std::unique_ptr<Subprocess> process;
  std::string address;  // 127.0.0.1:PORT
};
// Starts presenced with `flags` (add --db=...) and waits until it serves.
// Fails the test (returns process with empty address) if it does not.
RunningPresenced StartPresenced(const std::vector<std::string>& flags);

}  // namespace presence::testing

#endif  // PRESENCE_TESTS_TEST_UTIL_H_
