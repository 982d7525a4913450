#include "lmtp/lmtp_session.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "lmtp/address.h"

namespace holdfast::lmtp {
namespace {

// nobody@... is unknown, busy@... fails temporarily, everyone else exists.
RcptCheck Resolve(const std::string& address, Recipient* r) {
  if (address.starts_with("nobody@")) return RcptCheck::kUnknown;
  if (address.starts_with("busy@")) return RcptCheck::kTempFail;
  auto t = MapAddressToUser(address, {"example.org"});
  if (!t) return RcptCheck::kUnknown;
  r->user = t->user;
  r->detail = t->detail;
  return RcptCheck::kOk;
}

std::vector<std::string> Lines(std::string_view out) {
  std::vector<std::string> r;
  while (!out.empty()) {
    size_t end = out.find("\r\n");
    EXPECT_NE(end, std::string_view::npos) << "reply without CRLF: " << out;
    if (end == std::string_view::npos) break;
    r.emplace_back(out.substr(0, end));
    out.remove_prefix(end + 2);
  }
  return r;
}

// Codes of the replies in `out`, one per complete reply (multi-line counts once).
std::vector<int> Codes(std::string_view out) {
  std::vector<int> r;
  for (const std::string& l : Lines(out)) {
    if (l.size() >= 4 && l[3] == ' ') r.push_back(std::stoi(l.substr(0, 3)));
  }
  return r;
}

constexpr std::string_view kEnvelope =
    "LHLO mta.example\r\n"
    "MAIL FROM:<sender@remote.example>\r\n"
    "RCPT TO:<alice@example.org>\r\n"
    "DATA\r\n";

struct Fixture {
  explicit Fixture(Limits limits = {}) : session("lmtp.test", limits, Resolve) {}

  Event Feed(std::string_view bytes) {
    out.clear();
    return session.Feed(bytes, &out);
  }
  Event Complete(const std::vector<Reply>& replies) {
    out.clear();
    return session.CompleteMessage(replies, &out);
  }
  // Starts a transaction for alice and enters DATA.
  void ToData() {
    ASSERT_EQ(Feed(kEnvelope).kind, Event::Kind::kNone);
    ASSERT_EQ(Codes(out), (std::vector<int>{250, 250, 250, 354}));
  }
  // Sends `data` (ending in the terminator) and returns the body received.
  std::string BodyOf(std::string_view data) {
    ToData();
    Event ev = Feed(data);
    EXPECT_EQ(ev.kind, Event::Kind::kMessage);
    Complete({{250, "2.0.0", "ok"}});
    return ev.body;
  }

  Session session;
  std::string out;
};

TEST(LmtpSession, GreetingAndLhlo) {
  Fixture f;
  EXPECT_EQ(f.session.Greeting(), "220 lmtp.test LMTP holdfast ready\r\n");
  f.Feed("LHLO mta.example\r\n");
  EXPECT_EQ(f.out,
            "250-lmtp.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
            "250 SIZE 52428800\r\n");
}

TEST(LmtpSession, FullTransactionWithPerRecipientReplies) {
  Fixture f;
  f.session.set_client("192.0.2.7");
  f.Feed("LHLO mta.example\r\n");
  f.Feed("MAIL FROM:<sender@remote.example>\r\n");
  EXPECT_EQ(f.out, "250 2.1.0 sender <sender@remote.example> ok\r\n");
  f.Feed("RCPT TO:<alice@example.org>\r\n");
  EXPECT_EQ(f.out, "250 2.1.5 <alice@example.org> ok\r\n");
  f.Feed("RCPT TO:<nobody@example.org>\r\n");
  EXPECT_EQ(f.out, "550 5.1.1 <nobody@example.org>: no such user\r\n");
  f.Feed("RCPT TO:<busy@example.org>\r\n");
  EXPECT_EQ(f.out, "451 4.3.0 <busy@example.org>: temporary failure, try again later\r\n");
  f.Feed("RCPT TO:<Bob+News@Example.ORG>\r\n");
  EXPECT_EQ(f.out, "250 2.1.5 <Bob+News@Example.ORG> ok\r\n");
  f.Feed("DATA\r\n");
  EXPECT_EQ(f.out, "354 start mail input; end with <CRLF>.<CRLF>\r\n");
  Event ev = f.Feed("Subject: hi\r\n\r\nhello\r\n.\r\n");
  ASSERT_EQ(ev.kind, Event::Kind::kMessage);
  EXPECT_EQ(f.out, "") << "nothing is acknowledged before the commit";
  EXPECT_EQ(ev.body, "Subject: hi\r\n\r\nhello\r\n");
  EXPECT_EQ(ev.envelope.helo, "mta.example");
  EXPECT_EQ(ev.envelope.mail_from, "sender@remote.example");
  EXPECT_EQ(ev.envelope.client, "192.0.2.7");
  EXPECT_FALSE(ev.envelope.body_8bit);
  ASSERT_EQ(ev.envelope.rcpts.size(), 2u);
  EXPECT_EQ(ev.envelope.rcpts[0].address, "alice@example.org");
  EXPECT_EQ(ev.envelope.rcpts[0].user, "alice");
  EXPECT_EQ(ev.envelope.rcpts[1].address, "Bob+News@Example.ORG");
  EXPECT_EQ(ev.envelope.rcpts[1].user, "bob");
  EXPECT_EQ(ev.envelope.rcpts[1].detail, "News");
  EXPECT_TRUE(f.session.awaiting_completion());

  ev = f.Complete({{250, "2.0.0", "<01HX> delivered"}, {552, "5.2.2", "mailbox full"}});
  EXPECT_EQ(ev.kind, Event::Kind::kNone);
  EXPECT_EQ(f.out, "250 2.0.0 <01HX> delivered\r\n552 5.2.2 mailbox full\r\n");
  EXPECT_FALSE(f.session.awaiting_completion());

  // The transaction is over; the greeting is kept.
  f.Feed("RCPT TO:<alice@example.org>\r\n");
  EXPECT_EQ(Codes(f.out), std::vector<int>{503});
  f.Feed("MAIL FROM:<>\r\n");
  EXPECT_EQ(f.out, "250 2.1.0 sender <> ok\r\n");
}

TEST(LmtpSession, PipelinedTransactionInOneFeed) {
  Fixture f;
  Event ev = f.Feed(
      "LHLO mta.example\r\nMAIL FROM:<s@remote.example>\r\nRCPT TO:<alice@example.org>\r\n"
      "RCPT TO:<nobody@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n"
      "body\r\n.\r\nQUIT\r\n");
  ASSERT_EQ(ev.kind, Event::Kind::kMessage);
  EXPECT_EQ(Codes(f.out), (std::vector<int>{250, 250, 250, 550, 250, 354}));
  EXPECT_EQ(ev.body, "body\r\n");
  ASSERT_EQ(ev.envelope.rcpts.size(), 2u);
  ev = f.Complete({{250, "2.0.0", "a"}, {451, "4.3.0", "b"}});
  EXPECT_EQ(ev.kind, Event::Kind::kClose) << "the buffered QUIT runs after the replies";
  EXPECT_EQ(f.out, "250 2.0.0 a\r\n451 4.3.0 b\r\n221 2.0.0 lmtp.test closing connection\r\n");
}

TEST(LmtpSession, PausesAndBuffersUntilComplete) {
  Fixture f;
  f.ToData();
  Event ev = f.Feed("one\r\n.\r\nNOOP\r\n");
  ASSERT_EQ(ev.kind, Event::Kind::kMessage);
  // More input, even a whole second transaction, only waits.
  ev = f.Feed("MAIL FROM:<x@y.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\ntwo\r\n.\r\n");
  EXPECT_EQ(ev.kind, Event::Kind::kNone);
  EXPECT_EQ(f.out, "");
  EXPECT_TRUE(f.session.awaiting_completion());

  ev = f.Complete({{250, "2.0.0", "first"}});
  ASSERT_EQ(ev.kind, Event::Kind::kMessage);
  EXPECT_EQ(Codes(f.out), (std::vector<int>{250, 250, 250, 250, 354}));
  EXPECT_EQ(Lines(f.out)[0], "250 2.0.0 first");
  EXPECT_EQ(ev.body, "two\r\n");
  EXPECT_EQ(ev.envelope.mail_from, "x@y.example");
  EXPECT_EQ(ev.envelope.helo, "mta.example");
  ev = f.Complete({{250, "2.0.0", "second"}});
  EXPECT_EQ(ev.kind, Event::Kind::kNone);
  EXPECT_EQ(f.out, "250 2.0.0 second\r\n");
  // Nothing to complete: ignored.
  ev = f.Complete({{250, "2.0.0", "third"}});
  EXPECT_EQ(f.out, "");
}

TEST(LmtpSession, DotUnstuffingKeepsCrlf) {
  Fixture f;
  EXPECT_EQ(f.BodyOf("..\r\n...two\r\n.single\r\n a.\r\n.\r\r\n\r\nend\r\n.\r\n"),
            ".\r\n..two\r\nsingle\r\n a.\r\n\r\r\n\r\nend\r\n");
  EXPECT_EQ(f.BodyOf(".\r\n"), "") << "an empty message";
  EXPECT_EQ(f.BodyOf("last line\r\n.\r\n"), "last line\r\n");
}

Limits KeepBareLf() {
  Limits l;
  l.reject_bare_lf = false;
  return l;
}

TEST(LmtpSession, BareLfBodyKeptWhenConfigured) {
  Fixture f(KeepBareLf());
  EXPECT_EQ(f.BodyOf("a\nb\r\nc\rd\r\n.\r\n"), "a\nb\r\nc\rd\r\n");
  // Only CRLF "." CRLF ends the data: after a bare LF, ".\r\n" and ".\n"
  // are lines of the message (dot-unstuffed like any other).
  EXPECT_EQ(f.BodyOf("x\n.\r\ny\r\n.\r\n"), "x\n\r\ny\r\n");
  EXPECT_EQ(f.BodyOf("x\r\n.\ny\r\n.\r\n"), "x\r\n\ny\r\n");
  EXPECT_EQ(f.BodyOf("x\n.\n.\r\n\r\n.\r\n"), "x\n\n\r\n\r\n");
  // "\r.\r\n" is not a terminator: the line is "\r.\r\n".
  EXPECT_EQ(f.BodyOf("a\r\r.\r\n.\r\n"), "a\r\r.\r\n");
}

TEST(LmtpSession, BareLfInBodyRefusedByDefault) {
  Fixture f;
  f.ToData();
  EXPECT_EQ(f.Feed("a\nb\r\n.\n.\r\n").kind, Event::Kind::kNone) << "ends only at CRLF.CRLF";
  EXPECT_EQ(f.out, "");
  EXPECT_EQ(f.Feed("c\r\n.\r\n").kind, Event::Kind::kNone);
  EXPECT_EQ(f.out, "550 5.6.0 message contains a bare LF; lines must end with CRLF (RFC 5321 2.3.8)\r\n");
  f.Feed("NOOP\r\n");
  EXPECT_EQ(f.out, "250 2.0.0 OK\r\n") << "the session goes on";
  EXPECT_EQ(f.BodyOf("bare\rcr\r\n.\r\n"), "bare\rcr\r\n") << "a bare CR is content";
}

// SMTP smuggling (CVE-2023-51764 class): a message that hides a second
// transaction behind a non-standard end of data. It must reach its one
// recipient whole, or be refused whole, and nothing may reach bob.
TEST(LmtpSession, SmugglingNeverStartsASecondTransaction) {
  const std::vector<std::string> ends = {"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r", "\r\n.\r", "\r.\r\n",
                                         "\n..\n", "\r\n.\r\r\n"};
  for (bool keep : {false, true}) {
    for (const std::string& end : ends) {
      Limits l;
      l.reject_bare_lf = !keep;
      Session s("lmtp.test", l, Resolve);
      std::string out;
      std::vector<Event> messages;
      const std::string smuggled = "MAIL FROM:<evil@x.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nforged\r\n";
      const std::string input = std::string(kEnvelope) + "Subject: hi\r\n\r\nbody" + end + smuggled + ".\r\nQUIT\r\n";
      Event ev = s.Feed(input, &out);
      while (ev.kind == Event::Kind::kMessage) {
        messages.push_back(ev);
        ev = s.CompleteMessage({{250, "2.0.0", "ok"}}, &out);
      }
      SCOPED_TRACE((keep ? "keep, end " : "reject, end ") + ::testing::PrintToString(end));
      ASSERT_LE(messages.size(), 1u);
      for (const Event& m : messages) {
        ASSERT_EQ(m.envelope.rcpts.size(), 1u);
        EXPECT_EQ(m.envelope.rcpts[0].user, "alice");
        EXPECT_NE(m.body.find("RCPT TO:<bob@example.org>\r\nDATA\r\nforged\r\n"), std::string::npos)
            << "the whole message, smuggled text included";
      }
      // LHLO (one reply), MAIL, RCPT, DATA, the one final reply, QUIT.
      EXPECT_EQ(Codes(out).size(), 6u) << out;
      EXPECT_EQ(out.find("bob"), std::string::npos) << out;
      bool has_bare_lf = false;
      for (size_t k = 0; k < end.size(); ++k) has_bare_lf |= end[k] == '\n' && (k == 0 || end[k - 1] != '\r');
      if (!keep && has_bare_lf) {
        EXPECT_TRUE(messages.empty());
        EXPECT_NE(out.find("550 5.6.0"), std::string::npos) << out;
      } else {
        EXPECT_EQ(messages.size(), 1u) << out;
      }
    }
  }
}

TEST(LmtpSession, NulAnd8BitBodyKept) {
  Fixture f;
  std::string body("caf\xc3\xa9 \0\x01\xff\r\n", 11);
  EXPECT_EQ(f.BodyOf(body + ".\r\n"), body);
}

TEST(LmtpSession, MailParameters) {
  Fixture f;
  f.Feed("LHLO x\r\nMAIL FROM:<a@b.example> BODY=8BITMIME SIZE=100\r\nRCPT TO:<alice@example.org>\r\n");
  EXPECT_EQ(Codes(f.out), (std::vector<int>{250, 250, 250}));
  f.Feed("DATA\r\n");
  Event ev = f.Feed("\xe2\x82\xac\r\n.\r\n");
  ASSERT_EQ(ev.kind, Event::Kind::kMessage);
  EXPECT_TRUE(ev.envelope.body_8bit);
  f.Complete({{250, "2.0.0", "ok"}});

  f.Feed("MAIL FROM:<a@b.example> BODY=7BIT\r\nRSET\r\n");
  EXPECT_EQ(Codes(f.out), (std::vector<int>{250, 250}));
  f.Feed("MAIL FROM:<a@b.example> RET=HDRS\r\n");
  EXPECT_EQ(f.out, "555 5.5.4 MAIL parameter RET not supported\r\n");
  f.Feed("MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n");
  EXPECT_EQ(f.out, "501 5.5.4 BODY must be 7BIT or 8BITMIME\r\n");
  f.Feed("MAIL FROM:<a@b.example> SIZE=12x\r\n");
  EXPECT_EQ(f.out, "501 5.5.4 SIZE needs a decimal number\r\n");
  f.Feed("MAIL FROM:<a@b.example>x\r\n");
  EXPECT_EQ(Codes(f.out), std::vector<int>{501});
  f.Feed("MAIL FROM: <a@b.example>\r\n");
  EXPECT_EQ(Codes(f.out), std::vector<int>{250}) << "a space after the colon is tolerated";
}

TEST(LmtpSession, SizeTooLargeAtMail) {
  Limits limits;
  limits.max_message_size = 1000;
  Fixture f(limits);
  f.Feed("LHLO x\r\n");
  EXPECT_NE(f.out.find("250 SIZE 1000\r\n"), std::string::npos);
  f.Feed("MAIL FROM:<a@b.example> SIZE=1001\r\n");
  EXPECT_EQ(f.out, "552 5.3.4 message size exceeds fixed maximum message size\r\n");
  f.Feed("RCPT TO:<alice@example.org>\r\n");
  EXPECT_EQ(Codes(f.out), std::vector<int>{503}) << "no transaction was started";
  f.Feed("MAIL FROM:<a@b.example> SIZE=99999999999999999999\r\n");
  EXPECT_EQ(Codes(f.out), std::vector<int>{501});
  f.Feed("MAIL FROM:<a@b.example> SIZE=1000\r\n");
  EXPECT_EQ(Codes(f.out), std::vector<int>{250});
}

TEST(LmtpSession, BodyOverLimitRejectedPerRecipientThenHealthy) {
  Limits limits;
  limits.max_message_size = 100;
  Fixture f(limits);
  f.Feed("LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\n"
         "DATA\r\n");
  ASSERT_EQ(Codes(f.out), (std::vector<int>{250, 250, 250, 250, 354}));
  std::string big;
  for (int i = 0; i < 20; ++i) big += "0123456789\r\n";
  Event ev = f.Feed(big + ".\r\n");
  EXPECT_EQ(ev.kind, Event::Kind::kNone);
  EXPECT_EQ(f.out,
            "552 5.3.4 message size exceeds fixed maximum message size\r\n"
            "552 5.3.4 message size exceeds fixed maximum message size\r\n");
  // Exactly at the limit is fine.
  f.Feed("MAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
  ev = f.Feed(std::string(98, 'x') + "\r\n.\r\n");
  ASSERT_EQ(ev.kind, Event::Kind::kMessage);
  EXPECT_EQ(ev.body.size(), 100u);
}

TEST(LmtpSession, DataLineTooLongRejectedAfterDot) {
  Limits limits;
  limits.max_data_line = 64;
  Fixture f(limits);
  f.ToData();
  // Sent in pieces without an LF, so the session must drop it as it comes.
  f.Feed("ok line\r\n");
  for (int i = 0; i < 10; ++i) EXPECT_EQ(f.Feed(std::string(50, 'y')).kind, Event::Kind::kNone);
  Event ev = f.Feed("\r\nmore\r\n.\r\n");
  EXPECT_EQ(ev.kind, Event::Kind::kNone);
  EXPECT_EQ(f.out, "500 5.5.2 message has a line longer than 64 bytes\r\n");
  // A line of exactly 64 bytes with its CRLF is accepted.
  std::string line = std::string(62, 'z') + "\r\n";
  EXPECT_EQ(f.BodyOf(line + ".\r\n"), line);
}

TEST(LmtpSession, TooManyRecipients) {
  Limits limits;
  limits.max_recipients = 2;
  Fixture f(limits);
  f.Feed("LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<nobody@example.org>\r\nRCPT TO:<alice@example.org>\r\n"
         "RCPT TO:<bob@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n");
  EXPECT_EQ(Codes(f.out), (std::vector<int>{250, 250, 550, 250, 250, 452, 354}));
  EXPECT_NE(f.out.find("452 4.5.3 too many recipients\r\n"), std::string::npos);
  Event ev = f.Feed(".\r\n");
  ASSERT_EQ(ev.kind, Event::Kind::kMessage);
  EXPECT_EQ(ev.envelope.rcpts.size(), 2u);
}

TEST(LmtpSession, OverlongCommandLine) {
  Limits limits;
  limits.max_command_line = 512;
  Fixture f(limits);
  f.Feed("LHLO x\r\n");
  // A line of exactly 512 bytes with its CRLF is still a command.
  f.Feed("NOOP " + std::string(505, 'a') + "\r\n");
  EXPECT_EQ(f.out, "250 2.0.0 OK\r\n");
  f.Feed("NOOP " + std::string(506, 'a') + "\r\nNOOP\r\n");
  EXPECT_EQ(f.out, "500 5.5.2 line too long\r\n250 2.0.0 OK\r\n");
  // Without an LF the answer comes as soon as the line cannot fit, and the
  // rest of the line is dropped.
  f.Feed(std::string(600, 'M'));
  EXPECT_EQ(f.out, "500 5.5.2 line too long\r\n");
  f.Feed(std::string(5000, 'M'));
  EXPECT_EQ(f.out, "");
  f.Feed("AIL FROM:<a@b.example>\r\nNOOP\r\n");
  EXPECT_EQ(f.out, "250 2.0.0 OK\r\n");
}

TEST(LmtpSession, BadBytesInCommand) {
  Fixture f;
  f.Feed("LHLO x\r\n");
  f.Feed("NO\rOP\r\n");
  EXPECT_EQ(f.out, "500 5.5.2 command contains a bare CR\r\n");
  f.Feed("NOOP\r\r\n");
  EXPECT_EQ(f.out, "500 5.5.2 command contains a bare CR\r\n");
  f.Feed(std::string("NOOP\0x\r\n", 8));
  EXPECT_EQ(f.out, "500 5.5.2 command contains a NUL byte\r\n");
  f.Feed("NOOP \xc3\xa9\r\n");
  EXPECT_EQ(f.out, "500 5.5.2 command contains non-ASCII byte 0xc3\r\n");
  f.Feed("NOOP\x1b\r\n");
  EXPECT_EQ(f.out, "500 5.5.2 command contains control byte 0x1b\r\n");
  f.Feed("\r\n");
  EXPECT_EQ(f.out, "500 5.5.2 empty command\r\n");
  f.Feed("NOOP\n");
  EXPECT_EQ(f.out, "500 5.5.2 command ends with a bare LF; end commands with CRLF\r\n");
  Fixture keep(KeepBareLf());
  keep.Feed("LHLO x\n");
  keep.Feed("NOOP\n");
  EXPECT_EQ(keep.out, "250 2.0.0 OK\r\n") << "kept: a bare LF ends a command";
}

TEST(LmtpSession, CommandsOutOfOrder) {
  Fixture f;
  f.Feed("MAIL FROM:<a@b.example>\r\n");
  EXPECT_EQ(f.out, "503 5.5.1 send LHLO first\r\n");
  f.Feed("LHLO x\r\nDATA\r\n");
  EXPECT_EQ(Lines(f.out).back(), "503 5.5.1 need MAIL command");
  f.Feed("RCPT TO:<alice@example.org>\r\n");
  EXPECT_EQ(f.out, "503 5.5.1 need MAIL before RCPT\r\n");
  f.Feed("MAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\n");
  EXPECT_EQ(Lines(f.out).back(), "503 5.5.1 nested MAIL command");
  f.Feed("RCPT TO:<nobody@example.org>\r\nDATA\r\n");
  EXPECT_EQ(Lines(f.out).back(), "503 5.5.1 no valid recipients");
  // A client that sends the body anyway gets errors, not a message.
  Event ev = f.Feed("Subject: x\r\n\r\nhi\r\n.\r\nNOOP\r\n");
  EXPECT_EQ(ev.kind, Event::Kind::kNone);
  EXPECT_EQ(Codes(f.out), (std::vector<int>{500, 500, 500, 500, 250}));
}

TEST(LmtpSession, AddressSyntax) {
  Fixture f;
  f.Feed("LHLO x\r\n");
  f.Feed("MAIL FROM:a@b.example\r\n");
  EXPECT_EQ(f.out, "501 5.1.7 bad sender address: address must be enclosed in <>\r\n");
  f.Feed("MAIL FROM:<a b@c.example>\r\n");
  EXPECT_EQ(f.out, "501 5.1.7 bad sender address: address contains a space\r\n");
  f.Feed("MAIL TO:<a@b.example>\r\n");
  EXPECT_EQ(Codes(f.out), std::vector<int>{501});
  f.Feed("MAIL FROM:<@relay.example:a@b.example>\r\n");
  EXPECT_EQ(f.out, "250 2.1.0 sender <a@b.example> ok\r\n");
  f.Feed("RCPT TO:<>\r\n");
  EXPECT_EQ(f.out, "501 5.1.3 the null address <> is not a recipient\r\n");
  f.Feed("RCPT TO:<alice@example.org\r\n");
  EXPECT_EQ(f.out, "501 5.1.3 bad recipient address: address has no closing '>'\r\n");
  f.Feed("RCPT TO:<alice@example.org> NOTIFY=NEVER\r\n");
  EXPECT_EQ(f.out, "555 5.5.4 RCPT parameters not supported\r\n");
  f.Feed("RCPT TO:<" + std::string(250, 'a') + "@example.org>\r\n");
  EXPECT_EQ(f.out, "501 5.1.3 bad recipient address: address is longer than 254 bytes\r\n");
  f.Feed("rcpt to:<@r.example:alice@example.org>\r\n");
  EXPECT_EQ(f.out, "250 2.1.5 <alice@example.org> ok\r\n");
}

TEST(LmtpSession, CommandsAreCaseInsensitive) {
  Fixture f;
  f.Feed("lhlo x\r\nMail From:<a@b.example>\r\nrcpt TO:<alice@example.org>\r\ndata\r\n");
  EXPECT_EQ(Codes(f.out), (std::vector<int>{250, 250, 250, 354}));
}

TEST(LmtpSession, RsetClearsTransaction) {
  Fixture f;
  f.Feed("LHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nRSET\r\nDATA\r\n");
  EXPECT_EQ(Codes(f.out), (std::vector<int>{250, 250, 250, 250, 503}));
  f.Feed("MAIL FROM:<c@d.example>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n");
  EXPECT_EQ(Codes(f.out), (std::vector<int>{250, 250, 354}));
  Event ev = f.Feed(".\r\n");
  ASSERT_EQ(ev.kind, Event::Kind::kMessage);
  EXPECT_EQ(ev.envelope.mail_from, "c@d.example");
  ASSERT_EQ(ev.envelope.rcpts.size(), 1u);
  EXPECT_EQ(ev.envelope.rcpts[0].user, "bob");
}

TEST(LmtpSession, OtherCommands) {
  Fixture f;
  f.Feed("VRFY alice\r\n");
  EXPECT_EQ(f.out, "252 2.5.2 cannot VRFY user, but will accept message and attempt delivery\r\n");
  f.Feed("HELP\r\n");
  EXPECT_EQ(Codes(f.out), std::vector<int>{214});
  f.Feed("EHLO x\r\nHELO x\r\n");
  EXPECT_EQ(f.out, "500 5.5.1 this is LMTP: use LHLO\r\n500 5.5.1 this is LMTP: use LHLO\r\n");
  f.Feed("STARTTLS\r\n");
  EXPECT_EQ(f.out, "502 5.5.1 STARTTLS not offered\r\n");
  f.Feed("BDAT 10 LAST\r\n");
  EXPECT_EQ(f.out, "500 5.5.1 command not recognized\r\n");
  f.Feed("NOOPS\r\n");
  EXPECT_EQ(f.out, "500 5.5.1 command not recognized\r\n");
  f.Feed("LHLO\r\n");
  EXPECT_EQ(f.out, "501 5.5.4 syntax: LHLO <host name>\r\n");
  f.Feed("DATA now\r\n");
  EXPECT_EQ(f.out, "501 5.5.4 syntax: DATA\r\n");
  f.Feed("NOOP anything\r\nRSET\r\n");
  EXPECT_EQ(f.out, "250 2.0.0 OK\r\n250 2.0.0 OK\r\n");
}

TEST(LmtpSession, PreLhloByteLimitCloses) {
  Limits limits;
  limits.max_bytes_before_lhlo = 100;
  Fixture f(limits);
  Event ev;
  for (int i = 0; i < 30 && ev.kind == Event::Kind::kNone; ++i) ev = f.Feed("NOOP\r\n");
  EXPECT_EQ(ev.kind, Event::Kind::kClose);
  EXPECT_EQ(Lines(f.out).back(), "554 5.5.0 too much input before LHLO");
  EXPECT_TRUE(f.session.closed());

  // A line that never ends counts too.
  Fixture g(limits);
  EXPECT_EQ(g.Feed(std::string(100, 'x')).kind, Event::Kind::kNone);
  EXPECT_EQ(g.Feed("x").kind, Event::Kind::kClose);
  EXPECT_EQ(g.out, "554 5.5.0 too much input before LHLO\r\n");

  // After LHLO the budget no longer applies.
  Fixture h(limits);
  h.Feed("LHLO x\r\n");
  for (int i = 0; i < 30; ++i) EXPECT_EQ(h.Feed("NOOP\r\n").kind, Event::Kind::kNone);
}

TEST(LmtpSession, MaxErrorsCloses) {
  Limits limits;
  limits.max_errors = 3;
  Fixture f(limits);
  f.Feed("LHLO x\r\nBAD\r\nBAD\r\nNOOP\r\nBAD\r\nBAD\r\n");
  EXPECT_EQ(Codes(f.out), (std::vector<int>{250, 500, 500, 250, 500, 500})) << "a good command resets the count";
  Event ev = f.Feed("BAD\r\nNOOP\r\n");
  EXPECT_EQ(ev.kind, Event::Kind::kClose);
  EXPECT_EQ(f.out,
            "500 5.5.1 command not recognized\r\n"
            "421 4.7.0 lmtp.test too many errors, closing connection\r\n");
  EXPECT_EQ(f.Feed("NOOP\r\n").kind, Event::Kind::kClose);
  EXPECT_EQ(f.out, "");
}

TEST(LmtpSession, QuitCloses) {
  Fixture f;
  Event ev = f.Feed("QUIT\r\nNOOP\r\n");
  EXPECT_EQ(ev.kind, Event::Kind::kClose);
  EXPECT_EQ(f.out, "221 2.0.0 lmtp.test closing connection\r\n");
  EXPECT_EQ(f.Feed("NOOP\r\n").kind, Event::Kind::kClose);
  EXPECT_EQ(f.out, "");
}

TEST(LmtpSession, AbortSends421) {
  Fixture f;
  f.Feed("LHLO x\r\n");
  f.out.clear();
  f.session.Abort("4.4.2", "idle timeout", &f.out);
  EXPECT_EQ(f.out, "421 4.4.2 lmtp.test idle timeout\r\n");
  EXPECT_TRUE(f.session.closed());
}

TEST(LmtpSession, WrongReplyCountNeverAcknowledges) {
  Fixture f;
  f.ToData();
  ASSERT_EQ(f.Feed(".\r\n").kind, Event::Kind::kMessage);
  f.Complete({{250, "2.0.0", "a"}, {250, "2.0.0", "b"}});
  EXPECT_EQ(f.out, "451 4.3.0 internal error, try again later\r\n");
}

TEST(LmtpSession, ServerReplyTextCannotForgeLines) {
  Fixture f;
  f.ToData();
  ASSERT_EQ(f.Feed(".\r\n").kind, Event::Kind::kMessage);
  f.Complete({{250, "2.0.0", "ok\r\n250 forged"}});
  EXPECT_EQ(f.out, "250 2.0.0 ok??250 forged\r\n");
  f.ToData();
  ASSERT_EQ(f.Feed(".\r\n").kind, Event::Kind::kMessage);
  f.Complete({{99, "", "bad code"}});
  EXPECT_EQ(f.out, "451 4.3.0 internal error, try again later\r\n");
}

// Feeds `input` in chunks of the given sizes (cycled), completing each
// message with a 250 per recipient; returns the whole output and the bodies.
struct Transcript {
  std::string out;
  std::vector<std::string> bodies;
  bool closed = false;
  bool operator==(const Transcript&) const = default;
};

Transcript Play(std::string_view input, const std::vector<size_t>& chunks, Limits limits) {
  Session s("lmtp.test", limits, Resolve);
  Transcript t;
  auto handle = [&](Event ev) {
    while (ev.kind == Event::Kind::kMessage) {
      t.bodies.push_back(ev.body);
      std::vector<Reply> replies(ev.envelope.rcpts.size(), Reply{250, "2.0.0", "ok"});
      ev = s.CompleteMessage(replies, &t.out);
    }
    if (ev.kind == Event::Kind::kClose) t.closed = true;
  };
  size_t i = 0;
  for (size_t pos = 0; pos < input.size(); ++i) {
    size_t n = std::min(chunks[i % chunks.size()], input.size() - pos);
    handle(s.Feed(input.substr(pos, n), &t.out));
    pos += n;
  }
  return t;
}

TEST(LmtpSession, ChunkingDoesNotChangeTheResult) {
  using namespace std::string_literals;
  Limits limits;
  limits.max_command_line = 40;
  limits.max_data_line = 30;
  limits.max_message_size = 200;
  limits.max_recipients = 3;
  limits.max_errors = 6;
  std::string long_body;
  for (int i = 0; i < 30; ++i) long_body += "line " + std::to_string(i) + "\r\n";
  const std::vector<std::string> inputs = {
      std::string(kEnvelope) + "Subject: x\r\n\r\n..dot\r\nbare\nlf\r\n.\r\nQUIT\r\n",
      "lhlo h\nmail from:<a@b.example>\nrcpt to:<alice@example.org>\nrcpt to:<nobody@example.org>\n"
      "data\nx\r\n" + std::string(100, 'L') + "\r\nafter\r\n.\nNOOP\r\n" + std::string(kEnvelope).substr(18) +
          long_body + ".\r\n" + std::string(kEnvelope).substr(18) + ".\r\nRSET\r\n",
      "NOOP\r\n" + std::string(200, 'z') + "\r\nLHLO a\r\nX\r\nY\r\n" + std::string(45, 'q') +
          "\r\nMAIL FROM:<>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n"
          "RCPT TO:<c@example.org>\r\nRCPT TO:<d@example.org>\r\nDATA\r\n\0\xff\r\n.\r\n"s +
          "BAD\r\nBAD\r\nBAD\r\nBAD\r\nBAD\r\nBAD\r\nNOOP\r\n",
      "LHLO x\r\nNO\rOP\r\nNOOP\0\r\n\r\n\r\nQUIT\r\n"s,
      // Overlong lines whose CR and LF land in different reads, and ends of
      // data that are not CRLF.CRLF.
      std::string(kEnvelope) + std::string(35, 'W') + "\r\n.\r\n" + std::string(kEnvelope).substr(18) +
          std::string(35, 'W') + "\n.\r\nx\n.\n\r\n.\r\nNOOP\r\n",
  };
  // Inputs where the pre-LHLO budget and the line limit meet: whichever a
  // byte-at-a-time client would break first must win, whatever the split.
  Limits tight = limits;
  tight.max_bytes_before_lhlo = 100;
  std::string noops;
  for (int i = 0; i < 15; ++i) noops += "NOOP\r\n";
  const std::vector<std::string> tight_inputs = {
      "NOOP\r\n" + std::string(200, 'A') + "\r\nNOOP\r\n",  // too long, then over budget
      noops + std::string(200, 'A') + "\r\n",                  // over budget inside the line
      std::string(39, 'B') + "\r\n" + std::string(60, 'C'),     // over budget on the last byte
  };
  std::mt19937 rng(42);
  auto check = [&](const std::string& input, const Limits& l) {
    Transcript whole = Play(input, {input.size()}, l);
    EXPECT_FALSE(whole.out.empty());
    for (size_t n : {1, 2, 3, 5, 7, 64}) {
      EXPECT_EQ(Play(input, {n}, l), whole) << "chunks of " << n << " for: " << input;
    }
    for (int round = 0; round < 20; ++round) {
      std::vector<size_t> chunks;
      for (int k = 0; k < 17; ++k) chunks.push_back(1 + rng() % 40);
      EXPECT_EQ(Play(input, chunks, l), whole) << "random chunks for: " << input;
    }
  };
  Limits keep = limits;
  keep.reject_bare_lf = false;
  for (const std::string& input : inputs) {
    check(input, limits);
    check(input, keep);
  }
  for (const std::string& input : tight_inputs) check(input, tight);
  EXPECT_EQ(Play(tight_inputs[0], {1}, tight).out,
            "250 2.0.0 OK\r\n500 5.5.2 line too long\r\n554 5.5.0 too much input before LHLO\r\n");
  EXPECT_EQ(Play(tight_inputs[1], {1}, tight).out.substr(15 * 14), "554 5.5.0 too much input before LHLO\r\n");
}

}  // namespace
}  // namespace holdfast::lmtp
