// UserName: a validated virtual-user name.
//
// A user name becomes a directory name under DATA/mail/ and the first field
// of a passwd-file line, so the rules below make sure it can never escape the
// data directory or break that file format (docs/users.md):
//  - folded to lowercase ASCII before checking;
//  - 1..128 bytes;
//  - only a-z 0-9 . _ - @ ;
//  - starts with a letter or digit;
//  - never contains "..".
// '+' is rejected: it is reserved for user+tag addressing.
#pragma once

#include <compare>
#include <string>
#include <string_view>

#include "util/status.h"

namespace holdfast {

class UserName {
 public:
  static constexpr size_t kMaxLength = 128;

  // kInvalid with a message naming the broken rule.
  static Result<UserName> Parse(std::string_view raw);

  const std::string& str() const { return name_; }

  friend bool operator==(const UserName& a, const UserName& b) = default;
  friend auto operator<=>(const UserName& a, const UserName& b) = default;

 private:
  explicit UserName(std::string name) : name_(std::move(name)) {}
  std::string name_;
};

}  // namespace holdfast
