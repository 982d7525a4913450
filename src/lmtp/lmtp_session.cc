#include "lmtp/lmtp_session.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "lmtp/address.h"

namespace holdfast::lmtp {

namespace {

constexpr std::string_view kTooBig = "message size exceeds fixed maximum message size";

// The terminator line ".\r\n" is 3 bytes: a partial line shorter than that
// may still become it, whatever max_data_line says.
constexpr size_t kTerminatorLength = 3;

char Upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Upper(a[i]) != Upper(b[i])) return false;
  }
  return true;
}

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// Reply text goes out verbatim on one line: a stray CR or LF from a server
// message would let it forge further replies.
void AppendSanitized(std::string_view s, std::string* out) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    out->push_back(u < 0x20 || u >= 0x7f ? '?' : c);
  }
}

void AppendLine(int code, char sep, std::string_view enhanced, std::string_view text, std::string* out) {
  char num[8];
  std::snprintf(num, sizeof num, "%03d", code);
  out->append(num);
  out->push_back(sep);
  if (!enhanced.empty()) {
    AppendSanitized(enhanced, out);
    out->push_back(' ');
  }
  AppendSanitized(text, out);
  out->append("\r\n");
}

// What makes a command line unacceptable before it is even parsed; "" if
// nothing does.
std::string BadByte(std::string_view cmd) {
  for (char c : cmd) {
    auto u = static_cast<unsigned char>(c);
    if (u == 0) return "command contains a NUL byte";
    if (u == '\r') return "command contains a bare CR";
    char buf[64];
    if (u < 0x20 || u == 0x7f) {
      std::snprintf(buf, sizeof buf, "command contains control byte 0x%02x", u);
      return buf;
    }
    if (u >= 0x80) {
      std::snprintf(buf, sizeof buf, "command contains non-ASCII byte 0x%02x", u);
      return buf;
    }
  }
  return "";
}

struct PathArg {
  std::string_view path;    // between < and >
  std::string_view params;  // after >, trimmed
};

// Splits "<path> params". A quoted local part may hold '>', so quotes are
// honoured when looking for the end of the path.
bool SplitPathArg(std::string_view arg, PathArg* r, std::string* why) {
  arg = TrimSpaces(arg);
  if (arg.empty() || arg.front() != '<') {
    *why = "address must be enclosed in <>";
    return false;
  }
  size_t i = 1;
  bool quoted = false;
  while (i < arg.size() && (quoted || arg[i] != '>')) {
    if (quoted && arg[i] == '\\') {
      i += 2;
      continue;
    }
    if (arg[i] == '"') quoted = !quoted;
    ++i;
  }
  if (i >= arg.size()) {
    *why = "address has no closing '>'";
    return false;
  }
  r->path = arg.substr(1, i - 1);
  r->params = arg.substr(i + 1);
  if (!r->params.empty() && r->params.front() != ' ') {
    *why = "text after '>' must be parameters separated by a space";
    return false;
  }
  r->params = TrimSpaces(r->params);
  return true;
}

std::vector<std::string_view> SplitParams(std::string_view s) {
  std::vector<std::string_view> r;
  while (!s.empty()) {
    size_t sp = s.find(' ');
    if (sp != 0) r.push_back(s.substr(0, sp));
    if (sp == std::string_view::npos) break;
    s.remove_prefix(sp + 1);
  }
  return r;
}

bool ParseDecimal(std::string_view s, uint64_t* v) {
  if (s.empty() || s.size() > 19) return false;  // 19 digits cannot overflow
  uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  *v = n;
  return true;
}

}  // namespace

Session::Session(std::string hostname, Limits limits, RecipientResolver resolver)
    : hostname_(std::move(hostname)), limits_(limits), resolver_(std::move(resolver)) {}

std::string Session::Greeting() const {
  std::string out;
  AppendLine(220, ' ', "", hostname_ + " LMTP holdfast ready", &out);
  return out;
}

Event Session::Feed(std::string_view bytes, std::string* out) {
  if (state_ == State::kClosed) return Event{Event::Kind::kClose, {}, {}};
  in_.append(bytes);
  if (state_ == State::kAwaiting) return Event{};
  return Run(out);
}

Event Session::CompleteMessage(const std::vector<Reply>& per_recipient, std::string* out) {
  if (state_ == State::kClosed) return Event{Event::Kind::kClose, {}, {}};
  if (state_ != State::kAwaiting) return Event{};
  if (per_recipient.size() != awaiting_rcpts_) {
    for (size_t i = 0; i < awaiting_rcpts_; ++i) {
      AppendLine(451, ' ', "4.3.0", "internal error, try again later", out);
    }
  } else {
    for (const Reply& r : per_recipient) {
      // Only a final 2xx/4xx/5xx makes sense after the dot.
      int klass = r.code / 100;
      if (r.code < 200 || r.code > 599 || klass == 3) {
        AppendLine(451, ' ', "4.3.0", "internal error, try again later", out);
      } else {
        AppendLine(r.code, ' ', r.enhanced, r.text, out);
      }
    }
  }
  errors_ = 0;
  state_ = State::kCommand;
  return Run(out);
}

void Session::Abort(std::string_view enhanced, std::string_view reason, std::string* out) {
  if (state_ == State::kClosed) return;
  Close(421, enhanced, hostname_ + " " + std::string(reason), out);
}

Event Session::Run(std::string* out) {
  Event ev;
  while (state_ == State::kCommand || state_ == State::kData) {
    bool progress = state_ == State::kCommand ? StepCommand(out) : StepData(out, &ev);
    if (!progress) break;
  }
  if (state_ == State::kClosed) {
    ev.kind = Event::Kind::kClose;
    return ev;
  }
  // Keeps the buffer from growing with the whole connection's input.
  if (pos_ == in_.size() || pos_ > in_.size() / 2) {
    in_.erase(0, pos_);
    scanned_ -= pos_;
    pos_ = 0;
  }
  return ev;
}

bool Session::StepCommand(std::string* out) {
  size_t lf = in_.find('\n', std::max(scanned_, pos_));
  bool found = lf != std::string::npos;
  size_t end = found ? lf + 1 : in_.size();
  if (end == pos_) return false;
  if (skipping_) {
    CountBeforeLhlo(end - pos_);
    pos_ = scanned_ = end;
    skipping_ = !found;
    return CheckBeforeLhlo(out) && found;
  }
  // Replies must not depend on how the input was split into reads, so the
  // two limits are applied in the order a byte-at-a-time client would hit
  // them: at the byte that breaks the pre-LHLO budget (first on a tie), or
  // at the byte that makes the line too long.
  size_t total = end - pos_;
  size_t text = total - (found ? 1 : 0);
  size_t left = lhlo_seen_ ? SIZE_MAX : limits_.max_bytes_before_lhlo - bytes_before_lhlo_;
  size_t budget_at = left == SIZE_MAX ? SIZE_MAX : left + 1;
  size_t long_at = text >= limits_.max_command_line ? limits_.max_command_line : SIZE_MAX;
  if (budget_at <= total && budget_at <= long_at) {
    Close(554, "5.5.0", "too much input before LHLO", out);
    return false;
  }
  if (!found && long_at == SIZE_MAX) {
    scanned_ = in_.size();
    return false;
  }
  std::string_view line(in_.data() + pos_, total);
  CountBeforeLhlo(total);
  pos_ = scanned_ = end;
  if (long_at == SIZE_MAX) {
    HandleCommand(line, out);
    return true;
  }
  // Without an LF the line can only grow: answer now, so a client that never
  // sends one is not left waiting, and drop the rest of the line.
  skipping_ = !found;
  Error(500, "5.5.2", "line too long", out);
  return state_ == State::kClosed || CheckBeforeLhlo(out);
}

void Session::CountBeforeLhlo(size_t n) {
  if (!lhlo_seen_) bytes_before_lhlo_ += n;
}

bool Session::CheckBeforeLhlo(std::string* out) {
  if (lhlo_seen_ || bytes_before_lhlo_ <= limits_.max_bytes_before_lhlo) return true;
  Close(554, "5.5.0", "too much input before LHLO", out);
  return false;
}

bool Session::StepData(std::string* out, Event* ev) {
  size_t lf = in_.find('\n', std::max(scanned_, pos_));
  bool found = lf != std::string::npos;
  size_t end = found ? lf + 1 : in_.size();
  if (skipping_) {
    body_size_ += end - pos_;  // raw bytes, as for any line too long
    if (found) {
      bool crlf = lf > pos_ ? in_[lf - 1] == '\r' : dropped_cr_;
      if (!crlf) bare_lf_ = true;
      after_crlf_ = crlf;
    } else if (end > pos_) {
      dropped_cr_ = in_[end - 1] == '\r';
    }
    pos_ = scanned_ = end;
    skipping_ = !found;
    return found;
  }
  if (!found) {
    scanned_ = in_.size();
    size_t pending = in_.size() - pos_;
    if (pending < std::max(limits_.max_data_line, kTerminatorLength)) return false;
    // The line is too long already; it cannot be the terminator, so drop it
    // rather than hold it in memory.
    body_size_ += pending;
    DropBody(true);
    dropped_cr_ = in_.back() == '\r';
    pos_ = scanned_ = in_.size();
    skipping_ = true;
    return true;
  }
  std::string_view line(in_.data() + pos_, end - pos_);
  pos_ = scanned_ = end;
  // RFC 5321 4.1.1.4: the data ends at CRLF "." CRLF and nowhere else. A
  // server that also ended it at LF "." LF (or any other mix) would cut a
  // message short and read the rest as commands: SMTP smuggling.
  const bool crlf = line.size() >= 2 && line[line.size() - 2] == '\r';
  if (line == ".\r\n" && after_crlf_) return EndOfData(out, ev);
  after_crlf_ = crlf;
  if (!crlf) bare_lf_ = true;
  if (line.size() > limits_.max_data_line) {
    body_size_ += line.size();
    DropBody(true);
    return true;
  }
  // RFC 5321 4.5.2: a leading '.' is removed from any other line.
  if (line.front() == '.') line.remove_prefix(1);
  body_size_ += line.size();
  if (body_size_ > limits_.max_message_size) {
    DropBody(false);
  } else if (!line_too_long_) {
    body_.append(line);
  }
  return true;
}

void Session::DropBody(bool line_too_long) {
  line_too_long_ = line_too_long_ || line_too_long;
  std::string().swap(body_);  // the message is lost anyway: free its memory now
}

bool Session::EndOfData(std::string* out, Event* ev) {
  std::string_view enhanced, text;
  int code = 0;
  std::string long_line;
  if (body_size_ > limits_.max_message_size) {
    code = 552, enhanced = "5.3.4", text = kTooBig;
  } else if (line_too_long_) {
    long_line = "message has a line longer than " + std::to_string(limits_.max_data_line) + " bytes";
    code = 500, enhanced = "5.5.2", text = long_line;
  } else if (bare_lf_ && limits_.reject_bare_lf) {
    code = 550, enhanced = "5.6.0", text = "message contains a bare LF; lines must end with CRLF (RFC 5321 2.3.8)";
  }
  if (code != 0) {
    // Nothing is stored, so there is nothing to wait for.
    for (size_t i = 0; i < envelope_.rcpts.size(); ++i) AppendLine(code, ' ', enhanced, text, out);
    ResetTransaction();
    state_ = State::kCommand;
    return true;
  }
  ev->kind = Event::Kind::kMessage;
  ev->envelope = std::move(envelope_);
  envelope_.helo = ev->envelope.helo;
  ev->envelope.client = client_;
  ev->body = std::move(body_);
  awaiting_rcpts_ = ev->envelope.rcpts.size();
  ResetTransaction();
  state_ = State::kAwaiting;
  return false;
}

void Session::HandleCommand(std::string_view line, std::string* out) {
  command_crlf_ = line.ends_with("\r\n");
  line.remove_suffix(command_crlf_ ? 2 : 1);
  if (!command_crlf_ && limits_.reject_bare_lf) {
    return Error(500, "5.5.2", "command ends with a bare LF; end commands with CRLF", out);
  }
  if (std::string why = BadByte(line); !why.empty()) return Error(500, "5.5.2", why, out);
  if (line.empty()) return Error(500, "5.5.2", "empty command", out);
  size_t sp = line.find(' ');
  std::string_view verb = line.substr(0, sp);
  std::string_view arg = sp == std::string_view::npos ? std::string_view() : TrimSpaces(line.substr(sp + 1));

  if (EqualsIgnoreCase(verb, "LHLO")) return CmdLhlo(arg, out);
  if (EqualsIgnoreCase(verb, "MAIL")) return CmdMail(arg, out);
  if (EqualsIgnoreCase(verb, "RCPT")) return CmdRcpt(arg, out);
  if (EqualsIgnoreCase(verb, "DATA")) return CmdData(arg, out);
  if (EqualsIgnoreCase(verb, "RSET")) {
    ResetTransaction();
    return Send(250, "2.0.0", "OK", out);
  }
  if (EqualsIgnoreCase(verb, "NOOP")) return Send(250, "2.0.0", "OK", out);
  if (EqualsIgnoreCase(verb, "QUIT")) return Close(221, "2.0.0", hostname_ + " closing connection", out);
  if (EqualsIgnoreCase(verb, "VRFY")) {
    return Send(252, "2.5.2", "cannot VRFY user, but will accept message and attempt delivery", out);
  }
  if (EqualsIgnoreCase(verb, "HELP")) {
    return Send(214, "2.0.0", "commands: LHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP", out);
  }
  if (EqualsIgnoreCase(verb, "HELO") || EqualsIgnoreCase(verb, "EHLO")) {
    return Error(500, "5.5.1", "this is LMTP: use LHLO", out);
  }
  if (EqualsIgnoreCase(verb, "STARTTLS")) return Error(502, "5.5.1", "STARTTLS not offered", out);
  if (EqualsIgnoreCase(verb, "EXPN")) return Error(502, "5.5.1", "EXPN not supported", out);
  Error(500, "5.5.1", "command not recognized", out);
}

void Session::CmdLhlo(std::string_view arg, std::string* out) {
  if (arg.empty()) return Error(501, "5.5.4", "syntax: LHLO <host name>", out);
  // RFC 5321 4.1.4: a repeated greeting resets the transaction.
  ResetTransaction();
  lhlo_seen_ = true;
  envelope_.helo = std::string(arg);
  errors_ = 0;
  AppendLine(250, '-', "", hostname_, out);
  AppendLine(250, '-', "", "PIPELINING", out);
  AppendLine(250, '-', "", "ENHANCEDSTATUSCODES", out);
  AppendLine(250, '-', "", "8BITMIME", out);
  AppendLine(250, ' ', "", "SIZE " + std::to_string(limits_.max_message_size), out);
}

void Session::CmdMail(std::string_view arg, std::string* out) {
  if (!lhlo_seen_) return Error(503, "5.5.1", "send LHLO first", out);
  if (mail_seen_) return Error(503, "5.5.1", "nested MAIL command", out);
  if (!StartsWithIgnoreCase(arg, "FROM:")) {
    return Error(501, "5.5.4", "syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME]", out);
  }
  PathArg pa;
  std::string why;
  if (!SplitPathArg(arg.substr(5), &pa, &why)) return Error(501, "5.1.7", "bad sender address: " + why, out);
  auto from = ParsePath(pa.path);
  if (!from.ok()) return Error(501, "5.1.7", "bad sender address: " + from.status().message(), out);

  uint64_t size = 0;
  bool body_8bit = false;
  for (std::string_view p : SplitParams(pa.params)) {
    size_t eq = p.find('=');
    std::string_view key = p.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view() : p.substr(eq + 1);
    if (EqualsIgnoreCase(key, "SIZE")) {
      if (!ParseDecimal(value, &size)) return Error(501, "5.5.4", "SIZE needs a decimal number", out);
    } else if (EqualsIgnoreCase(key, "BODY")) {
      if (EqualsIgnoreCase(value, "8BITMIME")) {
        body_8bit = true;
      } else if (EqualsIgnoreCase(value, "7BIT")) {
        body_8bit = false;
      } else {
        return Error(501, "5.5.4", "BODY must be 7BIT or 8BITMIME", out);
      }
    } else {
      return Error(555, "5.5.4", "MAIL parameter " + std::string(key.substr(0, 32)) + " not supported", out);
    }
  }
  if (size > limits_.max_message_size) return Send(552, "5.3.4", kTooBig, out);
  mail_seen_ = true;
  envelope_.mail_from = std::move(*from);
  envelope_.body_8bit = body_8bit;
  Send(250, "2.1.0", "sender <" + envelope_.mail_from + "> ok", out);
}

void Session::CmdRcpt(std::string_view arg, std::string* out) {
  if (!mail_seen_) return Error(503, "5.5.1", "need MAIL before RCPT", out);
  if (!StartsWithIgnoreCase(arg, "TO:")) return Error(501, "5.5.4", "syntax: RCPT TO:<address>", out);
  PathArg pa;
  std::string why;
  if (!SplitPathArg(arg.substr(3), &pa, &why)) return Error(501, "5.1.3", "bad recipient address: " + why, out);
  if (!pa.params.empty()) return Error(555, "5.5.4", "RCPT parameters not supported", out);
  if (pa.path.empty()) return Error(501, "5.1.3", "the null address <> is not a recipient", out);
  auto to = ParsePath(pa.path);
  if (!to.ok()) return Error(501, "5.1.3", "bad recipient address: " + to.status().message(), out);
  if (envelope_.rcpts.size() >= limits_.max_recipients) return Send(452, "4.5.3", "too many recipients", out);

  Recipient r;
  r.address = *to;
  RcptCheck check = resolver_ ? resolver_(*to, &r) : RcptCheck::kTempFail;
  r.address = *to;
  switch (check) {
    case RcptCheck::kOk:
      envelope_.rcpts.push_back(std::move(r));
      return Send(250, "2.1.5", "<" + *to + "> ok", out);
    case RcptCheck::kUnknown:
      return Send(550, "5.1.1", "<" + *to + ">: no such user", out);
    case RcptCheck::kTempFail:
      break;
  }
  Send(451, "4.3.0", "<" + *to + ">: temporary failure, try again later", out);
}

void Session::CmdData(std::string_view arg, std::string* out) {
  if (!arg.empty()) return Error(501, "5.5.4", "syntax: DATA", out);
  if (!mail_seen_) return Error(503, "5.5.1", "need MAIL command", out);
  // RFC 2033 4.2: DATA without a successful RCPT must fail with 503.
  if (envelope_.rcpts.empty()) return Error(503, "5.5.1", "no valid recipients", out);
  state_ = State::kData;
  body_.clear();
  body_size_ = 0;
  line_too_long_ = false;
  bare_lf_ = false;
  after_crlf_ = command_crlf_;
  dropped_cr_ = false;
  skipping_ = false;
  // No enhanced code: RFC 3463 has no class 3.
  Send(354, "", "start mail input; end with <CRLF>.<CRLF>", out);
}

void Session::Send(int code, std::string_view enhanced, std::string_view text, std::string* out) {
  errors_ = 0;
  AppendLine(code, ' ', enhanced, text, out);
}

void Session::Error(int code, std::string_view enhanced, std::string_view text, std::string* out) {
  AppendLine(code, ' ', enhanced, text, out);
  ++errors_;
  if (limits_.max_errors != 0 && errors_ >= limits_.max_errors) {
    Close(421, "4.7.0", hostname_ + " too many errors, closing connection", out);
  }
}

void Session::Close(int code, std::string_view enhanced, std::string_view text, std::string* out) {
  AppendLine(code, ' ', enhanced, text, out);
  state_ = State::kClosed;
  std::string().swap(in_);
  std::string().swap(body_);
  pos_ = scanned_ = 0;
}

void Session::ResetTransaction() {
  mail_seen_ = false;
  envelope_.mail_from.clear();
  envelope_.body_8bit = false;
  envelope_.rcpts.clear();
  std::string().swap(body_);
  body_size_ = 0;
  line_too_long_ = false;
  bare_lf_ = false;
}

}  // namespace holdfast::lmtp
