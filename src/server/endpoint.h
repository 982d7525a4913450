// "ADDR:PORT" or "[v6]:PORT" (config.cc has already checked the form) as a
// TCP endpoint for a listener.
#pragma once

#include <sys/socket.h>

#include <memory>
#include <stdexcept>

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

// A listening TCP socket handed over by socket activation (notify.h), as
// an acceptor on `io`. Throws like Asio's own constructors.
inline std::unique_ptr<asio::ip::tcp::acceptor> AdoptTcpListener(asio::io_context& io, int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0 ||
      (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
    throw std::runtime_error("descriptor " + std::to_string(fd) + " is not a TCP socket");
  }
  auto a = std::make_unique<asio::ip::tcp::acceptor>(io);
  a->assign(ss.ss_family == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(), fd);
  return a;
}

}  // namespace holdfast
