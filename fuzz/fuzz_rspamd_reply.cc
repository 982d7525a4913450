// rspamd's reply comes over the network from a process holdfast does not
// control: any bytes give a reply or a Status, never a crash, a hang or an
// exception, and what is accepted respects the documented bounds.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "filter/rspamd.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto r = holdfast::ParseRspamdResponse(bytes);
  if (r.ok()) {
    if (r->action.empty() || r->action.size() > 64) __builtin_trap();
    if (r->symbols.size() > 1000 || r->add_headers.size() > 64 || r->remove_headers.size() > 64) __builtin_trap();
    for (const auto& [name, value] : r->add_headers) {
      if (name.empty() || name.find(':') != std::string::npos) __builtin_trap();
      // A value may be folded, but never holds a bare line break that would
      // start a header of its own.
      for (size_t i = 0; i < value.size(); ++i) {
        if (value[i] == '\n' && (i + 1 >= value.size() || (value[i + 1] != ' ' && value[i + 1] != '\t')))
          __builtin_trap();
        if (value[i] == '\r' && (i + 1 >= value.size() || value[i + 1] != '\n')) __builtin_trap();
      }
    }
  } else if (r.status().ok()) {
    __builtin_trap();
  }
  return 0;
}
