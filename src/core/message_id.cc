#include "core/message_id.h"

#include <sys/random.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "util/checksum.h"

namespace holdfast {
namespace {

constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void FillRandom(uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t got = ::getrandom(p, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("getrandom failed");  // no entropy source: cannot make safe ids at all
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
}

int DecodeChar(char c) {
  if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  if (c == 'I' || c == 'L') c = '1';
  if (c == 'O') c = '0';
  const char* p = std::strchr(kAlphabet, c);
  return (p == nullptr || c == '\0') ? -1 : static_cast<int>(p - kAlphabet);
}

}  // namespace

MessageId MessageId::Generate() {
  static std::mutex mu;
  static uint64_t last_ms = 0;
  static std::array<uint8_t, 10> last_rand{};

  uint64_t now = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch()).count());
  std::lock_guard<std::mutex> lock(mu);
  if (now <= last_ms) {
    // Same millisecond (or the clock stepped back): keep order by counting up.
    now = last_ms;
    int i = 9;
    while (i >= 0 && ++last_rand[static_cast<size_t>(i)] == 0) --i;
    if (i < 0) ++now;  // 80-bit overflow: borrow the next millisecond
  } else {
    FillRandom(last_rand.data(), last_rand.size());
  }
  last_ms = now;
  MessageId id;
  for (int i = 0; i < 6; ++i) id.bytes_[static_cast<size_t>(i)] = static_cast<uint8_t>(now >> (8 * (5 - i)));
  std::memcpy(id.bytes_.data() + 6, last_rand.data(), 10);
  return id;
}

MessageId MessageId::ForForeignName(std::string_view base) {
  Sha256 h;
  h.Update("holdfast-foreign-maildir-name:");
  h.Update(base);
  auto digest = h.Finish();
  MessageId id;
  std::memcpy(id.bytes_.data(), digest.data(), 16);
  return id;
}

uint64_t MessageId::UnixMillis() const {
  uint64_t ms = 0;
  for (int i = 0; i < 6; ++i) ms = (ms << 8) | bytes_[static_cast<size_t>(i)];
  return ms;
}

std::string MessageId::ToString() const {
  // 128 bits as 26 base32 digits: the first digit carries the top 3 bits.
  std::string out(kTextLength, '0');
  __extension__ unsigned __int128 v = 0;
  for (uint8_t b : bytes_) v = (v << 8) | b;
  for (int i = static_cast<int>(kTextLength) - 1; i >= 0; --i) {
    out[static_cast<size_t>(i)] = kAlphabet[static_cast<unsigned>(v & 31)];
    v >>= 5;
  }
  return out;
}

std::optional<MessageId> MessageId::Parse(std::string_view text) {
  if (text.size() != kTextLength) return std::nullopt;
  __extension__ unsigned __int128 v = 0;
  for (size_t i = 0; i < kTextLength; ++i) {
    int d = DecodeChar(text[i]);
    if (d < 0) return std::nullopt;
    if (i == 0 && d > 7) return std::nullopt;  // would overflow 128 bits
    v = (v << 5) | static_cast<unsigned>(d);
  }
  MessageId id;
  for (int i = 15; i >= 0; --i) {
    id.bytes_[static_cast<size_t>(i)] = static_cast<uint8_t>(v & 0xFF);
    v >>= 8;
  }
  return id;
}

}  // namespace holdfast
