// RETR and TOP stream stored messages of any content. Whatever the bytes and
// however they are split into chunks, the wire form must parse as a POP3
// multi-line response that gives the client the message back (CRLF line
// ends), and NetworkSize must equal what the client receives.
//
// Input: byte 0 seeds the chunk sizes; byte 1 is 0 for RETR, else TOP with
// byte 1 - 1 lines; the rest is the stored message.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "pop3/dot_stuff.h"

namespace {

// The client's view of a multi-line response; traps on anything malformed.
std::string Unstuff(std::string_view wire) {
  std::string r;
  while (true) {
    size_t end = wire.find("\r\n");
    if (end == std::string_view::npos) __builtin_trap();
    std::string_view line = wire.substr(0, end);
    if (line.find('\n') != std::string_view::npos) __builtin_trap();
    wire.remove_prefix(end + 2);
    if (line == ".") break;
    if (line.starts_with(".")) {
      if (!line.starts_with("..")) __builtin_trap();
      line.remove_prefix(1);
    }
    r.append(line);
    r.append("\r\n");
  }
  if (!wire.empty()) __builtin_trap();
  return r;
}

std::string Normalized(std::string_view m) {
  std::string r;
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r')) r.push_back('\r');
    r.push_back(m[i]);
  }
  if (!r.empty() && r.back() != '\n') r.append(r.back() == '\r' ? "\n" : "\r\n");
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  std::string_view message(reinterpret_cast<const char*>(data) + 2, size - 2);
  const uint8_t seed = data[0];
  const bool top = data[1] != 0;
  auto make = [&] { return top ? holdfast::pop3::DotStuffer::Top(data[1] - 1u) : holdfast::pop3::DotStuffer(); };

  std::string whole;
  auto w = make();
  w.Append(message, &whole);
  w.Finish(&whole);

  std::string chunked;
  auto c = make();
  holdfast::pop3::NetworkSize net;
  uint32_t state = seed * 2654435761u + 1;
  for (std::string_view rest = message; !rest.empty();) {
    state ^= state << 13, state ^= state >> 17, state ^= state << 5;  // xorshift32
    size_t n = std::min<size_t>(rest.size(), state % (seed % 16 + 2));  // 0 too: empty chunks
    c.Append(rest.substr(0, n), &chunked);
    net.Add(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  c.Finish(&chunked);
  if (chunked != whole) __builtin_trap();

  std::string client = Unstuff(whole);
  std::string expected = Normalized(message);
  if (top) {
    // TOP sends whole lines from the start of the message.
    if (!expected.starts_with(client)) __builtin_trap();
  } else {
    if (client != expected) __builtin_trap();
    if (net.total() != client.size() || holdfast::pop3::NetworkSizeOf(message) != client.size()) __builtin_trap();
  }
  return 0;
}
