// The mailbox index journal is read back after crashes and disk damage:
// any bytes must parse into records or a clear error, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "store/mailbox_index.h"
#include "util/record_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  holdfast::ParsedLog parsed = holdfast::ParseRecordLog(bytes);
  holdfast::MailboxIndex index;
  for (const auto* list : {&parsed.records, &parsed.salvaged}) {
    for (const auto& rec : *list) {
      auto r = holdfast::IndexRecord::Decode(rec.type, rec.payload);
      if (!r.ok()) continue;
      (void)index.Apply(*r);
      // What decodes must encode back to a frame that parses to the same type.
      auto again = holdfast::ParseRecordLog(r->Encode());
      if (again.records.size() != 1 || again.records[0].type != rec.type) __builtin_trap();
    }
  }
  (void)index.Snapshot(0);
  return 0;
}
