#include "util/status.h"

#include <cstring>

namespace holdfast {

Status Status::FromErrno(const std::string& what, int err) {
  std::string m = what + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return Status(Kind::kNotFound, m, err);
    case EEXIST:
      return Status(Kind::kExists, m, err);
    case EWOULDBLOCK:
      return Status(Kind::kBusy, m, err);
    case EINVAL:
    case ENAMETOOLONG:
      return Status(Kind::kInvalid, m, err);
    default:
      return Status(Kind::kIo, m, err);
  }
}

std::string Status::ToString() const {
  switch (kind_) {
    case Kind::kOk: return "ok";
    case Kind::kNotFound: return "not found: " + message_;
    case Kind::kExists: return "already exists: " + message_;
    case Kind::kInvalid: return "invalid: " + message_;
    case Kind::kCorrupt: return "corrupt: " + message_;
    case Kind::kIo: return "I/O error: " + message_;
    case Kind::kBusy: return "busy: " + message_;
    case Kind::kCrashed: return "crashed: " + message_;
  }
  return message_;
}

}  // namespace holdfast
