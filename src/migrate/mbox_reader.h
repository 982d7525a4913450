// Reading classic mbox files (mboxrd and mboxo) for `holdfast import mbox`:
// a push parser that needs no I/O (MboxParser: fuzzed, unit-tested with any
// chunking) and ReadMbox, which feeds it a file in fixed-size chunks through
// File::ReadAt -- never the whole file. Memory stays bounded whatever the
// input: no line or message is ever held whole by the parser.
//
// The rules (docs/migration.md is the reference):
//  - Lines end in LF; a CR before it is part of the line end (CRLF files).
//  - An *empty line* is exactly "\n" or "\r\n".
//  - A message starts at a line beginning with the five bytes "From " that is
//    the first line of the file or follows an empty line. That envelope line
//    is not part of the message. A "From " line anywhere else is body text.
//  - The empty line just before a message's envelope line is the separator,
//    not message content; so is an empty last line of the file.
//  - Before the first message only empty lines may appear; anything else
//    means the file is not an mbox (kInvalid, before any message is handed out).
//  - kMboxrd un-quotes a line matching ">+From " by one '>' (">From " ->
//    "From ", ">>From " -> ">From "); kMboxo stores every line as it is.
//  - Content-Length: headers are ignored (they are often wrong).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "fs/fs.h"
#include "util/status.h"

namespace holdfast {

enum class MboxFormat {
  kMboxrd,  // ">+From " lines lose one '>'
  kMboxo,   // no un-quoting: ">From " is ambiguous in mboxo, so it is kept
};

// What the envelope ("From ") line of one message says.
struct MboxEnvelope {
  uint64_t offset = 0;    // byte offset of the "From " line in the file
  std::string from_line;  // that line without its line end, cut at kMaxFromLine bytes
  std::string sender;     // its first word after "From " (may be empty)
};

class MboxParser {
 public:
  static constexpr size_t kMaxFromLine = 1024;

  // Receives the messages in file order. Data pieces concatenate to the
  // message's content; how it is cut into pieces depends on the chunking.
  // A non-ok Status stops the parse and is returned by Feed/Finish.
  class Sink {
   public:
    virtual ~Sink() = default;
    virtual Status OnMessageStart(const MboxEnvelope& envelope) = 0;
    virtual Status OnMessageData(std::string_view piece) = 0;
    virtual Status OnMessageEnd() = 0;
  };

  MboxParser(MboxFormat format, Sink& sink) : format_(format), sink_(sink) {}

  // The next bytes of the file, in order, cut anywhere.
  Status Feed(std::string_view bytes);
  // End of file: ends the last message. Call once, after the last Feed.
  Status Finish();
  // Bytes fed so far.
  uint64_t offset() const { return offset_; }

 private:
  enum class Mode { kLineStart, kBodyLine, kFromLine };

  Status LineStartByte(char c, bool* consumed);
  Status OrdinaryLine(bool* consumed);
  Status EmptyLine(std::string_view eol);
  Status StartMessage();
  Status Emit(std::string_view piece);  // message content; kInvalid before the first message
  Status FlushLineStart();              // the held line start turned out to be text
  Status Fail(Status s);                // remembers the first error: the parse is over

  MboxFormat format_;
  Sink& sink_;
  uint64_t offset_ = 0;
  Mode mode_ = Mode::kLineStart;
  bool in_message_ = false;
  bool after_empty_line_ = true;  // the file's start counts as following an empty line
  Status error_;
  // A line's start is held back until it is known what kind of line it is:
  // `quotes_` leading '>' (counted, not stored: there may be any number),
  // then `held_`, a prefix of "From " -- or "\r" of a possible empty line.
  uint64_t line_offset_ = 0;
  uint64_t quotes_ = 0;
  std::string held_;
  // The last empty line of a message, held back: if a message starts next,
  // it was the separator and is dropped.
  std::string pending_empty_;
  MboxEnvelope envelope_;
};

// Feeds `file` from offset 0 up to `size` to `parser` in `chunk`-byte reads,
// then calls Finish. `progress(bytes_done)` is called after each chunk.
Status ReadMbox(File& file, uint64_t size, MboxParser& parser, size_t chunk = 64 * 1024,
                const std::function<void(uint64_t)>& progress = {});

}  // namespace holdfast
