// The edits filters make to a message: header fields added on top, header
// fields removed, the Subject replaced. Every edit touches only the header
// section (up to the first empty line) and writes the message's own line
// ending (that of its first line, as core/trace_headers.h does), so a CRLF
// message stays all CRLF. Also the checks on what a filter may ask for.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/message_id.h"
#include "util/status.h"

namespace holdfast {

using HeaderField = std::pair<std::string, std::string>;  // name, value (without "name:")

// "\r\n" when the first line ends so, else "\n".
std::string_view MessageLineEnding(std::string_view message);

// A field a filter asks to add. Name: 1-76 printable ASCII bytes but ':'.
// Value: at most 4096 bytes, no NUL, CR or LF except a fold (a line break
// followed by a space or tab), no physical line over 998 bytes.
Status CheckHeaderField(std::string_view name, std::string_view value);

// `headers` on top of `message`, in the given order; folds in values are
// rewritten in the message's line ending. The fields must have passed
// CheckHeaderField.
std::string PrependHeaders(std::string_view message, const std::vector<HeaderField>& headers);
// Only the header lines PrependHeaders would put on top of `message`.
std::string FormatHeaders(std::string_view message, const std::vector<HeaderField>& headers);

// The value of the Received: line of RFC 5321 4.4 that holdfast adds: who
// handed the message over (HELO, client address or "local"), to whom, when.
// The date is the MessageId's time of receipt, so a replay after a crash
// writes the same bytes. Always passes CheckHeaderField.
std::string ReceivedValue(std::string_view helo, std::string_view client, std::string_view hostname,
                          const MessageId& id);

// Every field named `name` (case-insensitive), with its folded lines, removed.
std::string RemoveHeader(std::string_view message, std::string_view name);

// The first Subject field (folded lines included) replaced by
// "Subject: <subject>"; one added on top when there is none. CR, LF and NUL
// in `subject` become spaces.
std::string SetSubject(std::string_view message, std::string_view subject);

// A Maildir++ folder a filter may file into: 1-64 bytes of letters, digits,
// '-', '_' and '.', not starting or ending with '.', no "..".
Status CheckFolderName(std::string_view name);

// `s` as one printable line for a log or a reason: \n, \r, \t, \\ and \xNN
// escapes, cut to `max` characters (then "...").
std::string EscapeLine(std::string_view s, size_t max);

}  // namespace holdfast
