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

// Whether the header at `pos` (which must be whole) checks out.
bool HeaderOk(std::string_view data, size_t pos) {
  uint32_t len = LoadU32(data.data() + pos + 4);
  return data[pos + 8] != 0 && len <= kMaxRecordPayload &&
         Crc32c(data.substr(pos + 4, 5)) == LoadU32(data.data() + pos + 9);
}

// A frame at `pos` that checks out: its total size, else 0.
size_t GoodFrameAt(std::string_view data, size_t pos) {
  if (data.size() - pos < kRecordHeaderSize || !HeaderOk(data, pos)) return 0;
  uint32_t len = LoadU32(data.data() + pos + 4);
  if (data.size() - pos - kRecordHeaderSize < len) return 0;
  if (Crc32c(data.substr(pos + kRecordHeaderSize, len), Crc32c(data.substr(pos + 8, 1))) != LoadU32(data.data() + pos))
    return 0;
  return kRecordHeaderSize + len;
}

LogRecord RecordAt(std::string_view data, size_t pos, size_t frame) {
  return LogRecord{static_cast<uint8_t>(data[pos + 8]), data.substr(pos + kRecordHeaderSize, frame - kRecordHeaderSize),
                   pos};
}

}  // namespace

std::string EncodeRecord(uint8_t type, std::string_view payload) {
  std::string out;
  AppendRecord(&out, type, payload);
  return out;
}

void AppendRecord(std::string* out, uint8_t type, std::string_view payload) {
  const char t = static_cast<char>(type);
  Encoder len_type;
  len_type.U32(static_cast<uint32_t>(payload.size())).U8(type);
  Encoder header;
  header.U32(Crc32c(payload, Crc32c(std::string_view(&t, 1))));
  header.Bytes(len_type.data().data(), 5).U32(Crc32c(len_type.data()));
  if (out->empty()) out->reserve(header.data().size() + payload.size());  // later frames: the string grows geometrically
  *out += header.data();
  *out += payload;
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

  // A crash tears only the last append: its header is cut short, or whole
  // (it checks out) with the payload running past the end of the file, or
  // only zeroes follow (docs/persistence.md: appends survive as a prefix). A
  // damaged header, or a bad payload that fits in the file, is damage --
  // never cut off quietly, since it may have been acknowledged.
  const size_t rest = data.size() - pos;
  bool torn = rest < kRecordHeaderSize || data.find_first_not_of('\0', pos) == std::string_view::npos;
  if (!torn && HeaderOk(data, pos)) {
    torn = pos + kRecordHeaderSize + LoadU32(data.data() + pos + 4) > data.size();
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
