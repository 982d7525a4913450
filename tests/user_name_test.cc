#include "users/user_name.h"

#include <gtest/gtest.h>

#include <string>

namespace holdfast {
namespace {

std::string ErrorOf(std::string_view raw) {
  auto r = UserName::Parse(raw);
  EXPECT_FALSE(r.ok()) << raw;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().kind(), Status::Kind::kInvalid);
  return r.status().message();
}

TEST(UserNameTest, AcceptsAndFoldsToLowercase) {
  for (std::string_view ok : {"alice", "a", "0", "bob.smith", "bob_smith", "bob-smith", "bob@example.org",
                              "a.b.c", "9lives"}) {
    auto r = UserName::Parse(ok);
    ASSERT_TRUE(r.ok()) << ok << ": " << r.status().ToString();
    EXPECT_EQ(r->str(), ok);
  }
  auto r = UserName::Parse("Alice@Example.ORG");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->str(), "alice@example.org");
}

TEST(UserNameTest, Length) {
  EXPECT_TRUE(UserName::Parse(std::string(128, 'a')).ok());
  EXPECT_NE(ErrorOf(std::string(129, 'a')).find("128"), std::string::npos);
  EXPECT_NE(ErrorOf("").find("empty"), std::string::npos);
}

TEST(UserNameTest, RejectsPathAndFormatBreakers) {
  EXPECT_EQ(ErrorOf("a/b"), "user name contains '/'");
  EXPECT_EQ(ErrorOf("a\\b"), "user name contains '\\'");
  EXPECT_EQ(ErrorOf("a:b"), "user name contains ':'");
  EXPECT_EQ(ErrorOf(std::string("a\0b", 3)), "user name contains a NUL byte");
  EXPECT_EQ(ErrorOf("a b"), "user name contains a space");
  EXPECT_EQ(ErrorOf("a\nb"), "user name contains a line feed");
  EXPECT_EQ(ErrorOf("a\x01" "b"), "user name contains control byte 0x01");
  EXPECT_EQ(ErrorOf("a\x7f"), "user name contains control byte 0x7f");
  EXPECT_EQ(ErrorOf("j\xc3\xb6rg"), "user name contains non-ASCII byte 0xc3");
  EXPECT_NE(ErrorOf("a+tag").find("'+'"), std::string::npos);
  EXPECT_EQ(ErrorOf("a..b"), "user name contains '..'");
  EXPECT_EQ(ErrorOf(".."), "user name must start with a letter or digit");
  EXPECT_EQ(ErrorOf("."), "user name must start with a letter or digit");
  EXPECT_EQ(ErrorOf(".hidden"), "user name must start with a letter or digit");
  EXPECT_EQ(ErrorOf("-opt"), "user name must start with a letter or digit");
  EXPECT_EQ(ErrorOf("@x"), "user name must start with a letter or digit");
  EXPECT_EQ(ErrorOf("_x"), "user name must start with a letter or digit");
  EXPECT_EQ(ErrorOf("a#b"), "user name contains '#'");
}

TEST(UserNameTest, EveryByteAloneAndInside) {
  for (int b = 0; b < 256; ++b) {
    char c = static_cast<char>(b);
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                   c == '_' || c == '-' || c == '@';
    auto inside = UserName::Parse(std::string("x") + c + "y");
    EXPECT_EQ(inside.ok(), allowed) << b;
    if (inside.ok()) {
      EXPECT_EQ(inside->str().find('/'), std::string::npos);
    }
  }
}

TEST(UserNameTest, Comparison) {
  auto a = UserName::Parse("alice").value();
  auto a2 = UserName::Parse("ALICE").value();
  auto b = UserName::Parse("bob").value();
  EXPECT_EQ(a, a2);
  EXPECT_NE(a, b);
  EXPECT_LT(a, b);
  EXPECT_GT(b, a);
}

}  // namespace
}  // namespace holdfast
