#include "users/users_file.h"

#include <chrono>
#include <functional>
#include <map>

namespace holdfast {

namespace {

constexpr char kUsersName[] = "users";
constexpr char kTmpName[] = "users.tmp";
constexpr char kLockName[] = "users.lock";
constexpr std::chrono::milliseconds kLockTimeout{10000};
// uid..extra empty: six colons after the hash in all.
constexpr char kEmptyOtherFields[] = ":::::";

// One line of the file: a user, or a comment/blank line kept verbatim.
struct Entry {
  std::optional<UserRecord> record;
  std::string verbatim;
};

std::string LineError(size_t line_no, std::string_view why) {
  return "line " + std::to_string(line_no) + ": " + std::string(why);
}

// Bytes a password field may hold: it has to stay one field of one line.
Status CheckHash(std::string_view hash) {
  if (hash.empty()) return Status::Invalid("password hash is empty");
  for (char c : hash) {
    auto u = static_cast<unsigned char>(c);
    if (c == ':') return Status::Invalid("password hash contains ':'");
    if (u <= 0x20 || u >= 0x7f) return Status::Invalid("password hash contains a space, control or non-ASCII byte");
  }
  return Status::Ok();
}

Result<std::vector<Entry>> ParseEntries(std::string_view text) {
  std::vector<Entry> entries;
  std::map<std::string, size_t> seen;  // name -> line number
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // tolerate CRLF files

    if (line.find('\0') != std::string_view::npos) {
      return Status::Corrupt(LineError(line_no, "contains a NUL byte"));
    }
    if (line.find('\r') != std::string_view::npos) {
      return Status::Corrupt(LineError(line_no, "contains a carriage return"));
    }
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#') {
      entries.push_back(Entry{std::nullopt, std::string(line)});
      continue;
    }

    size_t c1 = line.find(':');
    if (c1 == std::string_view::npos) return Status::Corrupt(LineError(line_no, "missing ':' after the user name"));
    if (c1 == 0) return Status::Corrupt(LineError(line_no, "empty user name"));
    auto name = UserName::Parse(line.substr(0, c1));
    if (!name.ok()) return Status::Corrupt(LineError(line_no, name.status().message()));

    std::string_view rest = line.substr(c1 + 1);
    size_t c2 = rest.find(':');
    std::string_view hash = rest.substr(0, c2);
    std::string_view other = c2 == std::string_view::npos ? std::string_view() : rest.substr(c2 + 1);
    // Only colons means no fields at all: the same record Format() writes back.
    if (other.find_first_not_of(':') == std::string_view::npos) other = {};
    if (Status s = CheckHash(hash); !s.ok()) return Status::Corrupt(LineError(line_no, s.message()));

    auto [it, inserted] = seen.emplace(name->str(), line_no);
    if (!inserted) {
      return Status::Corrupt(LineError(line_no, "duplicate user '" + name->str() + "' (first on line " +
                                                    std::to_string(it->second) + ")"));
    }
    entries.push_back(Entry{UserRecord{std::move(name).value(), std::string(hash), std::string(other)}, ""});
  }
  return entries;
}

void AppendRecord(const UserRecord& r, std::string* out) {
  *out += r.name.str();
  *out += ':';
  *out += r.password_hash;
  *out += ':';
  *out += r.other_fields.empty() ? std::string_view(kEmptyOtherFields) : std::string_view(r.other_fields);
  *out += '\n';
}

std::string FormatEntries(const std::vector<Entry>& entries) {
  std::string out;
  for (const Entry& e : entries) {
    if (e.record) {
      AppendRecord(*e.record, &out);
    } else {
      out += e.verbatim;
      out += '\n';
    }
  }
  return out;
}

Entry* FindEntry(std::vector<Entry>& entries, const UserName& name) {
  for (Entry& e : entries) {
    if (e.record && e.record->name == name) return &e;
  }
  return nullptr;
}

}  // namespace

UsersFile::UsersFile(Fs& fs, std::string data_dir) : fs_(fs), data_dir_(std::move(data_dir)) {}

std::string UsersFile::path() const { return JoinPath(data_dir_, kUsersName); }

Result<std::vector<UserRecord>> UsersFile::Parse(std::string_view text) {
  HF_ASSIGN_OR_RETURN(auto entries, ParseEntries(text));
  std::vector<UserRecord> out;
  for (Entry& e : entries) {
    if (e.record) out.push_back(std::move(*e.record));
  }
  return out;
}

std::string UsersFile::Format(const std::vector<UserRecord>& records) {
  std::string out;
  for (const UserRecord& r : records) AppendRecord(r, &out);
  return out;
}

namespace {

// The current content of `path`; a missing file is empty.
Result<std::vector<Entry>> LoadEntries(Fs& fs, const std::string& path) {
  auto text = fs.ReadFile(path);
  if (!text.ok()) {
    if (text.status().kind() == Status::Kind::kNotFound) return std::vector<Entry>{};
    return text.status();
  }
  auto entries = ParseEntries(*text);
  if (!entries.ok()) return Status::Corrupt(path + ": " + entries.status().message());
  return entries;
}

// Lock, read, let `change` edit the entries, then replace the file whole
// (write tmp, fdatasync, rename, fsync dir). Nothing is written when
// `change` fails.
Status Mutate(Fs& fs, const std::string& dir, const std::function<Status(std::vector<Entry>&)>& change) {
  const std::string users = JoinPath(dir, kUsersName);
  const std::string tmp = JoinPath(dir, kTmpName);
  HF_ASSIGN_OR_RETURN(auto lock, fs.LockFile(JoinPath(dir, kLockName), kLockTimeout));
  HF_ASSIGN_OR_RETURN(auto entries, LoadEntries(fs, users));
  HF_RETURN_IF_ERROR(change(entries));
  const std::string content = FormatEntries(entries);

  // A users.tmp here is a crashed mutation's leftover: we hold the lock, so
  // no live writer owns it.
  Status s = fs.Unlink(tmp);
  if (!s.ok() && s.kind() != Status::Kind::kNotFound) return s;
  {
    HF_ASSIGN_OR_RETURN(auto file, fs.CreateExclusive(tmp, 0600));
    HF_RETURN_IF_ERROR(file->Append(content));
    HF_RETURN_IF_ERROR(file->SyncData());
  }
  HF_RETURN_IF_ERROR(fs.Rename(tmp, users));
  return fs.SyncDir(dir);
}

}  // namespace

Result<std::vector<UserRecord>> UsersFile::List() {
  HF_ASSIGN_OR_RETURN(auto entries, LoadEntries(fs_, path()));
  std::vector<UserRecord> out;
  for (Entry& e : entries) {
    if (e.record) out.push_back(std::move(*e.record));
  }
  return out;
}

Result<std::optional<UserRecord>> UsersFile::Find(const UserName& name) {
  HF_ASSIGN_OR_RETURN(auto entries, LoadEntries(fs_, path()));
  if (Entry* e = FindEntry(entries, name)) return std::optional<UserRecord>(std::move(*e->record));
  return std::optional<UserRecord>();
}

Status UsersFile::Add(const UserName& name, std::string_view password_hash) {
  HF_RETURN_IF_ERROR(CheckHash(password_hash));
  return Mutate(fs_, data_dir_, [&](std::vector<Entry>& entries) {
    if (FindEntry(entries, name)) return Status::Exists("user '" + name.str() + "'");
    entries.push_back(Entry{UserRecord{name, std::string(password_hash), ""}, ""});
    return Status::Ok();
  });
}

Status UsersFile::SetPassword(const UserName& name, std::string_view password_hash) {
  HF_RETURN_IF_ERROR(CheckHash(password_hash));
  return Mutate(fs_, data_dir_, [&](std::vector<Entry>& entries) {
    Entry* e = FindEntry(entries, name);
    if (!e) return Status::NotFound("user '" + name.str() + "'");
    e->record->password_hash = std::string(password_hash);
    return Status::Ok();
  });
}

Status UsersFile::Remove(const UserName& name) {
  return Mutate(fs_, data_dir_, [&](std::vector<Entry>& entries) {
    for (auto it = entries.begin(); it != entries.end(); ++it) {
      if (it->record && it->record->name == name) {
        entries.erase(it);
        return Status::Ok();
      }
    }
    return Status::NotFound("user '" + name.str() + "'");
  });
}

}  // namespace holdfast
