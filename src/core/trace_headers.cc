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

}  // namespace holdfast
