// MessageId: the identity of one message everywhere in holdfast. Names built
// from inodes or PIDs get reused, and a late delete of a reused name removes
// another message; this one is never reused.
//
// 128 bits: 48 bits of milliseconds since the Unix epoch, then 80 bits from
// the kernel CSPRNG (getrandom). Within one process, IDs made in the same
// millisecond are strictly increasing (the random part is incremented), so
// they sort in creation order. Across processes, restarts and hosts,
// uniqueness rests on the 80 random bits: a collision needs two IDs in the
// same millisecond with equal random parts (p ~ 2^-80).
//
// Text form: 26 characters of Crockford base32 (0-9 A-Z without I L O U),
// the ULID encoding: safe in file names, case-insensitive on input.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace holdfast {

class MessageId {
 public:
  MessageId() = default;  // the all-zero id, never generated
  static MessageId Generate();
  // A stable id for a message holdfast did not deliver (a file another
  // Maildir tool wrote), derived from its unique Maildir base name.
  static MessageId ForForeignName(std::string_view maildir_base_name);
  static std::optional<MessageId> Parse(std::string_view text);
  static MessageId FromBytes(const std::array<uint8_t, 16>& b) { MessageId m; m.bytes_ = b; return m; }

  std::string ToString() const;
  uint64_t UnixMillis() const;
  const std::array<uint8_t, 16>& bytes() const { return bytes_; }
  bool IsZero() const { return bytes_ == std::array<uint8_t, 16>{}; }

  auto operator<=>(const MessageId&) const = default;

  static constexpr size_t kTextLength = 26;

 private:
  std::array<uint8_t, 16> bytes_{};
};

}  // namespace holdfast
