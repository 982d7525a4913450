#include "users/users_cache.h"

namespace holdfast {

UsersCache::UsersCache(Fs& fs, std::string data_dir) : fs_(fs), file_(fs, std::move(data_dir)) {}

Result<std::optional<UserRecord>> UsersCache::Find(const UserName& name, uint64_t* generation) {
  std::lock_guard<std::mutex> l(mu_);
  auto st = fs_.Stat(file_.path());
  FileInfo now;  // a missing file is an empty list, like UsersFile
  if (st.ok()) now = *st;
  else if (st.status().kind() != Status::Kind::kNotFound) return st.status();
  if (!loaded_ || now.inode != seen_.inode || now.size != seen_.size || now.mtime_ns != seen_.mtime_ns) {
    HF_ASSIGN_OR_RETURN(auto records, file_.List());
    users_.clear();
    for (auto& r : records) users_.emplace(r.name.str(), std::move(r));
    seen_ = now;
    loaded_ = true;
    ++generation_;
  }
  if (generation) *generation = generation_;
  auto it = users_.find(name.str());
  if (it == users_.end()) return std::optional<UserRecord>();
  return std::optional<UserRecord>(it->second);
}

}  // namespace holdfast
