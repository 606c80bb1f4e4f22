"""`vbs-backup alerts listen`, the real command in its own process, over real sockets: what an
unauthenticated client POSTs cannot drive the terminal, fill the memory or hold the listener. No Prefect
server needed."""

from __future__ import annotations

import json
import os
import queue
import select
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from vbs_backup.deployments.cli.ops import printable

from .conftest import free_port, vbs_backup_command

TIMEOUT = 0.5  # the listener's --timeout: how long a client has for one whole request
WAIT = 15  # seconds: an upper bound for an answer or a printed line, never a sleep
MAX_BODY = 64 * 1024


@dataclass
class Listener:
    port: int
    lines: queue.Queue[str]

    def next_line(self) -> str:
        return self.lines.get(timeout=WAIT)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        return sock

    def exchange(self, request: bytes) -> bytes:
        """Send `request` whole and read the answer up to the listener's close."""
        with self.connect() as sock:
            sock.sendall(request)
            return read_all(sock)

    def post(self, body: bytes, content_type: str = "application/json") -> bytes:
        head = f"POST /alerts HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        return self.exchange(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)

    def alert(self, body_lines: int) -> list[str]:
        """The next alert printed: its header line and then `body_lines` lines."""
        header = self.next_line()
        assert header.startswith("--- alert received"), header
        return [self.next_line() for _ in range(body_lines)]


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def listener() -> Iterator[Listener]:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
    args = [*vbs_backup_command(), "alerts", "listen", "--port", str(port), "--timeout", str(TIMEOUT)]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True, encoding="utf-8")
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        first = lines.get(timeout=60)  # the command's start-up, imports included
        assert first.startswith("listening for alerts on"), first
        yield Listener(port, lines)
    finally:
        process.terminate()
        process.wait(timeout=WAIT)
        if process.stdout is not None:
            process.stdout.close()


HOSTILE = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\rover\x9b31m\u202eevil\x00"


def assert_harmless(line: str) -> None:
    assert all(c in "\t" or c.isprintable() for c in line), repr(line)


def test_control_characters_are_printed_escaped(listener):
    body = json.dumps({"subject": f"subj {HOSTILE}", "body": f"first\nsecond {HOSTILE}"}).encode()

    answer = listener.post(body)

    assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200"), answer
    subject, first, second = listener.alert(3)
    for line in (subject, first, second):
        assert_harmless(line)
    assert subject == "subj " + printable(HOSTILE)
    assert "\\x1b]0;owned\\x07\\x1b[2J\\x1b[31mred\\x0dover\\x9b31m\\u202eevil\\x00" in subject
    assert (first, second) == ("first", "second " + printable(HOSTILE))


def test_a_raw_body_is_printed_escaped_too(listener):
    listener.post(f"not json {HOSTILE}".encode(), content_type="text/plain")

    [line] = listener.alert(1)
    assert_harmless(line)
    assert line == "not json " + printable(HOSTILE)


def test_a_body_over_64_kib_is_refused_unread_and_not_printed(listener):
    # Announced, not sent: the listener must answer without waiting for 10 MB.
    with listener.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
        answer = read_all(sock)
    assert b" 413 " in answer.split(b"\r\n", 1)[0]

    # Sent, one byte too many: refused as well.
    answer = listener.post(b"x" * (MAX_BODY + 1), content_type="text/plain")
    assert b" 413 " in answer.split(b"\r\n", 1)[0]

    # Exactly the limit is fine, and it is the next thing printed: nothing came out of the refused ones.
    answer = listener.post(b"y" * MAX_BODY, content_type="text/plain")
    assert b" 200 " in answer.split(b"\r\n", 1)[0]
    [line] = listener.alert(1)
    assert line == "y" * MAX_BODY


def test_a_client_that_stops_sending_its_body_is_cut_off(listener):
    with listener.connect() as sock:
        sock.sendall(b'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"subj')
        answer = read_all(sock)  # the listener answers and closes; before the fix this never returned
    assert b" 408 " in answer.split(b"\r\n", 1)[0]

    listener.post(b"after", content_type="text/plain")
    [line] = listener.alert(1)
    assert line == "after"  # the cut request printed nothing


def test_a_client_that_trickles_its_headers_is_cut_off(listener):
    # One header line every TIMEOUT/3 seconds never lets a single read wait TIMEOUT: only a deadline for
    # the whole request stops it. The wait between lines is also the check for the listener's answer.
    with listener.connect() as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        answered = False
        for n in range(40):
            readable, _, _ = select.select([sock], [], [], TIMEOUT / 3)
            if readable:
                answered = True
                break
            sock.sendall(f"X-Slow-{n}: still coming\r\n".encode())
        assert answered, "the listener waited for 40 header lines sent over 20 of its timeouts"
        answer = read_all(sock)
    assert b" 408 " in answer.split(b"\r\n", 1)[0]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, tabs\tand\nnewlines", "plain text, tabs\tand\nnewlines"),
        ("\x1b[2J", "\\x1b[2J"),
        ("bell\x07 cr\r del\x7f csi\x9b", "bell\\x07 cr\\x0d del\\x7f csi\\x9b"),
        ("\u202eright-to-left \u200bzero-width", "\\u202eright-to-left \\u200bzero-width"),
        ("été ünïcode 日本", "été ünïcode 日本"),
    ],
)
def test_printable(text, shown):
    assert printable(text) == shown
