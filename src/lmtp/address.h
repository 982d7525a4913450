// Mail addresses as LMTP carries them: the syntax of the path in
// MAIL FROM:<...> / RCPT TO:<...>, and the rule that maps a recipient address
// onto a holdfast user (docs/lmtp.md, "Addresses" and "Recipient to user").
// Both are pure functions of their input.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace holdfast::lmtp {

// RFC 5321 4.5.3.1.3: a path is at most 256 bytes including "<" and ">".
inline constexpr size_t kMaxAddressLength = 254;

// Checks the text between "<" and ">" and returns the mailbox in it, as given
// (case kept), with any source route ("@a,@b:") removed. "" is the null path;
// the caller decides where it is allowed. kInvalid names the broken rule.
// Quoted local parts pass here (they are valid syntax); MapAddressToUser
// refuses them.
Result<std::string> ParsePath(std::string_view inside_brackets);

struct LocalTarget {
  std::string user;    // lowercase; still to be checked by UserName::Parse
  std::string detail;  // the "tag" of user+tag, as given; may be empty
};

// The recipient-to-user rule. `local_domains` are compared without regard to
// case. nullopt when the address cannot name a user: empty, an empty local
// part or domain, or a quoted local part.
std::optional<LocalTarget> MapAddressToUser(std::string_view address,
                                            const std::vector<std::string>& local_domains);

}  // namespace holdfast::lmtp
