// The rspamd client (src/filter/rspamd.cc): ParseRspamdResponse on real
// replies captured from rspamd 3.4 and on broken ones, and RspamdCheck over
// a real socket against dead or misbehaving peers. The end-to-end run against
// a real rspamd is tests/system/test_rspamd_peer.py (and the filter stage's
// system test).
#include "filter/rspamd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

namespace holdfast {
namespace {

#include "rspamd_captured_replies.inc"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

bool Has(const std::vector<std::string>& v, std::string_view s) { return std::find(v.begin(), v.end(), s) != v.end(); }

std::string HeaderValue(const RspamdReply& r, std::string_view name) {
  for (const auto& [n, v] : r.add_headers) {
    if (n == name) return v;
  }
  return "<absent>";
}

std::string Http200(std::string_view body) {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nContent-Type: application/json\r\n\r\n" + std::string(body);
}

// --------------------------------------------------------------------------
// Real replies

TEST(RspamdParse, CleanMessageIsNoAction) {
  auto r = ParseRspamdResponse(kClean);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->action, "no action");
  EXPECT_DOUBLE_EQ(r->score, -0.1);
  EXPECT_DOUBLE_EQ(r->required_score, 15.0);
  EXPECT_TRUE(Has(r->symbols, "MIME_GOOD"));
  EXPECT_EQ(r->symbols.size(), 10u);  // as in the capture
  EXPECT_EQ(r->subject, "");
  EXPECT_EQ(HeaderValue(*r, "X-Spam-Status"), "No, score=-0.10");
  EXPECT_TRUE(HeaderValue(*r, "X-Spamd-Result").starts_with("default: False [-0.10 / 15.00];\r\n\tMIME_GOOD(-0.10)"));
  EXPECT_TRUE(Has(r->remove_headers, "X-Spam"));
  EXPECT_TRUE(Has(r->remove_headers, "X-Spamd-Result"));
  EXPECT_TRUE(Has(r->remove_headers, "X-Spam-Status"));
}

TEST(RspamdParse, GtubeIsReject) {
  auto r = ParseRspamdResponse(kGtube);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->action, "reject");
  EXPECT_DOUBLE_EQ(r->score, 15.0);
  EXPECT_EQ(r->symbols, std::vector<std::string>{"GTUBE"});
  EXPECT_TRUE(r->add_headers.empty());
  EXPECT_TRUE(r->remove_headers.empty());
}

TEST(RspamdParse, AddHeaderAndRewriteSubject) {
  auto a = ParseRspamdResponse(kAddHeader);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->action, "add header");
  EXPECT_DOUBLE_EQ(a->score, 6.9);
  EXPECT_TRUE(Has(a->symbols, "HOLDFAST_TEST_ADD_HEADER"));
  EXPECT_EQ(HeaderValue(*a, "X-Spam-Status"), "Yes, score=6.90");

  auto s = ParseRspamdResponse(kRewriteSubject);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->action, "rewrite subject");
  EXPECT_EQ(s->subject, "***SPAM*** HOLDFAST-TEST-REWRITE-SUBJECT lunch");
  EXPECT_TRUE(Has(s->symbols, "HOLDFAST_TEST_REWRITE_SUBJECT"));
}

TEST(RspamdParse, EmptyMessage) {
  auto r = ParseRspamdResponse(kEmptyBody);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->action, "no action");
  EXPECT_TRUE(r->symbols.empty());
}

TEST(RspamdParse, ChunkedIsTheSameReply) {
  auto plain = ParseRspamdResponse(kClean);
  auto chunked = ParseRspamdResponse(kCleanChunked);
  ASSERT_TRUE(chunked.ok()) << chunked.status().ToString();
  EXPECT_EQ(chunked->action, plain->action);
  EXPECT_EQ(chunked->symbols, plain->symbols);
  EXPECT_EQ(chunked->add_headers, plain->add_headers);
}

TEST(RspamdParse, ServerErrorIsBusy) {
  // rspamd's own answer to an unknown path: 500 with a JSON error.
  auto r = ParseRspamdResponse(kBadPath);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kBusy) << r.status().ToString();
  EXPECT_NE(r.status().message().find("invalid command"), std::string::npos);
  auto u = ParseRspamdResponse("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(u.status().kind(), Status::Kind::kBusy);
}

TEST(RspamdParse, OtherNon2xxIsInvalid) {
  for (std::string_view code : {"400 Bad Request", "404 Not Found", "413 Payload Too Large", "302 Found", "101 Switching"}) {
    std::string resp = "HTTP/1.1 " + std::string(code) + "\r\nContent-Length: 2\r\n\r\n{}";
    auto r = ParseRspamdResponse(resp);
    ASSERT_FALSE(r.ok()) << code;
    EXPECT_EQ(r.status().kind(), Status::Kind::kInvalid) << code << ": " << r.status().ToString();
  }
}

TEST(RspamdParse, MalformedJsonIsCorrupt) {
  for (std::string_view body : {"", "{", "not json", "[]", "42", "\"no action\"", "{\"score\": 1}",
                                "{\"action\": 5}", "{\"action\": \"\"}", "{\"action\": \"no\\naction\"}",
                                "{\"action\": \"no action\"", "{\"error\": \"boom\"}",
                                "{\"action\": \"no action\"} trailing"}) {
    auto r = ParseRspamdResponse(Http200(body));
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.status().kind(), Status::Kind::kCorrupt) << body << ": " << r.status().ToString();
  }
  auto e = ParseRspamdResponse(Http200("{\"error\": \"boom\"}"));
  EXPECT_NE(e.status().message().find("boom"), std::string::npos);
}

TEST(RspamdParse, EveryTruncationIsBusy) {
  // A short read anywhere (in the status line, the headers, the body) is the
  // scanner's fault: temporary, never a parse of half a reply.
  for (size_t n = 0; n < kClean.size(); ++n) {
    auto r = ParseRspamdResponse(kClean.substr(0, n));
    ASSERT_FALSE(r.ok()) << n;
    ASSERT_EQ(r.status().kind(), Status::Kind::kBusy) << n << ": " << r.status().ToString();
  }
  // Chunked: complete once the last-chunk line "0\r\n" is in.
  const size_t last = kCleanChunked.rfind("\r\n0\r\n") + 5;
  for (size_t n = 0; n < last; ++n) {
    auto r = ParseRspamdResponse(kCleanChunked.substr(0, n));
    ASSERT_FALSE(r.ok()) << n;
    ASSERT_EQ(r.status().kind(), Status::Kind::kBusy) << n << ": " << r.status().ToString();
  }
  EXPECT_TRUE(ParseRspamdResponse(kCleanChunked.substr(0, last)).ok());
}

TEST(RspamdParse, NotHttpIsBusy) {
  for (std::string_view s : {"SPAMD/1.1 0 EX_OK\r\n\r\n", "garbage\r\n\r\n{}", "HTTP/1.1 abc OK\r\n\r\n", "\r\n\r\n"}) {
    auto r = ParseRspamdResponse(s);
    ASSERT_FALSE(r.ok()) << s;
    EXPECT_EQ(r.status().kind(), Status::Kind::kBusy) << s;
  }
}

TEST(RspamdParse, Framing) {
  const std::string body = R"({"action":"reject","score":20})";
  // Header names in any case, LF-only line ends, trailing bytes after Content-Length.
  auto a = ParseRspamdResponse("HTTP/1.0 200 OK\ncontent-length: " + std::to_string(body.size()) + "\n\n" + body + "junk");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->action, "reject");
  // No length: the body runs to the end.
  auto b = ParseRspamdResponse("HTTP/1.1 200 OK\r\n\r\n" + body);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_DOUBLE_EQ(b->score, 20);
  // Chunk extensions and upper-case hex.
  auto c = ParseRspamdResponse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA;x=y\r\n" + body.substr(0, 10) +
                               "\r\n" + [&] {
                                 char hex[16];
                                 std::snprintf(hex, sizeof hex, "%X", static_cast<unsigned>(body.size() - 10));
                                 return std::string(hex);
                               }() + "\r\n" + body.substr(10) + "\r\n0\r\nX-Trailer: 1\r\n\r\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->action, "reject");
  // What does not frame is refused, not guessed at.
  for (std::string bad : {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n" + body,
                          "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n" + body,
                          "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n" + body,
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n" + body,
                          "HTTP/1.1 200 OK\r\nContent-Encoding: zstd\r\n\r\n" + body,
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + body,
                          std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n")}) {
    auto r = ParseRspamdResponse(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().kind(), Status::Kind::kCorrupt) << bad << ": " << r.status().ToString();
  }
}

TEST(RspamdParse, HeadersAsObjectsStringsAndArrays) {
  auto r = ParseRspamdResponse(Http200(R"({"action":"add header","milter":{
      "add_headers":{"X-A":{"value":"one","order":0},"X-B":"two","X-C":[{"value":"c1"},"c2",7,{"order":1}],
                     "X-Folded":{"value":"a;\r\n\tb"},
                     "Bad:Name":"x","X-Bare-LF":"a\nb","X-Bare-CR":"a\rb","X-Nul":"a\u0000b","":"x",
                     "X-NotString":{"value":5},"X-Null":null},
      "remove_headers":{"X-Spam":1,"Bad Name":0,"X-Other":-1}}})"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::vector<std::pair<std::string, std::string>> want = {
      {"X-A", "one"}, {"X-B", "two"}, {"X-C", "c1"}, {"X-C", "c2"}, {"X-Folded", "a;\r\n\tb"}};
  EXPECT_EQ(r->add_headers, want);
  EXPECT_EQ(r->remove_headers, (std::vector<std::string>{"X-Other", "X-Spam"}));  // JSON objects iterate sorted
  // remove_headers as a list of names.
  auto l = ParseRspamdResponse(Http200(R"({"action":"no action","milter":{"remove_headers":["X-Spam",3]}})"));
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->remove_headers, std::vector<std::string>{"X-Spam"});
}

TEST(RspamdParse, WrongTypesAreIgnoredNotTrusted) {
  auto r = ParseRspamdResponse(Http200(
      R"({"action":"no action","score":"9","required_score":null,"subject":7,"symbols":5,"milter":"x"})"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->score, 0);
  EXPECT_EQ(r->required_score, 0);
  EXPECT_EQ(r->subject, "");
  EXPECT_TRUE(r->symbols.empty());
  EXPECT_TRUE(r->add_headers.empty());
  // A subject that would inject a header line is dropped.
  auto s = ParseRspamdResponse(Http200(R"({"action":"rewrite subject","subject":"hi\r\nBcc: x@y"})"));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->subject, "");
  // Older replies carry symbols as a list of objects.
  auto o = ParseRspamdResponse(Http200(R"({"action":"no action","symbols":[{"name":"A"},{"name":2},"B",{"name":"C"}]})"));
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->symbols, (std::vector<std::string>{"A", "C"}));
}

TEST(RspamdParse, ListsAreBounded) {
  std::string body = R"({"action":"reject","symbols":{)";
  auto item = [&](int i, const char* prefix, const char* value) {
    if (i) body += ',';
    body += '"';
    body += prefix;
    body += std::to_string(i);
    body += "\":";
    body += value;
  };
  for (int i = 0; i < 5000; ++i) item(i, "S", "{}");
  body += R"(},"milter":{"add_headers":{)";
  for (int i = 0; i < 500; ++i) item(i, "X-H", "\"v\"");
  body += R"(},"remove_headers":{)";
  for (int i = 0; i < 500; ++i) item(i, "X-R", "0");
  body += "}}}";
  auto r = ParseRspamdResponse(Http200(body));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->symbols.size(), 1000u);
  EXPECT_EQ(r->add_headers.size(), 64u);
  EXPECT_EQ(r->remove_headers.size(), 64u);
  // Overlong names and values are dropped.
  auto l = ParseRspamdResponse(Http200(R"({"action":"no action","symbols":{")" + std::string(300, 'S') +
                                       R"(":{}},"milter":{"add_headers":{"X-Long":")" + std::string(20000, 'v') + "\"}}}"));
  ASSERT_TRUE(l.ok());
  EXPECT_TRUE(l->symbols.empty());
  EXPECT_TRUE(l->add_headers.empty());
  // The whole reply is capped.
  std::string huge = "HTTP/1.1 200 OK\r\n\r\n{\"action\":\"no action\",\"x\":\"" + std::string(5u << 20, 'x') + "\"}";
  EXPECT_EQ(ParseRspamdResponse(huge).status().kind(), Status::Kind::kCorrupt);
  // Deep nesting must not blow the stack or throw.
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(ParseRspamdResponse(Http200(deep)).status().kind(), Status::Kind::kCorrupt);
}

// --------------------------------------------------------------------------
// RspamdCheck over real sockets

FilterInput Input() {
  FilterInput in;
  in.id = MessageId::Generate();
  in.client = "192.0.2.7:40123";
  in.helo = "client.example.org";
  in.mail_from = "alice@example.org";
  in.rcpts = {"bob@example.com", "carol@example.com"};
  in.body = "Subject: hi\r\n\r\nhello\r\n";
  return in;
}

// A loopback listener on an ephemeral port.
struct Listener {
  int fd = -1;
  int port = 0;
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd, 8), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Listener() {
    if (fd >= 0) ::close(fd);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
};

// Reads an HTTP request with a Content-Length body (what the client sends).
std::string ReadRequest(int c) {
  std::string req;
  char buf[65536];
  for (;;) {
    size_t hend = req.find("\r\n\r\n");
    if (hend != std::string::npos) {
      size_t cl = req.find("Content-Length: ");
      size_t len = cl == std::string::npos ? 0 : std::stoul(req.substr(cl + 16));
      if (req.size() >= hend + 4 + len) return req;
    }
    pollfd p{c, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return req;
    ssize_t n = ::recv(c, buf, sizeof buf, 0);
    if (n <= 0) return req;
    req.append(buf, static_cast<size_t>(n));
  }
}

// Serves one connection on a thread: `serve(fd)` does the talking.
struct OneShotServer {
  Listener l;
  std::thread t;
  explicit OneShotServer(std::function<void(int)> serve) {
    t = std::thread([this, serve] {
      pollfd p{l.fd, POLLIN, 0};
      if (::poll(&p, 1, 10000) <= 0) return;
      int c = ::accept(l.fd, nullptr, nullptr);
      if (c < 0) return;
      serve(c);
      ::close(c);
    });
  }
  ~OneShotServer() { t.join(); }
};

void SendAll(int c, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::send(c, s.data(), s.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    s.remove_prefix(static_cast<size_t>(n));
  }
}

TEST(RspamdCheck, ClosedPortIsBusyAtOnce) {
  int port;
  {
    Listener l;  // take a free port, then close it: nothing listens there
    port = l.port;
  }
  auto t0 = Clock::now();
  auto r = RspamdCheck("127.0.0.1:" + std::to_string(port), Input(), 5000ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kBusy) << r.status().ToString();
  EXPECT_LT(Clock::now() - t0, 1s);
}

TEST(RspamdCheck, SilentPeerIsBusyAfterTheTimeout) {
  // The kernel completes the handshake (backlog); nobody ever reads or answers.
  Listener l;
  auto t0 = Clock::now();
  auto r = RspamdCheck(l.address(), Input(), 400ms);
  auto took = Clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kBusy) << r.status().ToString();
  EXPECT_GE(took, 400ms);
  EXPECT_LT(took, 3s);
}

TEST(RspamdCheck, SlowDripIsBoundByOneDeadline) {
  // A peer that sends a byte now and then: the deadline is for the whole
  // exchange, not per read.
  std::atomic<bool> stop{false};
  OneShotServer s([&](int c) {
    ReadRequest(c);
    std::string_view reply = kGtube;
    for (size_t i = 0; i < reply.size() && !stop; ++i) {
      SendAll(c, reply.substr(i, 1));
      std::this_thread::sleep_for(50ms);
    }
  });
  auto t0 = Clock::now();
  auto r = RspamdCheck(s.l.address(), Input(), 500ms);
  auto took = Clock::now() - t0;
  stop = true;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kBusy) << r.status().ToString();
  EXPECT_LT(took, 2s);
}

TEST(RspamdCheck, SendsTheEnvelopeAndParsesTheReply) {
  std::string request;
  OneShotServer s([&](int c) {
    request = ReadRequest(c);
    SendAll(c, kGtube);
  });
  FilterInput in = Input();
  in.rcpts.push_back("evil@example.com\r\nX-Injected: 1");
  in.helo = "helo\nPass: all";
  auto r = RspamdCheck(s.l.address(), in, 5000ms);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->action, "reject");

  size_t hend = request.find("\r\n\r\n");
  ASSERT_NE(hend, std::string::npos);
  std::string head = request.substr(0, hend + 2);
  EXPECT_TRUE(head.starts_with("POST /checkv2 HTTP/1.1\r\n")) << head;
  EXPECT_NE(head.find("\r\nConnection: close\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nContent-Length: " + std::to_string(in.body.size()) + "\r\n"), std::string::npos);
  EXPECT_NE(head.find("\r\nQueue-Id: " + in.id.ToString() + "\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nFrom: alice@example.org\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nRcpt: bob@example.com\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nRcpt: carol@example.com\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nIP: 192.0.2.7\r\n"), std::string::npos) << head;
  // Control characters in envelope values never start a new request header.
  EXPECT_NE(head.find("\r\nRcpt: evil@example.comX-Injected: 1\r\n"), std::string::npos) << head;
  EXPECT_NE(head.find("\r\nHelo: heloPass: all\r\n"), std::string::npos) << head;
  EXPECT_EQ(head.find("\r\nX-Injected"), std::string::npos) << head;
  EXPECT_EQ(head.find("\r\nPass:"), std::string::npos) << head;
  EXPECT_EQ(request.substr(hend + 4), in.body);
}

TEST(RspamdCheck, EnvelopeEdgeCases) {
  std::string request;
  OneShotServer s([&](int c) {
    request = ReadRequest(c);
    SendAll(c, kClean);
  });
  FilterInput in = Input();
  in.mail_from = "";       // the null sender of a bounce
  in.client = "local";     // holdfast deliver, a Unix socket: no IP
  in.helo = "";
  auto r = RspamdCheck(s.l.address(), in, 5000ms);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->action, "no action");
  EXPECT_NE(request.find("\r\nFrom: <>\r\n"), std::string::npos) << request;
  EXPECT_EQ(request.find("\r\nIP:"), std::string::npos) << request;
  EXPECT_EQ(request.find("\r\nHelo:"), std::string::npos) << request;
}

TEST(RspamdCheck, ClientAddressForms) {
  for (auto [client, ip] : std::vector<std::pair<std::string, std::string>>{
           {"::1:40000", "::1"}, {"[2001:db8::1]:25", "2001:db8::1"}, {"203.0.113.9", "203.0.113.9"},
           {"2001:db8::2", "2001:db8::2"}, {"host.example:25", ""}, {"", ""}}) {
    std::string request;
    OneShotServer s([&](int c) {
      request = ReadRequest(c);
      SendAll(c, kClean);
    });
    FilterInput in = Input();
    in.client = client;
    auto r = RspamdCheck(s.l.address(), in, 5000ms);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    if (ip.empty()) {
      EXPECT_EQ(request.find("\r\nIP:"), std::string::npos) << client;
    } else {
      EXPECT_NE(request.find("\r\nIP: " + ip + "\r\n"), std::string::npos) << client << "\n" << request;
    }
  }
}

TEST(RspamdCheck, ReplyWithLengthDoesNotWaitForClose) {
  // A peer that answers in full but keeps the connection open: the client
  // has all it needs at Content-Length and must not sit out the timeout.
  std::atomic<bool> done{false};
  OneShotServer s([&](int c) {
    ReadRequest(c);
    SendAll(c, kAddHeader);
    for (int i = 0; i < 100 && !done; ++i) std::this_thread::sleep_for(20ms);
  });
  auto t0 = Clock::now();
  auto r = RspamdCheck(s.l.address(), Input(), 5000ms);
  done = true;
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->action, "add header");
  EXPECT_LT(Clock::now() - t0, 1500ms);
}

TEST(RspamdCheck, ShortReplyIsBusy) {
  OneShotServer s([&](int c) {
    ReadRequest(c);
    SendAll(c, kClean.substr(0, kClean.size() / 2));
  });
  auto r = RspamdCheck(s.l.address(), Input(), 5000ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kBusy) << r.status().ToString();
}

TEST(RspamdCheck, PeerClosingWithoutAnswerIsBusy) {
  OneShotServer s([&](int c) { ReadRequest(c); });
  auto r = RspamdCheck(s.l.address(), Input(), 5000ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kBusy) << r.status().ToString();
}

TEST(RspamdCheck, EarlyAnswerToABigMessageNeverHangs) {
  // The peer answers before reading the body and closes: the client gets the
  // answer or a temporary failure, within the deadline, and no SIGPIPE.
  OneShotServer s([&](int c) {
    char buf[1024];
    ::recv(c, buf, sizeof buf, 0);
    SendAll(c, kBadPath);
  });
  FilterInput in = Input();
  in.body.assign(32u << 20, 'x');
  auto t0 = Clock::now();
  auto r = RspamdCheck(s.l.address(), in, 5000ms);
  EXPECT_LT(Clock::now() - t0, 5500ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kBusy) << r.status().ToString();
}

TEST(RspamdCheck, BadAddresses) {
  for (std::string a : {"", "127.0.0.1", "127.0.0.1:", ":11333", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:x"}) {
    auto r = RspamdCheck(a, Input(), 1000ms);
    ASSERT_FALSE(r.ok()) << a;
    EXPECT_EQ(r.status().kind(), Status::Kind::kInvalid) << a << ": " << r.status().ToString();
  }
  auto n = RspamdCheck("no-such-host.invalid:11333", Input(), 1000ms);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().kind(), Status::Kind::kBusy) << n.status().ToString();
}

TEST(RspamdCheck, Ipv6Literal) {
  int fd = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 4) != 0) {
    if (fd >= 0) ::close(fd);
    GTEST_SKIP() << "no IPv6 loopback";
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  std::string request;
  std::thread t([fd, &request] {
    int c = ::accept(fd, nullptr, nullptr);
    if (c < 0) return;
    request = ReadRequest(c);
    SendAll(c, kGtube);
    ::close(c);
  });
  auto r = RspamdCheck("[::1]:" + std::to_string(ntohs(a.sin6_port)), Input(), 5000ms);
  t.join();
  EXPECT_NE(request.find("\r\nHost: [::1]\r\n"), std::string::npos) << request;
  ::close(fd);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->action, "reject");
}

}  // namespace
}  // namespace holdfast
