// Functional tests of the mailbox store (crash behaviour: mailbox_crash_test).
#include "store/mailbox.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <filesystem>
#include <thread>

#include "crash_harness.h"
#include "store/maildir_name.h"
#include "util/checksum.h"
#include "util/record_log.h"

namespace holdfast::testing {
namespace {

std::unique_ptr<Mailbox> OpenBox(Fs& fs) {
  auto box = Mailbox::Open(fs, kBox, TestOptions());
  EXPECT_TRUE(box.ok()) << box.status().ToString();
  return box.ok() ? std::move(box).value() : nullptr;
}

DeliveredMessage Put(Mailbox& box, const std::string& bytes) {
  auto d = box.BeginDelivery();
  EXPECT_TRUE(d.ok());
  EXPECT_TRUE((*d)->Write(bytes.substr(0, bytes.size() / 2)).ok());
  EXPECT_TRUE((*d)->Write(bytes.substr(bytes.size() / 2)).ok());
  auto done = (*d)->Commit();
  EXPECT_TRUE(done.ok()) << done.status().ToString();
  return done.ok() ? *done : DeliveredMessage{};
}

class MailboxTest : public ::testing::Test {
 protected:
  void SetUp() override { MakeBox(fs_); }
  std::string In(const std::string& sub) { return std::string(kBox) + "/" + sub; }
  SimFs fs_;
};

// eol_added (the line end RETR adds to an unterminated last line) is an
// optional last field of Add: absent when 0, so an index of LF-terminated
// messages is byte for byte what earlier versions wrote; read back as given.
TEST(MailboxIndexRecord, AddCarriesEolAddedOnlyWhenNotZero) {
  IndexRecord add;
  add.type = RecordType::kAdd;
  add.uid = add.entry.uid = 7;
  add.entry.name = "1700000000.x.host,S=10,W=12,U=7";
  add.entry.size = 10;
  add.entry.vsize = 12;
  std::string plain = add.Encode();
  add.entry.eol_added = 2;
  std::string with = add.Encode();
  EXPECT_EQ(with.size(), plain.size() + 1);
  for (const auto& [bytes, want] : {std::pair{plain, 0}, std::pair{with, 2}}) {
    ParsedLog parsed = ParseRecordLog(bytes);
    ASSERT_EQ(parsed.records.size(), 1u);
    auto r = IndexRecord::Decode(parsed.records[0].type, parsed.records[0].payload);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->entry.eol_added, want);
    EXPECT_EQ(r->entry.network_size(), 12u + want);
  }
  // Only 1 and 2 are meaningful; an explicit 0 or a 3 is damage.
  std::string payload = std::string(ParseRecordLog(with).records[0].payload);
  for (char bad : {'\0', '\3'}) {
    payload.back() = bad;
    EXPECT_FALSE(IndexRecord::Decode(static_cast<uint8_t>(RecordType::kAdd), payload).ok()) << int(bad);
  }
  EXPECT_EQ(EolAdded(0, 'x'), 0);
  EXPECT_EQ(EolAdded(3, '\n'), 0);
  EXPECT_EQ(EolAdded(3, '\r'), 1);
  EXPECT_EQ(EolAdded(3, 'x'), 2);
}

// AllConfirmed() is a counter kept by Apply, not a walk over the entries:
// it must agree with the walk through every kind of record.
TEST(MailboxIndexRecord, AllConfirmedFollowsEveryRecord) {
  MailboxIndex idx;
  auto walk = [&idx] {
    for (const auto& [uid, e] : idx.live()) {
      if (!e.confirmed && !e.expunge_requested) return false;
    }
    return true;
  };
  auto apply = [&](IndexRecord r) {
    ASSERT_TRUE(idx.Apply(r).ok());
    EXPECT_EQ(idx.AllConfirmed(), walk()) << "after record type " << int(r.type) << " uid " << r.uid;
  };
  IndexRecord h;
  h.type = RecordType::kHeader;
  h.uidvalidity = 1;
  apply(h);
  EXPECT_TRUE(idx.AllConfirmed());
  std::vector<MessageId> ids;
  for (uint32_t uid = 1; uid <= 4; ++uid) {
    IndexRecord add;
    add.type = RecordType::kAdd;
    add.uid = add.entry.uid = uid;
    add.entry.id = MessageId::Generate();
    add.entry.name = "1700000000." + add.entry.id.ToString() + ".h";
    add.entry.confirmed = uid == 4;  // as RebuildFrom applies a snapshot's entries
    ids.push_back(add.entry.id);
    apply(add);
  }
  EXPECT_FALSE(idx.AllConfirmed());
  auto rec = [](RecordType t, uint32_t uid, MessageId id) {
    IndexRecord r;
    r.type = t;
    r.uid = uid;
    r.id = id;
    return r;
  };
  apply(rec(RecordType::kConfirm, 1, {}));
  apply(rec(RecordType::kConfirm, 1, {}));  // twice: counted once
  apply(rec(RecordType::kExpungeRequest, 2, ids[1]));
  apply(rec(RecordType::kExpungeRequest, 2, ids[1]));
  EXPECT_FALSE(idx.AllConfirmed()) << "uid 3 is still pending";
  IndexRecord move;
  move.type = RecordType::kMove;
  move.uid = 3;
  move.entry.dir = MaildirDir::kCur;
  move.entry.name = "1700000000." + ids[2].ToString() + ".h:2,S";
  apply(move);
  apply(rec(RecordType::kGone, 3, ids[2]));
  EXPECT_TRUE(idx.AllConfirmed()) << "the pending one left";
  apply(rec(RecordType::kGone, 2, ids[1]));
  apply(rec(RecordType::kConfirm, 3, {}));  // of a gone uid: ignored
  EXPECT_TRUE(idx.AllConfirmed());
  MailboxIndex copy = idx;  // CatchUpWithDirectory works on a copy
  EXPECT_TRUE(copy.AllConfirmed());
}

// The bare-LF count (vsize) must not depend on how the bytes arrive: a CRLF
// split between two writes is not a bare LF, an LF opening the message is.
TEST_F(MailboxTest, BareLfCountIgnoresChunking) {
  auto box = OpenBox(fs_);
  const std::string body = "\nSubject: x\r\n\r\nA\nB\r\n\n\r\r\nC\n\nD";
  size_t bare = 0;
  for (size_t k = 0; k < body.size(); ++k) bare += body[k] == '\n' && (k == 0 || body[k - 1] != '\r');
  ASSERT_EQ(bare, 5u);
  for (size_t cut = 0; cut <= body.size(); ++cut) {
    auto d = box->BeginDelivery();
    ASSERT_TRUE(d.ok());
    ASSERT_TRUE((*d)->Write(body.substr(0, cut)).ok());
    ASSERT_TRUE((*d)->Write("").ok());
    ASSERT_TRUE((*d)->Write(body.substr(cut)).ok());
    auto done = (*d)->Commit();
    ASSERT_TRUE(done.ok()) << done.status().ToString();
  }
  auto list = box->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), body.size() + 1);
  for (const auto& e : *list) EXPECT_EQ(e.vsize, body.size() + bare) << e.name;
}

TEST_F(MailboxTest, DeliverStoresBytesExactlyWithGrowingUids) {
  auto box = OpenBox(fs_);
  std::string eight_bit = std::string("Subject: \xE2\x9C\x93\n\nNUL\0here\n", 24) + std::string(5000, 'L') + "\n";
  auto a = Put(*box, "Subject: a\n\nA\n");
  auto b = Put(*box, eight_bit);
  auto c = Put(*box, "Subject: c\r\n\r\nC\r\n");
  EXPECT_EQ(a.uid, 1u);
  EXPECT_EQ(b.uid, 2u);
  EXPECT_EQ(c.uid, 3u);
  auto list = box->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ(*fs_.ReadFile((*list)[1].Path(kBox)), eight_bit);
  EXPECT_EQ((*list)[0].vsize, (*list)[0].size + 3) << "three bare LFs become CRLF";
  EXPECT_EQ((*list)[2].vsize, (*list)[2].size) << "CRLF message: nothing to add";
  auto name = ParseMaildirName((*list)[1].name);
  ASSERT_TRUE(name && name->id && name->uid && name->size);
  EXPECT_EQ(*name->id, b.id);
  EXPECT_EQ(*name->uid, 2u);
  EXPECT_EQ(*name->size, eight_bit.size());
  EXPECT_TRUE(fs_.ReadDir(In("tmp"))->empty());
}

std::unique_ptr<Mailbox> OpenForDelivery(Fs& fs) {
  auto box = Mailbox::OpenForDelivery(fs, kBox, TestOptions());
  EXPECT_TRUE(box.ok()) << box.status().ToString();
  return box.ok() ? std::move(box).value() : nullptr;
}

std::vector<uint32_t> Uids(Fs& fs) {
  std::vector<uint32_t> uids;
  auto list = OpenBox(fs)->List();
  EXPECT_TRUE(list.ok());
  if (list.ok()) for (const auto& e : *list) uids.push_back(e.uid);
  return uids;
}

// `holdfast deliver` reads the summary and the journal after it, not the
// whole journal, and still hands out the next UID.
TEST_F(MailboxTest, DeliveryReadsOnlyTheJournalTail) {
  {
    auto box = OpenBox(fs_);
    for (int i = 0; i < 3; ++i) Put(*box, "Subject: full " + std::to_string(i) + "\n\nx\n");
  }
  auto light = OpenForDelivery(fs_);
  ASSERT_TRUE(light);
  EXPECT_TRUE(light->reads_tail_only()) << "a summary was written by the last commit";
  EXPECT_EQ(Put(*light, "Subject: light\n\nx\n").uid, 4u);
  EXPECT_EQ(Put(*light, "Subject: light 2\n\nx\n").uid, 5u);
  light.reset();
  // A full Mailbox object that does not write the summary appends after it:
  // the next tail-only open replays those records.
  {
    auto box = OpenBox(fs_);
    auto list = box->List();
    ASSERT_TRUE(list.ok() && list->size() == 5);
    ASSERT_TRUE(box->Expunge({{(*list)[4].uid, (*list)[4].id}}).ok());
  }
  ASSERT_TRUE(fs_.Unlink(In(Mailbox::kSummaryFile)).ok());
  {
    auto box = OpenBox(fs_);
    EXPECT_EQ(Put(*box, "Subject: six\n\nx\n").uid, 6u);  // summary written here
    auto list = box->List();
    ASSERT_TRUE(box->Expunge({{(*list).back().uid, (*list).back().id}}).ok());  // after it
  }
  light = OpenForDelivery(fs_);
  ASSERT_TRUE(light && light->reads_tail_only());
  EXPECT_EQ(Put(*light, "Subject: seven\n\nx\n").uid, 7u) << "uid 6 was expunged, never reused";
  light.reset();
  EXPECT_EQ(Uids(fs_), (std::vector<uint32_t>{1, 2, 3, 4, 7}));
}

// A summary that does not match the journal is not used: missing, garbage,
// or left from a journal that was since rewritten (compaction, rebuild).
TEST_F(MailboxTest, ASummaryThatDoesNotMatchIsIgnored) {
  {
    auto box = OpenBox(fs_);
    for (int i = 0; i < 3; ++i) Put(*box, "Subject: " + std::to_string(i) + "\n\nx\n");
  }
  const std::string summary = In(Mailbox::kSummaryFile);
  auto old_summary = fs_.ReadFile(summary);
  ASSERT_TRUE(old_summary.ok());
  ASSERT_TRUE(OpenBox(fs_)->Rebuild().ok());  // a new journal file
  {
    auto box = OpenBox(fs_);
    Put(*box, "Subject: 4\n\nx\n");
  }
  auto write = [&](const std::string& bytes) {
    (void)fs_.Unlink(summary);
    auto f = fs_.CreateExclusive(summary);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(bytes).ok());
  };
  write(*old_summary);  // names the old journal
  auto light = OpenForDelivery(fs_);
  ASSERT_TRUE(light);
  EXPECT_FALSE(light->reads_tail_only());
  EXPECT_EQ(Put(*light, "Subject: 5\n\nx\n").uid, 5u);
  light.reset();
  write("garbage, not a frame");
  light = OpenForDelivery(fs_);
  ASSERT_TRUE(light);
  EXPECT_FALSE(light->reads_tail_only());
  EXPECT_EQ(Put(*light, "Subject: 6\n\nx\n").uid, 6u);
  light.reset();
  EXPECT_EQ(Uids(fs_), (std::vector<uint32_t>{1, 2, 3, 4, 5, 6}));
}

// A damaged journal tail is the whole load's business: the tail-only open
// hands over to it (salvage and rebuild), then delivers past every UID.
TEST_F(MailboxTest, TailOnlyOpenHandsDamageToTheFullLoad) {
  {
    auto box = OpenBox(fs_);
    for (int i = 0; i < 2; ++i) Put(*box, "Subject: " + std::to_string(i) + "\n\nx\n");
  }
  auto f = fs_.OpenAppend(In(Mailbox::kIndexFile));
  ASSERT_TRUE(f.ok());
  std::string junk(64, '\x5a');
  ASSERT_TRUE((*f)->Append(junk).ok());
  f->reset();
  auto light = OpenForDelivery(fs_);
  ASSERT_TRUE(light);
  EXPECT_FALSE(light->reads_tail_only());
  EXPECT_EQ(Put(*light, "Subject: 3\n\nx\n").uid, 3u);
  light.reset();
  EXPECT_EQ(Uids(fs_), (std::vector<uint32_t>{1, 2, 3}));
}

TEST_F(MailboxTest, AbandonedDeliveryLeavesNothing) {
  auto box = OpenBox(fs_);
  {
    auto d = box->BeginDelivery();
    ASSERT_TRUE(d.ok());
    ASSERT_TRUE((*d)->Write("Subject: never finished\n").ok());
  }
  EXPECT_TRUE(fs_.ReadDir(In("tmp"))->empty());
  EXPECT_TRUE(box->List()->empty());
}

TEST_F(MailboxTest, DiskFullFailsCleanly) {
  auto box = OpenBox(fs_);
  Put(*box, "Subject: fits\n\n.\n");
  fs_.SetCapacity(4096);
  auto d = box->BeginDelivery();
  ASSERT_TRUE(d.ok());
  Status s = (*d)->Write(std::string(10000, 'x'));
  EXPECT_EQ(s.error_number(), ENOSPC);
  EXPECT_TRUE(s.IsTemporary());
  EXPECT_TRUE(fs_.ReadDir(In("tmp"))->empty()) << "the partial file must be removed";
  EXPECT_EQ(box->List()->size(), 1u);
}

TEST_F(MailboxTest, FailedSyncIsNotAcknowledged) {
  auto box = OpenBox(fs_);
  auto d = box->BeginDelivery();
  ASSERT_TRUE((*d)->Write("Subject: x\n\n").ok());
  fs_.FailNext("syncdata");
  EXPECT_FALSE((*d)->Commit().ok());
  EXPECT_TRUE(fs_.ReadDir(In("tmp"))->empty());
  EXPECT_TRUE(fs_.ReadDir(In("new"))->empty());
}

TEST_F(MailboxTest, ExpungeChecksIdentityAndIsIdempotent) {
  auto box = OpenBox(fs_);
  auto a = Put(*box, "Subject: a\n\n");
  auto b = Put(*box, "Subject: b\n\n");
  // A stale request naming uid 1 with another message's id (a reused name) must not
  // delete that message: it does nothing.
  Status wrong = box->Expunge({{a.uid, b.id}});
  EXPECT_EQ(wrong.kind(), Status::Kind::kInvalid);
  EXPECT_EQ(box->List()->size(), 2u);
  ASSERT_TRUE(box->Expunge({{a.uid, a.id}}).ok());
  ASSERT_TRUE(box->Expunge({{a.uid, a.id}}).ok()) << "expunging twice is harmless";
  auto list = box->List();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, b.id);
  // The UID is never handed out again.
  auto c = Put(*box, "Subject: c\n\n");
  EXPECT_EQ(c.uid, 3u);
}

TEST_F(MailboxTest, FollowsOtherToolsRenamesFlagsAndDeletions) {
  auto box = OpenBox(fs_);
  auto a = Put(*box, "Subject: a\n\n");
  auto b = Put(*box, "Subject: b\n\n");
  ASSERT_TRUE(fs_.Rename(In("new/" + a.name), In("cur/" + a.name + ":2,RS")).ok());
  ASSERT_TRUE(fs_.Unlink(In("new/" + b.name)).ok());
  auto f = fs_.CreateExclusive(In("new/1700000000.M1P2.elsewhere"));
  ASSERT_TRUE((*f)->Append("Subject: foreign\n\n").ok());
  auto list = box->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].uid, a.uid);
  EXPECT_EQ((*list)[0].dir, MaildirDir::kCur);
  EXPECT_EQ((*list)[0].Flags(), "RS");
  EXPECT_EQ((*list)[1].uid, 3u) << "foreign mail gets the next UID, b's is not reused";
  EXPECT_EQ((*list)[1].id, MessageId::ForForeignName("1700000000.M1P2.elsewhere"));
  // The same state from a fresh process (the journal, not memory).
  auto again = OpenBox(fs_)->List();
  ASSERT_EQ(again->size(), 2u);
  EXPECT_EQ((*again)[0].name, a.name + ":2,RS");
}

// A long-lived Mailbox skips the directory scan while new/ and cur/ are
// unchanged since a complete one (warm POP3 logins), and never misses a
// change because of it.
// Enough foreign files that their digests are read by several threads at
// once (a lost index, a first login on a migrated Maildir): each one still
// gets its own size, CRLF size and SHA-256, and UIDs in name order.
TEST_F(MailboxTest, ManyNewFilesAreDigestedEachOnItsOwn) {
  auto box = OpenBox(fs_);
  std::map<std::string, std::string> bytes;  // name -> content
  for (int i = 0; i < 300; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "1700000000.M%03dP1.elsewhere", i);
    std::string body = "Subject: " + std::to_string(i) + "\n\n" + std::string(static_cast<size_t>(i * 37 % 900), 'x') +
                       (i % 3 == 0 ? "\r\nline\n" : "\n");
    auto f = fs_.CreateExclusive(In(std::string(i % 2 ? "cur/" : "new/") + name + (i % 2 ? ":2,S" : "")));
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(body).ok());
    bytes[name] = body;
  }
  auto list = box->List();
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 300u);
  uint32_t last_uid = 0;
  for (const auto& e : *list) {
    const std::string& want = bytes.at(e.Base());
    Sha256 sha;
    sha.Update(want);
    EXPECT_EQ(e.size, want.size()) << e.name;
    size_t bare_lf = 0;
    for (size_t k = 0; k < want.size(); ++k) bare_lf += want[k] == '\n' && (k == 0 || want[k - 1] != '\r');
    EXPECT_EQ(e.vsize, want.size() + bare_lf) << e.name;
    EXPECT_EQ(e.sha256, sha.Finish()) << e.name;
    EXPECT_GT(e.uid, last_uid);
    last_uid = e.uid;
  }
  EXPECT_EQ((*list)[0].Base(), "1700000000.M000P1.elsewhere");
}

TEST_F(MailboxTest, ListAfterAQuietScanStillSeesEveryLaterChange) {
  auto box = OpenBox(fs_);
  auto a = Put(*box, "Subject: a\n\n");
  auto b = Put(*box, "Subject: b\n\n");
  ASSERT_EQ(box->List()->size(), 2u);  // a full scan: confirms both
  ASSERT_EQ(box->List()->size(), 2u);  // unchanged: may skip the scan
  ASSERT_TRUE(fs_.Rename(In("new/" + a.name), In("cur/" + a.name + ":2,S")).ok());
  auto list = box->List();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, a.name + ":2,S");
  ASSERT_EQ(box->List()->size(), 2u);
  ASSERT_TRUE(fs_.Unlink(In("new/" + b.name)).ok());
  list = box->List();
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].uid, a.uid);
  auto f = fs_.CreateExclusive(In("cur/1700000001.M2P3.elsewhere:2,"));
  ASSERT_TRUE((*f)->Append("Subject: foreign\n\n").ok());
  EXPECT_EQ(box->List()->size(), 2u);
  // Another process's delivery (its own Mailbox object) shows up too.
  Put(*OpenBox(fs_), "Subject: c\n\n");
  EXPECT_EQ(box->List()->size(), 3u);
}

TEST_F(MailboxTest, LostIndexIsRebuiltKeepingUids) {
  auto box = OpenBox(fs_);
  Put(*box, "Subject: 1\n\n");
  auto two = Put(*box, "Subject: 2\n\n");
  auto three = Put(*box, "Subject: 3\n\n");
  ASSERT_TRUE(box->Expunge({{1, box->List()->front().id}}).ok());
  box.reset();
  ASSERT_TRUE(fs_.Unlink(In(Mailbox::kIndexFile)).ok());
  auto reopened = OpenBox(fs_);
  auto list = reopened->List();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].uid, 2u);
  EXPECT_EQ((*list)[0].id, two.id);
  EXPECT_EQ((*list)[1].uid, 3u);
  EXPECT_EQ((*list)[1].id, three.id);
  EXPECT_FALSE(reopened->recovery_log().empty());
  EXPECT_EQ(Put(*reopened, "Subject: 4\n\n").uid, 4u);
}

TEST_F(MailboxTest, CorruptIndexIsRebuiltKeepingUidsAndUidvalidity) {
  auto box = OpenBox(fs_);
  for (int i = 0; i < 5; ++i) Put(*box, "Subject: " + std::to_string(i) + "\n\n");
  uint32_t validity = box->uidvalidity();
  box.reset();
  std::string journal = *fs_.ReadFile(In(Mailbox::kIndexFile));
  journal[journal.size() / 2] ^= 0x55;  // damage in the middle, not a torn tail
  ASSERT_TRUE(fs_.Unlink(In(Mailbox::kIndexFile)).ok());
  ASSERT_TRUE((*fs_.CreateExclusive(In(Mailbox::kIndexFile)))->Append(journal).ok());
  auto reopened = OpenBox(fs_);
  auto list = reopened->List();
  ASSERT_EQ(list->size(), 5u);
  for (uint32_t i = 0; i < 5; ++i) EXPECT_EQ((*list)[i].uid, i + 1);
  EXPECT_EQ(reopened->uidvalidity(), validity) << "the header survived: UIDVALIDITY is kept";
  EXPECT_NE(reopened->recovery_log().front().find("rebuilt"), std::string::npos);
}

TEST_F(MailboxTest, LiveTmpFileIsNotTakenForALeftover) {
  auto box = OpenBox(fs_);
  auto d = box->BeginDelivery();
  ASSERT_TRUE((*d)->Write("Subject: in flight\n").ok());
  auto other = OpenBox(fs_);  // another process's recovery runs meanwhile
  ASSERT_TRUE((*d)->Write("\nbody\n").ok());
  EXPECT_TRUE((*d)->Commit().ok());
  EXPECT_EQ(other->List()->size(), 1u);
}

TEST_F(MailboxTest, FsckFindsAndSetsAsideDamage) {
  auto box = OpenBox(fs_);
  Put(*box, "Subject: fine\n\n");
  auto bad = Put(*box, "Subject: will rot\n\n");
  ASSERT_TRUE((*fs_.OpenAppend(In("new/" + bad.name)))->Append("!").ok());
  auto check = box->Fsck(false);
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(check->damaged_remaining, 1u);
  EXPECT_FALSE(check->clean());
  auto repair = box->Fsck(true);
  ASSERT_TRUE(repair.ok());
  EXPECT_EQ(*fs_.ReadFile(In(std::string(Mailbox::kDamagedDir) + "/" + bad.name)), "Subject: will rot\n\n!");
  EXPECT_TRUE(box->Fsck(false)->clean());
  EXPECT_EQ(box->List()->size(), 1u);
}

TEST(MailboxPosix, WorksOnTheRealFileSystem) {
  auto dir = std::filesystem::temp_directory_path() / ("holdfast-mailbox-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string box_dir = (dir / "alice").string();
  ASSERT_TRUE(Mailbox::Create(PosixFs(), box_dir).ok());
  {
    auto box = Mailbox::Open(PosixFs(), box_dir, TestOptions());
    ASSERT_TRUE(box.ok());
    auto m = Put(**box, "Subject: real\n\nbytes\n");
    EXPECT_EQ(m.uid, 1u);
    ASSERT_EQ((*box)->List()->size(), 1u);
    EXPECT_TRUE((*box)->Fsck(false)->clean());
    // After a pause past the mtime granularity a scan is quiet and the next
    // listings may skip it; a rename by another tool must still show.
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    ASSERT_EQ((*box)->List()->size(), 1u);
    ASSERT_EQ((*box)->List()->size(), 1u);
    ASSERT_TRUE(PosixFs().Rename(box_dir + "/new/" + m.name, box_dir + "/cur/" + m.name + ":2,S").ok());
    auto list = (*box)->List();
    ASSERT_EQ(list->size(), 1u);
    EXPECT_EQ((*list)[0].dir, MaildirDir::kCur);
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    ASSERT_EQ((*box)->List()->size(), 1u);
    ASSERT_TRUE(PosixFs().Unlink(box_dir + "/cur/" + m.name + ":2,S").ok());
    EXPECT_EQ((*box)->List()->size(), 0u);
  }
  std::filesystem::remove_all(dir);
}

// The batch commit on the real kernel, with each way PosixFs makes a batch
// durable (syncfs for 4 or more files, else fdatasync each): every copy
// filed whole, in order, under its own UID.
TEST(MailboxPosix, BatchCommitWithEitherSyncMode) {
  auto dir = std::filesystem::temp_directory_path() / ("holdfast-batch-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (BatchSync mode : {BatchSync::kSyncfs, BatchSync::kFdatasync}) {
    SetPosixBatchSync(mode);
    const std::string box_dir = (dir / (mode == BatchSync::kSyncfs ? "syncfs" : "fdatasync")).string();
    ASSERT_TRUE(Mailbox::Create(PosixFs(), box_dir).ok());
    auto box = Mailbox::Open(PosixFs(), box_dir, TestOptions());
    ASSERT_TRUE(box.ok());
    uint32_t expected_uid = 1;
    for (size_t batch : {1u, 3u, 4u, 9u}) {
      std::vector<std::unique_ptr<Delivery>> owned;
      std::vector<Delivery*> ds;
      for (size_t i = 0; i < batch; ++i) {
        auto d = (*box)->BeginDelivery();
        ASSERT_TRUE(d.ok()) << d.status().ToString();
        ASSERT_TRUE((*d)->Write("Subject: " + std::to_string(batch) + "/" + std::to_string(i) + "\r\n\r\nbody\r\n").ok());
        ds.push_back(d->get());
        owned.push_back(std::move(d).value());
      }
      auto results = (*box)->CommitAll(ds);
      ASSERT_EQ(results.size(), batch);
      for (size_t i = 0; i < batch; ++i) {
        ASSERT_TRUE(results[i].ok()) << results[i].status().ToString();
        EXPECT_EQ(results[i]->uid, expected_uid++);
        auto text = PosixFs().ReadFile(box_dir + "/new/" + results[i]->name);
        ASSERT_TRUE(text.ok());
        EXPECT_EQ(*text, "Subject: " + std::to_string(batch) + "/" + std::to_string(i) + "\r\n\r\nbody\r\n");
      }
    }
    EXPECT_EQ((*box)->List()->size(), 17u);
    EXPECT_TRUE((*box)->Fsck(false)->clean());
  }
  SetPosixBatchSync(BatchSync::kSyncfs);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace holdfast::testing
