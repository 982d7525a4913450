// The mbox parser's rules (src/migrate/mbox_reader.h, docs/migration.md),
// byte for byte. Every case is parsed whole and cut into 1-, 2-, 3- and
// 7-byte pieces: the result must not depend on how the file is read.
#include "migrate/mbox_reader.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fs/sim_fs.h"

namespace holdfast {
namespace {

struct Parsed {
  struct Message {
    uint64_t offset;
    std::string from_line, sender, content;
    bool operator==(const Message&) const = default;
  };
  std::vector<Message> messages;
  bool ended = true;  // every started message was ended
  Status status;
};

class CollectSink : public MboxParser::Sink {
 public:
  explicit CollectSink(Parsed* out) : out_(out) {}
  Status OnMessageStart(const MboxEnvelope& e) override {
    EXPECT_TRUE(out_->ended) << "message started inside another";
    out_->ended = false;
    out_->messages.push_back({e.offset, e.from_line, e.sender, ""});
    return Status::Ok();
  }
  Status OnMessageData(std::string_view piece) override {
    EXPECT_FALSE(out_->ended) << "data outside a message";
    EXPECT_FALSE(piece.empty());
    out_->messages.back().content.append(piece);
    return Status::Ok();
  }
  Status OnMessageEnd() override {
    EXPECT_FALSE(out_->ended);
    out_->ended = true;
    return Status::Ok();
  }

 private:
  Parsed* out_;
};

Parsed ParseInChunks(std::string_view input, MboxFormat format, size_t chunk) {
  Parsed out;
  CollectSink sink(&out);
  MboxParser parser(format, sink);
  for (size_t i = 0; i < input.size() && out.status.ok(); i += chunk) {
    out.status = parser.Feed(input.substr(i, chunk));
  }
  if (out.status.ok()) out.status = parser.Finish();
  return out;
}

Parsed Parse(std::string_view input, MboxFormat format = MboxFormat::kMboxrd) {
  Parsed whole = ParseInChunks(input, format, std::max<size_t>(input.size(), 1));
  for (size_t chunk : {1, 2, 3, 7}) {
    Parsed cut = ParseInChunks(input, format, chunk);
    EXPECT_EQ(cut.status.kind(), whole.status.kind()) << "chunk " << chunk;
    EXPECT_TRUE(cut.messages == whole.messages) << "chunk " << chunk << " parses differently";
  }
  if (whole.status.ok()) {
    EXPECT_TRUE(whole.ended);
  }
  return whole;
}

std::vector<std::string> Contents(const Parsed& p) {
  std::vector<std::string> out;
  for (const auto& m : p.messages) out.push_back(m.content);
  return out;
}

using V = std::vector<std::string>;

TEST(MboxReader, TwoMessagesAndTheirEnvelopes) {
  const std::string a = "From alice@example.org Mon Jan  1 00:00:00 2024\n";
  const std::string b = "From bob@example.org  Tue Jan  2 00:00:00 2024\n";
  Parsed p = Parse(a + "Subject: 1\n\nbody 1\n\n" + b + "Subject: 2\n\nbody 2\n\n");
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  EXPECT_EQ(Contents(p), (V{"Subject: 1\n\nbody 1\n", "Subject: 2\n\nbody 2\n"}));
  EXPECT_EQ(p.messages[0].offset, 0u);
  EXPECT_EQ(p.messages[1].offset, a.size() + 20);
  EXPECT_EQ(p.messages[0].from_line, "From alice@example.org Mon Jan  1 00:00:00 2024");
  EXPECT_EQ(p.messages[0].sender, "alice@example.org");
  EXPECT_EQ(p.messages[1].sender, "bob@example.org");
}

TEST(MboxReader, FromInsideABodyIsText) {
  // Not after an empty line: body text, not a new message (and not un-quoted).
  Parsed p = Parse("From a\nSubject: x\n\nhello\nFrom the start, I said\nbye\n");
  ASSERT_TRUE(p.status.ok());
  EXPECT_EQ(Contents(p), (V{"Subject: x\n\nhello\nFrom the start, I said\nbye\n"}));
  // Right after the envelope line too.
  p = Parse("From a\nFrom b\nX: y\n");
  EXPECT_EQ(Contents(p), (V{"From b\nX: y\n"}));
}

TEST(MboxReader, FromAfterAnEmptyLineAlwaysStartsAMessage) {
  // The mbox rule, even where a writer forgot to quote: the text is split.
  Parsed p = Parse("From a\nX: 1\n\nFrom here on, body\n");
  EXPECT_EQ(Contents(p), (V{"X: 1\n", ""}));
  ASSERT_EQ(p.messages.size(), 2u);
  EXPECT_EQ(p.messages[1].from_line, "From here on, body");
  EXPECT_EQ(p.messages[1].sender, "here");
  // "From" without the space is text.
  p = Parse("From a\nX: 1\n\nFromage\n");
  EXPECT_EQ(Contents(p), (V{"X: 1\n\nFromage\n"}));
}

TEST(MboxReader, MboxrdUnquotesOneLevel) {
  const std::string body = ">From x\n>>From y\n>>>From z\n> From not\n>Fromage\n>\n>>\nend >From\n";
  Parsed p = Parse("From a\nS: q\n\n" + body + "\n>From after an empty line\n");
  ASSERT_TRUE(p.status.ok());
  EXPECT_EQ(Contents(p), (V{"S: q\n\nFrom x\n>From y\n>>From z\n> From not\n>Fromage\n>\n>>\nend >From\n"
                            "\nFrom after an empty line\n"}));
  // Only ">From " with its space: a quoted-looking "From:" header stays.
  p = Parse("From a\n>From: not quoted\n>From quoted\n\nb\n");
  EXPECT_EQ(Contents(p), (V{">From: not quoted\nFrom quoted\n\nb\n"}));
}

TEST(MboxReader, MboxoKeepsQuotes) {
  const std::string body = "S: q\n\n>From x\n>>From y\n\n>From z\n";
  Parsed p = Parse("From a\n" + body, MboxFormat::kMboxo);
  EXPECT_EQ(Contents(p), (V{body}));
}

TEST(MboxReader, ManyQuotes) {
  const std::string q(5000, '>');
  Parsed p = Parse("From a\n" + q + "From x\n" + q + "\n");
  EXPECT_EQ(Contents(p), (V{q.substr(1) + "From x\n" + q + "\n"}));
  p = Parse("From a\n" + q + "From x\n", MboxFormat::kMboxo);
  EXPECT_EQ(Contents(p), (V{q + "From x\n"}));
}

TEST(MboxReader, MissingFinalNewline) {
  Parsed p = Parse("From a\nSubject: x\n\nlast line");
  EXPECT_EQ(Contents(p), (V{"Subject: x\n\nlast line"}));
  // Unfinished line starts of every kind at the very end are text.
  EXPECT_EQ(Contents(Parse("From a\nX\n>")), (V{"X\n>"}));
  EXPECT_EQ(Contents(Parse("From a\nX\n>Fro")), (V{"X\n>Fro"}));
  EXPECT_EQ(Contents(Parse("From a\nX\n\nFrom")), (V{"X\n\nFrom"}));
  EXPECT_EQ(Contents(Parse("From a\nX\n\r")), (V{"X\n\r"}));
}

TEST(MboxReader, CrlfFile) {
  Parsed p = Parse("From a b\r\nSubject: x\r\n\r\nbody\r\n>From q\r\n\r\nFrom c d\r\nS: y\r\n\r\nb2\r\n\r\n");
  ASSERT_TRUE(p.status.ok());
  EXPECT_EQ(Contents(p), (V{"Subject: x\r\n\r\nbody\r\nFrom q\r\n", "S: y\r\n\r\nb2\r\n"}));
  EXPECT_EQ(p.messages[0].from_line, "From a b");
  EXPECT_EQ(p.messages[1].from_line, "From c d");
  EXPECT_EQ(p.messages[1].sender, "c");
  // A lone CR is not a line end and not an empty line.
  p = Parse("From a\nX\n\rFrom b\nY\r\rZ\n");
  EXPECT_EQ(Contents(p), (V{"X\n\rFrom b\nY\r\rZ\n"}));
}

TEST(MboxReader, EmptyAndBlankFiles) {
  Parsed p = Parse("");
  EXPECT_TRUE(p.status.ok());
  EXPECT_TRUE(p.messages.empty());
  p = Parse("\n\r\n\n");
  EXPECT_TRUE(p.status.ok());
  EXPECT_TRUE(p.messages.empty());
}

TEST(MboxReader, TextBeforeTheFirstFromLineIsNotAnMbox) {
  for (std::string input : {"Subject: not an mbox\n\nhello\n", "Subject: x\n\nFrom a\nX\n", "garbage",
                            " From a\nX\n", ">From a\nX\n", "\r", "\n\nhello\n\nFrom a\nX\n"}) {
    Parsed p = Parse(input);
    EXPECT_EQ(p.status.kind(), Status::Kind::kInvalid) << input;
    EXPECT_TRUE(p.messages.empty()) << input;
  }
  Parsed p = Parse("\n\nhello\n");
  EXPECT_NE(p.status.message().find("offset 2"), std::string::npos) << p.status.message();
}

TEST(MboxReader, LeadingEmptyLinesAreIgnored) {
  Parsed p = Parse("\n\r\n\nFrom a\nX\n");
  ASSERT_TRUE(p.status.ok());
  EXPECT_EQ(Contents(p), (V{"X\n"}));
  EXPECT_EQ(p.messages[0].offset, 4u);
}

TEST(MboxReader, OnlyTheLastEmptyLineSeparates) {
  Parsed p = Parse("From a\nX\n\n\n\nFrom b\nY\n\n\n");
  EXPECT_EQ(Contents(p), (V{"X\n\n\n", "Y\n\n"}));
  // No separator at the end: nothing is taken off.
  p = Parse("From a\nX\n\nFrom b\nY\n");
  EXPECT_EQ(Contents(p), (V{"X\n", "Y\n"}));
  p = Parse("From a\r\nX\r\n\n\r\nFrom b\r\nY\r\n");
  EXPECT_EQ(Contents(p), (V{"X\r\n\n", "Y\r\n"}));
}

TEST(MboxReader, EmptyMessages) {
  Parsed p = Parse("From a\n\nFrom b\nY\n");
  EXPECT_EQ(Contents(p), (V{"", "Y\n"}));
  p = Parse("From a");  // an envelope line at the end, no newline
  ASSERT_EQ(p.messages.size(), 1u);
  EXPECT_EQ(p.messages[0].from_line, "From a");
  EXPECT_EQ(p.messages[0].content, "");
  p = Parse("From \n");
  ASSERT_EQ(p.messages.size(), 1u);
  EXPECT_EQ(p.messages[0].sender, "");
}

TEST(MboxReader, LongEnvelopeLineIsCut) {
  const std::string tail(5000, 'x');
  Parsed p = Parse("From " + tail + "\r\nX\n");
  ASSERT_EQ(p.messages.size(), 1u);
  EXPECT_EQ(p.messages[0].from_line, ("From " + tail).substr(0, MboxParser::kMaxFromLine));
  EXPECT_EQ(p.messages[0].content, "X\n");
  // Exactly at the cap, with CRLF: the CR is not part of the line.
  const std::string exact = "From " + std::string(MboxParser::kMaxFromLine - 5, 'y');
  p = Parse(exact + "\r\nX\n");
  EXPECT_EQ(p.messages[0].from_line, exact);
}

TEST(MboxReader, BinaryBytesAreKept) {
  std::string body;
  for (int c = 0; c < 256; ++c) body += static_cast<char>(c);
  body += "\n";
  Parsed p = Parse("From a\n" + body);
  EXPECT_EQ(Contents(p), (V{body}));
}

TEST(MboxReader, SinkErrorStopsTheParse) {
  class Failing : public MboxParser::Sink {
   public:
    Status OnMessageStart(const MboxEnvelope&) override { return Status::Ok(); }
    Status OnMessageData(std::string_view) override { return Status::Io("disk full"); }
    Status OnMessageEnd() override { return Status::Ok(); }
  } sink;
  MboxParser parser(MboxFormat::kMboxrd, sink);
  EXPECT_EQ(parser.Feed("From a\nX\n").kind(), Status::Kind::kIo);
  EXPECT_EQ(parser.Feed("more\n").kind(), Status::Kind::kIo);
  EXPECT_EQ(parser.Finish().kind(), Status::Kind::kIo);
}

TEST(MboxReader, ReadMboxReadsInChunks) {
  SimFs fs;
  std::string mbox;
  for (int i = 0; i < 50; ++i) {
    mbox += "From sender" + std::to_string(i) + " Mon Jan  1 00:00:00 2024\nSubject: " + std::to_string(i) +
            "\n\n>From body\n" + std::string(static_cast<size_t>(i * 37), 'z') + "\n\n";
  }
  {
    auto f = fs.CreateExclusive("/mbox");
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Append(mbox).ok());
  }
  auto f = fs.OpenRead("/mbox");
  ASSERT_TRUE(f.ok());
  Parsed out;
  CollectSink sink(&out);
  MboxParser parser(MboxFormat::kMboxrd, sink);
  std::vector<uint64_t> progress;
  ASSERT_TRUE(ReadMbox(**f, mbox.size(), parser, 100, [&](uint64_t d) { progress.push_back(d); }).ok());
  EXPECT_TRUE(out.messages == Parse(mbox).messages);
  ASSERT_EQ(out.messages.size(), 50u);
  EXPECT_EQ(out.messages[3].content, "Subject: 3\n\nFrom body\n" + std::string(111, 'z') + "\n");
  EXPECT_EQ(progress.size(), (mbox.size() + 99) / 100);
  EXPECT_EQ(progress.back(), mbox.size());
  // Only the first `size` bytes are read (a file that grows while read).
  Parsed part;
  CollectSink sink2(&part);
  MboxParser parser2(MboxFormat::kMboxrd, sink2);
  ASSERT_TRUE(ReadMbox(**f, out.messages[1].offset, parser2, 64).ok());
  ASSERT_EQ(part.messages.size(), 1u);
  EXPECT_EQ(part.messages[0].content, out.messages[0].content);
}

}  // namespace
}  // namespace holdfast
