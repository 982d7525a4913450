#!/usr/bin/env python3
"""Concurrent delivery, Maildir renames by another tool, and listings.

Load (one mailbox, user "load"):
  * 8 deliverers (threads, each running `holdfast deliver` sequentially N
    times, one process per message);
  * a renamer *process* that, in a tight loop, moves every file that appears
    in new/ to cur/ with ":2,S" and toggles flags in cur/ between ":2,S" and
    ":2,FS" (os.rename, without holdfast's lock) -- what a mail client or
    Dovecot does to the same Maildir (see renamer_main for which files);
  * a lister running `holdfast mailbox list load --json` over and over
    (0.1 s apart).

N: the full size is 8 x 1,000. Run that with HOLDFAST_CONCURRENCY_PER=1000.
By default (what CTest runs) N = 250, and N = 150 with HOLDFAST_SANITIZED=1,
because 8 x 1,000 takes far longer than the suite's budget of well under 5
minutes on a 2-core machine: every `holdfast deliver` process replays the
whole index journal of the mailbox (which compaction lets grow to 4x the live
state), so each delivery costs time in proportion to the mailbox size and
the whole run grows quadratically (measured: ~35-45 ms CPU per deliver at
3,700 messages, against ~14 ms in an empty mailbox).

Every message is unique (per-message headers and padding), so the sha256
field of a listing entry identifies it without opening files the renamer
keeps renaming.

Checked in every listing while the load runs:
  (a) it contains every message whose `deliver` had exited 0 before the
      listing started, and everything the previous listing had (nothing
      deletes in this test) -- invariant 6: a rename racing a readdir must
      not hide a message;
      every entry is a message we sent (known sha256, right size and vsize),
      never a partial one (invariant 3); its name carries its MessageId and
      U=<uid>, and the flags field matches the name;
  (b) UIDs are unique within the listing; a UID always names the same message
      (same MessageId and content) across all listings, and a message keeps
      its UID; a message seen for the first time has a UID above every UID of
      earlier listings (UIDs only grow);
  every deliver exits 0.
After the load:
  (c) a final listing has exactly 8 x N messages; each listed file is
      byte-identical to what was sent plus Return-Path/Delivered-To; size,
      vsize and the S=/W=/U= name fields match; tmp/ is empty; new/+cur/ hold
      no other files;
  (d) `holdfast fsck` and `holdfast fsck load` exit 0.
The wall time, delivery rate and CPU used are printed.

Run:  /usr/bin/python3 tests/system/test_concurrency.py --holdfast build/holdfast
      HOLDFAST_CONCURRENCY_PER=1000 /usr/bin/python3 tests/system/test_concurrency.py   (the full size)
"""

import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hfsys  # noqa: E402
import hfload  # noqa: E402
from hfsys import check, fail, log  # noqa: E402

USER = "load"
DELIVERERS = 8
MAX_ERRORS_KEPT = 25
# Messages per deliverer: the full size is 8 x 1,000 (HOLDFAST_CONCURRENCY_PER=1000).
# That does not fit the suite's time budget on a 2-core machine today (see the
# module docstring), so `make test` runs 8 x 250, and 8 x 150 on a sanitized build.
PER_DEFAULT = 250
PER_SANITIZED = 150
LISTER_PAUSE = 0.1    # seconds between listings (back to back, a listing would hog the mailbox lock)
RENAMER_NICE = 10     # the renamer spins; holdfast gets the CPU first
RENAMER_NEWEST = 32   # flags flipped on the newest arrivals every pass
RENAMER_WINDOW = 64   # ... and on this many files of a window that sweeps round cur/
RENAMER_STEP = 8      # the window advances this many files per pass


def make_message(p, i, per):
    """Unique message for deliverer p, number i; sizes vary with (p, i)."""
    n = p * per + i
    head = (f"From: Deliverer {p} <p{p}@example.org>\n"
            f"To: {USER}@example.org\n"
            f"Subject: load test p{p} i{i}\n"
            f"Message-ID: <load-{p}-{i}@test.invalid>\n"
            f"X-Test-Id: {p}-{i}\n\n").encode()
    body = f"message {i} from deliverer {p}\n".encode()
    body += (b"0123456789abcdef" * 8 + b"\n") * (n % 23)  # 0 .. 22 lines of padding
    body += b"x" * (n % 97) + b"\n"
    return head + body


def renamer_main(maildir, stop, renames):
    """What a Maildir client does to the mailbox, without holdfast's lock, in a
    tight loop: every file that appears in new/ is moved to cur/ with ":2,S";
    then flags in cur/ are flipped between ":2,S" and ":2,FS" on the newest
    arrivals and on a window that sweeps round all of cur/. (Flipping every
    file on every pass would make each listing record a move for all 8,000
    files; holdfast's index journal then grows by megabytes per listing and
    every deliver, which replays it, gets slower and slower: far past the
    time budget. The window keeps thousands of renames per second, each one
    racing with the listings' readdir, while the set renamed between two
    listings stays bounded.)"""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.nice(RENAMER_NICE)
    new, cur = os.path.join(maildir, "new"), os.path.join(maildir, "cur")
    names = []      # current names in cur/, oldest first (only we rename in cur/)
    count = 0
    offset = 0
    while not stop.is_set():
        for n in os.listdir(new):
            if n.startswith("."):
                continue
            target = n.split(":", 1)[0] + ":2,S"
            try:
                os.rename(os.path.join(new, n), os.path.join(cur, target))
                names.append(target)
                count += 1
            except FileNotFoundError:
                pass
        total = len(names)
        if total:
            picks = set(range(max(0, total - RENAMER_NEWEST), total))
            picks.update((offset + k) % total for k in range(RENAMER_WINDOW))
            offset = (offset + RENAMER_STEP) % total
            for k in picks:
                n = names[k]
                base, _, info = n.partition(":")
                target = base + (":2,FS" if info == "2,S" else ":2,S")
                try:
                    os.rename(os.path.join(cur, n), os.path.join(cur, target))
                    names[k] = target
                    count += 1
                except FileNotFoundError:  # not expected: nobody else renames in cur/
                    names = sorted(os.listdir(cur))
                    break
        renames.value = count


class Shared:
    def __init__(self):
        self.acked = []           # keys (p, i) in the order their deliver exited 0
        self.errors = []          # failure texts (first MAX_ERRORS_KEPT)
        self.n_errors = 0
        self.abort = threading.Event()
        self.lock = threading.Lock()

    def error(self, text):
        with self.lock:
            self.n_errors += 1
            if len(self.errors) < MAX_ERRORS_KEPT:
                self.errors.append(text)


def deliverer(binary, data, p, per, messages, shared, stats):
    for i in range(per):
        if shared.abort.is_set():
            return
        cmd = [binary, "--data", data, "deliver", "-u", USER, "-f", f"p{p}@example.org"]
        t0 = time.monotonic()
        try:
            r = subprocess.run(cmd, input=messages[(p, i)], capture_output=True, timeout=120)
        except subprocess.TimeoutExpired:
            shared.error(f"deliver p{p} i{i} hung for 120 s")
            shared.abort.set()
            return
        except OSError as e:
            shared.error(f"deliver p{p} i{i}: cannot run {binary}: {e}")
            shared.abort.set()
            return
        dt = time.monotonic() - t0
        stats["max_deliver"] = max(stats.get("max_deliver", 0.0), dt)
        if r.returncode != 0:
            shared.error(f"deliver p{p} i{i} exited {r.returncode}: "
                         f"{r.stderr.decode(errors='replace').strip()}")
            shared.abort.set()  # the final count would fail anyway; stop early
            return
        shared.acked.append((p, i))  # list.append is atomic under the GIL


class Lister:
    """Runs `mailbox list --json` back to back and checks each listing."""

    def __init__(self, binary, data, messages, shared):
        self.binary, self.data, self.shared = binary, data, shared
        self.sha_to_key = {hfload.sha256_hex(m): k for k, m in messages.items()}
        self.messages = messages
        self.uid_of = {}      # key -> uid
        self.key_of = {}      # uid -> (key, message_id)
        self.prev_keys = set()
        self.max_uid = 0
        self.listings = 0
        self.max_entries = 0
        self.max_latency = 0.0
        self.required_checked = 0
        self.stop = threading.Event()
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set() and not self.shared.abort.is_set():
            self.one()
            self.stop.wait(LISTER_PAUSE)

    def one(self):
        sh = self.shared
        n_acked = len(sh.acked)       # every deliver counted here returned 0 already
        t0 = time.monotonic()
        r, entries, err = hfload.list_json(self.binary, self.data, USER)
        self.max_latency = max(self.max_latency, time.monotonic() - t0)
        self.listings += 1
        if err:
            sh.error(f"listing {self.listings}: {err}")
            return
        self.max_entries = max(self.max_entries, len(entries))
        where = f"listing {self.listings} ({len(entries)} entries)"
        keys, uids = set(), set()
        new_max = self.max_uid
        for e in entries:
            uid, sha, name, mid = e.get("uid"), e.get("sha256"), e.get("name", ""), e.get("message_id")
            key = self.sha_to_key.get(sha)
            if key is None:
                sh.error(f"{where}: entry {name} uid {uid} has content we never sent "
                         f"(sha256 {sha}, size {e.get('size')}): partial or foreign message")
                continue
            want = self.messages[key]
            if e.get("size") != len(want) or e.get("vsize") != hfsys.vsize(want):
                sh.error(f"{where}: {name}: size/vsize {e.get('size')}/{e.get('vsize')}, "
                         f"expected {len(want)}/{hfsys.vsize(want)}")
            parsed = hfload.parse_name(name)
            if parsed is None or parsed[1] != mid or parsed[4] != uid:
                sh.error(f"{where}: name {name!r} does not carry MessageId {mid} and U={uid}")
            elif (parsed[0] == "new") != (parsed[5] is None):
                sh.error(f"{where}: name {name!r}: a new/ file has no ':2,' part, a cur/ file has one")
            elif e.get("flags") != (parsed[5] or ""):
                sh.error(f"{where}: flags {e.get('flags')!r} do not match name {name!r}")
            if uid in uids:
                sh.error(f"{where}: uid {uid} appears twice")
            if key in keys:
                sh.error(f"{where}: message {key} appears twice")
            uids.add(uid)
            keys.add(key)
            if key in self.uid_of:
                if self.uid_of[key] != uid:
                    sh.error(f"{where}: message {key} had uid {self.uid_of[key]}, now uid {uid}")
            else:
                if uid <= self.max_uid:
                    sh.error(f"{where}: message {key} first seen with uid {uid}, but uid "
                             f"{self.max_uid} was already listed (UIDs must only grow)")
                self.uid_of[key] = uid
            if uid in self.key_of:
                if self.key_of[uid] != (key, mid):
                    sh.error(f"{where}: uid {uid} was {self.key_of[uid]}, now {(key, mid)} (UID reused)")
            else:
                self.key_of[uid] = (key, mid)
            new_max = max(new_max, uid)
        self.max_uid = new_max
        required = sh.acked[:n_acked]
        missing = [k for k in required if k not in keys]
        if missing:
            sh.error(f"{where}: {len(missing)} message(s) acknowledged before the listing started "
                     f"are missing, e.g. {missing[:5]} (uids {[self.uid_of.get(k) for k in missing[:5]]})")
        vanished = self.prev_keys - keys
        if vanished:
            sh.error(f"{where}: {len(vanished)} message(s) of the previous listing are gone, "
                     f"e.g. {sorted(vanished)[:5]}")
        self.required_checked += n_acked
        self.prev_keys = keys


def body(args):
    per = PER_SANITIZED if hfload.sanitized() else PER_DEFAULT
    budget = 600.0  # seconds for the load phase; CTest kills the test at 900 s
    if os.environ.get("HOLDFAST_CONCURRENCY_PER"):
        per = int(os.environ["HOLDFAST_CONCURRENCY_PER"])
        budget = 3600.0  # a long run by hand, not under CTest
    total = DELIVERERS * per
    log(f"holdfast {args.holdfast}\n{DELIVERERS} deliverers x {per} messages = {total}"
        f"{' (sanitized build)' if hfload.sanitized() else ''}"
        f"{'' if per >= 1000 else '; the full 8 x 1,000 of the issue: HOLDFAST_CONCURRENCY_PER=1000'}")
    messages = {(p, i): make_message(p, i, per) for p in range(DELIVERERS) for i in range(per)}
    stored = {k: hfsys.expected_stored(m, USER, f"p{k[0]}@example.org") for k, m in messages.items()}
    check(len({hfload.sha256_hex(m) for m in stored.values()}) == total,
          "test setup: all stored forms are distinct")

    ctx = multiprocessing.get_context("fork")
    renamer = None
    stop_renamer = ctx.Event()
    renames = ctx.Value("q", 0, lock=False)
    threads = []
    shared = Shared()
    lister = None
    with hfsys.TempDir(prefix="hfconc-", keep=args.keep) as td:
        data = td.sub("data")
        binary = hfload.private_binary(args.holdfast, td.path)
        hf = hfsys.Holdfast(binary, data)
        hf.user_add(USER, "load-pw")
        maildir = os.path.join(data, "mail", USER)
        try:
            # Fork the renamer before any thread exists.
            renamer = ctx.Process(target=renamer_main, args=(maildir, stop_renamer, renames), daemon=True)
            renamer.start()
            lister = Lister(binary, data, stored, shared)
            lister.start()
            stats = [dict() for _ in range(DELIVERERS)]
            t_start = time.monotonic()
            for p in range(DELIVERERS):
                t = threading.Thread(target=deliverer,
                                     args=(binary, data, p, per, messages, shared, stats[p]),
                                     daemon=True)
                t.start()
                threads.append(t)
            last_report = t_start
            for t in threads:
                while t.is_alive():
                    t.join(timeout=5)
                    now = time.monotonic()
                    if now - last_report >= 30:
                        log(f"  ... {len(shared.acked)}/{total} delivered, {lister.listings} listings, "
                            f"{renames.value} renames, {now - t_start:.0f} s")
                        last_report = now
                    if now - t_start > budget:
                        shared.abort.set()
                        fail(f"delivery did not finish within {budget:.0f} s "
                             f"({len(shared.acked)}/{total} delivered)" +
                             (f"; {shared.n_errors} problem(s) seen meanwhile:\n  " +
                              "\n  ".join(shared.errors) if shared.n_errors else ""))
                    if not renamer.is_alive():
                        shared.abort.set()
                        fail(f"the renamer process died (exit {renamer.exitcode})")
            if shared.abort.is_set() and shared.n_errors:
                fail(f"a deliver failed; {shared.n_errors} problem(s):\n  " + "\n  ".join(shared.errors))
            t_delivered = time.monotonic() - t_start
            # One more listing with everything delivered and the renamer still running.
            lister.stop.set()
            lister.thread.join(timeout=300)
            if lister.thread.is_alive():
                fail("the lister did not finish its last listing within 300 s")
            lister.stop.clear()
            lister.one()
            stop_renamer.set()
            renamer.join(timeout=30)
            if renamer.is_alive():
                fail("the renamer did not stop within 30 s")
            t_load = time.monotonic() - t_start
            log(f"load finished: {len(shared.acked)}/{total} delivered in {t_delivered:.1f} s "
                f"({len(shared.acked) / max(t_delivered, 1e-9):.0f} msg/s, slowest deliver "
                f"{max(s.get('max_deliver', 0) for s in stats):.2f} s); "
                f"{lister.listings} listings (up to {lister.max_entries} entries, slowest "
                f"{lister.max_latency:.2f} s, {lister.required_checked} required-presence checks); "
                f"{renames.value} renames by the other process")

            if shared.n_errors:
                fail(f"{shared.n_errors} problem(s) during the load; the first ones:\n  " +
                     "\n  ".join(shared.errors))
            check(len(shared.acked) == total, f"every one of the {total} deliveries exited 0")
            check(lister.listings >= 3, f"{lister.listings} listings ran during the load")
            check(renames.value > total, f"the renamer really renamed ({renames.value} renames)")
            check(True, f"(a) each of {lister.listings} listings held every message acknowledged before it "
                  "started and everything the previous listing held; every entry was a whole message we sent")
            check(True, "(b) UIDs unique per listing, never reused, stable per message, and only growing")

            # (c) the final state, read from the files themselves
            expected = {hfload.sha256_hex(m): m for m in stored.values()}
            final = hfload.check_listing_matches_files(hf, USER, expected, "(c) final listing")
            check(len(final) == total, f"(c) final listing has exactly {total} messages ({len(final)})")
            final_uid = {e["uid"]: e["sha256"] for e in final}
            drift = [u for u, (k, _) in lister.key_of.items()
                     if u in final_uid and hfload.sha256_hex(stored[k]) != final_uid[u]]
            check(not drift and len(lister.uid_of) == total,
                  "(c) final UIDs are the ones the listings during the load showed",
                  f"{len(drift)} uid(s) changed meaning, {len(lister.uid_of)} messages seen during load")
            tmp_left = os.listdir(os.path.join(maildir, "tmp"))
            check(tmp_left == [], "(c) tmp/ is empty", f"left in tmp/: {tmp_left[:10]}")
            in_cur = len(os.listdir(os.path.join(maildir, "cur")))
            log(f"  ({in_cur} of {total} messages are in cur/ after the renamer)")

            # (d)
            r = hf.run("fsck", expect=None)
            check(r.returncode == 0, "(d) `holdfast fsck` exits 0",
                  f"exit {r.returncode}\n{r.stdout.decode(errors='replace')[-3000:]}"
                  f"{r.stderr.decode(errors='replace')[-1000:]}")
            r = hf.run("fsck", USER, expect=None)
            check(r.returncode == 0, f"(d) `holdfast fsck {USER}` exits 0: "
                  f"{r.stdout.decode(errors='replace').strip().splitlines()[-1:]}",
                  r.stdout.decode(errors='replace')[-3000:])
            ru_c = resource.getrusage(resource.RUSAGE_CHILDREN)
            ru_s = resource.getrusage(resource.RUSAGE_SELF)
            log(f"wall time: {time.monotonic() - t_start:.1f} s "
                f"(load {t_load:.1f} s, delivery {t_delivered:.1f} s); CPU: holdfast processes + renamer "
                f"{ru_c.ru_utime + ru_c.ru_stime:.0f} s, this script {ru_s.ru_utime + ru_s.ru_stime:.0f} s; "
                f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        finally:
            shared.abort.set()
            if lister is not None:
                lister.stop.set()
            for t in threads:
                t.join(timeout=150)
            if lister is not None and lister.thread is not None:
                lister.thread.join(timeout=150)
            if renamer is not None:
                stop_renamer.set()
                renamer.join(timeout=10)
                if renamer.is_alive():
                    renamer.terminate()
                    renamer.join(timeout=10)
                if renamer.is_alive():
                    renamer.kill()
                    renamer.join()


if __name__ == "__main__":
    hfsys.run_test(body, description=__doc__)
