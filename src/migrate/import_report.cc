#include "migrate/import_report.h"

namespace holdfast {

size_t ImportReport::skipped_total() const {
  size_t n = 0;
  for (const auto& [reason, count] : skipped) n += count;
  return n;
}

std::string ImportReport::Summary() const {
  std::string s = "imported " + std::to_string(imported) + ", already there " + std::to_string(already_there) +
                  ", skipped " + std::to_string(skipped_total());
  if (!skipped.empty()) {
    s += " (";
    bool first = true;
    for (const auto& [reason, count] : skipped) {
      s += (first ? "" : "; ") + std::to_string(count) + " " + reason;
      first = false;
    }
    s += ")";
  }
  return s;
}

}  // namespace holdfast
