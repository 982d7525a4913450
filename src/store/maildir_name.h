// Maildir file names (cr.yp.to/proto/maildir.html + Maildir++ and Dovecot's
// ",S=" / ",W=" extensions). holdfast's own names are built from a MessageId,
// never from stat+sleep, and carry the UID so a lost index can be
// rebuilt with the same UIDs:
//
//   <unix-secs>.<MessageId>.<host>,S=<size>,W=<crlf-size>,U=<uid>[:2,<flags>]
//
// Everything before ":" is the base name: unique in the mailbox and never
// changed by other Maildir tools, which only move new/ -> cur/ and edit flags.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/message_id.h"

namespace holdfast {

struct MaildirName {
  std::string base;              // up to ':' (or the whole name)
  std::string flags;             // letters after ":2,", as found
  std::optional<uint64_t> size;  // ,S=
  std::optional<uint64_t> vsize; // ,W=
  std::optional<uint32_t> uid;   // ,U= (holdfast's own names)
  std::optional<MessageId> id;   // holdfast's own names only

  // The id holdfast uses for this message: its own, or one derived from the
  // base name for mail another tool wrote.
  MessageId Identity() const { return id ? *id : MessageId::ForForeignName(base); }
};

// nullopt for names that are not messages: dot files, empty names.
std::optional<MaildirName> ParseMaildirName(std::string_view name);

// Host part of a Maildir name: '/' ':' ',' and '.' cannot appear in it.
std::string SanitizeHostForMaildir(std::string_view host);

// The name a delivery gets in tmp/ while it is written (size unknown yet),
// and the name it is renamed to in new/ once whole.
std::string TmpName(int64_t unix_secs, const MessageId& id, std::string_view host);
std::string FinalName(std::string_view tmp_name, uint64_t size, uint64_t vsize, uint32_t uid);

}  // namespace holdfast
