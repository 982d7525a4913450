// The filter worker protocol (filter/protocol.h): the daemon decodes what an
// untrusted worker wrote, the worker what the daemon wrote. Any bytes must
// decode to verdicts/inputs within bounds or a clear error, never a crash,
// and what decodes must survive a round trip through the encoders.
//
// Every input is tried twice: as the raw stream (the seeds in
// fuzz/corpus/fuzz_filter_protocol are real streams), and as a list of
// records `type-bit:u8 len:u16le payload[len]` that the harness frames with
// valid checksums -- so mutations reach the payload decoders instead of
// dying on a CRC.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "filter/protocol.h"
#include "util/record_log.h"

namespace {

using holdfast::Verdict;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

bool SameVerdict(const Verdict& a, const Verdict& b) {
  return a.kind == b.kind && a.folder == b.folder && a.rewritten == b.rewritten && a.body == b.body &&
         a.reason == b.reason && a.trail == b.trail;
}

void CheckInputs(std::string_view bytes) {
  auto in = holdfast::DecodeFilterInputs(bytes);
  if (!in.ok()) {
    Check(in.status().kind() == holdfast::Status::Kind::kCorrupt);
    return;
  }
  std::string again;
  for (const auto& m : *in) {
    Check(m.client.size() <= holdfast::kMaxEnvelopeField && m.helo.size() <= holdfast::kMaxEnvelopeField &&
          m.mail_from.size() <= holdfast::kMaxEnvelopeField && m.rcpts.size() <= holdfast::kMaxFilterRecipients);
    Check(m.body.size() <= bytes.size());
    again += holdfast::EncodeFilterInput(m);
  }
  auto re = holdfast::DecodeFilterInputs(again);
  Check(re.ok() && re->size() == in->size());
  for (size_t i = 0; i < in->size(); ++i) {
    const auto& a = (*in)[i];
    const auto& b = (*re)[i];
    Check(a.id == b.id && a.client == b.client && a.helo == b.helo && a.mail_from == b.mail_from &&
          a.rcpts == b.rcpts && a.body == b.body);
  }
}

void CheckVerdicts(std::string_view bytes, size_t expected) {
  holdfast::VerdictStream s = holdfast::DecodeVerdicts(bytes, expected);
  Check(s.verdicts.size() <= expected);
  Check(s.complete == s.error.empty());
  Check(!s.complete || s.verdicts.size() == expected);
  std::string again;
  for (uint32_t i = 0; i < s.verdicts.size(); ++i) {
    const Verdict& v = s.verdicts[i];
    Check(static_cast<uint8_t>(v.kind) <= static_cast<uint8_t>(Verdict::Kind::kFailed));
    Check(v.folder.size() <= holdfast::kMaxFolderName && v.reason.size() <= holdfast::kMaxVerdictText &&
          v.trail.size() <= holdfast::kMaxVerdictText);
    Check(v.rewritten || v.body.empty());
    Check(v.kind == Verdict::Kind::kDeliver || (v.folder.empty() && !v.rewritten));
    again += holdfast::EncodeVerdict(i, v);
  }
  // The prefix that decoded is a complete stream of its own.
  holdfast::VerdictStream re = holdfast::DecodeVerdicts(again, s.verdicts.size());
  Check(re.complete && re.verdicts.size() == s.verdicts.size());
  for (size_t i = 0; i < s.verdicts.size(); ++i) Check(SameVerdict(s.verdicts[i], re.verdicts[i]));
}

// The verdicts checked against a batch of as many messages as there are
// frames (the common case), and of a size picked by the first byte.
void CheckStream(std::string_view bytes) {
  CheckInputs(bytes);
  CheckVerdicts(bytes, holdfast::ParseRecordLog(bytes).records.size());
  CheckVerdicts(bytes, bytes.empty() ? 0 : static_cast<uint8_t>(bytes[0]) % 8);
}

// The input as records, framed properly: the low bit of the type byte picks
// an input or a verdict record.
std::string Framed(std::string_view in) {
  std::string out;
  while (in.size() >= 3) {
    const uint8_t type = (in[0] & 1) ? holdfast::kVerdictRecord : holdfast::kFilterInputRecord;
    size_t len = static_cast<uint8_t>(in[1]) | (static_cast<size_t>(static_cast<uint8_t>(in[2])) << 8);
    in.remove_prefix(3);
    len = std::min(len, in.size());
    out += holdfast::EncodeRecord(type, in.substr(0, len));
    in.remove_prefix(len);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  CheckStream(bytes);
  CheckStream(Framed(bytes));
  return 0;
}
