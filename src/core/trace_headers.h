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

// The unfolded value of the first header field `name` (case-insensitive) in
// the message's header section, whitespace trimmed; "" if there is none.
// Reads at most the first 64 KiB (for the event log's message_id).
std::string HeaderValue(std::string_view message, std::string_view name);

}  // namespace holdfast
