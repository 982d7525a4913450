// UsersFile: the virtual users, stored in DATA/users in Dovecot passwd-file
// format so Dovecot can authenticate against the same file (docs/users.md):
//
//   name:{CRYPT}$y$...::::::        (user:password:uid:gid:gecos:home:shell:extra)
//
// Reads never lock: the file is only ever replaced whole by rename(2), so a
// reader sees the complete old or the complete new version. Mutations take
// DATA/users.lock, write DATA/users.tmp, fdatasync it, rename it over
// DATA/users and fsync DATA: after a crash at any point DATA/users is the
// complete old or the complete new file. A users.tmp left by a crash is
// removed by the next mutation. '#' comment lines and blank lines survive
// mutations unchanged.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fs/fs.h"
#include "users/user_name.h"
#include "util/status.h"

namespace holdfast {

struct UserRecord {
  UserName name;
  std::string password_hash;  // "{SCHEME}..." as stored
  // The fields after the password (uid:gid:gecos:home:shell:extra), verbatim
  // without the leading ':'. Kept so hand-added Dovecot settings survive a
  // rewrite; empty means none (also when they were only colons), written as ":::::".
  std::string other_fields;

  bool operator==(const UserRecord&) const = default;
};

class UsersFile {
 public:
  // `data_dir` must exist; nothing here creates it.
  UsersFile(Fs& fs, std::string data_dir);

  // All users, in file order. A missing file is an empty list. kCorrupt (with
  // the path and line number) if the file does not parse.
  Result<std::vector<UserRecord>> List();
  Result<std::optional<UserRecord>> Find(const UserName& name);

  // `password_hash` must be non-empty printable ASCII without ':' (kInvalid);
  // normally the output of HashPassword().
  Status Add(const UserName& name, std::string_view password_hash);          // kExists if present
  Status SetPassword(const UserName& name, std::string_view password_hash);  // kNotFound if absent
  Status Remove(const UserName& name);                                       // kNotFound if absent

  // Parsing accepts any bytes: a bad line is kCorrupt "line N: why", never a
  // crash. Duplicate names (after case folding) are kCorrupt too.
  static Result<std::vector<UserRecord>> Parse(std::string_view text);
  // One line per record, each ending in '\n'.
  static std::string Format(const std::vector<UserRecord>& records);

  std::string path() const;

 private:
  Fs& fs_;
  std::string data_dir_;
};

}  // namespace holdfast
