// The network form of a stored message for POP3 RETR and TOP (RFC 1939
// section 3): every line ends in CRLF, a line starting with '.' gets one more
// '.', and ".\r\n" ends the response. Both classes here take the message in
// chunks of any size and split, so a server streams a message from its file
// without holding it in memory.
//
// A bare LF becomes CRLF; CRLF is kept; a CR not followed by LF is content
// and is passed on as it is. A '.' is stuffed only at the start of a line,
// that is at the start of the message or after an LF.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace holdfast::pop3 {

class DotStuffer {
 public:
  // RETR: the whole message.
  DotStuffer() = default;
  // TOP msg n: the header, the blank line after it, and the first
  // `body_lines` lines of the body (RFC 1939 TOP). A message without a blank
  // line is all header and is sent whole.
  static DotStuffer Top(uint64_t body_lines);

  // Appends the network form of `chunk` to *out. Returns false once TOP has
  // all it wants: the rest of the chunk and any later chunk are ignored, and
  // the server may stop reading the file.
  bool Append(std::string_view chunk, std::string* out);

  // Ends the response: the line end the last line lacked, if any, then
  // ".\r\n". Call once, after the last Append.
  void Finish(std::string* out);

  bool done() const { return done_; }

 private:
  void EndLine();

  bool top_ = false;
  uint64_t body_lines_left_ = 0;  // TOP only
  bool in_header_ = true;         // TOP only
  bool done_ = false;
  bool at_line_start_ = true;
  bool last_cr_ = false;   // the last content byte of this line was CR
  uint64_t line_len_ = 0;  // content bytes of this line so far
};

// The size RFC 1939 reports for a message (STAT, LIST, "+OK n octets"): the
// octets a client receives once it undoes dot-stuffing and drops the ".\r\n"
// terminator, i.e. each bare LF counted as CRLF, plus the line end Finish()
// adds to an unterminated last line. Fed with the same chunks as a
// DotStuffer, it agrees with what RETR sends, byte for byte.
class NetworkSize {
 public:
  void Add(std::string_view chunk);
  uint64_t total() const;

 private:
  uint64_t count_ = 0;
  char last_ = '\n';  // as if after a line end: an empty message has size 0
};

// NetworkSize of a whole message held in memory.
uint64_t NetworkSizeOf(std::string_view message);

}  // namespace holdfast::pop3
