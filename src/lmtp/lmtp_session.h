// lmtp::Session: the LMTP protocol (RFC 2033 over RFC 5321) for one
// connection, as a state machine without I/O. The server feeds it the bytes
// it reads and sends the bytes it gets back; the session never blocks, never
// throws, and survives any input (docs/lmtp.md has the commands, replies and
// limits).
//
// A received message is handed out as an Event, and the session then pauses
// until the server calls CompleteMessage() with one reply per recipient. The
// server makes the message durable in between, so a 250 for a recipient can
// only follow the commit (MISSION.md invariant 1).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace holdfast::lmtp {

// Every limit is a guard against a client, not a protocol constant; a config
// layer may change any of them. Defaults are in docs/lmtp.md.
struct Limits {
  size_t max_command_line = 2048;          // bytes incl. CRLF (RFC 5321: >= 512)
  size_t max_data_line = 1 << 20;          // bytes incl. CRLF; longer: 500 5.5.2 after the dot
  uint64_t max_message_size = 50 << 20;    // body bytes after unstuffing; advertised as SIZE
  size_t max_recipients = 1000;            // per transaction; more: 452 4.5.3
  size_t max_bytes_before_lhlo = 4096;     // then 554 and close
  size_t max_errors = 20;                  // consecutive bad commands, then 421; 0 = no limit
  // A line ended by LF without CR (RFC 5321 2.3.8 forbids it). true: a
  // command gets 500 5.5.2, a message gets 550 5.6.0 per recipient after its
  // end (Postfix's smtpd_forbid_bare_newline). false: kept as message content
  // and accepted as a command's end. Either way only CRLF.CRLF ends DATA.
  bool reject_bare_lf = true;
};

struct Recipient {
  std::string address;  // as given, without <>, source route removed
  std::string user;     // the local user it maps to (set by the resolver)
  std::string detail;   // the "tag" of user+tag; may be empty
};

struct Envelope {
  std::string helo;              // the LHLO argument
  std::string mail_from;         // "" is the null sender <>
  bool body_8bit = false;        // MAIL FROM ... BODY=8BITMIME
  std::vector<Recipient> rcpts;  // accepted RCPTs in order; may repeat a user
  std::string client;            // whatever the server passed to set_client()
};

enum class RcptCheck { kOk, kUnknown, kTempFail };

// Called synchronously for each syntactically valid RCPT. `out->address` is
// filled in; on kOk the resolver fills user and detail.
using RecipientResolver = std::function<RcptCheck(const std::string& address, Recipient* out)>;

// One reply line: "<code> <enhanced> <text>". Text is sent on one line: CR,
// LF and other control bytes become '?'. A code that is not 2xx, 4xx or 5xx
// is sent as 451 4.3.0, never as given.
struct Reply {
  int code = 250;
  std::string enhanced;  // "2.0.0"; may be empty
  std::string text;
};

struct Event {
  enum class Kind {
    kNone,     // nothing to do but send the output and read more
    kMessage,  // a message arrived: commit it, then call CompleteMessage
    kClose,    // send the output, then close the connection
  };
  Kind kind = Kind::kNone;
  Envelope envelope;  // kMessage only
  std::string body;   // kMessage only: bytes as received after dot-unstuffing
};

class Session {
 public:
  Session(std::string hostname, Limits limits, RecipientResolver resolver);

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // The 220 line to send on connect.
  std::string Greeting() const;

  // Sets Envelope::client for every message of this connection.
  void set_client(std::string client) { client_ = std::move(client); }

  // Consumes `bytes` (any split: one byte at a time gives the same output as
  // all at once) and appends the replies to send to `*out`. While a message is
  // awaiting CompleteMessage, or after kClose, input is only buffered or
  // dropped: a server should stop reading from the socket while
  // awaiting_completion() (which also gives the client TCP back-pressure).
  Event Feed(std::string_view bytes, std::string* out);

  // Answers the message from the last kMessage event: `per_recipient` holds
  // one reply per Envelope::rcpts entry, in order. They are appended to *out
  // and buffered input is processed again, which may yield the next event.
  // A wrong count is a server bug: every recipient then gets 451 4.3.0, so
  // nothing is acknowledged by mistake. Ignored when nothing is awaited.
  Event CompleteMessage(const std::vector<Reply>& per_recipient, std::string* out);

  // For reasons of the server's own: appends "421 <enhanced> <host> <reason>"
  // (e.g. "4.4.2" for an idle timeout, "4.3.2" for shutdown) and closes.
  void Abort(std::string_view enhanced, std::string_view reason, std::string* out);

  bool awaiting_completion() const { return state_ == State::kAwaiting; }
  bool closed() const { return state_ == State::kClosed; }

 private:
  enum class State { kCommand, kData, kAwaiting, kClosed };

  // Processes buffered input until it runs out, a message is complete, or
  // the session closes.
  Event Run(std::string* out);
  // Each consumes at most one line; false when it needs more input or must
  // stop (StepData fills *ev when a message is complete).
  bool StepCommand(std::string* out);
  bool StepData(std::string* out, Event* ev);
  bool EndOfData(std::string* out, Event* ev);
  void CountBeforeLhlo(size_t n);
  // False (after the 554 and close) once the pre-LHLO budget is spent.
  bool CheckBeforeLhlo(std::string* out);
  void DropBody(bool line_too_long);
  void HandleCommand(std::string_view line, std::string* out);
  void CmdLhlo(std::string_view arg, std::string* out);
  void CmdMail(std::string_view arg, std::string* out);
  void CmdRcpt(std::string_view arg, std::string* out);
  void CmdData(std::string_view arg, std::string* out);

  // A reply to a well-formed command, whatever its outcome.
  void Send(int code, std::string_view enhanced, std::string_view text, std::string* out);
  // A protocol error: sends the reply and counts it toward max_errors.
  void Error(int code, std::string_view enhanced, std::string_view text, std::string* out);
  void Close(int code, std::string_view enhanced, std::string_view text, std::string* out);
  void ResetTransaction();

  const std::string hostname_;
  const Limits limits_;
  const RecipientResolver resolver_;
  std::string client_;

  State state_ = State::kCommand;
  std::string in_;         // unprocessed input is in_[pos_, end)
  size_t pos_ = 0;
  size_t scanned_ = 0;     // in_[pos_, scanned_) holds no LF: not searched twice
  bool skipping_ = false;  // dropping the rest of an overlong line
  size_t errors_ = 0;      // consecutive bad commands
  bool lhlo_seen_ = false;
  size_t bytes_before_lhlo_ = 0;
  size_t awaiting_rcpts_ = 0;  // replies CompleteMessage must bring

  // The transaction.
  bool mail_seen_ = false;
  Envelope envelope_;
  std::string body_;
  uint64_t body_size_ = 0;  // counted on even after the body is dropped
  bool line_too_long_ = false;
  bool bare_lf_ = false;         // the message has a line ended by a bare LF
  bool command_crlf_ = false;    // the last command line ended with CRLF
  // The previous data line ended with CRLF (at DATA: the DATA command did):
  // only then is ".\r\n" the end of the data, never after a bare LF.
  bool after_crlf_ = false;
  bool dropped_cr_ = false;      // the last byte dropped of an overlong line was CR
};

}  // namespace holdfast::lmtp
