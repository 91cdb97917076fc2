#!/usr/bin/python3
"""Running out of file descriptors once must not leave presenced deaf.

gRPC 1.51's accept loop stops accepting for good after an EMFILE
(grpc/grpc#20418, #16058): the process stays up, TCP connects still succeed
into the backlog, and every call times out. Two cases, each on a presenced
of its own (plain, no tokens: the accept loop is what is tested):

  1. The issue's repro. presenced starts under `prlimit --nofile=1024:20000`;
     it must raise its soft limit to the hard one and log a line with
     "open-file limit", 1024 and 20000. Then 1,100 idle TCP connections are
     opened and all reset (SO_LINGER 0).
  2. A hard limit too low to raise (`--nofile=256:256`): 400 connections held
     open for a while, then reset. presenced must not crash.

In both, a Heartbeat on a fresh connection (1 s deadline, tried every 200 ms)
must succeed within 10 s of the reset, then keep succeeding, and presenced
must still run. Prints one SUMMARY line per case: time to the first
successful Heartbeat, fds of the process before, during and after the burst.

Needs to set RLIMIT_NOFILE (util-linux prlimit) and more than 1,100 fds for
itself: without them the test is skipped (exit 77) with the reason. Runs as
root in CI. Exit 0: passed; 1: failed.

Usage (also a manual reproduction tool):
  /usr/bin/python3 tests/hostile/fd_exhaustion_test.py --presenced=build/bin/presenced
  # how long a build stays deaf, up to 60 s:
  /usr/bin/python3 tests/hostile/fd_exhaustion_test.py --presenced=... --max-wait=60
  /usr/bin/python3 tests/hostile/fd_exhaustion_test.py --presenced=... --case=2 \\
      --low-limit=128 --low-connections=1000
"""
import argparse
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

import grpc

# The helper is imported from the source tree: leave no __pycache__ there.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile_common as hc  # noqa: E402  (after the path is set)

# The fix's promise: serving again within this long after the burst.
RECOVER_WITHIN = 10.0
PROBE_PERIOD = 0.2
PROBE_DEADLINE = 1.0
# Heartbeats after the first success that must all succeed too.
KEEP_SUCCEEDING = 10


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presenced", required=True, help="the presenced binary")
    parser.add_argument("--case", type=int, choices=[1, 2], help="run one case only")
    parser.add_argument("--soft", type=int, default=1024, help="case 1: soft RLIMIT_NOFILE")
    parser.add_argument("--hard", type=int, default=20000, help="case 1: hard RLIMIT_NOFILE")
    parser.add_argument("--connections", type=int, default=1100,
                        help="case 1: idle connections opened, then reset")
    parser.add_argument("--low-limit", type=int, default=256,
                        help="case 2: soft and hard RLIMIT_NOFILE")
    parser.add_argument("--low-connections", type=int, default=400,
                        help="case 2: connections held open, then reset")
    parser.add_argument("--hold-seconds", type=float, default=3.0,
                        help="how long the burst's connections stay open")
    parser.add_argument("--max-wait", type=float, default=RECOVER_WITHIN,
                        help="seconds to wait for the first successful Heartbeat after "
                             "the burst (to measure a broken build; the criterion stays "
                             f"{RECOVER_WITHIN:.0f} s)")
    parser.add_argument("--keep-dir", action="store_true",
                        help="keep the temporary directories (presenced's logs and dbs)")
    return parser.parse_args()


def skip_reason(args):
    """Why this machine cannot run the test, or None."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        return "util-linux prlimit is not installed"
    for limits in (f"{args.soft}:{args.hard}", f"{args.low_limit}:{args.low_limit}"):
        result = subprocess.run([prlimit, "--nofile=" + limits, "--", "/bin/true"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            return f"prlimit --nofile={limits} is not permitted here: {result.stderr.strip()}"
    # Our own end of the burst's connections, plus grpc's and Python's fds.
    need = max(args.connections, args.low_connections) + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard != resource.RLIM_INFINITY and hard < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
        elif soft != resource.RLIM_INFINITY and soft < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    except (ValueError, OSError) as error:
        return f"cannot raise this test's own open-file limit to {need}: {error}"
    return None


def soft_nofile(pid):
    """The soft "Max open files" of /proc/PID/limits."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return line.split()[3]
    return "?"


def open_idle_connections(address, count):
    """TCP connects that never speak; returns (sockets, failures). The kernel
    completes them from the listen backlog, whether presenced accepts or not."""
    host, port = address.rsplit(":", 1)
    sockets, failures = [], 0
    for _ in range(count):
        try:
            sockets.append(socket.create_connection((host, int(port)), timeout=5))
        except OSError:
            failures += 1
    return sockets, failures


def reset_all(sockets):
    """Closes with RST, not FIN (SO_LINGER on, linger 0), as a client that
    died or a scanner would."""
    for sock in sockets:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        sock.close()


def wait_for_heartbeat(address, max_wait):
    """Seconds from now to the first OK Heartbeat on a fresh connection, or
    None if none within max_wait; and the codes of the failed tries."""
    start = time.monotonic()
    failures = {}
    while True:
        tried = time.monotonic()
        code, _ = hc.fresh_heartbeat(address, timeout=PROBE_DEADLINE)
        if code == grpc.StatusCode.OK:
            return time.monotonic() - start, failures
        failures[code.name] = failures.get(code.name, 0) + 1
        if time.monotonic() - start >= max_wait:
            return None, failures
        time.sleep(max(0.0, PROBE_PERIOD - (time.monotonic() - tried)))


def keep_succeeding(address):
    """KEEP_SUCCEEDING more fresh-connection Heartbeats; returns the OK count."""
    ok = 0
    for _ in range(KEEP_SUCCEEDING):
        code, _ = hc.fresh_heartbeat(address, timeout=PROBE_DEADLINE)
        ok += code == grpc.StatusCode.OK
        time.sleep(PROBE_PERIOD)
    return ok


def run_case(name, description, args, checks, limits, connections, check_raise):
    workdir = tempfile.mkdtemp(prefix=f"fd_exhaustion_test.{name}.")
    server = hc.Presenced(args.presenced, workdir,
                          wrapper=[shutil.which("prlimit"), "--nofile=" + limits, "--"])
    try:
        address = server.wait_serving()
        hc.log(f"case {name}: presenced pid {server.pid} under prlimit --nofile={limits}, "
               f"serving on {address}; dir {workdir}")
        soft_now = soft_nofile(server.pid)
        code, _ = hc.fresh_heartbeat(address, timeout=10)
        if code != grpc.StatusCode.OK:
            raise RuntimeError(f"Heartbeat before the burst: {code}")
        # A connection made before the burst: does presenced keep answering
        # callers it already has, while new ones are turned away?
        established = hc.channel(address)
        hc.heartbeat(established, timeout=10)
        fds_before = hc.fd_count(server.pid)

        sockets, connect_failures = open_idle_connections(address, connections)
        fds_max = hc.fd_count(server.pid)
        hold_end = time.monotonic() + args.hold_seconds
        during_codes = {}
        while time.monotonic() < hold_end:
            fds_max = max(fds_max, hc.fd_count(server.pid))
            code, _ = hc.heartbeat(established, timeout=PROBE_DEADLINE)
            during_codes[code.name] = during_codes.get(code.name, 0) + 1
            time.sleep(PROBE_PERIOD)
        fresh_during, _ = hc.fresh_heartbeat(address, timeout=PROBE_DEADLINE)
        reset_all(sockets)
        hc.log(f"case {name}: {len(sockets)} connections reset; waiting up to "
               f"{max(args.max_wait, RECOVER_WITHIN):.0f} s for a Heartbeat")

        recovered_after, failed_tries = wait_for_heartbeat(
            address, max(args.max_wait, RECOVER_WITHIN))
        then_ok = keep_succeeding(address) if recovered_after is not None else 0
        established_after, _ = hc.heartbeat(established, timeout=PROBE_DEADLINE)
        running = server.running()
        fds_after = hc.fd_count(server.pid) if running else -1
        established.close()

        deaf = (f"{recovered_after:.2f} s" if recovered_after is not None
                else f"none within {max(args.max_wait, RECOVER_WITHIN):.0f} s")
        print(f"SUMMARY fd case {name} ({description}): soft RLIMIT_NOFILE {soft_now}; "
              f"{len(sockets)} connected, {connect_failures} connects failed; "
              f"presenced fds before {fds_before}, max during the burst {fds_max}, "
              f"after {fds_after}; during the burst: established connection {during_codes}, "
              f"fresh connection {fresh_during.name}; after the reset: established "
              f"connection {established_after.name}; first OK Heartbeat after the reset: "
              f"{deaf} (failed tries {failed_tries}); then {then_ok}/{KEEP_SUCCEEDING} OK; "
              f"presenced {'running' if running else 'NOT running'}", flush=True)
        if check_raise:  # late: the line may follow "serving on"
            soft, hard = limits.split(":")
            lines = re.findall(r"^.*open-file limit.*$", server.log(), re.MULTILINE)
            raised = [line for line in lines if re.search(rf"\b{soft}\b.*\b{hard}\b", line)]
            checks.check(f"case {name}: presenced logs that it raised its open-file limit "
                         f"from {soft} to {hard}", raised,
                         (raised or lines or ["no line with 'open-file limit'"])[0].strip())
            checks.check(f"case {name}: soft RLIMIT_NOFILE raised to the hard limit",
                         soft_now == hard, f"soft {soft_now}, hard {hard}")
        checks.check(f"case {name}: presenced still runs", running,
                     "" if running else f"exit {server.process.returncode}")
        checks.check(f"case {name}: a Heartbeat succeeds within {RECOVER_WITHIN:.0f} s "
                     f"of the reset", recovered_after is not None
                     and recovered_after <= RECOVER_WITHIN, deaf)
        checks.check(f"case {name}: Heartbeats keep succeeding",
                     then_ok == KEEP_SUCCEEDING, f"{then_ok}/{KEEP_SUCCEEDING}")
    except Exception as error:  # a broken set-up is a failure, with the log
        checks.check(f"case {name}: the test ran ({type(error).__name__}: {error})", False)
        print(server.log()[-4000:], file=sys.stderr)
    finally:
        status = server.stop()
        hc.log(f"case {name}: presenced exited with {status} after SIGTERM")
        if args.keep_dir:
            hc.log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main():
    args = parse_args()
    reason = skip_reason(args)
    if reason:
        print(f"SKIPPED: {reason}", flush=True)
        return hc.SKIP
    checks = hc.Checks()
    if args.case in (None, 1):
        run_case("1", f"prlimit --nofile={args.soft}:{args.hard}, {args.connections} idle "
                      f"connections held {args.hold_seconds:.0f} s, then reset",
                 args, checks, f"{args.soft}:{args.hard}", args.connections,
                 check_raise=True)
    if args.case in (None, 2):
        run_case("2", f"prlimit --nofile={args.low_limit}:{args.low_limit}, "
                      f"{args.low_connections} idle connections held "
                      f"{args.hold_seconds:.0f} s, then reset",
                 args, checks, f"{args.low_limit}:{args.low_limit}", args.low_connections,
                 check_raise=False)
    return checks.exit_code()


if __name__ == "__main__":
    sys.exit(main())
