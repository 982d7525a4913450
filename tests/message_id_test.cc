#include "core/message_id.h"

#include <gtest/gtest.h>

#include <set>

namespace holdfast {
namespace {

TEST(MessageId, TextRoundTripAndFileNameSafe) {
  for (int i = 0; i < 1000; ++i) {
    MessageId id = MessageId::Generate();
    std::string s = id.ToString();
    ASSERT_EQ(s.size(), MessageId::kTextLength);
    for (char c : s) ASSERT_TRUE(std::isdigit(static_cast<unsigned char>(c)) || std::isupper(static_cast<unsigned char>(c))) << s;
    auto back = MessageId::Parse(s);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, id);
  }
}

TEST(MessageId, StrictlyIncreasingWithinAProcess) {
  MessageId prev = MessageId::Generate();
  std::set<MessageId> all{prev};
  for (int i = 0; i < 100000; ++i) {
    MessageId next = MessageId::Generate();
    ASSERT_LT(prev, next);
    ASSERT_LT(prev.ToString(), next.ToString()) << "text form must sort like the id";
    prev = next;
    all.insert(next);
  }
  EXPECT_EQ(all.size(), 100001u);
}

TEST(MessageId, CarriesTheClock) {
  auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch()).count();
  MessageId id = MessageId::Generate();
  EXPECT_LE(std::llabs(static_cast<long long>(id.UnixMillis()) - now), 5000);
}

TEST(MessageId, ParseRejectsGarbage) {
  EXPECT_FALSE(MessageId::Parse(""));
  EXPECT_FALSE(MessageId::Parse("01M845RYDAKYA30M30Y4RZV0F"));    // 25 chars
  EXPECT_FALSE(MessageId::Parse("01M845RYDAKYA30M30Y4RZV0F!"));   // bad char
  EXPECT_FALSE(MessageId::Parse("81M845RYDAKYA30M30Y4RZV0FQ"));   // > 128 bits
  EXPECT_TRUE(MessageId::Parse("01m845rydakya30m30y4rzv0fq"));    // case-insensitive
}

TEST(MessageId, ForeignNamesAreStableAndDistinct) {
  EXPECT_EQ(MessageId::ForForeignName("1700000000.M1P2.host"), MessageId::ForForeignName("1700000000.M1P2.host"));
  EXPECT_NE(MessageId::ForForeignName("1700000000.M1P2.host"), MessageId::ForForeignName("1700000000.M1P3.host"));
}

}  // namespace
}  // namespace holdfast
