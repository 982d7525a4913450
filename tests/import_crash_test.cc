// `holdfast import mbox` on SimFs: exactly once through crashes and re-runs,
// deleted mail never brought back, the source never written, and the
// reasons a message is skipped. Crash points as in crash_harness.h: crash
// after every mutating Fs op, boot the states SimFs offers, re-run the
// import, and check every message is in the mailbox once, whole.
#include <gtest/gtest.h>

#include "crash_harness.h"
#include "migrate/mbox_import.h"

namespace holdfast::testing {
namespace {

constexpr char kMbox[] = "/src/inbox.mbox";

// Five messages with the quirks: >From quoting, a "From " body line, a CRLF
// message, blank lines that are content, no final newline.
const std::vector<std::string>& Stored() {
  static const std::vector<std::string> v = {
      "Subject: one\n\nhello\n",
      "Subject: two\n\nhi\nFrom the desk of\n>From quoted once\n",
      "Subject: three\r\n\r\nCRLF body\r\n",
      "Subject: four\n\nblank lines follow\n\n\n",
      "Subject: five\n\nno final newline",
  };
  return v;
}

std::string MboxBytes() {
  return "From a@example.org Mon Jan  1 00:00:00 2024\nSubject: one\n\nhello\n\n"
         "From b@example.org Mon Jan  1 00:00:01 2024\nSubject: two\n\nhi\nFrom the desk of\n>>From quoted once\n\n"
         "From c@example.org Mon Jan  1 00:00:02 2024\r\nSubject: three\r\n\r\nCRLF body\r\n\r\n"
         "From d@example.org Mon Jan  1 00:00:03 2024\nSubject: four\n\nblank lines follow\n\n\n\n"
         "From e@example.org Mon Jan  1 00:00:04 2024\nSubject: five\n\nno final newline";
}

void WriteFile(SimFs& fs, const std::string& path, const std::string& bytes) {
  (void)fs.EnsureDir("/src");
  auto f = fs.CreateExclusive(path);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append(bytes).ok());
}

void SetUpBoxAndSource(SimFs& fs, const std::string& mbox = MboxBytes()) {
  MakeBox(fs);
  WriteFile(fs, kMbox, mbox);
  fs.SyncEverything();
}

Result<MboxImportReport> RunImport(Fs& fs, size_t batch = 64, uint64_t max_size = 1 << 20,
                                   const char* path = kMbox) {
  HF_ASSIGN_OR_RETURN(auto box, Mailbox::Open(fs, kBox, TestOptions()));
  HF_ASSIGN_OR_RETURN(auto source, fs.OpenRead(path));
  HF_ASSIGN_OR_RETURN(uint64_t size, source->Size());
  MboxImportOptions opts;
  opts.batch = batch;
  opts.max_message_size = max_size;
  MboxImportReport report;
  HF_RETURN_IF_ERROR(ImportMbox(fs, *source, size, *box, opts, &report));
  return report;
}

// MessageId -> bytes of what the mailbox holds, checking each file's bytes.
std::map<std::string, std::string> Contents(SimFs& fs) {
  std::map<std::string, std::string> out;
  auto box = Mailbox::Open(fs, kBox, TestOptions());
  EXPECT_TRUE(box.ok());
  if (!box.ok()) return out;
  auto list = (*box)->List();
  EXPECT_TRUE(list.ok());
  for (const auto& e : *list) {
    auto bytes = fs.ReadFile(e.Path(kBox));
    EXPECT_TRUE(bytes.ok());
    EXPECT_EQ(out.count(e.id.ToString()), 0u) << "duplicate id";
    out[e.id.ToString()] = bytes.ok() ? *bytes : "";
  }
  return out;
}

std::multiset<std::string> Values(const std::map<std::string, std::string>& m) {
  std::multiset<std::string> out;
  for (const auto& [k, v] : m) out.insert(v);
  return out;
}

TEST(ImportMbox, ImportsByteExactAndOnce) {
  SimFs fs;
  SetUpBoxAndSource(fs);
  auto first = RunImport(fs);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->imported, 5u);
  EXPECT_EQ(first->Summary(), "imported 5, already there 0, skipped 0");
  auto contents = Contents(fs);
  EXPECT_EQ(Values(contents), std::multiset<std::string>(Stored().begin(), Stored().end()));
  for (const auto& [id, bytes] : contents) EXPECT_EQ(id.substr(0, 10), "7ZZZZZZZZZ") << id;
  auto again = RunImport(fs, 2);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->imported, 0u);
  EXPECT_EQ(again->already_there, 5u);
  EXPECT_EQ(Contents(fs), contents);
  // The source is only read.
  EXPECT_EQ(*fs.ReadFile(kMbox), MboxBytes());
}

TEST(ImportMbox, AppendedMailIsImportedOnTheNextRun) {
  // A spool the MTA appends to keeps its identity (its first message).
  SimFs fs;
  SetUpBoxAndSource(fs);
  ASSERT_TRUE(RunImport(fs).ok());
  auto f = fs.OpenAppend(kMbox);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("\n\nFrom f@example.org Tue Jan  2 00:00:00 2024\nSubject: six\n\nnew\n\n").ok());
  f->reset();
  auto again = RunImport(fs);
  ASSERT_TRUE(again.ok());
  // Message six is new; message five, which had no final newline, now has
  // one: other bytes at the same offset, so it is imported again as another
  // message (docs/migration.md: an MTA always ends a message with a newline).
  EXPECT_EQ(again->imported, 2u);
  EXPECT_EQ(again->already_there, 4u);
  EXPECT_EQ(Contents(fs).size(), 7u);
}

TEST(ImportMbox, IdenticalMessagesAtTwoOffsetsAreTwoMessages) {
  SimFs fs;
  const std::string m = "From a Mon Jan  1 00:00:00 2024\nSubject: same\n\nsame\n\n";
  SetUpBoxAndSource(fs, m + m);
  auto r = RunImport(fs);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->imported, 2u);
}

TEST(ImportMbox, DeletedMailIsNotBroughtBack) {
  SimFs fs;
  SetUpBoxAndSource(fs);
  ASSERT_TRUE(RunImport(fs).ok());
  {
    auto box = Mailbox::Open(fs, kBox, TestOptions());
    ASSERT_TRUE(box.ok());
    auto list = (*box)->List();
    ASSERT_EQ(list->size(), 5u);
    ASSERT_TRUE((*box)->Expunge({{(*list)[1].uid, (*list)[1].id}, {(*list)[3].uid, (*list)[3].id}}).ok());
  }
  auto again = RunImport(fs);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->imported, 0u);
  EXPECT_EQ(again->already_there, 5u);
  EXPECT_EQ(Contents(fs).size(), 3u);
  // Also after the index is rewritten (fsck's rebuild, compaction): the
  // tombstones of imported ids do not expire.
  {
    auto box = Mailbox::Open(fs, kBox, TestOptions());
    ASSERT_TRUE((*box)->Rebuild().ok());
  }
  again = RunImport(fs);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->imported, 0u);
  EXPECT_EQ(Contents(fs).size(), 3u);
}

TEST(ImportMbox, SkipsEmptyAndOversizeMessages) {
  SimFs fs;
  SetUpBoxAndSource(fs, "From a\n\nFrom b\nSubject: big\n\n" + std::string(200, 'x') + "\n\nFrom c\nSubject: small\n\n");
  auto r = RunImport(fs, 64, 100);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->imported, 1u);
  EXPECT_EQ(r->skipped_total(), 2u);
  EXPECT_EQ(r->Summary(),
            "imported 1, already there 0, skipped 2 (1 empty; 1 larger than delivery.max_message_size (100 bytes))");
  ASSERT_EQ(r->skipped_detail.size(), 2u);
  EXPECT_EQ(r->skipped_detail[0], "offset 0 (From a): empty");
  EXPECT_EQ(Values(Contents(fs)), std::multiset<std::string>{"Subject: small\n"});
}

TEST(ImportMbox, NotAnMboxImportsNothing) {
  SimFs fs;
  SetUpBoxAndSource(fs, "Subject: a single message\n\nFrom me\n");
  auto r = RunImport(fs);
  EXPECT_EQ(r.status().kind(), Status::Kind::kInvalid);
  EXPECT_TRUE(Contents(fs).empty());
}

TEST(ImportMbox, OneImportAtATime) {
  SimFs fs;
  SetUpBoxAndSource(fs);
  auto held = fs.LockFile(std::string(kBox) + "/holdfast-import.lock", std::chrono::milliseconds(0));
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(RunImport(fs).status().kind(), Status::Kind::kBusy);
  held->reset();
  EXPECT_TRUE(RunImport(fs).ok());
}

TEST(ImportMbox, TemporaryFailureLeavesNothingHalfDone) {
  SimFs fs;
  SetUpBoxAndSource(fs);
  fs.FailNext("rename");  // the first message's commit: its Add is durable, its file is not in new/
  auto r = RunImport(fs, 1);
  EXPECT_FALSE(r.ok());
  auto again = RunImport(fs, 1);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->imported + again->already_there, 5u);
  EXPECT_EQ(Values(Contents(fs)), std::multiset<std::string>(Stored().begin(), Stored().end()));
}

// Crash the import after every mutating Fs op; after each reboot, re-run it:
// every message ends up in the mailbox exactly once, byte-exact, and a third
// run finds them all there.
void CrashEveryPoint(size_t batch) {
  std::map<std::string, std::string> want;  // the ids are deterministic: learn them from a clean run
  {
    SimFs fs;
    SetUpBoxAndSource(fs);
    ASSERT_TRUE(RunImport(fs, batch).ok());
    want = Contents(fs);
    ASSERT_EQ(want.size(), 5u);
  }
  Outcome all;
  all.acked = want;
  for (uint64_t n = 1;; ++n) {
    ASSERT_LT(n, 400u) << "import still running after 400 crash points";
    SimFs fs;
    SetUpBoxAndSource(fs);
    fs.SetCrashAfter(n);
    (void)RunImport(fs, batch);
    if (!fs.crashed()) {
      fs.SetCrashAfter(0);
      CheckInvariants(fs, all, "no crash, " + std::to_string(n - 1) + " ops");
      ASSERT_GT(n, 5u);
      return;
    }
    const auto log = fs.OpLog();
    const std::string at = "batch " + std::to_string(batch) + ", crash after op " + std::to_string(n) + ": " +
                           (log.empty() ? "?" : log.back());
    for (const CrashChoice& choice : fs.ChoicesToTest(n, 6, 8)) {
      auto after = fs.AfterCrash(choice);
      const std::string where = at + " / " + choice.Describe();
      auto rerun = RunImport(*after, batch);
      ASSERT_TRUE(rerun.ok()) << where << ": " << rerun.status().ToString();
      EXPECT_EQ(rerun->imported + rerun->already_there, 5u) << where;
      CheckInvariants(*after, all, where + " / re-run");
      auto third = RunImport(*after, batch);
      ASSERT_TRUE(third.ok()) << where;
      EXPECT_EQ(third->imported, 0u) << where;
      EXPECT_EQ(third->already_there, 5u) << where;
      EXPECT_EQ(*after->ReadFile(kMbox), MboxBytes()) << where;
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST(ImportMboxCrash, OneMessagePerCommit) { CrashEveryPoint(1); }
TEST(ImportMboxCrash, OneBatch) { CrashEveryPoint(64); }
TEST(ImportMboxCrash, BatchesOfTwo) { CrashEveryPoint(2); }

}  // namespace
}  // namespace holdfast::testing
