// A fixed-bucket histogram in the shape Prometheus exposes: cumulative
// counts per upper bound, plus sum and count. Not thread-safe: its owner
// guards it (the spool's mutex).
#pragma once

#include <cstdint>
#include <vector>

namespace holdfast {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void Observe(double v) {
    size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    ++counts_[i];
    sum_ += v;
    ++count_;
  }
  const std::vector<double>& bounds() const { return bounds_; }
  // Observations <= bounds()[i]; the last entry (i == bounds().size()) is +Inf.
  uint64_t Cumulative(size_t i) const {
    uint64_t n = 0;
    for (size_t k = 0; k <= i && k < counts_.size(); ++k) n += counts_[k];
    return n;
  }
  double sum() const { return sum_; }
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last = above every bound
  double sum_ = 0;
  uint64_t count_ = 0;
};

}  // namespace holdfast
