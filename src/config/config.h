// Config: holdfast.toml, read once at start-up. Every key, its type, default
// and range is in docs/configuration.md. Strict on purpose: an unknown key,
// a wrong type or an out-of-range value is an error naming the key, so a
// typo cannot silently leave a limit at its default.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "filter/filter.h"
#include "fs/fs.h"
#include "util/status.h"

namespace holdfast {

struct Config {
  // Used in Maildir file names and trace headers. Default: gethostname(2).
  std::string hostname;
  // `holdfast serve` started as root switches to this user once its ports
  // are bound, before it touches the data directory (which it must own).
  // "" = stay who it is (a warning when that is root).
  std::string user;

  struct Delivery {
    int64_t max_message_size = 50 * 1024 * 1024;  // bytes, 1 .. 1 GiB (a spool record holds it whole)
    int64_t lock_timeout_ms = 30000;               // 1 .. 600000
    bool add_return_path = true;                   // prepend Return-Path:
    bool add_delivered_to = true;                  // prepend Delivered-To:
    // prepend the RFC 5321 4.4 Received: line to LMTP mail (not `holdfast
    // deliver`'s); a chain's `trace` step writes it instead when present.
    bool add_received = true;
    // How a batch of new Maildir files is made durable (docs/configuration.md).
    std::string batch_sync = "syncfs";             // "syncfs" or "fdatasync"
    bool batch_syncfs() const { return batch_sync == "syncfs"; }
  } delivery;

  // LMTP listener of `holdfast serve` (docs/lmtp.md).
  struct Lmtp {
    std::string listen = "127.0.0.1:2424";       // ADDR:PORT, "" for none
    std::string unix_socket;                      // path, "" for none
    std::vector<std::string> local_domains;       // user@DOMAIN reaches user; default: localhost + hostname
    int64_t max_connections = 100;                // 1 .. 100000
    int64_t idle_timeout_ms = 300000;             // 1000 .. 3600000
    int64_t max_recipients = 1000;                // 1 .. 100000
    int64_t max_command_line = 2048;              // 512 .. 1 MiB
    int64_t max_data_line = 1 << 20;              // 1000 .. 1 GiB
    int64_t max_bytes_before_lhlo = 4096;         // 512 .. 1 MiB
    // A line ended by a bare LF: "reject" (500 for a command, 550 5.6.0 for a
    // message) or "keep" (stored as sent). Only CRLF.CRLF ends DATA either way.
    std::string bare_lf = "reject";
  } lmtp;
  struct Pop3 {
    std::string listen = "127.0.0.1:1110";       // ADDR:PORT, "" for none
    std::string tls_listen;                       // POP3S (TLS from the first byte), "" for none
    bool allow_plaintext_auth = false;            // USER/PASS, AUTH PLAIN without TLS off loopback
    int64_t max_connections = 1000;               // 1 .. 100000
    int64_t max_connections_per_ip = 50;          // 1 .. 100000
    int64_t idle_timeout_ms = 600000;             // RFC 1939: at least 10 minutes
    int64_t auth_failure_delay_ms = 1000;         // doubles per recent failure from an address, max 16x
    int64_t auth_cache_ttl_ms = 3600000;          // a verified login skips the hash this long; 0: no cache
    int64_t auth_cache_size = 100000;             // users remembered at most, 1 .. 10000000
  } pop3;
  struct Tls {
    std::string cert_file;  // PEM chain; "" = DATA/tls/cert.pem if present
    std::string key_file;   // PEM key;   "" = DATA/tls/key.pem if present
  } tls;
  struct Spool {
    int64_t segment_bytes = 64 << 20;             // 1 MiB .. 1 GiB
    // Back-pressure (docs/spool.md): above either backlog bound a message
    // waits up to congestion_wait_ms for filing to catch up, then gets 451.
    int64_t max_backlog_messages = 20000;
    int64_t max_backlog_bytes = int64_t{512} << 20;
    int64_t congestion_wait_ms = 20000;
  } spool;
  // The filter stage (docs/filters.md): [filters] and [[filters.chain]].
  FilterOptions filters;
  // /metrics (Prometheus text format) and /healthz over HTTP (docs/operations.md).
  struct Metrics {
    std::string listen = "127.0.0.1:9925";  // ADDR:PORT, "" for none
  } metrics;
  // What `holdfast serve` keeps in memory between uses (docs/configuration.md).
  struct Cache {
    // Open mailboxes (their indexes) kept for the next delivery or login:
    // half for the delivery thread, half for POP3, least recently used
    // dropped first. A mailbox in use is never dropped.
    int64_t mailbox_bytes = int64_t{128} << 20;  // 1 MiB .. 1 TiB
  } cache;
  // The event log `holdfast trace` reads (docs/events.md).
  struct Events {
    int64_t retention_days = 30;     // whole days of events kept; 0 keeps them forever
    int64_t sync_interval_ms = 1000;  // fdatasync at most this long after an event; 0: at once
  } events;
  struct Log {
    std::string level = "info";  // "debug" | "info" | "warn" | "error"
    std::string file;            // "" = stderr
    std::string format = "text";  // "text": TIMESTAMP LEVEL key=value ...; "json": one JSON object a line
  } log;
};

// The embedded defaults: what `holdfast serve` runs with when there is no
// config file.
Config DefaultConfig();

// Parses TOML text over the defaults. `source_name` (usually the path) is
// named in every error; syntax errors give line and column. kInvalid on any
// error.
Result<Config> ParseConfig(std::string_view toml_text, std::string_view source_name);

// Reads and parses `path`; a missing file is kNotFound.
Result<Config> LoadConfig(Fs& fs, const std::string& path);

// The lookup order: `explicit_path` (--config) when non-empty, which must
// exist; else DATA/holdfast.toml when it exists; else DefaultConfig().
Result<Config> ResolveConfig(Fs& fs, const std::string& data_dir, const std::string& explicit_path);

// The file name looked for in the data directory.
inline constexpr char kConfigFileName[] = "holdfast.toml";

// The configuration in force, as immutable snapshots: SIGHUP replaces the
// whole of it (Set) while a reader on any thread keeps the snapshot it took
// (Get) for as long as it needs it -- never half an old and half a new one.
class LiveConfig {
 public:
  explicit LiveConfig(Config c) : current_(std::make_shared<const Config>(std::move(c))) {}
  std::shared_ptr<const Config> Get() const {
    std::lock_guard<std::mutex> l(mu_);
    return current_;
  }
  void Set(Config c) {
    auto next = std::make_shared<const Config>(std::move(c));
    std::lock_guard<std::mutex> l(mu_);
    current_.swap(next);  // the old one goes when its last reader lets it go
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const Config> current_;
};

}  // namespace holdfast
