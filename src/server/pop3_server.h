// Pop3Server: the POP3 listeners of `holdfast serve` (docs/pop3.md). POP3
// on pop3.listen, with STLS once a certificate is loaded; POP3S (TLS from the
// first byte) on pop3.tls_listen. Each connection runs a pop3::Session (the
// protocol, without I/O) and a pop3::Maildrop (the mailbox, from login to
// QUIT). Logins and QUIT's deletions are blocking file I/O and run on a thread
// pool, so neither a slow disk nor a password hash stalls the event loop.
#pragma once

#include <asio.hpp>
#include <asio/ssl.hpp>
#include <chrono>
#include <functional>
#include <list>
#include <mutex>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "events/event_log.h"
#include "pop3/maildrop.h"
#include "pop3/pop3_session.h"
#include "server/logger.h"
#include "users/credentials_cache.h"
#include "users/users_cache.h"
#include "util/status.h"

namespace holdfast {

class Pop3Server {
 public:
  // `config` is the server's live configuration (SIGHUP replaces it); each
  // session and each login works on the snapshot it took first.
  Pop3Server(asio::io_context& io, asio::thread_pool& pool, Logger& log, std::string data_dir,
             const LiveConfig& config, UsersCache& users);
  ~Pop3Server();

  // Loads the TLS certificate, if one is configured or DATA/tls/ has one,
  // and opens the listeners. `listen` overrides pop3.listen when not empty.
  Status Start(const std::string& listen);
  // The same with the listening sockets socket activation passed (POP3 and
  // POP3S): no other listener is opened.
  Status StartActivated(const std::vector<int>& plain_fds, const std::vector<int>& tls_fds);
  // Stops accepting and ends every session at its next read with "-ERR"
  // (nothing deleted: without QUIT there is no UPDATE state).
  void Drain();
  // Closes the listeners for good (before the event loop goes away).
  void Close();
  size_t sessions() const { return sessions_; }
  // For /metrics (event-loop thread). Logins by result, messages retrieved
  // and deleted, sessions ever served.
  struct Counters {
    uint64_t sessions = 0, logins_ok = 0, logins_failed = 0, logins_other = 0, retrieved = 0, deleted = 0;
  };
  const Counters& counters() const { return counters_; }
  // Retrievals and deletions go into the trace's event log (before Start).
  void set_events(EventLog* events) { events_ = events; }
  // Runs after each session ends (the server stops once none is left).
  std::function<void()> on_session_end;

 private:
  struct Conn;
  struct LoginResult {
    pop3::AuthResult result = pop3::AuthResult::kTempFailure;
    std::unique_ptr<pop3::Maildrop> drop;
    std::string reason;  // for the log
    std::string user;    // the user name as stored (folded), once known
    bool cached = false; // the password matched a cached verification (no hash)
  };

  Status LoadTls();
  Status OpenListener(const std::string& addr, bool implicit_tls);
  Status AdoptListener(int fd, bool implicit_tls);
  asio::awaitable<void> AcceptLoop(asio::ip::tcp::acceptor& acceptor, bool implicit_tls);
  asio::awaitable<void> Serve(asio::ip::tcp::socket sock, bool implicit_tls);
  // The session's watchdog: cancels the socket operation in progress (and
  // sets timed_out) once it passes Conn::deadline. Calling it again re-arms
  // it (for a deadline earlier than the one it sleeps until).
  void Watch(std::shared_ptr<Conn> cp);
  // Each sets the deadline: a client that stops reading or writing is
  // dropped after pop3.idle_timeout_ms, and holds nothing but itself.
  asio::awaitable<std::error_code> Write(Conn& c, std::string_view data);
  asio::awaitable<size_t> Read(Conn& c, std::vector<char>& buf, std::error_code& ec);
  asio::awaitable<bool> Handshake(std::shared_ptr<Conn> cp);
  // RETR/TOP: appends the status line, the message through a DotStuffer and
  // ".\r\n" to *out, sending whenever it grows large. False if the
  // connection failed mid-way (it must be closed).
  asio::awaitable<bool> SendMessage(Conn& c, pop3::Maildrop& drop, const pop3::Event& ev, pop3::RetrieveResult* result,
                                    std::string* out);
  LoginResult Login(const std::string& user, const std::string& password);
  // The delay before "-ERR [AUTH]": grows with recent failures from `ip`.
  std::chrono::milliseconds FailureDelay(const std::string& ip);

  asio::io_context& io_;
  asio::thread_pool& pool_;
  Logger& log_;
  const std::string data_dir_;
  const LiveConfig& config_;
  UsersCache& users_;
  // Bytes of kept mailboxes at most (read at start, like the other caches' sizes).
  const size_t kept_budget_;
  CredentialsCache credentials_;  // logins that verified recently (pop3.auth_cache_ttl_ms)
  std::unique_ptr<asio::ssl::context> tls_;  // null: no certificate, no STLS, no POP3S
  asio::ssl::context no_tls_;                // for the plain connections' unused TLS layer
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors_;
  size_t sessions_ = 0;
  Counters counters_;
  EventLog* events_ = nullptr;
  std::map<std::string, size_t> per_ip_;  // open sessions per client address
  struct Failures {
    unsigned count = 0;
    std::chrono::steady_clock::time_point last;
  };
  std::map<std::string, Failures> failures_;  // recent failed logins per address
  // Mailboxes of ended sessions, kept for the user's next login (at most
  // kKeptMailboxes, the least recently used dropped first). Pool threads.
  static constexpr size_t kKeptMailboxes = 64;
  std::mutex kept_mu_;
  std::list<std::pair<std::string, std::unique_ptr<Mailbox>>> kept_;  // most recent first
  std::unique_ptr<Mailbox> TakeKept(const std::string& user);
  void Keep(const std::string& user, std::unique_ptr<Mailbox> box);
  std::map<uint64_t, std::function<void()>> cancel_;  // open sessions' read cancellers, for Drain()
  uint64_t next_session_ = 0;
  bool draining_ = false;
};

}  // namespace holdfast
