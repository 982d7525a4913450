// CredentialsCache: a verified login is remembered for the same password,
// the same users-file entry and generation, within the TTL -- and nothing
// else ever hits.
#include "users/credentials_cache.h"

#include <gtest/gtest.h>

#include "fs/sim_fs.h"
#include "users/users_cache.h"
#include "users/users_file.h"

namespace holdfast {
namespace {

using std::chrono::milliseconds;

struct FakeClock {
  std::chrono::steady_clock::time_point t{std::chrono::hours(1)};
  CredentialsCache::Clock fn() {
    return [this] { return t; };
  }
};

constexpr milliseconds kTtl{60000};
constexpr char kHash[] = "{CRYPT}$y$j9T$salt$hash";

TEST(CredentialsCache, HitForTheSamePasswordEntryAndGeneration) {
  FakeClock clock;
  CredentialsCache cache(clock.fn());
  EXPECT_FALSE(cache.Verified("alice", "pw one", kHash, 1, kTtl)) << "nothing remembered yet";
  cache.Remember("alice", "pw one", kHash, 1, kTtl, 10);
  EXPECT_TRUE(cache.Verified("alice", "pw one", kHash, 1, kTtl));
  EXPECT_EQ(cache.size(), 1u);
}

TEST(CredentialsCache, WrongPasswordOrOtherUserMisses) {
  FakeClock clock;
  CredentialsCache cache(clock.fn());
  cache.Remember("alice", "pw one", kHash, 1, kTtl, 10);
  EXPECT_FALSE(cache.Verified("alice", "pw two", kHash, 1, kTtl));
  EXPECT_FALSE(cache.Verified("alice", "pw one ", kHash, 1, kTtl));
  EXPECT_FALSE(cache.Verified("alice", "", kHash, 1, kTtl));
  EXPECT_FALSE(cache.Verified("bob", "pw one", kHash, 1, kTtl));
  // The MAC binds the user: "alice" + "\0x" is not "alice\0" + "x".
  cache.Remember("ab", "c", kHash, 1, kTtl, 10);
  EXPECT_FALSE(cache.Verified("a", "bc", kHash, 1, kTtl));
  // A wrong guess does not evict the real entry.
  EXPECT_TRUE(cache.Verified("alice", "pw one", kHash, 1, kTtl));
}

TEST(CredentialsCache, AChangedUsersFileOrEntryInvalidates) {
  FakeClock clock;
  CredentialsCache cache(clock.fn());
  cache.Remember("alice", "pw", kHash, 1, kTtl, 10);
  EXPECT_FALSE(cache.Verified("alice", "pw", "{CRYPT}$y$j9T$salt$other", 1, kTtl)) << "another hash";
  cache.Remember("alice", "pw", kHash, 1, kTtl, 10);
  EXPECT_FALSE(cache.Verified("alice", "pw", kHash, 2, kTtl)) << "another generation of the users file";
  EXPECT_EQ(cache.size(), 0u) << "a stale entry is dropped";
  EXPECT_FALSE(cache.Verified("alice", "pw", kHash, 1, kTtl)) << "and stays dropped";
}

// The generation comes from UsersCache: every rewrite of the users file
// (a password change, another user added) moves it on; an unchanged file
// does not.
TEST(CredentialsCache, UsersCacheGenerationFollowsTheFile) {
  SimFs fs;
  ASSERT_TRUE(fs.EnsureDir("/data").ok());
  UsersCache users(fs, "/data");
  UsersFile file(fs, "/data");
  auto alice = UserName::Parse("alice").value();
  ASSERT_TRUE(file.Add(alice, kHash).ok());
  uint64_t g1 = 0, g2 = 0, g3 = 0;
  ASSERT_TRUE(users.Find(alice, &g1).ok());
  ASSERT_TRUE(users.Find(alice, &g2).ok());
  EXPECT_EQ(g1, g2) << "unchanged file, same generation";
  FakeClock clock;
  CredentialsCache cache(clock.fn());
  cache.Remember("alice", "pw", kHash, g1, kTtl, 10);
  ASSERT_TRUE(file.Add(UserName::Parse("bob").value(), kHash).ok());
  auto rec = users.Find(alice, &g3);
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_NE(g3, g1);
  EXPECT_EQ((*rec)->password_hash, kHash) << "alice's entry itself is unchanged";
  EXPECT_FALSE(cache.Verified("alice", "pw", (*rec)->password_hash, g3, kTtl));
}

TEST(CredentialsCache, ExpiresAfterTheTtl) {
  FakeClock clock;
  CredentialsCache cache(clock.fn());
  cache.Remember("alice", "pw", kHash, 1, kTtl, 10);
  clock.t += kTtl - milliseconds(1);
  EXPECT_TRUE(cache.Verified("alice", "pw", kHash, 1, kTtl));
  clock.t += milliseconds(1);
  EXPECT_FALSE(cache.Verified("alice", "pw", kHash, 1, kTtl));
  EXPECT_EQ(cache.size(), 0u);
  // A hit does not extend the entry: only a full verification does.
  cache.Remember("alice", "pw", kHash, 1, kTtl, 10);
  clock.t += kTtl / 2;
  EXPECT_TRUE(cache.Verified("alice", "pw", kHash, 1, kTtl));
  clock.t += kTtl / 2;
  EXPECT_FALSE(cache.Verified("alice", "pw", kHash, 1, kTtl));
}

TEST(CredentialsCache, TtlZeroDisablesIt) {
  FakeClock clock;
  CredentialsCache cache(clock.fn());
  cache.Remember("alice", "pw", kHash, 1, milliseconds(0), 10);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_FALSE(cache.Verified("alice", "pw", kHash, 1, milliseconds(0)));
  cache.Remember("alice", "pw", kHash, 1, kTtl, 10);
  EXPECT_FALSE(cache.Verified("alice", "pw", kHash, 1, milliseconds(0))) << "turned off later: no hits";
}

TEST(CredentialsCache, BoundedLeastRecentlyVerifiedGoesFirst) {
  FakeClock clock;
  CredentialsCache cache(clock.fn());
  for (int i = 0; i < 5; ++i) cache.Remember("u" + std::to_string(i), "pw", kHash, 1, kTtl, 3);
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_FALSE(cache.Verified("u0", "pw", kHash, 1, kTtl));
  EXPECT_FALSE(cache.Verified("u1", "pw", kHash, 1, kTtl));
  for (int i = 2; i < 5; ++i) EXPECT_TRUE(cache.Verified("u" + std::to_string(i), "pw", kHash, 1, kTtl)) << i;
  cache.Remember("u2", "pw", kHash, 1, kTtl, 3);  // verified again: now the newest
  cache.Remember("u5", "pw", kHash, 1, kTtl, 3);
  EXPECT_TRUE(cache.Verified("u2", "pw", kHash, 1, kTtl));
  EXPECT_FALSE(cache.Verified("u3", "pw", kHash, 1, kTtl));
  EXPECT_EQ(cache.size(), 3u);
}

}  // namespace
}  // namespace holdfast
