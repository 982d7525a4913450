// pop3::Session: the POP3 protocol (RFC 1939, with CAPA and response codes
// from RFC 2449, RFC 3206, STLS from RFC 2595 and AUTH PLAIN from RFC 5034)
// for one connection, as a state machine without I/O. The server feeds it the
// bytes it reads and sends the bytes it gets back; the session never blocks,
// never throws, and survives any input (docs/pop3.md has the commands,
// replies, limits and the event protocol).
//
// Whatever needs the mailbox or the socket is handed out as an Event, and the
// session then pauses until the server calls the matching Complete*():
// credentials (kAuthenticate), a message to send (kRetrieve), the TLS
// handshake (kStartTls), and the deletions of the UPDATE state (kQuit).
// Pipelined input waits in a buffer meanwhile.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace holdfast::pop3 {

// Every limit is a guard against a client, not a protocol constant; a config
// layer may change any of them. Defaults are in docs/pop3.md.
struct Limits {
  size_t max_command_line = 512;   // bytes incl. CRLF (RFC 2449 asks for >= 255)
  size_t max_auth_line = 8192;     // "AUTH ..." and SASL response lines: base64 is long
  size_t max_errors = 10;          // consecutive bad commands, then close; 0 = no limit
  size_t max_auth_failures = 3;    // rejected credentials per connection, then close
};

// What the listener knows about this connection.
struct Options {
  std::string hostname;                // for the greeting
  bool tls_available = false;          // STLS may be offered (a certificate is loaded)
  bool tls_active = false;             // TLS from the first byte (POP3S, port 995)
  bool allow_plaintext_auth = false;   // USER/PASS and PLAIN without TLS: loopback or config
  uint32_t login_delay_seconds = 0;    // advertised as LOGIN-DELAY when not 0
};

// One message of the maildrop as the server snapshots it at login; message
// number n is entry n-1. Size is NetworkSize (pop3/dot_stuff.h) of the stored
// bytes: what RETR sends, bare LFs counted as CRLF. The UIDL is 1 to 70
// bytes of 0x21-0x7E and unique in the maildrop (RFC 1939 UIDL).
struct MessageInfo {
  uint64_t size = 0;
  std::string uidl;
};

enum class AuthResult {
  kOk,              // credentials good, maildrop locked, snapshot attached
  kBadCredentials,  // -ERR [AUTH]; counts toward max_auth_failures
  kInUse,           // -ERR [IN-USE]: another session holds the maildrop
  kLoginDelay,      // -ERR [LOGIN-DELAY]: logged in too recently
  kTempFailure,     // -ERR [SYS/TEMP]: lock timeout, I/O error
  kPermFailure,     // -ERR [SYS/PERM]: e.g. the maildrop is damaged
};

enum class RetrieveResult {
  kSent,         // the server sent Event::status, the content and ".\r\n"
  kUnavailable,  // it could not open the message and sent nothing
};

struct Event {
  enum class Kind {
    kNone,          // nothing to do but send the output and read more
    kAuthenticate,  // verify user/password, lock, snapshot; then CompleteAuth
    kRetrieve,      // send message `message` (RETR or TOP); then CompleteRetrieve
    kStartTls,      // send the output, handshake, then TlsStarted (or close)
    kQuit,          // UPDATE state: remove `deleted` durably; then CompleteQuit
    kClose,         // send the output, then close the connection
  };
  Kind kind = Kind::kNone;
  std::string user;       // kAuthenticate: as the client gave it
  std::string password;   // kAuthenticate
  size_t message = 0;     // kRetrieve: 1-based message number
  std::optional<uint64_t> top_lines;  // kRetrieve: TOP's body line count; unset for RETR
  std::string status;     // kRetrieve: "+OK ...\r\n", to send before the content
  std::vector<size_t> deleted;  // kQuit: message numbers marked, ascending
};

class Session {
 public:
  Session(Options options, Limits limits);

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // The +OK line to send on connect. It has no APOP timestamp: APOP is not
  // offered (it needs the plaintext password on the server).
  std::string Greeting() const;

  // Consumes `bytes` (any split: one byte at a time gives the same output as
  // all at once) and appends the replies to send to `*out`. While an event
  // awaits its Complete*() call, input is only buffered; a server should stop
  // reading from the socket meanwhile, as the buffer is not bounded. After
  // kStartTls, input up to TlsStarted() is discarded. After kClose, ignored.
  Event Feed(std::string_view bytes, std::string* out);

  // Answers kAuthenticate. On kOk, `maildrop` is the snapshot the
  // transaction works on; otherwise it is ignored and the session is back in
  // the AUTHORIZATION state (or closed, after max_auth_failures). An invalid
  // maildrop (a bad or repeated UIDL) is a server bug: -ERR [SYS/PERM] and
  // kClose, so the server releases the lock it took.
  Event CompleteAuth(AuthResult result, std::vector<MessageInfo> maildrop, std::string* out);

  // Answers kRetrieve, once the server has written the message or failed to
  // open it (then "-ERR [SYS/TEMP] ..." is appended). A failure after
  // Event::status went out cannot be reported in POP3: close the connection.
  Event CompleteRetrieve(RetrieveResult result, std::string* out);

  // After kStartTls: the handshake succeeded. Plaintext authentication is
  // allowed from now on and STLS is no longer offered.
  Event TlsStarted(std::string* out);

  // Answers kQuit: `ok` when every marked message is gone for good. Appends
  // "+OK ..." or "-ERR [SYS/TEMP] ..." and returns kClose.
  Event CompleteQuit(bool ok, std::string* out);

  // For reasons of the server's own (idle timeout, shutdown): appends
  // "-ERR <reason>" and closes. No message is deleted (RFC 1939 section 6).
  void Abort(std::string_view reason, std::string* out);

  bool awaiting() const { return state_ == State::kAwaiting; }
  bool closed() const { return state_ == State::kClosed; }
  // True from a successful login on (TRANSACTION, and the events it awaits).
  bool authenticated() const { return authenticated_; }
  // Input received but not yet processed: what pipelining holds while an
  // event is awaited. A line too long is dropped, never held.
  size_t buffered() const { return in_.size() - pos_; }

 private:
  enum class State {
    kAuthorization,  // RFC 1939 AUTHORIZATION
    kSaslResponse,   // after "+ ": the next line is the client's response
    kTransaction,    // RFC 1939 TRANSACTION
    kAwaiting,       // an event awaits its Complete*(); `awaited_` says which
    kClosed,
  };

  Event Run(std::string* out);
  // Consumes at most one line; false when it needs more input.
  bool Step(std::string* out, Event* ev);
  // The longest line the next one may be: AUTH lines and SASL responses
  // may be longer than commands.
  size_t LineLimit() const;
  void HandleLine(std::string_view line, std::string* out, Event* ev);
  void HandleCommand(std::string_view verb, std::string_view arg, std::string* out, Event* ev);
  void HandleSaslResponse(std::string_view line, std::string* out, Event* ev);
  void CmdCapa(std::string* out);
  void CmdUser(std::string_view arg, std::string* out);
  void CmdPass(std::optional<std::string> user, std::string_view arg, std::string* out, Event* ev);
  void CmdAuth(std::string_view arg, std::string* out, Event* ev);
  void CmdStls(std::string_view arg, std::string* out, Event* ev);
  void CmdList(std::string_view arg, bool uidl, std::string* out);
  void CmdRetr(std::string_view arg, bool top, std::string* out, Event* ev);
  void CmdDele(std::string_view arg, std::string* out);
  void CmdQuit(std::string_view arg, std::string* out, Event* ev);
  // Parses a message number and checks it names an undeleted message;
  // otherwise sends the error and returns 0.
  size_t MessageArg(std::string_view arg, std::string* out);
  void PlainLogin(std::string_view base64, std::string* out, Event* ev);
  void Authenticate(std::string user, std::string password, Event* ev);
  bool PlaintextAllowed() const { return tls_active_ || options_.allow_plaintext_auth; }

  // A reply to a well-formed command, whatever its outcome.
  void Ok(std::string_view text, std::string* out);
  void Err(std::string_view text, std::string* out);
  // A protocol error: sends -ERR and counts it toward max_errors.
  void Error(std::string_view text, std::string* out);
  // Rejected credentials: sends -ERR and counts toward max_auth_failures.
  void AuthFailed(std::string_view text, std::string* out);
  void Close();
  void Await(Event::Kind kind, Event* ev);

  const Options options_;
  const Limits limits_;

  State state_ = State::kAuthorization;
  Event::Kind awaited_ = Event::Kind::kNone;
  bool tls_active_;
  bool authenticated_ = false;
  std::string in_;         // unprocessed input is in_[pos_, end)
  size_t pos_ = 0;
  size_t scanned_ = 0;     // in_[pos_, scanned_) holds no LF: not searched twice
  bool skipping_ = false;  // dropping the rest of an overlong line
  size_t errors_ = 0;      // consecutive bad commands
  size_t auth_failures_ = 0;
  std::optional<std::string> user_;  // after a successful USER, for PASS only

  // The TRANSACTION state.
  std::vector<MessageInfo> maildrop_;
  std::vector<bool> deleted_;
  size_t retrieving_ = 0;  // message number of the awaited kRetrieve
};

}  // namespace holdfast::pop3
