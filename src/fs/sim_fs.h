// SimFs: an in-memory Fs that models what survives a power loss, for the
// crash-point tests (the LevelDB fault_injection_test / ALICE idea).
//
// It records every mutating operation. SetCrashAfter(n) makes the machine
// "crash" right after the n-th mutating operation: from then on every call,
// reads included, returns Status::Crashed. AfterCrash() then builds the
// state the machine could reboot into: everything made durable (synced file
// data; directory entries whose directory was synced) plus a chosen legal
// subset of what was not. The model is written down in docs/persistence.md.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fs/fs.h"

namespace holdfast {

// Which of the not-yet-durable operations survive a crash.
struct CrashChoice {
  enum class Mode {
    kDurableOnly,   // power loss at the worst moment: only what was synced
    kEverything,    // the process died (kill -9) but the kernel kept all
    kMask,          // keep exactly the pending ops whose bit is set (closed
                    // under the ordering rules of docs/persistence.md)
  };
  Mode mode = Mode::kDurableOnly;
  std::vector<bool> keep;  // kMask: one entry per PendingOps() index
  // kMask: when the last surviving append of a file is kept, keep only this
  // many of its bytes (a torn write); -1 keeps it whole.
  int64_t torn_bytes = -1;
  std::string Describe() const;
};

class SimFs : public Fs {
 public:
  SimFs();
  ~SimFs() override;

  // --- Fs ---
  Result<std::unique_ptr<File>> CreateExclusive(const std::string& path, int mode = 0600) override;
  Result<std::unique_ptr<File>> OpenRead(const std::string& path) override;
  Result<std::unique_ptr<File>> OpenAppend(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status Link(const std::string& from, const std::string& to) override;
  Status Unlink(const std::string& path) override;
  Status MkDir(const std::string& path, int mode = 0700) override;
  Status SyncDir(const std::string& path) override;
  Result<std::vector<std::string>> ReadDir(const std::string& path) override;
  Result<FileInfo> Stat(const std::string& path) override;
  // "sim-boot-N": N counts the power losses (AfterCrash other than kEverything)
  // this machine came back from.
  std::string BootId() override;
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path,
                                              std::chrono::milliseconds timeout) override;

  // --- crash simulation ---
  // Crash right after the n-th mutating operation from now (n >= 1).
  // 0 disables. Mutating: create, append, truncate, sync, syncdata, rename,
  // link, unlink, mkdir, syncdir.
  void SetCrashAfter(uint64_t n);
  bool crashed() const;
  // Mutating operations performed since construction (or the last
  // SetCrashAfter), whether or not a crash is armed.
  uint64_t MutatingOps() const;
  // One line per mutating operation so far, e.g. "rename /a/tmp/x -> /a/new/x".
  std::vector<std::string> OpLog() const;
  // Descriptions of the operations not yet durable, in order.
  std::vector<std::string> PendingOps() const;
  // The state after a reboot. Locks and open files are gone.
  std::unique_ptr<SimFs> AfterCrash(const CrashChoice& choice) const;
  // Crash choices to test at this point: both extremes, then every legal
  // subset of the pending operations when there are at most
  // 2^exhaustive_limit_bits of them, else `samples` seeded random subsets
  // (with some torn appends). Deterministic for a given seed.
  std::vector<CrashChoice> ChoicesToTest(uint64_t seed, int exhaustive_limit_bits = 8,
                                         int samples = 24) const;
  // Makes everything durable now (for test set-up before arming a crash).
  void SyncEverything();

  // --- fault injection ---
  // Appends fail with ENOSPC once the total bytes of all file data would
  // exceed this. 0 = unlimited.
  void SetCapacity(uint64_t bytes);
  // The next call whose op name ("append", "syncdata", "rename", ...) matches
  // fails once with this error (EIO by default) without changing anything.
  void FailNext(const std::string& op, int err = 5 /* EIO */);

  struct Impl;  // public so the File/FileLock classes in sim_fs.cc can reach it

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace holdfast
