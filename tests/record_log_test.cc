#include "util/record_log.h"

#include <gtest/gtest.h>

#include "util/checksum.h"

namespace holdfast {
namespace {

// The fast path (SSE4.2 where the CPU has it) and the table agree on every
// length and alignment, and when continued from a running value.
TEST(RecordLog, Crc32cFastPathEqualsTable) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data += static_cast<char>((i * 131 + 7) ^ (i >> 3));
  for (size_t off = 0; off < 9; ++off) {
    for (size_t len = 0; off + len <= data.size(); len += (len < 40 ? 1 : 97)) {
      std::string_view v(data.data() + off, len);
      ASSERT_EQ(Crc32c(v), Crc32cPortable(v)) << off << "+" << len;
      ASSERT_EQ(Crc32c(v, 0x12345678u), Crc32cPortable(v, 0x12345678u)) << off << "+" << len;
    }
  }
  EXPECT_EQ(Crc32c(data.substr(500), Crc32c(data.substr(0, 500))), Crc32c(data));
}

TEST(RecordLog, Crc32cKnownValue) {
  // RFC 3720 test vector: 32 bytes of zeros.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32cPortable("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32cPortable(std::string(32, '\0')), 0x8A9136AAu);
}

TEST(RecordLog, RoundTrip) {
  std::string log = EncodeRecord(1, "hello") + EncodeRecord(2, "") + EncodeRecord(3, std::string(1000, 'z'));
  ParsedLog p = ParseRecordLog(log);
  EXPECT_EQ(p.tail, ParsedLog::Tail::kClean);
  ASSERT_EQ(p.records.size(), 3u);
  EXPECT_EQ(p.records[0].payload, "hello");
  EXPECT_EQ(p.records[1].type, 2);
  EXPECT_EQ(p.records[2].payload.size(), 1000u);
  EXPECT_EQ(p.valid_end, log.size());
}

TEST(RecordLog, EveryTornTailIsTorn) {
  std::string good = EncodeRecord(1, "first") + EncodeRecord(2, "second");
  std::string last = EncodeRecord(3, "the record being written when the power went");
  for (size_t cut = 1; cut < last.size(); ++cut) {
    ParsedLog p = ParseRecordLog(good + last.substr(0, cut));
    EXPECT_EQ(p.tail, ParsedLog::Tail::kTorn) << "cut at " << cut;
    EXPECT_EQ(p.records.size(), 2u);
    EXPECT_EQ(p.valid_end, good.size());
  }
  ParsedLog zeros = ParseRecordLog(good + std::string(4096, '\0'));
  EXPECT_EQ(zeros.tail, ParsedLog::Tail::kTorn);
}

TEST(RecordLog, DamageInTheMiddleIsCorruptAndSalvaged) {
  std::string a = EncodeRecord(1, "aaaa"), b = EncodeRecord(2, "bbbb"), c = EncodeRecord(3, "cccc");
  std::string log = a + b + c;
  log[a.size() + kRecordHeaderSize + 1] ^= 0x40;  // flip a bit in b's payload
  ParsedLog p = ParseRecordLog(log);
  EXPECT_EQ(p.tail, ParsedLog::Tail::kCorrupt);
  ASSERT_EQ(p.records.size(), 1u);
  ASSERT_EQ(p.salvaged.size(), 1u);
  EXPECT_EQ(p.salvaged[0].payload, "cccc");
}

TEST(RecordLog, DecoderIsBoundsChecked) {
  Encoder e;
  e.U32(7).Str("abc");
  Decoder d(e.data());
  EXPECT_EQ(d.U32(), 7u);
  EXPECT_EQ(d.Str(), "abc");
  EXPECT_TRUE(d.done());
  Decoder short_input(std::string_view("\x05\x00\x00\x00" "ab", 6));
  (void)short_input.Str();
  EXPECT_FALSE(short_input.ok());
  Decoder too_long(e.data());
  (void)too_long.U32();
  (void)too_long.Str(2);
  EXPECT_FALSE(too_long.ok());
}

}  // namespace
}  // namespace holdfast
