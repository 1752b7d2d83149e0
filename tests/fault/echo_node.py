"""A stand-in node for testing the harness without a broker.

It listens on TCP and UDP at ``--listen ADDR:PORT`` and answers one line per
request, so a test can ask a node what *it* sees of the network:

* ``PING`` -> ``PONG <id>``: the node is up and not paused;
* ``UDP <addr> <port> <token>`` -> ``SENT``: send ``token`` in one datagram;
* ``HEARD`` -> ``HEARD <tokens...>``: the datagrams this node received, which is
  how an asymmetric cut (A hears B, B does not hear A) is observed, since TCP
  needs both directions and cannot show it;
* ``APPEND <value>`` -> ``OK <offset>`` or ``ERROR <why>``: a toy, unreplicated,
  fsynced log (``values.txt``), so the runner and the checker can be exercised
  end to end before the broker exists (the ``toy-log`` workload);
* ``READ <from> <max>`` -> ``RECORDS <offset>:<value> ...``.

At start it writes a small fake segment and index into ``--data-dir`` so that
the corruption helpers have files to damage. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import socket
import socketserver
import threading
from pathlib import Path

SEGMENT = "00000000000000000000.log"
INDEX = "00000000000000000000.index"
VALUES = "values.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--listen", required=True, help="ADDR:PORT")
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    addr, port = args.listen.rsplit(":", 1)

    args.data_dir.mkdir(parents=True, exist_ok=True)
    segment = args.data_dir / SEGMENT
    if not segment.exists():
        segment.write_bytes(bytes(range(256)) * 16)
        (args.data_dir / INDEX).write_bytes(bytes(range(1, 256)) * 4)

    heard: list[str] = []
    lock = threading.Lock()
    log_path = args.data_dir / VALUES
    values = log_path.read_text().split() if log_path.exists() else []

    def append(value: str) -> str:
        with lock, open(log_path, "ab", buffering=0) as f:
            size = f.tell()
            try:
                f.write((value + "\n").encode())
                os.fsync(f.fileno())
            except OSError as exc:  # e.g. ENOSPC: undo the partial line, so ERROR is definite
                f.truncate(size)
                return f"ERROR {exc.strerror}"
            values.append(value)
            return f"OK {len(values) - 1}"

    def read(start: int, limit: int) -> str:
        with lock:
            chosen = values[start:start + limit]
        return " ".join(["RECORDS", *(f"{start + i}:{v}" for i, v in enumerate(chosen))])

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((addr, int(port)))

    def receive() -> None:
        while True:
            data, _ = udp.recvfrom(2048)
            with lock:
                heard.append(data.decode(errors="replace"))

    threading.Thread(target=receive, daemon=True).start()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for raw in self.rfile:
                words = raw.decode().split()
                if not words:
                    continue
                if words[0] == "PING":
                    reply = f"PONG {args.id}"
                elif words[0] == "UDP" and len(words) == 4:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                        s.bind((addr, 0))
                        s.sendto(words[3].encode(), (words[1], int(words[2])))
                    reply = "SENT"
                elif words[0] == "APPEND" and len(words) == 2:
                    reply = append(words[1])
                elif words[0] == "READ" and len(words) == 3:
                    reply = read(int(words[1]), int(words[2]))
                elif words[0] == "HEARD":
                    with lock:
                        reply = " ".join(["HEARD", *heard])
                else:
                    reply = "ERROR unknown request"
                self.wfile.write((reply + "\n").encode())
                self.wfile.flush()

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    with Server((addr, int(port)), Handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
