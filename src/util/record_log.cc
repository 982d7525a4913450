#include "util/record_log.h"

#include <cstring>

#include "util/checksum.h"

namespace holdfast {
namespace {

uint32_t LoadU32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// A frame at `pos` that checks out: its total size, else 0.
size_t GoodFrameAt(std::string_view data, size_t pos) {
  if (data.size() - pos < kRecordHeaderSize) return 0;
  uint32_t crc = LoadU32(data.data() + pos);
  uint32_t len = LoadU32(data.data() + pos + 4);
  if (len > kMaxRecordPayload || data.size() - pos - kRecordHeaderSize < len) return 0;
  if (data[pos + 8] == 0) return 0;  // type 0 is never written: zeroed space
  if (Crc32c(data.substr(pos + 8, 1 + len)) != crc) return 0;
  return kRecordHeaderSize + len;
}

LogRecord RecordAt(std::string_view data, size_t pos, size_t frame) {
  return LogRecord{static_cast<uint8_t>(data[pos + 8]), data.substr(pos + kRecordHeaderSize, frame - kRecordHeaderSize),
                   pos};
}

}  // namespace

std::string EncodeRecord(uint8_t type, std::string_view payload) {
  std::string body;
  body += static_cast<char>(type);
  body += payload;
  Encoder header;
  header.U32(Crc32c(body)).U32(static_cast<uint32_t>(payload.size()));
  return header.data() + body;
}

ParsedLog ParseRecordLog(std::string_view data) {
  ParsedLog out;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t frame = GoodFrameAt(data, pos);
    if (frame == 0) break;
    out.records.push_back(RecordAt(data, pos, frame));
    pos += frame;
  }
  out.valid_end = pos;
  if (pos == data.size()) return out;

  // A crash tears only the last append: the bad frame runs to the end of the
  // file, or what follows is zeroes. Anything else is damage.
  bool torn = true;
  if (data.size() - pos >= kRecordHeaderSize) {
    uint64_t declared_end = pos + kRecordHeaderSize + LoadU32(data.data() + pos + 4);
    bool all_zero = data.find_first_not_of('\0', pos) == std::string_view::npos;
    torn = all_zero || declared_end >= data.size();
    if (torn && !all_zero) {
      // A plausible length that reaches past the end -- unless good frames
      // follow within it, in which case the length itself is damaged.
      for (size_t p = pos + 1; p + kRecordHeaderSize <= data.size(); ++p) {
        if (GoodFrameAt(data, p) != 0) { torn = false; break; }
      }
    }
  }
  out.tail = torn ? ParsedLog::Tail::kTorn : ParsedLog::Tail::kCorrupt;
  if (!torn) {
    for (size_t p = pos + 1; p < data.size();) {
      size_t frame = GoodFrameAt(data, p);
      if (frame == 0) { ++p; continue; }
      out.salvaged.push_back(RecordAt(data, p, frame));
      p += frame;
    }
  }
  return out;
}

Encoder& Encoder::U32(uint32_t v) {
  for (int i = 0; i < 4; ++i) out_ += static_cast<char>((v >> (8 * i)) & 0xFF);
  return *this;
}
Encoder& Encoder::U64(uint64_t v) {
  for (int i = 0; i < 8; ++i) out_ += static_cast<char>((v >> (8 * i)) & 0xFF);
  return *this;
}

bool Decoder::Take(size_t n, std::string_view* out) {
  if (!ok_ || in_.size() < n) { ok_ = false; return false; }
  *out = in_.substr(0, n);
  in_.remove_prefix(n);
  return true;
}
uint8_t Decoder::U8() {
  std::string_view s;
  return Take(1, &s) ? static_cast<uint8_t>(s[0]) : 0;
}
uint32_t Decoder::U32() {
  std::string_view s;
  return Take(4, &s) ? LoadU32(s.data()) : 0;
}
uint64_t Decoder::U64() {
  std::string_view s;
  if (!Take(8, &s)) return 0;
  return static_cast<uint64_t>(LoadU32(s.data())) | (static_cast<uint64_t>(LoadU32(s.data() + 4)) << 32);
}
void Decoder::Bytes(void* p, size_t n) {
  std::string_view s;
  if (Take(n, &s)) std::memcpy(p, s.data(), n);
  else std::memset(p, 0, n);
}
std::string Decoder::Str(size_t max_len) {
  uint32_t n = U32();
  if (n > max_len) { ok_ = false; return {}; }
  std::string_view s;
  return Take(n, &s) ? std::string(s) : std::string();
}

}  // namespace holdfast
