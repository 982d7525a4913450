#!/usr/bin/env python3
"""`holdfast import mbox FILE -u USER` against the real binary (docs/migration.md).

Cases:
  * an mboxrd file with the quirks -- leading empty lines, '>From ' quoted at
    several levels, 'From ' in a body not after an empty line, empty lines
    that are content, a CRLF message, 8-bit and NUL bytes, a long line, no
    final newline -- is imported byte for byte (compared through
    `mailbox list --json` sha256s and the files themselves); the source file
    is unchanged; a re-run imports nothing ("already there"); fsck is clean
  * a message removed by another Maildir tool (a mail client deleting it) is
    not brought back by a re-run
  * --format=mboxo keeps '>From ' lines as they are
  * exit codes: missing file and a directory 66, unknown user 67, a file
    that is not an mbox 65 (nothing imported), a message over
    delivery.max_message_size 65 with the others imported and the final line
    naming the reason
  * a bigger mbox (2,000 messages): the import is killed with SIGKILL at a
    random moment, three times in a row, then run to the end: every message
    is in the mailbox exactly once, byte-identical, and fsck is clean

Run:  /usr/bin/python3 tests/system/test_import_mbox.py --holdfast build/holdfast
"""

import collections
import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
from hfsys import check, log  # noqa: E402

EX_NOINPUT = 66
SUMMARY = re.compile(rb"^imported (\d+), already there (\d+), skipped (\d+)", re.M)


def mboxrd_quote(content: bytes) -> bytes:
    """What an mboxrd writer does: every line matching >*From  gets one more '>'."""
    return re.sub(rb"(?m)^(>*From )", rb">\1", content)


def write_mbox(path, messages, quote=mboxrd_quote, prefix=b""):
    """messages: [(envelope line without 'From ', content)]. Each message is
    followed by an empty line, in the line ending of its envelope line."""
    with open(path, "wb") as f:
        f.write(prefix)
        for i, (env, content, eol) in enumerate(messages):
            f.write(b"From " + env + eol + quote(content))
            if i + 1 < len(messages) or content.endswith(b"\n"):
                # The writer makes sure a message ends in a line end before the separator.
                f.write((b"" if content.endswith(b"\n") else eol) + eol)


def summary(r):
    m = SUMMARY.search(r.stdout)
    if not m:
        hfsys.fail(f"no summary line in stdout: {r.stdout!r}\nstderr: {r.stderr!r}")
    return tuple(int(x) for x in m.groups())


def stored(hf, user):
    """Counter of the bytes of every message USER's mailbox lists; checks
    each file against the sha256 the index has for it."""
    maildir = os.path.join(hf.data, "mail", user)
    out = collections.Counter()
    bad = []
    for e in hf.mailbox_list(user):
        with open(os.path.join(maildir, e["name"]), "rb") as f:
            b = f.read()
        if hashlib.sha256(b).hexdigest() != e["sha256"]:
            bad.append(e["name"])
        out[b] += 1
    check(not bad, f"{user}: {sum(out.values())} files, each matching its index sha256", "\n".join(bad))
    return out


def quirks():
    """(envelope, content, eol) triples and the bytes each must be stored as."""
    msgs = [
        (b"alice@example.org Mon Jan  1 00:00:00 2024", b"Subject: plain\n\nhello\n", b"\n"),
        (b"bob@example.org Mon Jan  1 00:00:01 2024",
         b"Subject: quoting\n\nFrom the desk of Bob\n>From once\n>>From twice\n>>>From thrice\n> From not\n", b"\n"),
        (b"carol@example.org Mon Jan  1 00:00:02 2024",
         b"Subject: empty lines are content\n\n\n\nafter three\n\n\n", b"\n"),
        (b"dave@example.org Mon Jan  1 00:00:03 2024",
         b"Subject: crlf\r\n\r\nline one\r\nFrom inside\r\n\r\nend\r\n", b"\r\n"),
        (b"erin@example.org Mon Jan  1 00:00:04 2024",
         b"Subject: 8bit\n\n" + bytes(range(256)).replace(b"\n", b"") + b"\n" + b"x" * 5000 + b"\n", b"\n"),
        (b"MAILER-DAEMON Mon Jan  1 00:00:05 2024", b"Subject: last, no final newline\n\nthe end", b"\n"),
    ]
    return msgs, [c for _, c, _ in msgs]


def body(args):
    with hfsys.TempDir(prefix="hfimport-", keep=args.keep) as tmp:
        data = tmp.sub("data")
        hf = hfsys.Holdfast(args.holdfast, data)
        hf.user_add("alice", "pw-alice")
        hf.user_add("bob", "pw-bob")
        hf.user_add("carol", "pw-carol")

        log("quirks, byte for byte")
        msgs, want = quirks()
        mbox = tmp.sub("alice.mbox")
        write_mbox(mbox, msgs, prefix=b"\n\r\n")
        with open(mbox, "rb") as f:
            source = f.read()
        r = hf.run("import", "mbox", mbox, "-u", "alice")
        check(summary(r) == (6, 0, 0), "6 imported", r.stdout.decode())
        check(stored(hf, "alice") == collections.Counter(want), "every message stored byte-exact, once")
        with open(mbox, "rb") as f:
            check(f.read() == source, "the source file is unchanged")
        r = hf.run("import", "mbox", mbox, "-u", "alice")
        check(summary(r) == (0, 6, 0), "a re-run imports nothing", r.stdout.decode())
        hf.fsck("alice")

        log("a message deleted by a mail client is not brought back")
        maildir = os.path.join(data, "mail", "alice")
        victim = next(e for e in hf.mailbox_list("alice"))
        os.unlink(os.path.join(maildir, victim["name"]))
        check(len(hf.mailbox_list("alice")) == 5, "the listing notices the deletion")
        r = hf.run("import", "mbox", mbox, "-u", "alice")
        check(summary(r) == (0, 6, 0), "re-run: all 6 already there", r.stdout.decode())
        check(len(hf.mailbox_list("alice")) == 5, "still 5 messages")

        log("--format=mboxo")
        mboxo = tmp.sub("bob.mbox")
        content = b"Subject: o\n\n>From kept\n>>From kept too\n"
        write_mbox(mboxo, [(b"x Mon Jan  1 00:00:00 2024", content, b"\n")], quote=lambda c: c)
        hf.run("import", "mbox", mboxo, "-u", "bob", "--format=mboxo")
        check(stored(hf, "bob") == collections.Counter([content]), "mboxo: quotes kept")

        log("exit codes")
        r = hf.run("import", "mbox", tmp.sub("missing"), "-u", "alice", expect=EX_NOINPUT)
        check(r.stderr.startswith(b"holdfast import mbox: "), "missing file: 66, one error line")
        hf.run("import", "mbox", tmp.path, "-u", "alice", expect=EX_NOINPUT)
        hf.run("import", "mbox", mbox, "-u", "nobody", expect=hfsys.EX_NOUSER)
        check(not os.path.exists(os.path.join(data, "mail", "nobody")), "no mailbox made for an unknown user")
        garbage = tmp.sub("not-an-mbox")
        with open(garbage, "wb") as f:
            f.write(b"Subject: a lone message\n\nFrom me\n")
        before = len(hf.mailbox_list("bob"))
        r = hf.run("import", "mbox", garbage, "-u", "bob", expect=hfsys.EX_DATAERR)
        check(b"not an mbox" in r.stderr, "not an mbox: 65", r.stderr.decode())
        check(len(hf.mailbox_list("bob")) == before, "nothing imported from it")

        small = tmp.sub("small")
        os.makedirs(small)
        with open(os.path.join(small, "holdfast.toml"), "w") as f:
            f.write("[delivery]\nmax_message_size = 1000\n")
        hs = hfsys.Holdfast(args.holdfast, small)
        hs.user_add("alice", "pw")
        sized = tmp.sub("sized.mbox")
        write_mbox(sized, [(b"a Mon Jan  1 00:00:00 2024", b"Subject: big\n\n" + b"y" * 2000 + b"\n", b"\n"),
                           (b"b Mon Jan  1 00:00:00 2024", b"Subject: fits\n\n", b"\n")])
        r = hs.run("import", "mbox", sized, "-u", "alice", expect=hfsys.EX_DATAERR)
        check(summary(r) == (1, 0, 1), "over the limit: 65, the other imported", r.stdout.decode())
        check(b"max_message_size" in r.stdout and b"offset 0" in r.stderr, "the reason is given",
              r.stdout.decode() + r.stderr.decode())

        log("SIGKILL at random moments, then run to the end")
        rng = random.Random(int(os.environ.get("HOLDFAST_TEST_SEED", time.time())))
        big = tmp.sub("big.mbox")
        many = []
        for i in range(2000):
            c = (f"Subject: message {i}\nMessage-ID: <{i}@example.org>\n\n".encode() +
                 (b"From line %d in the body\n" % i if i % 7 == 0 else b"") +
                 (b"\n>From quoted\n" if i % 5 == 0 else b"") +
                 bytes(rng.choice(b"abcdefgh \n") for _ in range(rng.randrange(100, 3000))) + b"\n")
            many.append((f"sender{i}@example.org Mon Jan  1 00:00:00 2024".encode(), c, b"\n"))
        write_mbox(big, many)
        want = collections.Counter(c for _, c, _ in many)
        cmd = [hf.binary, "--data", data, "import", "mbox", big, "-u", "carol"]
        killed = 0
        for round_ in range(3):
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(rng.uniform(0.05, 1.0))
            p.send_signal(signal.SIGKILL)
            p.communicate(timeout=hfsys.CMD_TIMEOUT)
            if p.returncode == -signal.SIGKILL:
                killed += 1
            have = stored(hf, "carol")
            check(all(n == 1 for n in have.values()) and not (set(have) - set(want)),
                  f"round {round_ + 1}: {sum(have.values())} messages so far, none twice, none unknown")
        log(f"  ({killed} of 3 runs were killed before they finished)")
        r = hf.run("import", "mbox", big, "-u", "carol")
        imported, there, skipped = summary(r)
        check(imported + there == 2000 and skipped == 0, f"the last run completes ({imported} new, {there} there)")
        check(stored(hf, "carol") == want, "all 2000 exactly once, byte-identical")
        hf.fsck("carol")


if __name__ == "__main__":
    hfsys.run_test(body, __doc__)
