"""Real child processes the tests and benches start: `bikeshare dashboard` on a loopback port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_dashboard(env: dict[str, str], *, port: int | None = None, timeout_s: float = 300) -> Iterator[str]:
    """`bikeshare dashboard --port <port>` (default: a free one) with ``env``, listening, until the block
    ends (SIGTERM, then kill after 20 s); yields its URL."""
    port = free_loopback_port() if port is None else port
    cli = Path(sys.executable).with_name("bikeshare")
    proc = subprocess.Popen([str(cli), "dashboard", "--port", str(port)], env=env)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bikeshare dashboard exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"bikeshare dashboard did not listen on {port} within {timeout_s:.0f} s"
                    ) from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
