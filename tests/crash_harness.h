// Crash-point harness: run an operation on a SimFs, crash it after the 1st,
// 2nd, ... mutating Fs call, reboot into every state ChoicesToTest offers,
// recover, and check the invariants of MISSION.md on the result.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>
#include <string>

#include "fs/sim_fs.h"
#include "store/mailbox.h"
#include "store/maildir_name.h"

namespace holdfast::testing {

inline constexpr char kBox[] = "/data/mail/alice";

inline MailboxOptions TestOptions() {
  MailboxOptions o;
  o.hostname = "test.host";
  o.lock_timeout = std::chrono::milliseconds(2000);
  return o;
}

// What the world was told before the crash.
struct Outcome {
  std::map<std::string, std::string> acked;      // MessageId -> bytes: delivery acknowledged
  std::map<std::string, std::string> maybe;      // attempted, not acknowledged
  std::map<uint32_t, std::string> uids_seen;     // uid -> MessageId handed out before the crash
  std::set<std::string> expunge_acked;           // expunges that returned ok
  std::set<std::string> expunge_maybe;           // expunges attempted
  uint32_t uidvalidity = 0;
};

// Checks the invariants on a recovered mailbox; returns its listing.
inline std::vector<IndexEntry> CheckInvariants(SimFs& fs, const Outcome& o, const std::string& where) {
  SCOPED_TRACE(where);
  auto box = Mailbox::Open(fs, kBox, TestOptions());
  EXPECT_TRUE(box.ok()) << box.status().ToString();
  if (!box.ok()) return {};
  auto list = (*box)->List();
  EXPECT_TRUE(list.ok()) << list.status().ToString();
  if (!list.ok()) return {};
  std::map<std::string, int> seen;
  for (const auto& e : *list) {
    const std::string id = e.id.ToString();
    ++seen[id];
    // A file's U= is the UID it is listed under: never two files with one UID.
    auto parsed = ParseMaildirName(e.name);
    if (parsed && parsed->uid) {
      EXPECT_EQ(*parsed->uid, e.uid) << "file " << e.name << " listed under another uid";
    }
    auto bytes = fs.ReadFile(e.Path(kBox));
    EXPECT_TRUE(bytes.ok()) << "listed but unreadable: " << e.name;
    // Whole or invisible: whatever is listed is a complete known message.
    auto acked = o.acked.find(id);
    auto maybe = o.maybe.find(id);
    EXPECT_TRUE(acked != o.acked.end() || maybe != o.maybe.end()) << "unknown message listed: " << e.name;
    const std::string& want = acked != o.acked.end() ? acked->second : (maybe != o.maybe.end() ? maybe->second : "");
    if (bytes.ok()) {
      EXPECT_EQ(*bytes, want) << "partial or altered message " << e.name;
    }
    EXPECT_EQ(o.expunge_acked.count(id), 0u) << "expunged message came back: " << e.name;
    // UIDs are never reused: a UID handed out before keeps its message.
    auto uid = o.uids_seen.find(e.uid);
    if (uid != o.uids_seen.end() && (*box)->uidvalidity() == o.uidvalidity) {
      EXPECT_EQ(uid->second, id) << "uid " << e.uid << " reused";
    }
  }
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << "duplicated " << id;
  // Ack => durable: acknowledged and not expunged means present.
  for (const auto& [id, bytes] : o.acked) {
    if (o.expunge_acked.count(id) || o.expunge_maybe.count(id)) continue;
    EXPECT_EQ(seen.count(id), 1u) << "acknowledged message lost: " << id;
  }
  // A POP3 login's listing (from the index checkpoint when one matches)
  // lists exactly what the whole load lists.
  {
    auto pop = Mailbox::OpenForListing(fs, kBox, TestOptions());
    EXPECT_TRUE(pop.ok()) << pop.status().ToString();
    auto refs = pop.ok() ? (*pop)->ListRefs() : Result<std::vector<MessageRef>>(pop.status());
    EXPECT_TRUE(refs.ok()) << refs.status().ToString();
    if (refs.ok()) {
      EXPECT_EQ(refs->size(), list->size()) << "listing view differs from the whole index";
      for (size_t i = 0; i < std::min(refs->size(), list->size()); ++i) {
        EXPECT_EQ((*refs)[i].uid, (*list)[i].uid);
        EXPECT_EQ((*refs)[i].id, (*list)[i].id);
        EXPECT_EQ((*refs)[i].network_size, (*list)[i].network_size());
      }
    }
  }
  // Recovery left nothing behind in tmp/ and the mailbox verifies.
  auto tmp = fs.ReadDir(std::string(kBox) + "/tmp");
  EXPECT_TRUE(tmp.ok() && tmp->empty()) << "tmp/ not cleaned: " << (tmp.ok() ? tmp->size() : 0) << " files";
  auto report = (*box)->Fsck(false);
  EXPECT_TRUE(report.ok() && report->clean()) << "fsck found problems";
  return *list;
}

// Crashes `op` after every mutating call. `setup` prepares a fresh, fully
// durable SimFs; `op` runs the operation and records what it acknowledged.
// After each reboot, recovery runs, invariants are checked, and recovery is
// run again to prove it idempotent.
inline void ForEveryCrashPoint(const std::function<void(SimFs&, Outcome&)>& setup,
                               const std::function<void(SimFs&, Outcome&)>& op, int samples = 12,
                               uint64_t max_points = 400) {
  for (uint64_t n = 1; n <= max_points; ++n) {
    SimFs fs;
    Outcome outcome;
    setup(fs, outcome);
    fs.SyncEverything();
    fs.SetCrashAfter(n);
    op(fs, outcome);
    if (!fs.crashed()) {
      fs.SetCrashAfter(0);  // disarm: the checks make Fs calls too
      CheckInvariants(fs, outcome, "no crash, " + std::to_string(n - 1) + " ops");
      ASSERT_GT(n, 1u) << "the operation did no Fs call at all";
      return;
    }
    auto log = fs.OpLog();
    std::string at = "crash after op " + std::to_string(n) + ": " + (log.empty() ? "?" : log.back());
    for (const CrashChoice& choice : fs.ChoicesToTest(n, 6, samples)) {
      auto after = fs.AfterCrash(choice);
      auto first = CheckInvariants(*after, outcome, at + " / " + choice.Describe());
      auto second = CheckInvariants(*after, outcome, at + " / " + choice.Describe() + " / recovered twice");
      EXPECT_EQ(first.size(), second.size());
      // Life goes on: a delivery right after recovery, before any listing,
      // must not collide with anything the crash left behind.
      {
        auto after2 = fs.AfterCrash(choice);
        Outcome more = outcome;
        auto box = Mailbox::Open(*after2, kBox, TestOptions());
        ASSERT_TRUE(box.ok()) << box.status().ToString();
        auto d = (*box)->BeginDelivery();
        ASSERT_TRUE(d.ok());
        const std::string bytes = "Subject: after the crash\n\n";
        ASSERT_TRUE((*d)->Write(bytes).ok());
        auto done = (*d)->Commit();
        ASSERT_TRUE(done.ok()) << done.status().ToString();
        more.acked[done->id.ToString()] = bytes;
        more.uids_seen[done->uid] = done->id.ToString();
        box->reset();
        // And one as `holdfast deliver` makes it, from the index summary:
        // whatever the crash left of it, never a UID twice.
        auto light = Mailbox::OpenForDelivery(*after2, kBox, TestOptions());
        ASSERT_TRUE(light.ok()) << light.status().ToString();
        auto d2 = (*light)->BeginDelivery();
        ASSERT_TRUE(d2.ok());
        ASSERT_TRUE((*d2)->Write(bytes).ok());
        auto done2 = (*d2)->Commit();
        ASSERT_TRUE(done2.ok()) << done2.status().ToString();
        EXPECT_GT(done2->uid, done->uid);
        more.acked[done2->id.ToString()] = bytes;
        CheckInvariants(*after2, more, at + " / " + choice.Describe() + " / then a delivery");
      }
      if (::testing::Test::HasFailure()) return;  // one clear failure, not hundreds
    }
  }
  FAIL() << "operation still running after " << max_points << " crash points";
}

inline void MakeBox(SimFs& fs) {
  ASSERT_TRUE(fs.EnsureDir("/data").ok());
  ASSERT_TRUE(fs.EnsureDir("/data/mail").ok());
  ASSERT_TRUE(Mailbox::Create(fs, kBox).ok());
}

// Delivers during setup and records the message as acknowledged.
inline void DeliverAcked(SimFs& fs, Outcome& o, const std::string& bytes) {
  MakeBox(fs);
  auto box = Mailbox::Open(fs, kBox, TestOptions());
  ASSERT_TRUE(box.ok()) << box.status().ToString();
  auto d = (*box)->BeginDelivery();
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE((*d)->Write(bytes).ok());
  auto done = (*d)->Commit();
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  o.acked[done->id.ToString()] = bytes;
  o.uids_seen[done->uid] = done->id.ToString();
  o.uidvalidity = (*box)->uidvalidity();
}

}  // namespace holdfast::testing
