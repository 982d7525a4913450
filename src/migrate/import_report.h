// What an import run did, for its summary line and exit code: shared by
// `holdfast import mbox` and `import maildir`.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace holdfast {

struct ImportReport {
  size_t imported = 0;       // delivered by this run
  size_t already_there = 0;  // in the mailbox, or deleted from it, already
  std::map<std::string, size_t> skipped;    // reason -> how many (not imported, never will be)
  std::vector<std::string> skipped_detail;  // one line each: where in the source, reason
  size_t skipped_total() const;
  // "imported N, already there M, skipped K (reasons)"
  std::string Summary() const;
};

}  // namespace holdfast
