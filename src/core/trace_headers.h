// The header lines a local delivery agent prepends (Return-Path:,
// Delivered-To:), shared by `holdfast deliver` and spool delivery.
#pragma once

#include <string>
#include <string_view>

namespace holdfast {

struct TraceOptions {
  bool return_path = true;
  bool delivered_to = true;
};

// Written in the message's own line ending (that of its first line), so a
// CRLF message stays all CRLF. `sender` "" gives "Return-Path: <>".
std::string TraceHeaders(std::string_view message_start, std::string_view sender, std::string_view recipient,
                         TraceOptions opts);

}  // namespace holdfast
