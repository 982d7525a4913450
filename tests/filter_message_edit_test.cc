#include "filter/message_edit.h"

#include <gtest/gtest.h>

namespace holdfast {
namespace {

TEST(FilterMessageEditTest, PrependKeepsTheLineEnding) {
  EXPECT_EQ(PrependHeaders("Subject: a\r\n\r\nbody\r\n", {{"X-A", "1"}, {"X-B", "2"}}),
            "X-A: 1\r\nX-B: 2\r\nSubject: a\r\n\r\nbody\r\n");
  EXPECT_EQ(PrependHeaders("Subject: a\n\nbody\n", {{"X-A", "1"}}), "X-A: 1\nSubject: a\n\nbody\n");
  // A fold in a value is written in the message's ending.
  EXPECT_EQ(PrependHeaders("S: a\r\n\r\n", {{"X-R", "one\n\ttwo"}}), "X-R: one\r\n\ttwo\r\nS: a\r\n\r\n");
  EXPECT_EQ(PrependHeaders("S: a\n\n", {{"X-R", "one\r\n two"}}), "X-R: one\n two\nS: a\n\n");
  EXPECT_EQ(PrependHeaders("", {{"X-A", "1"}}), "X-A: 1\n");
}

TEST(FilterMessageEditTest, SetSubject) {
  EXPECT_EQ(SetSubject("From: a\r\nSubject: old\r\nTo: b\r\n\r\nSubject: in the body\r\n", "*** SPAM *** old"),
            "From: a\r\nSubject: *** SPAM *** old\r\nTo: b\r\n\r\nSubject: in the body\r\n");
  // Folded: the continuation lines go with it.
  EXPECT_EQ(SetSubject("subject: a long\n  folded\tsubject\nTo: b\n\nbody\n", "new"), "Subject: new\nTo: b\n\nbody\n");
  // None in the header section (one in the body does not count): one on top.
  EXPECT_EQ(SetSubject("From: a\r\n\r\nSubject: x\r\n", "new"), "Subject: new\r\nFrom: a\r\n\r\nSubject: x\r\n");
  EXPECT_EQ(SetSubject("From: a\n\n", "bad\r\nInjected: yes"), "Subject: bad  Injected: yes\nFrom: a\n\n");
}

TEST(FilterMessageEditTest, RemoveHeader) {
  EXPECT_EQ(RemoveHeader("X-Spam: forged\n\tmore\nFrom: a\nx-spam: again\n\nX-Spam: body\n", "X-Spam"),
            "From: a\n\nX-Spam: body\n");
  EXPECT_EQ(RemoveHeader("From: a\r\n\r\n", "X-Spam"), "From: a\r\n\r\n");
}

TEST(FilterMessageEditTest, CheckHeaderField) {
  EXPECT_TRUE(CheckHeaderField("X-Scanned", "yes").ok());
  EXPECT_TRUE(CheckHeaderField("X-Scanned", "").ok());
  EXPECT_TRUE(CheckHeaderField("X-Folded", "a\r\n\tb").ok());
  EXPECT_FALSE(CheckHeaderField("", "v").ok());
  EXPECT_FALSE(CheckHeaderField("X Space", "v").ok());
  EXPECT_FALSE(CheckHeaderField("X:Colon", "v").ok());
  EXPECT_FALSE(CheckHeaderField(std::string(77, 'X'), "v").ok());
  EXPECT_FALSE(CheckHeaderField("X-A", "a\nInjected: 1").ok());
  EXPECT_FALSE(CheckHeaderField("X-A", "a\rb").ok());
  EXPECT_FALSE(CheckHeaderField("X-A", "a\n").ok());
  EXPECT_FALSE(CheckHeaderField("X-A", std::string("a\0b", 3)).ok());
  EXPECT_FALSE(CheckHeaderField("X-A", std::string(1000, 'v')).ok());
  EXPECT_FALSE(CheckHeaderField("X-A", std::string(5000, 'v')).ok());
}

TEST(FilterMessageEditTest, CheckFolderName) {
  for (const char* good : {"Junk", "Spam.2024", "a-b_c", "X"}) EXPECT_TRUE(CheckFolderName(good).ok()) << good;
  for (const char* bad : {"", ".Junk", "Junk.", "a..b", "../etc", "a/b", "sp ace", "ü"})
    EXPECT_FALSE(CheckFolderName(bad).ok()) << bad;
  EXPECT_TRUE(CheckFolderName(std::string(64, 'f')).ok());
  EXPECT_FALSE(CheckFolderName(std::string(65, 'f')).ok());
}

TEST(FilterMessageEditTest, EscapeLine) {
  EXPECT_EQ(EscapeLine("a\tb\r\n\x01\\", 80), "a\\tb\\r\\n\\x01\\\\");
  EXPECT_EQ(EscapeLine(std::string(100, 'x'), 10), std::string(10, 'x') + "...");
}

}  // namespace
}  // namespace holdfast
