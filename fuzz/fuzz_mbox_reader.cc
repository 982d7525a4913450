// The mbox parser (src/migrate/mbox_reader.h) on any bytes: however the file
// is cut into chunks it gives the same messages; every message starts at a
// "From " line at the file's start or after an empty line, in file order;
// un-quoting only ever removes bytes; and with mboxo, where nothing is
// un-quoted, each message is exactly the bytes after its envelope line.
//
// Input: byte 0 seeds the chunk sizes; byte 1 even = mboxrd, odd = mboxo;
// the rest is the file.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "migrate/mbox_reader.h"

namespace {

struct Message {
  uint64_t offset;
  std::string from_line, content;
  bool operator==(const Message&) const = default;
};

class Collect : public holdfast::MboxParser::Sink {
 public:
  std::vector<Message> messages;
  bool open = false;
  holdfast::Status OnMessageStart(const holdfast::MboxEnvelope& e) override {
    if (open) __builtin_trap();
    open = true;
    messages.push_back({e.offset, e.from_line, ""});
    return holdfast::Status::Ok();
  }
  holdfast::Status OnMessageData(std::string_view piece) override {
    if (!open || piece.empty()) __builtin_trap();
    messages.back().content.append(piece);
    return holdfast::Status::Ok();
  }
  holdfast::Status OnMessageEnd() override {
    if (!open) __builtin_trap();
    open = false;
    return holdfast::Status::Ok();
  }
};

// Whether a message may start at `offset`: file start, or after an empty line.
bool AfterEmptyLine(std::string_view file, uint64_t offset) {
  std::string_view before = file.substr(0, offset);
  if (before.empty()) return true;
  if (!before.ends_with('\n')) return false;
  before.remove_suffix(1);
  if (before.ends_with('\r')) before.remove_suffix(1);
  return before.empty() || before.ends_with('\n');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t seed = data[0];
  const auto format = (data[1] & 1) != 0 ? holdfast::MboxFormat::kMboxo : holdfast::MboxFormat::kMboxrd;
  std::string_view file(reinterpret_cast<const char*>(data) + 2, size - 2);

  Collect whole;
  holdfast::MboxParser w(format, whole);
  holdfast::Status ws = w.Feed(file);
  if (ws.ok()) ws = w.Finish();

  Collect chunked;
  holdfast::MboxParser c(format, chunked);
  holdfast::Status cs;
  uint32_t state = seed * 2654435761u + 1;
  for (std::string_view rest = file; !rest.empty() && cs.ok();) {
    state ^= state << 13, state ^= state >> 17, state ^= state << 5;  // xorshift32
    size_t n = std::min<size_t>(rest.size(), state % (seed % 16 + 2));  // 0 too: empty chunks
    cs = c.Feed(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  if (cs.ok()) cs = c.Finish();

  if (ws.kind() != cs.kind() || whole.messages != chunked.messages) __builtin_trap();
  if (!ws.ok()) {
    // The only error: text before the first message, found before any message.
    if (ws.kind() != holdfast::Status::Kind::kInvalid || !whole.messages.empty()) __builtin_trap();
    return 0;
  }
  if (whole.open) __builtin_trap();

  uint64_t total = 0;
  for (size_t i = 0; i < whole.messages.size(); ++i) {
    const Message& m = whole.messages[i];
    if (i > 0 && m.offset <= whole.messages[i - 1].offset) __builtin_trap();
    if (m.offset >= file.size() || !file.substr(m.offset).starts_with("From ")) __builtin_trap();
    if (!AfterEmptyLine(file, m.offset)) __builtin_trap();
    if (!file.substr(m.offset).starts_with(m.from_line)) __builtin_trap();
    if (m.from_line.size() > holdfast::MboxParser::kMaxFromLine) __builtin_trap();
    const size_t lf = file.find('\n', m.offset);
    const size_t body = lf == std::string_view::npos ? file.size() : lf + 1;
    if (format == holdfast::MboxFormat::kMboxo && file.substr(body, m.content.size()) != m.content) __builtin_trap();
    if (i + 1 < whole.messages.size() && body + m.content.size() > whole.messages[i + 1].offset) __builtin_trap();
    total += m.content.size();
  }
  if (total > file.size()) __builtin_trap();
  return 0;
}
