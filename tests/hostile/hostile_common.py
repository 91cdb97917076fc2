"""What the hostile tests share: a presenced child process, /proc readings,
raw gRPC calls through grpcio's generic API, a steady prober, and the checks
with their exit codes.

Only Debian 12's python3 and its packages: run the tests with /usr/bin/python3
(python3-grpcio, python3-hyperframe, python3-hpack).
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import grpc

# Exit codes. CTest maps SKIP to "skipped" through SKIP_RETURN_CODE.
PASS, FAIL, SKIP = 0, 1, 77

SERVICE = "/presence.v1.PresenceService/"
# HeartbeatRequest{user_id: 42}: field 1, varint. Raw bytes spare the tests
# the generated stubs, which only exist in a build tree.
HEARTBEAT_42 = b"\x08\x2a"


class Presenced:
    """A presenced child with its stderr in a file (a pipe nobody drains
    would block it once its buffer fills, which a flood's log lines could)."""

    def __init__(self, binary, workdir, flags=(), wrapper=(), name="presenced"):
        self.log_path = os.path.join(workdir, name + ".log")
        self.argv = list(wrapper) + [binary, "--listen=127.0.0.1:0",
                                     "--db=" + os.path.join(workdir, name + ".db")]
        self.argv += list(flags)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=log)
        # A wrapper such as prlimit execs the server, so the pid stays the same.
        self.pid = self.process.pid
        self.address = None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_serving(self, timeout=60):
        """Waits for the "serving on HOST:PORT" line; returns the address."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"serving on (127\.0\.0\.1:[0-9]+)", self.log())
            if match:
                self.address = match.group(1)
                return self.address
            if self.process.poll() is not None:
                raise RuntimeError(f"presenced exited with {self.process.returncode} "
                                   f"before serving:\n{self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"presenced did not serve within {timeout} s:\n{self.log()}")

    def running(self):
        return self.process.poll() is None

    def stop(self, timeout=20):
        """SIGTERM (presenced drains and commits), then SIGKILL; returns the
        exit code (negative: the signal that ended it)."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def proc_status_kib(pid, field):
    """A `field: N kB` line of /proc/PID/status (VmRSS, VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0, the process's owner),
    so that each flood's peak can be told apart. False if not permitted: the
    peak then covers the whole run so far, which the criterion is about."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def mib(kib):
    return kib / 1024.0


class MemorySampler(threading.Thread):
    """VmRSS every `interval` seconds, as (monotonic time, KiB)."""

    def __init__(self, pid, interval=0.25):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples = []
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            try:
                self.samples.append((time.monotonic(), proc_status_kib(self.pid, "VmRSS")))
            except (OSError, KeyError):  # the process is gone
                return
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()

    def between(self, start, end):
        return [(t, kib) for t, kib in self.samples if start <= t <= end]

    def at(self, when):
        """The last sample taken at or before `when`."""
        before = [kib for t, kib in self.samples if t <= when]
        return before[-1] if before else None


def channel(address):
    """A channel with a connection of its own: grpcio otherwise shares one
    subchannel (one TCP connection) between channels to the same target, and
    a "fresh" channel would reuse a connection made before an attack."""
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def bearer(token):
    return (("authorization", "Bearer " + token),) if token else None


def heartbeat(chan, token=None, timeout=1.0):
    """One raw Heartbeat; returns (grpc.StatusCode, seconds)."""
    call = chan.unary_unary(SERVICE + "Heartbeat")
    start = time.monotonic()
    try:
        call(HEARTBEAT_42, timeout=timeout, metadata=bearer(token))
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code = error.code()
    return code, time.monotonic() - start


def fresh_heartbeat(address, token=None, timeout=1.0):
    """A Heartbeat on a new connection, closed afterwards."""
    chan = channel(address)
    try:
        return heartbeat(chan, token, timeout)
    finally:
        chan.close()


class Prober(threading.Thread):
    """An authenticated caller that starts a Heartbeat every `interval` on a
    fixed schedule, whether or not the previous one was answered: a stalled
    server then shows as many failed calls, as it would to a real backend,
    rather than as one slow call."""

    def __init__(self, chan, token, interval=0.1, deadline=2.0):
        super().__init__(daemon=True)
        self.stub = chan.unary_unary(SERVICE + "Heartbeat")
        self.token, self.interval, self.deadline = token, interval, deadline
        self.results = []  # (start time, grpc.StatusCode, latency in s)
        self._lock = threading.Lock()
        self._outstanding = 0
        self._stop_event = threading.Event()

    def run(self):
        next_start = time.monotonic()
        while not self._stop_event.is_set():
            self._start_one()
            next_start += self.interval
            self._stop_event.wait(max(0.0, next_start - time.monotonic()))

    def _start_one(self):
        start = time.monotonic()
        future = self.stub.future(HEARTBEAT_42, timeout=self.deadline,
                                  metadata=bearer(self.token))
        with self._lock:
            self._outstanding += 1

        def done(f):
            latency = time.monotonic() - start
            code = f.code()
            with self._lock:
                self.results.append((start, code, latency))
                self._outstanding -= 1
        future.add_done_callback(done)

    def stop(self):
        """Stops starting calls and waits for those in flight (each ends by
        its deadline)."""
        self._stop_event.set()
        self.join()
        limit = time.monotonic() + self.deadline + 5
        while time.monotonic() < limit:
            with self._lock:
                if self._outstanding == 0:
                    break
            time.sleep(0.05)

    def between(self, start, end):
        with self._lock:
            return [r for r in self.results if start <= r[0] <= end]


def summarize_calls(results):
    """'N calls, F failed (codes), p50/p99/max latency' of Prober results."""
    if not results:
        return "0 calls", 0
    failed = [r for r in results if r[1] != grpc.StatusCode.OK]
    latencies = sorted(r[2] for r in results)

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
    codes = {}
    for r in failed:
        codes[r[1].name] = codes.get(r[1].name, 0) + 1
    text = (f"{len(results)} calls, {len(failed)} failed"
            + (f" {codes}" if codes else "")
            + f", latency p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms, "
              f"max {latencies[-1] * 1000:.0f} ms")
    return text, len(failed)


class Checks:
    """Pass criteria, all evaluated and printed, so that one run shows every
    way a build falls short rather than the first."""

    def __init__(self):
        self.results = []

    def check(self, name, ok, detail=""):
        self.results.append((name, bool(ok)))
        print(f"{'PASS' if ok else 'FAIL'}: {name}" + (f" ({detail})" if detail else ""),
              flush=True)
        return ok

    def exit_code(self):
        failed = sum(1 for _, ok in self.results if not ok)
        print(f"{len(self.results) - failed} passed, {failed} failed", flush=True)
        return FAIL if failed else PASS


def log(message):
    print(time.strftime("%H:%M:%S ") + message, file=sys.stderr, flush=True)
