#!/usr/bin/env python3
"""`holdfast deliver` with bad, odd and hostile input (invariant 9).

Every case checks the documented exit code (sysexits.h: 0 delivered, 65
unusable input, 67 unknown or impossible user), and for every failure that
stderr is exactly one non-empty line 'holdfast deliver: ...' naming the
problem and that nothing of the message is left: tmp/, new/ and cur/ are
byte-for-byte what they were before. After every case the mailbox lists
exactly the messages delivered so far, each byte-identical (the input after
Return-Path/Delivered-To), and `holdfast fsck` exits 0.

Cases:
  * empty stdin                                                      -> 65
  * NUL bytes, all 256 byte values, 8-bit text, a 5,000-octet line,
    bare CR, no final newline                                        -> 0, byte-exact
  * one 2,000-octet line and nothing else (no newline at all)        -> 0, byte-exact
  * a message that is a single LF                                    -> 0, byte-exact
  * a CRLF message: stays CRLF, the two added header lines too        -> 0
  * a CRLF message whose first line is 70,000 octets (longer than one
    64 KiB read): the added lines must still end in CRLF              -> 0
  * 100 MB on one line, no newline, default limit 50 MiB             -> 65, quickly,
    holdfast stops reading soon after the limit and its peak RSS (its
    own, from wait4) stays far below 100 MB
  * delivery.max_message_size = 1000 (separate data directory): the limit
    counts the bytes read from stdin only, not the added headers:
    1001 bytes -> 65; 1000 bytes -> 0 (stored: headers + 1000 bytes)
  * unknown user 'nobody'                                            -> 67, no mailbox made
  * user names '../x', 'a/b', '..', '.', an absolute path, 300 x 'a',
    'a b' (NUL cannot be passed in argv)                             -> 67, and nothing
    at all changes anywhere in the test's directory tree (no directory is
    created outside or inside DATA/mail)

Run:  /usr/bin/python3 tests/system/test_deliver_bad_input.py --holdfast build/holdfast
"""

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hfload  # noqa: E402
from hfsys import check, log  # noqa: E402

USER = "alice"
SENDER = "sender@example.org"
MIB = 1024 * 1024


class Box:
    """One data directory with one user, and what it must hold."""

    def __init__(self, binary, data, config=None):
        self.binary, self.data = binary, data
        os.makedirs(data)
        if config is not None:
            with open(os.path.join(data, "holdfast.toml"), "w") as f:
                f.write(config)
        self.hf = hfsys.Holdfast(binary, data)
        self.hf.user_add(USER, "alice-pw")
        self.maildir = os.path.join(data, "mail", USER)
        self.expected = {}  # sha256 -> stored bytes

    def maildir_state(self):
        return hfload.snapshot(self.maildir, only=["tmp", "new", "cur"])

    def deliver(self, msg, what, user=USER, timeout=hfsys.CMD_TIMEOUT):
        cmd = [self.binary, "--data", self.data, "deliver", "-u", user, "-f", SENDER]
        r = hfload.run_measured(cmd, msg, timeout=timeout)
        check(not r.timed_out, f"{what}: deliver finished within {timeout} s", r.describe())
        return r

    def expect_success(self, msg: bytes, what, stored=None):
        before = self.maildir_state()
        r = self.deliver(msg, what)
        check(r.returncode == 0, f"{what}: exit 0", r.describe())
        if stored is None:
            stored = hfsys.expected_stored(msg, USER, SENDER)
        after = self.maildir_state()
        added = sorted(set(after) - set(before))
        check(len(added) == 1 and added[0].startswith("new/") and
              not (set(before) - set(after)) and
              all(after[k] == before[k] for k in before),
              f"{what}: exactly one new file in new/, nothing else changed",
              hfload.diff_snapshots(before, after))
        with open(os.path.join(self.maildir, added[0]), "rb") as f:
            got = f.read()
        # The mailbox holds it whatever its bytes: later cases expect it listed.
        self.expected[hashlib.sha256(got).hexdigest()] = got
        if got != stored:
            i = next((j for j in range(min(len(got), len(stored))) if got[j] != stored[j]),
                     min(len(got), len(stored)))
            check(False, f"{what}: stored byte-exactly",
                  f"first difference at byte {i}: got {got[max(0, i - 20):i + 20]!r}, "
                  f"expected {stored[max(0, i - 20):i + 20]!r} (sizes {len(got)} vs {len(stored)})")
        check(True, f"{what}: stored byte-exactly ({len(stored)} bytes = trace headers + input)")
        self.consistent(what)
        return got

    def expect_failure(self, msg, code, what, keywords=(), user=USER, timeout=hfsys.CMD_TIMEOUT,
                       tree_root=None):
        """tree_root: also require that nothing changes anywhere under it."""
        tree_before = hfload.snapshot(tree_root) if tree_root else None
        before = self.maildir_state()
        r = self.deliver(msg, what, user=user, timeout=timeout)
        check(r.returncode == code, f"{what}: exit {code}", r.describe())
        line = hfload.one_error_line(r.stderr, what, keywords)
        log(f"       stderr: {line}")
        after = self.maildir_state()
        check(after == before, f"{what}: tmp/, new/, cur/ unchanged (nothing half-written left)",
              hfload.diff_snapshots(before, after))
        if tree_root:
            tree_after = hfload.snapshot(tree_root)
            check(tree_after == tree_before, f"{what}: nothing created or changed anywhere under "
                  f"{tree_root}", hfload.diff_snapshots(tree_before, tree_after))
        self.consistent(what)
        return r

    def consistent(self, what):
        hfload.check_listing_matches_files(self.hf, USER, self.expected, f"{what}: mailbox list")
        r = self.hf.run("fsck", expect=None)
        check(r.returncode == 0, f"{what}: fsck exits 0",
              r.stdout.decode(errors="replace")[-2000:] + r.stderr.decode(errors="replace")[-500:])


def case_empty(box):
    box.expect_failure(b"", 65, "empty stdin", keywords=("empty",))


def case_odd_bytes(box):
    odd = (b"From: odd@example.net\nTo: alice@example.org\nSubject: odd bytes\n"
           b"X-Eight-Bit: \xc3\xa4\xff\xfe\x80\n\n"
           b"NUL here:\x00:and\x00\x00 there\n"
           b"all bytes: " + bytes(range(256)) + b"\n"
           b"long line: " + b"L" * 5000 + b"\n"
           b"bare CR\rin the middle\r\rand CR at end\r\n" +
           "Grüße 日本語\n".encode() +
           b"\x00" * 100 + b"\n"
           b"no final newline \xe2\x9c\x93")
    box.expect_success(odd, "NUL/8-bit/5000-octet line/bare CR/no final LF")


def case_one_long_line(box):
    box.expect_success(b"Y" * 2000, "one 2,000-octet line, no newline at all")


def case_single_lf(box):
    box.expect_success(b"\n", "a message that is one LF")


def case_crlf(box):
    crlf = (b"From: crlf@example.net\r\nTo: alice@example.org\r\nSubject: crlf\r\n\r\n"
            b"line one\r\nline two\r\n")
    got = box.expect_success(crlf, "CRLF message")
    check(got.startswith(b"Return-Path: <" + SENDER.encode() + b">\r\nDelivered-To: alice\r\n")
          and b"\n" not in got.replace(b"\r\n", b""),
          "CRLF message: added headers end in CRLF, no bare LF anywhere")


def case_crlf_long_first_line(box):
    # The first line is longer than one 64 KiB read of stdin: the line ending
    # of the first line is still CRLF, so the added lines must be CRLF too.
    msg = b"X-Long: " + b"a" * 70000 + b"\r\nSubject: long first line\r\n\r\nbody\r\n"
    got = box.expect_success(msg, "CRLF message whose first line is 70,000 octets")
    check(b"\n" not in got.replace(b"\r\n", b""), "long-first-line CRLF message: no bare LF anywhere")


def case_100mb(box, slow):
    fed = [0]

    def hundred_mb():
        chunk = b"z" * MIB
        for _ in range(100):
            fed[0] += len(chunk)
            yield chunk
    r = box.expect_failure(hundred_mb(), 65, "100 MB single line", keywords=("limit", "large", "size"),
                           timeout=120 * slow)
    log(f"       wall {r.wall:.2f} s, peak RSS {r.maxrss_kb / 1024:.1f} MiB, "
        f"{fed[0] / MIB:.0f} MiB handed to the pipe before holdfast stopped reading")
    check(r.wall < 30 * slow, f"100 MB: rejected in {r.wall:.1f} s (< {30 * slow} s)")
    check(fed[0] <= 60 * MIB, f"100 MB: holdfast stopped reading soon after the 50 MiB limit "
          f"({fed[0] / MIB:.0f} MiB fed)")
    if hfload.sanitized():
        log(f"       (sanitized build: peak RSS {r.maxrss_kb / 1024:.1f} MiB only reported; "
            "ASan's shadow memory and quarantine inflate it)")
    else:
        check(r.maxrss_kb < 40 * 1024, f"100 MB: holdfast's peak RSS ({r.maxrss_kb / 1024:.1f} MiB) stays "
              "under 40 MiB: the message is streamed to disk, not held in memory (a fixed buffer "
              "needs ~20 MiB; buffering up to the 50 MiB limit shows as ~70 MiB)")


def sized(n):
    head = b"Subject: sized\n\n"
    return head + b"b" * (n - len(head) - 1) + b"\n"


def case_limit_over(small):
    small.expect_failure(sized(1001), 65, "1001 bytes over a 1000-byte limit",
                         keywords=("limit", "large", "size"))


def case_limit_exact(small):
    got = small.expect_success(sized(1000), "exactly 1000 bytes with a 1000-byte limit")
    check(len(got) == 1000 + len(f"Return-Path: <{SENDER}>\nDelivered-To: {USER}\n"),
          f"1000-byte limit: stored {len(got)} bytes = 1000 + the added headers "
          "(the headers do not count against the limit)")


MSG = b"Subject: to whom\n\nhello\n"


def case_unknown_user(box, root):
    mail_before = sorted(os.listdir(os.path.join(box.data, "mail")))
    box.expect_failure(MSG, 67, "unknown user 'nobody'", keywords=("user",), user="nobody",
                       tree_root=root)
    check(sorted(os.listdir(os.path.join(box.data, "mail"))) == mail_before,
          "unknown user: no mailbox directory created")


def case_bad_name(box, root, name):
    shown = name if len(name) < 40 else name[:12] + f"...({len(name)} chars)"
    box.expect_failure(MSG, 67, f"user name {shown!r}", keywords=("user",), user=name, tree_root=root)


def body(args):
    slow = 4 if hfload.sanitized() else 1
    cases = hfload.Cases()
    with hfsys.TempDir(prefix="hfbad-", keep=args.keep) as td:
        binary = hfload.private_binary(args.holdfast, td.path)
        box = Box(binary, td.sub("data"))
        cases.run("empty input -> 65", case_empty, box)
        cases.run("NUL, 8-bit, 5000-octet line, bare CR, no final newline -> 0", case_odd_bytes, box)
        cases.run("one 2000-octet line without newline -> 0", case_one_long_line, box)
        cases.run("a single LF -> 0", case_single_lf, box)
        cases.run("CRLF message stays CRLF -> 0", case_crlf, box)
        cases.run("CRLF message, first line 70,000 octets -> 0, CRLF headers", case_crlf_long_first_line, box)
        cases.run("100 MB single line, default 50 MiB limit -> 65", case_100mb, box, slow)

        small = Box(binary, td.sub("data-limit"), config="[delivery]\nmax_message_size = 1000\n")
        cases.run("max_message_size = 1000: 1001 bytes -> 65", case_limit_over, small)
        cases.run("max_message_size = 1000: 1000 bytes -> 0", case_limit_exact, small)

        cases.run("unknown user -> 67", case_unknown_user, box, td.path)
        bad_names = ["../x", "a/b", "..", ".", "../../../" + os.path.basename(td.path) + "-evil",
                     td.sub("abs"), "a" * 300, "a b", "alice/../alice", ""]
        for name in bad_names:
            cases.run(f"user name {name[:40]!r} -> 67", case_bad_name, box, td.path, name)
        check(not os.path.exists(td.path + "-evil") and not os.path.exists(td.sub("abs")),
              "no directory was created outside DATA/mail")
        cases.finish()


if __name__ == "__main__":
    hfsys.run_test(body, description=__doc__)
