// File names in a Maildir come from any tool (or any user with a shell).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "store/maildir_name.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view name(reinterpret_cast<const char*>(data), size);
  auto parsed = holdfast::ParseMaildirName(name);
  if (parsed) {
    // The base name is a prefix of the name and never contains ':'.
    if (name.substr(0, parsed->base.size()) != parsed->base) __builtin_trap();
    if (parsed->base.find(':') != std::string::npos) __builtin_trap();
    (void)parsed->Identity();
  }
  (void)holdfast::SanitizeHostForMaildir(name);
  (void)holdfast::MessageId::Parse(name);
  return 0;
}
