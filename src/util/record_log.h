// Record log framing: the append-only, CRC-framed journal format shared by
// the mailbox index (and later the spool). Format: docs/storage.md, "Record
// framing".
//
//   frame := crc:u32le  length:u32le  type:u8  hcrc:u32le  payload[length]
//   crc  = crc32c(type || payload)
//   hcrc = crc32c(length || type)      the header's own checksum
//
// A reader distinguishes a torn tail (the last append was cut short by a
// crash: drop it) from corruption (something else damaged the file: salvage
// what still checks out and rebuild). The header checksum is what makes that
// reliable: a frame whose header checks out but whose payload runs past the
// end of the file was being written -- whatever its payload holds, even
// bytes that look like frames (a message body can).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace holdfast {

constexpr size_t kRecordHeaderSize = 13;
constexpr uint32_t kMaxRecordPayload = 1u << 30;  // spool records carry whole messages

std::string EncodeRecord(uint8_t type, std::string_view payload);
// The same frame, appended to `out` (several frames, one write).
void AppendRecord(std::string* out, uint8_t type, std::string_view payload);

struct LogRecord {
  uint8_t type;
  std::string_view payload;  // points into the parsed buffer
  uint64_t offset;           // where the frame starts
};

struct ParsedLog {
  enum class Tail { kClean, kTorn, kCorrupt };
  std::vector<LogRecord> records;  // every good frame before the first bad one
  uint64_t valid_end = 0;          // bytes up to the end of the last good frame
  Tail tail = Tail::kClean;
  // kCorrupt only: good frames found past the damage by resynchronising.
  std::vector<LogRecord> salvaged;
};

ParsedLog ParseRecordLog(std::string_view data);

// Little-endian field encoding for record payloads.
class Encoder {
 public:
  // Room for n more bytes: a large payload is then copied once, not regrown.
  Encoder& Reserve(size_t n) { out_.reserve(out_.size() + n); return *this; }
  Encoder& U8(uint8_t v) { out_ += static_cast<char>(v); return *this; }
  Encoder& U32(uint32_t v);
  Encoder& U64(uint64_t v);
  Encoder& Bytes(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); return *this; }
  Encoder& Str(std::string_view s) { U32(static_cast<uint32_t>(s.size())); out_ += s; return *this; }
  const std::string& data() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// Bounds-checked reading; once a read fails, ok() stays false.
class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  uint8_t U8();
  uint32_t U32();
  uint64_t U64();
  void Bytes(void* p, size_t n);
  std::string Str(size_t max_len = 4096);
  bool ok() const { return ok_; }
  bool done() const { return ok_ && in_.empty(); }

 private:
  bool Take(size_t n, std::string_view* out);
  std::string_view in_;
  bool ok_ = true;
};

}  // namespace holdfast
