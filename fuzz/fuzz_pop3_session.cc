// The POP3 session reads whatever a client sends. Any bytes, split into any
// chunks, must give well-formed reply lines only, the same transcript as the
// same bytes fed at once, and never hold more than a line of input.
//
// Input: byte 0 seeds the chunk sizes (0 = feed everything at once); byte 1
// picks the connection's TLS options; the rest is the client's side.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pop3/dot_stuff.h"
#include "pop3/pop3_session.h"

namespace {

using holdfast::pop3::AuthResult;
using holdfast::pop3::Event;
using holdfast::pop3::MessageInfo;
using holdfast::pop3::RetrieveResult;

// Small, so that short inputs reach every limit.
holdfast::pop3::Limits FuzzLimits() {
  holdfast::pop3::Limits l;
  l.max_command_line = 48;
  l.max_auth_line = 96;
  l.max_errors = 12;
  l.max_auth_failures = 3;
  return l;
}

constexpr std::string_view kStored = "Subject: hi\n\n.dot\nline\r\n..two\nlast";

std::vector<MessageInfo> Maildrop() {
  auto size = holdfast::pop3::NetworkSizeOf(kStored);
  return {{size, "a"}, {size, "b"}, {size, "c"}};
}

struct Transcript {
  std::string out;
  std::vector<std::vector<size_t>> quits;
  bool closed = false;
  bool operator==(const Transcript&) const = default;
};

// Every line ends in CRLF and holds printable ASCII only.
void CheckLines(std::string_view out) {
  while (!out.empty()) {
    size_t end = out.find("\r\n");
    if (end == std::string_view::npos) __builtin_trap();
    for (char c : out.substr(0, end)) {
      if (c < 0x20 || c > 0x7e) __builtin_trap();
    }
    out.remove_prefix(end + 2);
  }
}

Transcript Play(std::string_view input, uint8_t seed, uint8_t flags) {
  const auto limits = FuzzLimits();
  holdfast::pop3::Options options;
  options.hostname = "fuzz.example";
  options.tls_available = flags & 1;
  options.tls_active = flags & 2;
  options.allow_plaintext_auth = flags & 4;
  holdfast::pop3::Session s(options, limits);
  Transcript t;
  t.out = s.Greeting();
  bool tls_pending = false;
  auto handle = [&](Event ev) {
    while (ev.kind != Event::Kind::kNone && ev.kind != Event::Kind::kClose) {
      if (!s.awaiting()) __builtin_trap();
      if (ev.kind == Event::Kind::kAuthenticate) {
        if (ev.user.empty() || ev.password.empty()) __builtin_trap();
        AuthResult r = ev.password == "secret" ? AuthResult::kOk
                       : ev.password == "busy" ? AuthResult::kInUse
                       : ev.password == "temp" ? AuthResult::kTempFailure
                                               : AuthResult::kBadCredentials;
        ev = s.CompleteAuth(r, Maildrop(), &t.out);
      } else if (ev.kind == Event::Kind::kRetrieve) {
        if (ev.message < 1 || ev.message > 3 || !s.authenticated()) __builtin_trap();
        if (ev.message == 3) {
          ev = s.CompleteRetrieve(RetrieveResult::kUnavailable, &t.out);
          continue;
        }
        t.out += ev.status;
        auto d = ev.top_lines ? holdfast::pop3::DotStuffer::Top(*ev.top_lines) : holdfast::pop3::DotStuffer();
        d.Append(kStored, &t.out);
        d.Finish(&t.out);
        ev = s.CompleteRetrieve(RetrieveResult::kSent, &t.out);
      } else if (ev.kind == Event::Kind::kQuit) {
        if (!std::is_sorted(ev.deleted.begin(), ev.deleted.end())) __builtin_trap();
        for (size_t n : ev.deleted) {
          if (n < 1 || n > 3) __builtin_trap();
        }
        t.quits.push_back(ev.deleted);
        ev = s.CompleteQuit(ev.deleted.size() != 2, &t.out);
      } else if (ev.kind == Event::Kind::kStartTls) {
        if (s.buffered() != 0) __builtin_trap();
        // The handshake completes after the input, so what follows STLS is
        // discarded however the input was split.
        tls_pending = true;
        break;
      }
    }
    if (ev.kind == Event::Kind::kClose) {
      if (!s.closed()) __builtin_trap();
      t.closed = true;
    }
    // Only a partial line waits, unless an event holds pipelined input.
    if (!s.awaiting() && s.buffered() >= limits.max_auth_line) __builtin_trap();
  };
  uint32_t state = seed * 2654435761u + 1;
  while (!input.empty()) {
    size_t n = input.size();
    if (seed != 0) {
      state ^= state << 13, state ^= state >> 17, state ^= state << 5;  // xorshift32
      n = std::min<size_t>(n, 1 + state % (seed % 64 + 1));
    }
    handle(s.Feed(input.substr(0, n), &t.out));
    input.remove_prefix(n);
  }
  if (tls_pending) handle(s.TlsStarted(&t.out));
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);
  Transcript whole = Play(input, 0, data[1]);
  CheckLines(whole.out);
  if (data[0] != 0 && !(Play(input, data[0], data[1]) == whole)) __builtin_trap();
  return 0;
}
