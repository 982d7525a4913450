"""Small helpers shared by test_concurrency.py, test_deliver_bad_input.py and
test_deliver_disk_full.py (standard library only).

Builds on hfsys.py (argument parsing, check/fail/skip, TempDir, Holdfast,
expected_stored, vsize) and adds what those tests need beyond it:

  * sanitized(): whether the binary is an ASan+UBSan build ($HOLDFAST_SANITIZED=1)
  * run_measured(): run a command, feed stdin from bytes or an iterator of
    chunks in a writer thread (a child that stops reading early is fine), and
    return exit code, stdout, stderr, wall time and the child's own peak RSS
    (os.wait4, so no other child's usage is mixed in)
  * one_error_line(): the "exactly one clear line on stderr" rule
  * snapshot(): the exact contents of a directory tree, to prove a failed
    command left nothing behind
  * MailboxView: `mailbox list --json` checked against the files it names
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
from hfsys import check, fail, log  # noqa: E402,F401

CMD_TIMEOUT = hfsys.CMD_TIMEOUT


def sanitized():
    return os.environ.get("HOLDFAST_SANITIZED", "") not in ("", "0", "OFF", "FALSE", "false", "off")


def private_binary(binary, directory):
    """A copy of the binary in our scratch directory: a long test keeps running
    the same build even if someone relinks build/holdfast meanwhile."""
    copy = os.path.join(directory, "holdfast")
    shutil.copy2(binary, copy)
    os.chmod(copy, 0o755)
    return copy


def sha256_hex(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class Measured:
    def __init__(self, cmd, rc, stdout, stderr, wall, maxrss_kb, timed_out):
        self.cmd, self.returncode, self.stdout, self.stderr = cmd, rc, stdout, stderr
        self.wall, self.maxrss_kb, self.timed_out = wall, maxrss_kb, timed_out

    def describe(self):
        return (f"command: {' '.join(self.cmd)}\nexit: {self.returncode}\n"
                f"stdout: {self.stdout[-1500:]!r}\nstderr: {self.stderr[-1500:]!r}")


def run_measured(cmd, stdin_data=b"", timeout=CMD_TIMEOUT, env=None):
    """Run cmd; stdin_data is bytes or an iterable of byte chunks. Returns a
    Measured with the child's exit code (negative: killed by that signal),
    its output, wall time and its own ru_maxrss (KiB). On timeout the child is
    killed and timed_out is set; the caller decides what that means."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    out, err = [], []

    def reader(f, sink):
        sink.append(f.read())

    def writer():
        try:
            chunks = [stdin_data] if isinstance(stdin_data, (bytes, bytearray)) else stdin_data
            for c in chunks:
                p.stdin.write(c)
        except (BrokenPipeError, ValueError, OSError):
            pass  # the child stopped reading (e.g. over the size limit): expected
        finally:
            try:
                p.stdin.close()
            except OSError:
                pass

    threads = [threading.Thread(target=reader, args=(p.stdout, out), daemon=True),
               threading.Thread(target=reader, args=(p.stderr, err), daemon=True),
               threading.Thread(target=writer, daemon=True)]
    for t in threads:
        t.start()
    timed_out = []

    def on_timeout():
        timed_out.append(True)
        try:
            p.kill()
        except OSError:
            pass
    timer = threading.Timer(timeout, on_timeout)
    timer.start()
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
    wall = time.monotonic() - t0
    for t in threads:
        t.join(timeout=30)
    for f in (p.stdout, p.stderr):
        f.close()
    return Measured(cmd, p.returncode, b"".join(out), b"".join(err), wall, ru.ru_maxrss,
                    bool(timed_out))


def one_error_line(stderr: bytes, what: str, keywords=()):
    """The documented failure rule: exactly one non-empty line on stderr
    (ending in a newline), printable, in the form 'holdfast CMD: ...'. When
    keywords are given, the line must mention at least one of them
    (case-insensitive), so it says what went wrong. Returns the line."""
    text = stderr.decode("utf-8", errors="replace")
    lines = text.split("\n")
    check(text.endswith("\n") and len(lines) == 2 and lines[0].strip() != "",
          f"{what}: stderr is exactly one non-empty line",
          f"stderr was {stderr[:2000]!r}")
    line = lines[0]
    check(line.startswith("holdfast ") and ":" in line and
          all(c.isprintable() for c in line),
          f"{what}: the line is printable and says 'holdfast CMD: ...': {line[:160]!r}")
    if keywords:
        check(any(k.lower() in line.lower() for k in keywords),
              f"{what}: the line names the problem (one of {list(keywords)})", f"line: {line!r}")
    return line


def snapshot(root, only=None):
    """{relative path: ('dir',) | ('file', size, sha256) | ('link', target)}
    for everything under root (only=[names] restricts the top level)."""
    out = {}
    if not os.path.isdir(root):
        return out
    tops = only if only is not None else sorted(os.listdir(root))
    for top in tops:
        start = os.path.join(root, top)
        if not os.path.lexists(start):
            continue
        if not os.path.isdir(start) or os.path.islink(start):
            out[top] = _entry(start)
            continue
        out[top] = ("dir",)
        for dirpath, dirs, files in os.walk(start):
            for n in dirs + files:
                full = os.path.join(dirpath, n)
                out[os.path.relpath(full, root)] = ("dir",) if (os.path.isdir(full) and not os.path.islink(full)) else _entry(full)
    return out


def _entry(path):
    if os.path.islink(path):
        return ("link", os.readlink(path))
    with open(path, "rb") as f:
        data = f.read()
    return ("file", len(data), sha256_hex(data))


def diff_snapshots(before, after):
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    parts = []
    if added:
        parts.append("added: " + ", ".join(added[:20]))
    if removed:
        parts.append("removed: " + ", ".join(removed[:20]))
    if changed:
        parts.append("changed: " + ", ".join(changed[:20]))
    return "; ".join(parts)


# file name: <secs>.<MESSAGEID>.<host>,S=<size>,W=<vsize>,U=<uid>[:2,FLAGS]
_NAME_RE = re.compile(r"^(new|cur)/(\d+)\.([0-9A-Z]{26})\.[^/:]*?,S=(\d+),W=(\d+),U=(\d+)(?::2,([A-Za-z]*))?$")


def parse_name(name):
    """(dir, message_id, S, W, U, flags or None) of one of holdfast's names, or None."""
    m = _NAME_RE.match(name)
    if not m:
        return None
    return (m.group(1), m.group(3), int(m.group(4)), int(m.group(5)), int(m.group(6)), m.group(7))


def list_json(holdfast_binary, data, user, timeout=CMD_TIMEOUT):
    """Run `holdfast --data DATA mailbox list USER --json`; return
    (CompletedProcess, parsed array or None, error text or None)."""
    cmd = [holdfast_binary, "--data", data, "mailbox", "list", user, "--json"]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, None, f"`mailbox list {user} --json` timed out after {timeout}s"
    except OSError as e:
        return None, None, f"cannot run `mailbox list`: {e}"
    if r.returncode != 0:
        return r, None, (f"`mailbox list {user} --json` exited {r.returncode}: "
                         f"{r.stderr.decode(errors='replace').strip()}")
    try:
        data = json.loads(r.stdout)
    except ValueError as e:
        return r, None, f"`mailbox list --json` printed invalid JSON ({e}): {r.stdout[:300]!r}"
    if not isinstance(data, list):
        return r, None, f"`mailbox list --json` printed a {type(data).__name__}, not an array"
    return r, data, None


def check_listing_matches_files(hf, user, expected: dict, what):
    """The listing of USER is exactly the messages in `expected`
    ({sha256 hex: stored bytes}); each listed file is byte-identical, its
    size/vsize/sha256 fields are right, UIDs are unique, and new/+cur/ hold
    no other file. Returns the listing."""
    listing = hf.mailbox_list(user)
    maildir = os.path.join(hf.data, "mail", user)
    by_sha = {}
    uids = set()
    problems = []
    for e in listing:
        uid, name, sha = e.get("uid"), e.get("name", ""), e.get("sha256")
        if uid in uids:
            problems.append(f"uid {uid} listed twice")
        uids.add(uid)
        if sha in by_sha:
            problems.append(f"the same message listed twice: {by_sha[sha]['name']} and {name}")
        by_sha[sha] = e
        if sha not in expected:
            problems.append(f"listed message not expected: {name} (sha256 {sha})")
            continue
        want = expected[sha]
        try:
            with open(os.path.join(maildir, name), "rb") as f:
                got = f.read()
        except OSError as err:
            problems.append(f"listed file {name} cannot be read: {err}")
            continue
        if got != want:
            problems.append(f"{name}: stored bytes differ from what was delivered "
                            f"({len(got)} vs {len(want)} bytes)")
        if e.get("size") != len(want) or e.get("vsize") != hfsys.vsize(want):
            problems.append(f"{name}: size/vsize {e.get('size')}/{e.get('vsize')}, "
                            f"expected {len(want)}/{hfsys.vsize(want)}")
        p = parse_name(name)
        if p is None or p[2] != len(want) or p[3] != hfsys.vsize(want) or p[4] != uid:
            problems.append(f"{name}: name does not carry S=size, W=vsize, U=uid of this message")
    missing = set(expected) - set(by_sha)
    for sha in sorted(missing)[:10]:
        problems.append(f"delivered message missing from the listing (sha256 {sha})")
    on_disk = sorted(os.listdir(os.path.join(maildir, "new")) + os.listdir(os.path.join(maildir, "cur")))
    if len(on_disk) != len(listing):
        problems.append(f"new/+cur/ hold {len(on_disk)} files but the listing has {len(listing)}")
    check(not problems, f"{what}: listing = exactly the {len(expected)} acknowledged message(s), "
          f"byte-identical, sizes and UIDs right", "\n".join(problems[:30]))
    return listing


class Cases:
    """Run independent cases one after another; a failing case is recorded
    and the next one still runs, so one bug does not hide the others. At the
    end, finish() fails with every failed case."""

    def __init__(self):
        self.failed = []
        self.passed = 0

    def run(self, name, fn, *a, **kw):
        log(f"--- {name}")
        try:
            fn(*a, **kw)
            self.passed += 1
        except hfsys.TestFailure as e:
            log(f"  case failed: {str(e).splitlines()[0]}")
            self.failed.append((name, str(e)))

    def finish(self):
        log(f"\n{self.passed} case(s) passed, {len(self.failed)} failed")
        if self.failed:
            fail(f"{len(self.failed)} case(s) failed:\n" +
                 "\n".join(f"  [{n}] {e}" for n, e in self.failed))
