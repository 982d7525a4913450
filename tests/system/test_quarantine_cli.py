#!/usr/bin/env python3
"""`holdfast queue quarantine list|show|release|delete` against a running
server: nothing is dropped silently, release delivers, delete is
audited.

Set-up: user alice; a filter chain of one command that answers
`quarantine held by the test` for messages with the marker HOLD-ME, and
`discard spam by the test` for DROP-ME (logged, not silent).

1. Three messages over LMTP: two HOLD-ME, one clean, one DROP-ME. The clean
   one reaches the INBOX; `queue quarantine list` shows exactly the two
   held ones with the reason "test: quarantine held by the test"; `show ID` prints
   the reason, the envelope (sender, recipient) and the headers; the
   DROP-ME one is in no mailbox and the log has `discarded ... reason=`.
2. `release ID` of the first: exit 0; within seconds it is in alice's INBOX
   (filters skipped: it still holds HOLD-ME), exactly once, the list no
   longer shows it, quarantine/audit.log has `event=release id=ID by=`.
3. `delete ID` of the second: exit 0; gone from the list and from disk, in
   no mailbox, audit.log has `event=delete id=ID by=... from=<...>`.
4. Errors: `show`/`release`/`delete` of an unknown id: exit 67 with a
   message; of a malformed id: exit 64.
5. Restart: nothing comes back (the released one is in the INBOX once, the
   deleted one nowhere); SIGTERM exit 0.

Run:  /usr/bin/python3 tests/system/test_quarantine_cli.py --holdfast build/holdfast
Exit: 0 pass, 1 fail.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hflmtp  # noqa: E402
from hfsys import check, log  # noqa: E402
from hflmtp import CRLF  # noqa: E402

FILTER = """m=$(cat)
case "$m" in *HOLD-ME*) echo 'quarantine held by the test' ;; *DROP-ME*) echo 'discard spam by the test' ;; esac
exit 0
"""


def msg(tok, marker):
    return (b"Subject: quarantine cli " + tok + CRLF + b"X-Token: " + tok + CRLF + CRLF +
            marker + CRLF)


def tokens_in_inbox(hf):
    out = []
    for _, content in hflmtp.read_mailbox(hf, "alice"):
        m = re.search(rb"X-Token: (\S+)", content)
        out.append(m.group(1) if m else b"?")
    return out


def qlist(hf):
    return [ln.split("\t") for ln in hf.run("queue", "quarantine", "list").stdout.decode().splitlines()[1:]]


def main(args):
    with hfsys.TempDir(prefix="hfqcli-", keep=args.keep) as tmp:
        binary = hflmtp.private_binary(args.holdfast, tmp.sub("bin"))
        data = tmp.sub("data")
        hf = hfsys.Holdfast(binary, data)
        hf.user_add("alice", "pw")
        script = tmp.sub("filter.sh")
        with open(script, "w") as f:
            f.write(FILTER)
        hflmtp.write_config(data, f'[[filters.chain]]\ntype = "command"\nname = "test"\ncommand = ["/bin/sh", "{script}"]\n')
        srv = hflmtp.Server(binary, data, tmp.sub("serve.log"))
        try:
            srv.start()
            conn = hflmtp.connect(srv.port)
            toks = {k: f"QC-{os.getpid()}-{k}".encode() for k in ("held1", "held2", "clean", "drop")}
            markers = {"held1": b"HOLD-ME", "held2": b"HOLD-ME", "clean": b"hello", "drop": b"DROP-ME"}
            for k, tok in toks.items():
                _, final = hflmtp.lmtp_send(conn, "sender@example.org", ["alice@localhost"], msg(tok, markers[k]))
                check(final.get("alice@localhost", (None,))[0] == 250, f"{k}: 250")
            conn.quit()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (len(qlist(hf)) < 2 or toks["clean"] not in tokens_in_inbox(hf)):
                time.sleep(0.1)
            entries = qlist(hf)
            check(len(entries) == 2, f"two messages in the quarantine ({len(entries)})")
            check(all(e[-1] == "test: quarantine held by the test" for e in entries), f"with the filter's reason ({entries})")
            check(tokens_in_inbox(hf) == [toks["clean"]], "only the clean one in the INBOX")
            check(srv.grep(r"event=spool discarded \S+ from=<sender@example.org> reason=\"test: discard spam by the test\""),
                  "the discarded one is logged with its reason")
            by_tok = {}
            for e in entries:
                show = hf.run("queue", "quarantine", "show", e[0]).stdout.decode()
                check("reason:      test: quarantine held by the test" in show and "from:        <sender@example.org>" in show
                      and "recipient:   <alice@localhost> user=alice" in show, f"show {e[0]}: reason, envelope")
                tok = re.search(r"X-Token: (\S+)", show).group(1).encode()
                by_tok[tok] = e[0]
            rel, dele = by_tok[toks["held1"]], by_tok[toks["held2"]]

            r = hf.run("queue", "quarantine", "release", rel)
            check("released" in r.stdout.decode(), f"release {rel}: exit 0, says so")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and toks["held1"] not in tokens_in_inbox(hf):
                time.sleep(0.1)
            inbox = tokens_in_inbox(hf)
            check(inbox.count(toks["held1"]) == 1, "the released message is in the INBOX once (filters skipped)")
            check([e[0] for e in qlist(hf)] == [dele], "the list no longer shows the released one")

            r = hf.run("queue", "quarantine", "delete", dele)
            check("deleted" in r.stdout.decode(), f"delete {dele}: exit 0")
            check(qlist(hf) == [], "the quarantine is empty")
            check(not os.path.exists(os.path.join(data, "quarantine", dele + ".q")), "its file is gone")
            with open(os.path.join(data, "quarantine", "audit.log")) as f:
                audit = f.read()
            check(re.search(rf"event=release id={rel} by=\S+", audit) is not None, "audit.log: the release")
            check(re.search(rf"event=delete id={dele} by=\S+ from=<sender@example.org> size=\d+", audit) is not None,
                  "audit.log: the delete, with sender and size")

            unknown = "01M84WXP1XR5YSYB5D0ZGECP8N"
            for cmd in ("show", "release", "delete"):
                hf.run("queue", "quarantine", cmd, unknown, expect=67)
                hf.run("queue", "quarantine", cmd, "not-an-id", expect=64)
            check(True, "unknown ids: exit 67; malformed: exit 64")

            check(srv.stop()[0] == 0, "SIGTERM: exit 0")
            srv.start()
            time.sleep(3)  # a release poll and then some
            inbox = tokens_in_inbox(hf)
            check(sorted(inbox) == sorted([toks["clean"], toks["held1"]]), f"after a restart nothing came back ({inbox})")
            check(srv.stop()[0] == 0, "SIGTERM: exit 0")
        except BaseException:
            log(f"\n--- server log (last 30 lines) ---\n{srv.log_tail(30)}")
            raise
        finally:
            srv.kill9()


if __name__ == "__main__":
    hfsys.run_test(main, __doc__)
