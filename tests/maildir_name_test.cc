#include "store/maildir_name.h"

#include <gtest/gtest.h>

namespace holdfast {
namespace {

TEST(MaildirName, OwnNameRoundTrip) {
  MessageId id = MessageId::Generate();
  std::string tmp = TmpName(1700000000, id, "mx.example.org");
  std::string name = FinalName(tmp, 1234, 1260, 42) + ":2,FS";
  auto p = ParseMaildirName(name);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->base, FinalName(tmp, 1234, 1260, 42));
  EXPECT_EQ(p->flags, "FS");
  EXPECT_EQ(p->size, 1234u);
  EXPECT_EQ(p->vsize, 1260u);
  EXPECT_EQ(p->uid, 42u);
  ASSERT_TRUE(p->id.has_value());
  EXPECT_EQ(*p->id, id);
  EXPECT_EQ(p->Identity(), id);
}

TEST(MaildirName, ForeignNames) {
  auto p = ParseMaildirName("1700000000.M12345P678.host,S=99,W=101,U=7:2,RS");
  ASSERT_TRUE(p.has_value());
  EXPECT_FALSE(p->id.has_value());
  EXPECT_FALSE(p->uid.has_value()) << "a U= in a foreign name is not trusted";
  EXPECT_EQ(p->size, 99u);
  EXPECT_EQ(p->flags, "RS");
  EXPECT_EQ(p->Identity(), MessageId::ForForeignName("1700000000.M12345P678.host,S=99,W=101,U=7"));
}

TEST(MaildirName, NotMessages) {
  EXPECT_FALSE(ParseMaildirName(""));
  EXPECT_FALSE(ParseMaildirName(".hidden"));
  EXPECT_FALSE(ParseMaildirName(":2,S"));
}

TEST(MaildirName, HostIsSanitised) {
  EXPECT_EQ(SanitizeHostForMaildir("a/b:c,d"), "a\\057b\\072c\\054d");
  EXPECT_EQ(SanitizeHostForMaildir(""), "localhost");
  MessageId id = MessageId::Generate();
  auto p = ParseMaildirName(FinalName(TmpName(1, id, "we:ird/host,x"), 1, 1, 1));
  ASSERT_TRUE(p && p->id);
  EXPECT_EQ(*p->id, id);
  EXPECT_EQ(p->base.find(':'), std::string::npos);
}

}  // namespace
}  // namespace holdfast
