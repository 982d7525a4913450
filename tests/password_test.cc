#include "users/password.h"

#include <crypt.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

namespace holdfast {
namespace {

TEST(PasswordTest, HashVerifies) {
  auto h = HashPassword("correct horse battery staple");
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->rfind("{CRYPT}$y$", 0), 0u) << *h;
  EXPECT_EQ(h->find(':'), std::string::npos);
  EXPECT_TRUE(VerifyPassword("correct horse battery staple", *h));
  EXPECT_FALSE(VerifyPassword("correct horse battery stapl", *h));
  EXPECT_FALSE(VerifyPassword("Correct horse battery staple", *h));
  EXPECT_FALSE(VerifyPassword("", *h));
}

TEST(PasswordTest, SaltDiffers) {
  auto a = HashPassword("same");
  auto b = HashPassword("same");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(VerifyPassword("same", *a));
  EXPECT_TRUE(VerifyPassword("same", *b));
}

TEST(PasswordTest, RejectsBadPasswords) {
  EXPECT_EQ(HashPassword("").status().kind(), Status::Kind::kInvalid);
  EXPECT_EQ(HashPassword(std::string("a\0b", 3)).status().kind(), Status::Kind::kInvalid);
  EXPECT_EQ(HashPassword("a\rb").status().kind(), Status::Kind::kInvalid);
  EXPECT_EQ(HashPassword("a\nb").status().kind(), Status::Kind::kInvalid);
  EXPECT_EQ(HashPassword(std::string(kMaxPasswordLength + 1, 'x')).status().kind(), Status::Kind::kInvalid);
  EXPECT_TRUE(HashPassword(std::string(kMaxPasswordLength, 'x')).ok());
}

TEST(PasswordTest, VerifyNeverMatchesAfterNul) {
  // crypt(3) would see only "abc": the NUL must not truncate the password.
  auto h = HashPassword("abc");
  ASSERT_TRUE(h.ok());
  EXPECT_FALSE(VerifyPassword(std::string("abc\0def", 7), *h));
}

std::string CryptWith(const char* prefix, const char* password) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  EXPECT_NE(crypt_gensalt_rn(prefix, 0, nullptr, 0, setting, sizeof setting), nullptr);
  crypt_data data{};
  const char* out = crypt_rn(password, setting, &data, sizeof data);
  EXPECT_NE(out, nullptr);
  return out ? out : "";
}

TEST(PasswordTest, OtherCryptSchemes) {
  std::string sha512 = CryptWith("$6$", "hunter2");
  ASSERT_EQ(sha512.rfind("$6$", 0), 0u);
  EXPECT_TRUE(VerifyPassword("hunter2", "{SHA512-CRYPT}" + sha512));
  EXPECT_TRUE(VerifyPassword("hunter2", "{CRYPT}" + sha512));
  EXPECT_TRUE(VerifyPassword("hunter2", sha512));  // Dovecot's default scheme is CRYPT
  EXPECT_FALSE(VerifyPassword("hunter3", "{SHA512-CRYPT}" + sha512));

  std::string sha256 = CryptWith("$5$", "hunter2");
  EXPECT_TRUE(VerifyPassword("hunter2", "{SHA256-CRYPT}" + sha256));

  std::string blf = CryptWith("$2b$", "hunter2");
  EXPECT_TRUE(VerifyPassword("hunter2", "{BLF-CRYPT}" + blf));
}

TEST(PasswordTest, RejectsUnknownOrMalformedStored) {
  EXPECT_FALSE(VerifyPassword("x", "{PLAIN}x"));
  EXPECT_FALSE(VerifyPassword("x", "{crypt}$y$"));
  EXPECT_FALSE(VerifyPassword("x", ""));
  EXPECT_FALSE(VerifyPassword("x", "{CRYPT}"));
  EXPECT_FALSE(VerifyPassword("x", "{CRYPT}*0"));
  EXPECT_FALSE(VerifyPassword("x", "*"));
  EXPECT_FALSE(VerifyPassword("x", "{CRYPT}$"));
  EXPECT_FALSE(VerifyPassword("x", "{CRYPT}$y$garbage"));
  EXPECT_FALSE(VerifyPassword("x", "{CRYPT}$6$"));
  EXPECT_FALSE(VerifyPassword("x", std::string("{CRYPT}$6$a\0b", 13)));
  EXPECT_FALSE(VerifyPassword("x", "{CRYPT}" + std::string(5000, '$')));
}

TEST(PasswordTest, Generate) {
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    std::string p = GeneratePassword();
    EXPECT_EQ(p.size(), 20u);
    EXPECT_EQ(p.find_first_of("0O1lIo"), std::string::npos) << p;
    for (char c : p) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << p;
    EXPECT_TRUE(CheckPassword(p).ok());
    seen.insert(p);
  }
  EXPECT_EQ(seen.size(), 50u);
  std::string p = GeneratePassword();
  auto h = HashPassword(p);
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(VerifyPassword(p, *h));
}

}  // namespace
}  // namespace holdfast
