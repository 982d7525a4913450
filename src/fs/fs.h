// Fs: the one interface through which holdfast touches the file system.
//
// Every mutating code path goes through here so that SimFs (sim_fs.h) can
// record each operation, "crash" after any of them, and hand back the state a
// real machine could come back up with (docs/persistence.md). Paths are plain
// strings; callers build them with path helpers, never from unchecked input.
//
// Durability contract the code relies on (and SimFs enforces):
//  - File data is durable only after File::SyncData() / File::Sync().
//  - A directory entry (create, link, rename, unlink, mkdir) is durable only
//    after SyncDir() on the directory that holds it. File::Sync() does NOT
//    make the file's own name durable.
//  - Rename is atomic: after a crash exactly one of the old or new name exists.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace holdfast {

struct FileInfo {
  uint64_t size = 0;
  bool is_dir = false;
  uint64_t inode = 0;
  int64_t mtime_ns = 0;
};

// An open file. Destroying it closes the descriptor and drops its locks.
class File {
 public:
  virtual ~File() = default;
  // Writes at the end of the file (all holdfast writes are appends).
  virtual Status Append(std::string_view data) = 0;
  // fdatasync(2): the data written so far survives power loss.
  virtual Status SyncData() = 0;
  // fsync(2): data and inode metadata.
  virtual Status Sync() = 0;
  // Reads up to `n` bytes at `offset`; returns fewer only at end of file.
  virtual Result<size_t> ReadAt(uint64_t offset, char* buf, size_t n) = 0;
  virtual Result<uint64_t> Size() = 0;
  // Cuts the file to `size` bytes (used to drop a torn journal tail).
  virtual Status Truncate(uint64_t size) = 0;
  // flock(LOCK_EX|LOCK_NB) on this descriptor: kBusy if another open file
  // description holds it. Used to tell a live writer's file from a leftover.
  virtual Status TryLockExclusive() = 0;
  // The OS descriptor for zero-copy reads (sendfile), or -1 (SimFs).
  virtual int NativeHandle() const { return -1; }
};

// A held flock(2) lock on a lock file. Released when destroyed, and by the
// kernel when the holder dies: no stale lock file ever locks anyone out.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

class Fs {
 public:
  virtual ~Fs() = default;

  // open(O_CREAT|O_EXCL|O_RDWR): never overwrites, so a file a crash left
  // behind survives. kExists if the name is taken.
  virtual Result<std::unique_ptr<File>> CreateExclusive(const std::string& path, int mode = 0600) = 0;
  // Opens an existing file for reading, or reading and appending.
  virtual Result<std::unique_ptr<File>> OpenRead(const std::string& path) = 0;
  virtual Result<std::unique_ptr<File>> OpenAppend(const std::string& path) = 0;

  // rename(2): atomically replaces `to` if it exists.
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // link(2): kExists if `to` exists.
  virtual Status Link(const std::string& from, const std::string& to) = 0;
  virtual Status Unlink(const std::string& path) = 0;
  // mkdir(2): kExists if it exists already.
  virtual Status MkDir(const std::string& path, int mode = 0700) = 0;
  // fsync(2) on the directory: its entries' creations, renames and removals
  // survive power loss.
  virtual Status SyncDir(const std::string& path) = 0;
  // SyncData() on each file, one status per file. The default syncs one
  // after the other; PosixFs makes a batch durable with one syncfs(2) (or
  // overlaps the files' writeback: SetPosixBatchSync).
  virtual std::vector<Status> SyncDataAll(const std::vector<File*>& files);

  // Entry names in the directory, without "." and "..", in no given order.
  virtual Result<std::vector<std::string>> ReadDir(const std::string& path) = 0;
  virtual Result<FileInfo> Stat(const std::string& path) = 0;
  // Names this boot of the machine ("" if unknown). A power loss can take
  // back directory entries but not the mtimes a process saw before it, so a
  // directory mtime remembered in a file is only evidence within one boot.
  virtual std::string BootId() { return ""; }

  // flock(LOCK_EX) on `path`, creating the file if needed (never truncating),
  // waiting at most `timeout`. kBusy when the wait runs out.
  virtual Result<std::unique_ptr<FileLock>> LockFile(const std::string& path,
                                                      std::chrono::milliseconds timeout) = 0;

  // Convenience built on the above: the whole content of a (small) file.
  Result<std::string> ReadFile(const std::string& path);
  // mkdir unless it exists; kInvalid if it exists but is not a directory.
  Status EnsureDir(const std::string& path, int mode = 0700);
};

// The real one.
Fs& PosixFs();

// How PosixFs's SyncDataAll makes a batch of files durable ([delivery]
// batch_sync): kSyncfs, for batches of 4 files or more one syncfs(2) for the
// whole file system and one cache flush more; kFdatasync, one fdatasync(2)
// per file (for a file system shared with heavy writers, whose dirty data
// syncfs would also wait for).
enum class BatchSync { kSyncfs, kFdatasync };
void SetPosixBatchSync(BatchSync mode);

// Path helpers: join with exactly one '/', and the parent directory.
std::string JoinPath(std::string_view a, std::string_view b);
std::string DirName(std::string_view path);
std::string BaseName(std::string_view path);

}  // namespace holdfast
