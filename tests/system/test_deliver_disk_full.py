#!/usr/bin/env python3
"""`holdfast deliver` on a full disk: exit 75, nothing half-written, nothing lost.

The data directory is on a private 2 MiB tmpfs (needs root or CAP_SYS_ADMIN
to mount; otherwise the test is skipped, exit 77, with the reason). A 256 KiB
filler file is created first, so space can be given back later.

  A. Deliver distinct ~20 KB messages until one fails, then smaller ones
     (8 KB, 2 KB, 200 B, then ~30 B header-only ones) until even a tiny one fails. Every
     deliver exits 0 or 75 -- nothing else; a 75 prints exactly one line
     naming the problem, and leaves tmp/, new/, cur/ exactly as they were.
     Then, with the disk still full: tmp/ is empty, new/ holds exactly the
     messages that got exit 0, byte-identical; `mailbox list` lists exactly
     those; `fsck` exits 0.
  B. Give back one 4 KiB page at a time (shrinking the filler) and deliver
     one small message into it, 40 times. Once the index journal crosses a
     page boundary its append has no room while the message itself fit.
     After each deliver the same checks as in A hold (a full disk must not
     make the mailbox unreadable: that is when a user needs to read and
     delete mail).
  C. Delete the filler. A next deliver exits 0; the listing has every
     acknowledged message, byte-identical; tmp/ is empty; fsck exits 0.

The tmpfs is unmounted in every case.

Run:  /usr/bin/python3 tests/system/test_deliver_disk_full.py --holdfast build/holdfast
"""

import hashlib
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hfload  # noqa: E402
from hfsys import check, fail, log, skip  # noqa: E402

USER = "alice"
SENDER = "sender@example.org"
PAGE = 4096
FILLER_SIZE = 256 * 1024


def mount_tmpfs(path, size="2m"):
    mount = shutil.which("mount") or "/usr/bin/mount"
    if not os.path.exists(mount):
        skip("no mount(8) to create a small tmpfs")
    r = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", path],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        skip(f"cannot mount a {size} tmpfs at {path} (needs root or CAP_SYS_ADMIN): "
             f"{r.stderr.strip() or r.stdout.strip()}")
    log(f"mounted a {size} tmpfs at {path}")


def unmount(path):
    umount = shutil.which("umount") or "/usr/bin/umount"
    for args in ([umount, path], [umount, "-l", path]):
        for _ in range(5):
            r = subprocess.run(args, capture_output=True, text=True, timeout=60)
            if r.returncode == 0 or not os.path.ismount(path):
                log(f"unmounted {path}")
                return True
            time.sleep(0.5)
    log(f"WARNING: could not unmount {path}: {r.stderr.strip()}")
    return False


class FullDisk:
    def __init__(self, binary, mnt):
        self.binary = binary
        self.data = os.path.join(mnt, "data")
        self.filler = os.path.join(mnt, "filler")
        self.hf = hfsys.Holdfast(binary, self.data)
        self.maildir = os.path.join(self.data, "mail", USER)
        self.expected = {}   # sha256 -> stored bytes of every message that got exit 0
        self.counter = 0
        self.results = []    # (size, exit code)

    def message(self, size):
        """A distinct message of `size` bytes, or of its header and one LF when
        `size` is smaller (every message is distinct: it carries a counter)."""
        self.counter += 1
        head = f"Subject: disk full test {self.counter}\n\n".encode()
        seed = hashlib.sha256(str(self.counter).encode()).hexdigest().encode()
        body = (seed * (size // len(seed) + 1))[:max(0, size - len(head) - 1)] + b"\n"
        return head + body

    def state(self):
        return hfload.snapshot(self.maildir, only=["tmp", "new", "cur"])

    def deliver(self, size, what):
        """Deliver a message of `size` bytes; require exit 0 or 75 and, for 75,
        one clear line and no trace. Returns the exit code."""
        msg = self.message(size)
        before = self.state()
        r = hfload.run_measured([self.binary, "--data", self.data, "deliver", "-u", USER, "-f", SENDER],
                                msg)
        check(not r.timed_out and r.returncode in (0, 75),
              f"{what}: deliver of {len(msg)} bytes exits 0 or 75 (got {r.returncode})", r.describe())
        self.results.append((len(msg), r.returncode))
        after = self.state()
        if r.returncode == 0:
            stored = hfsys.expected_stored(msg, USER, SENDER)
            self.expected[hashlib.sha256(stored).hexdigest()] = stored
            added = sorted(set(after) - set(before))
            check(len(added) == 1 and added[0].startswith("new/") and
                  all(after.get(k) == v for k, v in before.items()),
                  f"{what}: exit 0 added exactly one file to new/", hfload.diff_snapshots(before, after))
        else:
            line = hfload.one_error_line(r.stderr, f"{what}: exit 75",
                                         keywords=("space", "full", "ENOSPC", "disk"))
            log(f"       stderr: {line}")
            check(after == before, f"{what}: exit 75 left tmp/, new/, cur/ exactly as they were",
                  hfload.diff_snapshots(before, after))
        return r.returncode

    def check_store(self, what):
        """tmp/ empty; new/+cur/ exactly the acknowledged messages, byte-identical
        (read directly); listing exact; fsck 0."""
        tmp = os.listdir(os.path.join(self.maildir, "tmp"))
        check(tmp == [], f"{what}: tmp/ is empty", f"tmp/ holds {tmp[:10]}")
        on_disk = {}
        for sub in ("new", "cur"):
            for n in os.listdir(os.path.join(self.maildir, sub)):
                with open(os.path.join(self.maildir, sub, n), "rb") as f:
                    b = f.read()
                on_disk[hashlib.sha256(b).hexdigest()] = n
        check(set(on_disk) == set(self.expected) and
              len(os.listdir(os.path.join(self.maildir, "new"))) +
              len(os.listdir(os.path.join(self.maildir, "cur"))) == len(self.expected),
              f"{what}: new/+cur/ hold exactly the {len(self.expected)} acknowledged messages, byte-identical",
              f"{len(set(self.expected) - set(on_disk))} acknowledged missing or altered, "
              f"{len(set(on_disk) - set(self.expected))} unexpected: "
              f"{[on_disk[s] for s in set(on_disk) - set(self.expected)][:5]}")
        r = self.hf.run("mailbox", "list", USER, "--json", expect=None)
        check(r.returncode == 0, f"{what}: `mailbox list` works (exit {r.returncode})",
              r.stderr.decode(errors="replace"))
        hfload.check_listing_matches_files(self.hf, USER, self.expected, f"{what}: mailbox list")
        r = self.hf.run("fsck", expect=None)
        check(r.returncode == 0, f"{what}: fsck exits 0 (got {r.returncode})",
              r.stdout.decode(errors="replace")[-2000:] + r.stderr.decode(errors="replace")[-500:])

    def free_bytes(self):
        st = os.statvfs(self.data)
        return st.f_bavail * st.f_frsize


def phase_a(fd):
    n = 0
    while True:
        n += 1
        if n > 400:
            fail(f"the 2 MiB tmpfs never filled up after {n} deliveries of ~20 KB "
                 f"({fd.free_bytes()} bytes free)")
        if fd.deliver(20000 + n, f"fill #{n}") == 75:
            break
    log(f"  first failure after {n - 1} deliveries of ~20 KB; {fd.free_bytes()} bytes free")
    for size in (8000, 2000, 200):
        fd.deliver(size, f"then {size} bytes")
    tries = 0
    while fd.deliver(1, "then a header-only message") == 0:
        tries += 1
        if tries > 200:
            fail("tiny deliveries keep succeeding on a full 2 MiB tmpfs")
    log(f"  full: {fd.free_bytes()} bytes free; {len(fd.expected)} messages acknowledged; "
        f"results by size: {fd.results[-6:]}")
    fd.check_store("full disk")


def phase_b(fd):
    size = os.path.getsize(fd.filler)
    idx = os.path.join(fd.maildir, "holdfast.index")
    for i in range(40):
        size -= PAGE
        os.truncate(fd.filler, size)
        rc = fd.deliver(300, f"one page freed #{i + 1}")
        log(f"       exit {rc}; index {os.path.getsize(idx)} bytes; {fd.free_bytes()} bytes free")
        fd.check_store(f"one page freed #{i + 1}")


def phase_c(fd):
    os.unlink(fd.filler)
    log(f"  filler deleted: {fd.free_bytes()} bytes free")
    rc = fd.deliver(5000, "after freeing space")
    check(rc == 0, "after freeing space: deliver exits 0")
    fd.check_store("after freeing space")


def body(args):
    if os.geteuid() != 0:
        skip("mounting a tmpfs needs root (or CAP_SYS_ADMIN); running as uid %d" % os.geteuid())
    cases = hfload.Cases()
    with hfsys.TempDir(prefix="hfdiskfull-", keep=args.keep) as td:
        mnt = td.sub("mnt")
        os.mkdir(mnt)
        mount_tmpfs(mnt)
        try:
            fd = FullDisk(hfload.private_binary(args.holdfast, td.path), mnt)
            with open(fd.filler, "wb") as f:
                f.write(b"\0filler" * (FILLER_SIZE // 7 + 1))
            os.truncate(fd.filler, FILLER_SIZE)
            fd.hf.user_add(USER, "alice-pw")
            cases.run("A: fill the disk; 75 leaves nothing; store exact while full", phase_a, fd)
            cases.run("B: one page at a time; the index append has no room", phase_b, fd)
            cases.run("C: space freed; deliver works; store exact", phase_c, fd)
            ok = sum(1 for _, rc in fd.results if rc == 0)
            log(f"\n{len(fd.results)} deliveries: {ok} exit 0, {len(fd.results) - ok} exit 75")
        finally:
            if os.path.ismount(mnt):
                unmount(mnt)
        cases.finish()


if __name__ == "__main__":
    hfsys.run_test(body, description=__doc__)
