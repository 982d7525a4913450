#include "migrate/mbox_reader.h"

#include <algorithm>
#include <cstring>

namespace holdfast {
namespace {

constexpr std::string_view kFrom = "From ";

}  // namespace

Status MboxParser::Feed(std::string_view bytes) {
  if (!error_.ok()) return error_;
  size_t i = 0;
  while (i < bytes.size()) {
    if (mode_ == Mode::kLineStart) {
      if (quotes_ == 0 && held_.empty()) line_offset_ = offset_;
      bool consumed = true;
      Status s = LineStartByte(bytes[i], &consumed);
      if (!s.ok()) return Fail(s);
      if (consumed) {
        ++i;
        ++offset_;
      }
      continue;  // an unconsumed byte is looked at again in the new mode
    }
    // Inside a line: everything up to and including its LF in one piece.
    const char* start = bytes.data() + i;
    const void* lf = std::memchr(start, '\n', bytes.size() - i);
    const size_t n = lf != nullptr ? static_cast<size_t>(static_cast<const char*>(lf) - start) + 1 : bytes.size() - i;
    const std::string_view piece(start, n);
    if (mode_ == Mode::kBodyLine) {
      Status s = Emit(piece);
      if (!s.ok()) return Fail(s);
    } else if (envelope_.from_line.size() <= kMaxFromLine) {
      // Up to one byte over the cap: a line of exactly the cap still drops its CR.
      envelope_.from_line.append(piece.substr(0, kMaxFromLine + 1 - envelope_.from_line.size()));
    }
    i += n;
    offset_ += n;
    if (lf == nullptr) continue;
    if (mode_ == Mode::kFromLine) {
      Status s = StartMessage();
      if (!s.ok()) return Fail(s);
    }
    mode_ = Mode::kLineStart;
    after_empty_line_ = false;
  }
  return Status::Ok();
}

// Classifies a line by its first bytes, holding them back until it is known
// whether the line is empty, an envelope line, a quoted "From " line, or text.
Status MboxParser::LineStartByte(char c, bool* consumed) {
  if (quotes_ == 0 && held_.empty()) {
    if (c == '\n') return EmptyLine("\n");
    if (c == '\r') {
      held_ = "\r";
      return Status::Ok();
    }
  }
  if (quotes_ == 0 && held_ == "\r") {
    if (c == '\n') {
      held_.clear();
      return EmptyLine("\r\n");
    }
    return OrdinaryLine(consumed);
  }
  if (held_.empty() && c == '>') {
    ++quotes_;
    return Status::Ok();
  }
  if (c != kFrom[held_.size()]) return OrdinaryLine(consumed);
  held_ += c;
  if (held_.size() < kFrom.size()) return Status::Ok();
  if (quotes_ == 0 && after_empty_line_) {
    // An envelope line: the message before it (if any) ends here, without
    // the empty line that separated them.
    held_.clear();
    pending_empty_.clear();
    if (in_message_) HF_RETURN_IF_ERROR(sink_.OnMessageEnd());
    in_message_ = false;
    envelope_ = MboxEnvelope{};
    envelope_.offset = line_offset_;
    envelope_.from_line = std::string(kFrom);
    mode_ = Mode::kFromLine;
    return Status::Ok();
  }
  // ">+From " (mboxrd: one '>' less), or "From " inside a message's text.
  if (format_ == MboxFormat::kMboxrd && quotes_ > 0) --quotes_;
  HF_RETURN_IF_ERROR(FlushLineStart());
  mode_ = Mode::kBodyLine;
  return Status::Ok();
}

Status MboxParser::OrdinaryLine(bool* consumed) {
  HF_RETURN_IF_ERROR(FlushLineStart());
  mode_ = Mode::kBodyLine;
  *consumed = false;  // the byte that decided it is the line's next text byte
  return Status::Ok();
}

Status MboxParser::EmptyLine(std::string_view eol) {
  after_empty_line_ = true;
  if (!in_message_) return Status::Ok();  // empty lines before the first message are ignored
  // Only the last empty line before an envelope line is the separator: an
  // earlier one held back was content after all.
  if (!pending_empty_.empty()) HF_RETURN_IF_ERROR(sink_.OnMessageData(pending_empty_));
  pending_empty_ = eol;
  return Status::Ok();
}

Status MboxParser::StartMessage() {
  std::string& line = envelope_.from_line;
  if (!line.empty() && line.back() == '\n') line.pop_back();
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.size() > kMaxFromLine) line.resize(kMaxFromLine);
  const std::string_view rest = std::string_view(line).substr(kFrom.size());
  envelope_.sender = std::string(rest.substr(0, std::min(rest.find_first_of(" \t"), rest.size())));
  in_message_ = true;
  return sink_.OnMessageStart(envelope_);
}

Status MboxParser::Emit(std::string_view piece) {
  if (piece.empty()) return Status::Ok();
  if (!in_message_) {
    return Status::Invalid("not an mbox file: text at offset " + std::to_string(line_offset_) +
                           " before the first \"From \" line");
  }
  if (!pending_empty_.empty()) {
    HF_RETURN_IF_ERROR(sink_.OnMessageData(pending_empty_));
    pending_empty_.clear();
  }
  return sink_.OnMessageData(piece);
}

Status MboxParser::FlushLineStart() {
  static const std::string kQuotes(256, '>');
  while (quotes_ > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(quotes_, kQuotes.size()));
    HF_RETURN_IF_ERROR(Emit(std::string_view(kQuotes).substr(0, n)));
    quotes_ -= n;
  }
  std::string held = std::move(held_);
  held_.clear();
  return Emit(held);
}

Status MboxParser::Finish() {
  if (!error_.ok()) return error_;
  Status s;
  if (mode_ == Mode::kLineStart) {
    s = FlushLineStart();  // an unfinished last line that is not empty
  } else if (mode_ == Mode::kFromLine) {
    s = StartMessage();  // an envelope line at the very end: an empty message
  }
  if (!s.ok()) return Fail(s);
  // A final empty line is the separator after the last message.
  pending_empty_.clear();
  if (in_message_) {
    in_message_ = false;
    s = sink_.OnMessageEnd();
    if (!s.ok()) return Fail(s);
  }
  mode_ = Mode::kLineStart;
  return Status::Ok();
}

Status MboxParser::Fail(Status s) {
  error_ = std::move(s);
  return error_;
}

Status ReadMbox(File& file, uint64_t size, MboxParser& parser, size_t chunk,
                const std::function<void(uint64_t)>& progress) {
  std::string buf(std::max<size_t>(chunk, 1), '\0');
  uint64_t done = 0;
  while (done < size) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - done));
    HF_ASSIGN_OR_RETURN(size_t got, file.ReadAt(done, buf.data(), want));
    if (got == 0) break;  // the file shrank since its size was taken: stop at its end
    HF_RETURN_IF_ERROR(parser.Feed(std::string_view(buf.data(), got)));
    done += got;
    if (progress) progress(done);
  }
  return parser.Finish();
}

}  // namespace holdfast
