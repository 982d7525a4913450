// Crash-point tests for every mutating path of the mailbox store: deliver
// (file + index), expunge, index rebuild, compaction, adoption of other
// tools' changes, fsck --repair, and recovery itself. See crash_harness.h.
#include "crash_harness.h"

#include "store/maildir_name.h"

namespace holdfast::testing {
namespace {

std::string Msg(int i) {
  return "Return-Path: <a@b>\nDelivered-To: alice\nSubject: message " + std::to_string(i) + "\n\nbody " +
         std::string(static_cast<size_t>(40 + i), 'x') + "\n";
}

// Delivers and records ack or attempt.
void DeliverRecorded(SimFs& fs, Outcome& o, const std::string& bytes) {
  auto box = Mailbox::Open(fs, kBox, TestOptions());
  if (!box.ok()) return;
  auto d = (*box)->BeginDelivery();
  if (!d.ok()) return;
  o.maybe[(*d)->id().ToString()] = bytes;
  if (!(*d)->Write(bytes).ok()) return;
  auto done = (*d)->Commit();
  if (!done.ok()) return;
  o.acked[done->id.ToString()] = bytes;
  o.uids_seen[done->uid] = done->id.ToString();
}

TEST(MailboxCrash, DeliverIntoEmptyMailbox) {
  ForEveryCrashPoint([](SimFs& fs, Outcome&) { MakeBox(fs); },
                     [](SimFs& fs, Outcome& o) { DeliverRecorded(fs, o, Msg(1)); });
}

TEST(MailboxCrash, DeliverNextToExistingMail) {
  ForEveryCrashPoint(
      [](SimFs& fs, Outcome& o) {
        DeliverAcked(fs, o, Msg(1));
        DeliverAcked(fs, o, Msg(2));
      },
      [](SimFs& fs, Outcome& o) {
        for (int i = 3; i <= 5; ++i) DeliverRecorded(fs, o, Msg(i));
      });
}

// `holdfast deliver`'s path: the index summary and the journal's tail
// only, and the summary rewritten after each commit.
TEST(MailboxCrash, DeliverReadingOnlyTheIndexTail) {
  ForEveryCrashPoint(
      [](SimFs& fs, Outcome& o) {
        DeliverAcked(fs, o, Msg(1));
        DeliverAcked(fs, o, Msg(2));
      },
      [](SimFs& fs, Outcome& o) {
        for (int i = 3; i <= 5; ++i) {
          auto box = Mailbox::OpenForDelivery(fs, kBox, TestOptions());
          if (!box.ok()) return;
          if (!fs.crashed()) EXPECT_TRUE((*box)->reads_tail_only()) << "the summary is in use";
          auto d = (*box)->BeginDelivery();
          if (!d.ok()) return;
          o.maybe[(*d)->id().ToString()] = Msg(i);
          if (!(*d)->Write(Msg(i)).ok()) return;
          auto done = (*d)->Commit();
          if (!done.ok()) return;
          o.acked[done->id.ToString()] = Msg(i);
          o.uids_seen[done->uid] = done->id.ToString();
        }
      });
}

// The spool's path: several deliveries committed together with shared
// syncs (data of all, one index sync, renames, one new/ sync).
// `place`, if given, sets each delivery's placement (new/ or cur/ + flags).
void DeliverBatchRecorded(SimFs& fs, Outcome& o, const std::vector<std::string>& messages,
                          const std::function<void(Delivery&, size_t)>& place = {}) {
  auto box = Mailbox::Open(fs, kBox, TestOptions());
  if (!box.ok()) return;
  std::vector<std::unique_ptr<Delivery>> ds;
  for (const auto& bytes : messages) {
    auto d = (*box)->BeginDelivery();
    if (!d.ok()) return;
    o.maybe[(*d)->id().ToString()] = bytes;
    if (!(*d)->Write(bytes).ok()) return;
    if (place) place(**d, ds.size());
    ds.push_back(std::move(d).value());
  }
  std::vector<Delivery*> ptrs;
  for (auto& d : ds) ptrs.push_back(d.get());
  auto results = (*box)->CommitAll(ptrs);
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok()) continue;
    o.acked[results[i]->id.ToString()] = messages[i];
    o.uids_seen[results[i]->uid] = results[i]->id.ToString();
  }
}

TEST(MailboxCrash, BatchDeliverySharingSyncs) {
  ForEveryCrashPoint([](SimFs& fs, Outcome& o) { DeliverAcked(fs, o, Msg(1)); },
                     [](SimFs& fs, Outcome& o) {
                       DeliverBatchRecorded(fs, o, {Msg(2), Msg(3), Msg(4)});
                       DeliverBatchRecorded(fs, o, {Msg(5), Msg(6)});
                     });
}

// An import keeping flags: a batch placed partly in new/, partly in cur/
// with flags (Delivery::SetPlacement): cur/ is synced too before the ack.
TEST(MailboxCrash, BatchDeliveryIntoCurWithFlags) {
  ForEveryCrashPoint([](SimFs& fs, Outcome& o) { DeliverAcked(fs, o, Msg(1)); },
                     [](SimFs& fs, Outcome& o) {
                       DeliverBatchRecorded(fs, o, {Msg(2), Msg(3), Msg(4)}, [](Delivery& d, size_t i) {
                         if (i > 0) d.SetPlacement(MaildirDir::kCur, i == 1 ? "S" : "SR");
                       });
                       DeliverBatchRecorded(fs, o, {Msg(5)},
                                            [](Delivery& d, size_t) { d.SetPlacement(MaildirDir::kCur, ""); });
                     });
}

TEST(MailboxCrash, FlagsOfPlacedDeliveries) {
  SimFs fs;
  Outcome o;
  MakeBox(fs);
  DeliverBatchRecorded(fs, o, {Msg(1), Msg(2), Msg(3)}, [](Delivery& d, size_t i) {
    if (i == 1) d.SetPlacement(MaildirDir::kCur, "TSxS");  // sorted, once each, A-Z only
    if (i == 2) d.SetPlacement(MaildirDir::kCur, "");
  });
  auto list = CheckInvariants(fs, o, "placed");
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].dir, MaildirDir::kNew);
  EXPECT_EQ(list[0].name.find(':'), std::string::npos);
  EXPECT_EQ(list[1].dir, MaildirDir::kCur);
  EXPECT_EQ(list[1].Flags(), "ST");
  EXPECT_TRUE(list[1].name.ends_with(":2,ST")) << list[1].name;
  EXPECT_EQ(list[2].dir, MaildirDir::kCur);
  EXPECT_TRUE(list[2].name.ends_with(":2,")) << list[2].name;
  EXPECT_TRUE(fs.ReadFile(list[1].Path(kBox)).ok());
}

TEST(MailboxCrash, ListAfterDeliveryMakesUidsDurable) {
  // A UID a listing has shown must never name another message later.
  ForEveryCrashPoint([](SimFs& fs, Outcome& o) { DeliverAcked(fs, o, Msg(1)); },
                     [](SimFs& fs, Outcome& o) {
                       DeliverRecorded(fs, o, Msg(2));
                       auto box = Mailbox::Open(fs, kBox, TestOptions());
                       if (!box.ok()) return;
                       auto list = (*box)->List();
                       if (!list.ok()) return;
                       for (const auto& e : *list) o.uids_seen[e.uid] = e.id.ToString();
                       DeliverRecorded(fs, o, Msg(3));
                     });
}

// A listing that writes the index checkpoint, deliveries after it, and
// POP3 listings from it that confirm those deliveries: a crash anywhere
// (a torn or half-renamed checkpoint included) never lists a message
// that is not there, nor misses one that is (CheckInvariants compares the
// listing from the checkpoint with the whole load's after every crash).
TEST(MailboxCrash, CheckpointWrittenAndListedFrom) {
  MailboxOptions opts = TestOptions();
  opts.checkpoint_min_messages = 1;
  ForEveryCrashPoint(
      [](SimFs& fs, Outcome& o) {
        DeliverAcked(fs, o, Msg(1));
        DeliverAcked(fs, o, Msg(2));
      },
      [&opts](SimFs& fs, Outcome& o) {
        {
          auto box = Mailbox::Open(fs, kBox, opts);
          if (!box.ok()) return;
          auto list = (*box)->List();  // writes the checkpoint
          if (!list.ok()) return;
          for (const auto& e : *list) o.uids_seen[e.uid] = e.id.ToString();
        }
        DeliverRecorded(fs, o, Msg(3));
        for (int round = 0; round < 2; ++round) {
          auto box = Mailbox::OpenForListing(fs, kBox, opts);
          if (!box.ok()) return;
          if (!fs.crashed()) EXPECT_TRUE((*box)->reads_checkpoint()) << "the checkpoint is in use";
          auto refs = (*box)->ListRefs();
          if (!refs.ok()) return;
          if (!fs.crashed()) EXPECT_EQ(refs->size(), 3u);
          for (const auto& r : *refs) o.uids_seen[r.uid] = r.id.ToString();
        }
        DeliverRecorded(fs, o, Msg(4));
      });
}

TEST(MailboxCrash, Expunge) {
  ForEveryCrashPoint(
      [](SimFs& fs, Outcome& o) {
        for (int i = 1; i <= 3; ++i) DeliverAcked(fs, o, Msg(i));
      },
      [](SimFs& fs, Outcome& o) {
        auto box = Mailbox::Open(fs, kBox, TestOptions());
        if (!box.ok()) return;
        auto list = (*box)->List();
        if (!list.ok() || list->size() != 3) return;
        std::vector<ExpungeTarget> targets = {{(*list)[0].uid, (*list)[0].id}, {(*list)[2].uid, (*list)[2].id}};
        for (const auto& t : targets) o.expunge_maybe.insert(t.id.ToString());
        if ((*box)->Expunge(targets).ok()) {
          for (const auto& t : targets) o.expunge_acked.insert(t.id.ToString());
        }
      });
}

TEST(MailboxCrash, ExpungeOfMessageRenamedByAnotherTool) {
  ForEveryCrashPoint(
      [](SimFs& fs, Outcome& o) {
        DeliverAcked(fs, o, Msg(1));
        DeliverAcked(fs, o, Msg(2));
        // A mail client moved message 1 to cur/ and marked it seen.
        auto names = fs.ReadDir(std::string(kBox) + "/new");
        ASSERT_TRUE(names.ok());
        std::sort(names->begin(), names->end());
        ASSERT_TRUE(fs.Rename(std::string(kBox) + "/new/" + (*names)[0],
                              std::string(kBox) + "/cur/" + (*names)[0] + ":2,S").ok());
      },
      [](SimFs& fs, Outcome& o) {
        auto box = Mailbox::Open(fs, kBox, TestOptions());
        if (!box.ok()) return;
        // The index still has the old name: expunge must find it by identity.
        auto list = (*box)->List();
        if (!list.ok() || list->empty()) return;
        ExpungeTarget t{(*list)[0].uid, (*list)[0].id};
        o.expunge_maybe.insert(t.id.ToString());
        if ((*box)->Expunge({t}).ok()) o.expunge_acked.insert(t.id.ToString());
      });
}

TEST(MailboxCrash, RebuildIndex) {
  ForEveryCrashPoint(
      [](SimFs& fs, Outcome& o) {
        for (int i = 1; i <= 3; ++i) DeliverAcked(fs, o, Msg(i));
      },
      [](SimFs& fs, Outcome&) {
        auto box = Mailbox::Open(fs, kBox, TestOptions());
        if (box.ok()) (void)(*box)->Rebuild();
      });
}

TEST(MailboxCrash, RecoveryFromLostIndex) {
  // The index file is gone (or was never made durable): Open rebuilds it, and
  // a crash during that rebuild is recovered from too.
  ForEveryCrashPoint(
      [](SimFs& fs, Outcome& o) {
        for (int i = 1; i <= 3; ++i) DeliverAcked(fs, o, Msg(i));
        ASSERT_TRUE(fs.Unlink(std::string(kBox) + "/" + Mailbox::kIndexFile).ok());
      },
      [](SimFs& fs, Outcome&) { (void)Mailbox::Open(fs, kBox, TestOptions()); });
}

TEST(MailboxCrash, RecoveryOfLeftovers) {
  // Leftovers of an earlier crash: an unfinished delivery in tmp/, a torn
  // index tail, and an expunge that was requested but not finished.
  ForEveryCrashPoint(
      [](SimFs& fs, Outcome& o) {
        for (int i = 1; i <= 3; ++i) DeliverAcked(fs, o, Msg(i));
        auto box = Mailbox::Open(fs, kBox, TestOptions());
        ASSERT_TRUE(box.ok());
        auto list = (*box)->List();
        ASSERT_TRUE(list.ok());
        IndexRecord req;
        req.type = RecordType::kExpungeRequest;
        req.uid = (*list)[1].uid;
        req.id = (*list)[1].id;
        o.expunge_maybe.insert(req.id.ToString());
        auto journal = fs.OpenAppend(std::string(kBox) + "/" + Mailbox::kIndexFile);
        ASSERT_TRUE(journal.ok());
        std::string torn = IndexRecord{}.Encode();
        ASSERT_TRUE((*journal)->Append(req.Encode() + torn.substr(0, 5)).ok());
        auto tmp = fs.CreateExclusive(std::string(kBox) + "/tmp/1.01M845RYDAKYA30M30Y4RZV0FQ.test.host");
        ASSERT_TRUE(tmp.ok());
        ASSERT_TRUE((*tmp)->Append("Subject: half a mess").ok());
      },
      [](SimFs& fs, Outcome&) { (void)Mailbox::Open(fs, kBox, TestOptions()); });
}

TEST(MailboxCrash, AdoptForeignMailAndRenames) {
  // Another Maildir tool delivered a message and renamed one of ours: the
  // next listing records both, and a crash while it does loses nothing.
  ForEveryCrashPoint(
      [](SimFs& fs, Outcome& o) {
        DeliverAcked(fs, o, Msg(1));
        DeliverAcked(fs, o, Msg(2));
        const std::string foreign = "1700000000.M1P2.other";
        auto f = fs.CreateExclusive(std::string(kBox) + "/new/" + foreign);
        ASSERT_TRUE(f.ok());
        ASSERT_TRUE((*f)->Append("Subject: from dovecot\n\nhi\n").ok());
        o.acked[MessageId::ForForeignName(foreign).ToString()] = "Subject: from dovecot\n\nhi\n";
        auto names = fs.ReadDir(std::string(kBox) + "/new");
        std::sort(names->begin(), names->end());
        ASSERT_TRUE(fs.Rename(std::string(kBox) + "/new/" + (*names)[0],
                              std::string(kBox) + "/cur/" + (*names)[0] + ":2,FS").ok());
      },
      [](SimFs& fs, Outcome& o) {
        auto box = Mailbox::Open(fs, kBox, TestOptions());
        if (!box.ok()) return;
        auto list = (*box)->List();
        if (!list.ok()) return;
        for (const auto& e : *list) o.uids_seen[e.uid] = e.id.ToString();
      });
}

TEST(MailboxCrash, Compaction) {
  // Enough history (renames back and forth) that List() rewrites the journal.
  ForEveryCrashPoint(
      [](SimFs& fs, Outcome& o) {
        DeliverAcked(fs, o, Msg(1));
        auto box = Mailbox::Open(fs, kBox, TestOptions());
        ASSERT_TRUE(box.ok());
        std::string name = (*(*box)->List())[0].name;
        std::string at = std::string(kBox) + "/new/" + name;
        for (int i = 0; i < 800; ++i) {
          std::string next = std::string(kBox) + "/cur/" + name + (i % 2 ? ":2,S" : ":2,FS");
          ASSERT_TRUE(fs.Rename(at, next).ok());
          at = next;
          ASSERT_TRUE((*box)->List().ok());
        }
      },
      [](SimFs& fs, Outcome&) {
        auto box = Mailbox::Open(fs, kBox, TestOptions());
        if (!box.ok()) return;
        auto names = fs.ReadDir(std::string(kBox) + "/cur");
        if (!names.ok() || names->empty()) return;
        std::string n = (*names)[0];
        if (!fs.Rename(std::string(kBox) + "/cur/" + n, std::string(kBox) + "/cur/" + n + "R").ok()) return;
        (void)(*box)->List();
      });
}

TEST(MailboxCrash, FsckRepairSetsDamageAside) {
  // Message 2 is damaged on disk; --repair moves it to holdfast-damaged/.
  // At every crash point its bytes exist somewhere: never deleted.
  for (uint64_t n = 1;; ++n) {
    SimFs fs;
    Outcome o;
    DeliverAcked(fs, o, Msg(1));
    DeliverAcked(fs, o, Msg(2));
    auto box = Mailbox::Open(fs, kBox, TestOptions());
    ASSERT_TRUE(box.ok());
    IndexEntry damaged = (*(*box)->List())[1];
    auto f = fs.OpenAppend(damaged.Path(kBox));
    ASSERT_TRUE((*f)->Append("garbage").ok());
    box->reset();
    fs.SyncEverything();
    fs.SetCrashAfter(n);
    {
      auto b = Mailbox::Open(fs, kBox, TestOptions());
      if (b.ok()) (void)(*b)->Fsck(true);
    }
    bool crashed = fs.crashed();
    for (const CrashChoice& choice : fs.ChoicesToTest(n, 6, 8)) {
      auto after = crashed ? fs.AfterCrash(choice) : fs.AfterCrash(CrashChoice{CrashChoice::Mode::kEverything, {}, -1});
      auto b = Mailbox::Open(*after, kBox, TestOptions());
      ASSERT_TRUE(b.ok()) << b.status().ToString();
      auto report = (*b)->Fsck(true);
      ASSERT_TRUE(report.ok());
      auto again = (*b)->Fsck(false);
      ASSERT_TRUE(again.ok());
      EXPECT_TRUE(again->clean()) << "repair did not converge after crash point " << n;
      auto aside = after->ReadFile(std::string(kBox) + "/" + Mailbox::kDamagedDir + "/" + damaged.name);
      ASSERT_TRUE(aside.ok()) << "damaged message lost at crash point " << n << " " << choice.Describe();
      EXPECT_EQ(*aside, Msg(2) + "garbage");
      auto list = (*b)->List();
      ASSERT_EQ(list->size(), 1u);
      if (!crashed) break;
    }
    if (!crashed) break;
  }
}

}  // namespace
}  // namespace holdfast::testing
