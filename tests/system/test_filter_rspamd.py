#!/usr/bin/env python3
"""The rspamd filter step end to end: a real rspamd, `holdfast serve`, real LMTP.

A private rspamd (hfrspamd.py: loopback, no network lookups, the packaged
rules plus two test symbols) and `holdfast serve` with

    [[filters.chain]]
    type = "rspamd"
    address = "127.0.0.1:PORT"
    on_reject = "junk"          # then "quarantine" in part (c)
    junk_folder = "Junk"

Messages go in over LMTP with Python's smtplib.LMTP (hflmtp.lmtp_send, which
reads every per-recipient reply).

(a) on_reject = "junk": a GTUBE message to alice and a clean one to alice.
    The GTUBE one lands in DATA/mail/alice/.Junk/{new,cur} (Maildir++), not
    in the INBOX; the clean one in DATA/mail/alice/{new,cur}, not in .Junk.
    Exactly one copy each; the body bytes after holdfast's trace headers are
    the bytes sent (rspamd's milter headers may be added on top: see (b)).
(b) "add header": the ADD_HEADER_MARK message lands in the INBOX with
    rspamd's X-Spam-Status: Yes header added (milter.add_headers) and the
    header rspamd asked to remove not duplicated; "rewrite subject": the
    REWRITE_SUBJECT_MARK message lands in the INBOX with
    Subject: ***SPAM*** ...
(c) on_reject = "quarantine" (server restarted on the same data): a second
    GTUBE message is in no mailbox folder, and `holdfast queue quarantine
    list` names it (by its token in the listing or via `show ID`) with a
    reason that mentions rspamd/reject.
(d) rspamd stopped: a clean message is still accepted (250, it is spooled),
    is NOT quarantined (a scanner outage is temporary, not poison) and is
    delivered to the INBOX once rspamd is back (tempfail_delay lowered in the
    config so the retry comes within the test).

Run:  /usr/bin/python3 tests/system/test_filter_rspamd.py --holdfast build/holdfast
Exit: 0 pass, 1 fail, 77 skip (rspamd not installed).
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
import hfrspamd  # noqa: E402
from hfsys import check, fail, log  # noqa: E402

SENDER = "sender@example.org"
FILTER_TIMEOUT = 30.0  # seconds from the 250 to the message's final place


def config(rspamd_address, on_reject):
    # tempfail_delay short for (d).
    return f"""
[filters]
tempfail_delay_ms = 500

[[filters.chain]]
type = "rspamd"
address = "{rspamd_address}"
on_reject = "{on_reject}"
junk_folder = "Junk"
timeout_ms = 10000
"""


def maildir_files(data, user, folder=""):
    """{path: bytes} of every message file in the user's folder ('' = INBOX,
    'Junk' = the Maildir++ folder .Junk), new/ and cur/ only (never tmp/)."""
    base = os.path.join(data, "mail", user, "." + folder if folder else "")
    out = {}
    for sub in ("new", "cur"):
        d = os.path.join(base, sub)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[p] = f.read()
    return out


def with_token(files, tok: bytes):
    return {p: c for p, c in files.items() if tok in c}


def wait_placed(data, user, tok: bytes, timeout=FILTER_TIMEOUT):
    """Wait until the message with tok is in the INBOX or in .Junk; returns
    (inbox hits, junk hits)."""
    deadline = time.monotonic() + timeout
    while True:
        inbox = with_token(maildir_files(data, user), tok)
        junk = with_token(maildir_files(data, user, "Junk"), tok)
        if inbox or junk or time.monotonic() > deadline:
            return inbox, junk
        time.sleep(0.1)


def token(tag):
    return f"TOK-{tag}-{os.getpid()}-{time.monotonic_ns()}".encode()


def tagged(msg: bytes, tok: bytes) -> bytes:
    """msg with an X-Token header first (the filter sees the same message)."""
    return b"X-Token: " + tok + b"\r\n" + msg


def send(port, rcpt, body):
    c = hflmtp.connect(port)
    try:
        rcpt_replies, final = hflmtp.lmtp_send(c, SENDER, [rcpt], body)
    finally:
        c.quit()
    code = final.get(rcpt, (None, b""))[0]
    check(code == 250, f"LMTP: 250 after DATA for {rcpt}", repr((rcpt_replies, final)))


def quarantine_list(hf):
    r = hf.run("queue", "quarantine", "list")
    return r.stdout.decode(errors="replace")


def quarantined_with(hf, tok: bytes):
    """`queue quarantine show` of the entry whose headers hold tok, or None."""
    for line in quarantine_list(hf).splitlines()[1:]:
        show = hf.run("queue", "quarantine", "show", line.split("\t")[0]).stdout
        if tok in show:
            return show.decode(errors="replace")
    return None


def part_a(hf, srv):
    log("\n== (a) on_reject = junk: GTUBE -> .Junk, clean -> INBOX ==")
    tok_spam, tok_ham = token("gtube"), token("clean")
    send(srv.port, "alice@localhost", tagged(hfrspamd.gtube_message(), tok_spam))
    send(srv.port, "alice@localhost", tagged(hfrspamd.clean_message(), tok_ham))
    inbox, junk = wait_placed(hf.data, "alice", tok_spam)
    check(len(junk) == 1 and not inbox, "GTUBE: exactly one copy, in alice/.Junk, none in the INBOX",
          f"inbox={list(inbox)} junk={list(junk)}\n{srv.log_tail()}")
    inbox, junk = wait_placed(hf.data, "alice", tok_ham)
    check(len(inbox) == 1 and not junk, "clean: exactly one copy, in alice's INBOX, none in .Junk",
          f"inbox={list(inbox)} junk={list(junk)}\n{srv.log_tail()}")
    stored = next(iter(inbox.values()))
    sent = hflmtp.smtplib_wire_body(tagged(hfrspamd.clean_message(), tok_ham))
    # Clean mail is not rewritten: trace headers, then the message as sent.
    check(stored.endswith(sent), "clean: the message is stored byte for byte after the trace headers")
    check(srv.grep(r"event=spool filtered .* trail=\"rspamd: "), "the server log has the rspamd step's trail")


def part_b(hf, srv):
    log("\n== (b) add header / rewrite subject ==")
    tok = token("addh")
    send(srv.port, "alice@localhost", tagged(hfrspamd.marked_message(hfrspamd.ADD_HEADER_MARK), tok))
    inbox, junk = wait_placed(hf.data, "alice", tok)
    check(len(inbox) == 1 and not junk, "add header: delivered to the INBOX", f"{list(inbox)} {list(junk)}")
    msg = next(iter(inbox.values()))
    head = msg[:msg.index(b"\r\n\r\n")]
    check(b"\nX-Spam-Status: Yes" in head, "add header: X-Spam-Status: Yes, score=... added", head.decode(errors="replace"))
    check(head.count(b"\nX-Spam-Status:") == 1, "add header: exactly one X-Spam-Status header")

    tok = token("rewr")
    send(srv.port, "alice@localhost", tagged(hfrspamd.marked_message(hfrspamd.REWRITE_SUBJECT_MARK), tok))
    inbox, junk = wait_placed(hf.data, "alice", tok)
    check(len(inbox) == 1 and not junk, "rewrite subject: delivered to the INBOX", f"{list(inbox)} {list(junk)}")
    msg = next(iter(inbox.values()))
    head = msg[:msg.index(b"\r\n\r\n")]
    check(b"\nSubject: ***SPAM*** " + hfrspamd.REWRITE_SUBJECT_MARK.encode() in head,
          "rewrite subject: Subject: ***SPAM*** ...", head.decode(errors="replace"))
    check(head.count(b"\nSubject:") == 1, "rewrite subject: exactly one Subject header")


def part_c(hf, binary, tmp, rs):
    log("\n== (c) on_reject = quarantine ==")
    hflmtp.write_config(hf.data, config(rs.address, "quarantine"))
    with hflmtp.Server(binary, hf.data, tmp.sub("serve-q.log")) as srv:
        srv.start()
        tok = token("gtube-q")
        send(srv.port, "alice@localhost", tagged(hfrspamd.gtube_message("q"), tok))
        deadline = time.monotonic() + FILTER_TIMEOUT
        show = None
        while time.monotonic() < deadline and show is None:
            show = quarantined_with(hf, tok)
            time.sleep(0.2)
        check(show is not None, "GTUBE: `holdfast queue quarantine list`/`show` has it", quarantine_list(hf))
        reason = next((ln for ln in show.splitlines() if ln.startswith("reason:")), "")
        check("rspamd" in reason and "reject" in reason, f"the quarantine reason names rspamd's reject ({reason!r})")
        inbox, junk = wait_placed(hf.data, "alice", tok, timeout=2)
        check(not inbox and not junk, "GTUBE: in no mailbox folder", f"{list(inbox)} {list(junk)}")
        rc, _ = srv.stop()
        check(rc == 0, "server exits 0 on SIGTERM")


def part_d(hf, binary, tmp, rs):
    log("\n== (d) rspamd down: temporary, not poison ==")
    hflmtp.write_config(hf.data, config(rs.address, "junk"))
    rs.stop()
    with hflmtp.Server(binary, hf.data, tmp.sub("serve-d.log")) as srv:
        srv.start()
        tok = token("down")
        send(srv.port, "alice@localhost", tagged(hfrspamd.clean_message("down"), tok))
        time.sleep(3)  # several retries' worth with tempfail_delay_ms = 500
        inbox, junk = wait_placed(hf.data, "alice", tok, timeout=0.5)
        check(not inbox and not junk, "while rspamd is down the message is held, not delivered unscanned")
        check(quarantined_with(hf, tok) is None, "... and not quarantined")
        rs.start(port=int(rs.address.rsplit(":", 1)[1]))  # back where the config points
        inbox, junk = wait_placed(hf.data, "alice", tok, timeout=60)
        check(len(inbox) == 1 and not junk, "once rspamd is back, it is delivered to the INBOX, once")
        rc, _ = srv.stop()
        check(rc == 0, "server exits 0 on SIGTERM")


def main(args):
    why = hfrspamd.have_rspamd()
    if why:
        hfsys.skip(why)
    with hfsys.TempDir(prefix="hffrspamd-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        hf.user_add("alice", "pw-a")
        rs = hfrspamd.Rspamd(tmp.sub("rspamd"))
        try:
            try:
                rs.start()
            except hfrspamd.RspamdError as e:
                fail(str(e))
            hflmtp.write_config(data, config(rs.address, "junk"))
            srv = hflmtp.Server(binary, data, tmp.sub("serve.log"))
            try:
                srv.start()
                part_a(hf, srv)
                part_b(hf, srv)
                rc, _ = srv.stop()
                check(rc == 0, "server exits 0 on SIGTERM")
            except BaseException:
                log(f"\n--- server log (last 60 lines) ---\n{srv.log_tail(60)}")
                log(f"\n--- rspamd log ---\n{rs.log_tail()}")
                raise
            finally:
                srv.kill9()
            part_c(hf, binary, tmp, rs)
            part_d(hf, binary, tmp, rs)
        finally:
            rs.stop()


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
