// `holdfast export maildir|mbox` on SimFs: byte-exact copies with their
// flags, refusal to write into anything that exists, damaged messages left
// out, mboxrd quoting that `import mbox` undoes exactly, and the round trip
// mailbox -> export -> import -> the same messages.
#include <gtest/gtest.h>

#include "crash_harness.h"
#include "migrate/export.h"
#include "migrate/maildir_import.h"
#include "migrate/mbox_import.h"

namespace holdfast::testing {
namespace {

constexpr char kOther[] = "/data/mail/bob";

const std::vector<std::string>& Messages() {
  static const std::vector<std::string> v = {
      "Return-Path: <alice@example.org>\nSubject: one\n\nFrom the desk of\n>From quoted\n>>From twice\n",
      "Subject: two\r\n\r\nCRLF body\r\nFrom here\r\n",
      std::string("Subject: three\n\nNUL ") + '\0' + " and \xff 8-bit\n\n\n",
      "Subject: four\n\nno final newline",
      "From: x\nSubject: five\n\n>\n>F\nFrom\n",
  };
  return v;
}

// Delivers Messages() into kBox; the second and fourth into cur/ with flags.
void Fill(SimFs& fs) {
  MakeBox(fs);
  auto box = Mailbox::Open(fs, kBox, TestOptions());
  ASSERT_TRUE(box.ok());
  for (size_t i = 0; i < Messages().size(); ++i) {
    auto d = (*box)->BeginDelivery();
    ASSERT_TRUE(d.ok());
    ASSERT_TRUE((*d)->Write(Messages()[i]).ok());
    if (i == 1) (*d)->SetPlacement(MaildirDir::kCur, "SR");
    if (i == 3) (*d)->SetPlacement(MaildirDir::kCur, "");
    ASSERT_TRUE((*d)->Commit().ok());
  }
  fs.SyncEverything();
}

// "bytes|where" in UID order.
std::vector<std::string> Listing(SimFs& fs, const std::string& dir) {
  std::vector<std::string> out;
  auto box = Mailbox::Open(fs, dir, TestOptions());
  EXPECT_TRUE(box.ok());
  if (!box.ok()) return out;
  auto list = (*box)->List();
  EXPECT_TRUE(list.ok());
  for (const auto& e : *list) {
    out.push_back(*fs.ReadFile(e.Path(dir)) + "|" + (e.dir == MaildirDir::kNew ? "new" : "cur:" + e.Flags()));
  }
  return out;
}

Status Export(SimFs& fs, const std::string& dest, bool mbox, ExportReport* report, bool mboxo = false) {
  HF_ASSIGN_OR_RETURN(auto box, Mailbox::Open(fs, kBox, TestOptions()));
  ExportOptions opts;
  opts.mboxo = mboxo;
  return mbox ? ExportMbox(fs, *box, dest, opts, report) : ExportMaildir(fs, *box, dest, opts, report);
}

TEST(ExportMaildir, RoundTripKeepsBytesAndFlags) {
  SimFs fs;
  Fill(fs);
  ExportReport report;
  ASSERT_TRUE(Export(fs, "/out", false, &report).ok());
  EXPECT_EQ(report.Summary(), "exported 5");
  EXPECT_TRUE(fs.ReadDir("/out/tmp")->empty());
  EXPECT_EQ(fs.ReadDir("/out/new")->size(), 3u);
  EXPECT_EQ(fs.ReadDir("/out/cur")->size(), 2u);
  // Into another mailbox: the same bytes in the same places with the same flags.
  ASSERT_TRUE(Mailbox::Create(fs, kOther).ok());
  auto other = Mailbox::Open(fs, kOther, TestOptions());
  ASSERT_TRUE(other.ok());
  MaildirImportReport imported;
  ASSERT_TRUE(ImportMaildir(fs, "/out", **other, {}, &imported).ok());
  EXPECT_EQ(imported.imported, 5u);
  EXPECT_EQ(Listing(fs, kOther), Listing(fs, kBox));
  EXPECT_EQ(Listing(fs, kBox)[1], Messages()[1] + "|cur:RS");
  // Back into the mailbox it came from: recognised, nothing doubled.
  auto home = Mailbox::Open(fs, kBox, TestOptions());
  MaildirImportReport back;
  ASSERT_TRUE(ImportMaildir(fs, "/out", **home, {}, &back).ok());
  EXPECT_EQ(back.Summary(), "imported 0, already there 5, skipped 0");
}

TEST(ExportMaildir, RefusesANonEmptyDestination) {
  SimFs fs;
  Fill(fs);
  ASSERT_TRUE(fs.EnsureDir("/out").ok());
  auto f = fs.CreateExclusive("/out/something");
  ASSERT_TRUE(f.ok());
  ExportReport report;
  EXPECT_EQ(Export(fs, "/out", false, &report).kind(), Status::Kind::kExists);
  EXPECT_EQ(fs.ReadDir("/out")->size(), 1u);
  // An empty directory is fine.
  ASSERT_TRUE(fs.EnsureDir("/empty").ok());
  EXPECT_TRUE(Export(fs, "/empty", false, &report).ok());
}

TEST(ExportMaildir, LeavesOutDamagedMessages) {
  SimFs fs;
  Fill(fs);
  {
    auto box = Mailbox::Open(fs, kBox, TestOptions());
    auto list = (*box)->List();
    auto f = fs.OpenAppend((*list)[0].Path(kBox));
    ASSERT_TRUE((*f)->Append("tampered").ok());
  }
  ExportReport report;
  ASSERT_TRUE(Export(fs, "/out", false, &report).ok());
  EXPECT_EQ(report.exported, 4u);
  ASSERT_EQ(report.damaged.size(), 1u);
  EXPECT_EQ(fs.ReadDir("/out/new")->size() + fs.ReadDir("/out/cur")->size(), 4u);
  EXPECT_TRUE(fs.ReadDir("/out/tmp")->empty());
  report = {};
  ASSERT_TRUE(Export(fs, "/out.mbox", true, &report).ok());
  EXPECT_EQ(report.exported, 4u);
  EXPECT_EQ(report.damaged.size(), 1u);
  EXPECT_EQ(fs.ReadFile("/out.mbox")->find("tampered"), std::string::npos);
}

TEST(ExportMbox, BytesAndRoundTrip) {
  SimFs fs;
  Fill(fs);
  ExportReport report;
  ASSERT_TRUE(Export(fs, "/out.mbox", true, &report).ok());
  EXPECT_EQ(report.Summary(), "exported 5, 1 given a final newline");
  const std::string mbox = *fs.ReadFile("/out.mbox");
  EXPECT_EQ(mbox.substr(0, 23), "From alice@example.org ");
  EXPECT_NE(mbox.find("\n>From the desk of\n>>From quoted\n>>>From twice\n\n"), std::string::npos) << mbox;
  EXPECT_NE(mbox.find("\nFrom MAILER-DAEMON "), std::string::npos);
  EXPECT_NE(mbox.find("CRLF body\r\n>From here\r\n\n"), std::string::npos);
  EXPECT_NE(mbox.find("no final newline\n\n"), std::string::npos);
  // Only "From " is quoted: ">\n", ">F\n", "From\n" stay as they are.
  EXPECT_NE(mbox.find("\n>\n>F\nFrom\n\n"), std::string::npos);
  // Create exclusively: a second export to the same file is refused.
  EXPECT_EQ(Export(fs, "/out.mbox", true, &report).kind(), Status::Kind::kExists);
  EXPECT_EQ(*fs.ReadFile("/out.mbox"), mbox);

  ASSERT_TRUE(Mailbox::Create(fs, kOther).ok());
  auto other = Mailbox::Open(fs, kOther, TestOptions());
  auto source = fs.OpenRead("/out.mbox");
  MboxImportReport imported;
  ASSERT_TRUE(ImportMbox(fs, **source, mbox.size(), **other, {}, &imported).ok());
  EXPECT_EQ(imported.imported, 5u);
  // Identical bytes, except the one message without a final newline, which
  // gained one (an mbox cannot hold it otherwise). Flags do not travel in mbox.
  std::vector<std::string> want;
  for (const auto& m : Messages()) want.push_back(m + (m.back() == '\n' ? "" : "\n") + "|new");
  EXPECT_EQ(Listing(fs, kOther), want);
}

TEST(ExportMbox, MboxoQuotesOnlyFromLines) {
  SimFs fs;
  Fill(fs);
  ExportReport report;
  ASSERT_TRUE(Export(fs, "/o.mbox", true, &report, true).ok());
  const std::string mbox = *fs.ReadFile("/o.mbox");
  EXPECT_NE(mbox.find("\n>From the desk of\n>From quoted\n>>From twice\n\n"), std::string::npos) << mbox;
}

TEST(MboxQuoter, AnyChunking) {
  const std::string in = "From a\n>From b\n>>From c\nFro\n>Fr\n>>>\nx From d\n\nFrom";
  const std::string want = ">From a\n>>From b\n>>>From c\nFro\n>Fr\n>>>\nx From d\n\nFrom";
  for (size_t step = 1; step <= in.size(); ++step) {
    MboxQuoter q(false);
    std::string out;
    for (size_t i = 0; i < in.size(); i += step) q.Feed(std::string_view(in).substr(i, step), &out);
    q.Finish(&out);
    EXPECT_EQ(out, want) << step;
  }
}

TEST(EnvelopeLine, SenderAndDate) {
  EXPECT_EQ(EnvelopeSender("Subject: x\nReturn-Path: <a@b.example>\n\nbody"), "a@b.example");
  EXPECT_EQ(EnvelopeSender("return-path:  <>\r\n\r\n"), "MAILER-DAEMON");
  EXPECT_EQ(EnvelopeSender("Subject: x\n\nReturn-Path: <late@x>\n"), "MAILER-DAEMON");
  EXPECT_EQ(EnvelopeDate(0), "Thu Jan  1 00:00:00 1970");
}

}  // namespace
}  // namespace holdfast::testing
