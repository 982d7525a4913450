// PosixFs: Fs on the real kernel. Every call is one system call or a short
// retry loop around one (EINTR); nothing here decides policy.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "fs/fs.h"

namespace holdfast {
namespace {

class PosixFile : public File {
 public:
  PosixFile(int fd, std::string path) : fd_(fd), path_(std::move(path)), serial_(next_serial_.fetch_add(1)) {}
  // Order of opening, process-wide: SyncDataAll syncs through the oldest.
  uint64_t serial() const { return serial_; }
  ~PosixFile() override { ::close(fd_); }

  Status Append(std::string_view data) override {
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno("write " + path_, errno);
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return Status::Ok();
  }
  Status SyncData() override {
    if (::fdatasync(fd_) != 0) return Status::FromErrno("fdatasync " + path_, errno);
    return Status::Ok();
  }
  Status Sync() override {
    if (::fsync(fd_) != 0) return Status::FromErrno("fsync " + path_, errno);
    return Status::Ok();
  }
  Result<size_t> ReadAt(uint64_t offset, char* buf, size_t n) override {
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd_, buf + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno("read " + path_, errno);
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    return done;
  }
  Result<uint64_t> Size() override {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return Status::FromErrno("fstat " + path_, errno);
    return static_cast<uint64_t>(st.st_size);
  }
  Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) return Status::FromErrno("ftruncate " + path_, errno);
    return Status::Ok();
  }
  Status TryLockExclusive() override {
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) return Status::FromErrno("flock " + path_, errno);
    return Status::Ok();
  }
  int NativeHandle() const override { return fd_; }

 private:
  int fd_;
  std::string path_;
  uint64_t serial_;
  static inline std::atomic<uint64_t> next_serial_{0};
};

class PosixLock : public FileLock {
 public:
  explicit PosixLock(int fd) : fd_(fd) {}
  ~PosixLock() override { ::close(fd_); }  // closing drops the flock

 private:
  int fd_;
};

Result<std::unique_ptr<File>> OpenWith(const std::string& path, int flags, int mode, const char* verb) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return Status::FromErrno(std::string(verb) + " " + path, errno);
  return std::unique_ptr<File>(new PosixFile(fd, path));
}

class RealFs : public Fs {
 public:
  Result<std::unique_ptr<File>> CreateExclusive(const std::string& path, int mode) override {
    return OpenWith(path, O_CREAT | O_EXCL | O_RDWR | O_APPEND, mode, "create");
  }
  Result<std::unique_ptr<File>> OpenRead(const std::string& path) override {
    return OpenWith(path, O_RDONLY, 0, "open");
  }
  Result<std::unique_ptr<File>> OpenAppend(const std::string& path) override {
    return OpenWith(path, O_RDWR | O_APPEND, 0, "open");
  }
  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return Status::FromErrno("rename " + from + " -> " + to, errno);
    return Status::Ok();
  }
  Status Link(const std::string& from, const std::string& to) override {
    if (::link(from.c_str(), to.c_str()) != 0) return Status::FromErrno("link " + from + " -> " + to, errno);
    return Status::Ok();
  }
  Status Unlink(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return Status::FromErrno("unlink " + path, errno);
    return Status::Ok();
  }
  Status MkDir(const std::string& path, int mode) override {
    if (::mkdir(path.c_str(), static_cast<mode_t>(mode)) != 0) return Status::FromErrno("mkdir " + path, errno);
    return Status::Ok();
  }
  // kSyncfs (batches of 4 or more): syncfs(2) writes back every dirty page
  // and inode of the file system and flushes the device cache once, instead
  // of one flush per file. Without a journal (ext2-style ext4) it writes the
  // inode tables after that flush, so one fdatasync follows: on a clean file
  // it is just a second flush (checked: /sys/block/DEV/stat). syncfs reports
  // any write-back error since the descriptor it is given was opened (Linux
  // >= 5.8): given the batch's oldest file, that covers every write of the
  // batch. If syncfs fails, each file is synced alone, to say which failed
  // (each file keeps its own error for its fdatasync). If the fdatasync
  // after it fails, it has consumed that file's error (a second fdatasync
  // could succeed over lost data), so the whole batch is reported failed.
  // kFdatasync: every file's writeback is started first, then each fdatasync
  // is left with its inode and the flush.
  std::vector<Status> SyncDataAll(const std::vector<File*>& files) override {
    if (files.size() >= 4 && batch_sync_.load() == BatchSync::kSyncfs) {
      const PosixFile* oldest = static_cast<PosixFile*>(files[0]);
      for (File* f : files) {
        if (static_cast<PosixFile*>(f)->serial() < oldest->serial()) oldest = static_cast<PosixFile*>(f);
      }
      if (::syncfs(oldest->NativeHandle()) == 0) return std::vector<Status>(files.size(), files[0]->SyncData());
    } else if (files.size() > 1) {
      for (File* f : files) (void)::sync_file_range(f->NativeHandle(), 0, 0, SYNC_FILE_RANGE_WRITE);
    }
    return Fs::SyncDataAll(files);
  }

  std::atomic<BatchSync> batch_sync_{BatchSync::kSyncfs};

  Status SyncDir(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno("open dir " + path, errno);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) return Status::FromErrno("fsync dir " + path, err);
    return Status::Ok();
  }
  Result<std::vector<std::string>> ReadDir(const std::string& path) override {
    DIR* d = ::opendir(path.c_str());
    if (d == nullptr) return Status::FromErrno("opendir " + path, errno);
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* e = ::readdir(d)) {
      std::string_view n(e->d_name);
      if (n != "." && n != "..") names.emplace_back(n);
      errno = 0;
    }
    int err = errno;
    ::closedir(d);
    if (err != 0) return Status::FromErrno("readdir " + path, err);
    return names;
  }
  Result<FileInfo> Stat(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return Status::FromErrno("stat " + path, errno);
    FileInfo info;
    info.size = static_cast<uint64_t>(st.st_size);
    info.is_dir = S_ISDIR(st.st_mode);
    info.inode = st.st_ino;
    info.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    return info;
  }
  std::string BootId() override {
    static const std::string id = [] {
      std::string out;
      int fd = ::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
      if (fd < 0) return out;
      char buf[64];
      ssize_t n = ::read(fd, buf, sizeof(buf));
      ::close(fd);
      if (n > 0) out.assign(buf, static_cast<size_t>(n));
      while (!out.empty() && out.back() == '\n') out.pop_back();
      return out;
    }();
    return id;
  }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path, std::chrono::milliseconds timeout) override {
    // O_CREAT without O_TRUNC never destroys anything; the file only anchors the flock.
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return Status::FromErrno("open lock " + path, errno);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    auto pause = std::chrono::milliseconds(1);
    while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) {
        int err = errno;
        ::close(fd);
        return Status::FromErrno("flock " + path, err);
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        ::close(fd);
        return Status::Busy("lock " + path + " not granted within " + std::to_string(timeout.count()) + " ms");
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
    return std::unique_ptr<FileLock>(new PosixLock(fd));
  }
};

}  // namespace

static RealFs& TheRealFs() {
  static RealFs fs;
  return fs;
}

void SetPosixBatchSync(BatchSync mode) { TheRealFs().batch_sync_.store(mode); }

Fs& PosixFs() { return TheRealFs(); }

Result<std::string> Fs::ReadFile(const std::string& path) {
  HF_ASSIGN_OR_RETURN(auto file, OpenRead(path));
  HF_ASSIGN_OR_RETURN(uint64_t size, file->Size());
  std::string out(size, '\0');
  HF_ASSIGN_OR_RETURN(size_t n, file->ReadAt(0, out.data(), out.size()));
  out.resize(n);
  return out;
}

std::vector<Status> Fs::SyncDataAll(const std::vector<File*>& files) {
  std::vector<Status> out;
  out.reserve(files.size());
  for (File* f : files) out.push_back(f->SyncData());
  return out;
}

Status Fs::EnsureDir(const std::string& path, int mode) {
  Status s = MkDir(path, mode);
  if (s.ok()) return s;
  if (s.kind() != Status::Kind::kExists) return s;
  HF_ASSIGN_OR_RETURN(FileInfo info, Stat(path));
  if (!info.is_dir) return Status::Invalid(path + " exists and is not a directory");
  return Status::Ok();
}

std::string JoinPath(std::string_view a, std::string_view b) {
  std::string out(a);
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  while (!b.empty() && b.front() == '/') b.remove_prefix(1);
  if (out.empty()) return std::string(b);
  if (out != "/") out += '/';
  out += b;
  return out;
}

std::string DirName(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  auto pos = path.rfind('/');
  if (pos == std::string_view::npos) return ".";
  if (pos == 0) return "/";
  return std::string(path.substr(0, pos));
}

std::string BaseName(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  auto pos = path.rfind('/');
  return std::string(pos == std::string_view::npos ? path : path.substr(pos + 1));
}

}  // namespace holdfast
