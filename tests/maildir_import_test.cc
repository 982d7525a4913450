// `holdfast import maildir` on SimFs: byte-exact, flags and new/ vs cur/
// kept, exactly once through re-runs and crashes, deleted mail never brought
// back, the source never written. Crash points as in import_crash_test.cc.
#include <gtest/gtest.h>

#include "crash_harness.h"
#include "migrate/maildir_import.h"

namespace holdfast::testing {
namespace {

constexpr char kSrc[] = "/src/Maildir";

struct SourceMessage {
  std::string path;   // relative to kSrc
  std::string base;
  std::string bytes;
  std::string where;  // "new" or "cur:FLAGS" as the import must place it
};

const std::vector<SourceMessage>& Source() {
  static const std::vector<SourceMessage> v = {
      {"new/1700000000.M1P1.mx", "1700000000.M1P1.mx", "Subject: one\n\nhello\nFrom the desk of\n", "new"},
      {"cur/1700000001.M2P1.mx,S=20:2,S", "1700000001.M2P1.mx,S=20", "Subject: two\n\n>From quoted\n", "cur:S"},
      {"cur/1700000002.M3P1.mx:2,SR", "1700000002.M3P1.mx", "Subject: three\r\n\r\nCRLF body\r\n", "cur:RS"},
      {"cur/1700000003.M4P1.mx:2,FTa", "1700000003.M4P1.mx", std::string("Subject: four\n\nNUL ") + '\0' + " and \xff\n",
       "cur:FT"},
      {"cur/1700000004.M5P1.mx:2,", "1700000004.M5P1.mx", "Subject: five\n\nno final newline", "cur:"},
      // doveadm flags mail in place: a flagged file in new/ goes into cur/.
      {"new/1700000005.M6P1.mx:2,S", "1700000005.M6P1.mx", "Subject: six\n\nseen in new\n", "cur:S"},
  };
  return v;
}

void WriteFile(SimFs& fs, const std::string& path, const std::string& bytes) {
  auto f = fs.CreateExclusive(path);
  ASSERT_TRUE(f.ok()) << path;
  ASSERT_TRUE((*f)->Append(bytes).ok());
}

void MakeSource(SimFs& fs) {
  MakeBox(fs);
  ASSERT_TRUE(fs.EnsureDir("/src").ok());
  for (const char* d : {"", "/tmp", "/new", "/cur", "/.Sent", "/.Sent/cur", "/.Sent/new", "/.Sent/tmp"}) {
    ASSERT_TRUE(fs.EnsureDir(std::string(kSrc) + d).ok());
  }
  for (const auto& m : Source()) WriteFile(fs, std::string(kSrc) + "/" + m.path, m.bytes);
  WriteFile(fs, std::string(kSrc) + "/tmp/1700000005.M6P1.mx", "Subject: never delivered\n\n");
  WriteFile(fs, std::string(kSrc) + "/.Sent/cur/1700000006.M7P1.mx:2,S", "Subject: sent\n\n");
  WriteFile(fs, std::string(kSrc) + "/dovecot-uidlist", "3 V1 N6\n");
  fs.SyncEverything();
}

Result<MaildirImportReport> RunImport(Fs& fs, size_t batch = 64) {
  HF_ASSIGN_OR_RETURN(auto box, Mailbox::Open(fs, kBox, TestOptions()));
  MaildirImportOptions opts;
  opts.batch = batch;
  MaildirImportReport report;
  HF_RETURN_IF_ERROR(ImportMaildir(fs, kSrc, *box, opts, &report));
  return report;
}

// MessageId -> "bytes|where" of what the mailbox holds.
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
    const std::string where = e.dir == MaildirDir::kNew ? "new" : "cur:" + e.Flags();
    out[e.id.ToString()] = (bytes.ok() ? *bytes : "") + "|" + where;
  }
  return out;
}

std::map<std::string, std::string> Want() {
  std::map<std::string, std::string> want;
  for (const auto& m : Source()) want[MaildirImportId(m.base).ToString()] = m.bytes + "|" + m.where;
  return want;
}

std::map<std::string, std::string> SourceFiles(SimFs& fs) {
  std::map<std::string, std::string> out;
  for (const char* d : {"new", "cur", "tmp", ".Sent/cur"}) {
    auto names = fs.ReadDir(std::string(kSrc) + "/" + d);
    EXPECT_TRUE(names.ok());
    for (const auto& n : *names) out[std::string(d) + "/" + n] = *fs.ReadFile(std::string(kSrc) + "/" + d + "/" + n);
  }
  return out;
}

TEST(ImportMaildir, ByteExactWithFlagsAndOnce) {
  SimFs fs;
  MakeSource(fs);
  const auto source_before = SourceFiles(fs);
  auto first = RunImport(fs);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->Summary(), "imported 6, already there 0, skipped 0");
  EXPECT_EQ(first->subfolders, std::vector<std::string>{".Sent"});
  EXPECT_EQ(Contents(fs), Want());
  auto again = RunImport(fs, 2);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->imported, 0u);
  EXPECT_EQ(again->already_there, 6u);
  EXPECT_EQ(Contents(fs), Want());
  EXPECT_EQ(SourceFiles(fs), source_before);  // only read
}

TEST(ImportMaildir, FlagsChangedInTheSourceDoNotMakeACopy) {
  // The identity is the base name: a Maildir tool marking a message read
  // between two runs (new/ -> cur/, ":2,S") does not make it a new message.
  SimFs fs;
  MakeSource(fs);
  ASSERT_TRUE(RunImport(fs).ok());
  ASSERT_TRUE(fs.Rename(std::string(kSrc) + "/new/1700000000.M1P1.mx",
                        std::string(kSrc) + "/cur/1700000000.M1P1.mx:2,S").ok());
  auto again = RunImport(fs);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->imported, 0u);
  EXPECT_EQ(again->already_there, 6u);
}

TEST(ImportMaildir, DeletedMailIsNotBroughtBack) {
  SimFs fs;
  MakeSource(fs);
  ASSERT_TRUE(RunImport(fs).ok());
  {
    auto box = Mailbox::Open(fs, kBox, TestOptions());
    ASSERT_TRUE(box.ok());
    auto list = (*box)->List();
    ASSERT_EQ(list->size(), 6u);
    ASSERT_TRUE((*box)->Expunge({{(*list)[0].uid, (*list)[0].id}, {(*list)[2].uid, (*list)[2].id}}).ok());
    ASSERT_TRUE((*box)->Rebuild().ok());  // tombstones of imported ids survive a rewrite
  }
  auto again = RunImport(fs);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->imported, 0u);
  EXPECT_EQ(Contents(fs).size(), 4u);
}

TEST(ImportMaildir, NotAMaildir) {
  SimFs fs;
  MakeBox(fs);
  ASSERT_TRUE(fs.EnsureDir("/src").ok());
  auto box = Mailbox::Open(fs, kBox, TestOptions());
  ASSERT_TRUE(box.ok());
  MaildirImportReport report;
  EXPECT_EQ(ImportMaildir(fs, "/src", **box, {}, &report).kind(), Status::Kind::kInvalid);
}

TEST(ImportMaildir, SkipsEmptyAndOversize) {
  SimFs fs;
  MakeSource(fs);
  WriteFile(fs, std::string(kSrc) + "/new/1700000009.empty.mx", "");
  auto box = Mailbox::Open(fs, kBox, TestOptions());
  ASSERT_TRUE(box.ok());
  MaildirImportOptions opts;
  opts.max_message_size = 30;
  MaildirImportReport report;
  ASSERT_TRUE(ImportMaildir(fs, kSrc, **box, opts, &report).ok());
  EXPECT_EQ(report.imported, 4u);
  EXPECT_EQ(report.Summary(),
            "imported 4, already there 0, skipped 3 (1 empty; 2 larger than delivery.max_message_size (30 bytes))");
}

TEST(ImportMaildir, HoldfastNamesKeepTheirId) {
  // An export imported back into the mailbox it came from is recognised.
  const MessageId id = MessageId::Generate();
  const std::string base = "1700000000." + id.ToString() + ".test.host,S=3,W=3,U=7";
  EXPECT_EQ(MaildirImportId(base), id);
  EXPECT_EQ(MaildirImportId("1700000000.M1P1.mx").ToString().substr(0, 10), "7ZZZZZZZZZ");
  EXPECT_NE(MaildirImportId("1700000000.M1P1.mx"), MaildirImportId("1700000000.M1P2.mx"));
}

// Crash the import after every mutating Fs op; after each reboot re-run it:
// every message in the mailbox exactly once, byte-exact, in the right
// directory with the right flags; a third run finds them all there.
void CrashEveryPoint(size_t batch) {
  Outcome all;
  for (const auto& m : Source()) all.acked[MaildirImportId(m.base).ToString()] = m.bytes;
  for (uint64_t n = 1;; ++n) {
    ASSERT_LT(n, 400u) << "import still running after 400 crash points";
    SimFs fs;
    MakeSource(fs);
    fs.SetCrashAfter(n);
    (void)RunImport(fs, batch);
    if (!fs.crashed()) {
      fs.SetCrashAfter(0);
      CheckInvariants(fs, all, "no crash, " + std::to_string(n - 1) + " ops");
      EXPECT_EQ(Contents(fs), Want());
      ASSERT_GT(n, 5u);
      return;
    }
    const auto log = fs.OpLog();
    const std::string at = "batch " + std::to_string(batch) + ", crash after op " + std::to_string(n) + ": " +
                           (log.empty() ? "?" : log.back());
    for (const CrashChoice& choice : fs.ChoicesToTest(n, 6, 8)) {
      auto after = fs.AfterCrash(choice);
      const std::string where = at + " / " + choice.Describe();
      const auto source_before = SourceFiles(*after);
      auto rerun = RunImport(*after, batch);
      ASSERT_TRUE(rerun.ok()) << where << ": " << rerun.status().ToString();
      EXPECT_EQ(rerun->imported + rerun->already_there, 6u) << where;
      CheckInvariants(*after, all, where + " / re-run");
      EXPECT_EQ(Contents(*after), Want()) << where;
      auto third = RunImport(*after, batch);
      ASSERT_TRUE(third.ok()) << where;
      EXPECT_EQ(third->imported, 0u) << where;
      EXPECT_EQ(third->already_there, 6u) << where;
      EXPECT_EQ(SourceFiles(*after), source_before) << where;
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST(ImportMaildirCrash, OneMessagePerCommit) { CrashEveryPoint(1); }
TEST(ImportMaildirCrash, OneBatch) { CrashEveryPoint(64); }
TEST(ImportMaildirCrash, BatchesOfTwo) { CrashEveryPoint(2); }

}  // namespace
}  // namespace holdfast::testing
