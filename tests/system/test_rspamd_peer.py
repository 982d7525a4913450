#!/usr/bin/env python3
"""The private rspamd of the filter tests (hfrspamd.py) is a faithful peer.

holdfast's rspamd filter step (src/filter/rspamd.cc) is checked end to end
through `holdfast serve` by the filter stage's system test; this one checks
the peer it runs against: a real rspamd 3.4 on a private configuration with
no network lookups, spoken to over HTTP with the request holdfast's client
sends (POST /checkv2, Connection: close, From/Rcpt/IP/Helo/Queue-Id).

  * it starts (cold or with a cached URL matcher; the time is printed) and
    listens on loopback only;
  * GTUBE -> action "reject" (symbol GTUBE);
  * a clean message -> "no action", score below the add-header threshold,
    with milter.add_headers (X-Spamd-Result, X-Spam-Status: No);
  * the add-header marker -> "add header" (X-Spam-Status: Yes);
  * the rewrite-subject marker -> "rewrite subject" with the new subject;
  * the null sender and an IPv6 client are accepted; a client address
    outside the local networks (all rules run) changes none of the verdicts;
  * an unknown path is a 5xx (what the client maps to a temporary failure);
  * no DNS request was made for any of them (rspamd logs "dns req: N");
  * stop() leaves no rspamd process of ours behind, and start(port=) brings
    it back on the same port.

Run:  /usr/bin/python3 tests/system/test_rspamd_peer.py --holdfast build/holdfast
      (the binary is not used; the flag is accepted like every system test's)
Exit: 0 pass, 1 fail, 77 skip (rspamd not installed).
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hfrspamd  # noqa: E402
from hfsys import check, fail, log  # noqa: E402


def envelope(tag):
    return dict(sender="alice@example.org", rcpts=["bob@localhost"], ip="127.0.0.1",
                helo="client.example.org", queue_id=f"hfpeer-{tag}-{os.getpid()}")


def body(args):
    why = hfrspamd.have_rspamd()
    if why:
        hfsys.skip(why)
    with hfsys.TempDir(prefix="hfrspamd-peer-", keep=args.keep) as tmp:
        rs = hfrspamd.Rspamd(tmp.sub("rspamd"))
        try:
            rs.start()
        except hfrspamd.RspamdError as e:
            fail(str(e))
        try:
            run_checks(rs)
        except BaseException:
            log("rspamd log tail:\n" + rs.log_tail())
            raise
        finally:
            pid = rs.proc.pid if rs.proc else None
            rs.stop()
        if pid is not None:
            alive = []
            for _ in range(50):
                alive = [p for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pid]
                if not alive:
                    break
                time.sleep(0.1)
            check(not alive, "stop(): no process of the private rspamd's group is left", repr(alive))

        # Back on the same port (a scanner outage and its end, as the filter
        # stage's test does it).
        port = rs.port
        try:
            rs.start(port=port)
            check(rs.port == port, f"restarted on the same port {port} in {rs.started_in:.1f} s")
            status, reply, raw = rs.check(hfrspamd.clean_message("again"), **envelope("again"))
            check(status == 200 and reply.get("action") == "no action", "after the restart: clean -> 'no action'",
                  raw[:500])
        except hfrspamd.RspamdError as e:
            fail(str(e))
        finally:
            rs.stop()


def _pgid(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def run_checks(rs):
    log(f"== private rspamd on {rs.address}: started in {rs.started_in:.1f} s ==")
    check(rs.started_in < hfrspamd.START_TIMEOUT, "started within the start timeout")
    with open(os.path.join(rs.dir, "rspamd.conf")) as f:
        conf = f.read()
    check(f'bind_socket = "127.0.0.1:{rs.port}"' in conf and conf.count("bind_socket") == 1,
          "the only worker listens on loopback")

    status, reply, raw = rs.check(hfrspamd.gtube_message(), **envelope("gtube"))
    check(status == 200 and isinstance(reply, dict), "GTUBE: HTTP 200 with a JSON object", raw[:500])
    check(reply.get("action") == "reject", "GTUBE: action 'reject'", repr(reply))
    check("GTUBE" in reply.get("symbols", {}), "GTUBE: symbol GTUBE", repr(reply.get("symbols")))

    status, reply, raw = rs.check(hfrspamd.clean_message(), **envelope("clean"))
    check(status == 200 and isinstance(reply, dict), "clean: HTTP 200 with a JSON object", raw[:500])
    check(reply.get("action") == "no action", "clean: action 'no action'", repr(reply))
    check(reply.get("score", 99) < 4, f"clean: score {reply.get('score')} below the greylist threshold 4")
    add = reply.get("milter", {}).get("add_headers", {})
    check("X-Spamd-Result" in add, "clean: milter.add_headers has X-Spamd-Result", repr(add))
    check(add.get("X-Spam-Status", {}).get("value", "").startswith("No"),
          "clean: X-Spam-Status: No ...", repr(add.get("X-Spam-Status")))

    status, reply, raw = rs.check(hfrspamd.marked_message(hfrspamd.ADD_HEADER_MARK, "addh"), **envelope("addh"))
    check(status == 200 and reply.get("action") == "add header", "add-header marker: action 'add header'",
          raw[:800])
    check("HOLDFAST_TEST_ADD_HEADER" in reply.get("symbols", {}), "add-header marker: its symbol")
    add = reply.get("milter", {}).get("add_headers", {})
    check(add.get("X-Spam-Status", {}).get("value", "").startswith("Yes"),
          "add-header marker: X-Spam-Status: Yes ...", repr(add.get("X-Spam-Status")))

    status, reply, raw = rs.check(hfrspamd.marked_message(hfrspamd.REWRITE_SUBJECT_MARK, "rewr"),
                                  **envelope("rewr"))
    check(status == 200 and reply.get("action") == "rewrite subject",
          "rewrite-subject marker: action 'rewrite subject'", raw[:800])
    check(reply.get("subject") == f"***SPAM*** {hfrspamd.REWRITE_SUBJECT_MARK} lunch tomorrow (rewr)",
          "rewrite-subject marker: the new subject", repr(reply.get("subject")))

    env = envelope("null")
    env.update(sender="", ip="::1")
    status, reply, raw = rs.check(hfrspamd.clean_message("null"), **env)
    check(status == 200 and reply.get("action") == "no action",
          "null sender (From: <>) from an IPv6 client: 'no action'", raw[:800])

    env = envelope("remote")
    env.update(ip="203.0.113.5", helo="mail.example.net")  # not a local network: the full rule set runs
    status, reply, raw = rs.check(hfrspamd.clean_message("remote"), **env)
    check(status == 200 and reply.get("action") == "no action",
          "clean from a remote (TEST-NET-3) client: 'no action'", raw[:800])
    status, reply, raw = rs.check(hfrspamd.gtube_message("remote"), **env)
    check(status == 200 and reply.get("action") == "reject", "GTUBE from a remote client: 'reject'", raw[:800])

    # An unknown path: rspamd answers 5xx, which holdfast treats as temporary.
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", rs.port, timeout=10)
    conn.request("POST", "/nosuchcommand", body=b"x", headers={"Connection": "close"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    check(500 <= resp.status < 600, f"unknown path: HTTP {resp.status} (5xx)")

    # Every scan was logged with its DNS request count: all must be 0.
    time.sleep(0.3)
    with open(rs.log_file, errors="replace") as f:
        text = f.read()
    counts = [int(n) for n in re.findall(r"dns req: (\d+)", text)]
    check(len(counts) >= 7, f"rspamd logged the scans ({len(counts)})")
    check(all(n == 0 for n in counts), "no scan made a DNS request", repr(counts))


if __name__ == "__main__":
    hfsys.run_test(body, __doc__)
