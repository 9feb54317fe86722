// Training data (DESIGN §1, §6): IDX images -> float tensors in [-1,1], padded with -1.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.hpp"
#include "host/io/config.hpp"

namespace ebm {

// u8 [n,h,w] -> [n,1,pad_to,pad_to]: x = (u - 127.5f)/127.5f, so 0 -> -1 and 255 -> 1, placed
// (pad_to-h)/2 rows from the top and (pad_to-w)/2 columns from the left, border filled with -1 (black,
// like MNIST's own border). When pad_to - h (or - w) is odd the extra row (column) goes at the
// bottom (right). pad_to must be >= h and >= w.
Tensor preprocess_images(const uint8_t* u8, int64_t n, int h, int w, int pad_to);

struct Dataset {
  Tensor train;  // [N_train,1,P,P] in [-1,1]; the first data.limit images when limit > 0
  Tensor test;   // [N_test,1,P,P]
  std::vector<uint8_t> train_labels, test_labels;  // [N] each; empty when no labels file is present
  std::string train_path, test_path;               // the images files read (for logs)
};

// Reads <dir>/train-images-idx3-ubyte[.gz] and <dir>/t10k-images-idx3-ubyte[.gz] (raw or gzip), and the
// matching *-labels-idx1-ubyte[.gz] when present (their counts must agree). A missing dir or file is a
// UserError listing what was looked for and the command that fetches it (scripts/get_data.sh).
Dataset load_dataset(const DataConfig& cfg);

// The test split alone (test, test_labels, test_path; train empty): an out-of-distribution set, or the test split
// a tool measures. cfg.dataset names the fetch command in the message when the images are missing.
Dataset load_test_split(const DataConfig& cfg);

// CRC-32 (zlib's; host/io/crc32.hpp, the same without zlib) of the images' float32 bytes, in the high half, and their count mod 2^32 in the low
// half: what a checkpoint records of its training set, so that a resume on other data is refused. Cheap
// next to loading (about 0.2 s for 60,000 padded images).
uint64_t dataset_fingerprint(const Tensor& images);

// One IDX images file (raw or .gz, [N,H,W]) -> [N,1,pad_to,pad_to], for tools handed a data file.
Tensor load_idx_images(const std::string& path, int pad_to);

}  // namespace ebm
