#include "migrate/mbox_import.h"

#include <chrono>
#include <memory>
#include <optional>

#include "util/checksum.h"

namespace holdfast {
namespace {

constexpr size_t kMaxDetailLines = 100;

// Receives the parsed messages and delivers the new ones in batches.
class ImportSink : public MboxParser::Sink {
 public:
  ImportSink(Mailbox& box, const MboxImportOptions& opts, MboxImportReport* report)
      : box_(box), opts_(opts), report_(report) {}

  Status OnMessageStart(const MboxEnvelope& envelope) override {
    envelope_ = envelope;
    content_.clear();
    size_ = 0;
    sha_.emplace();
    sha_->Update(envelope.from_line);
    sha_->Update("\n");
    return Status::Ok();
  }

  Status OnMessageData(std::string_view piece) override {
    size_ += piece.size();
    sha_->Update(piece);
    if (size_ <= opts_.max_message_size) {
      content_.append(piece);
    } else {
      std::string().swap(content_);  // over the limit: stop holding it
    }
    return Status::Ok();
  }

  Status OnMessageEnd() override {
    const auto digest = sha_->Finish();
    sha_.reset();
    // The first message of the file names the file (see MboxMessageId).
    if (!anchor_) anchor_ = digest;
    if (size_ == 0) return Skip("empty");
    if (size_ > opts_.max_message_size) {
      return Skip("larger than delivery.max_message_size (" + std::to_string(opts_.max_message_size) + " bytes)");
    }
    const MessageId id = MboxMessageId(*anchor_, envelope_.offset, digest);
    if (box_.Knows(id)) {
      ++report_->already_there;
      return Status::Ok();
    }
    HF_ASSIGN_OR_RETURN(auto delivery, box_.BeginDelivery(id));
    HF_RETURN_IF_ERROR(delivery->Write(content_));
    batch_.push_back(std::move(delivery));
    return batch_.size() >= opts_.batch ? CommitBatch() : Status::Ok();
  }

  // Commits what is written; every delivery is durable or not there.
  Status CommitBatch() {
    if (batch_.empty()) return Status::Ok();
    std::vector<Delivery*> ds;
    for (auto& d : batch_) ds.push_back(d.get());
    auto results = box_.CommitAll(ds);
    Status first_error;
    for (const auto& r : results) {
      if (r.ok()) {
        ++report_->imported;
      } else if (first_error.ok()) {
        first_error = r.status();
      }
    }
    batch_.clear();  // an uncommitted Delivery removes its tmp file as it goes
    return first_error;
  }

 private:
  Status Skip(const std::string& reason) {
    ++report_->skipped[reason];
    if (report_->skipped_detail.size() < kMaxDetailLines) {
      report_->skipped_detail.push_back("offset " + std::to_string(envelope_.offset) + " (" +
                                        envelope_.from_line.substr(0, 80) + "): " + reason);
    }
    return Status::Ok();
  }

  Mailbox& box_;
  const MboxImportOptions& opts_;
  MboxImportReport* report_;
  MboxEnvelope envelope_;
  std::string content_;
  uint64_t size_ = 0;
  std::optional<Sha256> sha_;
  std::optional<std::array<uint8_t, 32>> anchor_;
  std::vector<std::unique_ptr<Delivery>> batch_;
};

}  // namespace

MessageId MboxMessageId(const std::array<uint8_t, 32>& anchor, uint64_t offset,
                        const std::array<uint8_t, 32>& digest) {
  Sha256 h;
  h.Update("holdfast-mbox-import:" + HexEncode(anchor) + ":" + std::to_string(offset) + ":" + HexEncode(digest));
  const auto full = h.Finish();
  std::array<uint8_t, 16> bytes{};
  std::copy_n(full.begin(), bytes.size(), bytes.begin());
  for (size_t i = 0; i < 6; ++i) bytes[i] = 0xff;  // the time field: "never expires"
  return MessageId::FromBytes(bytes);
}

Status ImportMbox(Fs& fs, File& source, uint64_t size, Mailbox& box, const MboxImportOptions& opts,
                  MboxImportReport* report) {
  // Two imports into one mailbox could both see a message missing and both
  // deliver it: one at a time (a lock dies with its holder, so a killed
  // import never locks out the next).
  auto lock = fs.LockFile(JoinPath(box.dir(), "holdfast-import.lock"), std::chrono::milliseconds(0));
  if (!lock.ok()) {
    if (lock.status().kind() == Status::Kind::kBusy) {
      return Status::Busy("another import into " + box.dir() + " is running");
    }
    return lock.status();
  }
  // Once, with a directory scan: confirms copies an interrupted run left
  // (an Add whose rename was cut off does not count), as the spool's replay does.
  HF_RETURN_IF_ERROR(box.Refresh(true));
  ImportSink sink(box, opts, report);
  MboxParser parser(opts.format, sink);
  HF_RETURN_IF_ERROR(ReadMbox(source, size, parser, 64 * 1024, opts.progress));
  return sink.CommitBatch();
}

}  // namespace holdfast
