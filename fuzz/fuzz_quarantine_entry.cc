// Quarantine entries (DATA/quarantine/<id>.q) are read back by the server at
// start and by `holdfast queue quarantine`: any bytes must parse into an
// entry or a clear kCorrupt, never a crash; what parses must encode back to
// bytes that parse to the same entry. Format: docs/filters.md, "Quarantine".
//
// Each input is tried raw and, so that mutations reach the decoders, as two
// payloads `len:u16le payload` framed with valid checksums as a header and
// a message record.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "spool/quarantine.h"
#include "util/record_log.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void CheckEntry(std::string_view bytes) {
  auto e = holdfast::Quarantine::Parse(bytes);
  if (!e.ok()) {
    Check(e.status().kind() == holdfast::Status::Kind::kCorrupt);
    return;
  }
  Check(!e->msg.rcpts.empty() && e->reason.size() <= 4096 && e->history.size() <= 1000);
  auto again = holdfast::Quarantine::Parse(holdfast::Quarantine::Encode(*e));
  Check(again.ok());
  Check(again->msg.id == e->msg.id && again->msg.body == e->msg.body && again->reason == e->reason &&
        again->history == e->history && again->quarantined_ms == e->quarantined_ms &&
        again->msg.rcpts.size() == e->msg.rcpts.size() && again->msg.released == e->msg.released);
}

std::string Framed(std::string_view in) {
  std::string out;
  for (uint8_t type : {1, 2}) {
    size_t len = in.size() >= 2 ? (static_cast<uint8_t>(in[0]) | (static_cast<size_t>(static_cast<uint8_t>(in[1])) << 8)) : 0;
    in.remove_prefix(std::min<size_t>(2, in.size()));
    len = std::min(len, in.size());
    out += holdfast::EncodeRecord(type, in.substr(0, len));
    in.remove_prefix(len);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  CheckEntry(bytes);
  CheckEntry(Framed(bytes));
  return 0;
}
