#!/usr/bin/python3
"""Ack-latency probe for bench/lmtp_bench.sh (standard library only).

    lmtp_probe.py PORT RCPT SIZE OUTFILE [INTERVAL_MS]

One extra LMTP session, beside smtp-source's load: it sends SIZE-byte
messages to RCPT one after another, starting one at most every INTERVAL_MS
(default 10) milliseconds, until SIGTERM, and writes one line per
message to OUTFILE: the milliseconds from the moment the last byte of DATA
(the final dot) was written until the 250 arrived -- the time the server
takes to make the message durable and say so, under whatever load runs
meanwhile. Raw sockets, one write per message, so the probe itself adds
as little as possible; the pacing keeps the probe's own load alike for a fast
server and a slow one (back to back, it would add several hundred messages a
second to a server that answers in 2 ms, uncounted, and a dozen to one that
answers in 70 ms). Any reply other than 250 is an error (exit 1).
"""

import signal
import socket
import sys
import time


def main():
    port, rcpt, size, out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    interval = (float(sys.argv[5]) if len(sys.argv) > 5 else 10.0) / 1000.0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")

    def reply():
        lines = []
        while True:
            line = f.readline()
            if not line:
                raise SystemExit("probe: connection closed")
            lines.append(line)
            if line[3:4] != b"-":
                return lines

    def expect(code):
        r = reply()
        if not r[-1].startswith(code):
            raise SystemExit(f"probe: expected {code!r}, got {r!r}")

    expect(b"220")
    s.sendall(b"LHLO probe.test\r\n")
    expect(b"250")
    line = b"X" * 76 + b"\r\n"
    body = b"Subject: latency probe\r\n\r\n" + line * max(1, size // len(line))
    latencies = []
    next_start = time.perf_counter()
    while not stop:
        pause = next_start - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
            if stop:
                break
        next_start = max(next_start + interval, time.perf_counter())
        s.sendall(b"MAIL FROM:<probe@example.org>\r\nRCPT TO:<" + rcpt.encode() + b">\r\nDATA\r\n")
        expect(b"250")
        expect(b"250")
        expect(b"354")
        s.sendall(body + b".\r\n")
        t0 = time.perf_counter()
        expect(b"250")
        latencies.append((time.perf_counter() - t0) * 1000.0)
    s.sendall(b"QUIT\r\n")
    with open(out, "w") as o:
        o.write("".join(f"{x:.3f}\n" for x in latencies))


if __name__ == "__main__":
    main()
