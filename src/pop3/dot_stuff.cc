#include "pop3/dot_stuff.h"

namespace holdfast::pop3 {

DotStuffer DotStuffer::Top(uint64_t body_lines) {
  DotStuffer s;
  s.top_ = true;
  s.body_lines_left_ = body_lines;
  return s;
}

bool DotStuffer::Append(std::string_view chunk, std::string* out) {
  size_t i = 0;
  while (i < chunk.size() && !done_) {
    if (at_line_start_ && chunk[i] == '.') out->push_back('.');
    size_t lf = chunk.find('\n', i);
    size_t end = lf == std::string_view::npos ? chunk.size() : lf;
    if (end > i) {
      out->append(chunk.substr(i, end - i));
      line_len_ += end - i;
      last_cr_ = chunk[end - 1] == '\r';
      at_line_start_ = false;
    }
    if (lf == std::string_view::npos) break;
    // The CR before this LF may have come at the end of the last chunk.
    out->append(last_cr_ ? "\n" : "\r\n");
    EndLine();
    i = lf + 1;
  }
  return !done_;
}

void DotStuffer::EndLine() {
  if (top_) {
    // A header ends at the first empty line, CRLF or bare LF.
    bool blank = line_len_ == 0 || (line_len_ == 1 && last_cr_);
    if (in_header_) {
      if (blank) {
        in_header_ = false;
        done_ = body_lines_left_ == 0;
      }
    } else if (--body_lines_left_ == 0) {
      done_ = true;
    }
  }
  at_line_start_ = true;
  last_cr_ = false;
  line_len_ = 0;
}

void DotStuffer::Finish(std::string* out) {
  // A last line ending in a bare CR needs only the LF to end it.
  if (!at_line_start_) out->append(last_cr_ ? "\n" : "\r\n");
  out->append(".\r\n");
  at_line_start_ = true;
  last_cr_ = false;
  done_ = true;
}

void NetworkSize::Add(std::string_view chunk) {
  if (chunk.empty()) return;
  count_ += chunk.size();
  char prev = last_;
  size_t i = 0;
  while ((i = chunk.find('\n', i)) != std::string_view::npos) {
    if ((i == 0 ? prev : chunk[i - 1]) != '\r') ++count_;
    ++i;
  }
  last_ = chunk.back();
}

uint64_t NetworkSize::total() const {
  if (last_ == '\n') return count_;
  return count_ + (last_ == '\r' ? 1 : 2);
}

uint64_t NetworkSizeOf(std::string_view message) {
  NetworkSize n;
  n.Add(message);
  return n.total();
}

}  // namespace holdfast::pop3
