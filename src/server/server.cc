#include "server/server.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <asio.hpp>
#include <algorithm>
#include <atomic>
#include <memory>
#include <map>
#include <set>

#include "fs/fs.h"
#include "lmtp/address.h"
#include "lmtp/lmtp_session.h"
#include "server/endpoint.h"
#include "server/logger.h"
#include "server/metrics.h"
#include "server/notify.h"
#include "server/pop3_server.h"
#include "spool/spool.h"
#include "users/user_name.h"
#include "users/users_cache.h"

namespace holdfast {
namespace {

using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;

constexpr auto kDrainDeadline = std::chrono::seconds(30);

// Waits for the spool's durable-commit callback without blocking the loop.
template <typename Token>
auto AsyncSubmit(Spool& spool, SpoolMessage msg, std::string durable_line, Token&& token) {
  return asio::async_initiate<Token, void(Status)>(
      [&spool](auto handler, SpoolMessage m, std::string line) {
        auto ex = asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        spool.Submit(std::move(m), [ex, h](Status s) { asio::post(ex, [h, s]() mutable { (*h)(s); }); },
                     std::move(line));
      },
      token, std::move(msg), std::move(durable_line));
}

class Server {
 public:
  Server(ServeOptions opts, Logger& log)
      : config_(std::move(opts.config)),
        opts_(std::move(opts)), log_(log), users_(PosixFs(), opts_.data_dir), signals_(io_, SIGTERM, SIGINT, SIGHUP) {}

  int Run() {
    // Ports first (they may be privileged), then the switch to the
    // configured user, then recovery: everything in DATA is touched as that
    // user. Connections wait in the kernel's backlog until recovery is done.
    // A start that fails closes what it opened while io_ still exists (the
    // POP3 listeners outlive it otherwise: Pop3Server is declared first).
    auto fail = [this](const Status& s, int code) {
      log_.Error("event=startup_failed reason=" + Kv(s.ToString()));
      if (pop3_) pop3_->Close();
      return code;
    };
    if (Status s = Listen(); !s.ok()) return fail(s, EX_UNAVAILABLE);
    ListenMetrics();
    if (Status s = DropPrivileges(); !s.ok()) return fail(s, EX_CONFIG);
    if (Status s = Recover(); !s.ok()) return fail(s, EX_TEMPFAIL);
    WaitForSignal();
    ready_ = true;
    log_.Info("event=ready");
    NotifyServiceManager("READY=1\nSTATUS=recovery done, accepting mail");
    io_.run();
    // Blocking POP3 work still running finishes before anything it uses goes.
    pool_.join();
    if (pop3_) pop3_->Close();
    spool_->Stop(std::chrono::seconds(10));
    auto st = spool_->stats();
    log_.Info("event=stopped accepted=" + std::to_string(st.accepted) + " delivered=" + std::to_string(st.delivered) +
              " unretired=" + std::to_string(st.unretired));
    return EX_OK;
  }

 private:
  // Recovery before the first connection, so no session ever sees or
  // overwrites what a crash left half done: every mailbox's leftovers, then
  // the spool's replay (its deliveries run in the background).
  Status Recover() {
    const auto cfg = config_.Get();
    Fs& fs = PosixFs();
    HF_RETURN_IF_ERROR(fs.EnsureDir(opts_.data_dir));
    const std::string mail = JoinPath(opts_.data_dir, "mail");
    HF_RETURN_IF_ERROR(fs.EnsureDir(mail));
    EventLog::Options eo;
    eo.retention_days = cfg->events.retention_days;
    eo.sync_interval = std::chrono::milliseconds(cfg->events.sync_interval_ms);
    HF_ASSIGN_OR_RETURN(events_, EventLog::Open(fs, JoinPath(opts_.data_dir, EventLog::kDirName), eo));
    if (pop3_) pop3_->set_events(events_.get());
    HF_ASSIGN_OR_RETURN(auto users, fs.ReadDir(mail));
    MailboxOptions mo;
    mo.hostname = cfg->hostname;
    mo.lock_timeout = std::chrono::milliseconds(cfg->delivery.lock_timeout_ms);
    size_t recovered = 0;
    for (const auto& u : users) {
      if (!UserName::Parse(u).ok()) continue;
      auto box = Mailbox::Open(fs, JoinPath(mail, u), mo);
      if (!box.ok()) {
        log_.Warn("event=recovery_failed mailbox=" + Kv(u) + " reason=" + Kv(box.status().ToString()));
        continue;
      }
      for (const auto& line : (*box)->recovery_log()) {
        log_.Info("event=recovered mailbox=" + Kv(u) + " action=" + Kv(line));
        ++recovery_actions_;
      }
      std::vector<Event> finished;
      for (const MessageId& id : (*box)->recovery_expunged()) {
        finished.push_back(Event("deleted", id.ToString()).Add("user", u).Add("by", "recovery"));
      }
      events_->Append(std::move(finished));
      ++recovered;
    }
    Spool::Options so;
    so.log.segment_bytes = static_cast<uint64_t>(cfg->spool.segment_bytes);
    so.mail_dir = mail;
    so.mailbox = mo;
    so.trace = TraceOptions{cfg->delivery.add_return_path, cfg->delivery.add_delivered_to};
    so.hostname = cfg->hostname;
    so.mailbox_cache_bytes = static_cast<size_t>(cfg->cache.mailbox_bytes / 2);
    so.add_received = cfg->delivery.add_received &&
                      std::none_of(cfg->filters.chain.begin(), cfg->filters.chain.end(),
                                   [](const FilterStep& s) { return s.kind == FilterStep::Kind::kTrace; });
    so.log_line = [this](const std::string& l) { log_.Info("event=spool " + l); };
    so.log_lines = [this](const std::vector<std::string>& ls) {
      std::vector<std::string> lines;
      for (const std::string& l : ls) lines.push_back("event=spool " + l);
      log_.Lines(Logger::kInfo, lines);
    };
    so.log_durable = [this](const std::vector<std::string>& ls) { log_.Lines(Logger::kInfo, ls); };
    so.events = events_.get();
    // Filter workers are this same binary, reading the same configuration.
    so.filters = cfg->filters;
    so.worker_argv = {"/proc/self/exe", "--data", opts_.data_dir};
    if (!opts_.config_path.empty()) {
      so.worker_argv.push_back("--config");
      so.worker_argv.push_back(opts_.config_path);
    }
    so.worker_argv.push_back("filter-worker");
    HF_ASSIGN_OR_RETURN(spool_, Spool::Start(fs, JoinPath(opts_.data_dir, "spool"), so));
    recovered_mailboxes_ = recovered;
    log_.Info("event=recovery_done mailboxes=" + std::to_string(recovered) +
              " spool_unretired=" + std::to_string(spool_->stats().unretired));
    return Status::Ok();
  }

  Status Listen() {
    const auto cfg = config_.Get();
    // Sockets systemd opened for us replace the configured listeners of
    // their kind (docs/operations.md, "Socket activation").
    HF_ASSIGN_OR_RETURN(activated_, TakeListenSockets());
    if (!activated_.empty()) return ListenActivated();
    std::string addr = opts_.lmtp_listen.empty() ? cfg->lmtp.listen : opts_.lmtp_listen;
    std::string path = opts_.lmtp_unix.empty() ? cfg->lmtp.unix_socket : opts_.lmtp_unix;
    if (addr.empty() && path.empty()) return Status::Invalid("no LMTP listener configured");
    try {
      if (!addr.empty()) {
        HF_ASSIGN_OR_RETURN(auto ep, ParseEndpoint(addr));
        tcp_ = std::make_unique<tcp::acceptor>(io_, ep);  // SO_REUSEADDR is asio's default
        asio::co_spawn(io_, AcceptLoop(*tcp_), asio::detached);
        log_.Info("event=listening protocol=lmtp address=" + Kv(addr));
      }
      if (!path.empty()) {
        // A socket file left by a crash would make bind fail; it holds no data.
        Status s = PosixFs().Unlink(path);
        if (!s.ok() && s.kind() != Status::Kind::kNotFound) return s;
        unix_ = std::make_unique<unix_socket::acceptor>(io_, unix_socket::endpoint(path));
        asio::co_spawn(io_, AcceptLoop(*unix_), asio::detached);
        log_.Info("event=listening protocol=lmtp socket=" + Kv(path));
      }
    } catch (const std::exception& e) {
      return Status::Io("cannot listen on " + (addr.empty() ? path : addr) + ": " + e.what());
    }
    pop3_ = std::make_unique<Pop3Server>(io_, pool_, log_, opts_.data_dir, config_, users_);
    pop3_->on_session_end = [this] { StopIfIdle(); };
    return pop3_->Start(opts_.pop3_listen);
  }

  // Socket activation: exactly the sockets passed, by their names; a kind
  // with no socket passed has no listener (the configuration's addresses
  // are not used then: the unit file says where holdfast listens).
  Status ListenActivated() {
    const std::vector<int>& lmtp = activated_["lmtp"];
    if (lmtp.empty()) return Status::Invalid("socket activation passed no socket named lmtp");
    if (lmtp.size() > 2) return Status::Invalid("socket activation: at most one TCP and one UNIX socket named lmtp");
    try {
      for (int fd : lmtp) {
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) throw std::runtime_error("getsockname");
        if (ss.ss_family == AF_UNIX) {
          if (unix_) throw std::runtime_error("two UNIX sockets named lmtp");
          unix_ = std::make_unique<unix_socket::acceptor>(io_);
          unix_->assign(unix_socket(), fd);
          asio::co_spawn(io_, AcceptLoop(*unix_), asio::detached);
        } else {
          if (tcp_) throw std::runtime_error("two TCP sockets named lmtp");
          tcp_ = AdoptTcpListener(io_, fd);
          asio::co_spawn(io_, AcceptLoop(*tcp_), asio::detached);
        }
        log_.Info("event=listening protocol=lmtp activated=yes fd=" + std::to_string(fd));
      }
    } catch (const std::exception& e) {
      return Status::Invalid(std::string("socket activation: ") + e.what());
    }
    pop3_ = std::make_unique<Pop3Server>(io_, pool_, log_, opts_.data_dir, config_, users_);
    pop3_->on_session_end = [this] { StopIfIdle(); };
    return pop3_->StartActivated(activated_["pop3"], activated_["pop3s"]);
  }

  // `user` in the configuration: from root to that account (groups, gid,
  // uid), for good -- regaining root must fail. DATA must be its own.
  Status DropPrivileges() {
    const auto cfg = config_.Get();
    const std::string& name = cfg->user;
    if (name.empty()) {
      if (::geteuid() == 0)
        log_.Warn("event=running_as_root hint=" + Kv("set user = \"...\" in holdfast.toml to drop root once the ports are bound"));
      return Status::Ok();
    }
    struct passwd pwd {};
    struct passwd* pw = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r(name.c_str(), &pwd, buf.data(), buf.size(), &pw) != 0 || pw == nullptr)
      return Status::Invalid("user = " + name + ": no such user");
    if (::geteuid() != 0) {
      if (::geteuid() == pw->pw_uid) return Status::Ok();
      return Status::Invalid("user = " + name + ": cannot switch users without root (running as uid " +
                             std::to_string(::geteuid()) + ")");
    }
    struct stat st {};
    if (::stat(opts_.data_dir.c_str(), &st) == 0 && st.st_uid != pw->pw_uid)
      return Status::Invalid("the data directory " + opts_.data_dir + " belongs to uid " + std::to_string(st.st_uid) +
                             ", not to " + name + ": chown -R " + name + ": " + opts_.data_dir);
    if (::initgroups(name.c_str(), pw->pw_gid) != 0) return Status::FromErrno("initgroups", errno);
    if (::setgid(pw->pw_gid) != 0) return Status::FromErrno("setgid", errno);
    if (::setuid(pw->pw_uid) != 0) return Status::FromErrno("setuid", errno);
    if (::setuid(0) == 0) return Status::Invalid("could regain root after switching to " + name);
    log_.Info("event=privileges_dropped user=" + Kv(name) + " uid=" + std::to_string(pw->pw_uid) +
              " gid=" + std::to_string(pw->pw_gid));
    return Status::Ok();
  }

  static double WallSeconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }

  // /metrics and /healthz. A failure to listen is logged, not fatal: mail
  // matters more than its gauges.
  void ListenMetrics() {
    const auto cfg = config_.Get();
    // Under socket activation: the socket named metrics, if any.
    auto named = activated_.find("metrics");
    const std::vector<int> passed = named != activated_.end() ? named->second : std::vector<int>{};
    std::string addr = opts_.metrics_listen.empty() ? cfg->metrics.listen : opts_.metrics_listen;
    if (!activated_.empty()) addr = passed.empty() ? "" : "fd " + std::to_string(passed.front());
    if (addr.empty()) return;
    try {
      if (!passed.empty()) {
        metrics_ = AdoptTcpListener(io_, passed.front());
      } else {
        auto ep = ParseEndpoint(addr);
        if (!ep.ok()) throw std::runtime_error(ep.status().message());
        metrics_ = std::make_unique<tcp::acceptor>(io_, *ep);
      }
    } catch (const std::exception& e) {
      log_.Warn("event=metrics_unavailable address=" + Kv(addr) + " reason=" + Kv(e.what()));
      metrics_.reset();
      return;
    }
    asio::co_spawn(io_, MetricsLoop(), asio::detached);
    log_.Info("event=listening protocol=http address=" + Kv(addr) + " paths=/metrics,/healthz");
  }

  awaitable<void> MetricsLoop() {
    for (;;) {
      std::error_code ec;
      auto sock = co_await metrics_->async_accept(asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || draining_) co_return;
        continue;
      }
      asio::co_spawn(io_, ServeHttp(std::move(sock)), asio::detached);
    }
  }

  MetricsSnapshot Snapshot() {
    MetricsSnapshot m;
    m.spool = spool_->stats();
    m.ready = ready_ && !draining_ && !m.spool.broken;
    m.start_time_seconds = start_time_;
    m.now_seconds = WallSeconds();
    m.oldest_backlog_ms = spool_->OldestBacklogMs();
    m.lmtp_sessions = sessions_;
    m.lmtp_connections = lmtp_connections_;
    m.lmtp_refused = lmtp_refused_;
    if (pop3_) {
      m.pop3_sessions = pop3_->sessions();
      m.pop3 = pop3_->counters();
    }
    m.recovered_mailboxes = recovered_mailboxes_;
    m.recovery_actions = recovery_actions_;
    m.spool_replayed = m.spool.replayed;
    m.events_written = events_ ? events_->appended() : 0;
    m.event_errors = events_ ? events_->errors() : 0;
    return m;
  }

  // One request per connection (HTTP/1.0 style), 5 s to send it, 8 KiB at most.
  awaitable<void> ServeHttp(tcp::socket sock) {
    asio::steady_timer deadline(io_);
    deadline.expires_after(std::chrono::seconds(5));
    deadline.async_wait([&sock](std::error_code ec) {
      if (ec) return;
      std::error_code ignore;
      sock.cancel(ignore);
    });
    std::string req;
    std::error_code ec;
    char buf[2048];
    while (req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos && req.size() <= 8192) {
      size_t n = co_await sock.async_read_some(asio::buffer(buf), asio::redirect_error(use_awaitable, ec));
      if (ec) co_return;
      req.append(buf, n);
    }
    deadline.cancel();
    int code = 200;
    std::string type = "text/plain; charset=utf-8", body;
    const size_t eol = req.find_first_of("\r\n");
    const std::string line = req.substr(0, eol);
    const size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
    const std::string method = line.substr(0, sp1);
    std::string path = sp1 != std::string::npos && sp2 > sp1 ? line.substr(sp1 + 1, sp2 - sp1 - 1) : "";
    path = path.substr(0, path.find('?'));
    if (req.size() > 8192) {
      code = 431;
      body = "request too large\n";
    } else if (sp1 == std::string::npos || sp2 == sp1 || line.compare(sp2 + 1, 5, "HTTP/") != 0) {
      code = 400;
      body = "bad request\n";
    } else if (method != "GET" && method != "HEAD") {
      code = 405;
      body = "only GET and HEAD\n";
    } else if (path == "/metrics") {
      type = "text/plain; version=0.0.4; charset=utf-8";
      body = RenderMetrics(Snapshot());
    } else if (path == "/healthz") {
      MetricsSnapshot m = Snapshot();
      code = m.ready ? 200 : 503;
      body = m.ready ? "ready\n"
                     : std::string("not ready: ") + (draining_ ? "draining" : m.spool.broken ? "spool cannot sync" : "starting") + "\n";
    } else {
      code = 404;
      body = "not found: try /metrics or /healthz\n";
    }
    const char* reason = code == 200 ? "OK" : code == 400 ? "Bad Request" : code == 404 ? "Not Found"
                       : code == 405 ? "Method Not Allowed" : code == 431 ? "Request Header Fields Too Large"
                                     : "Service Unavailable";
    std::string out = "HTTP/1.1 " + std::to_string(code) + " " + reason + "\r\nContent-Type: " + type +
                      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
    if (method != "HEAD") out += body;
    co_await asio::async_write(sock, asio::buffer(out), asio::redirect_error(use_awaitable, ec));
    sock.shutdown(tcp::socket::shutdown_both, ec);
  }

  template <typename Acceptor>
  awaitable<void> AcceptLoop(Acceptor& acceptor) {
    for (;;) {
      std::error_code ec;
      auto sock = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
      if (ec) {
        if (ec == asio::error::operation_aborted || draining_) co_return;
        log_.Warn("event=accept_failed reason=" + Kv(ec.message()));
        continue;
      }
      asio::co_spawn(io_, Serve(std::move(sock)), asio::detached);
    }
  }

  template <typename Socket>
  static std::string PeerOf(Socket& sock) {
    std::error_code ec;
    if constexpr (std::is_same_v<Socket, tcp::socket>) {
      auto ep = sock.remote_endpoint(ec);
      if (!ec) return ep.address().to_string() + ":" + std::to_string(ep.port());
    }
    return "local";
  }

  lmtp::RcptCheck Resolve(const std::string& address, lmtp::Recipient* out) {
    const auto cfg = config_.Get();
    auto target = lmtp::MapAddressToUser(address, cfg->lmtp.local_domains);
    if (!target) return lmtp::RcptCheck::kUnknown;
    auto name = UserName::Parse(target->user);
    if (!name.ok()) return lmtp::RcptCheck::kUnknown;
    auto found = users_.Find(*name);
    if (!found.ok()) {
      log_.Warn("event=users_file_error reason=" + Kv(found.status().ToString()));
      return lmtp::RcptCheck::kTempFail;
    }
    if (!found->has_value()) return lmtp::RcptCheck::kUnknown;
    out->user = name->str();
    out->detail = target->detail;
    return lmtp::RcptCheck::kOk;
  }

  static lmtp::Limits Limits(const Config& c) {
    lmtp::Limits l;
    l.max_command_line = static_cast<size_t>(c.lmtp.max_command_line);
    l.max_data_line = static_cast<size_t>(c.lmtp.max_data_line);
    l.max_message_size = static_cast<uint64_t>(c.delivery.max_message_size);
    l.max_recipients = static_cast<size_t>(c.lmtp.max_recipients);
    l.max_bytes_before_lhlo = static_cast<size_t>(c.lmtp.max_bytes_before_lhlo);
    l.reject_bare_lf = c.lmtp.bare_lf == "reject";
    return l;
  }

  template <typename Socket>
  awaitable<void> Serve(Socket sock) {
    const std::string peer = PeerOf(sock);
    const auto cfg = config_.Get();  // this session's limits, whatever a reload does meanwhile
    if constexpr (std::is_same_v<Socket, tcp::socket>) {
      // Each reply is written whole; Nagle would only delay the next one.
      std::error_code ignore;
      sock.set_option(tcp::no_delay(true), ignore);
    }
    if (sessions_ >= static_cast<size_t>(cfg->lmtp.max_connections)) {
      ++lmtp_refused_;
      log_.Warn("event=connection_refused client=" + Kv(peer) + " reason=too_many_connections");
      std::error_code ec;
      co_await asio::async_write(sock, asio::buffer(std::string("421 4.3.2 too many connections, try later\r\n")),
                                 asio::redirect_error(use_awaitable, ec));
      co_return;
    }
    ++sessions_;
    ++lmtp_connections_;
    struct Leave {
      Server* s;
      ~Leave() {
        --s->sessions_;
        s->StopIfIdle();
      }
    } leave{this};
    log_.Info("event=connect protocol=lmtp client=" + Kv(peer));

    lmtp::Session session(cfg->hostname, Limits(*cfg),
                          [this](const std::string& a, lmtp::Recipient* r) { return Resolve(a, r); });
    session.set_client(peer);
    asio::steady_timer idle(io_);
    const auto idle_after = std::chrono::milliseconds(cfg->lmtp.idle_timeout_ms);
    bool timed_out = false;
    auto arm = [&] {
      idle.expires_after(idle_after);
      idle.async_wait([&](std::error_code ec) {
        if (ec) return;
        timed_out = true;
        std::error_code ignore;
        sock.cancel(ignore);
      });
    };
    std::string out = session.Greeting();
    std::vector<char> buf(64 * 1024);
    std::error_code ec;
    size_t messages = 0;
    for (;;) {
      if (!out.empty()) {
        co_await asio::async_write(sock, asio::buffer(out), asio::redirect_error(use_awaitable, ec));
        out.clear();
        if (ec) break;
      }
      if (session.closed()) break;
      arm();
      size_t n = co_await sock.async_read_some(asio::buffer(buf), asio::redirect_error(use_awaitable, ec));
      idle.cancel();
      if (timed_out) {
        session.Abort("4.4.2", "idle too long, closing", &out);
        co_await asio::async_write(sock, asio::buffer(out), asio::redirect_error(use_awaitable, ec));
        log_.Info("event=idle_timeout client=" + Kv(peer));
        break;
      }
      if (ec) break;  // the client went away: nothing it sent was acknowledged
      lmtp::Event ev = session.Feed(std::string_view(buf.data(), n), &out);
      while (ev.kind == lmtp::Event::Kind::kMessage) {
        // The replies before the message go out first (pipelining keeps order).
        if (!out.empty()) {
          co_await asio::async_write(sock, asio::buffer(out), asio::redirect_error(use_awaitable, ec));
          out.clear();
        }
        SpoolMessage m;
        m.id = MessageId::Generate();
        m.received_ms = static_cast<int64_t>(m.id.UnixMillis());
        m.client = peer;
        m.helo = ev.envelope.helo;
        m.mail_from = ev.envelope.mail_from;
        for (const auto& r : ev.envelope.rcpts) m.rcpts.push_back(SpoolRecipient{r.address, r.user, r.detail});
        const size_t size = ev.body.size();
        m.body = std::move(ev.body);
        const std::string id = m.id.ToString();
        // Back-pressure: while filing lags too far behind intake, hold this
        // client (we read nothing more from it) and then turn it away.
        Status st = co_await WaitWhileCongested();
        const bool turned_away = !st.ok();
        // 250 only once the spool record is durable: the MTA drops its copy
        // when it sees 250, so a crash after it must not lose the message.
        // The commit logs event=accepted, with the rest of its round in one
        // write.
        const std::string fields = " id=" + id + " client=" + Kv(peer) + " from=" + Kv(ev.envelope.mail_from) +
                                   " rcpts=" + std::to_string(ev.envelope.rcpts.size()) +
                                   " size=" + std::to_string(size);
        if (st.ok()) st = co_await AsyncSubmit(*spool_, std::move(m), "event=accepted" + fields, use_awaitable);
        std::vector<lmtp::Reply> replies;
        for (const auto& r : ev.envelope.rcpts) {
          if (st.ok()) {
            replies.push_back(lmtp::Reply{250, "2.0.0", "<" + r.address + "> " + id + " accepted"});
          } else if (st.kind() == Status::Kind::kInvalid) {
            replies.push_back(lmtp::Reply{554, "5.3.4", "<" + r.address + "> " + st.message()});
          } else if (turned_away) {
            replies.push_back(lmtp::Reply{451, "4.3.1", "<" + r.address + "> mail system congested, try again later"});
          } else {
            replies.push_back(lmtp::Reply{451, "4.3.0", "<" + r.address + "> temporary failure, try again later"});
          }
        }
        if (!st.ok()) {
          log_.Info(std::string("event=") + (turned_away ? "congestion_refused" : "temp_failed") + fields +
                    " reason=" + Kv(st.ToString()));
        }
        ++messages;
        ev = session.CompleteMessage(replies, &out);
      }
    }
    idle.cancel();
    log_.Info("event=disconnect client=" + Kv(peer) + " messages=" + std::to_string(messages));
  }

  bool Congested() {
    const auto cfg = config_.Get();
    const auto& c = cfg->spool;
    const Spool::Backlog b = spool_->backlog();  // per message: not the whole Stats with its histograms
    bool now = b.messages > static_cast<uint64_t>(c.max_backlog_messages) ||
               b.bytes > static_cast<uint64_t>(c.max_backlog_bytes);
    if (now != congested_) {
      congested_ = now;
      log_.Info(std::string("event=") + (now ? "congested" : "uncongested") +
                " backlog_messages=" + std::to_string(b.messages) + " backlog_bytes=" + std::to_string(b.bytes));
    }
    return now;
  }

  // Ok once the backlog is below its bounds; kBusy if it stays above them
  // for congestion_wait_ms (or the server is draining).
  asio::awaitable<Status> WaitWhileCongested() {
    const auto cfg = config_.Get();
    if (!Congested()) co_return Status::Ok();
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(cfg->spool.congestion_wait_ms);
    asio::steady_timer t(io_);
    while (std::chrono::steady_clock::now() < until && !draining_) {
      t.expires_after(std::chrono::milliseconds(20));
      std::error_code ec;
      co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
      if (!Congested()) co_return Status::Ok();
    }
    co_return Status::Busy("spool backlog above its bounds");
  }

  // Once draining, the loop stops when the last session of either protocol ends.
  void StopIfIdle() {
    if (draining_ && sessions_ == 0 && (!pop3_ || pop3_->sessions() == 0)) io_.stop();
  }

  void WaitForSignal() {
    signals_.async_wait([this](std::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        Reload();
        WaitForSignal();
        return;
      }
      if (draining_) {
        log_.Info("event=stopping_now reason=second_signal sessions=" + std::to_string(sessions_));
        io_.stop();
        return;
      }
      NotifyServiceManager("STOPPING=1\nSTATUS=draining");
      log_.Info(std::string("event=draining signal=") + (sig == SIGTERM ? "TERM" : "INT") +
                " sessions=" + std::to_string(sessions_));
      draining_ = true;
      std::error_code ignore;
      if (tcp_) tcp_->close(ignore);
      if (unix_) unix_->close(ignore);
      if (pop3_) pop3_->Drain();
      if (sessions_ + (pop3_ ? pop3_->sessions() : 0) == 0) {
        io_.stop();
        return;
      }
      // Sessions in flight get time to finish; then the loop stops anyway
      // (what they had not been told 250 for was never acknowledged).
      drain_timer_ = std::make_unique<asio::steady_timer>(io_, kDrainDeadline);
      drain_timer_->async_wait([this](std::error_code e) {
        if (!e) io_.stop();
      });
      WaitForSignal();  // a second signal stops at once
    });
  }

  void Reload() {
    NotifyServiceManager("RELOADING=1");
    auto fresh = ResolveConfig(PosixFs(), opts_.data_dir, opts_.config_path);
    if (!fresh.ok()) {
      log_.Warn("event=reload_failed reason=" + Kv(fresh.status().message()) + " (keeping the old configuration)");
      NotifyServiceManager("READY=1");
      return;
    }
    config_.Set(std::move(fresh).value());
    const auto cfg = config_.Get();
    // At start Context::Init applied it; a reload applies it again.
    SetPosixBatchSync(cfg->delivery.batch_syncfs() ? BatchSync::kSyncfs : BatchSync::kFdatasync);
    log_.set_level(Logger::ParseLevel(cfg->log.level));
    log_.set_json(cfg->log.format == "json");
    log_.Reopen();
    log_.Info("event=reloaded");
    NotifyServiceManager("READY=1");
  }

  LiveConfig config_;  // the one configuration in force; opts_.config is moved out
  ServeOptions opts_;
  Logger& log_;
  UsersCache users_;
  std::unique_ptr<EventLog> events_;  // outlives everything that writes to it
  // Before io_: destroying io_ destroys suspended sessions, whose clean-up
  // still touches pop3_; Run() joins the pool before that.
  asio::thread_pool pool_{2};
  std::unique_ptr<Pop3Server> pop3_;
  asio::io_context io_;
  asio::signal_set signals_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<tcp::acceptor> tcp_;
  std::unique_ptr<unix_socket::acceptor> unix_;
  std::unique_ptr<asio::steady_timer> drain_timer_;
  bool congested_ = false;  // last state logged
  size_t sessions_ = 0;
  bool draining_ = false;
  bool ready_ = false;  // for /healthz: recovered and listening, not draining
  uint64_t lmtp_connections_ = 0, lmtp_refused_ = 0, recovered_mailboxes_ = 0, recovery_actions_ = 0;
  const double start_time_ = WallSeconds();
  std::unique_ptr<tcp::acceptor> metrics_;
  std::map<std::string, std::vector<int>> activated_;  // socket activation: name -> descriptors
};

}  // namespace

int RunServer(ServeOptions opts) {
  Logger log(Logger::ParseLevel(opts.config.log.level), opts.config.log.file, opts.config.log.format == "json");
  log.Info("event=starting data=" + Kv(opts.data_dir));
  Server server(std::move(opts), log);
  return server.Run();
}

}  // namespace holdfast
