#include "config/config.h"

#include <unistd.h>

#include <climits>
#include <toml++/toml.h>
#include <variant>
#include <vector>

#include "filter/message_edit.h"

namespace holdfast {

namespace {

// --- The key table: adding a key is one line here (plus the struct field
// and docs/configuration.md). ---

struct IntKey {
  int64_t& (*field)(Config&);
  int64_t min, max;
};
struct BoolKey {
  bool& (*field)(Config&);
};
struct StringKey {
  std::string& (*field)(Config&);
  std::vector<std::string_view> choices;        // empty: any string passing `check`
  Status (*check)(std::string_view) = nullptr;      // extra rule, or none
};
struct StringListKey {
  std::vector<std::string>& (*field)(Config&);
  Status (*check)(std::string_view) = nullptr;  // each element
};
struct KeySpec {
  std::string_view key;  // dotted: "table.key"
  std::variant<IntKey, BoolKey, StringKey, StringListKey> type;
};

Status CheckHostname(std::string_view h);
Status CheckListen(std::string_view v);
Status CheckUnixUser(std::string_view v);
Status CheckDomain(std::string_view v);
#define HF_INT(name, expr, lo, hi) {name, IntKey{+[](Config& c) -> int64_t& { return c.expr; }, lo, hi}}

const std::vector<KeySpec>& Keys() {
  static const std::vector<KeySpec> keys = {
      {"hostname", StringKey{+[](Config& c) -> std::string& { return c.hostname; }, {}, &CheckHostname}},
      {"user", StringKey{+[](Config& c) -> std::string& { return c.user; }, {}, &CheckUnixUser}},
      {"delivery.max_message_size",
       IntKey{+[](Config& c) -> int64_t& { return c.delivery.max_message_size; }, 1, (int64_t{1} << 30) - (int64_t{1} << 20)}},
      {"delivery.lock_timeout_ms",
       IntKey{+[](Config& c) -> int64_t& { return c.delivery.lock_timeout_ms; }, 1, 600000}},
      {"delivery.add_return_path", BoolKey{+[](Config& c) -> bool& { return c.delivery.add_return_path; }}},
      {"delivery.add_delivered_to", BoolKey{+[](Config& c) -> bool& { return c.delivery.add_delivered_to; }}},
      {"delivery.add_received", BoolKey{+[](Config& c) -> bool& { return c.delivery.add_received; }}},
      {"delivery.batch_sync",
       StringKey{+[](Config& c) -> std::string& { return c.delivery.batch_sync; }, {"syncfs", "fdatasync"}}},
      {"log.level",
       StringKey{+[](Config& c) -> std::string& { return c.log.level; }, {"debug", "info", "warn", "error"}}},
      {"log.file", StringKey{+[](Config& c) -> std::string& { return c.log.file; }, {}}},
      {"log.format", StringKey{+[](Config& c) -> std::string& { return c.log.format; }, {"text", "json"}}},
      {"lmtp.listen", StringKey{+[](Config& c) -> std::string& { return c.lmtp.listen; }, {}, &CheckListen}},
      {"lmtp.unix_socket", StringKey{+[](Config& c) -> std::string& { return c.lmtp.unix_socket; }, {}}},
      {"lmtp.local_domains",
       StringListKey{+[](Config& c) -> std::vector<std::string>& { return c.lmtp.local_domains; }, &CheckDomain}},
      HF_INT("lmtp.max_connections", lmtp.max_connections, 1, 100000),
      HF_INT("lmtp.idle_timeout_ms", lmtp.idle_timeout_ms, 1000, 3600000),
      HF_INT("lmtp.max_recipients", lmtp.max_recipients, 1, 100000),
      HF_INT("lmtp.max_command_line", lmtp.max_command_line, 512, 1 << 20),
      HF_INT("lmtp.max_data_line", lmtp.max_data_line, 1000, 1 << 30),
      HF_INT("lmtp.max_bytes_before_lhlo", lmtp.max_bytes_before_lhlo, 512, 1 << 20),
      {"lmtp.bare_lf", StringKey{+[](Config& c) -> std::string& { return c.lmtp.bare_lf; }, {"reject", "keep"}}},
      {"pop3.listen", StringKey{+[](Config& c) -> std::string& { return c.pop3.listen; }, {}, &CheckListen}},
      {"pop3.tls_listen", StringKey{+[](Config& c) -> std::string& { return c.pop3.tls_listen; }, {}, &CheckListen}},
      {"metrics.listen", StringKey{+[](Config& c) -> std::string& { return c.metrics.listen; }, {}, &CheckListen}},
      {"pop3.allow_plaintext_auth", BoolKey{+[](Config& c) -> bool& { return c.pop3.allow_plaintext_auth; }}},
      HF_INT("pop3.max_connections", pop3.max_connections, 1, 100000),
      HF_INT("pop3.max_connections_per_ip", pop3.max_connections_per_ip, 1, 100000),
      HF_INT("pop3.idle_timeout_ms", pop3.idle_timeout_ms, 1000, 86400000),
      HF_INT("pop3.auth_failure_delay_ms", pop3.auth_failure_delay_ms, 0, 60000),
      HF_INT("pop3.auth_cache_ttl_ms", pop3.auth_cache_ttl_ms, 0, 86400000),
      HF_INT("pop3.auth_cache_size", pop3.auth_cache_size, 1, 10000000),
      {"tls.cert_file", StringKey{+[](Config& c) -> std::string& { return c.tls.cert_file; }, {}}},
      {"tls.key_file", StringKey{+[](Config& c) -> std::string& { return c.tls.key_file; }, {}}},
      HF_INT("spool.segment_bytes", spool.segment_bytes, 1 << 20, 1 << 30),
      HF_INT("spool.max_backlog_messages", spool.max_backlog_messages, 1, 10000000),
      HF_INT("spool.max_backlog_bytes", spool.max_backlog_bytes, 1 << 20, int64_t{1} << 40),
      HF_INT("spool.congestion_wait_ms", spool.congestion_wait_ms, 0, 600000),
      HF_INT("cache.mailbox_bytes", cache.mailbox_bytes, 1 << 20, int64_t{1} << 40),
      HF_INT("events.retention_days", events.retention_days, 0, 36500),
      HF_INT("events.sync_interval_ms", events.sync_interval_ms, 0, 60000),
  };
  return keys;
}

// The hostname goes into Maildir file names: keep it to bytes that need no
// escaping there and cannot form a path.
bool HostnameByteOk(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
         c == '_';
}

// "ADDR:PORT" or "[v6]:PORT", or "" for no listener.
Status CheckListen(std::string_view v) {
  if (v.empty()) return Status::Ok();
  auto colon = v.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == v.size())
    return Status::Invalid("must be ADDR:PORT, e.g. \"127.0.0.1:2424\"");
  for (char c : v.substr(colon + 1)) {
    if (c < '0' || c > '9') return Status::Invalid("port must be a number");
  }
  if (std::stoul(std::string(v.substr(colon + 1))) > 65535) return Status::Invalid("port must be at most 65535");
  return Status::Ok();
}

// A Unix account name: what useradd accepts (letters, digits, '_', '-', '.'; not starting with '-').
Status CheckUnixUser(std::string_view v) {
  if (v.empty()) return Status::Ok();
  if (v.size() > 32 || v[0] == '-') return Status::Invalid("must be a Unix user name (1 to 32 bytes, not starting with '-')");
  for (char c : v) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
      return Status::Invalid("must be a Unix user name (letters, digits, '_', '-', '.')");
  }
  return Status::Ok();
}


Status CheckDomain(std::string_view v) {
  if (v.empty() || v.size() > 253) return Status::Invalid("domains must be 1 to 253 bytes");
  for (char c : v) {
    if (!HostnameByteOk(c) || c == '_') return Status::Invalid("a domain may hold only letters, digits, '.' and '-'");
  }
  return Status::Ok();
}

Status CheckHostname(std::string_view h) {
  if (h.empty() || h.size() > 253) return Status::Invalid("must be 1 to 253 bytes");
  for (char c : h) {
    if (!HostnameByteOk(c)) return Status::Invalid("may hold only letters, digits, '.', '-' and '_'");
  }
  return Status::Ok();
}

const KeySpec* FindKey(std::string_view key) {
  for (const KeySpec& k : Keys()) {
    if (k.key == key) return &k;
  }
  return nullptr;
}

// True if `path` names a table that holds some known key.
bool IsKnownTable(std::string_view path) {
  for (const KeySpec& k : Keys()) {
    if (k.key.size() > path.size() && k.key.substr(0, path.size()) == path && k.key[path.size()] == '.') {
      return true;
    }
  }
  return false;
}

std::string Where(std::string_view source, const toml::node& node) {
  const auto& b = node.source().begin;
  std::string out = " in " + std::string(source);
  if (b.line > 0) out += " at line " + std::to_string(b.line);
  return out;
}

std::string Quote(std::string_view key) { return "'" + std::string(key) + "'"; }

// A user's value echoed back in an error, kept to one short printable line.
std::string Echo(std::string_view v) {
  std::string out = "\"";
  for (char c : v.substr(0, 64)) {
    auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  return out + (v.size() > 64 ? "...\"" : "\"");
}

struct Applier {
  Config& config;
  std::string_view key;
  const toml::node& node;
  std::string_view source;

  Status Error(const std::string& what) const {
    return Status::Invalid("key " + Quote(key) + " " + what + Where(source, node));
  }

  Status operator()(const IntKey& k) const {
    std::string range = "from " + std::to_string(k.min) + " to " + std::to_string(k.max);
    const auto* v = node.as_integer();
    if (!v) return Error("must be an integer " + range);
    int64_t x = v->get();
    if (x < k.min || x > k.max) return Error("must be an integer " + range + " (got " + std::to_string(x) + ")");
    k.field(config) = x;
    return Status::Ok();
  }

  Status operator()(const BoolKey& k) const {
    const auto* v = node.as_boolean();
    if (!v) return Error("must be true or false");
    k.field(config) = v->get();
    return Status::Ok();
  }

  Status operator()(const StringKey& k) const {
    std::string allowed;
    for (std::string_view c : k.choices) allowed += (allowed.empty() ? "\"" : ", \"") + std::string(c) + "\"";
    const auto* v = node.as_string();
    if (!v) return Error(!k.choices.empty() ? "must be one of " + allowed : "must be a string");
    const std::string& s = v->get();
    if (!k.choices.empty()) {
      bool found = false;
      for (std::string_view c : k.choices) found = found || c == s;
      if (!found) return Error("must be one of " + allowed + " (got " + Echo(s) + ")");
    }
    if (k.check) {
      Status st = k.check(s);
      if (!st.ok()) return Error(st.message());
    }
    k.field(config) = s;
    return Status::Ok();
  }

  Status operator()(const StringListKey& k) const {
    const auto* arr = node.as_array();
    if (!arr) return Error("must be an array of strings");
    std::vector<std::string> out;
    for (const auto& el : *arr) {
      const auto* v = el.as_string();
      if (!v) return Error("must be an array of strings");
      if (k.check) {
        Status st = k.check(v->get());
        if (!st.ok()) return Error(st.message() + " (got " + Echo(v->get()) + ")");
      }
      out.push_back(v->get());
    }
    k.field(config) = std::move(out);
    return Status::Ok();
  }
};

// --- [filters]: FilterOptions has typed fields of its own and an array of
// tables, so it is read here rather than through the key table. ---

struct FilterReader {
  std::string_view source;

  Status Error(std::string_view key, const std::string& what, const toml::node& node) const {
    return Status::Invalid("key " + Quote(key) + " " + what + Where(source, node));
  }

  Result<int64_t> Int(std::string_view key, const toml::node& node, int64_t lo, int64_t hi) const {
    std::string range = "from " + std::to_string(lo) + " to " + std::to_string(hi);
    const auto* v = node.as_integer();
    if (!v) return Error(key, "must be an integer " + range, node);
    int64_t x = v->get();
    if (x < lo || x > hi) return Error(key, "must be an integer " + range + " (got " + std::to_string(x) + ")", node);
    return x;
  }

  Result<std::string> String(std::string_view key, const toml::node& node, Status (*check)(std::string_view)) const {
    const auto* v = node.as_string();
    if (!v) return Error(key, "must be a string", node);
    if (v->get().find('\0') != std::string::npos) return Error(key, "must not hold a NUL byte", node);
    if (check) {
      Status st = check(v->get());
      if (!st.ok()) return Error(key, st.message() + " (got " + Echo(v->get()) + ")", node);
    }
    return v->get();
  }

  static Status CheckStepName(std::string_view v) {
    if (v.empty() || v.size() > 64) return Status::Invalid("must be 1 to 64 bytes");
    for (char c : v) {
      if (!HostnameByteOk(c)) return Status::Invalid("may hold only letters, digits, '.', '-' and '_'");
    }
    return Status::Ok();
  }
  static Status CheckAddress(std::string_view v) {
    if (v.empty()) return Status::Invalid("must be HOST:PORT, e.g. \"127.0.0.1:11333\"");
    return CheckListen(v);
  }

  Status Step(const toml::table& t, const std::string& prefix, FilterStep& step) const {
    const toml::node* type = t.get("type");
    if (type == nullptr) return Status::Invalid("key " + Quote(prefix + ".type") + " is missing" + Where(source, t));
    HF_ASSIGN_OR_RETURN(std::string kind, String(prefix + ".type", *type, nullptr));
    if (kind != "command" && kind != "rspamd" && kind != "trace")
      return Error(prefix + ".type", "must be one of \"command\", \"rspamd\", \"trace\" (got " + Echo(kind) + ")",
                   *type);
    const bool command = kind == "command";
    step.kind = command ? FilterStep::Kind::kCommand
                        : kind == "rspamd" ? FilterStep::Kind::kRspamd : FilterStep::Kind::kTrace;
    step.name = kind;
    for (const auto& entry : t) {
      const toml::key& k = entry.first;
      const toml::node& node = entry.second;  // not a structured binding: the lambda below captures it
      const std::string key = prefix + "." + std::string(k.str());
      const std::string_view name = k.str();
      auto only = [&](bool allowed) {
        return allowed ? Status::Ok() : Error(key, "is not allowed for type " + Echo(kind), node);
      };
      if (name == "type") {
        continue;
      } else if (name == "name") {
        HF_ASSIGN_OR_RETURN(step.name, String(key, node, &CheckStepName));
      } else if (name == "timeout_ms") {
        HF_ASSIGN_OR_RETURN(int64_t ms, Int(key, node, 1, 3600000));
        step.timeout = std::chrono::milliseconds(ms);
      } else if (name == "command") {
        HF_RETURN_IF_ERROR(only(command));
        const auto* arr = node.as_array();
        if (!arr || arr->empty()) return Error(key, "must be a non-empty array of strings", node);
        step.argv.clear();
        for (const auto& el : *arr) {
          HF_ASSIGN_OR_RETURN(std::string arg, String(key, el, nullptr));
          step.argv.push_back(std::move(arg));
        }
        // No PATH lookup for a program that sees every message.
        if (step.argv[0].empty() || step.argv[0][0] != '/')
          return Error(key, "must start with an absolute path (got " + Echo(step.argv[0]) + ")", node);
      } else if (name == "rewrite") {
        HF_RETURN_IF_ERROR(only(command));
        const auto* v = node.as_boolean();
        if (!v) return Error(key, "must be true or false", node);
        step.rewrite = v->get();
      } else if (name == "address") {
        HF_RETURN_IF_ERROR(only(kind == "rspamd"));
        HF_ASSIGN_OR_RETURN(step.rspamd_address, String(key, node, &CheckAddress));
      } else if (name == "on_reject") {
        HF_RETURN_IF_ERROR(only(kind == "rspamd"));
        HF_ASSIGN_OR_RETURN(std::string v, String(key, node, nullptr));
        if (v != "junk" && v != "quarantine")
          return Error(key, "must be one of \"junk\", \"quarantine\" (got " + Echo(v) + ")", node);
        step.reject_to_quarantine = v == "quarantine";
      } else if (name == "junk_folder") {
        HF_RETURN_IF_ERROR(only(kind == "rspamd"));
        HF_ASSIGN_OR_RETURN(step.junk_folder, String(key, node, &CheckFolderName));
      } else {
        return Status::Invalid((node.is_table() ? "unknown table " : "unknown key ") + Quote(key) + Where(source, node));
      }
    }
    if (command && step.argv.empty())
      return Status::Invalid("key " + Quote(prefix + ".command") + " is missing (required for type \"command\")" +
                             Where(source, t));
    return Status::Ok();
  }

  Status Filters(const toml::table& t, FilterOptions& f) const {
    for (const auto& [k, node] : t) {
      const std::string key = "filters." + std::string(k.str());
      const std::string_view name = k.str();
      if (name == "batch_size") {
        HF_ASSIGN_OR_RETURN(int64_t v, Int(key, node, 1, 1024));
        f.batch_size = static_cast<uint32_t>(v);
      } else if (name == "workers") {
        HF_ASSIGN_OR_RETURN(int64_t v, Int(key, node, 1, 64));
        f.workers = static_cast<uint32_t>(v);
      } else if (name == "retry_workers") {
        HF_ASSIGN_OR_RETURN(int64_t v, Int(key, node, 0, 64));
        f.retry_workers = static_cast<uint32_t>(v);
      } else if (name == "retry_nice") {
        HF_ASSIGN_OR_RETURN(int64_t v, Int(key, node, 0, 19));
        f.retry_nice = static_cast<int>(v);
      } else if (name == "max_attempts") {
        HF_ASSIGN_OR_RETURN(int64_t v, Int(key, node, 1, 100));
        f.max_attempts = static_cast<uint32_t>(v);
      } else if (name == "tempfail_delay_ms") {
        HF_ASSIGN_OR_RETURN(int64_t v, Int(key, node, 0, 86400000));
        f.tempfail_delay = std::chrono::milliseconds(v);
      } else if (name == "memory_bytes") {
        HF_ASSIGN_OR_RETURN(int64_t v, Int(key, node, int64_t{16} << 20, int64_t{1} << 40));
        f.memory_bytes = static_cast<uint64_t>(v);
      } else if (name == "cpu_seconds") {
        HF_ASSIGN_OR_RETURN(int64_t v, Int(key, node, 1, 86400));
        f.cpu_seconds = static_cast<uint64_t>(v);
      } else if (name == "open_files") {
        HF_ASSIGN_OR_RETURN(int64_t v, Int(key, node, 32, 1048576));
        f.open_files = static_cast<uint64_t>(v);
      } else if (name == "chain") {
        const auto* arr = node.as_array();
        if (!arr) return Error(key, "must be an array of tables ([[filters.chain]])", node);
        f.chain.clear();
        for (size_t i = 0; i < arr->size(); ++i) {
          const toml::table* step = (*arr)[i].as_table();
          if (!step) return Error(key, "must be an array of tables ([[filters.chain]])", (*arr)[i]);
          f.chain.emplace_back();
          HF_RETURN_IF_ERROR(Step(*step, key + "[" + std::to_string(i) + "]", f.chain.back()));
        }
      } else {
        return Status::Invalid((node.is_table() ? "unknown table " : "unknown key ") + Quote(key) + Where(source, node));
      }
    }
    return Status::Ok();
  }
};

// Applies every entry of `table` (at dotted `prefix`) to `config`, failing on
// the first key the table does not know.
Status ApplyTable(const toml::table& table, const std::string& prefix, std::string_view source, Config& config) {
  for (const auto& [k, node] : table) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (key == "filters") {
      const toml::table* sub = node.as_table();
      if (!sub) return Status::Invalid("key " + Quote(key) + " must be a table" + Where(source, node));
      HF_RETURN_IF_ERROR(FilterReader{source}.Filters(*sub, config.filters));
    } else if (const KeySpec* spec = FindKey(key)) {
      HF_RETURN_IF_ERROR(std::visit(Applier{config, key, node, source}, spec->type));
    } else if (IsKnownTable(key)) {
      const toml::table* sub = node.as_table();
      if (!sub) return Status::Invalid("key " + Quote(key) + " must be a table" + Where(source, node));
      HF_RETURN_IF_ERROR(ApplyTable(*sub, key, source, config));
    } else {
      return Status::Invalid((node.is_table() ? "unknown table " : "unknown key ") + Quote(key) +
                             Where(source, node));
    }
  }
  return Status::Ok();
}

}  // namespace

Config DefaultConfig() {
  Config c;
  char buf[HOST_NAME_MAX + 1] = {};
  if (gethostname(buf, sizeof buf - 1) == 0) c.hostname = buf;
  // A hostname that would need escaping in Maildir names gets '_' instead.
  for (char& ch : c.hostname) {
    if (!HostnameByteOk(ch)) ch = '_';
  }
  if (c.hostname.empty()) c.hostname = "localhost";
  c.lmtp.local_domains = {"localhost"};
  if (c.hostname != "localhost" && CheckDomain(c.hostname).ok()) c.lmtp.local_domains.push_back(c.hostname);
  return c;
}

Result<Config> ParseConfig(std::string_view toml_text, std::string_view source_name) {
  toml::table table;
  try {
    table = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    return Status::Invalid("syntax error in " + std::string(source_name) + " at line " + std::to_string(b.line) +
                           ", column " + std::to_string(b.column) + ": " + std::string(e.description()));
  } catch (const std::exception& e) {
    return Status::Invalid("cannot parse " + std::string(source_name) + ": " + e.what());
  }
  Config config = DefaultConfig();
  HF_RETURN_IF_ERROR(ApplyTable(table, "", source_name, config));
  return config;
}

Result<Config> LoadConfig(Fs& fs, const std::string& path) {
  auto text = fs.ReadFile(path);
  if (!text.ok()) {
    const Status& s = text.status();
    if (s.kind() == Status::Kind::kNotFound) return Status::NotFound("config file " + path + " does not exist");
    return s;
  }
  return ParseConfig(*text, path);
}

Result<Config> ResolveConfig(Fs& fs, const std::string& data_dir, const std::string& explicit_path) {
  if (!explicit_path.empty()) return LoadConfig(fs, explicit_path);
  Result<Config> config = LoadConfig(fs, JoinPath(data_dir, kConfigFileName));
  if (!config.ok() && config.status().kind() == Status::Kind::kNotFound) return DefaultConfig();
  return config;
}

}  // namespace holdfast
