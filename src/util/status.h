// Status and Result<T>: errors are values, returned across layers, never
// thrown. A Status says what failed, on which file, and whether retrying later
// could help (Kind), because callers map that onto exit codes and replies.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace holdfast {

class Status {
 public:
  enum class Kind {
    kOk,
    kNotFound,      // the named thing does not exist
    kExists,        // exclusive create found something already there
    kInvalid,       // bad input: permanent, retrying will not help
    kCorrupt,       // stored data failed a checksum or does not parse
    kIo,            // the OS said no (EIO, ENOSPC, ...): temporary
    kBusy,          // a lock was not granted in time: temporary
    kCrashed,       // the simulated machine has crashed (tests only)
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status NotFound(std::string m) { return {Kind::kNotFound, std::move(m)}; }
  static Status Exists(std::string m) { return {Kind::kExists, std::move(m)}; }
  static Status Invalid(std::string m) { return {Kind::kInvalid, std::move(m)}; }
  static Status Corrupt(std::string m) { return {Kind::kCorrupt, std::move(m)}; }
  static Status Io(std::string m, int err = 0) { return {Kind::kIo, std::move(m), err}; }
  static Status Busy(std::string m) { return {Kind::kBusy, std::move(m)}; }
  static Status Crashed(std::string m) { return {Kind::kCrashed, std::move(m)}; }
  // From errno after a failed system call on `what` (a path or a verb + path).
  static Status FromErrno(const std::string& what, int err);

  bool ok() const { return kind_ == Kind::kOk; }
  Kind kind() const { return kind_; }
  int error_number() const { return errno_; }  // 0 unless from the OS
  const std::string& message() const { return message_; }
  std::string ToString() const;
  // True when the same operation may succeed later (I/O, disk full, lock).
  bool IsTemporary() const { return kind_ == Kind::kIo || kind_ == Kind::kBusy || kind_ == Kind::kCrashed; }

 private:
  Status(Kind k, std::string m, int err = 0) : kind_(k), errno_(err), message_(std::move(m)) {}
  Kind kind_ = Kind::kOk;
  int errno_ = 0;
  std::string message_;
};

// Either a value or a non-ok Status.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}                 // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}          // NOLINT: implicit by design
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace holdfast

// Return early from the enclosing function when `expr` is not ok.
#define HF_RETURN_IF_ERROR(expr)                     \
  do {                                               \
    ::holdfast::Status hf_status_ = (expr);          \
    if (!hf_status_.ok()) return hf_status_;         \
  } while (0)

#define HF_CONCAT_INNER(a, b) a##b
#define HF_CONCAT(a, b) HF_CONCAT_INNER(a, b)
// `HF_ASSIGN_OR_RETURN(auto x, F());` declares x from a Result or returns its error.
#define HF_ASSIGN_OR_RETURN(decl, expr) HF_ASSIGN_OR_RETURN_IMPL(HF_CONCAT(hf_result_, __LINE__), decl, expr)
#define HF_ASSIGN_OR_RETURN_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  decl = std::move(tmp).value()
