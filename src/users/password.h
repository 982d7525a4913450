// Password hashing for the users file, in Dovecot passwd-file syntax
// ("{SCHEME}hash"), so Dovecot can read the same file (docs/users.md).
#pragma once

#include <string>
#include <string_view>

#include "util/status.h"

namespace holdfast {

// libxcrypt's limit (CRYPT_MAX_PASSPHRASE_SIZE - 1): crypt(3) refuses longer
// passphrases, in holdfast and in Dovecot alike.
constexpr size_t kMaxPasswordLength = 511;

// Ok unless the password is empty, longer than kMaxPasswordLength bytes, or
// holds NUL, CR or LF (kInvalid): such a password could not be typed at a
// POP3 prompt or passed to crypt(3) intact.
Status CheckPassword(std::string_view password);

// "{CRYPT}$y$..." - yescrypt with a fresh random salt from libxcrypt.
// kInvalid per CheckPassword; kIo if libcrypt fails.
Result<std::string> HashPassword(std::string_view password);

// True iff `password` matches `stored`. Accepts the crypt(3) schemes
// {CRYPT}, {SHA512-CRYPT}, {SHA256-CRYPT}, {BLF-CRYPT}, and a bare "$id$..."
// string (Dovecot's default scheme for passwd-file is CRYPT). Anything else
// ({PLAIN}, DES crypt, malformed) is false. The final comparison is constant
// time.
bool VerifyPassword(std::string_view password, std::string_view stored);

// 20 characters from an alphabet without look-alikes (no 0/O/o, 1/l/I),
// from getrandom(2): about 116 bits.
std::string GeneratePassword();

}  // namespace holdfast
