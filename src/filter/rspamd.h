// A minimal client of rspamd's HTTP protocol: POST /checkv2 with the message
// as the body and the envelope in headers (From, Rcpt, IP, Helo, Queue-Id),
// a JSON reply with the action. Runs inside a filter worker (blocking
// socket, one deadline for the whole exchange).
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "filter/filter.h"
#include "util/status.h"

namespace holdfast {

struct RspamdReply {
  std::string action;  // "no action", "greylist", "add header", "rewrite subject", "soft reject", "reject"
  double score = 0, required_score = 0;
  std::string subject;  // for "rewrite subject": the new Subject
  std::vector<std::string> symbols;  // names, for the trail
  std::vector<std::pair<std::string, std::string>> add_headers;  // from milter.add_headers
  std::vector<std::string> remove_headers;                      // from milter.remove_headers
};

// kUnavailable-like failures (connection refused, timeout, HTTP 5xx) come
// back as Status::Busy: temporary, the scanner's fault, not the message's.
// A reply that does not parse is Status::Corrupt.
Result<RspamdReply> RspamdCheck(const std::string& address, const FilterInput& in,
                                std::chrono::milliseconds timeout);

// The reply half of RspamdCheck, on the whole HTTP response as read from the
// socket (status line, headers, body; Content-Length or chunked): a short
// read, a non-HTTP answer or a 5xx is Busy; another non-2xx is Invalid (the
// request was refused); a 2xx whose body is not rspamd's JSON is Corrupt.
// Lists and strings are bounded (kRspamdMax* in rspamd.cc); header values
// keep rspamd's folding ("\r\n\t"), and headers with a bad name or a bare CR/LF
// are dropped. Never throws. Exposed for tests and the fuzz harness.
Result<RspamdReply> ParseRspamdResponse(std::string_view http_response);

}  // namespace holdfast
