// TensorBoard event files (what `tensorboard --logdir` reads): a folder of events.out.tfevents.<unix time>.
// <hostname> files, each a sequence of TFRecords holding serialized Event protos (host/io/tensorboard_event.proto,
// compiled by protoc; the build needs libprotobuf and protoc, else tensorboard_available() is false and
// TensorBoardWriter cannot be made). A file's first record is an Event with file_version "brain.Event:2".
//
// TFRecord framing, little-endian:  uint64 length | uint32 masked_crc32c(length bytes) | data[length] |
// uint32 masked_crc32c(data),  masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (host/io/crc32.hpp's CRC-32C).
#pragma once
#include <cstdint>
#include <fstream>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/io/png_image.hpp"

namespace ebm {

// Whether this build writes TensorBoard files; and, when it does not, why (what configure did not find).
bool tensorboard_available();
std::string tensorboard_missing_reason();

// --- the record format (built with or without protobuf) ---

uint32_t masked_crc32c(const void* data, size_t n);
// One record: the framing above around `data`.
std::string tfrecord(std::string_view data);

// The records of an event file's bytes, in order. Reading stops at a torn tail (a length whose CRC fails, or
// fewer bytes left than it announces: what a killed writer leaves); a record whose data CRC fails is skipped.
struct TfRecordScan {
  std::vector<std::string_view> records;  // each record's data, viewing the bytes scanned
  bool damaged = false;                   // a torn tail or a skipped record
};
TfRecordScan scan_tfrecords(std::string_view bytes);

// --- what ebm_train writes ---

// The scalars of one metrics.jsonl record (host/train/training_run.cpp's log()), as (tag, value): every number of a
// "step" record as train/<key>, of an "epoch" record as epoch/<key>, of an "eval" record as eval/<key>, except
// the keys that place it (step, epoch); nothing for other events (resume, diverged, rollback, stopped).
std::vector<std::pair<std::string, double>> tensorboard_scalars(const nlohmann::json& record);

// A histogram of `values` (non-finite ones left out) in TensorBoard's form: `bins` equal-width buckets from
// min to max, bucket i counting (limit[i-1], limit[i]] (the first from min, inclusive); limit.back() = max.
// One bucket when every value is the same; none when no value is finite.
struct Histogram {
  double min = 0, max = 0, num = 0, sum = 0, sum_squares = 0;
  std::vector<double> bucket_limit, bucket;
};
Histogram make_histogram(const std::vector<float>& values, int bins = 30);

// Drops the events past `step` (a resume or a rollback to `step` rewrites the history after it) from every
// events.out.tfevents.* file in `dir`, and a torn tail; each file changed is rewritten atomically, the others
// are left as they are. Records that do not parse as an Event are kept. Returns the files rewritten. UserError
// naming the file when one cannot be read or written. Needs tensorboard_available().
std::vector<std::string> truncate_tensorboard_events(const std::string& dir, int64_t step);

// Appends events to one file of `dir` (created): the newest events.out.tfevents.* there (by name, i.e. by
// time), else a new one named for the time and this host, starting with the file_version record. Events go
// out as they are added; flush() hands them to the OS (after each epoch's records, so that a live
// TensorBoard sees them). The constructor throws UserError naming the folder or file it cannot create or
// open; a later write that fails prints one warning line naming the file to `warn` and turns the writer off
// (training goes on). Needs tensorboard_available().
class TensorBoardWriter {
 public:
  TensorBoardWriter(const std::string& dir, std::ostream& warn);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  void add_scalar(const std::string& tag, int64_t step, double value);
  // tensorboard_scalars(record) as one event at the record's step; a record that is not step/epoch/eval
  // (resume, stopped, ...) flushes what came before it.
  void add_metrics(const nlohmann::json& record);
  void add_image(const std::string& tag, int64_t step, const Image& image);  // PNG-encoded: needs libpng
  void add_histogram(const std::string& tag, int64_t step, const std::vector<float>& values);
  void flush();
  // Closes the file, drops the events past `step` from the folder (truncate_tensorboard_events) and goes on
  // appending: a rollback's rewind.
  void rewind(int64_t step);

  const std::string& file() const { return file_; }

 private:
  void write_event(const std::string& serialized);
  void open_for_append();

  std::string dir_, file_;
  std::ostream& warn_;
  std::ofstream out_;
  bool failed_ = false;  // a write failed: said once, nothing more written
};

}  // namespace ebm
