#include "tests/test_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace presence::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl =
      absl::StrCat(base != nullptr ? base : "/tmp", "/presence-test-XXXXXX");
  char* made = mkdtemp(tmpl.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    return;
  }
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ignored;
  if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
}

Subprocess::Subprocess(std::vector<std::string> argv) {
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    return;
  }
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(err_pipe[1], STDERR_FILENO);
    // Signals blocked by the test runner must not be blocked in the child.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(args[0], args.data());
    std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (pid_ < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    close(out_pipe[0]);
    close(err_pipe[0]);
    return;
  }
  reader_ = std::thread(
      [this, out = out_pipe[0], err = err_pipe[0]] { ReadLoop(out, err); });
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    Wait();
  }
  if (reader_.joinable()) reader_.join();
}

void Subprocess::ReadLoop(int out_fd, int err_fd) {
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      absl::MutexLock lock(&mu_);
      (i == 0 ? out_ : err_).append(buf, static_cast<size_t>(n));
    }
  }
  absl::MutexLock lock(&mu_);
  streams_closed_ = true;
}

std::optional<std::string> Subprocess::WaitFor(std::string Subprocess::*stream,
                                               const std::string& needle,
                                               absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const std::string& text = this->*stream;
  auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return text.find(needle) != std::string::npos || streams_closed_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&seen), timeout);
  if (text.find(needle) == std::string::npos) return std::nullopt;
  return text;
}

std::optional<std::string> Subprocess::WaitForStderr(const std::string& needle,
                                                     absl::Duration timeout) {
  return WaitFor(&Subprocess::err_, needle, timeout);
}

std::optional<std::string> Subprocess::WaitForStdout(const std::string& needle,
                                                     absl::Duration timeout) {
  return WaitFor(&Subprocess::out_, needle, timeout);
}

void Subprocess::Signal(int signal) {
  if (pid_ > 0 && !reaped_) kill(pid_, signal);
}

Subprocess::Exit Subprocess::Wait(absl::Duration timeout) {
  if (pid_ <= 0 || reaped_) return exit_;
  int status = 0;
  // A pidfd becomes readable when the child ends: poll it with the timeout.
  // glibc 2.36 declares pidfd_open without C linkage: call the syscall.
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  pollfd pfd = {pidfd, POLLIN, 0};
  const int ready =
      pidfd < 0
          ? 1
          : poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  if (pidfd >= 0) close(pidfd);
  if (ready == 0) {
    ADD_FAILURE() << "process " << pid_ << " did not end within " << timeout
                  << "; killing it";
    kill(pid_, SIGKILL);
  }
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  if (reader_.joinable()) reader_.join();
  exit_.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  exit_.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  absl::MutexLock lock(&mu_);
  exit_.out = out_;
  exit_.err = err_;
  return exit_;
}

Subprocess::Exit Run(std::vector<std::string> argv, absl::Duration timeout) {
  Subprocess process(std::move(argv));
  return process.Wait(timeout);
}

RunningPresenced StartPresenced(const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {PRESENCED_PATH, "--listen=127.0.0.1:0"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  RunningPresenced running;
  running.process = std::make_unique<Subprocess>(argv);
  std::optional<std::string> err =
      running.process->WaitForStderr("serving on ", absl::Seconds(30));
  if (!err.has_value()) {
    ADD_FAILURE() << "presenced did not start: " << running.process->Wait().err;
    return running;
  }
  const size_t at = err->find("serving on ") + std::strlen("serving on ");
  running.address = err->substr(at, err->find(' ', at) - at);
  return running;
}

}  // namespace presence::testing
