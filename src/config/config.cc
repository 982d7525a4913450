#include "config/config.h"

#include <unistd.h>

#include <climits>
#include <toml++/toml.h>
#include <variant>
#include <vector>

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
Status CheckDomain(std::string_view v);
#define HF_INT(name, expr, lo, hi) {name, IntKey{+[](Config& c) -> int64_t& { return c.expr; }, lo, hi}}

const std::vector<KeySpec>& Keys() {
  static const std::vector<KeySpec> keys = {
      {"hostname", StringKey{+[](Config& c) -> std::string& { return c.hostname; }, {}, &CheckHostname}},
      {"delivery.max_message_size",
       IntKey{+[](Config& c) -> int64_t& { return c.delivery.max_message_size; }, 1, (int64_t{1} << 30) - (int64_t{1} << 20)}},
      {"delivery.lock_timeout_ms",
       IntKey{+[](Config& c) -> int64_t& { return c.delivery.lock_timeout_ms; }, 1, 600000}},
      {"delivery.add_return_path", BoolKey{+[](Config& c) -> bool& { return c.delivery.add_return_path; }}},
      {"delivery.add_delivered_to", BoolKey{+[](Config& c) -> bool& { return c.delivery.add_delivered_to; }}},
      {"log.level",
       StringKey{+[](Config& c) -> std::string& { return c.log.level; }, {"debug", "info", "warn", "error"}}},
      {"log.file", StringKey{+[](Config& c) -> std::string& { return c.log.file; }, {}}},
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
      {"pop3.listen", StringKey{+[](Config& c) -> std::string& { return c.pop3.listen; }, {}, &CheckListen}},
      {"pop3.tls_listen", StringKey{+[](Config& c) -> std::string& { return c.pop3.tls_listen; }, {}, &CheckListen}},
      {"pop3.allow_plaintext_auth", BoolKey{+[](Config& c) -> bool& { return c.pop3.allow_plaintext_auth; }}},
      HF_INT("pop3.max_connections", pop3.max_connections, 1, 100000),
      HF_INT("pop3.max_connections_per_ip", pop3.max_connections_per_ip, 1, 100000),
      HF_INT("pop3.idle_timeout_ms", pop3.idle_timeout_ms, 1000, 86400000),
      HF_INT("pop3.auth_failure_delay_ms", pop3.auth_failure_delay_ms, 0, 60000),
      {"tls.cert_file", StringKey{+[](Config& c) -> std::string& { return c.tls.cert_file; }, {}}},
      {"tls.key_file", StringKey{+[](Config& c) -> std::string& { return c.tls.key_file; }, {}}},
      HF_INT("spool.segment_bytes", spool.segment_bytes, 1 << 20, 1 << 30),
      HF_INT("spool.max_backlog_messages", spool.max_backlog_messages, 1, 10000000),
      HF_INT("spool.max_backlog_bytes", spool.max_backlog_bytes, 1 << 20, int64_t{1} << 40),
      HF_INT("spool.congestion_wait_ms", spool.congestion_wait_ms, 0, 600000),
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

// Applies every entry of `table` (at dotted `prefix`) to `config`, failing on
// the first key the table does not know.
Status ApplyTable(const toml::table& table, const std::string& prefix, std::string_view source, Config& config) {
  for (const auto& [k, node] : table) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const KeySpec* spec = FindKey(key)) {
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
