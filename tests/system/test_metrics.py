#!/usr/bin/env python3
"""/metrics and /healthz: scraped while the server works, the
counters move as they should, and the output is valid Prometheus text
exposition format -- checked by `promtool check metrics` (Debian package
prometheus) and by a strict parser here.

Set-up: users alice (password known) and bob; `holdfast serve` with
--metrics 127.0.0.1:<free port>.

1. /healthz: 200 "ready". A path that does not exist: 404; POST: 405; a
   request line that is not HTTP: 400. The server stays healthy.
2. Baseline scrape. Then, with a second thread scraping /metrics every
   50 ms all the while (each scrape must parse), 30 messages to alice and
   bob over 3 LMTP connections (smtplib.LMTP), a POP3 session for alice
   (poplib: a wrong password first, then the right one, RETR 1, DELE 1,
   QUIT).
3. Final scrape (after alice's and bob's mailboxes hold the 30 messages):
   holdfast_messages_accepted_total +30, holdfast_deliveries_total
   {outcome="delivered"} +60, holdfast_spool_commits_total grew and the
   group-commit histograms counted as many rounds, their buckets
   cumulative with +Inf == _count; holdfast_lmtp_connections_total +3;
   holdfast_pop3_logins_total{result="ok"} +1 and {result="failed"} +1,
   holdfast_pop3_retrieved_total +1, holdfast_pop3_deleted_total +1;
   holdfast_spool_backlog_messages 0; holdfast_up 1; counters never went
   down between any two scrapes.

Run:  /usr/bin/python3 tests/system/test_metrics.py --holdfast build/holdfast
Exit: 0 pass, 1 fail.
"""

import http.client
import os
import poplib
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, fail, log  # noqa: E402
from hflmtp import CRLF  # noqa: E402

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
LABEL = re.compile(r'^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"$')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def need(cond, what):
    """check() without the "ok" line: the parser runs on every scrape."""
    if not cond:
        fail(what)


def parse(text):
    """Strict text format 0.0.4 parser: {(name, frozenset(labels)): value};
    fails on anything malformed."""
    if not text.endswith("\n"):
        fail("metrics: output does not end with a newline")
    types, samples, seen_families = {}, {}, []
    for ln in text.split("\n")[:-1]:
        if ln.startswith("# HELP "):
            name = ln.split(" ", 3)[2]
            need(NAME.match(name) is not None, f"metrics: HELP name {name!r}")
            continue
        if ln.startswith("# TYPE "):
            parts = ln.split(" ")
            need(len(parts) == 4 and parts[3] in TYPES, f"metrics: TYPE line {ln!r}")
            need(parts[2] not in types, f"metrics: family {parts[2]} declared twice")
            types[parts[2]] = parts[3]
            seen_families.append(parts[2])
            continue
        need(not ln.startswith("#") and ln != "", f"metrics: unexpected line {ln!r}")
        m = SAMPLE.match(ln)
        need(m is not None, f"metrics: malformed sample line {ln!r}")
        name, labels_text, value = m.group(1), m.group(3), m.group(4)
        labels = []
        if labels_text:
            for part in labels_text.split(","):
                lm = LABEL.match(part)
                need(lm is not None, f"metrics: malformed label {part!r} in {ln!r}")
                labels.append((lm.group(1), lm.group(2)))
        try:
            v = float(value)
        except ValueError:
            fail(f"metrics: value {value!r} in {ln!r}")
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        need(family in types, f"metrics: sample {name} before (or without) its TYPE")
        need(seen_families[-1] == family, f"metrics: samples of {family} not grouped together")
        key = (name, frozenset(labels))
        need(key not in samples, f"metrics: sample {ln!r} twice")
        samples[key] = v
    # Histograms: cumulative buckets, +Inf == _count.
    for family, t in types.items():
        if t != "histogram":
            continue
        buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in samples.items() if k[0] == family + "_bucket"))
        need(buckets and buckets[-1][0] == float("inf"), f"metrics: {family} has a +Inf bucket")
        need(all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), f"metrics: {family} buckets are cumulative")
        need(buckets[-1][1] == samples[(family + "_count", frozenset())], f"metrics: {family} +Inf == _count")
    return types, samples


def get(port, path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        c.close()


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def main(args):
    with hfsys.TempDir(prefix="hfmet-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        hf.user_add("alice", "pw-alice")
        hf.user_add("bob", "pw-bob")
        srv = hflmtp.Server(binary, data, tmp.sub("serve.log"))
        try:
            srv.start()
            port = srv.metrics_port
            deadline = time.monotonic() + 10
            while True:
                try:
                    status, _, body = get(port, "/healthz")
                    break
                except OSError:
                    check(time.monotonic() < deadline, "/healthz answers within 10 s of the 220 greeting")
                    time.sleep(0.05)
            check(status == 200 and body == "ready\n", f"/healthz: 200 ready ({status} {body!r})")
            # Threads an operator can tell apart in top -H (docs/architecture.md).
            task_dir = f"/proc/{srv.proc.pid}/task"
            names = sorted(open(f"{task_dir}/{t}/comm").read().strip() for t in os.listdir(task_dir))
            for want in ("holdfast", "hf-commit", "hf-sync", "hf-deliver", "hf-events"):
                check(want in names, f"a thread named {want} ({names})")
            check(get(port, "/nope")[0] == 404, "an unknown path: 404")
            check(get(port, "/metrics", method="POST")[0] == 405, "POST /metrics: 405")
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"hello there\r\n\r\n")
                check(s.recv(100).startswith(b"HTTP/1.1 400"), "a request line that is not HTTP: 400")

            status, ctype, text = get(port, "/metrics")
            check(status == 200 and ctype.startswith("text/plain; version=0.0.4"), f"/metrics: 200, {ctype}")
            types, before = parse(text)
            log(f"/metrics: {len(types)} families, {len(before)} samples")
            promtool = shutil.which("promtool")
            if promtool:
                r = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True)
                check(r.returncode == 0, "promtool check metrics accepts the output",
                      (r.stdout + r.stderr).decode(errors="replace"))
                log("promtool check metrics: ok")
            else:
                log("promtool not installed: the strict parser only")

            # Scrape all the while.
            stop = threading.Event()
            scrapes, problems = [], []

            def scraper():
                while not stop.is_set():
                    try:
                        scrapes.append(parse(get(port, "/metrics")[2])[1])
                    except BaseException as e:  # noqa: BLE001 - reported below
                        problems.append(repr(e))
                        return
                    time.sleep(0.05)

            th = threading.Thread(target=scraper)
            th.start()

            def sender(c):
                conn = hflmtp.connect(srv.port)
                for i in range(10):
                    tok = f"MET-{c}-{i}".encode()
                    msg = b"Subject: metrics " + tok + CRLF + CRLF + b"body " + tok + CRLF
                    _, final = hflmtp.lmtp_send(conn, "s@example.org", ["alice@localhost", "bob@localhost"], msg)
                    if any(v[0] != 250 for v in final.values()):
                        problems.append(f"LMTP: {final}")
                conn.quit()

            senders = [threading.Thread(target=sender, args=(c,)) for c in range(3)]
            for t in senders:
                t.start()
            for t in senders:
                t.join()
            hflmtp.wait_count(hf, "alice", 30)
            hflmtp.wait_count(hf, "bob", 30)
            p = poplib.POP3("127.0.0.1", srv.pop3_port, timeout=30)
            p.user("alice")
            try:
                p.pass_("wrong")
                fail("a wrong password was accepted")
            except poplib.error_proto:
                pass
            p.quit()
            p = poplib.POP3("127.0.0.1", srv.pop3_port, timeout=30)
            p.user("alice")
            p.pass_("pw-alice")
            p.retr(1)
            p.dele(1)
            p.quit()
            time.sleep(0.3)
            stop.set()
            th.join()
            check(not problems, "every scrape during the load parsed, every message got 250", "\n".join(problems[:5]))
            check(len(scrapes) >= 3, f"scraped during the load ({len(scrapes)} times)")

            _, _, text = get(port, "/metrics")
            _, after = parse(text)
            scrapes.append(after)
            all_scrapes = [before] + scrapes
            went_down = []
            for (name, labels), v in after.items():
                if types.get(re.sub(r"_(bucket|sum|count)$", "", name)) in ("counter", "histogram") and \
                        not name.endswith("_sum"):
                    series = [s.get((name, labels)) for s in all_scrapes if (name, labels) in s]
                    if not all(a <= b for a, b in zip(series, series[1:])):
                        went_down.append(name)
            check(not went_down, f"no counter went down across {len(all_scrapes)} scrapes", ", ".join(went_down))

            def delta(name, **labels):
                return val(after, name, **labels) - val(before, name, **labels)

            check(delta("holdfast_messages_accepted_total") == 30, "accepted +30")
            check(delta("holdfast_deliveries_total", outcome="delivered") == 60, "delivered +60 (2 recipients)")
            commits = delta("holdfast_spool_commits_total")
            check(commits >= 1, f"group commits counted ({commits})")
            check(delta("holdfast_spool_fsync_seconds_count") >= 1, "fsync latency observed")
            check(delta("holdfast_spool_commit_messages_sum") >= 30, "commit batch sizes add up to the messages")
            check(delta("holdfast_lmtp_connections_total") == 3, "3 LMTP connections")
            check(delta("holdfast_pop3_logins_total", result="ok") == 1, "1 good POP3 login")
            check(delta("holdfast_pop3_logins_total", result="failed") == 1, "1 failed POP3 login")
            check(delta("holdfast_pop3_retrieved_total") == 1, "1 RETR")
            check(delta("holdfast_pop3_deleted_total") == 1, "1 DELE+QUIT")
            check(val(after, "holdfast_spool_backlog_messages") == 0, "backlog empty at the end")
            check(val(after, "holdfast_up") == 1, "holdfast_up 1")
            check(srv.stop()[0] == 0, "SIGTERM: exit 0")
            check(not srv.sanitizer_reports(), "no sanitizer reports")
        except BaseException:
            log(f"\n--- server log (last 40 lines) ---\n{srv.log_tail(40)}")
            raise
        finally:
            srv.kill9()


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
