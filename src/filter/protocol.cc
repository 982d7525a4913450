#include "filter/protocol.h"

#include <array>

#include "util/record_log.h"

namespace holdfast {
namespace {

constexpr uint8_t kVersion = 1;  // first byte of every payload

// A reason or trail cut to what the decoder accepts, so a long stderr
// excerpt cannot turn a good verdict into a corrupt frame.
std::string_view Fit(std::string_view s, size_t max) { return s.substr(0, max); }

Result<FilterInput> DecodeInputPayload(std::string_view payload) {
  Decoder d(payload);
  if (d.U8() != kVersion) return Status::Corrupt("filter input: unknown version");
  FilterInput in;
  std::array<uint8_t, 16> id{};
  d.Bytes(id.data(), id.size());
  in.id = MessageId::FromBytes(id);
  in.client = d.Str(kMaxEnvelopeField);
  in.helo = d.Str(kMaxEnvelopeField);
  in.mail_from = d.Str(kMaxEnvelopeField);
  uint32_t n = d.U32();
  if (!d.ok() || n > kMaxFilterRecipients) return Status::Corrupt("filter input: bad envelope");
  for (uint32_t i = 0; i < n && d.ok(); ++i) in.rcpts.push_back(d.Str(kMaxEnvelopeField));
  in.body = d.Str(kMaxRecordPayload);
  if (!d.done()) return Status::Corrupt("filter input: bad message record");
  return in;
}

Result<Verdict> DecodeVerdictPayload(std::string_view payload, uint32_t* index) {
  Decoder d(payload);
  if (d.U8() != kVersion) return Status::Corrupt("unknown verdict version");
  *index = d.U32();
  uint8_t kind = d.U8();
  Verdict v;
  if (kind > static_cast<uint8_t>(Verdict::Kind::kFailed)) return Status::Corrupt("unknown verdict kind");
  v.kind = static_cast<Verdict::Kind>(kind);
  v.folder = d.Str(kMaxFolderName);
  uint8_t rewritten = d.U8();
  v.body = d.Str(kMaxRecordPayload);
  v.reason = d.Str(kMaxVerdictText);
  v.trail = d.Str(kMaxVerdictText);
  if (!d.done()) return Status::Corrupt("bad verdict record");
  if (rewritten > 1 || (rewritten == 0 && !v.body.empty())) return Status::Corrupt("bad verdict body");
  v.rewritten = rewritten == 1;
  // Only a delivery carries a folder or a body.
  if (v.kind != Verdict::Kind::kDeliver && (!v.folder.empty() || v.rewritten))
    return Status::Corrupt("verdict " + std::string(VerdictKindName(v.kind)) + " with a folder or body");
  return v;
}

}  // namespace

const char* VerdictKindName(Verdict::Kind k) {
  switch (k) {
    case Verdict::Kind::kDeliver: return "deliver";
    case Verdict::Kind::kQuarantine: return "quarantine";
    case Verdict::Kind::kDiscard: return "discard";
    case Verdict::Kind::kTempFail: return "tempfail";
    case Verdict::Kind::kFailed: return "failed";
  }
  return "?";
}

std::string EncodeFilterInput(const FilterInput& in) {
  Encoder e;
  e.U8(kVersion).Bytes(in.id.bytes().data(), 16).Str(in.client).Str(in.helo).Str(in.mail_from);
  e.U32(static_cast<uint32_t>(in.rcpts.size()));
  for (const auto& r : in.rcpts) e.Str(r);
  e.Str(in.body);
  return EncodeRecord(kFilterInputRecord, e.data());
}

std::string EncodeVerdict(uint32_t index, const Verdict& v) {
  const bool deliver = v.kind == Verdict::Kind::kDeliver;
  const bool rewritten = deliver && v.rewritten;
  Encoder e;
  e.U8(kVersion).U32(index).U8(static_cast<uint8_t>(v.kind));
  e.Str(deliver ? Fit(v.folder, kMaxFolderName) : "").U8(rewritten ? 1 : 0).Str(rewritten ? v.body : "");
  e.Str(Fit(v.reason, kMaxVerdictText)).Str(Fit(v.trail, kMaxVerdictText));
  return EncodeRecord(kVerdictRecord, e.data());
}

Result<std::vector<FilterInput>> DecodeFilterInputs(std::string_view bytes) {
  ParsedLog log = ParseRecordLog(bytes);
  if (log.tail != ParsedLog::Tail::kClean)
    return Status::Corrupt("filter input: damaged frame at byte " + std::to_string(log.valid_end));
  std::vector<FilterInput> out;
  for (const LogRecord& rec : log.records) {
    if (rec.type != kFilterInputRecord)
      return Status::Corrupt("filter input: unexpected record type " + std::to_string(rec.type));
    HF_ASSIGN_OR_RETURN(FilterInput in, DecodeInputPayload(rec.payload));
    out.push_back(std::move(in));
  }
  return out;
}

VerdictStream DecodeVerdicts(std::string_view bytes, size_t expected) {
  VerdictStream out;
  ParsedLog log = ParseRecordLog(bytes);
  for (const LogRecord& rec : log.records) {
    if (out.verdicts.size() == expected) {
      out.error = "more verdicts than the " + std::to_string(expected) + " messages of the batch";
      return out;
    }
    if (rec.type != kVerdictRecord) {
      out.error = "unexpected record type " + std::to_string(rec.type) + " after " +
                  std::to_string(out.verdicts.size()) + " verdicts";
      return out;
    }
    uint32_t index = 0;
    auto v = DecodeVerdictPayload(rec.payload, &index);
    if (!v.ok()) {
      out.error = v.status().message() + " after " + std::to_string(out.verdicts.size()) + " verdicts";
      return out;
    }
    if (index != out.verdicts.size()) {
      out.error = "verdict for message " + std::to_string(index) + " where " + std::to_string(out.verdicts.size()) +
                  " was due";
      return out;
    }
    out.verdicts.push_back(std::move(v).value());
  }
  if (log.tail != ParsedLog::Tail::kClean) {
    out.error = std::string(log.tail == ParsedLog::Tail::kTorn ? "output cut short" : "damaged frame") + " after " +
                std::to_string(out.verdicts.size()) + " of " + std::to_string(expected) + " verdicts";
  } else if (out.verdicts.size() < expected) {
    out.error = "only " + std::to_string(out.verdicts.size()) + " of " + std::to_string(expected) + " verdicts";
  } else {
    out.complete = true;
  }
  return out;
}

}  // namespace holdfast
