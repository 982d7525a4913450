// UsersCache sees every change UsersFile makes, and nothing else changes it.
#include "users/users_cache.h"

#include <gtest/gtest.h>

#include "fs/sim_fs.h"

namespace holdfast {
namespace {

UserName Name(const std::string& s) { return UserName::Parse(s).value(); }

TEST(UsersCache, FollowsTheFileThroughEveryRewrite) {
  SimFs fs;
  ASSERT_TRUE(fs.EnsureDir("/data").ok());
  UsersCache cache(fs, "/data");
  UsersFile file(fs, "/data");
  auto none = cache.Find(Name("alice"));  // no file yet: nobody
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  ASSERT_TRUE(file.Add(Name("alice"), "{CRYPT}$y$a").ok());
  auto a = cache.Find(Name("Alice"));  // names fold to lowercase
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->password_hash, "{CRYPT}$y$a");

  ASSERT_TRUE(file.Add(Name("bob"), "{CRYPT}$y$b").ok());
  ASSERT_TRUE(file.SetPassword(Name("alice"), "{CRYPT}$y$a2").ok());
  auto b = cache.Find(Name("bob"));
  ASSERT_TRUE(b.ok() && b->has_value());
  a = cache.Find(Name("alice"));
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->password_hash, "{CRYPT}$y$a2");

  ASSERT_TRUE(file.Remove(Name("alice")).ok());
  a = cache.Find(Name("alice"));
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(a->has_value());
}

TEST(UsersCache, AnUnreadableFileIsAnErrorNotAnEmptyList) {
  SimFs fs;
  ASSERT_TRUE(fs.EnsureDir("/data").ok());
  auto f = fs.CreateExclusive(UsersFile(fs, "/data").path());
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("no colon here\n").ok());
  UsersCache cache(fs, "/data");
  EXPECT_FALSE(cache.Find(Name("alice")).ok());
}

}  // namespace
}  // namespace holdfast
