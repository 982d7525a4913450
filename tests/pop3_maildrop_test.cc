// pop3::Maildrop: one session per maildrop, the snapshot, and QUIT's UPDATE
// under a crash at every point (crash_harness.h).
#include "pop3/maildrop.h"

#include "crash_harness.h"

namespace holdfast::testing {
namespace {

std::string Msg(int i) { return "Subject: pop3 " + std::to_string(i) + "\n\nbody " + std::string(30 + i, 'p') + "\n"; }

TEST(Pop3Maildrop, OneSessionPerMaildropAndTheLockDiesWithItsHolder) {
  SimFs fs;
  Outcome o;
  DeliverAcked(fs, o, Msg(1));
  auto first = pop3::Maildrop::Open(fs, kBox, TestOptions());
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = pop3::Maildrop::Open(fs, kBox, TestOptions());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().kind(), Status::Kind::kBusy);
  first->reset();
  auto third = pop3::Maildrop::Open(fs, kBox, TestOptions());
  EXPECT_TRUE(third.ok()) << third.status().ToString();
}

TEST(Pop3Maildrop, SnapshotIgnoresLaterMailAndUidlsAreMessageIds) {
  SimFs fs;
  Outcome o;
  DeliverAcked(fs, o, Msg(1));
  DeliverAcked(fs, o, "Subject: lf\n\nbare\nlf\n");
  auto drop = pop3::Maildrop::Open(fs, kBox, TestOptions());
  ASSERT_TRUE(drop.ok());
  DeliverAcked(fs, o, Msg(3));  // arrives during the session
  auto listing = (*drop)->Listing();
  ASSERT_EQ(listing.size(), 2u);
  EXPECT_TRUE(o.acked.count(listing[0].uidl));
  EXPECT_EQ(listing[1].size, std::string("Subject: lf\r\n\r\nbare\r\nlf\r\n").size());
  auto f = (*drop)->OpenMessage(2);
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE((*drop)->OpenMessage(3).ok());
  // Committing the snapshot's deletions leaves the later message alone.
  ASSERT_TRUE((*drop)->Commit({1, 2}).ok());
  drop->reset();
  auto box = Mailbox::Open(fs, kBox, TestOptions());
  ASSERT_TRUE(box.ok());
  auto list = (*box)->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ(o.acked[list->front().id.ToString()], Msg(3));
}

TEST(Pop3Maildrop, AMailboxKeptFromTheLastSessionSeesWhatChangedSince) {
  SimFs fs;
  Outcome o;
  DeliverAcked(fs, o, Msg(1));
  DeliverAcked(fs, o, Msg(2));
  auto drop = pop3::Maildrop::Open(fs, kBox, TestOptions());
  ASSERT_TRUE(drop.ok());
  ASSERT_TRUE((*drop)->Commit({1}).ok());
  auto kept = pop3::Maildrop::Close(std::move(drop).value());
  ASSERT_NE(kept, nullptr);
  DeliverAcked(fs, o, Msg(3));  // by another Mailbox object, as the spool does
  auto again = pop3::Maildrop::Open(fs, kBox, TestOptions(), std::move(kept));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  auto listing = (*again)->Listing();
  ASSERT_EQ(listing.size(), 2u);
  EXPECT_EQ(o.acked[listing[0].uidl], Msg(2));
  EXPECT_EQ(o.acked[listing[1].uidl], Msg(3));
  // Closing released the lock: a kept Mailbox holds no session.
  auto kept2 = pop3::Maildrop::Close(std::move(again).value());
  EXPECT_TRUE(pop3::Maildrop::Open(fs, kBox, TestOptions()).ok());
}

TEST(Pop3Maildrop, OpenMessageFollowsARenameByAnotherTool) {
  SimFs fs;
  Outcome o;
  DeliverAcked(fs, o, Msg(1));
  auto drop = pop3::Maildrop::Open(fs, kBox, TestOptions());
  ASSERT_TRUE(drop.ok());
  auto names = fs.ReadDir(std::string(kBox) + "/new");
  ASSERT_TRUE(names.ok() && names->size() == 1);
  ASSERT_TRUE(fs.Rename(std::string(kBox) + "/new/" + names->front(),
                        std::string(kBox) + "/cur/" + names->front() + ":2,S").ok());
  auto f = (*drop)->OpenMessage(1);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  std::string buf(200, '\0');
  auto n = (*f)->ReadAt(0, buf.data(), buf.size());
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(buf.substr(0, *n), Msg(1));
}

// QUIT's UPDATE, crashed after every Fs operation of the login and of the
// deletions: the messages not marked are always there and whole, a marked
// one is either whole or gone (recovery finishes a requested expunge), and
// once Commit() said ok none of them ever comes back.
TEST(Pop3MaildropCrash, QuitUpdate) {
  ForEveryCrashPoint(
      [](SimFs& fs, Outcome& o) {
        for (int i = 1; i <= 4; ++i) DeliverAcked(fs, o, Msg(i));
      },
      [](SimFs& fs, Outcome& o) {
        auto drop = pop3::Maildrop::Open(fs, kBox, TestOptions());
        if (!drop.ok()) return;
        auto listing = (*drop)->Listing();
        if (listing.size() != 4) return;
        for (size_t n : {1, 3}) o.expunge_maybe.insert(listing[n - 1].uidl);
        if ((*drop)->Commit({1, 3}).ok()) {
          for (size_t n : {1, 3}) o.expunge_acked.insert(listing[n - 1].uidl);
        }
      });
}

}  // namespace
}  // namespace holdfast::testing
