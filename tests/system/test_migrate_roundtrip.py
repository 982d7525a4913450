#!/usr/bin/env python3
"""`holdfast export maildir|mbox` and `holdfast import maildir` against the real
binary: the round trips of docs/migration.md.

"Identical" means: the bytes of every stored file (as `holdfast deliver` stored
them, with its Return-Path:/Delivered-To: lines -- export and import add or
remove nothing), compared per message, and for Maildir also the directory
(new/ or cur/) and the flags. The one exception is mbox: a message without a
final newline comes back with one (LF, or CRLF for a CRLF message), because
an mbox cannot hold it otherwise; and mbox carries no flags.

Cases:
  * tricky messages delivered to alice (`From ` body lines after an empty
    line, `>From`/`>>From`, CRLF, no final newline, 8-bit, NUL, a long line);
    a mail client marks some read/replied (renames into cur/ with :2,FLAGS)
  * export maildir -> a standard Maildir: tmp/ empty, each file's bytes and
    name as stored -> import maildir into bob: the same messages, bytes, dirs
    and flags; a re-run imports nothing; importing the export back into alice
    recognises every message (nothing doubled)
  * export mbox -> import mbox into carol: the same bytes (with the newline
    exception above)
  * a Courier/Dovecot-style Maildir made by hand (foreign names, ",S=" sizes,
    flags, a tmp/ leftover, a Maildir++ folder .Sent) -> import maildir into
    dave: flags kept, tmp/ ignored, the folder named on stderr, source unchanged
  * a Maildir that dovecot-lda wrote and doveadm flagged (Debian's
    dovecot-core, a private instance as in test_dovecot_interop.py; skipped
    with a note if Dovecot is not installed) -> import maildir into frank:
    bytes and flags (S, RS+F, D) kept, source unchanged, re-run imports nothing
  * exit codes: DEST not empty / mbox exists 73, unknown user 67, a directory
    that is not a Maildir 66; fsck clean everywhere

Run:  /usr/bin/python3 tests/system/test_migrate_roundtrip.py --holdfast build/holdfast
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
from hfsys import check, log  # noqa: E402

EX_NOINPUT, EX_NOUSER, EX_CANTCREAT = 66, 67, 73
SUMMARY = re.compile(rb"^imported (\d+), already there (\d+), skipped (\d+)", re.M)

MESSAGES = [
    b"Subject: plain\n\nhello\n",
    b"Subject: From lines\n\nfirst\n\nFrom the desk of Bob, after an empty line\n>From once\n>>From twice\nFrom\n",
    b"Subject: crlf\r\n\r\nline one\r\n\r\nFrom inside\r\nend\r\n",
    b"Subject: no final newline\n\nthe end",
    b"Subject: 8bit and NUL\n\n" + bytes(range(1, 256)).replace(b"\n", b"") + b"\0\n" + b"y" * 3000 + b"\n",
    b"Subject: blank lines are content\n\n\n\n",
    b"Subject: crlf, no final newline\r\n\r\nlast",
]


def summary(r):
    m = SUMMARY.search(r.stdout)
    if not m:
        hfsys.fail(f"no summary line in stdout: {r.stdout!r}\nstderr: {r.stderr!r}")
    return tuple(int(x) for x in m.groups())


def messages(hf, user):
    """Sorted [(bytes, 'new'|'cur', flags)] of USER's mailbox, each file
    checked against its index sha256 by fsck later."""
    maildir = os.path.join(hf.data, "mail", user)
    out = []
    for e in hf.mailbox_list(user):
        with open(os.path.join(maildir, e["name"]), "rb") as f:
            out.append((f.read(), e["name"].split("/")[0], e["flags"]))
    return sorted(out)


def tree(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for n in files:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


def with_final_newline(b):
    if b.endswith(b"\n"):
        return b
    i = b.find(b"\n")
    crlf = i > 0 and b[i - 1:i] == b"\r"
    return b + (b"\r\n" if crlf and not b.endswith(b"\r") else b"\n")


def expected_from_source(maildir):
    """Sorted [(bytes, dir, flags)] import maildir must make of MAILDIR's files."""
    out = []
    for d in ("new", "cur"):
        for n in os.listdir(os.path.join(maildir, d)):
            if n.startswith("."):
                continue
            with open(os.path.join(maildir, d, n), "rb") as f:
                b = f.read()
            info = n.split(":", 1)[1] if ":" in n else ""
            flags = "".join(sorted(set(c for c in info[2:] if "A" <= c <= "Z"))) if info.startswith("2,") else ""
            where = "new" if d == "new" and not flags else "cur"
            out.append((b, where, flags))
    return sorted(out)


def dovecot_part(args, tmp, hf):
    """A Maildir that Dovecot wrote (dovecot-lda, flags set with doveadm)."""
    missing = hfsys.have_dovecot()
    if missing:
        log(f"  SKIP the Dovecot part: {', '.join(missing)} missing (scripts/bootstrap.sh installs them)")
        return
    log("a Maildir written by dovecot-lda, flagged with doveadm -> import maildir")
    mu = hfsys.mail_user()
    dvdata = tmp.sub("dvdata")
    os.makedirs(dvdata)
    mu.chown_tree(dvdata)
    hf2 = hfsys.Holdfast(args.holdfast, dvdata, mu, scratch=tmp.sub("bin"))
    hf2.user_add("eve", "pw-eve")
    with hfsys.Dovecot(tmp.sub("dovecot"), dvdata, mu) as dv:
        for i in range(1, 5):
            eol = "\r\n" if i == 3 else "\n"
            msg = eol.join([f"From: lda@example.net", "To: eve@example.org", f"Subject: lda {i}", "",
                            "From the body, after an empty line", f"message {i}", ""]).encode()
            dv.lda("eve", msg, "lda-sender@example.net")
        dv.doveadm("flags", "add", "\\Seen", "mailbox", "INBOX", "uid", "1", "-u", "eve")
        dv.doveadm("flags", "add", "\\Seen \\Answered \\Flagged", "mailbox", "INBOX", "uid", "2", "-u", "eve")
        dv.doveadm("flags", "add", "\\Draft", "mailbox", "INBOX", "uid", "3", "-u", "eve")
    src = os.path.join(dvdata, "mail", "eve")
    want = expected_from_source(src)
    check(len(want) == 4 and sorted(f for _, _, f in want) == ["", "D", "FRS", "S"],
          "Dovecot wrote 4 messages with flags S, FRS, D and none", repr([(d, f) for _, d, f in want]))
    before = tree(src)
    hf.user_add("frank", "pw-frank")
    r = hf.run("import", "maildir", src, "-u", "frank")
    check(summary(r) == (4, 0, 0), "4 imported from Dovecot's Maildir", r.stdout.decode() + r.stderr.decode())
    check(messages(hf, "frank") == want, "byte for byte, with Dovecot's flags", repr(messages(hf, "frank")))
    check(tree(src) == before, "Dovecot's Maildir is unchanged")
    r = hf.run("import", "maildir", src, "-u", "frank")
    check(summary(r) == (0, 4, 0), "a re-run imports nothing", r.stdout.decode())
    hf.fsck("frank")


def body(args):
    with hfsys.TempDir(prefix="hfmigrate-", keep=args.keep) as tmp:
        data = tmp.sub("data")
        hf = hfsys.Holdfast(args.holdfast, data)
        for u in ("alice", "bob", "carol", "dave"):
            hf.user_add(u, "pw-" + u)

        log("deliver the tricky messages to alice; a mail client flags some")
        for m in MESSAGES:
            hf.deliver("alice", m)
        alice_dir = os.path.join(data, "mail", "alice")
        entries = hf.mailbox_list("alice")
        check(len(entries) == len(MESSAGES), f"{len(MESSAGES)} delivered")
        for e, flags in zip(entries, ["S", "RS", "", None, "FS"]):
            if flags is None:
                continue
            base = os.path.basename(e["name"])
            os.rename(os.path.join(alice_dir, e["name"]), os.path.join(alice_dir, "cur", base + ":2," + flags))
        alice = messages(hf, "alice")
        check(sorted(f for _, d, f in alice if d == "cur") == ["", "FS", "RS", "S"],
              "alice's index sees the flags", repr([(d, f) for _, d, f in alice]))

        log("export maildir -> import maildir")
        exp = tmp.sub("alice.maildir")
        r = hf.run("export", "maildir", "-u", "alice", exp)
        check(r.stdout.strip() == f"exported {len(MESSAGES)}".encode(), "export reports every message",
              r.stdout.decode())
        check(os.listdir(os.path.join(exp, "tmp")) == [], "the export's tmp/ is empty")
        files = tree(exp)
        stored = {e["name"]: open(os.path.join(alice_dir, e["name"]), "rb").read() for e in hf.mailbox_list("alice")}
        check(files == stored, "the export holds every file under its name (flags included), byte for byte",
              f"{sorted(files)} vs {sorted(stored)}")
        r = hf.run("import", "maildir", exp, "-u", "bob")
        check(summary(r) == (len(MESSAGES), 0, 0), "all imported into bob", r.stdout.decode())
        check(messages(hf, "bob") == alice, "bob has alice's messages: same bytes, same new/cur, same flags")
        r = hf.run("import", "maildir", exp, "-u", "bob")
        check(summary(r) == (0, len(MESSAGES), 0), "a re-run imports nothing", r.stdout.decode())
        r = hf.run("import", "maildir", exp, "-u", "alice")
        check(summary(r) == (0, len(MESSAGES), 0), "imported back into alice: all recognised",
              r.stdout.decode())
        check(messages(hf, "alice") == alice, "alice unchanged")
        check(tree(exp) == files, "the import left its source unchanged")
        r = hf.run("export", "maildir", "-u", "alice", exp, expect=EX_CANTCREAT)
        check(b"not empty" in r.stderr, "export into a non-empty directory is refused (73)", r.stderr.decode())

        log("export mbox -> import mbox")
        mbox = tmp.sub("alice.mbox")
        r = hf.run("export", "mbox", "-u", "alice", mbox)
        check(r.stdout.strip() == f"exported {len(MESSAGES)}, 2 given a final newline".encode(),
              "export mbox reports the messages and the newlines it added", r.stdout.decode())
        with open(mbox, "rb") as f:
            text = f.read()
        check(text.startswith(b"From sender@example.org "), "envelope sender from Return-Path:", repr(text[:80]))
        check(b"\n>From the desk of Bob" in text and b"\n>>From once\n>>>From twice\n" in text,
              "mboxrd quoting of >*From lines")
        r = hf.run("import", "mbox", mbox, "-u", "carol")
        check(summary(r) == (len(MESSAGES), 0, 0), "all imported into carol", r.stdout.decode())
        want = sorted((with_final_newline(b), "new", "") for b, _, _ in alice)
        check(messages(hf, "carol") == want,
              "carol has alice's messages byte for byte (a missing final newline added)")
        r = hf.run("export", "mbox", "-u", "alice", mbox, expect=EX_CANTCREAT)
        with open(mbox, "rb") as f:
            check(f.read() == text, "an existing mbox is refused (73) and not touched")

        log("a Courier/Dovecot-style Maildir with flags and a folder")
        src = tmp.sub("courier")
        for d in ("tmp", "new", "cur", ".Sent/tmp", ".Sent/new", ".Sent/cur"):
            os.makedirs(os.path.join(src, d))
        foreign = {
            "new/1700000000.M100P7.mx.example.org,S=25": (b"Subject: new one\n\nunread\n", "new", ""),
            "cur/1700000001.M200P7.mx.example.org,S=24:2,S": (b"Subject: seen\n\nread it\n", "cur", "S"),
            "cur/1700000002.M300P7.mx.example.org:2,FRS": (b"Subject: answered\r\n\r\nx\r\n", "cur", "FRS"),
            "cur/1700000003.M400P7.mx.example.org:2,DT": (b"Subject: draft, trashed\n\n", "cur", "DT"),
            "cur/1700000004.M500P7.mx.example.org:2,Sab": (b"Subject: keywords\n\nk\n", "cur", "S"),
            "tmp/1700000005.M600P7.mx.example.org": (b"Subject: never delivered\n\n", None, None),
            ".Sent/cur/1700000006.M700P7.mx.example.org:2,S": (b"Subject: sent\n\n", None, None),
        }
        for rel, (b, _, _) in foreign.items():
            with open(os.path.join(src, rel), "wb") as f:
                f.write(b)
        before = tree(src)
        r = hf.run("import", "maildir", src, "-u", "dave")
        check(summary(r) == (5, 0, 0), "5 imported (tmp/ and .Sent not)", r.stdout.decode())
        check(b".Sent" in r.stderr and b"INBOX" in r.stderr, "the Maildir++ folder is named on stderr",
              r.stderr.decode())
        want = sorted((b, d, f) for b, d, f in foreign.values() if d is not None)
        check(messages(hf, "dave") == want, "bytes, new/cur and flags (S R F T D) kept; keywords dropped",
              repr(messages(hf, "dave")))
        check(tree(src) == before, "the source Maildir is unchanged")

        dovecot_part(args, tmp, hf)

        log("exit codes")
        hf.run("export", "maildir", "-u", "nobody", tmp.sub("x"), expect=EX_NOUSER)
        hf.run("import", "maildir", tmp.sub("courier", ".Sent", "cur"), "-u", "dave", expect=EX_NOINPUT)
        hf.run("import", "maildir", tmp.sub("does-not-exist"), "-u", "dave", expect=EX_NOINPUT)
        hf.fsck("alice", "bob", "carol", "dave")
        log("  ok   fsck clean")


if __name__ == "__main__":
    hfsys.run_test(body, __doc__)
