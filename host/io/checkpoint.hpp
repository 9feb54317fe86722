// Checkpoints (DESIGN §4): a directory with model.safetensors (PyTorch names, strict-loadable),
// train_state.safetensors (Adam, buffer, RNG, counters) and config.json (the resolved config).
// Written to a temporary sibling directory, then swapped in with one atomic rename.
//
// With the training recipe on (train.ema_decay > 0, model.spectral_norm), model.safetensors holds the
// sampling weights (Backend::sampling_params(): eff(θ_ema or θ, u), engine/spectral_norm.hpp), so ebm_sample,
// ebm_score and PyTorch load the EMA'd, spectrally normalised network as it is (tools run it with both off,
// host/eval/sampling.cpp), and its metadata says so: "weights": "ema", "spectral_norm" or "ema+spectral_norm"
// (absent: the raw θ). train_state.safetensors then also holds the raw θ ("params", [num_params]), θ_ema
// ("ema", [num_params], EMA on) and each layer's u ("sn.u.{i}", [rows], spectral norm on), so a resume is
// exact. Without the recipe both files are what they were before it existed.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend.hpp"
#include "engine/net.hpp"
#include "host/io/config.hpp"

namespace ebm {

// Everything needed to continue a run bit for bit.
// Running sums over an epoch's steps: loss reg cdiv real fake, the step count, then (train.objective "jem") ce
// and accuracy. A checkpoint holds the first 6 where the last two are 0 (every "cd" run, and every checkpoint
// written before JEM), all 8 otherwise.
using EpochSums = std::array<double, 8>;
enum EpochSum { kSumLoss, kSumReg, kSumCdiv, kSumReal, kSumFake, kSumSteps, kSumCe, kSumAccuracy };

struct TrainState {
  std::vector<float> params;
  AdamState adam;
  Tensor buffer;                     // [n,C,H,W], oldest first (buffer.per_class: ring 0's, then ring 1's, ...)
  std::vector<int32_t> buffer_classes;  // buffer.per_class: each buffer image's class [n]; empty otherwise
  std::vector<uint64_t> rng;         // the backend's stream state
  std::string rng_backend;           // "cpu" or "cuda": whose layout `rng` is in
  int64_t step = 0;                  // optimizer steps taken
  int64_t epoch = 0, batch = 0;      // where the next step starts
  EpochSums epoch_sums{};            // running sums over the current epoch
  double lr = 0;
  uint64_t seed = 0;
  int64_t rollbacks = 0;
  // The training set it was trained on (dataset_fingerprint in host/io/dataset.hpp): a resume refuses another
  // set. -1/0 in checkpoints written before these were recorded (then not checked).
  int64_t data_images = -1;
  uint64_t data_fingerprint = 0;
  // A data-parallel run's checkpoint holds every rank's replay-buffer shard and RNG state, in rank order
  // (train_state.safetensors: buffer.rank{r}, rng.state.rank{r}, world_size). Empty for one rank, whose
  // state is `buffer` and `rng` (the single-process layout, unchanged). In a running rank, `buffer` and
  // `rng` are always that rank's own.
  std::vector<Tensor> rank_buffers;
  std::vector<std::vector<uint64_t>> rank_rngs;
  // The recipe's state (empty where off, and in checkpoints written before it): θ_ema, the spectral norm's
  // u's (flat, Backend::sn_state()'s layout), and the sampling weights model.safetensors holds instead of
  // `params` (empty: `params`; never read back on resume — the backend recomputes them).
  std::vector<float> ema, sn_u, sampling;
  // The divergence guard's drift history (train.divergence.drift_factor > 0; empty where off, and in
  // checkpoints written before it): the mean regulariser of each finished normal epoch (DivergenceGuard::
  // normal_epoch), oldest first, over which its level is taken.
  std::vector<double> epoch_reg;
  int world_size() const { return rank_buffers.empty() ? 1 : int(rank_buffers.size()); }
};

NetSpec net_spec_for(const Config& c);
// The engine's options for a config (single process; the training run adds its communicator).
EngineOptions engine_options_for(const Config& c);

void save_checkpoint(const std::string& dir, const NetSpec& net, const TrainState& s, const Config& config);

// A model without training state (the evaluator's classifier): model.safetensors, config.json and, when
// `extra_name` is not empty, that file holding `extra_text`; written to a temporary sibling, then swapped in.
void save_model(const std::string& dir, const NetSpec& net, const std::vector<float>& params, const Config& config,
                const std::string& extra_name = "", const std::string& extra_text = "");

// A checkpoint's network, for the tools: config.json and model.safetensors, shapes checked.
struct Model {
  Config config;
  NetSpec net;
  std::vector<float> params;
};
Model load_model(const std::string& dir);
// A checkpoint's config.json, validated (UserError naming the file). Keys the file lacks take their
// defaults; with `absent`, their dotted names are listed there (a resume checks the ones it must keep).
Config load_checkpoint_config(const std::string& dir, std::vector<std::string>* absent = nullptr);

// Parameters from model.safetensors checked against `net` (UserError naming tensor, both shapes).
std::vector<float> load_params(const std::string& file, const NetSpec& net);
// The whole state, for --resume; the network must match `net` (the current config's), and the run that wrote
// it must have had `world_size` ranks (UserError naming both counts otherwise).
TrainState load_train_state(const std::string& dir, const NetSpec& net, int world_size = 1);

// A run's replay buffer as a tool reads it (ebm_sample --init buffer): train_state.safetensors' images [n,C,H,W]
// (a data-parallel run's shards in rank order, each oldest first) and, where the run kept one ring per class
// (buffer.per_class), each image's class [n] (ring 0's images first, each ring oldest first); UserError naming the
// file when it is missing or its buffer does not fit `net`.
struct ReplayBufferImages {
  Tensor images;
  std::vector<int32_t> classes;
};
ReplayBufferImages read_replay_buffer(const std::string& dir, const NetSpec& net);

// A TrainState as bytes and back, for moving it between ranks (resume scatters each rank its part).
std::string pack_train_state(const TrainState& s);
TrainState unpack_train_state(const std::string& bytes);

}  // namespace ebm
