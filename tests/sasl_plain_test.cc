#include "pop3/sasl_plain.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <random>
#include <string>
#include <string_view>

namespace holdfast::pop3 {
namespace {

using namespace std::string_literals;

// The reference encoder: OpenSSL's.
std::string Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string Decoded(std::string_view text, size_t max = 1024) {
  auto r = DecodeBase64(text, max);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status().ToString();
  return r.ok() ? *r : "";
}

bool Rejected(std::string_view text, size_t max = 1024) { return !DecodeBase64(text, max).ok(); }

TEST(SaslBase64, Rfc4648Vectors) {
  EXPECT_EQ(Decoded(""), "");
  EXPECT_EQ(Decoded("Zg=="), "f");
  EXPECT_EQ(Decoded("Zm8="), "fo");
  EXPECT_EQ(Decoded("Zm9v"), "foo");
  EXPECT_EQ(Decoded("Zm9vYg=="), "foob");
  EXPECT_EQ(Decoded("Zm9vYmE="), "fooba");
  EXPECT_EQ(Decoded("Zm9vYmFy"), "foobar");
  EXPECT_EQ(Decoded("+/+/"), "\xfb\xff\xbf");
}

TEST(SaslBase64, RejectsBadCharacters) {
  EXPECT_TRUE(Rejected("Zm9v\n"));
  EXPECT_TRUE(Rejected("Zm9v\r\n"));
  EXPECT_TRUE(Rejected(" Zm9v"));
  EXPECT_TRUE(Rejected("Zm 9v"));
  EXPECT_TRUE(Rejected("Zm9-")) << "base64url is another alphabet";
  EXPECT_TRUE(Rejected("Zm9_"));
  EXPECT_TRUE(Rejected("Zm9*"));
  EXPECT_TRUE(Rejected("Zm9\0"s));
  EXPECT_TRUE(Rejected("Zm9\xc3"));
}

TEST(SaslBase64, RejectsBadPadding) {
  EXPECT_TRUE(Rejected("Zg")) << "padding is required";
  EXPECT_TRUE(Rejected("Zg="));
  EXPECT_TRUE(Rejected("Zm9"));
  EXPECT_TRUE(Rejected("Z==="));
  EXPECT_TRUE(Rejected("===="));
  EXPECT_TRUE(Rejected("="));
  EXPECT_TRUE(Rejected("Zg==Zg==")) << "padding in the middle";
  EXPECT_TRUE(Rejected("Z=g="));
  EXPECT_TRUE(Rejected("Zm9vYg==="));
  // Non-zero pad bits: another encoder would never write these.
  EXPECT_TRUE(Rejected("Zh=="));
  EXPECT_TRUE(Rejected("Zm9="));
}

TEST(SaslBase64, RejectsTooLong) {
  EXPECT_EQ(Decoded("Zm9v", 3), "foo");
  EXPECT_TRUE(Rejected("Zm9vYg==", 3));
  EXPECT_EQ(Decoded("Zm9vYg==", 4), "foob");
  EXPECT_TRUE(Rejected("Zm9vYmE=", 4));
  EXPECT_TRUE(Rejected(std::string(1 << 20, 'A'), 2048)) << "refused before decoding";
}

TEST(SaslBase64, RoundTripsOpenSslForAnyBytes) {
  std::mt19937 rng(4648);
  for (int iter = 0; iter < 500; ++iter) {
    std::string bytes(rng() % 64, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    std::string text = Encode(bytes);
    EXPECT_EQ(Decoded(text), bytes);
  }
}

TEST(SaslPlainMessage, Accepts) {
  auto c = ParsePlainMessage("\0alice\0secret"s);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->authzid, "");
  EXPECT_EQ(c->authcid, "alice");
  EXPECT_EQ(c->password, "secret");

  c = ParsePlainMessage("alice\0alice\0pass word"s);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->authzid, "alice");
  EXPECT_EQ(c->password, "pass word");

  c = ParsePlainMessage("\0j\xc3\xbcrgen\0p\xc3\xa4ss \xf0\x9f\x98\x80"s);
  ASSERT_TRUE(c.ok()) << "UTF-8 user names and passwords";
  EXPECT_EQ(c->authcid, "j\xc3\xbcrgen");
}

TEST(SaslPlainMessage, RejectsMalformed) {
  EXPECT_FALSE(ParsePlainMessage("").ok());
  EXPECT_FALSE(ParsePlainMessage("alice secret").ok());
  EXPECT_FALSE(ParsePlainMessage("alice\0secret"s).ok()) << "one NUL";
  EXPECT_FALSE(ParsePlainMessage("\0\0secret"s).ok()) << "empty authcid";
  EXPECT_FALSE(ParsePlainMessage("\0alice\0"s).ok()) << "empty password";
  EXPECT_FALSE(ParsePlainMessage("\0alice\0se\0cret"s).ok()) << "three NULs";
  EXPECT_FALSE(ParsePlainMessage("\0\0\0"s).ok());
}

TEST(SaslPlainMessage, RefusesActingAsAnotherUser) {
  auto c = ParsePlainMessage("bob\0alice\0secret"s);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().kind(), Status::Kind::kInvalid);
  EXPECT_NE(c.status().message().find("authorization identity"), std::string::npos);
  EXPECT_FALSE(ParsePlainMessage("Alice\0alice\0secret"s).ok()) << "compared exactly";
}

TEST(SaslPlainMessage, RejectsInvalidUtf8) {
  EXPECT_FALSE(ParsePlainMessage("\0al\xffice\0pw"s).ok());
  EXPECT_FALSE(ParsePlainMessage("\0alice\0pw\xc3"s).ok()) << "truncated sequence";
  EXPECT_FALSE(ParsePlainMessage("\0alice\0\xc0\xafpw"s).ok()) << "overlong '/'";
  EXPECT_FALSE(ParsePlainMessage("\0alice\0\xe0\x80\xafpw"s).ok()) << "overlong, 3 bytes";
  EXPECT_FALSE(ParsePlainMessage("\0alice\0\xed\xa0\x80"s).ok()) << "a surrogate";
  EXPECT_FALSE(ParsePlainMessage("\0alice\0\xf4\x90\x80\x80"s).ok()) << "above U+10FFFF";
  EXPECT_FALSE(ParsePlainMessage("\xff\0alice\0pw"s).ok()) << "in the authzid";
  EXPECT_FALSE(ParsePlainMessage("\0alice\0\x80pw"s).ok()) << "a lone continuation byte";
}

TEST(SaslPlainResponse, DecodesAndParses) {
  auto c = DecodePlainResponse(Encode("\0alice\0secret"s));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->authcid, "alice");
  EXPECT_EQ(c->password, "secret");
  EXPECT_FALSE(DecodePlainResponse("AGFsaWNlAHNlY3JldA").ok()) << "padding missing";
  EXPECT_FALSE(DecodePlainResponse("").ok());
  EXPECT_FALSE(DecodePlainResponse(Encode("\0alice\0"s + std::string(kMaxPlainMessage, 'x'))).ok());
  EXPECT_TRUE(DecodePlainResponse(Encode("\0alice\0"s + std::string(kMaxPlainMessage - 7, 'x'))).ok());
}

}  // namespace
}  // namespace holdfast::pop3
