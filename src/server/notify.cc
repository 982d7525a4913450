#include "server/notify.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

namespace holdfast {

void NotifyServiceManager(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if (len >= sizeof(addr.sun_path)) return;
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  (void)::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr),
                 static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
  ::close(fd);
}

Result<std::map<std::string, std::vector<int>>> TakeListenSockets() {
  std::map<std::string, std::vector<int>> out;
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (pid == nullptr || fds == nullptr || std::to_string(::getpid()) != pid) return out;
  const char* names_env = std::getenv("LISTEN_FDNAMES");
  const std::string names = names_env != nullptr ? names_env : "";
  char* end = nullptr;
  const long n = std::strtol(fds, &end, 10);
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (end == fds || *end != '\0' || n < 0 || n > 64) return Status::Invalid("LISTEN_FDS is not a count: " + std::string(fds));
  size_t pos = 0;
  for (long i = 0; i < n; ++i) {
    const int fd = 3 + static_cast<int>(i);
    size_t colon = names.find(':', pos);
    std::string name = pos <= names.size() ? names.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos) : "";
    pos = colon == std::string::npos ? names.size() + 1 : colon + 1;
    if (name != "lmtp" && name != "pop3" && name != "pop3s" && name != "metrics") {
      return Status::Invalid("socket activation: descriptor " + std::to_string(fd) + " is named '" + name +
                             "'; name each socket lmtp, pop3, pop3s or metrics (FileDescriptorName=)");
    }
    int type = 0, listening = 0;
    socklen_t len = sizeof type;
    socklen_t len2 = sizeof listening;
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM ||
        ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len2) != 0 || !listening) {
      return Status::Invalid("socket activation: descriptor " + std::to_string(fd) + " (" + name +
                             ") is not a listening stream socket");
    }
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    out[name].push_back(fd);
  }
  return out;
}

}  // namespace holdfast
