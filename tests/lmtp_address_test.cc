#include "lmtp/address.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace holdfast::lmtp {
namespace {

const std::vector<std::string> kLocal = {"example.org", "Mail.Example.NET"};

std::string PathError(std::string_view in) {
  auto r = ParsePath(in);
  EXPECT_FALSE(r.ok()) << in;
  return r.ok() ? "" : r.status().message();
}

TEST(LmtpAddress, ParsePathAcceptsCommonForms) {
  for (std::string_view ok : {"alice@example.org", "Alice.Smith@Example.ORG", "a+tag@x.y", "postmaster",
                              "a@[192.0.2.1]", "o'brien@x_y.example", "\"quoted\"@example.org",
                              "\"a>b\"@example.org", "x!#$%&'*+-/=?^_`{|}~@h"}) {
    auto r = ParsePath(ok);
    ASSERT_TRUE(r.ok()) << ok << ": " << r.status().ToString();
    EXPECT_EQ(*r, ok) << "case and form are kept";
  }
  auto null = ParsePath("");
  ASSERT_TRUE(null.ok());
  EXPECT_EQ(*null, "");
}

TEST(LmtpAddress, ParsePathStripsSourceRoutes) {
  auto r = ParsePath("@relay.example,@b.example:bob@example.org");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, "bob@example.org");
  EXPECT_FALSE(ParsePath("@relay.example").ok());
  EXPECT_FALSE(ParsePath("@relay.example:").ok());
  EXPECT_FALSE(ParsePath("@a,:bob@x").ok());
  EXPECT_FALSE(ParsePath("@a,b:bob@x").ok());
}

TEST(LmtpAddress, ParsePathRejects) {
  EXPECT_EQ(PathError("a b@example.org"), "address contains a space");
  EXPECT_EQ(PathError("\"a b\"@example.org"), "address contains a space");
  EXPECT_EQ(PathError(std::string("a\0b@x", 5)), "address contains control byte 0x00");
  EXPECT_EQ(PathError("a\tb@x"), "address contains control byte 0x09");
  EXPECT_EQ(PathError("j\xc3\xb6rg@x"), "address contains non-ASCII byte 0xc3");
  EXPECT_EQ(PathError("@x"), "source route without ':'");
  EXPECT_EQ(PathError("alice@"), "empty domain");
  EXPECT_EQ(PathError("@x:@y"), "empty local part");
  EXPECT_EQ(PathError("alice@a..b"), "empty label in domain");
  EXPECT_EQ(PathError("alice@a/b"), "domain contains '/'");
  EXPECT_EQ(PathError("a<b@x"), "local part contains '<'");
  EXPECT_EQ(PathError("\"open@x"), "unterminated quoted local part");
  EXPECT_EQ(PathError("\"q\"x@y"), "text after quoted local part");
  EXPECT_EQ(PathError("a@[1.2"), "malformed address literal");
}

TEST(LmtpAddress, ParsePathLength) {
  // RFC 5321: the path is at most 256 bytes with its angle brackets.
  std::string ok = std::string(64, 'a') + "@" + std::string(189, 'b');
  ASSERT_EQ(ok.size(), 254u);
  EXPECT_TRUE(ParsePath(ok).ok());
  EXPECT_EQ(PathError(ok + "b"), "address is longer than 254 bytes");
}

TEST(LmtpAddress, LocalDomainMapsToLocalPart) {
  auto t = MapAddressToUser("Alice@Example.ORG", kLocal);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->user, "alice");
  EXPECT_EQ(t->detail, "");
  t = MapAddressToUser("bob@mail.example.net", kLocal);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->user, "bob");
}

TEST(LmtpAddress, OtherDomainMapsToWholeAddress) {
  auto t = MapAddressToUser("Carol@Other.Example", kLocal);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->user, "carol@other.example");
  t = MapAddressToUser("carol@other.example", {});
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->user, "carol@other.example");
  t = MapAddressToUser("postmaster", kLocal);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->user, "postmaster");
}

TEST(LmtpAddress, PlusDetail) {
  auto t = MapAddressToUser("Alice+Lists@example.org", kLocal);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->user, "alice");
  EXPECT_EQ(t->detail, "Lists") << "the detail keeps its case";
  t = MapAddressToUser("alice+a+b@example.org", kLocal);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->user, "alice");
  EXPECT_EQ(t->detail, "a+b") << "split at the first '+'";
  t = MapAddressToUser("carol+x@other.example", kLocal);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->user, "carol@other.example");
  EXPECT_EQ(t->detail, "x");
  t = MapAddressToUser("alice+@example.org", kLocal);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->user, "alice");
  EXPECT_EQ(t->detail, "");
  // Nothing before '+': not a detail; the name then fails UserName::Parse.
  t = MapAddressToUser("+tag@example.org", kLocal);
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->user, "+tag");
  EXPECT_EQ(t->detail, "");
}

TEST(LmtpAddress, Unmappable) {
  EXPECT_FALSE(MapAddressToUser("", kLocal).has_value());
  EXPECT_FALSE(MapAddressToUser("\"a b\"@example.org", kLocal).has_value());
  EXPECT_FALSE(MapAddressToUser("\"alice\"@example.org", kLocal).has_value());
  EXPECT_FALSE(MapAddressToUser("@example.org", kLocal).has_value());
  EXPECT_FALSE(MapAddressToUser("alice@", kLocal).has_value());
}

}  // namespace
}  // namespace holdfast::lmtp
