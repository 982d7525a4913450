// Crash-point tests for the spool (MISSION.md invariants 1, 2, 4 and 8):
// for every mutating Fs call of an operation, crash right after it, reboot
// into every state SimFs offers (ChoicesToTest), recover, and check:
//  (a) group commit: a message whose Sync returned ok comes back exactly
//      once and byte-identical; one that was not acknowledged is absent or
//      whole;
//  (b) retirement and segment removal: a message with a recipient whose
//      Done was never even appended is never lost (the spool appends Done
//      only once the copy is durable in the mailbox), a durable Done is
//      never lost, nothing comes back twice;
//  (c) replay (SpoolLog::Open cutting a torn tail) is itself crash-safe;
//  (d) end to end through Spool: an acknowledged message ends up exactly
//      once in every recipient's mailbox, byte-identical, after any crash;
//  (e) a message delivered and then expunged by the user is not delivered
//      again when the spool replays it.
// The harness follows crash_harness.h (mailbox crash tests).
// HOLDFAST_CRASH_STATS=1 prints crash points / recovered states per SpoolLog
// test; HOLDFAST_CRASH_OPLOG=1 prints the operation log of the full run.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "core/trace_headers.h"
#include "crash_harness.h"
#include "fs/sim_fs.h"
#include "spool/spool.h"
#include "spool/quarantine.h"
#include "spool/spool_log.h"
#include "util/record_log.h"

namespace holdfast::testing {
namespace {

constexpr char kSpoolDir[] = "/data/spool";
constexpr char kMailDir[] = "/data/mail";

// --------------------------------------------------------------- SpoolLog

SpoolMessage MakeMessage(const std::string& tag, std::string body, int rcpts = 1) {
  SpoolMessage m;
  m.id = MessageId::Generate();
  m.received_ms = 1700000000000 + static_cast<int64_t>(tag.size());
  m.client = "198.51.100.4";
  m.helo = "client." + tag;
  m.mail_from = tag + "@from.example";
  for (int i = 0; i < rcpts; ++i) {
    SpoolRecipient r;
    r.address = "rcpt" + std::to_string(i) + "@to.example";
    r.user = "rcpt" + std::to_string(i);
    m.rcpts.push_back(r);
  }
  m.body = std::move(body);
  return m;
}

// A string literal with its embedded NULs (without the terminating one).
template <size_t N>
std::string Lit(const char (&s)[N]) {
  return std::string(s, N - 1);
}

// Bodies with CR, LF, NUL and 8-bit bytes, distinct per message.
std::string Body(int i, size_t len = 200) {
  std::string b = "Subject: message " + std::to_string(i) + "\r\n\r\n";
  b += Lit("nul\0\xff\xfe 8-bit\r\n");
  while (b.size() < len) b += static_cast<char>('a' + (b.size() * 7 + static_cast<size_t>(i)) % 26);
  return b;
}

bool SameMessage(const SpoolMessage& a, const SpoolMessage& b) {
  if (a.id != b.id || a.received_ms != b.received_ms || a.client != b.client || a.helo != b.helo ||
      a.mail_from != b.mail_from || a.body != b.body || a.rcpts.size() != b.rcpts.size())
    return false;
  for (size_t i = 0; i < a.rcpts.size(); ++i) {
    if (a.rcpts[i].address != b.rcpts[i].address || a.rcpts[i].user != b.rcpts[i].user ||
        a.rcpts[i].detail != b.rcpts[i].detail)
      return false;
  }
  return true;
}

// What the world was told before the crash.
struct SpoolOutcome {
  std::map<MessageId, SpoolMessage> acked;  // a Sync after its append returned ok
  std::map<MessageId, SpoolMessage> maybe;  // appended or attempted, not acknowledged
  // Recipients whose Done a later successful Sync covered, and those attempted.
  std::map<MessageId, std::set<uint32_t>> done_durable, done_maybe;
  // Done records appended since the last successful Sync.
  std::vector<std::pair<MessageId, uint32_t>> unsynced_done;
  std::vector<MessageId> unsynced_msgs;
  size_t resurrected = 0;  // fully retired messages that came back (allowed)
};

struct LogCtx {
  SpoolOutcome o;
  std::unique_ptr<SpoolLog> log;
  SpoolLog::Options opts;
};

void Append(LogCtx& c, const SpoolMessage& m) {
  c.o.maybe[m.id] = m;
  if (c.log && c.log->AppendMessage(m).ok()) c.o.unsynced_msgs.push_back(m.id);
}

void Done(LogCtx& c, const MessageId& id, uint32_t rcpt) {
  c.o.done_maybe[id].insert(rcpt);
  if (c.log && c.log->AppendDone(id, rcpt, RcptState::kDelivered).ok()) c.o.unsynced_done.emplace_back(id, rcpt);
}

// The commit thread's way: a round's messages with one write, its Done
// records with another.
void AppendRound(LogCtx& c, const std::vector<SpoolMessage>& msgs) {
  std::vector<const SpoolMessage*> ptrs;
  for (const auto& m : msgs) {
    c.o.maybe[m.id] = m;
    ptrs.push_back(&m);
  }
  if (!c.log) return;
  std::vector<Status> st = c.log->AppendMessages(ptrs);
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (st[i].ok()) c.o.unsynced_msgs.push_back(msgs[i].id);
  }
}

void DoneRound(LogCtx& c, const std::vector<SpoolLog::DoneMark>& marks) {
  for (const auto& m : marks) c.o.done_maybe[m.id].insert(m.rcpt);
  if (!c.log || !c.log->AppendDones(marks).ok()) return;
  for (const auto& m : marks) c.o.unsynced_done.emplace_back(m.id, m.rcpt);
}

// A successful Sync acknowledges everything appended before it.
bool Sync(LogCtx& c) {
  if (!c.log || !c.log->Sync().ok()) return false;
  for (const auto& id : c.o.unsynced_msgs) c.o.acked[id] = c.o.maybe[id];
  for (const auto& [id, rcpt] : c.o.unsynced_done) c.o.done_durable[id].insert(rcpt);
  c.o.unsynced_msgs.clear();
  c.o.unsynced_done.clear();
  return true;
}

bool FullyDurablyDone(const SpoolOutcome& o, const SpoolMessage& m) {
  auto it = o.done_durable.find(m.id);
  return it != o.done_durable.end() && it->second.size() == m.rcpts.size();
}

// Every recipient had AppendDone called (which the spool does only once the
// copy is durable in the mailbox): the message may be retired even when the
// Sync that would have acknowledged the Done records never returned.
bool AllDoneAttempted(const SpoolOutcome& o, const SpoolMessage& m) {
  auto it = o.done_maybe.find(m.id);
  return it != o.done_maybe.end() && it->second.size() == m.rcpts.size();
}

// Opens the recovered spool and checks the invariants; returns the log (or
// null after a failure) and what it replayed.
std::unique_ptr<SpoolLog> CheckLog(SimFs& fs, SpoolOutcome& o, const SpoolLog::Options& opts,
                                   const std::string& where, std::vector<SpoolEntry>* out = nullptr) {
  SCOPED_TRACE(where);
  std::vector<SpoolEntry> got;
  auto log = SpoolLog::Open(fs, kSpoolDir, opts, &got);
  EXPECT_TRUE(log.ok()) << log.status().ToString();
  if (!log.ok()) return nullptr;
  std::map<MessageId, const SpoolEntry*> seen;
  for (const auto& e : got) {
    const std::string id = e.msg.id.ToString();
    EXPECT_TRUE(seen.emplace(e.msg.id, &e).second) << "returned twice: " << id;
    auto acked = o.acked.find(e.msg.id);
    auto maybe = o.maybe.find(e.msg.id);
    const SpoolMessage* want = acked != o.acked.end() ? &acked->second : maybe != o.maybe.end() ? &maybe->second : nullptr;
    EXPECT_TRUE(want != nullptr) << "unknown message returned: " << id;
    if (want == nullptr) continue;
    EXPECT_TRUE(SameMessage(e.msg, *want)) << "partial or altered message " << id;
    EXPECT_EQ(e.state.size(), want->rcpts.size());
    EXPECT_FALSE(e.Retired()) << "a retired message was returned: " << id;
    if (FullyDurablyDone(o, *want)) {
      // Its Done records lived in a segment whose removal survived while
      // the message's own segment's removal did not: harmless (the mailbox
      // knows the id), counted.
      ++o.resurrected;
      continue;
    }
    const auto durable = o.done_durable.count(e.msg.id) ? o.done_durable.at(e.msg.id) : std::set<uint32_t>{};
    const auto tried = o.done_maybe.count(e.msg.id) ? o.done_maybe.at(e.msg.id) : std::set<uint32_t>{};
    for (uint32_t r = 0; r < e.state.size(); ++r) {
      if (durable.count(r)) {
        EXPECT_NE(e.state[r], RcptState::kPending) << id << " rcpt " << r << ": durable Done lost";
      }
      if (e.state[r] != RcptState::kPending) {
        EXPECT_EQ(tried.count(r), 1u) << id << " rcpt " << r << ": invented Done";
      }
    }
  }
  // Ack => durable, and retirement never loses a message with a recipient
  // that was not done.
  for (const auto& [id, m] : o.acked) {
    if (AllDoneAttempted(o, m)) continue;
    EXPECT_EQ(seen.count(id), 1u) << "acknowledged, not fully done message lost: " << id.ToString();
  }
  EXPECT_EQ((*log)->unretired(), got.size());
  // Inspect agrees with what Open returned.
  auto inspected = SpoolLog::Inspect(fs, kSpoolDir);
  EXPECT_TRUE(inspected.ok()) << inspected.status().ToString();
  if (inspected.ok()) {
    EXPECT_EQ(inspected->size(), got.size());
  }
  if (out) *out = std::move(got);
  return std::move(log).value();
}

// Crashes `op` after every mutating call; recovers twice (idempotence), then
// shows life goes on: retire everything, add a message, reopen.
void ForEverySpoolCrashPoint(const std::function<void(SimFs&, LogCtx&)>& setup,
                             const std::function<void(SimFs&, LogCtx&)>& op, int exhaustive_bits = 6,
                             int samples = 12, uint64_t max_points = 400) {
  size_t recoveries = 0, resurrected = 0;
  for (uint64_t n = 1; n <= max_points; ++n) {
    SimFs fs;
    LogCtx c;
    setup(fs, c);
    if (::testing::Test::HasFatalFailure()) return;
    fs.SyncEverything();
    fs.SetCrashAfter(n);
    op(fs, c);
    c.log.reset();
    if (!fs.crashed()) {
      fs.SetCrashAfter(0);
      CheckLog(fs, c.o, c.opts, "no crash, " + std::to_string(n - 1) + " ops");
      ASSERT_GT(n, 1u) << "the operation did no Fs call at all";
      ::testing::Test::RecordProperty("crash_points", static_cast<int>(n - 1));
      ::testing::Test::RecordProperty("recoveries", static_cast<int>(recoveries));
      ::testing::Test::RecordProperty("resurrected", static_cast<int>(resurrected));
      if (std::getenv("HOLDFAST_CRASH_OPLOG")) {
        for (const auto& l : fs.OpLog()) std::printf("    %s\n", l.c_str());
      }
      if (std::getenv("HOLDFAST_CRASH_STATS")) {
        std::printf("[  STATS   ] %llu crash points, %zu recovered states, %zu retired messages resurrected\n",
                    static_cast<unsigned long long>(n - 1), recoveries, resurrected);
      }
      return;
    }
    auto log = fs.OpLog();
    std::string at = "crash after op " + std::to_string(n) + ": " + (log.empty() ? "?" : log.back());
    for (const CrashChoice& choice : fs.ChoicesToTest(n, exhaustive_bits, samples)) {
      auto after = fs.AfterCrash(choice);
      const std::string where = at + " / " + choice.Describe();
      std::vector<SpoolEntry> first, second;
      ++recoveries;
      const size_t before = c.o.resurrected;
      CheckLog(*after, c.o, c.opts, where, &first);
      resurrected += c.o.resurrected > before;
      auto again = CheckLog(*after, c.o, c.opts, where + " / recovered twice", &second);
      EXPECT_EQ(first.size(), second.size()) << where;
      if (again) {
        // Life goes on: deliver what is left, take new mail, remove segments.
        SpoolOutcome more = c.o;
        for (const auto& e : second) {
          for (uint32_t r = 0; r < e.state.size(); ++r) {
            if (e.state[r] == RcptState::kPending) {
              EXPECT_TRUE(again->AppendDone(e.msg.id, r, RcptState::kDelivered).ok()) << where;
            }
          }
          for (uint32_t r = 0; r < e.state.size(); ++r) {
            more.done_durable[e.msg.id].insert(r);
            more.done_maybe[e.msg.id].insert(r);
          }
        }
        SpoolMessage fresh = MakeMessage("after-crash", Body(999));
        EXPECT_TRUE(again->AppendMessage(fresh).ok()) << where;
        EXPECT_TRUE(again->Sync().ok()) << where;
        EXPECT_TRUE(again->RemoveRetiredSegments().ok()) << where;
        again.reset();
        more.acked[fresh.id] = fresh;
        more.maybe[fresh.id] = fresh;
        std::vector<SpoolEntry> left;
        CheckLog(*after, more, c.opts, where + " / then new mail", &left);
        EXPECT_EQ(left.size(), 1u) << where;
        auto names = after->ReadDir(kSpoolDir);
        EXPECT_TRUE(names.ok() && names->size() == 1u)
            << where << ": segments left after everything was retired: " << (names.ok() ? names->size() : 0);
      }
      if (::testing::Test::HasFailure()) return;  // one clear failure, not hundreds
    }
  }
  FAIL() << "operation still running after " << max_points << " crash points";
}

void MakeDataDir(SimFs& fs) { ASSERT_TRUE(fs.EnsureDir("/data").ok()); }

void OpenCtx(SimFs& fs, LogCtx& c) {
  auto log = SpoolLog::Open(fs, kSpoolDir, c.opts, nullptr);
  if (log.ok()) c.log = std::move(log).value();
}

// (a) What LMTP does for three concurrent sessions: three appends, one Sync.
void GroupOfThree(LogCtx& c, int first) {
  for (int i = first; i < first + 3; ++i) Append(c, MakeMessage("m" + std::to_string(i), Body(i), 1 + i % 3));
  Sync(c);
}

TEST(SpoolCrash, GroupCommitIntoAFreshSpool) {
  // The crash may hit the spool's creation too: mkdir, its parent's fsync,
  // the first segment and its header.
  ForEverySpoolCrashPoint([](SimFs& fs, LogCtx&) { MakeDataDir(fs); },
                          [](SimFs& fs, LogCtx& c) {
                            OpenCtx(fs, c);
                            GroupOfThree(c, 1);
                          },
                          /*exhaustive_bits=*/8);
}

TEST(SpoolCrash, GroupCommitNextToDurableMail) {
  ForEverySpoolCrashPoint(
      [](SimFs& fs, LogCtx& c) {
        MakeDataDir(fs);
        OpenCtx(fs, c);
        ASSERT_TRUE(c.log);
        for (int i = 1; i <= 2; ++i) Append(c, MakeMessage("old" + std::to_string(i), Body(i), 2));
        ASSERT_TRUE(Sync(c));
      },
      [](SimFs&, LogCtx& c) {
        GroupOfThree(c, 10);
        GroupOfThree(c, 20);  // a second round after the first was acknowledged
      },
      /*exhaustive_bits=*/8);
}

// A spool of `segment_bytes` segments holding one durable message.
void SmallSegmentsWithOneDurable(SimFs& fs, LogCtx& c, uint64_t segment_bytes, size_t body, int rcpts) {
  c.opts.segment_bytes = segment_bytes;
  MakeDataDir(fs);
  OpenCtx(fs, c);
  ASSERT_TRUE(c.log);
  Append(c, MakeMessage("old", Body(0, body), rcpts));
  ASSERT_TRUE(Sync(c));
}

TEST(SpoolCrash, GroupCommitAcrossASegmentRotation) {
  // Small segments: the batch itself rotates (an internal Sync, a new
  // segment whose name is only durable after the next SyncDir).
  ForEverySpoolCrashPoint(
      [](SimFs& fs, LogCtx& c) { SmallSegmentsWithOneDurable(fs, c, 600, 400, 1); },
      [](SimFs&, LogCtx& c) {
        for (int i = 1; i <= 3; ++i) Append(c, MakeMessage("r" + std::to_string(i), Body(i, 400), 2));
        Sync(c);
      },
      /*exhaustive_bits=*/8);
}

TEST(SpoolCrash, RoundsWrittenWithOneWriteEach) {
  // Spool::CommitLoop's rounds: each round's Message records in one append
  // (a torn one leaves whole frames before the tear), then the Done records
  // of the round before in another; small segments, so a round also rotates.
  ForEverySpoolCrashPoint(
      [](SimFs& fs, LogCtx& c) { SmallSegmentsWithOneDurable(fs, c, 900, 300, 2); },
      [](SimFs&, LogCtx& c) {
        std::vector<SpoolMessage> first, second;
        for (int i = 1; i <= 3; ++i) first.push_back(MakeMessage("a" + std::to_string(i), Body(i, 300), 1 + i % 2));
        for (int i = 4; i <= 6; ++i) second.push_back(MakeMessage("b" + std::to_string(i), Body(i, 300), 1 + i % 2));
        AppendRound(c, first);
        if (!Sync(c)) return;
        std::vector<SpoolLog::DoneMark> marks;
        for (const auto& m : first) {
          for (uint32_t r = 0; r < m.rcpts.size(); ++r) marks.push_back({m.id, r, RcptState::kDelivered});
        }
        AppendRound(c, second);
        DoneRound(c, marks);
        if (Sync(c) && c.log) (void)c.log->RemoveRetiredSegments();
      },
      /*exhaustive_bits=*/8);
}

// What the pipelined commit does (Spool::CommitLoop / SyncLoop): the sync
// thread takes the active segment, the directory flag and the retired count,
// then syncs while the commit thread appends the next round -- here with
// rotations in between. A sync acknowledges only what was appended before
// it took its handle.
struct SyncHandle {
  std::shared_ptr<File> file;
  bool dir = false;
  size_t retired = 0;
  std::vector<MessageId> msgs;
  std::vector<std::pair<MessageId, uint32_t>> done;
};

SyncHandle TakeHandle(LogCtx& c) {
  SyncHandle h;
  if (!c.log) return h;
  h.file = c.log->active_file();
  h.dir = c.log->TakeDirDirty();
  h.retired = c.log->RetiredSegments();
  h.msgs.swap(c.o.unsynced_msgs);
  h.done.swap(c.o.unsynced_done);
  return h;
}

void SyncWithHandle(SimFs& fs, LogCtx& c, const SyncHandle& h) {
  if (!c.log || !h.file || !h.file->SyncData().ok()) return;
  if (h.dir && !fs.SyncDir(kSpoolDir).ok()) return;
  for (const auto& id : h.msgs) c.o.acked[id] = c.o.maybe[id];
  for (const auto& [id, rcpt] : h.done) c.o.done_durable[id].insert(rcpt);
  (void)c.log->RemoveRetiredSegments(h.retired);
}

TEST(SpoolCrash, PipelinedSyncAcrossRotations) {
  auto olds = std::make_shared<std::vector<SpoolMessage>>();
  ForEverySpoolCrashPoint(
      [olds](SimFs& fs, LogCtx& c) {
        c.opts.segment_bytes = 600;
        MakeDataDir(fs);
        OpenCtx(fs, c);
        ASSERT_TRUE(c.log);
        olds->clear();
        for (int i = 0; i < 2; ++i) {
          olds->push_back(MakeMessage("old" + std::to_string(i), Body(i, 400)));
          Append(c, olds->back());
        }
        ASSERT_TRUE(Sync(c));
        ASSERT_EQ(c.log->active_segment(), 1u);  // over 600 bytes: the next append rotates
      },
      [olds](SimFs& fs, LogCtx& c) {
        Done(c, (*olds)[0].id, 0);
        for (int i = 1; i <= 2; ++i) Append(c, MakeMessage("p" + std::to_string(i), Body(i, 400), 2));
        SyncHandle first = TakeHandle(c);
        // The next round, appended while the first sync "runs".
        Append(c, MakeMessage("p3", Body(3, 400), 1));
        Done(c, (*olds)[1].id, 0);
        SyncWithHandle(fs, c, first);
        SyncWithHandle(fs, c, TakeHandle(c));
        if (!fs.crashed()) EXPECT_GE(c.log->active_segment(), 3u) << "the rounds did not rotate";
      },
      /*exhaustive_bits=*/8);
}

// (b) Retirement: messages spread over >= 3 segments, all durable.
constexpr uint64_t kSmallSegment = 1024;

void FillForRetirement(SimFs& fs, LogCtx& c, std::vector<SpoolMessage>* msgs, std::vector<uint64_t>* segs) {
  c.opts.segment_bytes = kSmallSegment;
  MakeDataDir(fs);
  OpenCtx(fs, c);
  ASSERT_TRUE(c.log);
  for (int i = 0; i < 8; ++i) {
    SpoolMessage m = MakeMessage("ret" + std::to_string(i), Body(i, 420), 1 + i % 2);
    Append(c, m);
    msgs->push_back(m);
    segs->push_back(c.log->active_segment());
  }
  ASSERT_TRUE(Sync(c));
  ASSERT_GE(c.log->active_segment(), 3u);
}

struct RetireCtx {
  std::vector<SpoolMessage> msgs;
  std::vector<uint64_t> segs;
};

TEST(SpoolCrash, RetireEverythingAndRemoveSegments) {
  auto state = std::make_shared<RetireCtx>();
  ForEverySpoolCrashPoint(
      [state](SimFs& fs, LogCtx& c) {
        *state = RetireCtx{};
        FillForRetirement(fs, c, &state->msgs, &state->segs);
      },
      [state](SimFs&, LogCtx& c) {
        for (const auto& m : state->msgs)
          for (uint32_t r = 0; r < m.rcpts.size(); ++r) Done(c, m.id, r);
        if (Sync(c) && c.log) (void)c.log->RemoveRetiredSegments();
      });
}

TEST(SpoolCrash, RetireAroundAPendingMessage) {
  // One message in the middle keeps a recipient pending: the segments
  // before it go, it and everything after it stay.
  auto state = std::make_shared<RetireCtx>();
  ForEverySpoolCrashPoint(
      [state](SimFs& fs, LogCtx& c) {
        *state = RetireCtx{};
        FillForRetirement(fs, c, &state->msgs, &state->segs);
      },
      [state](SimFs&, LogCtx& c) {
        for (size_t i = 0; i < state->msgs.size(); ++i) {
          const auto& m = state->msgs[i];
          for (uint32_t r = 0; r < m.rcpts.size(); ++r) {
            if (i == 3 && r + 1 == m.rcpts.size()) continue;  // still pending
            Done(c, m.id, r);
          }
        }
        if (Sync(c) && c.log) (void)c.log->RemoveRetiredSegments();
      });
}

TEST(SpoolCrash, RetireInTwoRoundsWithNewMailBetween) {
  auto state = std::make_shared<RetireCtx>();
  ForEverySpoolCrashPoint(
      [state](SimFs& fs, LogCtx& c) {
        *state = RetireCtx{};
        FillForRetirement(fs, c, &state->msgs, &state->segs);
      },
      [state](SimFs&, LogCtx& c) {
        // First the newer half (nothing can be removed: the oldest segments
        // still hold pending mail), then the older half.
        for (size_t i = 4; i < state->msgs.size(); ++i)
          for (uint32_t r = 0; r < state->msgs[i].rcpts.size(); ++r) Done(c, state->msgs[i].id, r);
        // Big enough that the second round's Done records go to a new
        // segment: the first round's Done records then sit in a segment that
        // is itself removed at the end, together with the messages they
        // retired -- a crash may keep one unlink and not the other.
        SpoolMessage between = MakeMessage("between", Body(50, 900), 2);
        Append(c, between);
        if (Sync(c) && c.log) (void)c.log->RemoveRetiredSegments();
        for (size_t i = 0; i < 4; ++i)
          for (uint32_t r = 0; r < state->msgs[i].rcpts.size(); ++r) Done(c, state->msgs[i].id, r);
        for (uint32_t r = 0; r < between.rcpts.size(); ++r) Done(c, between.id, r);
        if (Sync(c) && c.log) (void)c.log->RemoveRetiredSegments();
      });
}

// (c) Replay is crash-safe: a crash while Open cuts a torn tail (or drops
// a segment whose header never became durable), then Open again.
TEST(SpoolCrash, ReplayCuttingATornTail) {
  ForEverySpoolCrashPoint(
      [](SimFs& fs, LogCtx& c) {
        MakeDataDir(fs);
        OpenCtx(fs, c);
        ASSERT_TRUE(c.log);
        for (int i = 1; i <= 3; ++i) Append(c, MakeMessage("t" + std::to_string(i), Body(i), 2));
        ASSERT_TRUE(Sync(c));
        Done(c, c.o.acked.begin()->first, 0);
        ASSERT_TRUE(Sync(c));
        c.log.reset();
        // The append that was being made when the power went: half a frame.
        auto f = fs.OpenAppend(JoinPath(kSpoolDir, "0000000000000001.seg"));
        ASSERT_TRUE(f.ok());
        std::string frame = EncodeRecord(2, std::string(300, 'T'));
        ASSERT_TRUE((*f)->Append(frame.substr(0, 150)).ok());
      },
      [](SimFs& fs, LogCtx& c) {
        OpenCtx(fs, c);  // replay: cut, fdatasync
        Append(c, MakeMessage("after-replay", Body(7), 1));
        Sync(c);
      });
}

TEST(SpoolCrash, ReplayDroppingAnEmptyLastSegment) {
  ForEverySpoolCrashPoint(
      [](SimFs& fs, LogCtx& c) {
        MakeDataDir(fs);
        OpenCtx(fs, c);
        ASSERT_TRUE(c.log);
        for (int i = 1; i <= 2; ++i) Append(c, MakeMessage("e" + std::to_string(i), Body(i), 1));
        ASSERT_TRUE(Sync(c));
        c.log.reset();
        // A rotation whose new segment got its name but not its header.
        auto f = fs.CreateExclusive(JoinPath(kSpoolDir, "0000000000000002.seg"));
        ASSERT_TRUE(f.ok());
        ASSERT_TRUE((*f)->Append(std::string(7, '\x11')).ok());
      },
      [](SimFs& fs, LogCtx& c) {
        OpenCtx(fs, c);  // replay: unlink, fsync the directory, start a new segment
        Append(c, MakeMessage("after-replay", Body(8), 2));
        Sync(c);
      });
}

// ------------------------------------------------------ Spool end to end

std::string Join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += "  " + l + "\n";
  return s;
}

// The spool's event log, shared with its threads (which may outlive a test
// that gives up on a hung Stop()).
struct EventLog {
  std::mutex mu;
  std::vector<std::string> lines;
  std::vector<std::string> Get() {
    std::lock_guard<std::mutex> l(mu);
    return lines;
  }
};

Spool::Options E2EOptions(const std::shared_ptr<EventLog>& events) {
  Spool::Options o;
  o.mail_dir = kMailDir;
  o.mailbox = TestOptions();
  o.retry_delay = std::chrono::hours(1);  // a failed delivery waits for the next start
  o.log_line = [events](const std::string& line) {
    std::lock_guard<std::mutex> l(events->mu);
    events->lines.push_back(line);
  };
  return o;
}

template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

// Stop() with a watchdog: if it does not return within `limit`, the spool
// and its Fs are leaked (its threads may still use them) and false returned.
bool StopWithin(std::unique_ptr<Spool>& spool, const std::shared_ptr<SimFs>& fs, std::chrono::milliseconds deadline,
                std::chrono::milliseconds limit) {
  auto finished = std::make_shared<std::atomic<bool>>(false);
  Spool* raw = spool.get();
  std::thread t([raw, deadline, finished] {
    raw->Stop(deadline);
    *finished = true;
  });
  if (!WaitFor([&] { return finished->load(); }, limit)) {
    t.detach();
    (void)spool.release();
    new std::shared_ptr<SimFs>(fs);  // leaked on purpose
    return false;
  }
  t.join();
  spool.reset();
  return true;
}

struct Submitted {
  std::mutex mu;
  bool called = false;
  Status status;
};

// Submits and waits for the group commit's verdict.
std::shared_ptr<Submitted> SubmitAndWait(Spool& spool, const SpoolMessage& m) {
  auto s = std::make_shared<Submitted>();
  spool.Submit(m, [s](Status st) {
    std::lock_guard<std::mutex> l(s->mu);
    s->status = st;
    s->called = true;
  });
  bool called = WaitFor(
      [&] {
        std::lock_guard<std::mutex> l(s->mu);
        return s->called;
      },
      std::chrono::seconds(10));
  EXPECT_TRUE(called) << "the submit callback never ran";
  return s;
}

// The bytes spool.cc files for `user`: trace headers for the first of the
// message's recipients that maps to the user, then the body.
std::string Expected(const SpoolMessage& m, const std::string& user) {
  for (const auto& r : m.rcpts) {
    if (r.user == user) return TraceHeaders(m.body, m.mail_from, r.address, TraceOptions{}) + m.body;
  }
  return "";
}

struct BoxCheck {
  int copies = 0;
  bool knows = false;  // the mailbox index knows the id (live or tombstone)
};

BoxCheck CountCopies(SimFs& fs, const std::string& user, const SpoolMessage& m, const std::string& where) {
  BoxCheck out;
  const std::string dir = JoinPath(kMailDir, user);
  for (const char* sub : {"tmp", "new", "cur"}) {
    if (!fs.Stat(JoinPath(dir, sub)).ok()) return out;  // the Maildir was never (durably) made
  }
  auto box = Mailbox::Open(fs, dir, TestOptions());
  EXPECT_TRUE(box.ok()) << where << ": " << box.status().ToString();
  if (!box.ok()) return out;
  auto list = (*box)->List();
  EXPECT_TRUE(list.ok()) << where << ": " << list.status().ToString();
  if (!list.ok()) return out;
  const std::string want = Expected(m, user);
  for (const auto& e : *list) {
    EXPECT_EQ(e.id, m.id) << where << ": unknown message in " << user << "'s mailbox: " << e.name;
    if (e.id != m.id) continue;
    ++out.copies;
    auto bytes = fs.ReadFile(e.Path(dir));
    EXPECT_TRUE(bytes.ok()) << where << ": listed but unreadable: " << e.name;
    if (bytes.ok()) {
      EXPECT_TRUE(*bytes == want) << where << ": altered copy in " << user << "'s mailbox: " << e.name;
    }
  }
  out.knows = (*box)->Knows(m.id);
  auto report = (*box)->Fsck(false);
  EXPECT_TRUE(report.ok() && report->clean()) << where << ": fsck of " << user << " found problems";
  return out;
}

size_t PendingRecipients(SimFs& fs, const std::string& where) {
  auto entries = SpoolLog::Inspect(fs, kSpoolDir);
  EXPECT_TRUE(entries.ok()) << where << ": " << entries.status().ToString();
  if (!entries.ok()) return 0;
  size_t n = 0;
  for (const auto& e : *entries)
    for (auto s : e.state) n += s == RcptState::kPending;
  return n;
}

// Starts the spool on a recovered fs, lets it replay everything, stops it.
// Returns false after a failure.
bool ReplayAndStop(const std::shared_ptr<SimFs>& fs, const std::string& where, Spool::Stats* stats_out = nullptr) {
  const size_t pending = PendingRecipients(*fs, where);
  auto events = std::make_shared<EventLog>();
  auto started = Spool::Start(*fs, kSpoolDir, E2EOptions(events));
  EXPECT_TRUE(started.ok()) << where << ": restart failed: " << started.status().ToString();
  if (!started.ok()) return false;
  std::unique_ptr<Spool> spool = std::move(started).value();
  bool settled = WaitFor(
      [&] {
        auto st = spool->stats();
        return st.delivered + st.already_there >= pending || st.delivery_failures > 0;
      },
      std::chrono::seconds(10));
  auto st = spool->stats();
  EXPECT_TRUE(settled) << where << ": replay did not finish";
  EXPECT_EQ(st.delivery_failures, 0u) << where << ": replayed delivery failed:\n" << Join(events->Get());
  EXPECT_EQ(st.delivered + st.already_there, pending) << where;
  if (!StopWithin(spool, fs, std::chrono::seconds(5), std::chrono::seconds(20))) {
    ADD_FAILURE() << where << ": Stop() hung after a replay";
    return false;
  }
  if (stats_out) *stats_out = st;
  // Everything replayed was retired durably: nothing left to deliver.
  auto left = SpoolLog::Inspect(*fs, kSpoolDir);
  EXPECT_TRUE(left.ok() && left->empty()) << where << ": spool not retired after replay: "
                                          << (left.ok() ? left->size() : 0) << " message(s)\n"
                                          << Join(events->Get());
  return !::testing::Test::HasFailure();
}

// The message of the end-to-end tests: two users, and a third recipient
// that maps to the first user's mailbox again (one copy for it).
SpoolMessage ThreeRecipients() {
  SpoolMessage m;
  m.id = MessageId::Generate();
  m.received_ms = 1700000000000;
  m.client = "127.0.0.1";
  m.helo = "mta.example";
  m.mail_from = "sender@example.net";
  m.rcpts = {{"alice@example.org", "alice", ""}, {"bob@example.org", "bob", ""},
             {"alice+lists@example.org", "alice", "lists"}};
  m.body = Lit("Subject: crash test\r\nX-8bit: \xe9\xe8\r\n\r\nline\0with NUL\r\n") + std::string(3000, 'b') +
           "\r\n";
  return m;
}

std::shared_ptr<SimFs> FreshDataDir() {
  auto fs = std::make_shared<SimFs>();
  EXPECT_TRUE(fs->EnsureDir("/data").ok());
  EXPECT_TRUE(fs->EnsureDir(kMailDir).ok());
  fs->SyncEverything();
  return fs;
}

// (d) Submit, wait for the 250, wait for the deliveries, with a crash
// armed after start-up. `strict`: an acknowledged message must be in every
// recipient's mailbox (checked per state). Not strict: losses are counted
// and must add up to zero at the end.
void EndToEndExactlyOnce(bool strict) {
  size_t known_loss = 0, points = 0, choices = 0;
  for (uint64_t n = 1; n <= 400; ++n) {
    const SpoolMessage msg = ThreeRecipients();
    auto fs = FreshDataDir();
    auto events = std::make_shared<EventLog>();
    auto started = Spool::Start(*fs, kSpoolDir, E2EOptions(events));
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    std::unique_ptr<Spool> spool = std::move(started).value();
    fs->SetCrashAfter(n);
    auto submitted = SubmitAndWait(*spool, msg);
    WaitFor(
        [&] {
          auto st = spool->stats();
          return st.delivered + st.already_there >= msg.rcpts.size() || fs->crashed();
        },
        std::chrono::seconds(10));
    // After the crash every Fs call of the spool's threads fails: Stop must
    // still return promptly.
    ASSERT_TRUE(StopWithin(spool, fs, std::chrono::milliseconds(200), std::chrono::seconds(20)))
        << "Stop() hung at crash point " << n << "\n"
        << Join(events->Get());
    const bool acked = [&] {
      std::lock_guard<std::mutex> l(submitted->mu);
      return submitted->called && submitted->status.ok();
    }();
    std::vector<std::shared_ptr<SimFs>> worlds;
    std::vector<std::string> names;
    const bool crashed = fs->crashed();
    if (!crashed) {
      fs->SetCrashAfter(0);
      EXPECT_TRUE(acked) << "no crash, but the submit failed";
      worlds.push_back(fs);
      names.push_back("no crash, " + std::to_string(fs->MutatingOps()) + " ops");
    } else {
      ++points;
      auto log = fs->OpLog();
      const std::string at = "crash after op " + std::to_string(n) + ": " + (log.empty() ? "?" : log.back()) +
                             (acked ? " (acked)" : " (not acked)");
      for (const CrashChoice& choice : fs->ChoicesToTest(n, 4, 6)) {
        worlds.push_back(std::shared_ptr<SimFs>(fs->AfterCrash(choice)));
        names.push_back(at + " / " + choice.Describe());
      }
    }
    for (size_t w = 0; w < worlds.size(); ++w) {
      ++choices;
      const std::string& where = names[w];
      if (!ReplayAndStop(worlds[w], where)) return;
      bool lost_here = false;
      for (const std::string user : {"alice", "bob"}) {
        BoxCheck b = CountCopies(*worlds[w], user, msg, where);
        EXPECT_LE(b.copies, 1) << where << ": " << user << " got the message " << b.copies << " times";
        if (acked && b.copies == 0) {
          if (!strict && b.knows) {
            lost_here = true;  // the known bug: the mailbox "knows" an id it never showed
          } else {
            ADD_FAILURE() << where << ": acknowledged message lost for " << user
                          << (b.knows ? " (the mailbox index knows its id)" : "");
          }
        }
      }
      known_loss += lost_here;
      // A second restart finds nothing to do and changes nothing.
      if (!ReplayAndStop(worlds[w], where + " / restarted again")) return;
      for (const std::string user : {"alice", "bob"}) EXPECT_LE(CountCopies(*worlds[w], user, msg, where).copies, 1);
      if (::testing::Test::HasFailure()) return;
    }
    if (!crashed) {
      ::testing::Test::RecordProperty("crash_points", static_cast<int>(points));
      ::testing::Test::RecordProperty("recoveries", static_cast<int>(choices));
      ::testing::Test::RecordProperty("known_loss", static_cast<int>(known_loss));
      EXPECT_EQ(known_loss, 0u) << known_loss << " of " << choices << " recovered states lost an acknowledged copy";
      return;
    }
  }
  FAIL() << "still running after 400 crash points";
}

TEST(SpoolCrash, EndToEndDeliveryNeverDuplicates) { EndToEndExactlyOnce(/*strict=*/false); }

// Regression (found by this test, fixed with Confirm records): a crash after
// the mailbox made its Add record durable but before the rename tmp/ -> new/
// was durable left an index entry whose file never appeared; its tombstone
// made Knows(id) true on replay and an acknowledged message was lost.
TEST(SpoolCrash, DeliveryNeverLosesAcknowledgedMail) { EndToEndExactlyOnce(/*strict=*/true); }

// (e) Delivered, then expunged by the user, and the spool never learnt it
// was delivered (its Done records are missing): replay must not bring it
// back, and must retire it. Crashes during that replay are recovered too.
struct ExpungedSetup {
  SpoolMessage msg;
};

void SetUpExpunged(SimFs& fs, ExpungedSetup& s) {
  s.msg = ThreeRecipients();
  s.msg.rcpts = {{"alice@example.org", "alice", ""}, {"bob@example.org", "bob", ""}, {"carol@example.org", "carol", ""}};
  ASSERT_TRUE(fs.EnsureDir("/data").ok());
  ASSERT_TRUE(fs.EnsureDir(kMailDir).ok());
  {
    auto log = SpoolLog::Open(fs, kSpoolDir, SpoolLog::Options{}, nullptr);
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE((*log)->AppendMessage(s.msg).ok());  // the Message record only
    ASSERT_TRUE((*log)->Sync().ok());
  }
  // alice: delivered, then fetched and deleted. bob: delivered, still there.
  // carol: never delivered.
  for (const std::string user : {"alice", "bob"}) {
    const std::string dir = JoinPath(kMailDir, user);
    ASSERT_TRUE(Mailbox::Create(fs, dir).ok());
    auto box = Mailbox::Open(fs, dir, TestOptions());
    ASSERT_TRUE(box.ok());
    auto d = (*box)->BeginDelivery(s.msg.id);
    ASSERT_TRUE(d.ok());
    ASSERT_TRUE((*d)->Write(Expected(s.msg, user)).ok());
    auto done = (*d)->Commit();
    ASSERT_TRUE(done.ok()) << done.status().ToString();
    if (user == "alice") {
      ASSERT_TRUE((*box)->Expunge({{done->uid, s.msg.id}}).ok());
      auto list = (*box)->List();
      ASSERT_TRUE(list.ok() && list->empty());
    }
  }
  fs.SyncEverything();
}

// Returns false when carol's copy was lost (must never happen; counted and
// asserted zero by the caller); everything else is checked.
bool CheckExpunged(const std::shared_ptr<SimFs>& fs, const ExpungedSetup& s, const std::string& where) {
  EXPECT_EQ(CountCopies(*fs, "alice", s.msg, where).copies, 0) << where << ": expunged message delivered again";
  EXPECT_EQ(CountCopies(*fs, "bob", s.msg, where).copies, 1) << where;
  BoxCheck carol = CountCopies(*fs, "carol", s.msg, where);
  if (carol.copies == 0 && carol.knows) return false;
  EXPECT_EQ(carol.copies, 1) << where;
  return true;
}

TEST(SpoolCrash, ExpungedMessageIsNotDeliveredAgainOnReplay) {
  auto fs = std::make_shared<SimFs>();
  ExpungedSetup s;
  SetUpExpunged(*fs, s);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());
  Spool::Stats st;
  ASSERT_TRUE(ReplayAndStop(fs, "replay", &st));
  EXPECT_EQ(st.already_there, 2u);  // alice (tombstone) and bob (live)
  EXPECT_EQ(st.delivered, 1u);      // carol
  EXPECT_TRUE(CheckExpunged(fs, s, "after replay"));
  ASSERT_TRUE(ReplayAndStop(fs, "second start"));
  EXPECT_TRUE(CheckExpunged(fs, s, "after a second start"));
}

TEST(SpoolCrash, ReplayOfExpungedMessageIsCrashSafe) {
  size_t known_loss = 0;
  for (uint64_t n = 1; n <= 400; ++n) {
    auto fs = std::make_shared<SimFs>();
    ExpungedSetup s;
    SetUpExpunged(*fs, s);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    fs->SetCrashAfter(n);  // armed before start-up: the replay itself crashes
    auto events = std::make_shared<EventLog>();
    auto started = Spool::Start(*fs, kSpoolDir, E2EOptions(events));
    if (started.ok()) {
      std::unique_ptr<Spool> spool = std::move(started).value();
      WaitFor(
          [&] {
            auto st = spool->stats();
            return st.delivered + st.already_there >= 3 || fs->crashed();
          },
          std::chrono::seconds(10));
      ASSERT_TRUE(StopWithin(spool, fs, std::chrono::milliseconds(200), std::chrono::seconds(20)))
          << "Stop() hung at crash point " << n;
    } else {
      ASSERT_TRUE(fs->crashed()) << started.status().ToString();
    }
    if (!fs->crashed()) {
      fs->SetCrashAfter(0);
      EXPECT_TRUE(CheckExpunged(fs, s, "no crash"));
      EXPECT_EQ(known_loss, 0u) << known_loss << " recovered states lost carol's copy";
      return;
    }
    auto log = fs->OpLog();
    const std::string at = "crash after op " + std::to_string(n) + ": " + (log.empty() ? "?" : log.back());
    for (const CrashChoice& choice : fs->ChoicesToTest(n, 4, 6)) {
      std::shared_ptr<SimFs> after(fs->AfterCrash(choice));
      const std::string where = at + " / " + choice.Describe();
      if (!ReplayAndStop(after, where)) return;
      known_loss += !CheckExpunged(after, s, where);
      if (::testing::Test::HasFailure()) return;
    }
  }
  FAIL() << "still running after 400 crash points";
}


// ------------------------------------------------------ The filter stage

// A filter chain of one real command: mail marked JUNK goes to the Junk
// folder, QUARANTINE asks for the quarantine, POISON dies by SIGSEGV
// (quarantined after K = 2 failures), anything else passes. The worker is
// the real `holdfast filter-worker`, reading the same chain from a config
// file; the spool, mailboxes and quarantine live on the SimFs.
struct FilterSetup {
  std::string dir;  // real temp dir: the script and the worker's config
  FilterOptions filters;
  std::vector<std::string> argv;
};

const FilterSetup& Filters() {
  static const FilterSetup* setup = [] {
    auto* s = new FilterSetup;
    char tmpl[] = "/tmp/hf-filter-crash-XXXXXX";
    s->dir = ::mkdtemp(tmpl);
    const std::string script = s->dir + "/filter.sh";
    FILE* f = std::fopen(script.c_str(), "w");
    std::fputs(
        "m=$(cat)\n"
        "case \"$m\" in *POISON*) kill -SEGV $$ ;; esac\n"
        "case \"$m\" in *JUNK*) echo 'folder Junk' ;; esac\n"
        "case \"$m\" in *QUARANTINE*) echo 'quarantine asked by the test filter' ;; esac\n"
        "exit 0\n",
        f);
    std::fclose(f);
    const std::string config = s->dir + "/holdfast.toml";
    f = std::fopen(config.c_str(), "w");
    std::fprintf(f,
                 "[filters]\nbatch_size = 8\nworkers = 1\nmax_attempts = 2\n"
                 "[[filters.chain]]\ntype = \"command\"\nname = \"test\"\ncommand = [\"/bin/sh\", \"%s\"]\n"
                 "timeout_ms = 10000\n",
                 script.c_str());
    std::fclose(f);
    FilterStep step;
    step.kind = FilterStep::Kind::kCommand;
    step.name = "test";
    step.argv = {"/bin/sh", script};
    step.timeout = std::chrono::milliseconds(10000);
    s->filters.chain = {step};
    s->filters.batch_size = 8;
    s->filters.workers = 1;
    s->filters.max_attempts = 2;
    s->argv = {HOLDFAST_BINARY, "--data", s->dir, "--config", config, "filter-worker"};
    return s;
  }();
  return *setup;
}

Spool::Options FilterOptionsFor(const std::shared_ptr<EventLog>& events) {
  Spool::Options o = E2EOptions(events);
  o.filters = Filters().filters;
  o.worker_argv = Filters().argv;
  o.release_poll = std::chrono::milliseconds(50);
  return o;
}

SpoolMessage Marked(const std::string& marker) {
  SpoolMessage m = ThreeRecipients();
  m.rcpts = {{"alice@example.org", "alice", ""}};
  m.body = "Subject: " + marker + "\r\nX-8bit: \xe9\r\n\r\n" + marker + "\r\n" + std::string(500, 'f') + "\r\n";
  return m;
}

// Copies of `m` in every folder of alice's mailbox (folder "" = INBOX),
// each checked byte for byte.
std::map<std::string, int> CopiesByFolder(SimFs& fs, const SpoolMessage& m, const std::string& where) {
  std::map<std::string, int> out;
  const std::string home = JoinPath(kMailDir, "alice");
  std::vector<std::string> folders{""};
  if (auto names = fs.ReadDir(home); names.ok()) {
    for (const auto& n : *names)
      if (n.size() > 1 && n[0] == '.') folders.push_back(n.substr(1));
  }
  for (const auto& folder : folders) {
    const std::string dir = folder.empty() ? home : JoinPath(home, "." + folder);
    if (!fs.Stat(JoinPath(dir, "cur")).ok() || !fs.Stat(JoinPath(dir, "new")).ok() || !fs.Stat(JoinPath(dir, "tmp")).ok())
      continue;
    auto box = Mailbox::Open(fs, dir, TestOptions());
    EXPECT_TRUE(box.ok()) << where << ": " << box.status().ToString();
    if (!box.ok()) continue;
    auto list = (*box)->List();
    if (!list.ok()) continue;
    for (const auto& e : *list) {
      if (e.id != m.id) continue;
      ++out[folder];
      auto bytes = fs.ReadFile(e.Path(dir));
      EXPECT_TRUE(bytes.ok() && *bytes == Expected(m, "alice")) << where << ": altered copy in folder '" << folder << "'";
    }
  }
  return out;
}

// Starts the spool with filters on a recovered fs and waits until nothing is
// left (everything filed, quarantined or discarded), then stops it.
bool SettleFilteredAndStop(const std::shared_ptr<SimFs>& fs, const std::string& where) {
  auto events = std::make_shared<EventLog>();
  auto started = Spool::Start(*fs, kSpoolDir, FilterOptionsFor(events));
  EXPECT_TRUE(started.ok()) << where << ": restart failed: " << started.status().ToString();
  if (!started.ok()) return false;
  std::unique_ptr<Spool> spool = std::move(started).value();
  bool settled = WaitFor([&] { return spool->stats().backlog_messages == 0; }, std::chrono::seconds(30));
  EXPECT_TRUE(settled) << where << ": the filter stage did not settle\n" << Join(events->Get());
  if (!StopWithin(spool, fs, std::chrono::seconds(5), std::chrono::seconds(20))) {
    ADD_FAILURE() << where << ": Stop() hung";
    return false;
  }
  auto left = SpoolLog::Inspect(*fs, kSpoolDir);
  EXPECT_TRUE(left.ok() && left->empty()) << where << ": spool not retired\n" << Join(events->Get());
  return !::testing::Test::HasFailure();
}

// The invariants after recovery: the clean message once in INBOX, the junk
// once in Junk, the two quarantined ones in the quarantine once and
// nowhere else -- whatever the crash. `acked`: the submit returned ok.
void CheckFiltered(SimFs& fs, const std::vector<SpoolMessage>& msgs, const std::vector<bool>& acked,
                   const std::string& where) {
  Quarantine q(fs, "/data/quarantine");
  auto listed = q.List();
  auto released = q.Released();
  ASSERT_TRUE(listed.ok() && released.ok()) << where;
  std::map<MessageId, int> in_quarantine;
  for (const auto* v : {&*listed, &*released})
    for (const auto& e : *v) ++in_quarantine[e.msg.id];
  const std::vector<std::string> want_folder{"", "Junk", "", ""};
  for (size_t i = 0; i < msgs.size(); ++i) {
    auto copies = CopiesByFolder(fs, msgs[i], where);
    int total = 0;
    for (const auto& [folder, n] : copies) total += n;
    const bool quarantined = i >= 2;
    const int q_count = in_quarantine.count(msgs[i].id) ? in_quarantine[msgs[i].id] : 0;
    EXPECT_LE(total + q_count, 1) << where << ": message " << i << " is in more than one place";
    if (!acked[i]) continue;
    if (quarantined) {
      EXPECT_EQ(q_count, 1) << where << ": message " << i << " not in the quarantine";
      EXPECT_EQ(total, 0) << where << ": quarantined message " << i << " was delivered";
    } else {
      EXPECT_EQ(total, 1) << where << ": message " << i << " lost";
      EXPECT_EQ(copies[want_folder[i]], total) << where << ": message " << i << " in the wrong folder";
    }
  }
}

// Every crash point forks real workers several times, which is slow under
// the sanitizers: there (make test-asan) every 4th point and one recovered
// state each; the Release run takes them all.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr uint64_t kFilterCrashStride = 4;
constexpr int kFilterCrashSamples = 1;
constexpr size_t kFilterCrashWorlds = 2;  // the two extremes: nothing more durable, everything
#else
constexpr uint64_t kFilterCrashStride = 1;
constexpr int kFilterCrashSamples = 3;
constexpr size_t kFilterCrashWorlds = 1000;
#endif

TEST(FilterStageCrash, EveryMessageEndsInExactlyOnePlace) {
  for (uint64_t n = 1; n <= 600; n += kFilterCrashStride) {
    const std::vector<SpoolMessage> msgs{Marked("clean"), Marked("JUNK"), Marked("QUARANTINE"), Marked("POISON")};
    auto fs = FreshDataDir();
    auto events = std::make_shared<EventLog>();
    auto started = Spool::Start(*fs, kSpoolDir, FilterOptionsFor(events));
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    std::unique_ptr<Spool> spool = std::move(started).value();
    fs->SetCrashAfter(n);
    std::vector<std::shared_ptr<Submitted>> subs;
    for (const auto& m : msgs) subs.push_back(SubmitAndWait(*spool, m));
    WaitFor([&] { return spool->stats().backlog_messages == 0 || fs->crashed(); }, std::chrono::seconds(30));
    ASSERT_TRUE(StopWithin(spool, fs, std::chrono::milliseconds(200), std::chrono::seconds(30)))
        << "Stop() hung at crash point " << n << "\n"
        << Join(events->Get());
    std::vector<bool> acked;
    for (auto& s : subs) {
      std::lock_guard<std::mutex> l(s->mu);
      acked.push_back(s->called && s->status.ok());
    }
    std::vector<std::shared_ptr<SimFs>> worlds;
    std::vector<std::string> names;
    const bool crashed = fs->crashed();
    if (!crashed) {
      fs->SetCrashAfter(0);
      worlds.push_back(fs);
      names.push_back("no crash, " + std::to_string(fs->MutatingOps()) + " ops");
    } else {
      auto log = fs->OpLog();
      const std::string at = "crash after op " + std::to_string(n) + ": " + (log.empty() ? "?" : log.back());
      for (const CrashChoice& choice : fs->ChoicesToTest(n, 2, kFilterCrashSamples)) {
        if (worlds.size() == kFilterCrashWorlds) break;
        worlds.push_back(std::shared_ptr<SimFs>(fs->AfterCrash(choice)));
        names.push_back(at + " / " + choice.Describe());
      }
    }
    for (size_t w = 0; w < worlds.size(); ++w) {
      if (!SettleFilteredAndStop(worlds[w], names[w])) return;
      CheckFiltered(*worlds[w], msgs, acked, names[w]);
      if (::testing::Test::HasFailure()) return;
    }
    if (!crashed) {
      for (bool a : acked) EXPECT_TRUE(a);
      ::testing::Test::RecordProperty("crash_points", static_cast<int>(n - 1));
      return;
    }
  }
  FAIL() << "still running after 600 crash points";
}

// Release: the quarantined message comes back through the spool, skipping
// the filters, into the INBOX -- once, even when the server crashes during
// the release and the release is picked up again.
TEST(FilterStageCrash, ReleaseDeliversOnceSkippingTheFilters) {
  for (uint64_t n = 1; n <= 400; ++n) {
    const SpoolMessage poison = Marked("POISON");
    auto fs = FreshDataDir();
    {
      // Quarantine it (no crash armed), then release it as the CLI would.
      auto events = std::make_shared<EventLog>();
      auto started = Spool::Start(*fs, kSpoolDir, FilterOptionsFor(events));
      ASSERT_TRUE(started.ok());
      std::unique_ptr<Spool> spool = std::move(started).value();
      SubmitAndWait(*spool, poison);
      ASSERT_TRUE(WaitFor([&] { return spool->stats().quarantined == 1; }, std::chrono::seconds(30)))
          << Join(events->Get());
      ASSERT_TRUE(StopWithin(spool, fs, std::chrono::seconds(5), std::chrono::seconds(20)));
      Quarantine q(*fs, "/data/quarantine");
      ASSERT_TRUE(q.Release(poison.id, "test").ok());
      fs->SyncEverything();
    }
    auto events = std::make_shared<EventLog>();
    fs->SetCrashAfter(n);  // armed before start-up: recovery and pick-up crash too
    auto started = Spool::Start(*fs, kSpoolDir, FilterOptionsFor(events));
    if (started.ok()) {
      std::unique_ptr<Spool> spool = std::move(started).value();
      WaitFor([&] { return spool->stats().released == 1 || fs->crashed(); }, std::chrono::seconds(30));
      ASSERT_TRUE(StopWithin(spool, fs, std::chrono::milliseconds(200), std::chrono::seconds(30)));
    }
    std::vector<std::shared_ptr<SimFs>> worlds;
    std::vector<std::string> names;
    const bool crashed = fs->crashed();
    if (!crashed) {
      fs->SetCrashAfter(0);
      worlds.push_back(fs);
      names.push_back("no crash");
    } else {
      auto log = fs->OpLog();
      const std::string at = "crash after op " + std::to_string(n) + ": " + (log.empty() ? "?" : log.back());
      for (const CrashChoice& choice : fs->ChoicesToTest(n, 2, 3)) {
        worlds.push_back(std::shared_ptr<SimFs>(fs->AfterCrash(choice)));
        names.push_back(at + " / " + choice.Describe());
      }
    }
    for (size_t w = 0; w < worlds.size(); ++w) {
      const std::string& where = names[w];
      // Restarted (twice: the second finds nothing to do), it ends in the INBOX once.
      for (int round = 0; round < 2; ++round) {
        auto ev = std::make_shared<EventLog>();
        auto again = Spool::Start(*worlds[w], kSpoolDir, FilterOptionsFor(ev));
        ASSERT_TRUE(again.ok()) << where << ": " << again.status().ToString();
        std::unique_ptr<Spool> spool = std::move(again).value();
        // Picked up at start; settled once released/ is empty and nothing is left to file.
        Quarantine look(*worlds[w], "/data/quarantine");
        ASSERT_TRUE(WaitFor(
            [&] {
              auto rel = look.Released();
              return rel.ok() && rel->empty() && spool->stats().backlog_messages == 0;
            },
            std::chrono::seconds(30)))
            << where << "\n" << Join(ev->Get());
        ASSERT_TRUE(StopWithin(spool, worlds[w], std::chrono::seconds(5), std::chrono::seconds(20)));
      }
      auto copies = CopiesByFolder(*worlds[w], poison, where);
      EXPECT_EQ(copies[""], 1) << where << ": the released message is not in the INBOX exactly once";
      EXPECT_EQ(copies.size(), 1u) << where;
      Quarantine q(*worlds[w], "/data/quarantine");
      EXPECT_FALSE(q.Has(poison.id)) << where << ": still in the quarantine after its release";
      if (::testing::Test::HasFailure()) return;
    }
    if (!crashed) return;
  }
  FAIL() << "still running after 400 crash points";
}

}  // namespace
}  // namespace holdfast::testing
