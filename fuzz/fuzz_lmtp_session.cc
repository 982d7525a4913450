// The LMTP session reads whatever a client sends. Any bytes, split into any
// chunks, must give well-formed replies only, and the same replies and
// messages as the same bytes fed at once.
//
// Input: byte 0 seeds the chunk sizes (0 = feed everything at once; its top
// bit also picks lmtp.bare_lf = "keep"); the rest is the client's side of
// the conversation.
//
// The smuggling oracle: data ends only at CRLF "." CRLF, so no input yields
// more messages than it holds of those terminators.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lmtp/address.h"
#include "lmtp/lmtp_session.h"
#include "users/user_name.h"

namespace {

using holdfast::lmtp::Event;
using holdfast::lmtp::RcptCheck;
using holdfast::lmtp::Recipient;

// Small, so that short inputs reach every limit.
holdfast::lmtp::Limits FuzzLimits(bool keep_bare_lf) {
  holdfast::lmtp::Limits l;
  l.reject_bare_lf = !keep_bare_lf;
  l.max_command_line = 64;
  l.max_data_line = 128;
  l.max_message_size = 2048;
  l.max_recipients = 4;
  l.max_bytes_before_lhlo = 512;
  l.max_errors = 10;
  return l;
}

RcptCheck Resolve(const std::string& address, Recipient* r) {
  if (address.starts_with("t")) return RcptCheck::kTempFail;
  auto target = holdfast::lmtp::MapAddressToUser(address, {"example.org"});
  if (!target || !holdfast::UserName::Parse(target->user).ok()) return RcptCheck::kUnknown;
  r->user = target->user;
  r->detail = target->detail;
  return RcptCheck::kOk;
}

struct Transcript {
  std::string out;
  std::vector<std::string> bodies;
  bool closed = false;
  bool operator==(const Transcript&) const = default;
};

// Every line is "ddd<sep>text\r\n" with printable text; a '-' line is
// followed by another line with the same code.
void CheckReplies(std::string_view out) {
  std::string_view open_code;
  while (!out.empty()) {
    size_t end = out.find("\r\n");
    if (end == std::string_view::npos || end < 4) __builtin_trap();
    std::string_view line = out.substr(0, end);
    if (line[0] < '2' || line[0] > '5') __builtin_trap();
    if (line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9') __builtin_trap();
    if (line[3] != ' ' && line[3] != '-') __builtin_trap();
    for (char c : line.substr(4)) {
      if (c < 0x20 || c > 0x7e) __builtin_trap();
    }
    if (!open_code.empty() && line.substr(0, 3) != open_code) __builtin_trap();
    open_code = line[3] == '-' ? line.substr(0, 3) : std::string_view();
    out.remove_prefix(end + 2);
  }
  if (!open_code.empty()) __builtin_trap();
}

// Overlapping occurrences: "\r\n.\r\n.\r\n" counts twice.
size_t Terminators(std::string_view input) {
  size_t n = 0;
  for (size_t at = input.find("\r\n.\r\n"); at != std::string_view::npos; at = input.find("\r\n.\r\n", at + 1)) ++n;
  return n;
}

Transcript Play(std::string_view input, uint8_t seed, bool keep_bare_lf) {
  const auto limits = FuzzLimits(keep_bare_lf);
  holdfast::lmtp::Session s("fuzz.example", limits, Resolve);
  Transcript t;
  t.out = s.Greeting();
  auto handle = [&](Event ev) {
    while (ev.kind == Event::Kind::kMessage) {
      if (ev.body.size() > limits.max_message_size) __builtin_trap();
      if (ev.envelope.rcpts.empty() || ev.envelope.rcpts.size() > limits.max_recipients) __builtin_trap();
      if (!s.awaiting_completion()) __builtin_trap();
      t.bodies.push_back(ev.body);
      std::vector<holdfast::lmtp::Reply> replies(ev.envelope.rcpts.size(), {250, "2.0.0", "ok"});
      ev = s.CompleteMessage(replies, &t.out);
    }
    if (ev.kind == Event::Kind::kClose) {
      if (!s.closed()) __builtin_trap();
      t.closed = true;
    }
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
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const bool keep_bare_lf = (data[0] & 0x80) != 0;
  Transcript whole = Play(input, 0, keep_bare_lf);
  CheckReplies(whole.out);
  if (whole.bodies.size() > Terminators(input)) __builtin_trap();
  if (data[0] != 0 && !(Play(input, data[0], keep_bare_lf) == whole)) __builtin_trap();
  return 0;
}
