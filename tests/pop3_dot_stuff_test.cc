#include "pop3/dot_stuff.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace holdfast::pop3 {
namespace {

// The network form of `message` fed in `chunks` (sizes; the rest goes last).
std::string Stuff(std::string_view message, const std::vector<size_t>& chunks = {},
                  std::optional<uint64_t> top = std::nullopt) {
  DotStuffer s = top ? DotStuffer::Top(*top) : DotStuffer();
  std::string out;
  for (size_t n : chunks) {
    n = std::min(n, message.size());
    s.Append(message.substr(0, n), &out);
    message.remove_prefix(n);
  }
  s.Append(message, &out);
  s.Finish(&out);
  return out;
}

std::string StuffByteByByte(std::string_view message, std::optional<uint64_t> top = std::nullopt) {
  return Stuff(message, std::vector<size_t>(message.size(), 1), top);
}

// What a client makes of a multi-line response: the lines with the stuffed
// '.' removed and CRLF kept, without the terminator. Fails the test on
// anything a conforming client could not parse.
std::string Unstuff(std::string_view wire) {
  std::string r;
  while (true) {
    size_t end = wire.find("\r\n");
    if (end == std::string_view::npos) {
      ADD_FAILURE() << "no terminator; left: " << wire;
      return r;
    }
    std::string_view line = wire.substr(0, end);
    EXPECT_EQ(line.find('\n'), std::string_view::npos) << "bare LF on the wire";
    wire.remove_prefix(end + 2);
    if (line == ".") break;
    if (line.starts_with(".")) {
      EXPECT_TRUE(line.starts_with("..")) << "unstuffed line starting with '.'";
      line.remove_prefix(1);
    }
    r.append(line);
    r.append("\r\n");
  }
  EXPECT_TRUE(wire.empty()) << "bytes after the terminator";
  return r;
}

// The message as a client sees it: each bare LF as CRLF, and an
// unterminated last line ended.
std::string Normalized(std::string_view message) {
  std::string r;
  for (size_t i = 0; i < message.size(); ++i) {
    if (message[i] == '\n' && (i == 0 || message[i - 1] != '\r')) r.push_back('\r');
    r.push_back(message[i]);
  }
  if (!r.empty() && r.back() != '\n') r.append(r.back() == '\r' ? "\n" : "\r\n");
  return r;
}

TEST(DotStuff, LineEndingsBecomeCrlf) {
  EXPECT_EQ(Stuff("a\nb\n"), "a\r\nb\r\n.\r\n");
  EXPECT_EQ(Stuff("a\r\nb\r\n"), "a\r\nb\r\n.\r\n");
  EXPECT_EQ(Stuff("a\r\nb\nc\r\n"), "a\r\nb\r\nc\r\n.\r\n");
  EXPECT_EQ(Stuff("\n\n"), "\r\n\r\n.\r\n");
  // A CR not before an LF is content, not a line end.
  EXPECT_EQ(Stuff("a\rb\n"), "a\rb\r\n.\r\n");
  EXPECT_EQ(Stuff("a\r\r\n"), "a\r\r\n.\r\n");
}

TEST(DotStuff, LeadingDotsAreDoubled) {
  EXPECT_EQ(Stuff(".\n"), "..\r\n.\r\n") << "a lone '.' must not end the response";
  EXPECT_EQ(Stuff(".\r\n"), "..\r\n.\r\n");
  EXPECT_EQ(Stuff("..x\n.y\r\n"), "...x\r\n..y\r\n.\r\n");
  EXPECT_EQ(Stuff("a.b\n a\n.\n"), "a.b\r\n a\r\n..\r\n.\r\n") << "only at the start of a line";
  EXPECT_EQ(Stuff("."), "..\r\n.\r\n");
  // After a bare CR the line goes on: no stuffing.
  EXPECT_EQ(Stuff("a\r.b\n"), "a\r.b\r\n.\r\n");
}

TEST(DotStuff, UnterminatedLastLine) {
  EXPECT_EQ(Stuff(""), ".\r\n");
  EXPECT_EQ(Stuff("abc"), "abc\r\n.\r\n");
  EXPECT_EQ(Stuff("a\nb"), "a\r\nb\r\n.\r\n");
  EXPECT_EQ(Stuff("abc\r"), "abc\r\n.\r\n") << "a trailing CR only needs its LF";
}

TEST(DotStuff, SplitsAtEveryAwkwardPlace) {
  // CR | LF, then a '.' at the start of the next chunk.
  EXPECT_EQ(Stuff("a\r\n.b\n", {2}), "a\r\n..b\r\n.\r\n");
  EXPECT_EQ(Stuff("a\r\n.b\n", {3}), "a\r\n..b\r\n.\r\n");
  // CR | '.': the CR was not a line end.
  EXPECT_EQ(Stuff("a\r.b\n", {2}), "a\r.b\r\n.\r\n");
  // LF | '.'.
  EXPECT_EQ(Stuff("a\n.b", {2}), "a\r\n..b\r\n.\r\n");
  // Empty chunks change nothing.
  EXPECT_EQ(Stuff("a\n.b", {0, 2, 0, 0}), "a\r\n..b\r\n.\r\n");

  const std::vector<std::string> cases = {
      ".\r\n..\r\n\r\n.\n", "a\r\r\n.\r.\n", "\r\n\r\n\n\r", "x\r\n.\r\n.", ".\r", "H: v\n\n.\n..\nlast"};
  for (const std::string& m : cases) {
    std::string whole = Stuff(m);
    EXPECT_EQ(StuffByteByByte(m), whole) << m;
    for (size_t cut = 0; cut <= m.size(); ++cut) EXPECT_EQ(Stuff(m, {cut}), whole) << m << " cut " << cut;
    EXPECT_EQ(Unstuff(whole), Normalized(m)) << m;
  }
}

TEST(DotStuff, StreamsWithoutHoldingBack) {
  DotStuffer s;
  std::string out;
  s.Append("no line end yet", &out);
  EXPECT_EQ(out, "no line end yet") << "a partial line goes out at once";
  out.clear();
  s.Append("\r", &out);
  EXPECT_EQ(out, "\r");
  out.clear();
  s.Append("\n.", &out);
  EXPECT_EQ(out, "\n..");
  // Each input byte gives at most two output bytes: nothing accumulates.
  DotStuffer big;
  std::string chunk(64 * 1024, '.');
  for (size_t i = 0; i < chunk.size(); i += 2) chunk[i] = '\n';
  for (int i = 0; i < 32; ++i) {
    out.clear();
    big.Append(chunk, &out);
    EXPECT_LE(out.size(), 2 * chunk.size());
    EXPECT_GE(out.size(), chunk.size());
  }
}

TEST(DotStuff, RandomMessagesRoundTripAndAgreeWithNetworkSize) {
  std::mt19937 rng(1939);
  const char alphabet[] = {'a', '.', '\r', '\n', '\n', ' '};
  for (int iter = 0; iter < 2000; ++iter) {
    std::string m(rng() % 40, 'a');
    for (char& c : m) c = alphabet[rng() % sizeof alphabet];
    std::vector<size_t> chunks;
    for (size_t left = m.size(); left > 0;) {
      size_t n = 1 + rng() % 5;
      chunks.push_back(n);
      left -= std::min(n, left);
    }
    std::string wire = Stuff(m, chunks);
    ASSERT_EQ(wire, Stuff(m)) << m;
    std::string client = Unstuff(wire);
    ASSERT_EQ(client, Normalized(m)) << m;

    NetworkSize size;
    std::string_view rest = m;
    for (size_t n : chunks) {
      n = std::min(n, rest.size());
      size.Add(rest.substr(0, n));
      rest.remove_prefix(n);
    }
    ASSERT_EQ(size.total(), client.size()) << m;
    ASSERT_EQ(NetworkSizeOf(m), client.size()) << m;
  }
}

TEST(DotStuff, NetworkSize) {
  EXPECT_EQ(NetworkSizeOf(""), 0u);
  EXPECT_EQ(NetworkSizeOf("a"), 3u);
  EXPECT_EQ(NetworkSizeOf("a\n"), 3u);
  EXPECT_EQ(NetworkSizeOf("a\r\n"), 3u);
  EXPECT_EQ(NetworkSizeOf("a\r"), 3u);
  EXPECT_EQ(NetworkSizeOf("\n\n"), 4u);
  EXPECT_EQ(NetworkSizeOf(".\n"), 3u) << "dot-stuffing is not counted";
  NetworkSize split;
  split.Add("a\r");
  EXPECT_EQ(split.total(), 3u);
  split.Add("");
  split.Add("\n");
  EXPECT_EQ(split.total(), 3u) << "a CRLF split across chunks is not counted twice";
  split.Add("\n");
  EXPECT_EQ(split.total(), 5u);
}

constexpr std::string_view kMessage = "From: a\nSubject: b\n\nline 1\n.line 2\nline 3\n";

TEST(DotStuffTop, HeaderAndFirstLines) {
  EXPECT_EQ(Stuff(kMessage, {}, 0), "From: a\r\nSubject: b\r\n\r\n.\r\n") << "TOP 0: the header only";
  EXPECT_EQ(Stuff(kMessage, {}, 1), "From: a\r\nSubject: b\r\n\r\nline 1\r\n.\r\n");
  EXPECT_EQ(Stuff(kMessage, {}, 2), "From: a\r\nSubject: b\r\n\r\nline 1\r\n..line 2\r\n.\r\n");
  EXPECT_EQ(Stuff(kMessage, {}, 3), Stuff(kMessage));
  EXPECT_EQ(Stuff(kMessage, {}, 1000), Stuff(kMessage)) << "more lines than the body has";
  for (uint64_t n : {0, 1, 2, 5}) EXPECT_EQ(StuffByteByByte(kMessage, n), Stuff(kMessage, {}, n));
}

TEST(DotStuffTop, BlankLineForms) {
  EXPECT_EQ(Stuff("A: 1\r\n\r\nbody\r\n", {}, 0), "A: 1\r\n\r\n.\r\n");
  EXPECT_EQ(Stuff("A: 1\r\n\r\nbody\r\n", {5, 1, 1}, 0), "A: 1\r\n\r\n.\r\n") << "CR | LF of the blank line";
  // A line holding only CR CR is not blank.
  EXPECT_EQ(Stuff("A: 1\n\r\r\nB: 2\n\nbody\n", {}, 0), "A: 1\r\n\r\r\nB: 2\r\n\r\n.\r\n");
  EXPECT_EQ(Stuff("\nbody 1\nbody 2\n", {}, 1), "\r\nbody 1\r\n.\r\n") << "no header at all";
  EXPECT_EQ(Stuff("A: 1\nB: 2", {}, 0), "A: 1\r\nB: 2\r\n.\r\n") << "all header, unterminated";
  EXPECT_EQ(Stuff("A: 1\n\nbody", {}, 5), "A: 1\r\n\r\nbody\r\n.\r\n");
}

TEST(DotStuffTop, StopsAskingForInput) {
  DotStuffer s = DotStuffer::Top(2);
  std::string out;
  EXPECT_TRUE(s.Append("A: 1\n\nfirst\nsec", &out));
  EXPECT_FALSE(s.done());
  // The LF that ends the wanted line is enough: the rest is not even looked at.
  EXPECT_FALSE(s.Append("ond\nthird\n", &out));
  EXPECT_TRUE(s.done());
  EXPECT_FALSE(s.Append("more\n", &out));
  s.Finish(&out);
  EXPECT_EQ(out, "A: 1\r\n\r\nfirst\r\nsecond\r\n.\r\n");
  // TOP 0 is done at the blank line.
  DotStuffer z = DotStuffer::Top(0);
  out.clear();
  EXPECT_FALSE(z.Append("A: 1\r\n\r\n", &out));
  z.Finish(&out);
  EXPECT_EQ(out, "A: 1\r\n\r\n.\r\n");
}

}  // namespace
}  // namespace holdfast::pop3
