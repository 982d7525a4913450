// The index checkpoint (docs/storage.md, "The index checkpoint"): a fresh
// process lists from it when it matches the journal and the directories, and
// every mismatch -- stale, damaged, from another boot, a Maildir changed by
// another program -- gives the listing the whole load and scan would give.
#include "store/index_checkpoint.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "crash_harness.h"
#include "store/mailbox.h"

namespace holdfast::testing {
namespace {

MailboxOptions CheckpointOptions() {
  MailboxOptions o = TestOptions();
  o.checkpoint_min_messages = 1;
  return o;
}

class IndexCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override { MakeBox(fs_); }
  std::string In(const std::string& sub) { return std::string(kBox) + "/" + sub; }

  DeliveredMessage Put(const std::string& bytes, MaildirDir dir = MaildirDir::kNew) {
    auto box = Mailbox::OpenForDelivery(fs_, kBox, CheckpointOptions());
    EXPECT_TRUE(box.ok()) << box.status().ToString();
    auto d = (*box)->BeginDelivery();
    EXPECT_TRUE(d.ok());
    EXPECT_TRUE((*d)->Write(bytes).ok());
    if (dir == MaildirDir::kCur) (*d)->SetPlacement(MaildirDir::kCur, "S");
    auto done = (*d)->Commit();
    EXPECT_TRUE(done.ok()) << done.status().ToString();
    return done.ok() ? *done : DeliveredMessage{};
  }

  // Three messages in cur/, two in new/, and a full listing that leaves a checkpoint.
  void Fill() {
    for (int i = 0; i < 3; ++i) Put("Subject: cur " + std::to_string(i) + "\n\n", MaildirDir::kCur);
    for (int i = 0; i < 2; ++i) Put("Subject: new " + std::to_string(i) + "\n\n");
    ListFull();
    ASSERT_TRUE(fs_.Stat(In(Mailbox::kCheckpointFile)).ok()) << "a full listing wrote one";
  }

  // What the whole load and scan list (a fresh process, no checkpoint).
  std::vector<MessageRef> ListFull() {
    auto box = Mailbox::Open(fs_, kBox, CheckpointOptions());
    EXPECT_TRUE(box.ok()) << box.status().ToString();
    auto refs = (*box)->ListRefs();
    EXPECT_TRUE(refs.ok()) << refs.status().ToString();
    return refs.ok() ? *refs : std::vector<MessageRef>{};
  }

  // A fresh process's POP3 listing; `view` says whether it came from the checkpoint.
  std::vector<MessageRef> ListFresh(bool* view) {
    auto box = Mailbox::OpenForListing(fs_, kBox, CheckpointOptions());
    EXPECT_TRUE(box.ok()) << box.status().ToString();
    auto refs = (*box)->ListRefs();
    EXPECT_TRUE(refs.ok()) << refs.status().ToString();
    *view = (*box)->reads_checkpoint();
    // Every listed message opens under the path the object gives for it
    // (after a Refresh, as pop3::Maildrop does, if a name cannot be read).
    for (const auto& r : refs.ok() ? *refs : std::vector<MessageRef>{}) {
      auto path = (*box)->PathOf(r.uid, r.id);
      if (!path.ok()) {
        EXPECT_TRUE((*box)->Refresh().ok());
        path = (*box)->PathOf(r.uid, r.id);
      }
      EXPECT_TRUE(path.ok() && fs_.Stat(*path).ok()) << "uid " << r.uid;
    }
    return refs.ok() ? *refs : std::vector<MessageRef>{};
  }

  // Replaces the checkpoint by `bytes` (SimFs has no overwrite).
  void WriteCheckpoint(const std::string& bytes) {
    const std::string tmp = In("ckpt.tmp");
    auto f = fs_.CreateExclusive(tmp);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(bytes).ok());
    f->reset();
    ASSERT_TRUE(fs_.Rename(tmp, In(Mailbox::kCheckpointFile)).ok());
  }

  void ExpectChangeSeen(
      const std::function<void(const std::vector<std::string>&, const std::vector<std::string>&)>& change);

  SimFs fs_;
};

void ExpectSame(const std::vector<MessageRef>& got, const std::vector<MessageRef>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].uid, want[i].uid);
    EXPECT_EQ(got[i].id, want[i].id);
    EXPECT_EQ(got[i].network_size, want[i].network_size);
  }
}

TEST_F(IndexCheckpointTest, AFreshListingComesFromTheCheckpoint) {
  Fill();
  bool view = false;
  auto fresh = ListFresh(&view);
  EXPECT_TRUE(view) << "journal and directories unchanged: no whole load";
  ExpectSame(fresh, ListFull());
  EXPECT_EQ(fresh.size(), 5u);
}

TEST_F(IndexCheckpointTest, RecordsAppendedAfterTheCheckpointAreReplayed) {
  Fill();
  auto d1 = Put("Subject: later 1\n\n");
  auto d2 = Put("Subject: later 2\n\n");
  bool view = false;
  auto fresh = ListFresh(&view);
  EXPECT_TRUE(view) << "deliveries into new/ are replayed onto the checkpoint";
  ASSERT_EQ(fresh.size(), 7u);
  EXPECT_EQ(fresh[5].uid, d1.uid);
  EXPECT_EQ(fresh[6].uid, d2.uid);
  ExpectSame(fresh, ListFull());
  // The scan of new/ confirmed them: a second fresh listing needs no new Confirm.
  const uint64_t journal = fs_.Stat(In(Mailbox::kIndexFile))->size;
  ExpectSame(ListFresh(&view), fresh);
  EXPECT_EQ(fs_.Stat(In(Mailbox::kIndexFile))->size, journal);
}

TEST_F(IndexCheckpointTest, AnAddWhoseFileNeverAppearedEndsTheView) {
  Fill();
  auto d = Put("Subject: lost rename\n\n");
  ASSERT_TRUE(fs_.Unlink(In("new/" + d.name)).ok());  // as if the rename had not happened
  bool view = true;
  auto fresh = ListFresh(&view);
  EXPECT_FALSE(view);
  EXPECT_EQ(fresh.size(), 5u);
}

TEST_F(IndexCheckpointTest, AStaleCheckpointIsNotUsed) {
  Fill();
  const std::string old = *fs_.ReadFile(In(Mailbox::kCheckpointFile));
  {
    // A rebuild writes a new journal (new inode, new Header).
    auto box = Mailbox::Open(fs_, kBox, TestOptions());
    ASSERT_TRUE((*box)->Rebuild().ok());
  }
  WriteCheckpoint(old);
  bool view = true;
  auto fresh = ListFresh(&view);
  EXPECT_FALSE(view) << "a checkpoint of another journal";
  ExpectSame(fresh, ListFull());
}

TEST_F(IndexCheckpointTest, ACheckpointOfAnotherBootIsNotUsed) {
  Fill();
  fs_.SyncEverything();
  auto rebooted = fs_.AfterCrash(CrashChoice{});
  auto box = Mailbox::OpenForListing(*rebooted, kBox, CheckpointOptions());
  ASSERT_TRUE(box.ok());
  EXPECT_FALSE((*box)->reads_checkpoint()) << "directory stamps prove nothing across a power loss";
  EXPECT_EQ((*box)->ListRefs()->size(), 5u);
}

TEST_F(IndexCheckpointTest, ADamagedCheckpointFallsBackToTheWholeLoad) {
  Fill();
  const std::string good = *fs_.ReadFile(In(Mailbox::kCheckpointFile));
  const auto want = ListFull();
  // Somewhere in the head, in the entries, in the names; cut short; empty.
  std::vector<std::string> damaged;
  for (size_t at : {size_t{20}, good.size() / 2, good.size() - 3}) {
    std::string b = good;
    b[at] ^= 0x40;
    damaged.push_back(b);
  }
  damaged.push_back(good.substr(0, good.size() - 1));
  damaged.push_back("");
  for (size_t k = 0; k < damaged.size(); ++k) {
    SCOPED_TRACE("damage " + std::to_string(k));
    WriteCheckpoint(damaged[k]);
    auto loaded = IndexCheckpoint::Load(fs_, In(Mailbox::kCheckpointFile));
    if (loaded.ok()) {
      // Damage among the names is found when a name is read (PathOf, a scan
      // of new/): never used, the whole load takes over then.
      bool bad_name = false;
      for (size_t i = 0; i < (*loaded)->size(); ++i) bad_name |= !(*loaded)->Name(i).ok();
      EXPECT_TRUE(bad_name) << "damage not found at all";
    }
    bool view = false;
    ExpectSame(ListFresh(&view), want);
    if (!loaded.ok()) EXPECT_FALSE(view);
  }
}

// Another program changes the Maildir after the checkpoint: the first
// listing must see it. `change` gets the names in cur/ and new/, sorted.
void IndexCheckpointTest::ExpectChangeSeen(
    const std::function<void(const std::vector<std::string>&, const std::vector<std::string>&)>& change) {
  Fill();
  auto cur = *fs_.ReadDir(In("cur"));
  auto fresh = *fs_.ReadDir(In("new"));
  std::sort(cur.begin(), cur.end());
  std::sort(fresh.begin(), fresh.end());
  change(cur, fresh);
  bool view = true;
  auto got = ListFresh(&view);
  EXPECT_FALSE(view) << "the change sends the listing to the whole scan";
  ExpectSame(got, ListFull());
  // And that listing left a checkpoint that holds the change.
  ExpectSame(ListFresh(&view), got);
  EXPECT_TRUE(view);
}

TEST_F(IndexCheckpointTest, AFileAddedToNewBehindOurBackIsSeen) {
  ExpectChangeSeen([&](auto&, auto&) {
    auto f = fs_.CreateExclusive(In("new/1700000000.M1P1.elsewhere"));
    ASSERT_TRUE((*f)->Append("Subject: foreign\n\n").ok());
  });
}

TEST_F(IndexCheckpointTest, AFileAddedToCurBehindOurBackIsSeen) {
  ExpectChangeSeen([&](auto&, auto&) {
    auto f = fs_.CreateExclusive(In("cur/1700000000.M2P1.elsewhere:2,S"));
    ASSERT_TRUE((*f)->Append("Subject: foreign\n\n").ok());
  });
}

TEST_F(IndexCheckpointTest, AFileRemovedFromNewBehindOurBackIsSeen) {
  ExpectChangeSeen([&](auto&, auto& fresh) { ASSERT_TRUE(fs_.Unlink(In("new/" + fresh[0])).ok()); });
}

TEST_F(IndexCheckpointTest, AFileRemovedFromCurBehindOurBackIsSeen) {
  ExpectChangeSeen([&](auto& cur, auto&) { ASSERT_TRUE(fs_.Unlink(In("cur/" + cur[1])).ok()); });
}

TEST_F(IndexCheckpointTest, AMoveFromNewToCurBehindOurBackIsSeen) {
  ExpectChangeSeen([&](auto&, auto& fresh) {
    ASSERT_TRUE(fs_.Rename(In("new/" + fresh[1]), In("cur/" + fresh[1] + ":2,S")).ok());
  });
}

TEST_F(IndexCheckpointTest, FlagsChangedBehindOurBackAreSeen) {
  ExpectChangeSeen([&](auto& cur, auto&) {
    const std::string base = cur[0].substr(0, cur[0].find(':'));
    ASSERT_TRUE(fs_.Rename(In("cur/" + cur[0]), In("cur/" + base + ":2,RS")).ok());
  });
}

TEST_F(IndexCheckpointTest, ExpungeAfterAViewListingUsesTheWholeIndex) {
  Fill();
  auto box = Mailbox::OpenForListing(fs_, kBox, CheckpointOptions());
  auto refs = (*box)->ListRefs();
  ASSERT_TRUE((*box)->reads_checkpoint());
  ASSERT_TRUE((*box)->Expunge({{(*refs)[0].uid, (*refs)[0].id}}).ok());
  EXPECT_FALSE((*box)->reads_checkpoint());
  EXPECT_EQ((*box)->ListRefs()->size(), 4u);
  bool view = false;
  EXPECT_EQ(ListFresh(&view).size(), 4u);
  EXPECT_TRUE(view) << "the listing after the expunge wrote a new checkpoint";
}

// On the real file system: real mtimes, a quiet scan only after the timestamp granularity.
TEST(IndexCheckpointPosix, SeesAFileAnotherProgramAddedRightAfterTheCheckpoint) {
  auto dir = std::filesystem::temp_directory_path() / ("holdfast-ckpt-test-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string box_dir = (dir / "alice").string();
  ASSERT_TRUE(Mailbox::Create(PosixFs(), box_dir).ok());
  {
    auto box = Mailbox::Open(PosixFs(), box_dir, CheckpointOptions());
    auto d = (*box)->BeginDelivery();
    ASSERT_TRUE((*d)->Write("Subject: real\n\n").ok());
    ASSERT_TRUE((*d)->Commit().ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(60));  // past the granularity: a quiet scan
    ASSERT_EQ((*box)->ListRefs()->size(), 1u);
  }
  {
    auto box = Mailbox::OpenForListing(PosixFs(), box_dir, CheckpointOptions());
    ASSERT_EQ((*box)->ListRefs()->size(), 1u);
    EXPECT_TRUE((*box)->reads_checkpoint());
  }
  // At once, within the same timestamp tick as nothing we know of.
  std::filesystem::path tmp = dir / "alice" / "tmp" / "1700000000.M9P9.elsewhere";
  { std::FILE* f = std::fopen(tmp.c_str(), "w"); std::fputs("Subject: foreign\n\n", f); std::fclose(f); }
  std::filesystem::rename(tmp, dir / "alice" / "new" / "1700000000.M9P9.elsewhere");
  {
    auto box = Mailbox::OpenForListing(PosixFs(), box_dir, CheckpointOptions());
    EXPECT_EQ((*box)->ListRefs()->size(), 2u);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace holdfast::testing
