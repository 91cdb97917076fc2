#!/usr/bin/python3
"""Unauthenticated floods must not take presenced's memory or its answers.

presenced runs with --auth_tokens_file (one caller) and every other flag at
its default, then takes two floods from peers without a token:

  A. 32 concurrent BatchHeartbeat calls of 4 MB each (2,000,000 empty items)
     on one connection, each replaced by a new one as it ends, for 5 s;
  B. 20 connections x 5,000 HEADERS-only streams (a gRPC POST to Heartbeat,
     no END_STREAM, no DATA), written frame by frame past the server's
     SETTINGS_MAX_CONCURRENT_STREAMS, held open, then closed.

Meanwhile the caller with the token starts a Heartbeat every 100 ms (2 s
deadline). Pass criteria:

  - presenced's peak RSS (VmHWM) stays under 256 MiB over the whole run;
  - every authenticated call, during each flood and the 10 s after it, is OK;
  - 10 s after each flood, RSS is back within idle + 32 MiB (see RSS_SLACK_KIB);
  - every unauthenticated BatchHeartbeat is refused UNAUTHENTICATED or
    RESOURCE_EXHAUSTED, and no flood stream is answered OK;
  - presenced still runs after the floods.

Prints one summary line per flood (the figures for docs/reliability.md) and
one PASS/FAIL line per criterion. Exit 0: passed; 1: failed.

Usage (also a manual reproduction tool; every size can be changed):
  /usr/bin/python3 tests/hostile/flood_test.py --presenced=build/bin/presenced
  /usr/bin/python3 tests/hostile/flood_test.py --presenced=... --only=b \\
      --flood-connections=40 --streams-per-connection=10000
"""
import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time

import grpc
import hpack
from hyperframe.frame import (ContinuationFrame, Frame, GoAwayFrame, HeadersFrame,
                              SettingsFrame)

# The helper is imported from the source tree: leave no __pycache__ there.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hostile_common as hc  # noqa: E402  (after the path is set)

MIB = 1024
# The goal.
PEAK_LIMIT_KIB = 256 * MIB
# "Back near idle": presenced idles at about 21 MiB (after one call). The
# floods apply nothing (no token), so all that may legitimately stay after
# them is what serving them grew: threads gRPC started, allocator arenas
# keeping some freed pages, caches. 32 MiB leaves room for that, yet is less
# than eight of flood A's 4 MB requests, or a few thousand of flood B's
# streams, left behind.
RSS_SLACK_KIB = 32 * MIB
RECOVERY_SECONDS = 10.0
TOKEN = "flood-test-token-0123456789abcdef"
REFUSALS = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED)

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADERS, FRAME_RST_STREAM, FRAME_SETTINGS, FRAME_GOAWAY, FRAME_CONTINUATION = (
    0x1, 0x3, 0x4, 0x7, 0x9)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presenced", required=True, help="the presenced binary")
    parser.add_argument("--only", choices=["a", "b"], help="run one flood only")
    parser.add_argument("--batch-calls", type=int, default=32,
                        help="flood A: concurrent BatchHeartbeat calls")
    parser.add_argument("--batch-items", type=int, default=2_000_000,
                        help="flood A: empty items per call (2 bytes each)")
    parser.add_argument("--batch-connections", type=int, default=1,
                        help="flood A: connections to spread the calls over (0: one per "
                             "call); one, as a plain grpcio channel does, piles up the "
                             "most memory in presenced 1.51 (1.1-1.4 GB vs 0.4 GB for 32)")
    parser.add_argument("--batch-seconds", type=float, default=5.0,
                        help="flood A: keep the calls in flight this long (0: one "
                             "call each)")
    parser.add_argument("--batch-deadline", type=float, default=30.0,
                        help="flood A: deadline of each call, seconds")
    parser.add_argument("--flood-connections", type=int, default=20,
                        help="flood B: connections")
    parser.add_argument("--streams-per-connection", type=int, default=5000,
                        help="flood B: HEADERS-only streams per connection")
    parser.add_argument("--hold-seconds", type=float, default=3.0,
                        help="flood B: how long the streams stay open once written")
    parser.add_argument("--no-settings-ack", action="store_true",
                        help="flood B: never acknowledge the server's SETTINGS, so "
                             "that its stream limit is never in force (default: ack, "
                             "as a conforming peer would)")
    parser.add_argument("--probe-interval", type=float, default=0.1,
                        help="seconds between the authenticated caller's Heartbeats")
    parser.add_argument("--probe-deadline", type=float, default=2.0,
                        help="deadline of each authenticated Heartbeat, seconds")
    parser.add_argument("--sanitizer", default="",
                        help="the sanitizers presenced was built with (CMake's "
                             "PRESENCE_SANITIZE); if any, RSS and the authenticated "
                             "calls' answers in time are reported, not checked: "
                             "shadow memory, the quarantine and the slowdown are the "
                             "sanitizer's, not presenced's")
    parser.add_argument("--keep-dir", action="store_true",
                        help="keep the temporary directory (presenced's log and db)")
    return parser.parse_args()


# --- flood A -------------------------------------------------------------------


def flood_a(address, args):
    """Keeps args.batch_calls BatchHeartbeat calls in flight until
    args.batch_seconds have passed (each sender makes at least one): a server
    that refuses the first wave at once faces the same pressure for a while,
    not for a few milliseconds. Returns {status name: count}."""
    # HeartbeatRequest items of length 0 (field 1, wire type 2): the smallest
    # item there is, so the most items the size limit lets through.
    request = b"\x0a\x00" * args.batch_items
    connections = args.batch_connections or args.batch_calls
    channels = [hc.channel(address) for _ in range(connections)]
    codes = {}
    lock = threading.Lock()
    start = time.monotonic()

    def sender(i):
        call = channels[i % connections].unary_unary(hc.SERVICE + "BatchHeartbeat")
        while True:
            try:
                call(request, timeout=args.batch_deadline)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
            with lock:
                codes[code.name] = codes.get(code.name, 0) + 1
            if time.monotonic() - start >= args.batch_seconds:
                return
    senders = [threading.Thread(target=sender, args=(i,), daemon=True)
               for i in range(args.batch_calls)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    for chan in channels:
        chan.close()
    return codes


# --- flood B -------------------------------------------------------------------


class StreamFlooder:
    """One HTTP/2 connection that opens HEADERS-only streams with hyperframe
    and hpack on a plain socket. h2's state machine would refuse to open more
    streams than the peer allows; an attacker is not so polite. Everything
    the server sends is read (so that its writes never block on us) and
    tallied: trailers by grpc-status, RST_STREAMs, GOAWAY."""

    def __init__(self, address, streams, ack_settings):
        host, port = address.rsplit(":", 1)
        self.address, self.streams, self.ack_settings = address, streams, ack_settings
        self.sock = socket.create_connection((host, int(port)), timeout=20)
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 20
        self.sent = 0
        self.server_max_streams = None
        self.statuses = {}  # grpc-status of trailers the server sent -> count
        self.rst_streams = 0
        self.goaway = None
        self.error = None
        self.decode_error = None  # after one, blocks are no longer decoded
        self._buffer = b""
        self._header_block = None  # HEADERS awaiting CONTINUATION
        self._closing = False

    def handshake(self):
        self.sock.sendall(H2_PREFACE + SettingsFrame(0).serialize())
        # The server's preface is its SETTINGS frame: read up to it.
        while self.server_max_streams is None:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed during the HTTP/2 handshake")
            self._consume(data, stop_at_settings=True)
        if self.ack_settings:
            self.sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())

    def _consume(self, data, stop_at_settings=False):
        self._buffer += data
        view = self._buffer
        offset = 0
        while len(view) - offset >= 9:
            length = int.from_bytes(view[offset:offset + 3], "big")
            if len(view) - offset < 9 + length:
                break
            frame_type, flags = view[offset + 3], view[offset + 4]
            body = view[offset + 9:offset + 9 + length]
            header = view[offset:offset + 9]
            offset += 9 + length
            if frame_type == FRAME_SETTINGS and not flags & 0x1:
                frame, _ = Frame.parse_frame_header(header)
                frame.parse_body(memoryview(body))
                # Absent means unlimited (RFC 9113 6.5.2).
                self.server_max_streams = frame.settings.get(
                    SettingsFrame.MAX_CONCURRENT_STREAMS, "unlimited")
                if stop_at_settings:
                    break
            elif frame_type in (FRAME_HEADERS, FRAME_CONTINUATION):
                # Every header block is decoded, even those we do not look at:
                # HPACK's dynamic table would otherwise fall out of step.
                frame, _ = Frame.parse_frame_header(header)
                frame.parse_body(memoryview(body))
                if isinstance(frame, HeadersFrame):
                    self._header_block = bytes(frame.data)
                elif isinstance(frame, ContinuationFrame) and self._header_block is not None:
                    self._header_block += bytes(frame.data)
                if "END_HEADERS" in frame.flags and self._header_block is not None:
                    self._decode(self._header_block)
                    self._header_block = None
            elif frame_type == FRAME_RST_STREAM:
                self.rst_streams += 1
            elif frame_type == FRAME_GOAWAY:
                frame, _ = Frame.parse_frame_header(header)
                frame.parse_body(memoryview(body))
                assert isinstance(frame, GoAwayFrame)
                self.goaway = (frame.error_code, frame.last_stream_id)
        self._buffer = view[offset:]

    def _decode(self, block):
        if self.decode_error:
            return
        try:
            headers = self.decoder.decode(block, raw=True)
        except Exception as error:  # hpack's errors; keep draining the socket
            self.decode_error = f"{type(error).__name__}: {error}"
            return
        for name, value in headers:
            if name == b"grpc-status":
                status = int(value)
                self.statuses[status] = self.statuses.get(status, 0) + 1

    def read_loop(self):
        parsing = True
        while True:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:  # the socket's timeout is for the writes
                continue
            except OSError as error:
                if not self._closing:
                    self.error = self.error or f"read: {error}"
                return
            if not data:
                return
            if parsing:
                try:
                    self._consume(data)
                except Exception as error:  # a frame we cannot parse: drain on
                    self.decode_error = f"{type(error).__name__}: {error}"
                    parsing = False

    def write_streams(self):
        """HEADERS of a gRPC POST without END_STREAM, on streams 1, 3, 5...;
        stops (and records why) if the server closes or stops reading."""
        host = self.address
        headers = [(":method", "POST"), (":scheme", "http"),
                   (":path", hc.SERVICE + "Heartbeat"), (":authority", host),
                   ("content-type", "application/grpc"), ("te", "trailers"),
                   ("user-agent", "flood-test")]
        encoder = hpack.Encoder()
        # The first block fills the encoder's dynamic table; every later one
        # is the same few index bytes, so it is encoded once.
        first = encoder.encode(headers)
        repeat = encoder.encode(headers)
        batch = []
        try:
            for i in range(self.streams):
                block = first if i == 0 else repeat
                batch.append(HeadersFrame(2 * i + 1, data=block,
                                          flags=["END_HEADERS"]).serialize())
                if len(batch) == 256 or i == self.streams - 1:
                    self.sock.sendall(b"".join(batch))
                    self.sent += len(batch)
                    batch = []
        except OSError as error:
            self.error = f"write after {self.sent} streams: {error}"

    def close(self):
        self._closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def flood_b(address, args):
    """Writes every connection's streams at once, holds them, closes them;
    returns the flooders for their tallies."""
    flooders, errors = [], []
    for _ in range(args.flood_connections):
        try:
            flooder = StreamFlooder(address, args.streams_per_connection,
                                    not args.no_settings_ack)
            flooder.handshake()
            flooders.append(flooder)
        except OSError as error:  # refused or closed: the server defending itself
            errors.append(str(error))
    readers = [threading.Thread(target=f.read_loop, daemon=True) for f in flooders]
    writers = [threading.Thread(target=f.write_streams, daemon=True) for f in flooders]
    for thread in readers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    hc.log(f"flood B: {sum(f.sent for f in flooders)} streams written; "
           f"holding them {args.hold_seconds} s")
    time.sleep(args.hold_seconds)
    for flooder in flooders:
        flooder.close()
    for thread in readers:
        thread.join(timeout=10)
    return flooders, errors


# --- the run -------------------------------------------------------------------


def run_flood(name, description, server, sampler, prober_channel, args, flood, checks,
              idle_kib):
    """Runs one flood with the authenticated prober, then watches RSS for
    RECOVERY_SECONDS; returns (peak KiB, flood's own result)."""
    hc.reset_peak_rss(server.pid)
    prober = hc.Prober(prober_channel, TOKEN, args.probe_interval, args.probe_deadline)
    start = time.monotonic()
    prober.start()
    result = flood()
    end = time.monotonic()
    hc.log(f"flood {name} over after {end - start:.1f} s; watching RSS for "
           f"{RECOVERY_SECONDS:.0f} s")
    time.sleep(RECOVERY_SECONDS + 0.3)
    prober.stop()
    running = server.running()
    peak = hc.proc_status_kib(server.pid, "VmHWM") if running else None
    after_5 = sampler.at(end + 5)
    after_10 = sampler.at(end + RECOVERY_SECONDS)
    bound = idle_kib + RSS_SLACK_KIB
    # When RSS went under the bound for good (None: not within the window).
    settled = None
    for t, kib in sampler.between(end, end + RECOVERY_SECONDS):
        if kib <= bound and settled is None:
            settled = t - end
        elif kib > bound:
            settled = None
    during = hc.summarize_calls(prober.between(start, end))
    after = hc.summarize_calls(prober.between(end, end + RECOVERY_SECONDS + 1))
    if isinstance(result, dict):
        flood_text = "unauthenticated answers " + str(result)
    else:
        flood_text = result[0]

    def fmt(kib):
        return "n/a" if kib is None else f"{hc.mib(kib):.1f} MiB"
    print(f"SUMMARY flood {name} ({description}): idle RSS {fmt(idle_kib)}; "
          f"peak RSS (VmHWM) {fmt(peak)}; RSS +5 s {fmt(after_5)}, +10 s {fmt(after_10)} "
          f"(bound {fmt(bound)}, under it for good after "
          f"{'n/a' if settled is None else f'{settled:.2f} s'}); "
          f"flood lasted {end - start:.1f} s; {flood_text}; "
          f"authenticated during: {during[0]}; after: {after[0]}; "
          f"presenced {'running' if running else 'NOT running'}", flush=True)
    checks.check(f"flood {name}: presenced still runs", running,
                 "" if running else f"exit {server.process.returncode}")
    if args.sanitizer:
        print(f"NOT CHECKED under -fsanitize={args.sanitizer}: flood {name}'s RSS and "
              "authenticated calls", flush=True)
        return peak, result
    checks.check(f"flood {name}: peak RSS < 256 MiB", peak is not None and peak < PEAK_LIMIT_KIB,
                 f"VmHWM {fmt(peak)}")
    checks.check(f"flood {name}: every authenticated call during the flood and the "
                 f"{RECOVERY_SECONDS:.0f} s after it is OK",
                 during[1] == 0 and after[1] == 0 and prober.between(start, end),
                 f"during: {during[0]}; after: {after[0]}")
    checks.check(f"flood {name}: RSS back within idle + {RSS_SLACK_KIB // MIB} MiB "
                 f"{RECOVERY_SECONDS:.0f} s after",
                 after_10 is not None and after_10 <= bound,
                 f"{fmt(after_10)}, bound {fmt(bound)}")
    return peak, result


def main():
    args = parse_args()
    workdir = tempfile.mkdtemp(prefix="flood_test.")
    with open(os.path.join(workdir, "tokens"), "w") as f:
        f.write(f"# the only caller\nbackend {TOKEN}\n")
    checks = hc.Checks()
    server = hc.Presenced(args.presenced, workdir,
                          ["--auth_tokens_file=" + os.path.join(workdir, "tokens")])
    sampler = None
    try:
        address = server.wait_serving()
        hc.log(f"presenced pid {server.pid} serving on {address}; dir {workdir}")
        prober_channel = hc.channel(address)
        # One call first, so that idle includes what any call brings up
        # (threads, the connection), and so that the token is known good.
        code, _ = hc.heartbeat(prober_channel, TOKEN, timeout=10)
        if code != grpc.StatusCode.OK:
            raise RuntimeError(f"authenticated Heartbeat before the floods: {code}")
        code, _ = hc.heartbeat(prober_channel, None, timeout=10)
        if code != grpc.StatusCode.UNAUTHENTICATED:
            raise RuntimeError(f"a Heartbeat without a token was {code}: "
                               "--auth_tokens_file not in force?")
        time.sleep(1.0)
        idle_kib = hc.proc_status_kib(server.pid, "VmRSS")
        sampler = hc.MemorySampler(server.pid)
        sampler.start()
        peaks = []

        if args.only in (None, "a"):
            description = (f"{args.batch_calls} concurrent BatchHeartbeat x "
                           f"{2 * args.batch_items / 1e6:g} MB, "
                           f"{args.batch_items:,} empty items, for "
                           f">= {args.batch_seconds:.0f} s, no token")
            peak, codes = run_flood("A", description, server, sampler, prober_channel, args,
                                    lambda: flood_a(address, args), checks, idle_kib)
            peaks.append(peak)
            refused = sum(n for c, n in codes.items()
                          if c in {r.name for r in REFUSALS})
            checks.check("flood A: every unauthenticated call refused UNAUTHENTICATED "
                         "or RESOURCE_EXHAUSTED", refused == sum(codes.values()), str(codes))

        if args.only in (None, "b") and server.running():
            description = (f"{args.flood_connections} connections x "
                           f"{args.streams_per_connection:,} HEADERS-only streams, "
                           f"held {args.hold_seconds:.0f} s, no token")

            def flood():
                flooders, errors = flood_b(address, args)
                statuses = {}
                for f in flooders:
                    for status, n in f.statuses.items():
                        statuses[status] = statuses.get(status, 0) + n
                goaways = [f.goaway for f in flooders if f.goaway]
                stalls = [f.error for f in flooders if f.error]
                stalls += [f"decoding the answers: {f.decode_error}"
                           for f in flooders if f.decode_error]
                limits = sorted({str(f.server_max_streams) for f in flooders})
                text = (f"{len(flooders)} connections opened, {len(errors)} refused; "
                        f"{sum(f.sent for f in flooders):,} streams written; "
                        f"server MAX_CONCURRENT_STREAMS {','.join(limits) or 'n/a'}; "
                        f"trailers by grpc-status {statuses}; "
                        f"RST_STREAM {sum(f.rst_streams for f in flooders):,}; "
                        f"GOAWAY {len(goaways)}"
                        + (f" ({goaways[0]})" if goaways else "")
                        + (f"; {len(stalls)} write/read errors, e.g. {stalls[0]}"
                           if stalls else ""))
                return text, statuses
            peak, (text, statuses) = run_flood("B", description, server, sampler,
                                               prober_channel, args, flood, checks, idle_kib)
            peaks.append(peak)
            checks.check("flood B: no flood stream answered OK", statuses.get(0, 0) == 0,
                         f"trailers by grpc-status {statuses}")

        known = [p for p in peaks if p is not None]
        if not args.sanitizer:
            checks.check("the whole run: peak RSS < 256 MiB",
                         known and len(known) == len(peaks) and max(known) < PEAK_LIMIT_KIB,
                         f"max VmHWM {hc.mib(max(known)):.1f} MiB" if known else "n/a")
        alive = server.running()
        checks.check("presenced still runs after the floods", alive)
        prober_channel.close()
    except Exception as error:  # a broken set-up is a failure, with the log
        checks.check(f"the test ran ({type(error).__name__}: {error})", False)
        print(server.log()[-4000:], file=sys.stderr)
    finally:
        if sampler:
            sampler.stop()
        exit_status = server.stop()
        hc.log(f"presenced exited with {exit_status} after SIGTERM")
        if args.keep_dir:
            hc.log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return checks.exit_code()


if __name__ == "__main__":
    sys.exit(main())
