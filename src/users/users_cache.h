// UsersCache: the users file, parsed once and kept while it is unchanged.
// The server looks a user up for every RCPT and every login; re-reading and
// re-parsing the whole file each time costs four system calls and grows
// with the number of users. The file is only ever replaced whole by
// rename(2) (UsersFile), so one stat(2) -- a new inode, size or mtime --
// tells whether the copy is current. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "fs/fs.h"
#include "users/users_file.h"

namespace holdfast {

class UsersCache {
 public:
  UsersCache(Fs& fs, std::string data_dir);
  // As UsersFile::Find, from the cached copy (re-read when the file changed).
  // *generation, if given, gets the copy's generation: it changes whenever
  // the file did (what a cache of verified logins keys on).
  Result<std::optional<UserRecord>> Find(const UserName& name, uint64_t* generation = nullptr);

 private:
  Fs& fs_;
  UsersFile file_;
  std::mutex mu_;
  bool loaded_ = false;
  FileInfo seen_;                            // of the file the copy was read from
  uint64_t generation_ = 0;                  // +1 at every re-read
  std::map<std::string, UserRecord> users_;  // by folded name
};

}  // namespace holdfast
