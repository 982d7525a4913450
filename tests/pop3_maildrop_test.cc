// pop3::Maildrop: one session per maildrop, the snapshot, and QUIT's UPDATE
// under a crash at every point (crash_harness.h).
#include "pop3/maildrop.h"

#include <algorithm>

#include "crash_harness.h"
#include "pop3/dot_stuff.h"

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

TEST(Pop3Maildrop, OpenMessageOfAFileAnotherToolRemovedIsNotFound) {
  SimFs fs;
  Outcome o;
  DeliverAcked(fs, o, Msg(1));
  DeliverAcked(fs, o, Msg(2));
  auto drop = pop3::Maildrop::Open(fs, kBox, TestOptions());
  ASSERT_TRUE(drop.ok());
  auto names = fs.ReadDir(std::string(kBox) + "/new");
  ASSERT_TRUE(names.ok() && names->size() == 2);
  std::sort(names->begin(), names->end());
  // The one whose name carries U=1 (message 1).
  std::string first = names->front().find(",U=1") != std::string::npos ? names->front() : names->back();
  ASSERT_TRUE(fs.Unlink(std::string(kBox) + "/new/" + first).ok());
  auto gone = (*drop)->OpenMessage(1);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().kind(), Status::Kind::kNotFound);
  auto f = (*drop)->OpenMessage(2);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  std::string buf(200, '\0');
  auto n = (*f)->ReadAt(0, buf.data(), buf.size());
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(buf.substr(0, *n), Msg(2));
  EXPECT_EQ((*drop)->Listing().size(), 2u) << "the snapshot itself does not change";
}

// What RETR sends for message n, less the stuffed dots and the final ".\r\n":
// the octets RFC 1939 says LIST, STAT and "+OK n octets" count.
std::string RetrOctets(pop3::Maildrop& drop, size_t n) {
  auto f = drop.OpenMessage(n);
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  if (!f.ok()) return "";
  std::string stored;
  std::string buf(7, '\0');  // small reads: line ends split across chunks
  for (;;) {
    auto got = (*f)->ReadAt(stored.size(), buf.data(), buf.size());
    EXPECT_TRUE(got.ok());
    if (!got.ok() || *got == 0) break;
    stored.append(buf.data(), *got);
  }
  pop3::DotStuffer stuffer;
  std::string wire;
  for (size_t i = 0; i < stored.size(); i += 5) stuffer.Append(std::string_view(stored).substr(i, 5), &wire);
  stuffer.Finish(&wire);
  EXPECT_TRUE(wire.size() >= 3 && wire.compare(wire.size() - 3, 3, ".\r\n") == 0);
  wire.resize(wire.size() - 3);
  // Undo dot-stuffing: a line starting with '.' got one more.
  std::string out;
  bool line_start = true;
  for (size_t i = 0; i < wire.size(); ++i) {
    if (line_start && wire[i] == '.') ++i;  // the stuffed dot
    if (i < wire.size()) out.push_back(wire[i]);
    line_start = wire[i] == '\n';
  }
  return out;
}

// RFC 1939: the size is the message's octets as transmitted (CRLF line ends,
// before dot-stuffing, without the terminator) -- including the CRLF RETR
// adds to a last line that has no line end, or the LF after a final bare CR.
TEST(Pop3Maildrop, ListedSizesAreTheOctetsRetrSends) {
  SimFs fs;
  Outcome o;
  const std::vector<std::string> bodies = {
      "Subject: ends in LF\n\nbody\n",
      "Subject: no line end\n\nlast line",
      "Subject: no line end, dot\n\n.",
      "Subject: ends in CR\n\nbody\r",
      "Subject: CRLF\r\n\r\nbody\r\n",
      "Subject: CRLF then none\r\n\r\n.x",
  };
  for (const auto& b : bodies) DeliverAcked(fs, o, b);
  // Another tool's files (adopted by a directory scan), without line ends too.
  for (const std::string& name : {std::string("1700000000.M1P1.other:2,S"), std::string("1700000001.M2P2.other:2,")}) {
    auto f = fs.CreateExclusive(std::string(kBox) + "/cur/" + name);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(name.back() == 'S' ? "Subject: other\n\nno end" : "Subject: other\n\nends\n").ok());
    ASSERT_TRUE((*f)->SyncData().ok());
  }
  for (int pass = 0; pass < 2; ++pass) {  // a new index, then one read back from the journal
    SCOPED_TRACE(pass == 0 ? "first login" : "index replayed from the journal");
    auto drop = pop3::Maildrop::Open(fs, kBox, TestOptions());
    ASSERT_TRUE(drop.ok()) << drop.status().ToString();
    auto listing = (*drop)->Listing();
    ASSERT_EQ(listing.size(), bodies.size() + 2);
    for (size_t n = 1; n <= listing.size(); ++n) {
      std::string sent = RetrOctets(**drop, n);
      EXPECT_EQ(listing[n - 1].size, sent.size()) << "message " << n << ": " << sent;
    }
  }
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
