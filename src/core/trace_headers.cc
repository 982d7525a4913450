#include "core/trace_headers.h"

namespace holdfast {

std::string TraceHeaders(std::string_view message_start, std::string_view sender, std::string_view recipient,
                         TraceOptions opts) {
  auto lf = message_start.find('\n');
  std::string eol = (lf != std::string_view::npos && lf > 0 && message_start[lf - 1] == '\r') ? "\r\n" : "\n";
  std::string out;
  if (opts.return_path) out.append("Return-Path: <").append(sender).append(">").append(eol);
  if (opts.delivered_to) out.append("Delivered-To: ").append(recipient).append(eol);
  return out;
}

std::string HeaderValue(std::string_view message, std::string_view name) {
  message = message.substr(0, 64 * 1024);
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
  auto blank = [](char c) { return c == ' ' || c == '\t'; };
  std::string value;
  bool in_field = false;
  size_t pos = 0;
  while (pos < message.size()) {
    size_t eol = message.find('\n', pos);
    std::string_view line = message.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    pos = eol == std::string_view::npos ? message.size() : eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // end of the header section
    if (blank(line[0])) {
      if (in_field) value.append(" ").append(line);  // a folded continuation
      continue;
    }
    if (in_field) break;
    if (line.size() > name.size() && line[name.size()] == ':') {
      bool match = true;
      for (size_t i = 0; i < name.size() && match; ++i) match = lower(line[i]) == lower(name[i]);
      if (match) {
        in_field = true;
        value.assign(line.substr(name.size() + 1));
      }
    }
  }
  size_t b = 0, e = value.size();
  while (b < e && (blank(value[b]) || value[b] == ' ')) ++b;
  while (e > b && blank(value[e - 1])) --e;
  return value.substr(b, e - b);
}

}  // namespace holdfast
