// Checksums: CRC32C frames every journal record (cheap, catches torn
// writes); SHA-256 identifies a stored message's bytes for fsck.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace holdfast {

uint32_t Crc32c(std::string_view data, uint32_t crc = 0);
// The same, a byte at a time from a table: what Crc32c uses on a CPU
// without SSE4.2 (and what the tests compare the fast path against).
uint32_t Crc32cPortable(std::string_view data, uint32_t crc = 0);

// Incremental SHA-256 (OpenSSL EVP underneath).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::string_view data);
  std::array<uint8_t, 32> Finish();

 private:
  void* ctx_;
};

std::string HexEncode(const uint8_t* data, size_t n);
template <size_t N>
std::string HexEncode(const std::array<uint8_t, N>& a) { return HexEncode(a.data(), N); }

}  // namespace holdfast
