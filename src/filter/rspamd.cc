#include "filter/rspamd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include <nlohmann/json.hpp>

namespace holdfast {

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

// Bounds on what a reply may carry into holdfast. Beyond them the rest is
// dropped (lists) or the reply refused (size).
constexpr size_t kRspamdMaxReply = 4u << 20;      // bytes of the whole HTTP response
constexpr size_t kRspamdMaxHeaderBlock = 64u << 10;  // bytes of the HTTP header block
constexpr size_t kRspamdMaxSymbols = 1000;
constexpr size_t kRspamdMaxSymbolName = 256;
constexpr size_t kRspamdMaxAddHeaders = 64;
constexpr size_t kRspamdMaxRemoveHeaders = 64;
constexpr size_t kRspamdMaxHeaderName = 256;
constexpr size_t kRspamdMaxHeaderValue = 16u << 10;
constexpr size_t kRspamdMaxAction = 64;
constexpr size_t kRspamdMaxSubject = 8u << 10;
constexpr size_t kRspamdMaxEnvelopeValue = 1000;  // one request header value

// ---------------------------------------------------------------------------
// HTTP response framing

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// A printable one-line excerpt of peer bytes, for messages.
std::string Excerpt(std::string_view s, size_t max = 80) {
  std::string out;
  for (char c : s.substr(0, max)) {
    unsigned char u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  if (s.size() > max) out += "...";
  return out;
}

struct HttpResponse {
  int status = 0;
  std::string reason;
  std::string body;
};

// Where the header block ends (the index of the first body byte), or npos.
size_t HeaderEnd(std::string_view r) {
  size_t crlf = r.find("\r\n\r\n");
  size_t lf = r.find("\n\n");
  if (crlf == std::string_view::npos && lf == std::string_view::npos) return std::string_view::npos;
  if (lf == std::string_view::npos || (crlf != std::string_view::npos && crlf < lf)) return crlf + 4;
  return lf + 2;
}

// Decodes a chunked body. Busy when it stops early (a short read), Corrupt
// when a chunk size does not parse.
Result<std::string> DecodeChunked(std::string_view in, size_t max) {
  std::string out;
  for (;;) {
    size_t eol = in.find('\n');
    if (eol == std::string_view::npos) return Status::Busy("rspamd: truncated chunked reply");
    std::string_view line = Trim(in.substr(0, eol));
    in.remove_prefix(eol + 1);
    size_t semi = line.find(';');  // chunk extensions
    if (semi != std::string_view::npos) line = Trim(line.substr(0, semi));
    uint64_t size = 0;
    auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
    if (line.empty() || ec != std::errc() || p != line.data() + line.size() || size > max) {
      return Status::Corrupt("rspamd: bad chunk size '" + Excerpt(line) + "'");
    }
    if (size == 0) return out;  // trailers, if any, are ignored
    if (out.size() + size > max) return Status::Corrupt("rspamd: chunked reply too large");
    if (in.size() < size) return Status::Busy("rspamd: truncated chunked reply");
    out.append(in.substr(0, size));
    in.remove_prefix(size);
    // CRLF (or LF) after the chunk data.
    if (in.starts_with("\r\n")) {
      in.remove_prefix(2);
    } else if (in.starts_with("\n")) {
      in.remove_prefix(1);
    } else if (in.empty() || in == "\r") {
      return Status::Busy("rspamd: truncated chunked reply");
    } else {
      return Status::Corrupt("rspamd: chunk not followed by CRLF");
    }
  }
}

Result<HttpResponse> ParseHttp(std::string_view r) {
  if (r.empty()) return Status::Busy("rspamd: connection closed without a reply");
  size_t hend = HeaderEnd(r);
  if (hend == std::string_view::npos) {
    if (r.size() > kRspamdMaxHeaderBlock) return Status::Busy("rspamd: reply header block too large");
    if (!r.starts_with("HTTP/")) return Status::Busy("rspamd: not an HTTP reply: '" + Excerpt(r) + "'");
    return Status::Busy("rspamd: truncated reply (headers incomplete)");
  }
  if (hend > kRspamdMaxHeaderBlock) return Status::Busy("rspamd: reply header block too large");
  std::string_view head = r.substr(0, hend);
  std::string_view rest = r.substr(hend);

  // Status line: HTTP/1.x SP 3DIGIT SP reason
  size_t eol = head.find('\n');
  std::string_view line = Trim(head.substr(0, eol));
  head.remove_prefix(eol + 1);
  HttpResponse out;
  if (!line.starts_with("HTTP/1.") || line.size() < 12 || line[8] != ' ') {
    return Status::Busy("rspamd: not an HTTP reply: '" + Excerpt(line) + "'");
  }
  std::string_view code = line.substr(9, 3);
  for (char c : code) {
    if (c < '0' || c > '9') return Status::Busy("rspamd: bad HTTP status line: '" + Excerpt(line) + "'");
  }
  if (line.size() > 12 && line[12] != ' ') return Status::Busy("rspamd: bad HTTP status line: '" + Excerpt(line) + "'");
  out.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  out.reason = Excerpt(Trim(line.substr(std::min<size_t>(line.size(), 13))));

  bool chunked = false;
  bool have_length = false;
  uint64_t length = 0;
  while (!head.empty()) {
    eol = head.find('\n');
    std::string_view h = head.substr(0, eol == std::string_view::npos ? head.size() : eol);
    head.remove_prefix(eol == std::string_view::npos ? head.size() : eol + 1);
    h = Trim(h);
    if (h.empty()) continue;
    size_t colon = h.find(':');
    if (colon == std::string_view::npos) continue;  // tolerated, as browsers do
    std::string_view name = Trim(h.substr(0, colon));
    std::string_view value = Trim(h.substr(colon + 1));
    if (IEquals(name, "Transfer-Encoding")) {
      // Only "chunked" is ever applied by rspamd; anything else is not understood.
      if (IEquals(value, "chunked")) {
        chunked = true;
      } else if (!IEquals(value, "identity")) {
        return Status::Corrupt("rspamd: unsupported Transfer-Encoding '" + Excerpt(value) + "'");
      }
    } else if (IEquals(name, "Content-Length")) {
      uint64_t n = 0;
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || ec != std::errc() || p != value.data() + value.size()) {
        return Status::Corrupt("rspamd: bad Content-Length '" + Excerpt(value) + "'");
      }
      if (have_length && n != length) return Status::Corrupt("rspamd: conflicting Content-Length headers");
      have_length = true;
      length = n;
    } else if (IEquals(name, "Content-Encoding")) {
      if (!IEquals(value, "identity")) {
        return Status::Corrupt("rspamd: unsupported Content-Encoding '" + Excerpt(value) + "'");
      }
    }
  }

  if (chunked) {
    HF_ASSIGN_OR_RETURN(out.body, DecodeChunked(rest, kRspamdMaxReply));
  } else if (have_length) {
    if (length > kRspamdMaxReply) return Status::Corrupt("rspamd: reply too large");
    if (rest.size() < length) {
      return Status::Busy("rspamd: truncated reply (" + std::to_string(rest.size()) + " of " +
                          std::to_string(length) + " body bytes)");
    }
    out.body.assign(rest.substr(0, length));
  } else {
    out.body.assign(rest);  // delimited by the end of the connection
  }
  return out;
}

// True once `r` holds a whole response, so reading may stop before EOF.
bool ResponseComplete(std::string_view r) {
  auto parsed = ParseHttp(r);
  if (parsed.ok()) {
    // Without a length the body runs to EOF: never complete before it.
    size_t hend = HeaderEnd(r);
    std::string_view head = r.substr(0, hend);
    std::string lower;
    for (char c : head) lower += Lower(c);
    return lower.find("content-length:") != std::string::npos ||
           lower.find("transfer-encoding:") != std::string::npos;
  }
  return parsed.status().kind() == Status::Kind::kCorrupt;  // more bytes will not help
}

// ---------------------------------------------------------------------------
// The JSON reply

// RFC 5322 field-name: printable ASCII but ':'.
bool ValidHeaderName(std::string_view n) {
  if (n.empty() || n.size() > kRspamdMaxHeaderName) return false;
  for (char c : n) {
    if (c < 33 || c > 126 || c == ':') return false;
  }
  return true;
}

// No NUL, and CR/LF only as a fold: CRLF (or LF) followed by SP or HTAB.
bool ValidHeaderValue(std::string_view v) {
  if (v.size() > kRspamdMaxHeaderValue) return false;
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (c == '\0') return false;
    if (c == '\r') {
      if (i + 1 >= v.size() || v[i + 1] != '\n') return false;
      continue;
    }
    if (c == '\n') {
      if (i + 1 >= v.size() || (v[i + 1] != ' ' && v[i + 1] != '\t')) return false;
    }
  }
  return true;
}

void AddHeader(RspamdReply& out, const std::string& name, const json& v) {
  if (out.add_headers.size() >= kRspamdMaxAddHeaders) return;
  const json* value = &v;
  if (v.is_object()) {
    auto it = v.find("value");
    if (it == v.end()) return;
    value = &*it;
  }
  if (!value->is_string()) return;
  const std::string& s = value->get_ref<const std::string&>();
  if (!ValidHeaderName(name) || !ValidHeaderValue(s)) return;
  out.add_headers.emplace_back(name, s);
}

Result<RspamdReply> ParseReplyJson(std::string_view body) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Corrupt("rspamd: reply is not JSON: '" + Excerpt(body) + "'");
  if (!j.is_object()) return Status::Corrupt("rspamd: reply is not a JSON object");
  RspamdReply out;
  auto action = j.find("action");
  if (action == j.end() || !action->is_string()) {
    auto err = j.find("error");
    if (err != j.end() && err->is_string()) {
      return Status::Corrupt("rspamd: error: " + Excerpt(err->get_ref<const std::string&>(), 200));
    }
    return Status::Corrupt("rspamd: reply has no action");
  }
  out.action = action->get<std::string>();
  if (out.action.empty() || out.action.size() > kRspamdMaxAction) {
    return Status::Corrupt("rspamd: bad action '" + Excerpt(out.action) + "'");
  }
  for (char c : out.action) {
    if (c < 0x20 || c > 0x7e) return Status::Corrupt("rspamd: bad action '" + Excerpt(out.action) + "'");
  }
  if (auto it = j.find("score"); it != j.end() && it->is_number()) out.score = it->get<double>();
  if (auto it = j.find("required_score"); it != j.end() && it->is_number()) out.required_score = it->get<double>();
  if (auto it = j.find("subject"); it != j.end() && it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    // A Subject goes into a header: the same rules as an added header's value.
    if (ValidHeaderValue(s) && s.size() <= kRspamdMaxSubject) out.subject = s;
  }
  if (auto it = j.find("symbols"); it != j.end()) {
    if (it->is_object()) {
      for (auto s = it->begin(); s != it->end() && out.symbols.size() < kRspamdMaxSymbols; ++s) {
        if (!s.key().empty() && s.key().size() <= kRspamdMaxSymbolName) out.symbols.push_back(s.key());
      }
    } else if (it->is_array()) {  // older replies: [{"name": ...}, ...]
      for (const auto& s : *it) {
        if (out.symbols.size() >= kRspamdMaxSymbols) break;
        if (!s.is_object()) continue;
        auto n = s.find("name");
        if (n == s.end() || !n->is_string()) continue;
        const std::string& name = n->get_ref<const std::string&>();
        if (!name.empty() && name.size() <= kRspamdMaxSymbolName) out.symbols.push_back(name);
      }
    }
  }
  if (auto m = j.find("milter"); m != j.end() && m->is_object()) {
    if (auto add = m->find("add_headers"); add != m->end() && add->is_object()) {
      for (auto h = add->begin(); h != add->end(); ++h) {
        if (h->is_array()) {  // one header, several values
          for (const auto& v : *h) AddHeader(out, h.key(), v);
        } else {
          AddHeader(out, h.key(), *h);
        }
      }
    }
    if (auto rm = m->find("remove_headers"); rm != m->end()) {
      auto take = [&](const std::string& name) {
        if (out.remove_headers.size() < kRspamdMaxRemoveHeaders && ValidHeaderName(name)) {
          out.remove_headers.push_back(name);
        }
      };
      if (rm->is_object()) {  // {"X-Spam": 0}: the number says which occurrence
        for (auto h = rm->begin(); h != rm->end(); ++h) take(h.key());
      } else if (rm->is_array()) {
        for (const auto& h : *rm) {
          if (h.is_string()) take(h.get_ref<const std::string&>());
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// The request

// An envelope value as one header value: no CR, LF, NUL or other controls.
std::string HeaderSafe(std::string_view v) {
  std::string out;
  for (char c : v.substr(0, kRspamdMaxEnvelopeValue)) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) continue;
    out += c;
  }
  return std::string(Trim(out));
}

// The IP address of Envelope::client ("1.2.3.4:25", "::1:40000", "[::1]:25",
// a bare address), or "" ("local", anything else).
std::string ClientIp(std::string_view client) {
  auto is_ip = [](std::string_view s) {
    if (s.empty() || s.size() >= INET6_ADDRSTRLEN) return false;
    std::string z(s);
    unsigned char buf[sizeof(in6_addr)];
    return inet_pton(AF_INET, z.c_str(), buf) == 1 || inet_pton(AF_INET6, z.c_str(), buf) == 1;
  };
  if (is_ip(client)) return std::string(client);
  if (client.starts_with('[')) {
    size_t close = client.find(']');
    if (close != std::string_view::npos && is_ip(client.substr(1, close - 1))) {
      return std::string(client.substr(1, close - 1));
    }
    return "";
  }
  size_t colon = client.rfind(':');
  if (colon != std::string_view::npos && is_ip(client.substr(0, colon))) return std::string(client.substr(0, colon));
  return "";
}

// The request rspamd's protocol documents (rspamd.com/doc/developers/protocol.html):
// the envelope as headers, the message as the body. Not sent: "Pass: all"
// (it only turns off rspamd's early stop once a verdict is certain),
// "Hostname" (holdfast does no reverse lookups; rspamd then treats the
// client's name as unknown, as for a client without rDNS), "Settings-ID".
// IP is the LMTP peer: behind an MTA on loopback rspamd sees a local
// client and skips its IP-based rules (docs/rspamd.md).
std::string BuildRequest(const std::string& host, const FilterInput& in) {
  std::string r;
  r.reserve(512 + in.body.size());
  r += "POST /checkv2 HTTP/1.1\r\n";
  const std::string h = HeaderSafe(host);
  r += "Host: " + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + "\r\n";
  r += "Connection: close\r\n";
  r += "User-Agent: holdfast\r\n";
  r += "Content-Length: " + std::to_string(in.body.size()) + "\r\n";
  r += "Queue-Id: " + in.id.ToString() + "\r\n";
  std::string from = HeaderSafe(in.mail_from);
  r += "From: " + (from.empty() ? std::string("<>") : from) + "\r\n";
  for (const auto& rcpt : in.rcpts) {
    std::string v = HeaderSafe(rcpt);
    if (!v.empty()) r += "Rcpt: " + v + "\r\n";
  }
  if (std::string ip = ClientIp(in.client); !ip.empty()) r += "IP: " + ip + "\r\n";
  if (std::string helo = HeaderSafe(in.helo); !helo.empty()) r += "Helo: " + helo + "\r\n";
  r += "\r\n";
  r += in.body;
  return r;
}

// ---------------------------------------------------------------------------
// The socket

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Milliseconds left until `deadline` (rounded up), 0 when past it.
int Remaining(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > 1000000 ? 1000000 : static_cast<int>(left);
}

// Waits for `events` on fd until the deadline: 1 ready, 0 timed out, -1 error.
int WaitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    int ms = Remaining(deadline);
    if (ms == 0) return 0;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) continue;  // re-check the clock
    return 1;
  }
}

bool SplitHostPort(const std::string& address, std::string* host, std::string* port) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 >= address.size()) return false;
  *host = address.substr(0, colon);
  *port = address.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  if (host->empty()) return false;
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port->data(), port->data() + port->size(), p);
  return ec == std::errc() && end == port->data() + port->size() && p >= 1 && p <= 65535;
}

Result<Fd> Connect(const std::string& address, Clock::time_point deadline) {
  std::string host, port;
  if (!SplitHostPort(address, &host, &port)) {
    return Status::Invalid("rspamd: address '" + address + "' is not HOST:PORT");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return Status::Busy("rspamd: cannot resolve " + host + ": " + gai_strerror(rc));
  std::string last = "no address";
  Result<Fd> out = Status::Busy("rspamd: " + address + ": no address");
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) {
      last = std::strerror(errno);
      continue;
    }
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS && errno != EINTR) {
        last = std::strerror(errno);
        continue;
      }
      int w = WaitFor(fd.get(), POLLOUT, deadline);
      if (w == 0) {
        last = "connect timed out";
        break;  // the deadline is shared: no time for another address
      }
      int err = 0;
      socklen_t len = sizeof err;
      if (w < 0 || ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) {
        last = std::strerror(err);
        continue;
      }
    }
    out = std::move(fd);
    break;
  }
  ::freeaddrinfo(res);
  if (!out.ok()) return Status::Busy("rspamd: connect to " + address + ": " + last);
  return out;
}

}  // namespace

Result<RspamdReply> ParseRspamdResponse(std::string_view http_response) {
  if (http_response.size() > kRspamdMaxReply) return Status::Corrupt("rspamd: reply too large");
  HF_ASSIGN_OR_RETURN(HttpResponse http, ParseHttp(http_response));
  if (http.status >= 500) {
    return Status::Busy("rspamd: HTTP " + std::to_string(http.status) + " " + http.reason + ": " +
                        Excerpt(http.body, 200));
  }
  if (http.status < 200 || http.status >= 300) {
    return Status::Invalid("rspamd: HTTP " + std::to_string(http.status) + " " + http.reason + ": " +
                           Excerpt(http.body, 200));
  }
  return ParseReplyJson(http.body);
}

Result<RspamdReply> RspamdCheck(const std::string& address, const FilterInput& in,
                                std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  HF_ASSIGN_OR_RETURN(Fd fd, Connect(address, deadline));
  std::string host, port;
  SplitHostPort(address, &host, &port);
  const std::string request = BuildRequest(host, in);

  // Send the whole request. The peer may answer and close early (an error
  // reply): then what it said is read below.
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int w = WaitFor(fd.get(), POLLOUT, deadline);
      if (w == 0) return Status::Busy("rspamd: " + address + ": timed out sending the message");
      if (w < 0) return Status::Busy("rspamd: " + address + ": poll: " + std::strerror(errno));
      continue;
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) break;
    return Status::Busy("rspamd: " + address + ": send: " + std::strerror(errno));
  }

  std::string reply;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      reply.append(buf, static_cast<size_t>(n));
      if (reply.size() > kRspamdMaxReply) return Status::Corrupt("rspamd: reply larger than 4 MiB");
      if (ResponseComplete(reply)) break;
      continue;
    }
    if (n == 0) break;  // EOF
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int w = WaitFor(fd.get(), POLLIN, deadline);
      if (w == 0) {
        return Status::Busy("rspamd: " + address + ": no reply within " + std::to_string(timeout.count()) + " ms");
      }
      if (w < 0) return Status::Busy("rspamd: " + address + ": poll: " + std::strerror(errno));
      continue;
    }
    if (errno == ECONNRESET && !reply.empty()) break;
    return Status::Busy("rspamd: " + address + ": recv: " + std::strerror(errno));
  }
  if (sent < request.size() && reply.empty()) {
    return Status::Busy("rspamd: " + address + ": connection closed while sending the message");
  }
  return ParseRspamdResponse(reply);
}

}  // namespace holdfast
