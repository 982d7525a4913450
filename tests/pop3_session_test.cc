#include "pop3/pop3_session.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <random>
#include <string>
#include <vector>

#include "pop3/dot_stuff.h"

namespace holdfast::pop3 {
namespace {

using namespace std::string_literals;
using Kind = Event::Kind;

std::string Base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Options PlainOk() {
  Options o;
  o.hostname = "pop.test";
  o.allow_plaintext_auth = true;
  return o;
}

Options TlsOnly() {
  Options o;
  o.hostname = "pop.test";
  o.tls_available = true;
  return o;
}

std::vector<MessageInfo> Drop3() { return {{120, "uid-1"}, {200, "uid-2"}, {5, "uid-3"}}; }

constexpr std::string_view kCapa =
    "+OK capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"
    "PIPELINING\r\n";

struct Fixture {
  explicit Fixture(Options o = PlainOk(), Limits l = {}) : session(std::move(o), l) {}

  Event Feed(std::string_view bytes) {
    out.clear();
    return session.Feed(bytes, &out);
  }
  Event Auth(AuthResult r, std::vector<MessageInfo> drop = {}) {
    out.clear();
    return session.CompleteAuth(r, std::move(drop), &out);
  }
  Event Retrieved(RetrieveResult r = RetrieveResult::kSent) {
    out.clear();
    return session.CompleteRetrieve(r, &out);
  }
  Event Quit(bool ok) {
    out.clear();
    return session.CompleteQuit(ok, &out);
  }
  // USER/PASS as alice, answered with `drop`.
  void Login(std::vector<MessageInfo> drop = Drop3()) {
    Event ev = Feed("USER alice\r\nPASS secret\r\n");
    ASSERT_EQ(ev.kind, Kind::kAuthenticate);
    ASSERT_EQ(out, "+OK send PASS\r\n");
    ASSERT_EQ(Auth(AuthResult::kOk, std::move(drop)).kind, Kind::kNone);
    ASSERT_TRUE(out.starts_with("+OK maildrop has")) << out;
    ASSERT_TRUE(session.authenticated());
  }

  Session session;
  std::string out;
};

TEST(Pop3Session, Greeting) {
  Fixture f;
  EXPECT_EQ(f.session.Greeting(), "+OK pop.test POP3 holdfast ready\r\n");
  Options o = PlainOk();
  o.hostname = "evil\r\n+OK forged";
  Session s(o, {});
  EXPECT_EQ(s.Greeting(), "+OK evil??+OK forged POP3 holdfast ready\r\n") << "one line, whatever the name";
}

TEST(Pop3Session, Capa) {
  Fixture f;
  f.Feed("CAPA\r\n");
  EXPECT_EQ(f.out, std::string(kCapa) + "IMPLEMENTATION holdfast\r\n.\r\n");
  f.Login();
  f.Feed("capa\r\n");
  EXPECT_EQ(f.out, std::string(kCapa) + "IMPLEMENTATION holdfast\r\n.\r\n") << "the same in TRANSACTION";
  f.Feed("CAPA x\r\n");
  EXPECT_EQ(f.out, "-ERR syntax: CAPA\r\n");

  Options o = TlsOnly();
  o.login_delay_seconds = 300;
  Fixture t(o);
  t.Feed("CAPA\r\n");
  EXPECT_EQ(t.out, std::string(kCapa) + "STLS\r\nLOGIN-DELAY 300\r\nIMPLEMENTATION holdfast\r\n.\r\n");
  Options active = TlsOnly();
  active.tls_active = true;
  Fixture a(active);
  a.Feed("CAPA\r\n");
  EXPECT_EQ(a.out, std::string(kCapa) + "IMPLEMENTATION holdfast\r\n.\r\n") << "no STLS over TLS";
}

TEST(Pop3Session, UserPassLogin) {
  Fixture f;
  Event ev = f.Feed("USER alice\r\n");
  EXPECT_EQ(ev.kind, Kind::kNone);
  EXPECT_EQ(f.out, "+OK send PASS\r\n");
  ev = f.Feed("PASS my secret pw\r\n");
  ASSERT_EQ(ev.kind, Kind::kAuthenticate);
  EXPECT_EQ(ev.user, "alice");
  EXPECT_EQ(ev.password, "my secret pw") << "a password may hold spaces";
  EXPECT_EQ(f.out, "") << "nothing before the server's answer";
  EXPECT_TRUE(f.session.awaiting());
  EXPECT_FALSE(f.session.authenticated());

  ev = f.Auth(AuthResult::kOk, Drop3());
  EXPECT_EQ(ev.kind, Kind::kNone);
  EXPECT_EQ(f.out, "+OK maildrop has 3 messages (325 octets)\r\n");
  EXPECT_TRUE(f.session.authenticated());
  EXPECT_FALSE(f.session.awaiting());
}

TEST(Pop3Session, PasswordBytes) {
  Fixture f;
  Event ev = f.Feed("user alice\nPASS p\xc3\xa4ss\n");
  ASSERT_EQ(ev.kind, Kind::kAuthenticate) << "bare LF and UTF-8 passwords: " << f.out;
  EXPECT_EQ(ev.password, "p\xc3\xa4ss");
}

TEST(Pop3Session, PassMustFollowUser) {
  Fixture f;
  f.Feed("PASS secret\r\n");
  EXPECT_EQ(f.out, "-ERR send USER first\r\n");
  f.Feed("USER alice\r\nCAPA\r\nPASS secret\r\n");
  EXPECT_TRUE(f.out.ends_with("-ERR send USER first\r\n")) << "another command in between forgets the USER";
  f.Feed("USER alice\r\nNOOP\r\nPASS secret\r\n");
  EXPECT_TRUE(f.out.ends_with("-ERR send USER first\r\n")) << "even a failed one";
  f.Feed("USER\r\n");
  EXPECT_EQ(f.out, "-ERR syntax: USER name\r\n");
  f.Feed("USER alice\r\nPASS\r\n");
  EXPECT_EQ(f.out, "+OK send PASS\r\n-ERR syntax: PASS password\r\n");
  f.Feed("USER bob\r\nUSER alice\r\n");
  Event ev = f.Feed("PASS x\r\n");
  ASSERT_EQ(ev.kind, Kind::kAuthenticate);
  EXPECT_EQ(ev.user, "alice") << "the last USER counts";
}

TEST(Pop3Session, AuthResults) {
  struct Case {
    AuthResult result;
    std::string reply;
  };
  const Case cases[] = {
      {AuthResult::kBadCredentials, "-ERR [AUTH] authentication failed\r\n"},
      {AuthResult::kInUse, "-ERR [IN-USE] maildrop is in use by another session\r\n"},
      {AuthResult::kLoginDelay, "-ERR [LOGIN-DELAY] logged in too recently, try again later\r\n"},
      {AuthResult::kTempFailure, "-ERR [SYS/TEMP] temporary failure, try again later\r\n"},
      {AuthResult::kPermFailure, "-ERR [SYS/PERM] maildrop unavailable, contact the administrator\r\n"},
  };
  for (const Case& c : cases) {
    Fixture f;
    ASSERT_EQ(f.Feed("USER alice\r\nPASS x\r\n").kind, Kind::kAuthenticate);
    Event ev = f.Auth(c.result, Drop3());
    EXPECT_EQ(ev.kind, Kind::kNone);
    EXPECT_EQ(f.out, c.reply);
    EXPECT_FALSE(f.session.authenticated());
    // Back in AUTHORIZATION: the client may try again.
    EXPECT_EQ(f.Feed("USER alice\r\nPASS y\r\n").kind, Kind::kAuthenticate);
  }
}

TEST(Pop3Session, TooManyBadCredentialsClose) {
  Limits l;
  l.max_auth_failures = 3;
  Fixture f(PlainOk(), l);
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(f.Feed("USER alice\r\nPASS x\r\n").kind, Kind::kAuthenticate);
    ASSERT_EQ(f.Auth(AuthResult::kBadCredentials).kind, Kind::kNone);
  }
  // Other failures do not count.
  ASSERT_EQ(f.Feed("USER alice\r\nPASS x\r\n").kind, Kind::kAuthenticate);
  ASSERT_EQ(f.Auth(AuthResult::kInUse).kind, Kind::kNone);
  ASSERT_EQ(f.Feed("USER alice\r\nPASS x\r\n").kind, Kind::kAuthenticate);
  EXPECT_EQ(f.Auth(AuthResult::kBadCredentials).kind, Kind::kClose);
  EXPECT_EQ(f.out, "-ERR [AUTH] authentication failed (too many failures, closing connection)\r\n");
  EXPECT_TRUE(f.session.closed());
  EXPECT_EQ(f.Feed("USER alice\r\n").kind, Kind::kClose);
  EXPECT_EQ(f.out, "");
}

TEST(Pop3Session, InvalidMaildropIsRefused) {
  const std::vector<std::vector<MessageInfo>> bad = {
      {{1, ""}},
      {{1, "has space"}},
      {{1, "ctl\x01"}},
      {{1, "del\x7f"}},
      {{1, std::string(71, 'u')}},
      {{1, "same"}, {2, "same"}},
  };
  for (const auto& drop : bad) {
    Fixture f;
    ASSERT_EQ(f.Feed("USER alice\r\nPASS x\r\n").kind, Kind::kAuthenticate);
    EXPECT_EQ(f.Auth(AuthResult::kOk, drop).kind, Kind::kClose) << "the server must release its lock";
    EXPECT_EQ(f.out, "-ERR [SYS/PERM] internal error: the maildrop has an invalid UIDL\r\n");
  }
  Fixture f;
  f.Login({{1, std::string(70, '~')}, {2, "!"}});
}

// The uniqueness check on a big maildrop (an open-addressing table): a
// duplicate anywhere is found, and 100,000 distinct UIDLs that collide in
// the table's low bits pass.
TEST(Pop3Session, BigMaildropUidlsAreCheckedForDuplicates) {
  std::vector<MessageInfo> drop;
  for (int i = 0; i < 100000; ++i) drop.push_back({10, "uidl-" + std::to_string(i)});
  for (auto [a, b] : {std::pair{0, 99999}, std::pair{512, 513}, std::pair{70000, 3}}) {
    auto dup = drop;
    dup[b].uidl = dup[a].uidl;
    Fixture f;
    ASSERT_EQ(f.Feed("USER alice\r\nPASS x\r\n").kind, Kind::kAuthenticate);
    EXPECT_EQ(f.Auth(AuthResult::kOk, dup).kind, Kind::kClose) << a << " = " << b;
    EXPECT_EQ(f.out, "-ERR [SYS/PERM] internal error: the maildrop has an invalid UIDL\r\n");
  }
  Fixture f;
  ASSERT_EQ(f.Feed("USER alice\r\nPASS x\r\n").kind, Kind::kAuthenticate);
  EXPECT_EQ(f.Auth(AuthResult::kOk, drop).kind, Kind::kNone);
  EXPECT_EQ(f.out, "+OK maildrop has 100000 messages (1000000 octets)\r\n");
}

TEST(Pop3Session, PlaintextNeedsPermission) {
  Fixture f(TlsOnly());
  f.Feed("USER alice\r\n");
  EXPECT_EQ(f.out, "-ERR [AUTH] plaintext authentication disallowed without TLS\r\n");
  f.Feed("PASS secret\r\n");
  EXPECT_EQ(f.out, "-ERR send USER first\r\n");
  f.Feed("AUTH PLAIN " + Base64("\0alice\0secret"s) + "\r\n");
  EXPECT_EQ(f.out, "-ERR [AUTH] plaintext authentication disallowed without TLS\r\n");
  f.Feed("AUTH PLAIN\r\n");
  EXPECT_EQ(f.out, "-ERR [AUTH] plaintext authentication disallowed without TLS\r\n");

  Options active = TlsOnly();
  active.tls_active = true;
  Fixture a(active);
  EXPECT_EQ(a.Feed("USER alice\r\nPASS x\r\n").kind, Kind::kAuthenticate) << "POP3S";
}

TEST(Pop3Session, StlsDiscardsPipelinedInput) {
  Fixture f(TlsOnly());
  // The STARTTLS injection: a man in the middle appends commands to the
  // plaintext STLS; they must not run inside the TLS session.
  Event ev = f.Feed("STLS\r\nUSER evil\r\nPASS x\r\n");
  ASSERT_EQ(ev.kind, Kind::kStartTls);
  EXPECT_EQ(f.out, "+OK Begin TLS negotiation\r\n");
  EXPECT_EQ(f.session.buffered(), 0u);
  // Nor may what arrives before the handshake completes.
  ev = f.Feed("QUIT\r\n");
  EXPECT_EQ(ev.kind, Kind::kNone);
  EXPECT_EQ(f.out, "");
  EXPECT_EQ(f.session.buffered(), 0u);

  f.out.clear();
  ev = f.session.TlsStarted(&f.out);
  EXPECT_EQ(ev.kind, Kind::kNone);
  EXPECT_EQ(f.out, "") << "nothing buffered ran";
  f.Feed("CAPA\r\n");
  EXPECT_EQ(f.out.find("STLS"), std::string::npos);
  f.Feed("STLS\r\n");
  EXPECT_EQ(f.out, "-ERR command not permitted when TLS active\r\n");
  ev = f.Feed("USER alice\r\nPASS secret\r\n");
  EXPECT_EQ(ev.kind, Kind::kAuthenticate) << "plaintext allowed over TLS";
  EXPECT_EQ(ev.user, "alice");
}

TEST(Pop3Session, StlsRefusals) {
  Fixture f;  // no certificate
  f.Feed("STLS\r\n");
  EXPECT_EQ(f.out, "-ERR STLS not available\r\n");
  Fixture t(TlsOnly());
  t.Feed("STLS now\r\n");
  EXPECT_EQ(t.out, "-ERR syntax: STLS\r\n");
  Options both = TlsOnly();
  both.allow_plaintext_auth = true;
  Fixture l(both);
  l.Login();
  l.Feed("STLS\r\n");
  EXPECT_EQ(l.out, "-ERR command not valid in the TRANSACTION state\r\n");
  // TlsStarted out of turn changes nothing.
  l.out.clear();
  EXPECT_EQ(l.session.TlsStarted(&l.out).kind, Kind::kNone);
  EXPECT_EQ(l.out, "");
}

TEST(Pop3Session, AuthPlainWithInitialResponse) {
  Fixture f;
  Event ev = f.Feed("AUTH PLAIN " + Base64("\0alice\0s3cret pw"s) + "\r\n");
  ASSERT_EQ(ev.kind, Kind::kAuthenticate);
  EXPECT_EQ(ev.user, "alice");
  EXPECT_EQ(ev.password, "s3cret pw");
  EXPECT_EQ(f.out, "");
  f.Auth(AuthResult::kOk, Drop3());
  EXPECT_EQ(f.out, "+OK maildrop has 3 messages (325 octets)\r\n");

  Fixture z;
  ev = z.Feed("auth plain " + Base64("alice\0alice\0pw"s) + "\r\n");
  ASSERT_EQ(ev.kind, Kind::kAuthenticate) << "authzid equal to authcid";
  EXPECT_EQ(ev.user, "alice");
}

TEST(Pop3Session, AuthPlainWithContinuation) {
  Fixture f;
  Event ev = f.Feed("AUTH PLAIN\r\n");
  EXPECT_EQ(ev.kind, Kind::kNone);
  EXPECT_EQ(f.out, "+ \r\n");
  ev = f.Feed(Base64("\0alice\0secret"s) + "\r\n");
  ASSERT_EQ(ev.kind, Kind::kAuthenticate);
  EXPECT_EQ(ev.user, "alice");
  EXPECT_EQ(ev.password, "secret");

  Fixture c;
  c.Feed("AUTH PLAIN\r\n*\r\n");
  EXPECT_EQ(c.out, "+ \r\n-ERR authentication cancelled\r\n");
  c.Feed("USER alice\r\n");
  EXPECT_EQ(c.out, "+OK send PASS\r\n") << "back in AUTHORIZATION";

  // A command where the response is due is taken as the response.
  Fixture q;
  q.Feed("AUTH PLAIN\r\nQUIT\r\n");
  EXPECT_EQ(q.out, "+ \r\n-ERR [AUTH] PLAIN message has no NUL separator\r\n") << "QUIT is valid base64";
  EXPECT_FALSE(q.session.closed());
}

TEST(Pop3Session, AuthPlainFailures) {
  Fixture f;
  f.Feed("AUTH PLAIN " + Base64("bob\0alice\0secret"s) + "\r\n");
  EXPECT_EQ(f.out, "-ERR [AUTH] authorization identity must be empty or equal to the user name\r\n");
  f.Feed("AUTH PLAIN AGFsaWNlAHNlY3JldA\r\n");
  EXPECT_EQ(f.out, "-ERR invalid SASL response: base64 length is not a multiple of 4\r\n");
  f.Feed("AUTH PLAIN AGFsaWNl*HNlY3JldA==\r\n");
  EXPECT_EQ(f.out, "-ERR invalid SASL response: invalid base64 character\r\n");
  f.Feed("AUTH PLAIN =\r\n");
  EXPECT_EQ(f.out, "-ERR [AUTH] PLAIN message has no NUL separator\r\n") << "= is an empty response";
  f.Feed("AUTH PLAIN " + Base64("\0alice\0"s) + "\r\n");
  EXPECT_EQ(f.out, "-ERR [AUTH] PLAIN message has an empty password\r\n");
  f.Feed("AUTH PLAIN\r\n" + Base64("\0\xff\0pw"s) + "\r\n");
  EXPECT_EQ(f.out, "+ \r\n-ERR [AUTH] PLAIN message is not valid UTF-8\r\n");
  f.Feed("AUTH PLAIN a b\r\n");
  EXPECT_EQ(f.out, "-ERR syntax: AUTH PLAIN [initial-response]\r\n");
  f.Feed("AUTH LOGIN\r\n");
  EXPECT_EQ(f.out, "-ERR unrecognized authentication mechanism\r\n");
  f.Feed("AUTH CRAM-MD5 abc\r\n");
  EXPECT_EQ(f.out, "-ERR unrecognized authentication mechanism\r\n");
  f.Feed("AUTH\r\n");
  EXPECT_EQ(f.out, "+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n");
  f.Feed("APOP alice 0123456789abcdef0123456789abcdef\r\n");
  EXPECT_EQ(f.out, "-ERR APOP not supported\r\n");
}

TEST(Pop3Session, AuthLinesMayBeLongerThanCommands) {
  Limits l;
  l.max_command_line = 64;
  l.max_auth_line = 1024;
  Fixture f(PlainOk(), l);
  std::string pw(300, 'p');
  Event ev = f.Feed("AUTH PLAIN " + Base64("\0alice\0"s + pw) + "\r\n");
  ASSERT_EQ(ev.kind, Kind::kAuthenticate) << f.out;
  EXPECT_EQ(ev.password, pw);
  f.Auth(AuthResult::kBadCredentials);
  ev = f.Feed("AUTH PLAIN\r\n" + Base64("\0alice\0"s + pw) + "\r\n");
  ASSERT_EQ(ev.kind, Kind::kAuthenticate) << "the continuation line too";
  f.Auth(AuthResult::kBadCredentials);

  f.Feed("USER " + std::string(100, 'u') + "\r\n");
  EXPECT_EQ(f.out, "-ERR line too long\r\n");
  f.Feed("AUTH PLAIN " + std::string(1100, 'A') + "\r\nNOOP\r\n");
  EXPECT_EQ(f.out, "-ERR line too long\r\n-ERR command not valid in the AUTHORIZATION state\r\n");
  f.Feed("AUTH PLAIN\r\n" + std::string(1100, 'A') + "\r\nUSER alice\r\n");
  EXPECT_EQ(f.out, "+ \r\n-ERR line too long\r\n+OK send PASS\r\n") << "a response too long cancels";
}

TEST(Pop3Session, TransactionCommandsNeedLogin) {
  for (std::string_view cmd : {"STAT", "LIST", "LIST 1", "RETR 1", "DELE 1", "NOOP", "RSET", "TOP 1 0", "UIDL"}) {
    Fixture f;
    Event ev = f.Feed(std::string(cmd) + "\r\n");
    EXPECT_EQ(ev.kind, Kind::kNone) << cmd;
    EXPECT_EQ(f.out, "-ERR command not valid in the AUTHORIZATION state\r\n") << cmd;
  }
}

TEST(Pop3Session, AuthorizationCommandsAfterLogin) {
  Fixture f;
  f.Login();
  for (std::string_view cmd : {"USER bob", "PASS x", "AUTH PLAIN", "AUTH", "APOP a b", "STLS"}) {
    EXPECT_EQ(f.Feed(std::string(cmd) + "\r\n").kind, Kind::kNone) << cmd;
    EXPECT_EQ(f.out, "-ERR command not valid in the TRANSACTION state\r\n") << cmd;
  }
}

TEST(Pop3Session, StatListUidl) {
  Fixture f;
  f.Login();
  f.Feed("STAT\r\n");
  EXPECT_EQ(f.out, "+OK 3 325\r\n");
  f.Feed("LIST\r\n");
  EXPECT_EQ(f.out, "+OK 3 messages (325 octets)\r\n1 120\r\n2 200\r\n3 5\r\n.\r\n");
  f.Feed("LIST 2\r\n");
  EXPECT_EQ(f.out, "+OK 2 200\r\n");
  f.Feed("UIDL\r\n");
  EXPECT_EQ(f.out, "+OK unique-id listing follows\r\n1 uid-1\r\n2 uid-2\r\n3 uid-3\r\n.\r\n");
  f.Feed("uidl 3\r\n");
  EXPECT_EQ(f.out, "+OK 3 uid-3\r\n");
  f.Feed("LIST 0\r\nLIST 4\r\nLIST 99999999999999999999999\r\nUIDL 4\r\n");
  EXPECT_EQ(f.out, "-ERR no such message\r\n-ERR no such message\r\n-ERR no such message\r\n-ERR no such message\r\n");
  f.Feed("LIST x\r\nLIST -1\r\nLIST 1 2\r\nUIDL 1x\r\n");
  EXPECT_EQ(f.out,
            "-ERR invalid message number\r\n-ERR invalid message number\r\n-ERR invalid message number\r\n"
            "-ERR invalid message number\r\n");
  f.Feed("STAT 1\r\nNOOP\r\nNOOP x\r\n");
  EXPECT_EQ(f.out, "-ERR syntax: STAT\r\n+OK\r\n-ERR syntax: NOOP\r\n");
}

TEST(Pop3Session, EmptyMaildrop) {
  Fixture f;
  f.Login({});
  f.Feed("STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\n");
  EXPECT_EQ(f.out, "+OK 0 0\r\n+OK 0 messages (0 octets)\r\n.\r\n+OK unique-id listing follows\r\n.\r\n"
                   "-ERR no such message\r\n");
}

TEST(Pop3Session, DeleteHidesAndRsetRestores) {
  Fixture f;
  f.Login();
  f.Feed("DELE 1\r\n");
  EXPECT_EQ(f.out, "+OK message 1 deleted\r\n");
  f.Feed("DELE 1\r\nRETR 1\r\nTOP 1 0\r\nLIST 1\r\nUIDL 1\r\n");
  EXPECT_EQ(f.out,
            "-ERR message 1 already deleted\r\n-ERR message 1 already deleted\r\n"
            "-ERR message 1 already deleted\r\n-ERR message 1 already deleted\r\n"
            "-ERR message 1 already deleted\r\n");
  f.Feed("STAT\r\nLIST\r\nUIDL\r\n");
  EXPECT_EQ(f.out,
            "+OK 2 205\r\n+OK 2 messages (205 octets)\r\n2 200\r\n3 5\r\n.\r\n"
            "+OK unique-id listing follows\r\n2 uid-2\r\n3 uid-3\r\n.\r\n")
      << "numbers are not reassigned";
  f.Feed("DELE 9\r\nDELE\r\n");
  EXPECT_EQ(f.out, "-ERR no such message\r\n-ERR invalid message number\r\n");
  f.Feed("RSET\r\n");
  EXPECT_EQ(f.out, "+OK maildrop has 3 messages (325 octets)\r\n");
  f.Feed("STAT\r\nRSET x\r\n");
  EXPECT_EQ(f.out, "+OK 3 325\r\n-ERR syntax: RSET\r\n");
}

TEST(Pop3Session, RetrAndTopAreHandedToTheServer) {
  Fixture f;
  f.Login();
  Event ev = f.Feed("RETR 2\r\nSTAT\r\n");
  ASSERT_EQ(ev.kind, Kind::kRetrieve);
  EXPECT_EQ(ev.message, 2u);
  EXPECT_FALSE(ev.top_lines.has_value());
  EXPECT_EQ(ev.status, "+OK 200 octets\r\n");
  EXPECT_EQ(f.out, "") << "the server sends the status with the content";
  EXPECT_TRUE(f.session.awaiting());
  // More input waits behind the message.
  EXPECT_EQ(f.Feed("NOOP\r\n").kind, Kind::kNone);
  EXPECT_EQ(f.out, "");
  ev = f.Retrieved();
  EXPECT_EQ(ev.kind, Kind::kNone);
  EXPECT_EQ(f.out, "+OK 3 325\r\n+OK\r\n");

  ev = f.Feed("TOP 3 0\r\n");
  ASSERT_EQ(ev.kind, Kind::kRetrieve);
  EXPECT_EQ(ev.message, 3u);
  ASSERT_TRUE(ev.top_lines.has_value());
  EXPECT_EQ(*ev.top_lines, 0u);
  EXPECT_EQ(ev.status, "+OK top of message follows\r\n");
  f.Retrieved();
  ev = f.Feed("top 1 25\r\n");
  ASSERT_EQ(ev.kind, Kind::kRetrieve);
  EXPECT_EQ(*ev.top_lines, 25u);
  f.Retrieved();

  f.Feed("TOP 1\r\nTOP 1 x\r\nTOP 1 -1\r\nTOP x 1\r\nTOP 9 1\r\nRETR\r\nRETR 4\r\n");
  EXPECT_EQ(f.out,
            "-ERR syntax: TOP message lines\r\n-ERR syntax: TOP message lines\r\n"
            "-ERR syntax: TOP message lines\r\n-ERR invalid message number\r\n-ERR no such message\r\n"
            "-ERR invalid message number\r\n-ERR no such message\r\n");
}

TEST(Pop3Session, RetrieveFailureBeforeTheStatus) {
  Fixture f;
  f.Login();
  ASSERT_EQ(f.Feed("RETR 1\r\n").kind, Kind::kRetrieve);
  EXPECT_EQ(f.Retrieved(RetrieveResult::kUnavailable).kind, Kind::kNone);
  EXPECT_EQ(f.out, "-ERR [SYS/TEMP] message 1 cannot be read now, try again later\r\n");
  f.Feed("STAT\r\n");
  EXPECT_EQ(f.out, "+OK 3 325\r\n");
}

TEST(Pop3Session, QuitInTransactionUpdates) {
  Fixture f;
  f.Login();
  Event ev = f.Feed("DELE 3\r\nDELE 1\r\nQUIT\r\nSTAT\r\n");
  ASSERT_EQ(ev.kind, Kind::kQuit);
  EXPECT_EQ(ev.deleted, (std::vector<size_t>{1, 3}));
  EXPECT_EQ(f.out, "+OK message 3 deleted\r\n+OK message 1 deleted\r\n") << "no +OK before the update";
  ev = f.Quit(true);
  EXPECT_EQ(ev.kind, Kind::kClose);
  EXPECT_EQ(f.out, "+OK pop.test POP3 holdfast signing off\r\n") << "the buffered STAT never runs";
  EXPECT_TRUE(f.session.closed());

  Fixture e;
  e.Login();
  ev = e.Feed("DELE 2\r\nRSET\r\nQUIT\r\n");
  ASSERT_EQ(ev.kind, Kind::kQuit);
  EXPECT_TRUE(ev.deleted.empty()) << "RSET unmarked it";
  EXPECT_EQ(e.Quit(false).kind, Kind::kClose);
  EXPECT_EQ(e.out, "-ERR [SYS/TEMP] some deleted messages not removed\r\n");
  e.Feed("QUIT x\r\n");
  EXPECT_EQ(e.out, "");

  Fixture s;
  s.Login();
  s.Feed("QUIT now\r\n");
  EXPECT_EQ(s.out, "-ERR syntax: QUIT\r\n");
}

TEST(Pop3Session, QuitInAuthorizationCloses) {
  Fixture f;
  Event ev = f.Feed("QUIT\r\nUSER alice\r\n");
  EXPECT_EQ(ev.kind, Kind::kClose);
  EXPECT_EQ(f.out, "+OK pop.test POP3 holdfast signing off\r\n");
  EXPECT_EQ(f.Feed("NOOP\r\n").kind, Kind::kClose);
  EXPECT_EQ(f.out, "");
  // Nothing to complete: ignored.
  EXPECT_EQ(f.Quit(true).kind, Kind::kClose);
  EXPECT_EQ(f.out, "");
}

TEST(Pop3Session, CompletionsOutOfTurnAreIgnored) {
  Fixture f;
  EXPECT_EQ(f.Auth(AuthResult::kOk, Drop3()).kind, Kind::kNone);
  EXPECT_FALSE(f.session.authenticated());
  EXPECT_EQ(f.Retrieved().kind, Kind::kNone);
  EXPECT_EQ(f.Quit(true).kind, Kind::kNone);
  EXPECT_EQ(f.out, "");
  ASSERT_EQ(f.Feed("USER a\r\nPASS b\r\n").kind, Kind::kAuthenticate);
  EXPECT_EQ(f.Retrieved().kind, Kind::kNone) << "the wrong completion";
  EXPECT_EQ(f.Quit(true).kind, Kind::kNone);
  EXPECT_TRUE(f.session.awaiting());
  EXPECT_EQ(f.out, "");
}

TEST(Pop3Session, BadBytesAndEmptyLines) {
  Fixture f;
  f.Feed("NO\0OP\r\n"s);
  EXPECT_EQ(f.out, "-ERR command contains a NUL byte\r\n");
  f.Feed("CA\rPA\r\n");
  EXPECT_EQ(f.out, "-ERR command contains a bare CR\r\n");
  f.Feed("CAPA\x1b\r\n");
  EXPECT_EQ(f.out, "-ERR command contains control byte 0x1b\r\n");
  f.Feed("\r\n\n");
  EXPECT_EQ(f.out, "-ERR empty command\r\n-ERR empty command\r\n");
  f.Feed("XYZZY\r\nLAST\r\nC\xc3\x84PA\r\n");
  EXPECT_EQ(f.out, "-ERR unknown command\r\n-ERR unknown command\r\n-ERR unknown command\r\n");
  f.Login();
  f.Feed("RETR\x00 1\r\n"s);
  EXPECT_EQ(f.out, "-ERR command contains a NUL byte\r\n");
}

TEST(Pop3Session, OneMegabyteLineIsDroppedNotBuffered) {
  Fixture f;
  std::string chunk(4096, 'A');
  size_t replies = 0;
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(f.Feed(chunk).kind, Kind::kNone);
    replies += f.out.size();
    if (i == 0) {
      EXPECT_EQ(f.out, "-ERR line too long\r\n") << "answered before the line ends";
    }
    EXPECT_LT(f.session.buffered(), 4096u);
  }
  EXPECT_EQ(replies, std::string("-ERR line too long\r\n").size()) << "once per line";
  f.Feed("still the same line\r\nCAPA\r\n");
  EXPECT_TRUE(f.out.starts_with("+OK capability list follows\r\n")) << f.out;
  // A line exactly at the limit is fine; one byte more is not.
  Limits l;
  l.max_command_line = 32;
  Fixture g(PlainOk(), l);
  g.Feed("USER " + std::string(25, 'u') + "\r\n");  // 32 bytes with CRLF
  EXPECT_EQ(g.out, "+OK send PASS\r\n");
  g.Feed("USER " + std::string(26, 'u') + "\r\n");
  EXPECT_EQ(g.out, "-ERR line too long\r\n");
}

TEST(Pop3Session, TooManyErrorsClose) {
  Limits l;
  l.max_errors = 3;
  Fixture f(PlainOk(), l);
  f.Feed("X\r\nY\r\nCAPA\r\nX\r\nY\r\n");
  EXPECT_FALSE(f.session.closed()) << "a good command resets the count";
  Event ev = f.Feed("Z\r\nCAPA\r\n");
  EXPECT_EQ(ev.kind, Kind::kClose);
  EXPECT_EQ(f.out, "-ERR unknown command (too many errors, closing connection)\r\n");
  EXPECT_TRUE(f.session.closed());
}

TEST(Pop3Session, Abort) {
  Fixture f;
  f.Login();
  ASSERT_EQ(f.Feed("DELE 1\r\nRETR 2\r\n").kind, Kind::kRetrieve);
  f.out.clear();
  f.session.Abort("idle\r\ntimeout", &f.out);
  EXPECT_EQ(f.out, "-ERR idle??timeout\r\n");
  EXPECT_TRUE(f.session.closed());
  EXPECT_EQ(f.Retrieved().kind, Kind::kClose);
  EXPECT_EQ(f.out, "");
}

// A server that answers every event at once, and the transcript it sends.
struct Transcript {
  std::string out;
  std::vector<std::vector<size_t>> quits;
  bool closed = false;
  bool operator==(const Transcript&) const = default;
};

constexpr std::string_view kStoredMessage = "Subject: x\n\n.line\nmore\n";

Transcript Play(std::string_view input, std::mt19937* rng, size_t max_chunk, Options options = PlainOk()) {
  Session s(options, {});
  Transcript t;
  t.out = s.Greeting();
  bool tls_pending = false;
  auto handle = [&](Event ev) {
    while (ev.kind != Kind::kNone && ev.kind != Kind::kClose) {
      if (ev.kind == Kind::kAuthenticate) {
        AuthResult r = ev.password == "secret" ? AuthResult::kOk
                       : ev.password == "busy" ? AuthResult::kInUse
                                               : AuthResult::kBadCredentials;
        ev = s.CompleteAuth(r, Drop3(), &t.out);
      } else if (ev.kind == Kind::kRetrieve) {
        t.out += ev.status;
        DotStuffer d = ev.top_lines ? DotStuffer::Top(*ev.top_lines) : DotStuffer();
        d.Append(kStoredMessage, &t.out);
        d.Finish(&t.out);
        ev = s.CompleteRetrieve(RetrieveResult::kSent, &t.out);
      } else if (ev.kind == Kind::kQuit) {
        t.quits.push_back(ev.deleted);
        ev = s.CompleteQuit(true, &t.out);
      } else if (ev.kind == Kind::kStartTls) {
        // The handshake completes after the input: what follows STLS in it
        // is discarded however it was split.
        tls_pending = true;
        break;
      }
    }
    if (ev.kind == Kind::kClose) t.closed = true;
  };
  while (!input.empty()) {
    size_t n = max_chunk == 0 ? input.size() : std::min<size_t>(input.size(), 1 + (*rng)() % max_chunk);
    handle(s.Feed(input.substr(0, n), &t.out));
    input.remove_prefix(n);
  }
  if (tls_pending) handle(s.TlsStarted(&t.out));
  return t;
}

void ExpectSplitInvariant(std::string_view script, Options options = PlainOk()) {
  std::mt19937 rng(2449);
  Transcript whole = Play(script, &rng, 0, options);
  EXPECT_EQ(Play(script, &rng, 1, options), whole) << "one byte at a time";
  for (size_t max_chunk : {2, 3, 7, 64}) {
    for (int i = 0; i < 20; ++i) EXPECT_EQ(Play(script, &rng, max_chunk, options), whole) << max_chunk;
  }
}

TEST(Pop3Session, PipelinedSessionAnySplit) {
  std::string script =
      "CAPA\r\nNOOP\r\nUSER alice\r\nPASS wrong\r\nAUTH PLAIN\r\n*\r\nUSER alice\r\nPASS busy\r\n"
      "USER alice\nPASS secret\nSTAT\r\nLIST\r\nLIST 2\r\nUIDL\r\nUIDL 9\r\nRETR 1\r\nTOP 2 0\r\n"
      "TOP 3 1\r\nDELE 1\r\nRETR 1\r\nLIST\r\nRSET\r\nDELE 2\r\nDELE 3\r\nNOOP\r\n" +
      std::string(600, 'x') + "\r\nNO\0OP\r\n\r\nstat\r\nQUIT\r\nNOOP\r\n"s;
  ExpectSplitInvariant(script);
  std::mt19937 rng(1);
  Transcript t = Play(script, &rng, 0);
  EXPECT_EQ(t.quits, (std::vector<std::vector<size_t>>{{2, 3}}));
  EXPECT_TRUE(t.closed);
  EXPECT_NE(t.out.find("+OK 120 octets\r\nSubject: x\r\n\r\n..line\r\nmore\r\n.\r\n"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("+OK top of message follows\r\nSubject: x\r\n\r\n.\r\n"), std::string::npos);
}

TEST(Pop3Session, AuthPlainAnySplit) {
  ExpectSplitInvariant("AUTH PLAIN " + Base64("\0alice\0wrong"s) + "\r\nAUTH PLAIN\r\n" +
                       Base64("\0alice\0secret"s) + "\r\nSTAT\r\nQUIT\r\n");
  ExpectSplitInvariant("AUTH PLAIN\r\n" + std::string(9000, 'A') + "\r\nAUTH PLAIN " +
                       std::string(9000, 'A') + "\nQUIT\n");
}

TEST(Pop3Session, StlsAnySplit) {
  ExpectSplitInvariant("CAPA\r\nSTLS\r\nUSER alice\r\nPASS secret\r\nQUIT\r\n", TlsOnly());
  std::mt19937 rng(1);
  Transcript t = Play("STLS\r\nUSER alice\r\nPASS secret\r\nQUIT\r\n", &rng, 1, TlsOnly());
  EXPECT_EQ(t.out, "+OK pop.test POP3 holdfast ready\r\n+OK Begin TLS negotiation\r\n");
  EXPECT_FALSE(t.closed);
}

}  // namespace
}  // namespace holdfast::pop3
