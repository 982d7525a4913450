#include "users/users_file.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "fs/sim_fs.h"
#include "users/password.h"

namespace holdfast {
namespace {

#define EXPECT_CONTAINS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

UserName U(std::string_view s) { return UserName::Parse(s).value(); }

constexpr char kHashA[] = "{CRYPT}$y$j9T$aaaa$bbbb";
constexpr char kHashB[] = "{CRYPT}$y$j9T$cccc$dddd";

// ---------------------------------------------------------------- Parse

Status ParseStatus(std::string_view text) { return UsersFile::Parse(text).status(); }

TEST(UsersFileParseTest, Empty) {
  auto r = UsersFile::Parse("");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  r = UsersFile::Parse("# only a comment\n\n   \n\t# indented comment\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->empty());
}

TEST(UsersFileParseTest, Lines) {
  auto r = UsersFile::Parse(
      "# users\n"
      "alice:{CRYPT}$y$j9T$aaaa$bbbb::::::\n"
      "\n"
      "Bob:{SHA512-CRYPT}$6$salt$hash\r\n"             // CRLF, upper case folded
      "carol:{CRYPT}$y$x:1000:1000::/home/carol::userdb_quota=1G\n"
      "dave:{CRYPT}$y$z:");                             // no final newline
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].name.str(), "alice");
  EXPECT_EQ((*r)[0].password_hash, kHashA);
  EXPECT_EQ((*r)[0].other_fields, "") << "all-empty fields are no fields: Format writes them back the same";
  EXPECT_EQ((*r)[1].name.str(), "bob");
  EXPECT_EQ((*r)[1].password_hash, "{SHA512-CRYPT}$6$salt$hash");
  EXPECT_EQ((*r)[1].other_fields, "");
  EXPECT_EQ((*r)[2].other_fields, "1000:1000::/home/carol::userdb_quota=1G");
  EXPECT_EQ((*r)[3].name.str(), "dave");
  EXPECT_EQ((*r)[3].password_hash, "{CRYPT}$y$z");
}

TEST(UsersFileParseTest, FormatIsDovecotPasswdFile) {
  std::vector<UserRecord> recs = {{U("alice"), kHashA, ""},
                                  {U("carol"), "{CRYPT}$y$x", "1000:1000::/home/carol::"}};
  std::string text = UsersFile::Format(recs);
  EXPECT_EQ(text,
            "alice:{CRYPT}$y$j9T$aaaa$bbbb::::::\n"
            "carol:{CRYPT}$y$x:1000:1000::/home/carol::\n");
  auto back = UsersFile::Parse(text);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(UsersFile::Format(*back), text);
  EXPECT_EQ(UsersFile::Format({}), "");
}

TEST(UsersFileParseTest, BadLinesNameTheLine) {
  struct Case {
    std::string text;
    std::string want;
  };
  const Case cases[] = {
      {"alice\n", "line 1: missing ':' after the user name"},
      {"alice:" + std::string(kHashA) + "\nbob\n", "line 2: missing ':'"},
      {"# c\n:hash\n", "line 2: empty user name"},
      {"a/b:hash\n", "line 1: user name contains '/'"},
      {"../x:hash\n", "line 1: user name"},
      {"a+b:hash\n", "line 1: user name contains '+'"},
      {" alice:hash\n", "line 1: user name contains a space"},
      {"alice:\n", "line 1: password hash is empty"},
      {"alice::::::::\n", "line 1: password hash is empty"},
      {"alice:ha sh\n", "line 1: password hash contains"},
      {"\n\nalice:h\x01\n", "line 3: password hash contains"},
      {std::string("alice:h\0x\n", 10), "line 1: contains a NUL byte"},
      {"alice:h\rx\n", "line 1: contains a carriage return"},
      {"alice:h\nbob:h\nAlice:h\n", "line 3: duplicate user 'alice' (first on line 1)"},
      {"\xff\xfe:h\n", "line 1: user name contains non-ASCII byte 0xff"},
  };
  for (const Case& c : cases) {
    Status s = ParseStatus(c.text);
    EXPECT_EQ(s.kind(), Status::Kind::kCorrupt) << c.text;
    EXPECT_CONTAINS(s.message(), c.want);
  }
}

TEST(UsersFileParseTest, BinaryGarbageNeverCrashes) {
  std::mt19937_64 rng(42);
  const std::string alphabet = std::string("a:\n\r#$ {}/.\0\xff", 14);
  for (int i = 0; i < 20000; ++i) {
    std::string text(rng() % 64, '\0');
    for (char& c : text) c = (i % 2) ? static_cast<char>(rng()) : alphabet[rng() % alphabet.size()];
    auto r = UsersFile::Parse(text);
    if (r.ok()) {
      // Whatever parses must format to something that parses the same.
      auto again = UsersFile::Parse(UsersFile::Format(*r));
      ASSERT_TRUE(again.ok()) << again.status().ToString();
      EXPECT_EQ(*again, *r);
    } else {
      EXPECT_EQ(r.status().kind(), Status::Kind::kCorrupt);
      EXPECT_EQ(r.status().message().rfind("line ", 0), 0u) << r.status().message();
    }
  }
}

// ---------------------------------------------------------------- on an Fs

// Runs each case on SimFs and on the real file system in a temp dir.
class UsersFileTest : public ::testing::TestWithParam<bool /*posix*/> {
 protected:
  void SetUp() override {
    if (GetParam()) {
      std::string tmpl = (std::filesystem::temp_directory_path() / "holdfast-users-XXXXXX").string();
      ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
      tmp_ = tmpl;
      fs_ = &PosixFs();
      data_ = JoinPath(tmp_, "data");
    } else {
      sim_ = std::make_unique<SimFs>();
      fs_ = sim_.get();
      data_ = "/data";
    }
    ASSERT_TRUE(fs_->MkDir(data_).ok());
  }
  void TearDown() override {
    if (!tmp_.empty()) std::filesystem::remove_all(tmp_);
  }
  void WriteFile(const std::string& name, std::string_view text) {
    auto f = fs_->CreateExclusive(JoinPath(data_, name));
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_TRUE((*f)->Append(text).ok());
  }
  std::string ReadUsers() {
    auto r = fs_->ReadFile(JoinPath(data_, "users"));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : "";
  }

  std::unique_ptr<SimFs> sim_;
  std::string tmp_;
  Fs* fs_ = nullptr;
  std::string data_;
};

INSTANTIATE_TEST_SUITE_P(UsersFile, UsersFileTest, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "Posix" : "Sim"; });

TEST_P(UsersFileTest, RoundTrip) {
  UsersFile users(*fs_, data_);
  auto list = users.List();
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  EXPECT_TRUE(list->empty());  // no file yet
  auto found = users.Find(U("alice"));
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());

  ASSERT_TRUE(users.Add(U("alice"), kHashA).ok());
  ASSERT_TRUE(users.Add(U("bob"), kHashB).ok());
  EXPECT_EQ(users.Add(U("ALICE"), kHashB).kind(), Status::Kind::kExists);
  EXPECT_EQ(ReadUsers(), "alice:" + std::string(kHashA) + "::::::\nbob:" + std::string(kHashB) + "::::::\n");

  found = users.Find(U("bob"));
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->password_hash, kHashB);

  ASSERT_TRUE(users.SetPassword(U("bob"), kHashA).ok());
  EXPECT_EQ((*users.Find(U("bob")))->password_hash, kHashA);
  EXPECT_EQ(users.SetPassword(U("carol"), kHashA).kind(), Status::Kind::kNotFound);

  ASSERT_TRUE(users.Remove(U("alice")).ok());
  EXPECT_EQ(users.Remove(U("alice")).kind(), Status::Kind::kNotFound);
  list = users.List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name.str(), "bob");

  ASSERT_TRUE(users.Remove(U("bob")).ok());
  EXPECT_EQ(ReadUsers(), "");
  auto names = fs_->ReadDir(data_);
  ASSERT_TRUE(names.ok());
  for (const auto& n : *names) EXPECT_NE(n, "users.tmp");
}

TEST_P(UsersFileTest, RealHashesVerify) {
  UsersFile users(*fs_, data_);
  auto h = HashPassword("s3cret");
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(users.Add(U("alice"), *h).ok());
  auto found = users.Find(U("alice"));
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_TRUE(VerifyPassword("s3cret", (*found)->password_hash));
  EXPECT_FALSE(VerifyPassword("s3cre", (*found)->password_hash));
}

TEST_P(UsersFileTest, RejectsHashesThatBreakTheFormat) {
  UsersFile users(*fs_, data_);
  for (std::string_view bad : {"", "a:b", "a\nb", "a b", "a\rb"}) {
    EXPECT_EQ(users.Add(U("alice"), bad).kind(), Status::Kind::kInvalid) << bad;
  }
  ASSERT_TRUE(users.Add(U("alice"), kHashA).ok());
  EXPECT_EQ(users.SetPassword(U("alice"), "x:y").kind(), Status::Kind::kInvalid);
}

TEST_P(UsersFileTest, KeepsCommentsAndOtherFields) {
  WriteFile("users",
            "# managed by holdfast\n"
            "alice:{CRYPT}$y$x:1000:1000::/home/alice::\n"
            "\n"
            "# bob is on leave\n"
            "bob:{CRYPT}$y$y::::::\n");
  UsersFile users(*fs_, data_);
  ASSERT_TRUE(users.SetPassword(U("alice"), kHashA).ok());
  ASSERT_TRUE(users.Remove(U("bob")).ok());
  ASSERT_TRUE(users.Add(U("carol"), kHashB).ok());
  EXPECT_EQ(ReadUsers(),
            "# managed by holdfast\n"
            "alice:" + std::string(kHashA) + ":1000:1000::/home/alice::\n"
            "\n"
            "# bob is on leave\n"
            "carol:" + std::string(kHashB) + "::::::\n");
}

TEST_P(UsersFileTest, CorruptFileIsReportedAndLeftAlone) {
  const std::string bad = "alice:" + std::string(kHashA) + "\nthis line is bad\n";
  WriteFile("users", bad);
  UsersFile users(*fs_, data_);
  Status s = users.Add(U("bob"), kHashB);
  EXPECT_EQ(s.kind(), Status::Kind::kCorrupt);
  EXPECT_CONTAINS(s.message(), "users: line 2: missing ':'");
  EXPECT_EQ(users.List().status().kind(), Status::Kind::kCorrupt);
  EXPECT_EQ(users.Find(U("alice")).status().kind(), Status::Kind::kCorrupt);
  EXPECT_EQ(ReadUsers(), bad);
}

TEST_P(UsersFileTest, LeftoverTmpIsReplaced) {
  WriteFile("users.tmp", "half-written junk");
  UsersFile users(*fs_, data_);
  ASSERT_TRUE(users.Add(U("alice"), kHashA).ok());
  EXPECT_EQ(ReadUsers(), "alice:" + std::string(kHashA) + "::::::\n");
  EXPECT_EQ(fs_->Stat(JoinPath(data_, "users.tmp")).status().kind(), Status::Kind::kNotFound);
}

// ---------------------------------------------------------------- crash points

struct CrashCase {
  const char* name;
  std::string initial;  // DATA/users before; empty = no file
  std::function<Status(UsersFile&)> op;
  std::string after;  // DATA/users when the op completes
};

// Crashes `op` after every mutating operation and checks every state the
// machine could reboot into: DATA/users is exactly the old or the new
// content (or absent when there was no old file), parses, and the next
// mutation works.
void RunCrashPoints(const CrashCase& c) {
  SCOPED_TRACE(c.name);
  const std::string users_path = "/data/users";
  int crash_points = 0, states = 0;
  for (uint64_t n = 1;; ++n) {
    ASSERT_LT(n, 1000u) << "operation never completes";
    SimFs fs;
    ASSERT_TRUE(fs.MkDir("/data").ok());
    if (!c.initial.empty()) {
      auto f = fs.CreateExclusive(users_path);
      ASSERT_TRUE(f.ok());
      ASSERT_TRUE((*f)->Append(c.initial).ok());
    }
    fs.SyncEverything();
    fs.SetCrashAfter(n);
    UsersFile users(fs, "/data");
    Status s = c.op(users);
    if (!fs.crashed()) {
      ASSERT_TRUE(s.ok()) << s.ToString();
      auto text = fs.ReadFile(users_path);
      ASSERT_TRUE(text.ok());
      EXPECT_EQ(*text, c.after);
      // Done means durable: a power loss right now keeps the new file.
      auto durable = fs.AfterCrash(CrashChoice{})->ReadFile(users_path);
      ASSERT_TRUE(durable.ok()) << durable.status().ToString();
      EXPECT_EQ(*durable, c.after);
      break;
    }
    ++crash_points;
    for (const CrashChoice& choice : fs.ChoicesToTest(n)) {
      SCOPED_TRACE("crash after op " + std::to_string(n) + ", " + choice.Describe());
      ++states;
      std::unique_ptr<SimFs> after = fs.AfterCrash(choice);
      auto text = after->ReadFile(users_path);
      bool is_new = false;
      if (!text.ok()) {
        ASSERT_EQ(text.status().kind(), Status::Kind::kNotFound) << text.status().ToString();
        ASSERT_TRUE(c.initial.empty()) << "users file vanished";
      } else {
        ASSERT_TRUE(*text == c.initial || *text == c.after) << "users file is neither old nor new:\n" << *text;
        is_new = *text == c.after && c.after != c.initial;
        ASSERT_TRUE(UsersFile::Parse(*text).ok());
      }
      UsersFile again(*after, "/data");
      Status s2 = again.Add(U("zed"), kHashB);
      ASSERT_TRUE(s2.ok()) << s2.ToString();
      auto found = again.Find(U("zed"));
      ASSERT_TRUE(found.ok() && found->has_value());
      auto text2 = after->ReadFile(users_path);
      ASSERT_TRUE(text2.ok());
      EXPECT_EQ(*text2, (is_new ? c.after : c.initial) + "zed:" + kHashB + "::::::\n");
    }
  }
  EXPECT_GT(crash_points, 3);
  EXPECT_GT(states, crash_points);
}

const std::string kAlice = "alice:" + std::string(kHashA) + "::::::\n";
const std::string kBob = "bob:" + std::string(kHashB) + "::::::\n";

TEST(UsersFileCrashTest, AddToExistingFile) {
  RunCrashPoints({"add", "# c\n" + kAlice, [](UsersFile& u) { return u.Add(U("bob"), kHashB); },
                  "# c\n" + kAlice + kBob});
}

TEST(UsersFileCrashTest, AddFirstUser) {
  RunCrashPoints({"first", "", [](UsersFile& u) { return u.Add(U("alice"), kHashA); }, kAlice});
}

TEST(UsersFileCrashTest, SetPassword) {
  RunCrashPoints({"passwd", kAlice + kBob, [](UsersFile& u) { return u.SetPassword(U("alice"), kHashB); },
                  "alice:" + std::string(kHashB) + "::::::\n" + kBob});
}

TEST(UsersFileCrashTest, Remove) {
  RunCrashPoints({"remove", kAlice + kBob, [](UsersFile& u) { return u.Remove(U("alice")); }, kBob});
}

TEST(UsersFileCrashTest, WithLeftoverTmp) {
  // A previous crash left users.tmp; the next Add must cope at every point.
  SCOPED_TRACE("leftover");
  for (uint64_t n = 1;; ++n) {
    ASSERT_LT(n, 1000u);
    SimFs fs;
    ASSERT_TRUE(fs.MkDir("/data").ok());
    for (auto [name, text] : {std::pair<const char*, std::string>{"/data/users", kAlice},
                              {"/data/users.tmp", "junk"}}) {
      auto f = fs.CreateExclusive(name);
      ASSERT_TRUE(f.ok());
      ASSERT_TRUE((*f)->Append(text).ok());
    }
    fs.SyncEverything();
    fs.SetCrashAfter(n);
    Status s = UsersFile(fs, "/data").Add(U("bob"), kHashB);
    if (!fs.crashed()) {
      ASSERT_TRUE(s.ok()) << s.ToString();
      break;
    }
    for (const CrashChoice& choice : fs.ChoicesToTest(n)) {
      auto after = fs.AfterCrash(choice);
      auto text = after->ReadFile("/data/users");
      ASSERT_TRUE(text.ok());
      ASSERT_TRUE(*text == kAlice || *text == kAlice + kBob) << choice.Describe() << "\n" << *text;
      ASSERT_TRUE(UsersFile(*after, "/data").Add(U("zed"), kHashA).ok()) << choice.Describe();
    }
  }
}

}  // namespace
}  // namespace holdfast
