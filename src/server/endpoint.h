// "ADDR:PORT" or "[v6]:PORT" (config.cc has already checked the form) as a
// TCP endpoint for a listener.
#pragma once

#include <asio.hpp>
#include <string>

#include "util/status.h"

namespace holdfast {

inline Result<asio::ip::tcp::endpoint> ParseEndpoint(const std::string& addr) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) return Status::Invalid("listener address must be ADDR:PORT: " + addr);
  std::string host = addr.substr(0, colon);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  std::error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  if (ec) return Status::Invalid("not an IP address: " + host);
  unsigned long port = 0;
  try {
    port = std::stoul(addr.substr(colon + 1));
  } catch (const std::exception&) {
    return Status::Invalid("bad port in " + addr);
  }
  if (port > 65535) return Status::Invalid("bad port in " + addr);
  return asio::ip::tcp::endpoint(ip, static_cast<unsigned short>(port));
}

}  // namespace holdfast
