// DATA/users may be edited by hand or by other tools (it is a Dovecot
// passwd-file): any bytes give users or a line-numbered error.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "users/user_name.h"
#include "users/users_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto users = holdfast::UsersFile::Parse(text);
  if (users.ok()) {
    // What parses must survive a write and a re-read unchanged.
    auto again = holdfast::UsersFile::Parse(holdfast::UsersFile::Format(*users));
    if (!again.ok() || *again != *users) __builtin_trap();
  }
  auto name = holdfast::UserName::Parse(text);
  if (name.ok() && (name->str().find('/') != std::string::npos || name->str().find("..") != std::string::npos))
    __builtin_trap();
  return 0;
}
