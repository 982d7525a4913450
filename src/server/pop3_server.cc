#include "server/pop3_server.h"

#include <malloc.h>

#include <unistd.h>

#include <algorithm>

#include "pop3/dot_stuff.h"
#include "server/endpoint.h"
#include "users/password.h"
#include "users/user_name.h"

namespace holdfast {
namespace {

using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;

// Runs `f` on the pool and resumes the calling coroutine on its own
// executor with the result. Callers pass a named lambda: GCC 12 mis-copies
// a lambda temporary inside a co_await expression (its captured strings end
// up pointing into the coroutine frame).
template <typename F>
auto OnPool(asio::thread_pool& pool, F f) {
  using R = decltype(f());
  return asio::async_initiate<decltype(use_awaitable), void(R)>(
      [&pool](auto handler, F fn) {
        auto ex = asio::get_associated_executor(handler);
        asio::post(pool, [ex, h = std::move(handler), fn = std::move(fn)]() mutable {
          R r = fn();
          asio::post(ex, [h = std::move(h), r = std::move(r)]() mutable { std::move(h)(std::move(r)); });
        });
      },
      use_awaitable, std::move(f));
}

bool IsLoopback(const asio::ip::address& a) {
  if (a.is_loopback()) return true;
  return a.is_v6() && a.to_v6().is_v4_mapped() && asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback();
}

const char* AuthResultName(pop3::AuthResult r) {
  switch (r) {
    case pop3::AuthResult::kOk: return "ok";
    case pop3::AuthResult::kBadCredentials: return "bad_credentials";
    case pop3::AuthResult::kInUse: return "in_use";
    case pop3::AuthResult::kLoginDelay: return "login_delay";
    case pop3::AuthResult::kTempFailure: return "temp_failure";
    case pop3::AuthResult::kPermFailure: return "perm_failure";
  }
  return "?";
}

}  // namespace

struct Pop3Server::Conn {
  Conn(tcp::socket sock, asio::ssl::context& ctx, asio::io_context& io) : stream(std::move(sock), ctx), watchdog(io) {}
  asio::ssl::stream<tcp::socket> stream;
  bool tls = false;
  // The socket operation in progress must end by `deadline` (max: none is);
  // the watchdog cancels it otherwise. A deadline is a field write, not a
  // timer syscall per read and write.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  asio::steady_timer watchdog;
  bool timed_out = false;
  bool cancelled = false;  // by Drain()
  bool ended = false;      // the session is over: the watchdog stops
  std::string chunk;       // RETR's read buffer, allocated on first use
  std::shared_ptr<const Config> cfg;  // the configuration the session started with
};

Pop3Server::Pop3Server(asio::io_context& io, asio::thread_pool& pool, Logger& log, std::string data_dir,
                       const LiveConfig& config, UsersCache& users)
    : io_(io), pool_(pool), log_(log), data_dir_(std::move(data_dir)), config_(config), users_(users),
      kept_budget_(static_cast<size_t>(config.Get()->cache.mailbox_bytes / 2)), no_tls_(asio::ssl::context::tls_server) {}

Pop3Server::~Pop3Server() = default;

Status Pop3Server::LoadTls() {
  const auto cfg = config_.Get();  // one snapshot: a reload may come meanwhile
  std::string cert = cfg->tls.cert_file, key = cfg->tls.key_file;
  if (cert.empty() != key.empty()) return Status::Invalid("tls.cert_file and tls.key_file must be set together");
  if (cert.empty()) {
    // `make run` puts a self-signed pair here on first start.
    cert = JoinPath(data_dir_, "tls/cert.pem");
    key = JoinPath(data_dir_, "tls/key.pem");
    if (!PosixFs().Stat(cert).ok() || !PosixFs().Stat(key).ok()) return Status::Ok();  // no TLS
  }
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  std::error_code ec;
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1,
                   ec);
  if (!ec) ctx->use_certificate_chain_file(cert, ec);
  if (ec) return Status::Invalid("TLS certificate " + cert + ": " + ec.message());
  ctx->use_private_key_file(key, asio::ssl::context::pem, ec);
  if (ec) return Status::Invalid("TLS key " + key + ": " + ec.message());
  tls_ = std::move(ctx);
  log_.Info("event=tls_loaded cert=" + Kv(cert));
  return Status::Ok();
}

Status Pop3Server::Start(const std::string& listen) {
  const auto cfg = config_.Get();  // one snapshot: a reload may come meanwhile
  HF_RETURN_IF_ERROR(LoadTls());
  std::string plain = listen.empty() ? cfg->pop3.listen : listen;
  if (!plain.empty()) HF_RETURN_IF_ERROR(OpenListener(plain, false));
  if (!cfg->pop3.tls_listen.empty()) {
    if (!tls_) return Status::Invalid("pop3.tls_listen is set but no TLS certificate is configured (tls.cert_file)");
    HF_RETURN_IF_ERROR(OpenListener(cfg->pop3.tls_listen, true));
  }
  return Status::Ok();
}

Status Pop3Server::StartActivated(const std::vector<int>& plain_fds, const std::vector<int>& tls_fds) {
  HF_RETURN_IF_ERROR(LoadTls());
  if (!tls_fds.empty() && !tls_) {
    return Status::Invalid("socket activation passed a pop3s socket but no TLS certificate is configured (tls.cert_file)");
  }
  for (int fd : plain_fds) HF_RETURN_IF_ERROR(AdoptListener(fd, false));
  for (int fd : tls_fds) HF_RETURN_IF_ERROR(AdoptListener(fd, true));
  return Status::Ok();
}

Status Pop3Server::AdoptListener(int fd, bool implicit_tls) {
  try {
    acceptors_.push_back(AdoptTcpListener(io_, fd));
  } catch (const std::exception& e) {
    return Status::Invalid(std::string("socket activation: ") + e.what());
  }
  asio::co_spawn(io_, AcceptLoop(*acceptors_.back(), implicit_tls), asio::detached);
  log_.Info(std::string("event=listening protocol=") + (implicit_tls ? "pop3s" : "pop3") + " activated=yes fd=" +
            std::to_string(fd) + (!implicit_tls && tls_ ? " stls=yes" : ""));
  return Status::Ok();
}

Status Pop3Server::OpenListener(const std::string& addr, bool implicit_tls) {
  HF_ASSIGN_OR_RETURN(auto ep, ParseEndpoint(addr));
  try {
    acceptors_.push_back(std::make_unique<tcp::acceptor>(io_, ep));
  } catch (const std::exception& e) {
    return Status::Io("cannot listen on " + addr + ": " + e.what());
  }
  asio::co_spawn(io_, AcceptLoop(*acceptors_.back(), implicit_tls), asio::detached);
  log_.Info(std::string("event=listening protocol=") + (implicit_tls ? "pop3s" : "pop3") + " address=" + Kv(addr) +
            (!implicit_tls && tls_ ? " stls=yes" : ""));
  return Status::Ok();
}

void Pop3Server::Close() {
  std::error_code ignore;
  for (auto& a : acceptors_) a->close(ignore);
  acceptors_.clear();
}

void Pop3Server::Drain() {
  draining_ = true;
  std::error_code ignore;
  for (auto& a : acceptors_) a->close(ignore);
  auto cancels = cancel_;  // a canceller may end its session and erase itself
  for (auto& [id, cancel] : cancels) cancel();
}

awaitable<void> Pop3Server::AcceptLoop(tcp::acceptor& acceptor, bool implicit_tls) {
  for (;;) {
    std::error_code ec;
    auto sock = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || draining_) co_return;
      log_.Warn("event=accept_failed protocol=pop3 reason=" + Kv(ec.message()));
      continue;
    }
    asio::co_spawn(io_, Serve(std::move(sock), implicit_tls), asio::detached);
  }
}

void Pop3Server::Watch(std::shared_ptr<Conn> cp) {
  Conn& c = *cp;
  const auto idle = std::chrono::milliseconds(c.cfg->pop3.idle_timeout_ms);
  const auto now = std::chrono::steady_clock::now();
  c.watchdog.expires_at(c.deadline == std::chrono::steady_clock::time_point::max() ? now + idle : c.deadline);
  c.watchdog.async_wait([this, cp](std::error_code e) {
    Conn& c = *cp;
    if (e || c.ended) return;  // replaced by a newer wait, or the session is over
    if (std::chrono::steady_clock::now() >= c.deadline) {
      c.timed_out = true;
      std::error_code ignore;
      c.stream.next_layer().cancel(ignore);
    }
    Watch(cp);  // the deadline moved on meanwhile: sleep until it
  });
}

awaitable<std::error_code> Pop3Server::Write(Conn& c, std::string_view data) {
  std::error_code ec;
  c.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(c.cfg->pop3.idle_timeout_ms);
  if (c.tls) {
    co_await asio::async_write(c.stream, asio::buffer(data), asio::redirect_error(use_awaitable, ec));
  } else {
    co_await asio::async_write(c.stream.next_layer(), asio::buffer(data), asio::redirect_error(use_awaitable, ec));
  }
  c.deadline = std::chrono::steady_clock::time_point::max();
  co_return ec;
}

awaitable<size_t> Pop3Server::Read(Conn& c, std::vector<char>& buf, std::error_code& ec) {
  c.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(c.cfg->pop3.idle_timeout_ms);
  size_t n = 0;
  if (c.tls) {
    n = co_await c.stream.async_read_some(asio::buffer(buf), asio::redirect_error(use_awaitable, ec));
  } else {
    n = co_await c.stream.next_layer().async_read_some(asio::buffer(buf), asio::redirect_error(use_awaitable, ec));
  }
  c.deadline = std::chrono::steady_clock::time_point::max();
  co_return n;
}

awaitable<bool> Pop3Server::Handshake(std::shared_ptr<Conn> cp) {
  Conn& c = *cp;
  std::error_code ec;
  c.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);  // a handshake that never ends
  Watch(cp);  // earlier than the watchdog's current wake-up: re-arm it
  co_await c.stream.async_handshake(asio::ssl::stream_base::server, asio::redirect_error(use_awaitable, ec));
  c.deadline = std::chrono::steady_clock::time_point::max();
  if (!ec) c.tls = true;
  co_return !ec;
}

Pop3Server::LoginResult Pop3Server::Login(const std::string& user, const std::string& password) {
  const auto cfg = config_.Get();  // one snapshot: a reload may come meanwhile
  LoginResult r;
  r.result = pop3::AuthResult::kBadCredentials;
  auto name = UserName::Parse(user);
  std::optional<UserRecord> rec;
  uint64_t users_generation = 0;
  if (name.ok()) {
    auto found = users_.Find(*name, &users_generation);
    if (!found.ok()) {
      r.result = pop3::AuthResult::kTempFailure;
      r.reason = found.status().ToString();
      return r;
    }
    rec = std::move(found).value();
  }
  // Hash even for an unknown user, so the reply time does not tell which
  // user names exist.
  static const std::string kDummy = [] {
    auto h = HashPassword("holdfast-dummy-password");
    return h.ok() ? *h : std::string();
  }();
  // A password that verified against this very entry of this version of the
  // users file within pop3.auth_cache_ttl_ms skips the hash; anything else
  // (a wrong password included) pays it in full.
  const std::chrono::milliseconds ttl(cfg->pop3.auth_cache_ttl_ms);
  bool good = rec && credentials_.Verified(name->str(), password, rec->password_hash, users_generation, ttl);
  r.cached = good;
  if (!good) {
    good = VerifyPassword(password, rec ? rec->password_hash : kDummy) && rec.has_value();
    if (!good) {
      r.reason = rec ? "wrong password" : "unknown user";
      return r;
    }
    credentials_.Remember(name->str(), password, rec->password_hash, users_generation, ttl,
                          static_cast<size_t>(cfg->pop3.auth_cache_size));
  }
  MailboxOptions mo;
  mo.hostname = cfg->hostname;
  mo.lock_timeout = std::chrono::milliseconds(cfg->delivery.lock_timeout_ms);
  auto drop = pop3::Maildrop::Open(PosixFs(), JoinPath(JoinPath(data_dir_, "mail"), name->str()), mo,
                                   TakeKept(name->str()));
  if (!drop.ok()) {
    r.result = drop.status().kind() == Status::Kind::kBusy ? pop3::AuthResult::kInUse
               : drop.status().kind() == Status::Kind::kCorrupt ? pop3::AuthResult::kPermFailure
                                                                 : pop3::AuthResult::kTempFailure;
    r.reason = drop.status().ToString();
    return r;
  }
  r.result = pop3::AuthResult::kOk;
  r.drop = std::move(drop).value();
  r.user = name->str();
  return r;
}

std::unique_ptr<Mailbox> Pop3Server::TakeKept(const std::string& user) {
  std::lock_guard<std::mutex> l(kept_mu_);
  for (auto it = kept_.begin(); it != kept_.end(); ++it) {
    if (it->first == user) {
      auto box = std::move(it->second);
      kept_.erase(it);
      return box;
    }
  }
  return nullptr;
}

void Pop3Server::Keep(const std::string& user, std::unique_ptr<Mailbox> box) {
  if (!box) return;
  std::lock_guard<std::mutex> l(kept_mu_);
  kept_.emplace_front(user, std::move(box));
  // Within half of [cache] mailbox_bytes (the delivery thread has the other
  // half): one mailbox alone over it is not kept at all.
  const size_t budget = kept_budget_;
  bool dropped = false;
  size_t total = 0;
  for (const auto& [u, b] : kept_) total += b->MemoryEstimate();
  while (!kept_.empty() && (kept_.size() > kKeptMailboxes || total > budget)) {
    total -= kept_.back().second->MemoryEstimate();
    kept_.pop_back();
    dropped = true;
  }
  // Hands the freed index back to the system, so RSS follows the budget.
  if (dropped) ::malloc_trim(0);
}

std::chrono::milliseconds Pop3Server::FailureDelay(const std::string& ip) {
  const auto cfg = config_.Get();  // one snapshot: a reload may come meanwhile
  auto now = std::chrono::steady_clock::now();
  // Forget addresses quiet for 15 minutes (also bounds the map).
  for (auto it = failures_.begin(); it != failures_.end();) {
    it = now - it->second.last > std::chrono::minutes(15) ? failures_.erase(it) : std::next(it);
  }
  Failures& f = failures_[ip];
  f.count = std::min(f.count + 1, 5u);
  f.last = now;
  return std::chrono::milliseconds(cfg->pop3.auth_failure_delay_ms << (f.count - 1));
}

awaitable<bool> Pop3Server::SendMessage(Conn& c, pop3::Maildrop& drop, const pop3::Event& ev,
                                         pop3::RetrieveResult* result, std::string* out) {
  const size_t n = ev.message;
  // Opened here on the loop: a page-cache hit costs microseconds, less than
  // a round trip to the pool (only a file another tool renamed costs a listing).
  auto file = drop.OpenMessage(n);
  if (!file.ok()) {
    log_.Warn("event=pop3_retrieve_failed message=" + std::to_string(n) + " reason=" + Kv(file.status().ToString()));
    *result = pop3::RetrieveResult::kUnavailable;
    co_return true;
  }
  *result = pop3::RetrieveResult::kSent;
  pop3::DotStuffer stuffer = ev.top_lines ? pop3::DotStuffer::Top(*ev.top_lines) : pop3::DotStuffer();
  // Streamed in 256 KiB reads: a message is never held whole in memory. It
  // is appended to *out, which is sent once it passes kFlushBytes (or when
  // the pipelined commands run out): small messages share sends.
  constexpr size_t kFlushBytes = 256 << 10;
  if (c.chunk.empty()) c.chunk.resize(256 << 10);
  out->append(ev.status);
  uint64_t offset = 0;
  for (;;) {
    auto got = (*file)->ReadAt(offset, c.chunk.data(), c.chunk.size());
    if (!got.ok()) {
      // After "+OK" POP3 has no way to report an error: close.
      log_.Warn("event=pop3_retrieve_failed message=" + std::to_string(n) + " reason=" + Kv(got.status().ToString()));
      co_return false;
    }
    offset += *got;
    bool more = stuffer.Append(std::string_view(c.chunk.data(), *got), out);
    const bool last = *got < c.chunk.size() || !more;
    if (last) stuffer.Finish(out);
    if (out->size() >= kFlushBytes) {
      if (co_await Write(c, *out)) co_return false;
      out->clear();
    }
    if (last) co_return true;
  }
}

awaitable<void> Pop3Server::Serve(tcp::socket sock, bool implicit_tls) {
  std::error_code ec;
  auto ep = sock.remote_endpoint(ec);
  const std::string ip = ec ? "?" : ep.address().to_string();
  const std::string peer = ec ? "?" : ip + ":" + std::to_string(ep.port());
  const bool loopback = !ec && IsLoopback(ep.address());
  const char* proto = implicit_tls ? "pop3s" : "pop3";
  const auto cfg = config_.Get();  // this session's limits, whatever a reload does meanwhile
  if (sessions_ >= static_cast<size_t>(cfg->pop3.max_connections) ||
      per_ip_[ip] >= static_cast<size_t>(cfg->pop3.max_connections_per_ip) || draining_) {
    if (per_ip_[ip] == 0) per_ip_.erase(ip);
    log_.Warn(std::string("event=connection_refused protocol=") + proto + " client=" + Kv(peer) +
              " reason=" + (draining_ ? "shutting_down" : "too_many_connections"));
    if (!implicit_tls) {
      co_await asio::async_write(sock, asio::buffer(std::string("-ERR [SYS/TEMP] too many connections, try later\r\n")),
                                 asio::redirect_error(use_awaitable, ec));
    }
    co_return;
  }
  const uint64_t id = next_session_++;
  ++sessions_;
  ++counters_.sessions;
  ++per_ip_[ip];
  // Shared with the watchdog's pending wait, which may run after this frame ends.
  auto cp = std::make_shared<Conn>(std::move(sock), tls_ ? *tls_ : no_tls_, io_);
  Conn& c = *cp;
  c.cfg = cfg;
  Watch(cp);
  struct End {  // however the session ends: stop the watchdog, close the socket
    Conn& c;
    ~End() {
      c.ended = true;
      c.watchdog.cancel();
      std::error_code ignore;
      c.stream.next_layer().close(ignore);
    }
  } end{c};
  cancel_[id] = [&c] {
    c.cancelled = true;
    std::error_code ignore;
    c.stream.next_layer().cancel(ignore);
  };
  struct Leave {
    Pop3Server* s;
    uint64_t id;
    std::string ip;
    ~Leave() {
      s->cancel_.erase(id);
      if (--s->per_ip_[ip] == 0) s->per_ip_.erase(ip);
      --s->sessions_;
      if (s->on_session_end) s->on_session_end();
    }
  } leave{this, id, ip};
  log_.Info(std::string("event=connect protocol=") + proto + " client=" + Kv(peer));
  // Replies are whole lines or messages written at once: no reason to let
  // Nagle hold the last piece back until the client's delayed ACK.
  c.stream.next_layer().set_option(tcp::no_delay(true), ec);

  if (implicit_tls && !co_await Handshake(cp)) {
    log_.Info("event=tls_failed client=" + Kv(peer));
    co_return;
  }
  pop3::Options o;
  o.hostname = cfg->hostname;
  o.tls_available = tls_ != nullptr && !implicit_tls;
  o.tls_active = implicit_tls;
  o.allow_plaintext_auth = loopback || cfg->pop3.allow_plaintext_auth;
  pop3::Session session(o, pop3::Limits{});
  const std::string session_id = "pop3-" + std::to_string(getpid()) + "." + std::to_string(id);
  std::unique_ptr<pop3::Maildrop> drop;
  std::string user;
  size_t retrieved = 0, deleted = 0;
  std::string out = session.Greeting();
  std::vector<char> buf(16 * 1024);
  bool broken = false;  // a write failed or a reply was cut short: close
  while (!broken) {
    if (!out.empty()) {
      if (co_await Write(c, out)) break;
      out.clear();
    }
    if (session.closed()) break;
    size_t n = co_await Read(c, buf, ec);
    if (c.timed_out || c.cancelled) {
      const bool idle = c.timed_out;
      session.Abort(idle ? "idle too long, closing" : "server shutting down", &out);
      c.timed_out = c.cancelled = false;
      (void)co_await Write(c, out);
      log_.Info(std::string("event=") + (idle ? "idle_timeout" : "shutdown_close") + " protocol=pop3 client=" + Kv(peer));
      break;
    }
    if (ec) break;  // the client went away: nothing is deleted without QUIT
    pop3::Event ev = session.Feed(std::string_view(buf.data(), n), &out);
    while (!broken && ev.kind != pop3::Event::Kind::kNone && ev.kind != pop3::Event::Kind::kClose) {
      // Replies so far go out first; a RETR appends to them (SendMessage).
      if (!out.empty() && ev.kind != pop3::Event::Kind::kRetrieve) {
        if (co_await Write(c, out)) {
          broken = true;
          break;
        }
        out.clear();
      }
      switch (ev.kind) {
        case pop3::Event::Kind::kAuthenticate: {
          std::string u = ev.user, p = ev.password;
          auto login = [this, u, p] { return Login(u, p); };
          LoginResult r = co_await OnPool(pool_, std::move(login));
          log_.Info("event=login protocol=pop3 client=" + Kv(peer) + " user=" + Kv(u) +
                    " result=" + AuthResultName(r.result) + (r.reason.empty() ? "" : " reason=" + Kv(r.reason)) +
                    (r.drop ? " messages=" + std::to_string(r.drop->count()) : "") +
                    (r.cached ? " auth=cached" : ""));
          if (r.result == pop3::AuthResult::kOk) {
            ++counters_.logins_ok;
          } else if (r.result == pop3::AuthResult::kBadCredentials) {
            ++counters_.logins_failed;
          } else {
            ++counters_.logins_other;
          }
          if (r.result == pop3::AuthResult::kBadCredentials) {
            asio::steady_timer delay(io_, FailureDelay(ip));
            co_await delay.async_wait(asio::redirect_error(use_awaitable, ec));
          }
          std::vector<pop3::MessageInfo> listing;
          if (r.drop) listing = r.drop->Listing();
          drop = std::move(r.drop);
          if (drop) user = r.user;
          ev = session.CompleteAuth(r.result, std::move(listing), &out);
          if (!session.authenticated()) drop.reset();  // refused or a bad snapshot: let the lock go
          break;
        }
        case pop3::Event::Kind::kRetrieve: {
          pop3::RetrieveResult result = pop3::RetrieveResult::kUnavailable;
          if (!drop || !co_await SendMessage(c, *drop, ev, &result, &out)) {
            broken = true;  // a reply cut short: the connection cannot go on
            break;
          }
          ++retrieved;
          ++counters_.retrieved;
          if (events_ && result == pop3::RetrieveResult::kSent) {
            events_->Append(Event("retrieved", drop->IdOf(ev.message).ToString())
                                .Add("user", user)
                                .Add("client", peer)
                                .Add("session", session_id)
                                .Add("command", ev.top_lines ? "TOP" : "RETR"));
          }
          ev = session.CompleteRetrieve(result, &out);
          break;
        }
        case pop3::Event::Kind::kStartTls: {
          if (!co_await Handshake(cp)) {
            log_.Info("event=tls_failed client=" + Kv(peer));
            broken = true;
            break;
          }
          ev = session.TlsStarted(&out);
          break;
        }
        case pop3::Event::Kind::kQuit: {
          // UPDATE: the deletions are durable before "+OK" (RFC 1939 section 6).
          // The maildrop is released before the reply, too: a client that
          // logs in again as soon as it reads "+OK" (a cached login takes
          // about a millisecond) must not find its own last session still
          // holding the lock ([IN-USE]).
          std::vector<size_t> marked = ev.deleted;
          // Recorded the moment the deletions are certain (their request
          // durable): a crash after it cannot bring the messages back.
          auto committed = [this, &user, &peer, &session_id](const std::vector<MessageId>& ids) {
            if (!events_) return;
            std::vector<Event> events;
            for (const MessageId& gone : ids) {
              events.push_back(Event("deleted", gone.ToString())
                                   .Add("user", user)
                                   .Add("client", peer)
                                   .Add("session", session_id)
                                   .Add("by", "pop3"));
            }
            events_->Append(std::move(events));
          };
          auto commit = [this, &drop, &user, marked, &committed] {
            Status done = drop ? drop->Commit(marked, committed) : Status::Ok();
            if (drop) Keep(user, pop3::Maildrop::Close(std::move(drop)));
            return done;
          };
          Status s = co_await OnPool(pool_, std::move(commit));
          deleted = s.ok() ? marked.size() : 0;
          counters_.deleted += deleted;
          log_.Info("event=update protocol=pop3 client=" + Kv(peer) + " user=" + Kv(user) +
                    " deleted=" + std::to_string(deleted) + (s.ok() ? "" : " error=" + Kv(s.ToString())));
          ev = session.CompleteQuit(s.ok(), &out);
          break;
        }
        default:
          ev = pop3::Event{};
      }
    }
  }
  // Release the maildrop lock (on the pool: closing is file I/O too).
  if (drop) {
    auto release = [this, &drop, &user] {
      Keep(user, pop3::Maildrop::Close(std::move(drop)));
      return 0;
    };
    co_await OnPool(pool_, std::move(release));
  }
  log_.Info("event=disconnect protocol=pop3 client=" + Kv(peer) + (user.empty() ? "" : " user=" + Kv(user)) +
            " retrieved=" + std::to_string(retrieved) + " deleted=" + std::to_string(deleted));
}

}  // namespace holdfast
