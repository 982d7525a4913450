// SimFs: the POSIX-like surface, and the persistence model of
// docs/persistence.md (what each crash choice may keep).
#include "fs/sim_fs.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <set>
#include <thread>

namespace holdfast {
namespace {

using Kind = Status::Kind;
using Mode = CrashChoice::Mode;
using namespace std::chrono_literals;

const CrashChoice kDurableOnly{Mode::kDurableOnly, {}, -1};
const CrashChoice kEverything{Mode::kEverything, {}, -1};

CrashChoice Mask(const std::string& bits, int64_t torn = -1) {
  CrashChoice c{Mode::kMask, {}, torn};
  for (char b : bits) c.keep.push_back(b == '1');
  return c;
}

// Creates `path` holding `data`; syncs the data when asked (not the name).
void Put(SimFs& fs, const std::string& path, const std::string& data, bool sync_data) {
  auto f = fs.CreateExclusive(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_TRUE((*f)->Append(data).ok());
  if (sync_data) {
    ASSERT_TRUE((*f)->SyncData().ok());
  }
}

// The content of `path`, "<missing>" if it does not exist.
std::string Content(SimFs& fs, const std::string& path) {
  auto f = fs.OpenRead(path);
  if (!f.ok()) return f.status().kind() == Kind::kNotFound ? "<missing>" : f.status().ToString();
  auto size = (*f)->Size();
  std::string out(*size, '\0');
  auto got = (*f)->ReadAt(0, out.data(), out.size());
  EXPECT_TRUE(got.ok());
  out.resize(*got);
  return out;
}

bool Exists(SimFs& fs, const std::string& path) { return fs.Stat(path).ok(); }

TEST(SimFs, CreateAppendReadBack) {
  SimFs fs;
  ASSERT_TRUE(fs.MkDir("/a").ok());
  auto f = fs.CreateExclusive("/a/x");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("hello ").ok());
  ASSERT_TRUE((*f)->Append("world").ok());
  EXPECT_EQ(*(*f)->Size(), 11u);
  char buf[8];
  auto got = (*f)->ReadAt(6, buf, sizeof buf);  // short read only at end of file
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(std::string(buf, *got), "world");
  EXPECT_EQ(*(*f)->ReadAt(50, buf, sizeof buf), 0u);
  EXPECT_EQ(Content(fs, "//a///x"), "hello world");  // repeated slashes normalised
  EXPECT_EQ((*f)->NativeHandle(), -1);

  auto st = fs.Stat("/a/x/");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->size, 11u);
  EXPECT_FALSE(st->is_dir);
  EXPECT_EQ(st->inode, fs.Stat("/a/x")->inode);
  EXPECT_TRUE(fs.Stat("/a")->is_dir);
  EXPECT_TRUE(fs.Stat("/")->is_dir);
  EXPECT_NE(fs.Stat("/a")->inode, st->inode);
  EXPECT_GT(st->mtime_ns, fs.Stat("/")->mtime_ns);

  ASSERT_TRUE((*f)->Truncate(5).ok());
  EXPECT_EQ(Content(fs, "/a/x"), "hello");
  auto names = fs.ReadDir("/a");
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"x"});
  EXPECT_EQ(*fs.ReadDir("/"), std::vector<std::string>{"a"});
}

TEST(SimFs, ErrorsMatchPosix) {
  SimFs fs;
  ASSERT_TRUE(fs.MkDir("/d").ok());
  Put(fs, "/d/f", "x", false);
  EXPECT_EQ(fs.CreateExclusive("/d/f").status().kind(), Kind::kExists);
  EXPECT_EQ(fs.CreateExclusive("/d").status().kind(), Kind::kExists);
  EXPECT_EQ(fs.MkDir("/d").kind(), Kind::kExists);
  EXPECT_EQ(fs.MkDir("/").kind(), Kind::kExists);
  EXPECT_EQ(fs.Unlink("/d/nope").kind(), Kind::kNotFound);
  EXPECT_EQ(fs.OpenRead("/d/nope").status().kind(), Kind::kNotFound);
  EXPECT_EQ(fs.OpenAppend("/nope/x").status().kind(), Kind::kNotFound);
  EXPECT_EQ(fs.CreateExclusive("/nope/x").status().kind(), Kind::kNotFound);
  EXPECT_EQ(fs.CreateExclusive("/d/f/x").status().error_number(), ENOTDIR);
  EXPECT_EQ(fs.Stat("/d/nope").status().kind(), Kind::kNotFound);
  EXPECT_EQ(fs.ReadDir("/d/f").status().error_number(), ENOTDIR);
  EXPECT_EQ(fs.Unlink("/d").error_number(), EISDIR);
  EXPECT_EQ(fs.OpenRead("/d").status().error_number(), EISDIR);
  EXPECT_EQ(fs.Link("/d/f", "/d/f").kind(), Kind::kExists);
  EXPECT_EQ(fs.Link("/d", "/e").error_number(), EPERM);
  EXPECT_EQ(fs.Rename("/d/nope", "/d/g").kind(), Kind::kNotFound);
  EXPECT_EQ(fs.Rename("/d", "/d/sub").error_number(), EINVAL);
  EXPECT_EQ(fs.Rename("/d/f", "/d").error_number(), EISDIR);
  ASSERT_TRUE(fs.MkDir("/e").ok());
  EXPECT_EQ(fs.Rename("/e", "/d").error_number(), ENOTEMPTY);
  EXPECT_EQ(fs.SyncDir("/d/f").error_number(), ENOTDIR);
  EXPECT_EQ(fs.Stat("relative").status().kind(), Kind::kInvalid);
  EXPECT_EQ(fs.Stat("/d/../d").status().kind(), Kind::kInvalid);
  // A read-only file refuses writes.
  auto r = fs.OpenRead("/d/f");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)->Append("y").error_number(), EBADF);
  EXPECT_EQ(Content(fs, "/d/f"), "x");
  // Failed calls are not mutating operations.
  EXPECT_EQ(fs.OpLog().size(), 4u);  // mkdir, create, append, mkdir
}

TEST(SimFs, RenameReplacesAtomicallyAndMovesDirectories) {
  SimFs fs;
  Put(fs, "/a", "old", false);
  Put(fs, "/b", "new", false);
  ASSERT_TRUE(fs.Rename("/b", "/a").ok());
  EXPECT_EQ(Content(fs, "/a"), "new");
  EXPECT_FALSE(Exists(fs, "/b"));
  ASSERT_TRUE(fs.MkDir("/d").ok());
  Put(fs, "/d/x", "in d", false);
  ASSERT_TRUE(fs.Rename("/d", "/e").ok());
  EXPECT_EQ(Content(fs, "/e/x"), "in d");
  EXPECT_FALSE(Exists(fs, "/d"));
  ASSERT_TRUE(fs.MkDir("/empty").ok());
  ASSERT_TRUE(fs.Rename("/e", "/empty").ok());  // a directory may replace an empty one
  EXPECT_EQ(Content(fs, "/empty/x"), "in d");
  EXPECT_TRUE(fs.Rename("/a", "/a").ok());  // same inode: nothing happens
  EXPECT_EQ(Content(fs, "/a"), "new");
}

TEST(SimFs, HardLinkSharesData) {
  SimFs fs;
  Put(fs, "/a", "one", false);
  ASSERT_TRUE(fs.Link("/a", "/b").ok());
  EXPECT_EQ(fs.Stat("/a")->inode, fs.Stat("/b")->inode);
  auto f = fs.OpenAppend("/b");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("+two").ok());
  EXPECT_EQ(Content(fs, "/a"), "one+two");
  ASSERT_TRUE(fs.Unlink("/a").ok());
  EXPECT_EQ(Content(fs, "/b"), "one+two");
  // Both names survive a crash once their directory is synced; one inode.
  ASSERT_TRUE(fs.Link("/b", "/c").ok());
  ASSERT_TRUE((*f)->Sync().ok());
  ASSERT_TRUE(fs.SyncDir("/").ok());
  auto after = fs.AfterCrash(kDurableOnly);
  EXPECT_EQ(Content(*after, "/c"), "one+two");
  EXPECT_EQ(after->Stat("/b")->inode, after->Stat("/c")->inode);
  EXPECT_FALSE(Exists(*after, "/a"));
}

TEST(SimFs, UnlinkedOrRenamedFileStaysUsableWhileOpen) {
  SimFs fs;
  Put(fs, "/x", "abc", false);
  auto f = fs.OpenAppend("/x");
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(fs.Rename("/x", "/y").ok());
  ASSERT_TRUE((*f)->Append("d").ok());
  EXPECT_EQ(Content(fs, "/y"), "abcd");
  ASSERT_TRUE(fs.Unlink("/y").ok());
  EXPECT_FALSE(Exists(fs, "/y"));
  ASSERT_TRUE((*f)->Append("e").ok());
  char buf[16];
  auto got = (*f)->ReadAt(0, buf, sizeof buf);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(std::string(buf, *got), "abcde");
  EXPECT_TRUE(fs.ReadDir("/")->empty());
}

TEST(SimFs, UnsyncedDataLostOnDurableOnlyKeptOnEverything) {
  SimFs fs;
  Put(fs, "/f", "base", true);
  ASSERT_TRUE(fs.SyncDir("/").ok());
  auto f = fs.OpenAppend("/f");
  ASSERT_TRUE((*f)->Append("+more").ok());
  EXPECT_EQ(fs.PendingOps(), std::vector<std::string>{"append /f 5 bytes"});
  EXPECT_EQ(Content(*fs.AfterCrash(kDurableOnly), "/f"), "base");
  EXPECT_EQ(Content(*fs.AfterCrash(kEverything), "/f"), "base+more");
  ASSERT_TRUE((*f)->SyncData().ok());
  EXPECT_TRUE(fs.PendingOps().empty());
  EXPECT_EQ(Content(*fs.AfterCrash(kDurableOnly), "/f"), "base+more");
}

TEST(SimFs, TruncateIsADataOpOrderedWithAppends) {
  SimFs fs;
  Put(fs, "/f", "0123456789", true);
  ASSERT_TRUE(fs.SyncDir("/").ok());
  auto f = fs.OpenAppend("/f");
  ASSERT_TRUE((*f)->Truncate(4).ok());
  ASSERT_TRUE((*f)->Append("xy").ok());
  EXPECT_EQ(Content(*fs.AfterCrash(kDurableOnly), "/f"), "0123456789");
  EXPECT_EQ(Content(*fs.AfterCrash(Mask("10")), "/f"), "0123");
  // The append after the truncate cannot survive without it.
  EXPECT_EQ(Content(*fs.AfterCrash(Mask("01")), "/f"), "0123456789");
  EXPECT_EQ(Content(*fs.AfterCrash(kEverything), "/f"), "0123xy");
}

TEST(SimFs, SyncedDataButUnsyncedNameIsGone) {
  SimFs fs;
  ASSERT_TRUE(fs.MkDir("/d").ok());
  fs.SyncEverything();
  Put(fs, "/d/f", "data", /*sync_data=*/true);  // File::Sync does not make the name durable
  auto f = fs.OpenRead("/d/f");
  ASSERT_TRUE((*f)->Sync().ok());
  auto after = fs.AfterCrash(kDurableOnly);
  EXPECT_FALSE(Exists(*after, "/d/f"));
  EXPECT_TRUE(after->ReadDir("/d")->empty());
  EXPECT_EQ(Content(*fs.AfterCrash(kEverything), "/d/f"), "data");
  ASSERT_TRUE(fs.SyncDir("/d").ok());
  EXPECT_EQ(Content(*fs.AfterCrash(kDurableOnly), "/d/f"), "data");
}

TEST(SimFs, NameDurableButDataNotGivesEmptyFile) {
  SimFs fs;
  Put(fs, "/f", "data", /*sync_data=*/false);
  ASSERT_TRUE(fs.SyncDir("/").ok());
  auto after = fs.AfterCrash(kDurableOnly);
  ASSERT_TRUE(Exists(*after, "/f"));
  EXPECT_EQ(Content(*after, "/f"), "");
}

TEST(SimFs, RenameWithSyncDirIsAtomicAndDurable) {
  SimFs fs;
  ASSERT_TRUE(fs.MkDir("/a").ok());
  ASSERT_TRUE(fs.MkDir("/a/tmp").ok());
  ASSERT_TRUE(fs.MkDir("/a/new").ok());
  Put(fs, "/a/tmp/x", "msg", true);
  fs.SyncEverything();
  ASSERT_TRUE(fs.Rename("/a/tmp/x", "/a/new/x").ok());
  EXPECT_EQ(fs.PendingOps(), std::vector<std::string>{"rename /a/tmp/x -> /a/new/x"});
  // Without a sync a power loss keeps the old name only.
  auto before = fs.AfterCrash(kDurableOnly);
  EXPECT_EQ(Content(*before, "/a/tmp/x"), "msg");
  EXPECT_FALSE(Exists(*before, "/a/new/x"));
  // Syncing the destination commits both halves: the source is gone too.
  ASSERT_TRUE(fs.SyncDir("/a/new").ok());
  EXPECT_TRUE(fs.PendingOps().empty());
  auto after = fs.AfterCrash(kDurableOnly);
  EXPECT_EQ(Content(*after, "/a/new/x"), "msg");
  EXPECT_FALSE(Exists(*after, "/a/tmp/x"));
  EXPECT_EQ(fs.OpLog().back(), "syncdir /a/new");
}

TEST(SimFs, RenameIsAllOrNothingInEveryChoice) {
  SimFs fs;
  Put(fs, "/tmp_x", "msg", true);
  Put(fs, "/x", "old", true);
  fs.SyncEverything();
  ASSERT_TRUE(fs.Rename("/tmp_x", "/x").ok());
  ASSERT_TRUE(fs.MkDir("/other").ok());
  for (const auto& c : fs.ChoicesToTest(1)) {
    auto after = fs.AfterCrash(c);
    const bool moved = !Exists(*after, "/tmp_x");
    EXPECT_EQ(Content(*after, "/x"), moved ? "msg" : "old") << c.Describe();
  }
}

TEST(SimFs, MaskDropsOpsWhoseDependencyIsDropped) {
  // Documented rule: a kept op whose dependency is not kept is dropped
  // (the dependency is never added).
  SimFs fs;
  Put(fs, "/x", "", false);
  fs.SyncEverything();
  ASSERT_TRUE(fs.MkDir("/d").ok());             // 0
  Put(fs, "/d/f", "abc", false);                 // 1 create, 2 append
  ASSERT_TRUE(fs.Rename("/x", "/d/g").ok());    // 3 depends on 0
  ASSERT_TRUE(fs.Unlink("/d/f").ok());          // 4 depends on 1
  ASSERT_EQ(fs.PendingOps().size(), 5u);
  // Everything but the mkdir: nothing under /d can appear, and the rename
  // that would move /x into /d is dropped whole, so /x stays.
  auto a = fs.AfterCrash(Mask("01111"));
  EXPECT_FALSE(Exists(*a, "/d"));
  EXPECT_EQ(Content(*a, "/x"), "");
  // Keep the unlink but not the create: the unlink goes too, and so /d/f
  // (with its data, which does not need its name to be kept) is absent.
  auto b = fs.AfterCrash(Mask("10101"));
  EXPECT_TRUE(b->ReadDir("/d")->empty());
  auto c = fs.AfterCrash(Mask("11100"));
  EXPECT_EQ(Content(*c, "/d/f"), "abc");
  EXPECT_TRUE(Exists(*c, "/x"));
}

TEST(SimFs, MkDirWithoutParentSyncVanishesWithContents) {
  SimFs fs;
  ASSERT_TRUE(fs.MkDir("/other").ok());
  ASSERT_TRUE(fs.MkDir("/d").ok());
  Put(fs, "/d/f", "data", true);  // its data is durable, its name is not
  ASSERT_TRUE(fs.MkDir("/d/sub").ok());
  ASSERT_EQ(fs.PendingOps(),
            (std::vector<std::string>{"mkdir /other", "mkdir /d", "create /d/f", "mkdir /d/sub"}));
  // Everything inside /d is kept, the mkdir of /d is not: all of it vanishes.
  auto after = fs.AfterCrash(Mask("1011"));
  EXPECT_FALSE(Exists(*after, "/d"));
  EXPECT_EQ(*after->ReadDir("/"), std::vector<std::string>{"other"});
  EXPECT_EQ(Content(*fs.AfterCrash(kEverything), "/d/f"), "data");
  // Syncing the new directory pulls in its own creation (its entries depend
  // on it) but not the unrelated mkdir of /other.
  ASSERT_TRUE(fs.SyncDir("/d").ok());
  EXPECT_EQ(fs.PendingOps(), std::vector<std::string>{"mkdir /other"});
  auto synced = fs.AfterCrash(kDurableOnly);
  EXPECT_EQ(Content(*synced, "/d/f"), "data");
  EXPECT_TRUE(synced->Stat("/d/sub")->is_dir);
  EXPECT_FALSE(Exists(*synced, "/other"));
}

TEST(SimFs, TornAppendKeepsAPrefix) {
  SimFs fs;
  Put(fs, "/a", "", false);
  Put(fs, "/b", "", false);
  fs.SyncEverything();
  auto a = fs.OpenAppend("/a");
  auto b = fs.OpenAppend("/b");
  ASSERT_TRUE((*a)->Append("AAAA").ok());
  ASSERT_TRUE((*b)->Append("0123456789").ok());  // the last append overall
  auto torn = fs.AfterCrash(Mask("11", 3));
  EXPECT_EQ(Content(*torn, "/a"), "AAAA");
  EXPECT_EQ(Content(*torn, "/b"), "012");
  // Only the last *kept* append is torn.
  auto first_only = fs.AfterCrash(Mask("10", 1));
  EXPECT_EQ(Content(*first_only, "/a"), "A");
  EXPECT_EQ(Content(*first_only, "/b"), "");
  EXPECT_EQ(Mask("10", 1).Describe(), "mask 10 torn=1");
  EXPECT_EQ(kDurableOnly.Describe(), "durable-only");
  EXPECT_EQ(kEverything.Describe(), "everything");
}

TEST(SimFs, CrashAfterNthOp) {
  SimFs fs;
  Put(fs, "/keep", "x", true);
  fs.SyncEverything();
  fs.SetCrashAfter(3);
  EXPECT_EQ(fs.MutatingOps(), 0u);
  auto f = fs.CreateExclusive("/f");      // 1
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("one").ok());  // 2
  EXPECT_TRUE(fs.ReadDir("/").ok());      // reads are not counted
  EXPECT_FALSE(fs.crashed());
  ASSERT_TRUE((*f)->Append("two").ok());  // 3: happens, then the crash
  EXPECT_TRUE(fs.crashed());
  EXPECT_EQ(fs.MutatingOps(), 3u);
  EXPECT_EQ(fs.OpLog().back(), "append /f 3 bytes");
  EXPECT_EQ((*f)->Append("three").kind(), Kind::kCrashed);
  EXPECT_EQ((*f)->SyncData().kind(), Kind::kCrashed);
  EXPECT_EQ((*f)->Size().status().kind(), Kind::kCrashed);
  char c;
  EXPECT_EQ((*f)->ReadAt(0, &c, 1).status().kind(), Kind::kCrashed);
  EXPECT_EQ(fs.Stat("/keep").status().kind(), Kind::kCrashed);
  EXPECT_EQ(fs.ReadDir("/").status().kind(), Kind::kCrashed);
  EXPECT_EQ(fs.MkDir("/z").kind(), Kind::kCrashed);
  EXPECT_EQ(fs.LockFile("/lock", 0ms).status().kind(), Kind::kCrashed);
  EXPECT_EQ(fs.OpLog().size(), 6u);  // 3 in set-up, 3 since; nothing after the crash
  EXPECT_EQ(fs.PendingOps().size(), 3u);
  EXPECT_EQ(Content(*fs.AfterCrash(kEverything), "/f"), "onetwo");
  auto after = fs.AfterCrash(kDurableOnly);
  EXPECT_FALSE(after->crashed());
  EXPECT_FALSE(Exists(*after, "/f"));
  EXPECT_EQ(Content(*after, "/keep"), "x");
  EXPECT_EQ(after->MutatingOps(), 0u);
  EXPECT_TRUE(after->PendingOps().empty());
  EXPECT_TRUE(after->MkDir("/z").ok());  // the rebooted machine works
}

TEST(SimFs, SyncsAreMutatingButNeverPending) {
  SimFs fs;
  fs.SetCrashAfter(0);
  Put(fs, "/f", "x", true);  // create, append, syncdata
  ASSERT_TRUE(fs.SyncDir("/").ok());
  EXPECT_EQ(fs.MutatingOps(), 4u);
  EXPECT_EQ(fs.OpLog(), (std::vector<std::string>{"create /f", "append /f 1 bytes", "syncdata /f", "syncdir /"}));
  EXPECT_TRUE(fs.PendingOps().empty());
}

TEST(SimFs, LocksVanishAfterCrash) {
  SimFs fs;
  auto lock = fs.LockFile("/lk", 0ms);
  ASSERT_TRUE(lock.ok());
  EXPECT_EQ(fs.OpLog().size(), 1u);  // it created the file
  EXPECT_EQ(fs.LockFile("/lk", 0ms).status().kind(), Kind::kBusy);
  auto f = fs.OpenRead("/lk");
  EXPECT_EQ((*f)->TryLockExclusive().kind(), Kind::kBusy);
  fs.SyncEverything();
  auto after = fs.AfterCrash(kEverything);
  auto again = after->LockFile("/lk", 0ms);
  EXPECT_TRUE(again.ok());
  EXPECT_EQ(after->OpLog().size(), 0u);  // existing file: no create
  lock = Status::Invalid("drop");  // release
  EXPECT_TRUE(fs.LockFile("/lk", 0ms).ok());
}

TEST(SimFs, LockFileTimesOutAndWaits) {
  SimFs fs;
  auto lock = fs.LockFile("/lk", 0ms);
  ASSERT_TRUE(lock.ok());
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(fs.LockFile("/lk", 50ms).status().kind(), Kind::kBusy);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 50ms);
  // A waiter gets the lock once the holder lets go.
  std::thread releaser([&] {
    std::this_thread::sleep_for(30ms);
    lock = Status::Invalid("released");
  });
  auto waited = fs.LockFile("/lk", 5000ms);
  releaser.join();
  EXPECT_TRUE(waited.ok()) << waited.status().ToString();
}

TEST(SimFs, TryLockExclusiveHeldUntilFileDestroyed) {
  SimFs fs;
  Put(fs, "/f", "", false);
  auto a = fs.OpenAppend("/f");
  auto b = fs.OpenRead("/f");
  ASSERT_TRUE((*a)->TryLockExclusive().ok());
  EXPECT_TRUE((*a)->TryLockExclusive().ok());  // its own lock again
  EXPECT_EQ((*b)->TryLockExclusive().kind(), Kind::kBusy);
  EXPECT_EQ(fs.LockFile("/f", 0ms).status().kind(), Kind::kBusy);
  // Keyed by inode: another name for the file is the same lock.
  ASSERT_TRUE(fs.Link("/f", "/g").ok());
  auto c = fs.OpenRead("/g");
  EXPECT_EQ((*c)->TryLockExclusive().kind(), Kind::kBusy);
  a = Status::Invalid("closed");
  EXPECT_TRUE((*b)->TryLockExclusive().ok());
  EXPECT_EQ((*c)->TryLockExclusive().kind(), Kind::kBusy);
}

TEST(SimFs, CapacityGivesEnospc) {
  SimFs fs;
  fs.SetCapacity(10);
  auto f = fs.CreateExclusive("/f");
  ASSERT_TRUE((*f)->Append("12345678").ok());
  Status full = (*f)->Append("abc");
  EXPECT_EQ(full.kind(), Kind::kIo);
  EXPECT_EQ(full.error_number(), ENOSPC);
  EXPECT_EQ(Content(fs, "/f"), "12345678");  // nothing written
  EXPECT_TRUE((*f)->Append("ab").ok());
  // Unlinked and closed data no longer counts.
  f = Status::Invalid("closed");
  ASSERT_TRUE(fs.Unlink("/f").ok());
  auto g = fs.CreateExclusive("/g");
  EXPECT_TRUE((*g)->Append("0123456789").ok());
}

TEST(SimFs, FailNextFailsOnceAndChangesNothing) {
  SimFs fs;
  fs.FailNext("rename");
  Put(fs, "/a", "x", false);
  Status s = fs.Rename("/a", "/b");
  EXPECT_EQ(s.kind(), Kind::kIo);
  EXPECT_EQ(s.error_number(), EIO);
  EXPECT_TRUE(Exists(fs, "/a"));
  EXPECT_FALSE(Exists(fs, "/b"));
  EXPECT_TRUE(fs.Rename("/a", "/b").ok());  // once only
  fs.FailNext("syncdata", ENOSPC);
  auto f = fs.OpenAppend("/b");
  EXPECT_EQ((*f)->SyncData().error_number(), ENOSPC);
  EXPECT_EQ(fs.PendingOps().size(), 3u);  // the append is still not durable
  fs.FailNext("stat", ENOENT);
  EXPECT_EQ(fs.Stat("/b").status().kind(), Kind::kNotFound);
  fs.FailNext("create", EEXIST);
  EXPECT_EQ(fs.CreateExclusive("/c").status().kind(), Kind::kExists);
  EXPECT_FALSE(Exists(fs, "/c"));
  EXPECT_EQ(fs.OpLog().size(), 3u);  // create, append, rename
}

TEST(SimFs, ChoicesToTestEnumeratesSmallSets) {
  SimFs fs;
  for (const char* p : {"/a", "/b", "/c"}) Put(fs, p, "", false);
  fs.SyncEverything();
  std::vector<std::unique_ptr<File>> files;
  for (const char* p : {"/a", "/b", "/c"}) {
    files.push_back(std::move(fs.OpenAppend(p).value()));
    ASSERT_TRUE(files.back()->Append("xyzw").ok());
  }
  // Three independent appends: 2 + 2^3 masks, and two tears (2 bytes and 0)
  // for each of the 7 masks that keep an append.
  auto choices = fs.ChoicesToTest(7, 8, 24);
  ASSERT_EQ(choices.size(), 2u + 8u + 7u * 2u);
  EXPECT_EQ(choices[0].mode, Mode::kDurableOnly);
  EXPECT_EQ(choices[1].mode, Mode::kEverything);
  std::set<std::string> seen;
  for (const auto& c : choices) {
    EXPECT_TRUE(seen.insert(c.Describe()).second) << "duplicate " << c.Describe();
    EXPECT_TRUE(c.torn_bytes == -1 || c.torn_bytes == 0 || c.torn_bytes == 2) << c.Describe();
  }
  EXPECT_TRUE(seen.count("mask 101 torn=2"));

  // Two appends to one file: a later append cannot survive alone, so four
  // masks close to three sets.
  SimFs one;
  Put(one, "/f", "", false);
  one.SyncEverything();
  auto f = one.OpenAppend("/f");
  ASSERT_TRUE((*f)->Append("a").ok());
  ASSERT_TRUE((*f)->Append("bb").ok());
  auto small = one.ChoicesToTest(1);
  // {}, {0} + tear 0 of "a", {0,1} + tears 1 and 0 of "bb".
  ASSERT_EQ(small.size(), 2u + 3u + 1u + 2u);
  auto whole = one.AfterCrash(Mask("11", 1));
  EXPECT_EQ(Content(*whole, "/f"), "ab");
}

TEST(SimFs, ChoicesToTestSamplesLargeSetsDeterministically) {
  SimFs fs;
  Put(fs, "/f", "", false);
  fs.SyncEverything();
  auto f = fs.OpenAppend("/f");
  for (int i = 0; i < 12; ++i) ASSERT_TRUE((*f)->Append(std::string(10, 'a' + i)).ok());
  auto a = fs.ChoicesToTest(42, 8, 30);
  auto b = fs.ChoicesToTest(42, 8, 30);
  auto c = fs.ChoicesToTest(43, 8, 30);
  ASSERT_EQ(a.size(), 32u);
  std::vector<std::string> da, db, dc;
  for (auto& x : a) da.push_back(x.Describe());
  for (auto& x : b) db.push_back(x.Describe());
  for (auto& x : c) dc.push_back(x.Describe());
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
  int torn = 0;
  for (size_t i = 2; i < a.size(); ++i) {
    EXPECT_EQ(a[i].mode, Mode::kMask);
    EXPECT_EQ(a[i].keep.size(), 12u);
    torn += a[i].torn_bytes >= 0;
    // Whatever is kept is a prefix of the appends, with a torn tail.
    std::string got = Content(*fs.AfterCrash(a[i]), "/f");
    std::string all;
    for (int k = 0; k < 12; ++k) all += std::string(10, 'a' + k);
    EXPECT_EQ(all.substr(0, got.size()), got) << a[i].Describe();
  }
  EXPECT_GT(torn, 0);
  EXPECT_LT(torn, 20);
}

TEST(SimFs, ThreadSafe) {
  SimFs fs;
  ASSERT_TRUE(fs.MkDir("/d").ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&fs, t] {
      for (int i = 0; i < 50; ++i) {
        std::string p = "/d/" + std::to_string(t) + "_" + std::to_string(i);
        auto f = fs.CreateExclusive(p);
        ASSERT_TRUE(f.ok());
        ASSERT_TRUE((*f)->Append("x").ok());
        ASSERT_TRUE((*f)->SyncData().ok());
        ASSERT_TRUE(fs.SyncDir("/d").ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(fs.ReadDir("/d")->size(), 200u);
  EXPECT_EQ(fs.AfterCrash(kDurableOnly)->ReadDir("/d")->size(), 200u);
}

}  // namespace
}  // namespace holdfast
