// TensorBoard event files (host/io/tensorboard.hpp): CRC-32C and its masking, the TFRecord framing, the Event
// schema's bytes, histograms, the scalars of metrics records, and cutting a folder's files back to a step.
// tests/python/test_tensorboard_events.py reads what ebm_train writes with python3-protobuf and crc32c.
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>

#include <gtest/gtest.h>

#include "host/io/crc32.hpp"
#include "host/io/tensorboard.hpp"
#include "test_support.hpp"

#if EBM_HAVE_TENSORBOARD
#include "host/io/tensorboard_event.pb.h"  // generated (build/proto/)
#endif

namespace ebm {
namespace {

using test::TempDir;

// RFC 3720 (iSCSI) B.4's CRC-32C examples, and the usual check value.
TEST(Crc32c, KnownValues) {
  for (auto crc : {crc32c, crc32c_bitwise}) {
    EXPECT_EQ(crc("", 0, 0), 0u);
    EXPECT_EQ(crc("123456789", 9, 0), 0xE3069283u);
    std::vector<uint8_t> b(32, 0);
    EXPECT_EQ(crc(b.data(), b.size(), 0), 0x8A9136AAu);
    std::fill(b.begin(), b.end(), 0xFF);
    EXPECT_EQ(crc(b.data(), b.size(), 0), 0x62A8AB43u);
    for (int i = 0; i < 32; ++i) b[size_t(i)] = uint8_t(i);
    EXPECT_EQ(crc(b.data(), b.size(), 0), 0x46DD794Eu);
  }
}

// The instruction's path (SSE4.2 / ARMv8 where the CPU has it) against the bit-by-bit one: odd lengths, odd
// start addresses, and continued CRCs.
TEST(Crc32c, InstructionPathEqualsBitwise) {
  std::cout << "crc32c path on this CPU: " << crc32c_path() << "\n";
  std::mt19937 gen(11);
  std::vector<uint8_t> bytes(70001);
  for (auto& b : bytes) b = uint8_t(gen());
  for (size_t n : {size_t{1}, size_t{3}, size_t{7}, size_t{9}, size_t{15}, size_t{63}, size_t{1001}, size_t{65537}}) {
    for (size_t start : {size_t{0}, size_t{1}, size_t{5}}) {
      const uint8_t* p = bytes.data() + start;
      EXPECT_EQ(crc32c(p, n), crc32c_bitwise(p, n)) << n << " bytes from offset " << start;
    }
    const size_t half = n / 2;
    EXPECT_EQ(crc32c(bytes.data() + half, n - half, crc32c(bytes.data(), half)), crc32c_bitwise(bytes.data(), n));
  }
}

TEST(TfRecord, MaskedCrc) {
  const uint32_t c = 0xE3069283u;  // "123456789"
  EXPECT_EQ(masked_crc32c("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
  EXPECT_EQ(masked_crc32c("123456789", 9), 0xC78AB0E5u);  // python3-crc32c, masked by hand
}

// One record's bytes, worked out by hand (the CRCs from python3-crc32c): length 3 as uint64 LE, its masked
// CRC, the data, the data's masked CRC.
TEST(TfRecord, OneRecordByHand) {
  const uint8_t want[] = {0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb0, 0x99, 0x49, 0x0e,
                          'a',  'b',  'c',  0x6e, 0x57, 0xf1, 0x21};
  const std::string rec = tfrecord("abc");
  ASSERT_EQ(rec.size(), sizeof want);
  EXPECT_EQ(std::memcmp(rec.data(), want, sizeof want), 0);
  const std::string three = rec + tfrecord("") + tfrecord("defg");  // the scan views these bytes
  const TfRecordScan scan = scan_tfrecords(three);
  EXPECT_FALSE(scan.damaged);
  ASSERT_EQ(scan.records.size(), 3u);
  EXPECT_EQ(scan.records[0], "abc");
  EXPECT_EQ(scan.records[1], "");
  EXPECT_EQ(scan.records[2], "defg");
}

TEST(TfRecord, ScanStopsAtATornTailAndSkipsABadRecord) {
  const std::string two = tfrecord("first") + tfrecord("second");
  for (size_t cut = 1; cut < tfrecord("second").size(); ++cut) {  // a killed writer's half record
    const std::string torn = two.substr(0, two.size() - cut);
    const TfRecordScan scan = scan_tfrecords(torn);
    EXPECT_TRUE(scan.damaged) << cut;
    ASSERT_EQ(scan.records.size(), 1u) << cut;
    EXPECT_EQ(scan.records[0], "first");
  }
  std::string bad = tfrecord("first") + tfrecord("second") + tfrecord("third");
  bad[tfrecord("first").size() + 12] ^= 1;  // a flipped bit in the second record's data
  const TfRecordScan scan = scan_tfrecords(bad);
  EXPECT_TRUE(scan.damaged);
  ASSERT_EQ(scan.records.size(), 2u);
  EXPECT_EQ(scan.records[1], "third");
}

TEST(TensorBoard, ScalarsOfMetricsRecords) {
  using P = std::vector<std::pair<std::string, double>>;
  const auto step = nlohmann::json::parse(R"({"event":"step","step":20,"epoch":1,"loss":0.5,"lr":0.0001})");
  EXPECT_EQ(tensorboard_scalars(step), (P{{"train/loss", 0.5}, {"train/lr", 0.0001}}));
  const auto epoch = nlohmann::json::parse(R"({"event":"epoch","epoch":2,"step":40,"cdiv":-0.1,"val_cdiv":-0.2,
                                               "val_max_abs_f":null})");
  EXPECT_EQ(tensorboard_scalars(epoch), (P{{"epoch/cdiv", -0.1}, {"epoch/val_cdiv", -0.2}}));
  const auto eval = nlohmann::json::parse(R"({"event":"eval","epoch":2,"step":40,"is":1.5,"class_hist":[1,2]})");
  EXPECT_EQ(tensorboard_scalars(eval), (P{{"eval/is", 1.5}}));
  EXPECT_TRUE(tensorboard_scalars(nlohmann::json::parse(R"({"event":"rollback","step":3,"lr":1})")).empty());
}

TEST(TensorBoard, Histogram) {
  const Histogram h = make_histogram({0.0f, 1.0f, 2.0f, 3.0f, 4.0f, NAN, INFINITY}, 4);
  EXPECT_EQ(h.num, 5);
  EXPECT_EQ(h.min, 0);
  EXPECT_EQ(h.max, 4);
  EXPECT_EQ(h.sum, 10);
  EXPECT_EQ(h.sum_squares, 30);
  EXPECT_EQ(h.bucket_limit, (std::vector<double>{1, 2, 3, 4}));
  EXPECT_EQ(h.bucket, (std::vector<double>{2, 1, 1, 1}));  // (-, 1] holds 0 and 1
  const Histogram same = make_histogram({2.5f, 2.5f, 2.5f});
  EXPECT_EQ(same.bucket_limit, (std::vector<double>{2.5}));
  EXPECT_EQ(same.bucket, (std::vector<double>{3}));
  EXPECT_EQ(make_histogram({NAN}).num, 0);
  EXPECT_TRUE(make_histogram({}).bucket.empty());
}

#if EBM_HAVE_TENSORBOARD

namespace pb = ::ebm::tensorboard;

std::vector<pb::Event> read_events(const std::string& path) {
  const std::string bytes = test::slurp(path);
  const TfRecordScan scan = scan_tfrecords(bytes);
  EXPECT_FALSE(scan.damaged) << path;
  std::vector<pb::Event> events;
  for (std::string_view r : scan.records) {
    pb::Event e;
    EXPECT_TRUE(e.ParseFromArray(r.data(), int(r.size())));
    events.push_back(e);
  }
  return events;
}

std::vector<std::string> event_files(const TempDir& d, const std::string& sub) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(d.path / sub)) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

// The schema's field numbers and wire types, byte by byte: Event{step 5, summary{value{tag "a",
// simple_value 1.0}}} (wall_time 0 is not written in proto3).
TEST(TensorBoard, EventBytesByHand) {
  pb::Event e;
  e.set_step(5);
  pb::Summary::Value* v = e.mutable_summary()->add_value();
  v->set_tag("a");
  v->set_simple_value(1.0f);
  const uint8_t want[] = {0x10, 0x05,                    // step = 2, varint
                          0x2a, 0x0a,                    // summary = 5, 10 bytes
                          0x0a, 0x08,                    //   value = 1, 8 bytes
                          0x0a, 0x01, 'a',               //     tag = 1
                          0x15, 0x00, 0x00, 0x80, 0x3f}; //     simple_value = 2, fixed32 1.0f
  const std::string got = e.SerializeAsString();
  ASSERT_EQ(got.size(), sizeof want);
  EXPECT_EQ(std::memcmp(got.data(), want, sizeof want), 0);
}

TEST(TensorBoard, WriterFileStartsWithItsVersionAndHoldsWhatWasAdded) {
  TempDir d("ebm_tb");
  std::ostringstream warn;
  {
    TensorBoardWriter w(d / "tb", warn);
    EXPECT_TRUE(std::filesystem::path(w.file()).filename().string().starts_with("events.out.tfevents."));
    w.add_scalar("train/loss", 3, 0.25);
    w.add_metrics(nlohmann::json::parse(R"({"event":"step","step":4,"epoch":1,"loss":0.5,"cdiv":-1})"));
    w.add_histogram("energy/real", 4, {1.0f, 2.0f, 3.0f});
    w.add_image("samples", 4, Image(5, 3, 3, Rgb{10, 20, 30}));
  }
  EXPECT_EQ(warn.str(), "");
  const auto files = event_files(d, "tb");
  ASSERT_EQ(files.size(), 1u);
  const auto events = read_events(files[0]);
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  EXPECT_GT(events[0].wall_time(), 1.6e9);
  EXPECT_EQ(events[1].step(), 3);
  EXPECT_EQ(events[1].summary().value(0).tag(), "train/loss");
  EXPECT_EQ(events[1].summary().value(0).simple_value(), 0.25f);
  ASSERT_EQ(events[2].summary().value_size(), 2);
  EXPECT_EQ(events[2].summary().value(0).tag(), "train/cdiv");  // in the record's key order
  EXPECT_EQ(events[2].summary().value(1).tag(), "train/loss");
  EXPECT_EQ(events[3].summary().value(0).histo().num(), 3);
  const auto& im = events[4].summary().value(0).image();
  EXPECT_EQ(im.width(), 5);
  EXPECT_EQ(im.height(), 3);
  EXPECT_EQ(im.colorspace(), 3);
  if (png_available()) {
    EXPECT_TRUE(im.encoded_image_string().starts_with("\x89PNG"));
  }
}

// A resume (or rollback) to step S: every event past S goes, from every file; everything at or before S
// stays, the file_version record too; the next events are appended to the newest file.
TEST(TensorBoard, TruncationKeepsStepsUpToS) {
  TempDir d("ebm_tb");
  std::ostringstream warn;
  {
    TensorBoardWriter w(d / "tb", warn);
    for (int s = 1; s <= 10; ++s) w.add_scalar("train/loss", s, s);
  }
  // An older file from a run before (by name), and a torn tail in the newest.
  {
    std::ofstream old(d / "tb/events.out.tfevents.0000000001.old", std::ios::binary);
    pb::Event e;
    e.set_step(8);
    old << tfrecord(e.SerializeAsString());
    e.set_step(2);
    old << tfrecord(e.SerializeAsString());
  }
  const std::string newest = event_files(d, "tb").back();
  {
    std::ofstream f(newest, std::ios::binary | std::ios::app);
    f << tfrecord("torn").substr(0, 7);
  }
  const auto rewritten = truncate_tensorboard_events(d / "tb", 6);
  EXPECT_EQ(rewritten.size(), 2u);
  auto steps = [&](const std::string& file) {
    std::vector<int64_t> s;
    for (const auto& e : read_events(file)) s.push_back(e.step());
    return s;
  };
  EXPECT_EQ(steps(newest), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(steps(d / "tb/events.out.tfevents.0000000001.old"), (std::vector<int64_t>{2}));
  EXPECT_EQ(read_events(newest)[0].file_version(), "brain.Event:2");
  EXPECT_TRUE(truncate_tensorboard_events(d / "tb", 6).empty());  // nothing more to cut: files untouched

  // The writer's rewind: cut to 4, and go on appending to the same file.
  {
    TensorBoardWriter w(d / "tb", warn);
    EXPECT_EQ(w.file(), newest);
    w.add_scalar("train/loss", 7, 7);
    w.rewind(4);
    w.add_scalar("train/loss", 5, 5);
  }
  EXPECT_EQ(steps(newest), (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(warn.str(), "");
}

TEST(TensorBoard, UnusableFolderIsOneLineNamingIt) {
  TempDir d("ebm_tb");
  std::ostringstream warn;
  test::spit(d.path / "tb", "a file where the folder goes");
  test::expect_user_error([&] { TensorBoardWriter w(d / "tb", warn); }, {"TensorBoard folder", d / "tb"});
  if (geteuid() == 0) GTEST_SKIP() << "running as root: permissions do not stop writes (the read-only case)";
  std::filesystem::create_directories(d.path / "ro");
  chmod((d / "ro").c_str(), 0555);
  test::expect_user_error([&] { TensorBoardWriter w(d / "ro", warn); }, {d / "ro", "events.out.tfevents."});
  chmod((d / "ro").c_str(), 0755);
}

#else

TEST(TensorBoard, BuiltWithoutProtobuf) {
  EXPECT_FALSE(tensorboard_available());
  EXPECT_NE(tensorboard_missing_reason(), "");
  GTEST_SKIP() << "built without protobuf (" << tensorboard_missing_reason() << "): no event files to test";
}

#endif

}  // namespace
}  // namespace ebm
