#include "config/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace holdfast {
namespace {

// Status message of a failing parse; fails the test if it parses.
std::string ParseError(std::string_view text) {
  auto r = ParseConfig(text, "holdfast.toml");
  EXPECT_FALSE(r.ok()) << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.status().kind(), Status::Kind::kInvalid);
  return r.status().message();
}

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

TEST(ConfigTest, Defaults) {
  Config c = DefaultConfig();
  EXPECT_FALSE(c.hostname.empty());
  EXPECT_EQ(c.hostname.find('/'), std::string::npos);
  EXPECT_EQ(c.delivery.max_message_size, 52428800);
  EXPECT_EQ(c.delivery.lock_timeout_ms, 30000);
  EXPECT_TRUE(c.delivery.add_return_path);
  EXPECT_TRUE(c.delivery.add_delivered_to);
  EXPECT_EQ(c.delivery.batch_sync, "syncfs");
  EXPECT_TRUE(c.delivery.batch_syncfs());
  EXPECT_EQ(c.log.level, "info");

  auto empty = ParseConfig("", "holdfast.toml");
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(empty->hostname, c.hostname);
  EXPECT_EQ(empty->delivery.max_message_size, 52428800);
  // Empty known tables are fine.
  EXPECT_TRUE(ParseConfig("[delivery]\n[log]\n# nothing\n", "x").ok());
}

TEST(ConfigTest, FullFile) {
  auto r = ParseConfig(R"(
hostname = "mx1.example.org"

[delivery]
max_message_size = 1048576
lock_timeout_ms = 5000
add_return_path = false
add_delivered_to = false
batch_sync = "fdatasync"

[log]
level = "debug"
)",
                       "holdfast.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->hostname, "mx1.example.org");
  EXPECT_EQ(r->delivery.max_message_size, 1048576);
  EXPECT_EQ(r->delivery.lock_timeout_ms, 5000);
  EXPECT_FALSE(r->delivery.add_return_path);
  EXPECT_FALSE(r->delivery.add_delivered_to);
  EXPECT_FALSE(r->delivery.batch_syncfs());
  EXPECT_EQ(r->log.level, "debug");
}

TEST(ConfigTest, DottedAndInlineKeys) {
  auto r = ParseConfig("delivery.lock_timeout_ms = 7\nlog = { level = \"error\" }\n", "x");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->delivery.lock_timeout_ms, 7);
  EXPECT_EQ(r->log.level, "error");
}

TEST(ConfigTest, BatchSyncIsOneOfTwo) {
  auto bad = ParseConfig("[delivery]\nbatch_sync = \"none\"\n", "x");
  ASSERT_FALSE(bad.ok());
  EXPECT_CONTAINS(bad.status().message(), "batch_sync");
}

TEST(ConfigTest, Limits) {
  EXPECT_TRUE(ParseConfig("[delivery]\nmax_message_size = 1072693248\n", "x").ok());
  EXPECT_TRUE(ParseConfig("[delivery]\nmax_message_size = 1\n", "x").ok());
  EXPECT_TRUE(ParseConfig("[delivery]\nlock_timeout_ms = 600000\n", "x").ok());
  for (auto level : {"debug", "info", "warn", "error"}) {
    EXPECT_TRUE(ParseConfig(std::string("[log]\nlevel = \"") + level + "\"\n", "x").ok()) << level;
  }
}

TEST(ConfigTest, Pop3AuthCache) {
  Config d = DefaultConfig();
  EXPECT_EQ(d.pop3.auth_cache_ttl_ms, 3600000);
  EXPECT_EQ(d.pop3.auth_cache_size, 100000);
  auto r = ParseConfig("[pop3]\nauth_cache_ttl_ms = 0\nauth_cache_size = 5\n", "x");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->pop3.auth_cache_ttl_ms, 0);  // 0: no cache
  EXPECT_EQ(r->pop3.auth_cache_size, 5);
  EXPECT_CONTAINS(ParseError("[pop3]\nauth_cache_ttl_ms = -1\n"), "from 0 to 86400000");
  EXPECT_CONTAINS(ParseError("[pop3]\nauth_cache_size = 0\n"), "from 1 to 10000000");
}

TEST(ConfigTest, UnknownTopLevelKey) {
  std::string e = ParseError("hostname = \"a\"\nhostnme = \"b\"\n");
  EXPECT_CONTAINS(e, "unknown key 'hostnme' in holdfast.toml");
  EXPECT_CONTAINS(e, "line 2");
}

TEST(ConfigTest, UnknownNestedKey) {
  std::string e = ParseError("[delivery]\nmax_mesage_size = 5\n");
  EXPECT_CONTAINS(e, "unknown key 'delivery.max_mesage_size' in holdfast.toml");
  EXPECT_CONTAINS(e, "line 2");
}

TEST(ConfigTest, UnknownTable) {
  EXPECT_CONTAINS(ParseError("[imap]\nport = 143\n"), "unknown table 'imap'");
  EXPECT_CONTAINS(ParseError("[imap]\n"), "unknown table 'imap'");
  EXPECT_CONTAINS(ParseError("[pop3]\nport = 110\n"), "unknown key 'pop3.port'");
  EXPECT_CONTAINS(ParseError("[delivery.extra]\n"), "unknown table 'delivery.extra'");
  EXPECT_CONTAINS(ParseError("[[log]]\nlevel = \"info\"\n"), "key 'log' must be a table");
  EXPECT_CONTAINS(ParseError("[[servers]]\nx = 1\n"), "unknown key 'servers'");
}

TEST(ConfigTest, WrongType) {
  EXPECT_CONTAINS(ParseError("[delivery]\nmax_message_size = \"50M\"\n"),
                  "key 'delivery.max_message_size' must be an integer from 1 to 1072693248");
  EXPECT_CONTAINS(ParseError("[delivery]\nmax_message_size = 1.5\n"), "must be an integer");
  EXPECT_CONTAINS(ParseError("[delivery]\nadd_return_path = \"yes\"\n"),
                  "key 'delivery.add_return_path' must be true or false");
  EXPECT_CONTAINS(ParseError("hostname = 5\n"), "key 'hostname' must be a string");
  EXPECT_CONTAINS(ParseError("[log]\nlevel = 3\n"), "key 'log.level' must be one of \"debug\", \"info\"");
  EXPECT_CONTAINS(ParseError("delivery = 5\n"), "key 'delivery' must be a table");
  EXPECT_CONTAINS(ParseError("[delivery.max_message_size]\n"), "key 'delivery.max_message_size' must be an integer");
}

TEST(ConfigTest, OutOfRange) {
  std::string e = ParseError("[delivery]\nmax_message_size = 0\n");
  EXPECT_CONTAINS(e, "key 'delivery.max_message_size' must be an integer from 1 to 1072693248 (got 0)");
  EXPECT_CONTAINS(e, "holdfast.toml at line 2");
  EXPECT_CONTAINS(ParseError("[delivery]\nmax_message_size = 2147483649\n"), "(got 2147483649)");
  EXPECT_CONTAINS(ParseError("[delivery]\nmax_message_size = -1\n"), "(got -1)");
  EXPECT_CONTAINS(ParseError("[delivery]\nlock_timeout_ms = 600001\n"), "from 1 to 600000");
  EXPECT_CONTAINS(ParseError("[delivery]\nlock_timeout_ms = 0\n"), "from 1 to 600000");
  EXPECT_CONTAINS(ParseError("[log]\nlevel = \"verbose\"\n"), "(got \"verbose\")");
  EXPECT_CONTAINS(ParseError("hostname = \"\"\n"), "key 'hostname' must be 1 to 253 bytes");
  EXPECT_CONTAINS(ParseError("hostname = \"a/b\"\n"), "key 'hostname' may hold only");
  EXPECT_CONTAINS(ParseError("hostname = \"a:b\"\n"), "key 'hostname' may hold only");
}

TEST(ConfigTest, SyntaxErrorHasLineAndColumn) {
  std::string e = ParseError("hostname = \"a\"\n\n[delivery\nmax_message_size = 5\n");
  EXPECT_CONTAINS(e, "syntax error in holdfast.toml at line 3, column");
  e = ParseError("[delivery]\nmax_message_size = = 5\n");
  EXPECT_CONTAINS(e, "at line 2, column");
  // Duplicate keys are a TOML error too.
  EXPECT_CONTAINS(ParseError("hostname = \"a\"\nhostname = \"b\"\n"), "line 2");
}

TEST(ConfigTest, GarbageNeverThrows) {
  std::string junk;
  for (int i = 0; i < 256; ++i) junk.push_back(static_cast<char>(i));
  EXPECT_FALSE(ParseConfig(junk, "junk").ok());
  EXPECT_FALSE(ParseConfig(std::string("a = \"\xff\"\n"), "junk").ok());
  EXPECT_FALSE(ParseConfig(std::string("a\0b", 3), "junk").ok());
}

// A fresh real directory, removed afterwards.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "holdfast-config-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteFile(Fs& fs, const std::string& path, std::string_view text) {
  auto f = fs.CreateExclusive(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_TRUE((*f)->Append(text).ok());
}

TEST(ConfigTest, ResolvePrecedence) {
  TempDir tmp;
  Fs& fs = PosixFs();
  const std::string data = JoinPath(tmp.path(), "data");
  ASSERT_TRUE(fs.MkDir(data).ok());

  // Nothing: the defaults.
  auto r = ResolveConfig(fs, data, "");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->log.level, "info");
  // A data directory that does not exist yet also means defaults.
  EXPECT_TRUE(ResolveConfig(fs, JoinPath(tmp.path(), "nope"), "").ok());

  // DATA/holdfast.toml when present.
  WriteFile(fs, JoinPath(data, "holdfast.toml"), "[log]\nlevel = \"warn\"\n");
  r = ResolveConfig(fs, data, "");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->log.level, "warn");

  // --config wins over DATA/holdfast.toml.
  const std::string explicit_path = JoinPath(tmp.path(), "other.toml");
  WriteFile(fs, explicit_path, "[log]\nlevel = \"error\"\n");
  r = ResolveConfig(fs, data, explicit_path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->log.level, "error");

  // An explicit file that is missing is an error, not the defaults.
  r = ResolveConfig(fs, data, JoinPath(tmp.path(), "missing.toml"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kNotFound);
  EXPECT_CONTAINS(r.status().message(), "missing.toml");

  // A bad DATA/holdfast.toml is an error naming that file, not the defaults.
  const std::string data2 = JoinPath(tmp.path(), "data2");
  ASSERT_TRUE(fs.MkDir(data2).ok());
  WriteFile(fs, JoinPath(data2, "holdfast.toml"), "[log]\nlevl = \"warn\"\n");
  r = ResolveConfig(fs, data2, "");
  ASSERT_FALSE(r.ok());
  EXPECT_CONTAINS(r.status().message(), "unknown key 'log.levl' in " + JoinPath(data2, "holdfast.toml"));
}

TEST(ConfigTest, FiltersDefaults) {
  Config c = DefaultConfig();
  EXPECT_TRUE(c.filters.chain.empty());
  EXPECT_EQ(c.filters.batch_size, 32u);
  EXPECT_EQ(c.filters.workers, 2u);
  EXPECT_EQ(c.filters.retry_workers, 2u);
  EXPECT_EQ(c.filters.retry_nice, 10);
  EXPECT_EQ(c.filters.max_attempts, 3u);
  EXPECT_EQ(c.filters.tempfail_delay.count(), 60000);
  EXPECT_EQ(c.filters.memory_bytes, 1ull << 30);
  EXPECT_EQ(c.filters.cpu_seconds, 60u);
  EXPECT_EQ(c.filters.open_files, 256u);
  EXPECT_TRUE(ParseConfig("[filters]\n", "x").ok());
}

TEST(ConfigTest, FiltersFull) {
  auto r = ParseConfig(R"(
[filters]
batch_size = 8
workers = 4
retry_workers = 0
retry_nice = 19
max_attempts = 5
tempfail_delay_ms = 1500
memory_bytes = 268435456
cpu_seconds = 10
open_files = 64

[[filters.chain]]
type = "command"
name = "scanner"
command = ["/usr/local/bin/scan", "--stdin", ""]
rewrite = true
timeout_ms = 5000

[[filters.chain]]
type = "rspamd"
address = "[::1]:11333"
on_reject = "quarantine"
junk_folder = "Spam.Auto"
timeout_ms = 2000

[[filters.chain]]
type = "command"
command = ["/bin/true"]
)",
                       "holdfast.toml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const FilterOptions& f = r->filters;
  EXPECT_EQ(f.batch_size, 8u);
  EXPECT_EQ(f.workers, 4u);
  EXPECT_EQ(f.retry_workers, 0u);
  EXPECT_EQ(f.retry_nice, 19);
  EXPECT_EQ(f.max_attempts, 5u);
  EXPECT_EQ(f.tempfail_delay.count(), 1500);
  EXPECT_EQ(f.memory_bytes, 268435456u);
  EXPECT_EQ(f.cpu_seconds, 10u);
  EXPECT_EQ(f.open_files, 64u);
  ASSERT_EQ(f.chain.size(), 3u);
  EXPECT_EQ(f.chain[0].kind, FilterStep::Kind::kCommand);
  EXPECT_EQ(f.chain[0].name, "scanner");
  EXPECT_EQ(f.chain[0].argv, (std::vector<std::string>{"/usr/local/bin/scan", "--stdin", ""}));
  EXPECT_TRUE(f.chain[0].rewrite);
  EXPECT_EQ(f.chain[0].timeout.count(), 5000);
  EXPECT_EQ(f.chain[1].kind, FilterStep::Kind::kRspamd);
  EXPECT_EQ(f.chain[1].name, "rspamd");
  EXPECT_EQ(f.chain[1].rspamd_address, "[::1]:11333");
  EXPECT_TRUE(f.chain[1].reject_to_quarantine);
  EXPECT_EQ(f.chain[1].junk_folder, "Spam.Auto");
  EXPECT_EQ(f.chain[1].timeout.count(), 2000);
  EXPECT_EQ(f.chain[2].name, "command");
  EXPECT_FALSE(f.chain[2].rewrite);
  EXPECT_EQ(f.chain[2].timeout.count(), 30000);

  // Inline form; rspamd defaults.
  auto inl = ParseConfig("filters = { chain = [ { type = \"rspamd\" } ] }\n", "x");
  ASSERT_TRUE(inl.ok()) << inl.status().ToString();
  ASSERT_EQ(inl->filters.chain.size(), 1u);
  EXPECT_EQ(inl->filters.chain[0].rspamd_address, "127.0.0.1:11333");
  EXPECT_FALSE(inl->filters.chain[0].reject_to_quarantine);
  EXPECT_EQ(inl->filters.chain[0].junk_folder, "Junk");
}

TEST(ConfigTest, FiltersErrors) {
  EXPECT_CONTAINS(ParseError("[filters]\nbatch_size = 0\n"),
                  "key 'filters.batch_size' must be an integer from 1 to 1024 (got 0) in holdfast.toml at line 2");
  EXPECT_CONTAINS(ParseError("[filters]\nworkers = 65\n"), "key 'filters.workers' must be an integer from 1 to 64");
  EXPECT_CONTAINS(ParseError("[filters]\nretry_nice = 20\n"), "key 'filters.retry_nice' must be an integer from 0 to 19");
  EXPECT_CONTAINS(ParseError("[filters]\nretry_workers = -1\n"), "key 'filters.retry_workers' must be an integer from 0 to 64");
  EXPECT_CONTAINS(ParseError("[filters]\nmax_attempts = \"3\"\n"), "key 'filters.max_attempts' must be an integer");
  EXPECT_CONTAINS(ParseError("[filters]\nmemory_bytes = 1000\n"), "key 'filters.memory_bytes' must be an integer from");
  EXPECT_CONTAINS(ParseError("[filters]\nbatchsize = 3\n"), "unknown key 'filters.batchsize' in holdfast.toml at line 2");
  EXPECT_CONTAINS(ParseError("filters = 3\n"), "key 'filters' must be a table");
  EXPECT_CONTAINS(ParseError("[filters]\nchain = 3\n"), "key 'filters.chain' must be an array of tables");
  EXPECT_CONTAINS(ParseError("[filters]\nchain = [1]\n"), "key 'filters.chain' must be an array of tables");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ncommand = [\"/bin/true\"]\n"),
                  "key 'filters.chain[0].type' is missing in holdfast.toml at line 1");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"clamav\"\n"),
                  "key 'filters.chain[0].type' must be one of \"command\", \"rspamd\", \"trace\" (got \"clamav\")");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"command\"\n"),
                  "key 'filters.chain[0].command' is missing (required for type \"command\")");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"command\"\ncommand = []\n"),
                  "key 'filters.chain[0].command' must be a non-empty array of strings");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"command\"\ncommand = [\"scan\"]\n"),
                  "key 'filters.chain[0].command' must start with an absolute path (got \"scan\")");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"command\"\ncommand = [\"/bin/x\", 3]\n"),
                  "key 'filters.chain[0].command' must be a string");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"rspamd\"\n[[filters.chain]]\ntype = \"rspamd\"\ncommnd = 1\n"),
                  "unknown key 'filters.chain[1].commnd' in holdfast.toml at line 5");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"rspamd\"\nrewrite = true\n"),
                  "key 'filters.chain[0].rewrite' is not allowed for type \"rspamd\"");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"command\"\ncommand = [\"/bin/true\"]\njunk_folder = \"J\"\n"),
                  "key 'filters.chain[0].junk_folder' is not allowed for type \"command\"");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"trace\"\naddress = \"127.0.0.1:1\"\n"),
                  "key 'filters.chain[0].address' is not allowed for type \"trace\"");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"rspamd\"\non_reject = \"drop\"\n"),
                  "key 'filters.chain[0].on_reject' must be one of \"junk\", \"quarantine\" (got \"drop\")");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"rspamd\"\njunk_folder = \"../x\"\n"),
                  "key 'filters.chain[0].junk_folder' folder name may hold only");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"rspamd\"\naddress = \"localhost\"\n"),
                  "key 'filters.chain[0].address' must be ADDR:PORT");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"rspamd\"\naddress = \"\"\n"),
                  "key 'filters.chain[0].address' must be HOST:PORT");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"rspamd\"\ntimeout_ms = 0\n"),
                  "key 'filters.chain[0].timeout_ms' must be an integer from 1 to 3600000 (got 0)");
  EXPECT_CONTAINS(ParseError("[[filters.chain]]\ntype = \"rspamd\"\nname = \"my scanner\"\n"),
                  "key 'filters.chain[0].name' may hold only letters");
}

TEST(ConfigTest, LoadConfigMissing) {
  TempDir tmp;
  auto r = LoadConfig(PosixFs(), JoinPath(tmp.path(), "none.toml"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().kind(), Status::Kind::kNotFound);
}

}  // namespace
}  // namespace holdfast
