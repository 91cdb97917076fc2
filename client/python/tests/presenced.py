"""Test helpers: a real presenced or presence-rest process, a silent
server, a TCP proxy."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from typing import List, Optional

_SERVING = re.compile(r"serving on (\S+)")


class _Server:
    """A server binary that logs `serving on HOST:PORT` on stderr once it
    listens. start() waits for that line and sets `address`; stop() ends it
    with SIGTERM and checks it exited 0. Its files live in `dir`."""

    NAME = ""

    def __init__(self, binary: str, flags: Optional[List[str]]) -> None:
        self.binary = binary
        self.flags = list(flags or [])
        self.dir = tempfile.mkdtemp(prefix="presence_py_")
        self.address = ""
        self._process: Optional[subprocess.Popen] = None
        self._stderr: List[str] = []
        self._reader: Optional[threading.Thread] = None

    def argv(self, listen: str) -> List[str]:
        raise NotImplementedError

    def start(self, listen: str = "127.0.0.1:0", timeout: float = 30):
        assert self._process is None, "already running"
        self._stderr = []
        self.address = ""
        self._process = subprocess.Popen(
            self.argv(listen), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        serving = threading.Event()
        self._reader = threading.Thread(
            target=self._read_stderr, args=(self._process, serving),
            daemon=True)
        self._reader.start()
        # The reader sets the event on the `serving on` line, or when the
        # server's stderr closes (it exited).
        if not serving.wait(timeout) or not self.address:
            self.kill()
            raise RuntimeError(f"{self.NAME} did not start:\n" + self.stderr())
        return self

    def _read_stderr(self, process: subprocess.Popen,
                     serving: threading.Event) -> None:
        for line in process.stderr:
            self._stderr.append(line)
            match = _SERVING.search(line)
            if match and not serving.is_set():
                self.address = match.group(1)
                serving.set()
        serving.set()

    def restart(self):
        """Stops and starts again on the same address."""
        address = self.address
        self.stop()
        return self.start(listen=address)

    def stderr(self) -> str:
        return "".join(self._stderr)

    def stop(self, timeout: float = 30) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise RuntimeError(f"{self.NAME} ignored SIGTERM:\n"
                               + self.stderr())
        self._reader.join()
        process.stderr.close()
        if code != 0:
            raise RuntimeError(f"{self.NAME} exited {code}:\n" + self.stderr())

    def kill(self) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        process.kill()
        process.wait()
        self._reader.join()
        process.stderr.close()

    def close(self) -> None:
        """Stops the server if running and removes its directory."""
        try:
            self.stop()
        finally:
            self.kill()
            shutil.rmtree(self.dir, ignore_errors=True)


def _binary(variable: str) -> str:
    binary = os.environ.get(variable, "")
    if not binary:
        raise RuntimeError(f"set {variable} to the binary (ctest does)")
    return binary


class Presenced(_Server):
    """presenced (the binary named by $PRESENCED) with a database in a
    temporary directory of its own. Restarting keeps the database and,
    unless told otherwise, the address."""

    NAME = "presenced"

    def __init__(self, flags: Optional[List[str]] = None) -> None:
        super().__init__(_binary("PRESENCED"), flags)
        self.db = os.path.join(self.dir, "p.db")

    def argv(self, listen: str) -> List[str]:
        return [self.binary, f"--listen={listen}", f"--db={self.db}",
                *self.flags]


class PresenceRest(_Server):
    """presence-rest (the binary named by $PRESENCE_REST) in front of the
    presenced at `server`, verifying HS256 JWTs signed with `jwt_secret`."""

    NAME = "presence-rest"

    def __init__(self, server: str, jwt_secret: str,
                 flags: Optional[List[str]] = None) -> None:
        super().__init__(_binary("PRESENCE_REST"), flags)
        self.server = server
        self.secret_file = os.path.join(self.dir, "jwt_secret")
        # Not in argv: a secret does not belong in `ps`.
        with open(os.open(self.secret_file, os.O_WRONLY | os.O_CREAT, 0o600),
                  "w") as f:
            f.write(jwt_secret)

    def argv(self, listen: str) -> List[str]:
        return [self.binary, f"--listen={listen}", f"--server={self.server}",
                f"--jwt_secret_file={self.secret_file}", *self.flags]


def closed_port_address() -> str:
    """127.0.0.1:PORT where nothing listens (a port just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % sock.getsockname()[1]


class SilentServer:
    """Accepts TCP connections and never answers: calls to it can only end
    by their deadline."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.address = "127.0.0.1:%d" % self._listener.getsockname()[1]

    def close(self) -> None:
        self._listener.close()


class Proxy:
    """A TCP proxy in front of `upstream`. break_connections() cuts every
    open connection; while refusing(), new connections are closed at once.
    Lets a test break a stream without touching presenced."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.address = "127.0.0.1:%d" % self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: List[socket.socket] = []
        self._refusing = False
        self._accepted = threading.Condition(self._lock)
        self.connections = 0  # accepted and forwarded, guarded by _lock
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                if self._refusing:
                    client.close()
                    continue
            try:
                upstream = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
                self.connections += 1
                self._accepted.notify_all()
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink),
                                 daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def refuse(self, refusing: bool) -> None:
        with self._lock:
            self._refusing = refusing

    def break_connections(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def wait_for_connections(self, count: int, timeout: float) -> bool:
        """Waits until `count` connections were forwarded in all."""
        with self._lock:
            return self._accepted.wait_for(lambda: self.connections >= count,
                                           timeout)

    def close(self) -> None:
        self._listener.close()
        self.break_connections()
