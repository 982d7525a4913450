#include "pop3/pop3_session.h"

#include <cstdio>
#include <functional>
#include <utility>

#include "pop3/sasl_plain.h"

namespace holdfast::pop3 {

namespace {

constexpr std::string_view kPlaintextDisallowed = "[AUTH] plaintext authentication disallowed without TLS";

// Below this a line could be too long before "AUTH " is known, and the
// reply would depend on how the input was split.
constexpr size_t kMinLineLimit = 16;

// RFC 1939 UIDL: 1 to 70 characters in the range 0x21 to 0x7E.
constexpr size_t kMaxUidl = 70;

char Upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Upper(a[i]) != Upper(b[i])) return false;
  }
  return true;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// Reply text goes out on one line: a stray CR or LF would forge replies.
void AppendSanitized(std::string_view s, std::string* out) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    out->push_back(u < 0x20 || u >= 0x7f ? '?' : c);
  }
}

void AppendReply(std::string_view status, std::string_view text, std::string* out) {
  out->append(status);
  if (!text.empty()) {
    out->push_back(' ');
    AppendSanitized(text, out);
  }
  out->append("\r\n");
}

// What makes a command line unacceptable before it is parsed; "" if nothing
// does. 8-bit bytes pass: a password may be UTF-8.
std::string BadByte(std::string_view line) {
  for (char c : line) {
    auto u = static_cast<unsigned char>(c);
    if (u == 0) return "command contains a NUL byte";
    if (u == '\r') return "command contains a bare CR";
    if (u < 0x20 || u == 0x7f) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "command contains control byte 0x%02x", u);
      return buf;
    }
  }
  return "";
}

// A decimal number; more digits than fit saturate, as no maildrop is that big.
bool ParseNumber(std::string_view s, uint64_t* v) {
  if (s.empty()) return false;
  uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
  }
  *v = n;
  return true;
}

bool ValidUidl(std::string_view u) {
  if (u.empty() || u.size() > kMaxUidl) return false;
  return std::all_of(u.begin(), u.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
}

std::string MaildropSummary(const std::vector<MessageInfo>& maildrop, const std::vector<bool>& deleted) {
  uint64_t count = 0, octets = 0;
  for (size_t i = 0; i < maildrop.size(); ++i) {
    if (deleted[i]) continue;
    ++count;
    octets += maildrop[i].size;
  }
  return std::to_string(count) + " messages (" + std::to_string(octets) + " octets)";
}

Event CloseEvent() {
  Event ev;
  ev.kind = Event::Kind::kClose;
  return ev;
}

}  // namespace

Session::Session(Options options, Limits limits)
    : options_(std::move(options)), limits_(limits), tls_active_(options_.tls_active) {}

std::string Session::Greeting() const {
  std::string out;
  AppendReply("+OK", options_.hostname + " POP3 holdfast ready", &out);
  return out;
}

Event Session::Feed(std::string_view bytes, std::string* out) {
  if (state_ == State::kClosed) return CloseEvent();
  // RFC 2595 section 4: what arrives before the handshake is not trusted.
  if (state_ == State::kAwaiting && awaited_ == Event::Kind::kStartTls) return Event{};
  in_.append(bytes);
  if (state_ == State::kAwaiting) return Event{};
  return Run(out);
}

namespace {

// Every UIDL valid and none twice. An open-addressing table of pointers
// (one allocation) rather than a node-based set: a 100,000-message maildrop
// is checked at every login (4 ms instead of 11-35 ms).
bool ValidUniqueUidls(const std::vector<MessageInfo>& maildrop) {
  size_t cap = 16;
  while (cap < 2 * maildrop.size()) cap <<= 1;
  struct Slot {
    size_t hash = 0;
    const std::string* uidl = nullptr;
  };
  std::vector<Slot> table(cap);
  for (const MessageInfo& m : maildrop) {
    if (!ValidUidl(m.uidl)) return false;
    const size_t h = std::hash<std::string_view>()(m.uidl);
    size_t i = h & (cap - 1);
    for (; table[i].uidl != nullptr; i = (i + 1) & (cap - 1)) {
      if (table[i].hash == h && *table[i].uidl == m.uidl) return false;
    }
    table[i] = Slot{h, &m.uidl};
  }
  return true;
}

}  // namespace

Event Session::CompleteAuth(AuthResult result, std::vector<MessageInfo> maildrop, std::string* out) {
  if (state_ == State::kClosed) return CloseEvent();
  if (state_ != State::kAwaiting || awaited_ != Event::Kind::kAuthenticate) return Event{};
  state_ = State::kAuthorization;
  awaited_ = Event::Kind::kNone;
  switch (result) {
    case AuthResult::kOk: {
      if (!ValidUniqueUidls(maildrop)) {
        Err("[SYS/PERM] internal error: the maildrop has an invalid UIDL", out);
        Close();
        return CloseEvent();
      }
      maildrop_ = std::move(maildrop);
      deleted_.assign(maildrop_.size(), false);
      authenticated_ = true;
      state_ = State::kTransaction;
      Ok("maildrop has " + MaildropSummary(maildrop_, deleted_), out);
      break;
    }
    case AuthResult::kBadCredentials:
      AuthFailed("[AUTH] authentication failed", out);
      break;
    case AuthResult::kInUse:
      Err("[IN-USE] maildrop is in use by another session", out);
      break;
    case AuthResult::kLoginDelay:
      Err("[LOGIN-DELAY] logged in too recently, try again later", out);
      break;
    case AuthResult::kPermFailure:
      Err("[SYS/PERM] maildrop unavailable, contact the administrator", out);
      break;
    case AuthResult::kTempFailure:
    default:
      Err("[SYS/TEMP] temporary failure, try again later", out);
      break;
  }
  return Run(out);
}

Event Session::CompleteRetrieve(RetrieveResult result, std::string* out) {
  if (state_ == State::kClosed) return CloseEvent();
  if (state_ != State::kAwaiting || awaited_ != Event::Kind::kRetrieve) return Event{};
  state_ = State::kTransaction;
  awaited_ = Event::Kind::kNone;
  if (result == RetrieveResult::kSent) {
    errors_ = 0;
  } else {
    Err("[SYS/TEMP] message " + std::to_string(retrieving_) + " cannot be read now, try again later", out);
  }
  return Run(out);
}

Event Session::TlsStarted(std::string* out) {
  if (state_ == State::kClosed) return CloseEvent();
  if (state_ != State::kAwaiting || awaited_ != Event::Kind::kStartTls) return Event{};
  state_ = State::kAuthorization;
  awaited_ = Event::Kind::kNone;
  tls_active_ = true;
  return Run(out);
}

Event Session::CompleteQuit(bool ok, std::string* out) {
  if (state_ == State::kClosed) return CloseEvent();
  if (state_ != State::kAwaiting || awaited_ != Event::Kind::kQuit) return Event{};
  if (ok) {
    Ok(options_.hostname + " POP3 holdfast signing off", out);
  } else {
    Err("[SYS/TEMP] some deleted messages not removed", out);
  }
  Close();
  return CloseEvent();
}

void Session::Abort(std::string_view reason, std::string* out) {
  if (state_ == State::kClosed) return;
  AppendReply("-ERR", reason, out);
  Close();
}

Event Session::Run(std::string* out) {
  Event ev;
  while (state_ == State::kAuthorization || state_ == State::kSaslResponse || state_ == State::kTransaction) {
    if (!Step(out, &ev)) break;
  }
  if (state_ == State::kClosed) return CloseEvent();
  // Keeps the buffer from growing with the whole connection's input.
  if (pos_ == in_.size() || pos_ > in_.size() / 2) {
    in_.erase(0, pos_);
    scanned_ -= pos_;
    pos_ = 0;
  }
  return ev;
}

size_t Session::LineLimit() const {
  size_t command = std::max(limits_.max_command_line, kMinLineLimit);
  size_t auth = std::max(limits_.max_auth_line, command);
  if (state_ == State::kSaslResponse) return auth;
  std::string_view head(in_.data() + pos_, std::min<size_t>(5, in_.size() - pos_));
  return EqualsIgnoreCase(head, "AUTH ") ? auth : command;
}

bool Session::Step(std::string* out, Event* ev) {
  size_t lf = in_.find('\n', std::max(scanned_, pos_));
  bool found = lf != std::string::npos;
  size_t end = found ? lf + 1 : in_.size();
  if (end == pos_) return false;
  if (skipping_) {
    pos_ = scanned_ = end;
    skipping_ = !found;
    return found;
  }
  size_t text = end - pos_ - (found ? 1 : 0);
  if (text < LineLimit()) {
    if (!found) {
      scanned_ = in_.size();
      return false;
    }
    std::string_view line(in_.data() + pos_, end - pos_);
    pos_ = scanned_ = end;
    HandleLine(line, out, ev);
    return true;
  }
  // Without an LF the line can only grow: answer now, so a client that never
  // sends one is not left waiting, and drop the rest of the line unread.
  pos_ = scanned_ = end;
  skipping_ = !found;
  if (state_ == State::kSaslResponse) state_ = State::kAuthorization;
  user_.reset();
  Error("line too long", out);
  return true;
}

void Session::HandleLine(std::string_view line, std::string* out, Event* ev) {
  line.remove_suffix(line.ends_with("\r\n") ? 2 : 1);  // a bare LF is accepted
  if (state_ == State::kSaslResponse) return HandleSaslResponse(line, out, ev);
  // PASS must follow USER at once (RFC 1939): any other line forgets it.
  std::optional<std::string> user = std::exchange(user_, std::nullopt);
  if (std::string why = BadByte(line); !why.empty()) return Error(why, out);
  if (line.empty()) return Error("empty command", out);
  size_t sp = line.find(' ');
  std::string_view verb = line.substr(0, sp);
  std::string_view arg = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
  if (EqualsIgnoreCase(verb, "PASS") && state_ == State::kAuthorization) {
    return CmdPass(std::move(user), arg, out, ev);
  }
  HandleCommand(verb, arg, out, ev);
}

void Session::HandleCommand(std::string_view verb, std::string_view raw_arg, std::string* out, Event* ev) {
  auto is = [verb](std::string_view name) { return EqualsIgnoreCase(verb, name); };
  std::string_view arg = TrimSpaces(raw_arg);
  if (is("CAPA")) return arg.empty() ? CmdCapa(out) : Error("syntax: CAPA", out);
  if (is("QUIT")) return CmdQuit(arg, out, ev);
  static constexpr std::string_view kAuthorizationOnly[] = {"USER", "PASS", "AUTH", "APOP", "STLS"};
  static constexpr std::string_view kTransactionOnly[] = {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL"};
  if (state_ == State::kAuthorization) {
    if (is("USER")) return CmdUser(arg, out);
    if (is("AUTH")) return CmdAuth(arg, out, ev);
    if (is("STLS")) return CmdStls(arg, out, ev);
    // Not counted as an error: a client may try APOP before anything else.
    if (is("APOP")) return Err("APOP not supported", out);
    if (std::any_of(std::begin(kTransactionOnly), std::end(kTransactionOnly), is)) {
      return Error("command not valid in the AUTHORIZATION state", out);
    }
    return Error("unknown command", out);
  }
  if (is("STAT")) {
    if (!arg.empty()) return Error("syntax: STAT", out);
    uint64_t count = 0, octets = 0;
    for (size_t i = 0; i < maildrop_.size(); ++i) {
      if (!deleted_[i]) ++count, octets += maildrop_[i].size;
    }
    return Ok(std::to_string(count) + " " + std::to_string(octets), out);
  }
  if (is("LIST")) return CmdList(arg, false, out);
  if (is("UIDL")) return CmdList(arg, true, out);
  if (is("RETR")) return CmdRetr(arg, false, out, ev);
  if (is("TOP")) return CmdRetr(arg, true, out, ev);
  if (is("DELE")) return CmdDele(arg, out);
  if (is("NOOP")) return arg.empty() ? Ok("", out) : Error("syntax: NOOP", out);
  if (is("RSET")) {
    if (!arg.empty()) return Error("syntax: RSET", out);
    deleted_.assign(maildrop_.size(), false);
    return Ok("maildrop has " + MaildropSummary(maildrop_, deleted_), out);
  }
  if (std::any_of(std::begin(kAuthorizationOnly), std::end(kAuthorizationOnly), is)) {
    return Error("command not valid in the TRANSACTION state", out);
  }
  Error("unknown command", out);
}

void Session::CmdCapa(std::string* out) {
  Ok("capability list follows", out);
  out->append("TOP\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
  if (options_.tls_available && !tls_active_) out->append("STLS\r\n");
  if (options_.login_delay_seconds != 0) {
    out->append("LOGIN-DELAY " + std::to_string(options_.login_delay_seconds) + "\r\n");
  }
  out->append("IMPLEMENTATION holdfast\r\n.\r\n");
}

void Session::CmdUser(std::string_view arg, std::string* out) {
  if (arg.empty()) return Error("syntax: USER name", out);
  if (!PlaintextAllowed()) return Error(kPlaintextDisallowed, out);
  user_ = std::string(arg);
  // The same reply for every name: USER must not tell which users exist.
  Ok("send PASS", out);
}

void Session::CmdPass(std::optional<std::string> user, std::string_view arg, std::string* out, Event* ev) {
  if (!user) return Error("send USER first", out);
  // RFC 1939: the argument is the rest of the line; a password may hold spaces.
  if (arg.empty()) return Error("syntax: PASS password", out);
  Authenticate(std::move(*user), std::string(arg), ev);
}

void Session::CmdAuth(std::string_view arg, std::string* out, Event* ev) {
  if (arg.empty()) {
    // Not in RFC 5034, but Outlook asks this way (RFC 1734's AUTH listing).
    Ok("SASL mechanisms follow", out);
    out->append("PLAIN\r\n.\r\n");
    return;
  }
  size_t sp = arg.find(' ');
  std::string_view mechanism = arg.substr(0, sp);
  std::string_view initial = sp == std::string_view::npos ? std::string_view() : TrimSpaces(arg.substr(sp + 1));
  if (!EqualsIgnoreCase(mechanism, "PLAIN")) return Error("unrecognized authentication mechanism", out);
  if (initial.find(' ') != std::string_view::npos) return Error("syntax: AUTH PLAIN [initial-response]", out);
  if (!PlaintextAllowed()) return Error(kPlaintextDisallowed, out);
  if (initial.empty()) {
    errors_ = 0;
    out->append("+ \r\n");
    state_ = State::kSaslResponse;
    return;
  }
  // RFC 5034 section 4: "=" is an initial response of zero length.
  PlainLogin(initial == "=" ? std::string_view() : initial, out, ev);
}

void Session::HandleSaslResponse(std::string_view line, std::string* out, Event* ev) {
  state_ = State::kAuthorization;
  if (line == "*") return Err("authentication cancelled", out);
  PlainLogin(line, out, ev);
}

void Session::PlainLogin(std::string_view base64, std::string* out, Event* ev) {
  auto message = DecodeBase64(base64, kMaxPlainMessage);
  if (!message.ok()) return Error("invalid SASL response: " + message.status().message(), out);
  auto creds = ParsePlainMessage(*message);
  if (!creds.ok()) return Error("[AUTH] " + creds.status().message(), out);
  Authenticate(std::move(creds->authcid), std::move(creds->password), ev);
}

void Session::Authenticate(std::string user, std::string password, Event* ev) {
  ev->user = std::move(user);
  ev->password = std::move(password);
  Await(Event::Kind::kAuthenticate, ev);
}

void Session::CmdStls(std::string_view arg, std::string* out, Event* ev) {
  if (!arg.empty()) return Error("syntax: STLS", out);
  if (tls_active_) return Error("command not permitted when TLS active", out);
  if (!options_.tls_available) return Error("STLS not available", out);
  Ok("Begin TLS negotiation", out);
  // The STARTTLS command-injection defence: bytes pipelined behind STLS
  // came in plaintext and must not run as if they came over TLS.
  std::string().swap(in_);
  pos_ = scanned_ = 0;
  skipping_ = false;
  Await(Event::Kind::kStartTls, ev);
}

size_t Session::MessageArg(std::string_view arg, std::string* out) {
  uint64_t n = 0;
  if (!ParseNumber(arg, &n)) {
    Error("invalid message number", out);
    return 0;
  }
  if (n == 0 || n > maildrop_.size()) {
    Err("no such message", out);
    return 0;
  }
  if (deleted_[n - 1]) {
    Err("message " + std::to_string(n) + " already deleted", out);
    return 0;
  }
  return static_cast<size_t>(n);
}

void Session::CmdList(std::string_view arg, bool uidl, std::string* out) {
  auto value = [&](size_t i) { return uidl ? maildrop_[i].uidl : std::to_string(maildrop_[i].size); };
  if (!arg.empty()) {
    size_t n = MessageArg(arg, out);
    if (n != 0) Ok(std::to_string(n) + " " + value(n - 1), out);
    return;
  }
  Ok(uidl ? "unique-id listing follows" : MaildropSummary(maildrop_, deleted_), out);
  for (size_t i = 0; i < maildrop_.size(); ++i) {
    if (!deleted_[i]) out->append(std::to_string(i + 1) + " " + value(i) + "\r\n");
  }
  out->append(".\r\n");
}

void Session::CmdRetr(std::string_view arg, bool top, std::string* out, Event* ev) {
  std::string_view number = arg;
  uint64_t lines = 0;
  if (top) {
    size_t sp = arg.find(' ');
    number = arg.substr(0, sp);
    std::string_view count = sp == std::string_view::npos ? std::string_view() : TrimSpaces(arg.substr(sp + 1));
    if (!ParseNumber(count, &lines)) return Error("syntax: TOP message lines", out);
  }
  size_t n = MessageArg(number, out);
  if (n == 0) return;
  ev->message = n;
  if (top) {
    ev->top_lines = lines;
    ev->status = "+OK top of message follows\r\n";
  } else {
    ev->status = "+OK " + std::to_string(maildrop_[n - 1].size) + " octets\r\n";
  }
  retrieving_ = n;
  Await(Event::Kind::kRetrieve, ev);
}

void Session::CmdDele(std::string_view arg, std::string* out) {
  size_t n = MessageArg(arg, out);
  if (n == 0) return;
  deleted_[n - 1] = true;
  Ok("message " + std::to_string(n) + " deleted", out);
}

void Session::CmdQuit(std::string_view arg, std::string* out, Event* ev) {
  if (!arg.empty()) return Error("syntax: QUIT", out);
  if (state_ == State::kAuthorization) {
    // Nothing is locked yet, so there is nothing to update (RFC 1939 section 4).
    Ok(options_.hostname + " POP3 holdfast signing off", out);
    return Close();
  }
  for (size_t i = 0; i < deleted_.size(); ++i) {
    if (deleted_[i]) ev->deleted.push_back(i + 1);
  }
  Await(Event::Kind::kQuit, ev);
}

void Session::Ok(std::string_view text, std::string* out) {
  errors_ = 0;
  AppendReply("+OK", text, out);
}

void Session::Err(std::string_view text, std::string* out) {
  errors_ = 0;
  AppendReply("-ERR", text, out);
}

void Session::Error(std::string_view text, std::string* out) {
  ++errors_;
  if (limits_.max_errors != 0 && errors_ >= limits_.max_errors) {
    // POP3 has no unsolicited reply: the reason goes on the last one.
    AppendReply("-ERR", std::string(text) + " (too many errors, closing connection)", out);
    return Close();
  }
  AppendReply("-ERR", text, out);
}

void Session::AuthFailed(std::string_view text, std::string* out) {
  ++auth_failures_;
  if (limits_.max_auth_failures != 0 && auth_failures_ >= limits_.max_auth_failures) {
    AppendReply("-ERR", std::string(text) + " (too many failures, closing connection)", out);
    return Close();
  }
  Err(text, out);
}

void Session::Close() {
  state_ = State::kClosed;
  awaited_ = Event::Kind::kNone;
  std::string().swap(in_);
  pos_ = scanned_ = 0;
  skipping_ = false;
  user_.reset();
}

void Session::Await(Event::Kind kind, Event* ev) {
  ev->kind = kind;
  awaited_ = kind;
  state_ = State::kAwaiting;
}

}  // namespace holdfast::pop3
