// holdfast.toml: any text gives a Config or an error naming the problem.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = holdfast::ParseConfig(text, "fuzz.toml");
  if (!config.ok() && config.status().message().empty()) __builtin_trap();
  return 0;
}
