// The daemon <-> worker pipe protocol: round trips, and what the daemon keeps
// of a worker's output that stops or goes bad half-way.
#include "filter/protocol.h"

#include <gtest/gtest.h>

#include "util/record_log.h"

namespace holdfast {
namespace {

FilterInput Input(int i) {
  FilterInput in;
  in.id = MessageId::Generate();
  in.client = "192.0.2." + std::to_string(i);
  in.helo = "mx.example.org";
  in.mail_from = "sender" + std::to_string(i) + "@example.org";
  in.rcpts = {"a@example.org", "b+tag@example.org"};
  in.body = "Subject: " + std::to_string(i) + "\r\n\r\nbody\0with nul\r\n";
  in.body += std::string(1, '\0');
  return in;
}

Verdict Deliver(const std::string& folder, const std::string& body) {
  Verdict v;
  v.folder = folder;
  v.rewritten = !body.empty();
  v.body = body;
  v.trail = "scanner: deliver";
  return v;
}

Verdict Of(Verdict::Kind k, const std::string& reason) {
  Verdict v;
  v.kind = k;
  v.reason = reason;
  v.trail = reason;
  return v;
}

TEST(FilterProtocolTest, InputsRoundTrip) {
  std::vector<FilterInput> ins = {Input(1), Input(2), FilterInput{}};
  std::string bytes;
  for (const auto& in : ins) bytes += EncodeFilterInput(in);
  auto out = DecodeFilterInputs(bytes);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->size(), 3u);
  for (size_t i = 0; i < ins.size(); ++i) {
    EXPECT_EQ((*out)[i].id, ins[i].id);
    EXPECT_EQ((*out)[i].client, ins[i].client);
    EXPECT_EQ((*out)[i].helo, ins[i].helo);
    EXPECT_EQ((*out)[i].mail_from, ins[i].mail_from);
    EXPECT_EQ((*out)[i].rcpts, ins[i].rcpts);
    EXPECT_EQ((*out)[i].body, ins[i].body);
  }
  auto empty = DecodeFilterInputs("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(FilterProtocolTest, DamagedInputIsCorrupt) {
  std::string bytes = EncodeFilterInput(Input(1)) + EncodeFilterInput(Input(2));
  for (size_t cut : {size_t{1}, size_t{20}, bytes.size() / 2 + 7, bytes.size() - 1}) {
    auto r = DecodeFilterInputs(std::string_view(bytes).substr(0, cut));
    ASSERT_FALSE(r.ok()) << cut;
    EXPECT_EQ(r.status().kind(), Status::Kind::kCorrupt);
  }
  std::string flipped = bytes;
  flipped[40] ^= 1;
  EXPECT_FALSE(DecodeFilterInputs(flipped).ok());
  // Good frames of the wrong type, or with a payload that does not decode.
  EXPECT_FALSE(DecodeFilterInputs(EncodeVerdict(0, Verdict{})).ok());
  EXPECT_FALSE(DecodeFilterInputs(EncodeRecord(kFilterInputRecord, "\x01short")).ok());
  // An envelope field over the bound.
  FilterInput big = Input(3);
  big.helo = std::string(kMaxEnvelopeField + 1, 'h');
  EXPECT_FALSE(DecodeFilterInputs(EncodeFilterInput(big)).ok());
  big.helo = std::string(kMaxEnvelopeField, 'h');
  EXPECT_TRUE(DecodeFilterInputs(EncodeFilterInput(big)).ok());
}

TEST(FilterProtocolTest, VerdictsRoundTrip) {
  std::vector<Verdict> vs = {Deliver("", ""), Deliver("Junk", "X-Spam: Yes\r\n\r\nbody"),
                             Of(Verdict::Kind::kQuarantine, "scanner: quarantine virus"),
                             Of(Verdict::Kind::kDiscard, "scanner: discard bounce"),
                             Of(Verdict::Kind::kTempFail, "rspamd: unavailable"),
                             Of(Verdict::Kind::kFailed, "scanner: signal 11 (SIGSEGV)")};
  std::string bytes;
  for (uint32_t i = 0; i < vs.size(); ++i) bytes += EncodeVerdict(i, vs[i]);
  VerdictStream s = DecodeVerdicts(bytes, vs.size());
  EXPECT_TRUE(s.complete) << s.error;
  EXPECT_EQ(s.error, "");
  ASSERT_EQ(s.verdicts.size(), vs.size());
  for (size_t i = 0; i < vs.size(); ++i) {
    EXPECT_EQ(s.verdicts[i].kind, vs[i].kind);
    EXPECT_EQ(s.verdicts[i].folder, vs[i].folder);
    EXPECT_EQ(s.verdicts[i].rewritten, vs[i].rewritten);
    EXPECT_EQ(s.verdicts[i].body, vs[i].body);
    EXPECT_EQ(s.verdicts[i].reason, vs[i].reason);
    EXPECT_EQ(s.verdicts[i].trail, vs[i].trail);
  }
}

TEST(FilterProtocolTest, PrefixOfAWorkerThatDied) {
  std::string bytes = EncodeVerdict(0, Deliver("", "")) + EncodeVerdict(1, Deliver("Junk", ""));
  std::string third = EncodeVerdict(2, Deliver("", ""));

  VerdictStream missing = DecodeVerdicts(bytes, 3);
  EXPECT_FALSE(missing.complete);
  EXPECT_EQ(missing.verdicts.size(), 2u);
  EXPECT_EQ(missing.error, "only 2 of 3 verdicts");

  VerdictStream torn = DecodeVerdicts(bytes + third.substr(0, 10), 3);
  EXPECT_FALSE(torn.complete);
  EXPECT_EQ(torn.verdicts.size(), 2u);
  EXPECT_NE(torn.error.find("cut short after 2 of 3"), std::string::npos) << torn.error;

  VerdictStream junk = DecodeVerdicts(bytes + "Segmentation fault (core dumped)\n" + third, 3);
  EXPECT_FALSE(junk.complete);
  EXPECT_EQ(junk.verdicts.size(), 2u);
  EXPECT_EQ(junk.verdicts[1].folder, "Junk");
  EXPECT_FALSE(junk.error.empty());

  VerdictStream nothing = DecodeVerdicts("", 2);
  EXPECT_FALSE(nothing.complete);
  EXPECT_TRUE(nothing.verdicts.empty());
  EXPECT_TRUE(DecodeVerdicts("", 0).complete);
}

TEST(FilterProtocolTest, OutOfOrderExtraOrMalformedVerdicts) {
  std::string v0 = EncodeVerdict(0, Deliver("", ""));
  VerdictStream skipped = DecodeVerdicts(v0 + EncodeVerdict(2, Deliver("", "")), 3);
  EXPECT_EQ(skipped.verdicts.size(), 1u);
  EXPECT_FALSE(skipped.complete);
  EXPECT_NE(skipped.error.find("message 2 where 1 was due"), std::string::npos) << skipped.error;

  VerdictStream extra = DecodeVerdicts(v0 + EncodeVerdict(1, Deliver("", "")), 1);
  EXPECT_EQ(extra.verdicts.size(), 1u);
  EXPECT_FALSE(extra.complete);

  VerdictStream wrong_type = DecodeVerdicts(v0 + EncodeFilterInput(Input(1)), 2);
  EXPECT_EQ(wrong_type.verdicts.size(), 1u);
  EXPECT_FALSE(wrong_type.complete);

  // A kind past kFailed.
  Encoder bad;
  bad.U8(1).U32(1).U8(9).Str("").U8(0).Str("").Str("").Str("");
  VerdictStream kind = DecodeVerdicts(v0 + EncodeRecord(kVerdictRecord, bad.data()), 2);
  EXPECT_EQ(kind.verdicts.size(), 1u);
  EXPECT_NE(kind.error.find("kind"), std::string::npos) << kind.error;

  // A quarantine that carries a folder makes no sense.
  Encoder folder;
  folder.U8(1).U32(1).U8(1).Str("Junk").U8(0).Str("").Str("r").Str("t");
  EXPECT_EQ(DecodeVerdicts(v0 + EncodeRecord(kVerdictRecord, folder.data()), 2).verdicts.size(), 1u);
  // A body without the rewritten flag, and trailing bytes.
  Encoder body;
  body.U8(1).U32(1).U8(0).Str("").U8(0).Str("body").Str("").Str("");
  EXPECT_EQ(DecodeVerdicts(v0 + EncodeRecord(kVerdictRecord, body.data()), 2).verdicts.size(), 1u);
  Encoder trailing;
  trailing.U8(1).U32(1).U8(0).Str("").U8(0).Str("").Str("").Str("").U8(0);
  EXPECT_EQ(DecodeVerdicts(v0 + EncodeRecord(kVerdictRecord, trailing.data()), 2).verdicts.size(), 1u);
}

TEST(FilterProtocolTest, EncoderKeepsVerdictsDecodable) {
  // A huge stderr excerpt in a reason is cut, not turned into a corrupt frame.
  Verdict v = Of(Verdict::Kind::kFailed, std::string(100000, 'r'));
  v.folder = "ignored";  // only deliveries carry a folder
  VerdictStream s = DecodeVerdicts(EncodeVerdict(0, v), 1);
  ASSERT_TRUE(s.complete) << s.error;
  EXPECT_EQ(s.verdicts[0].reason.size(), kMaxVerdictText);
  EXPECT_EQ(s.verdicts[0].folder, "");
}

TEST(FilterProtocolTest, KindNames) {
  EXPECT_STREQ(VerdictKindName(Verdict::Kind::kDeliver), "deliver");
  EXPECT_STREQ(VerdictKindName(Verdict::Kind::kQuarantine), "quarantine");
  EXPECT_STREQ(VerdictKindName(Verdict::Kind::kDiscard), "discard");
  EXPECT_STREQ(VerdictKindName(Verdict::Kind::kTempFail), "tempfail");
  EXPECT_STREQ(VerdictKindName(Verdict::Kind::kFailed), "failed");
}

}  // namespace
}  // namespace holdfast
