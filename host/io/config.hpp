// The run configuration (DESIGN §5): defaults are the seed's run. Loaded from JSON, overridden with
// `--set dotted.key=value`, validated with the full key path in every message.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ebm {

struct DataConfig {
  std::string dataset = "mnist";   // mnist | fashion-mnist
  std::string dir = "data/mnist";  // holds train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz]
  int pad_to = 32;                 // pad 28x28 with -1 to pad_to x pad_to (>= 28)
  int batch_size = 128;
  int64_t limit = 0;               // first N training images only (0 = all)
  int shift = 0;                   // augmentation: each real image of a step moved by up to ±shift pixels (0 = none)
  bool operator==(const DataConfig&) const = default;
};

struct ModelConfig {
  std::vector<int> channels{16, 32, 64, 64};
  int kernel_size = 3;   // odd
  int stride = 2;
  std::string activation = "swish";
  int outputs = 1;       // the dense head's K: 1 = the energy net; K > 1 = a classifier's logits (ebm_eval)
  bool spectral_norm = false;  // weights divided by their largest singular value (engine/spectral_norm.hpp)
  bool operator==(const ModelConfig&) const = default;
};

struct SamplerConfig {
  int steps = 100;
  double step_size = 10.0;
  double noise = 0.005;
  double grad_clip = 0.03;
  bool operator==(const SamplerConfig&) const = default;
};

struct BufferConfig {
  int capacity = 8192;
  int initial = 128;
  double reinit_prob = 0.05;
  // train.objective "jem": one ring of capacity/K images per class, each chain on its class's energy
  // E(x, y) = −f_y(x) (engine/cpu/replay_buffer.hpp ClassReplayBuffer); ebm_sample --init buffer --class Y starts
  // from class Y's ring.
  bool per_class = false;
  bool operator==(const BufferConfig&) const = default;
};

struct DivergenceConfig {
  double max_abs_f = 1e4;          // |f| above this (or NaN/inf anywhere) counts as divergence
  std::string action = "stop";     // stop | rollback
  double lr_factor = 0.5;          // rollback: lr *= lr_factor
  int max_rollbacks = 3;
  // The slow drift (host/train/divergence_guard.hpp drift_ratio): an epoch whose mean regulariser exceeds
  // drift_factor × the median of the previous drift_window epochs' means (at least 3 of them) counts as
  // divergence, and a rollback goes drift_lookback epoch ends back. 0 = off; else > 1.
  double drift_factor = 0;
  int drift_window = 10;
  int drift_lookback = 4;
  bool operator==(const DivergenceConfig&) const = default;
};

// Sample quality measured during training (host/eval/eval_quality.hpp): every `every` epochs (0 = never),
// `n` chains drawn from uniform noise with the `generate` settings and scored by the data set's classifier.
// With train.objective "jem" it also measures the classifier: test accuracy and calibration (ECE), and, where
// `ood` names a data folder (e.g. data/fashion-mnist), the out-of-distribution AUROCs of its test images against
// the test split (host/eval/jem_eval.hpp).
struct EvalConfig {
  int every = 0;
  int n = 1000;
  std::string ood;
  bool operator==(const EvalConfig&) const = default;
};

struct TrainConfig {
  int epochs = 10;
  double lr = 1e-4;
  // The learning rate at step t is lr · warm-up(t) · schedule(t) (host/train/lr_schedule.hpp): constant; step
  // (× lr_gamma every lr_step_epochs epochs); cosine (from 1 down to lr_min_factor over the run's steps
  // after the warm-up). Warm-up: linear from lr/lr_warmup_steps to lr over the first lr_warmup_steps.
  std::string lr_schedule = "constant";
  int64_t lr_warmup_steps = 0;
  double lr_gamma = 0.1;
  int lr_step_epochs = 10;
  double lr_min_factor = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-7;
  double alpha = 0.1;
  double real_noise = 0.005;
  int64_t max_steps = 0;           // stop after N optimizer steps in total (0 = no limit)
  int log_every = 10;              // progress line / metrics read-back period, in steps
  int64_t checkpoint_every = 0;    // also checkpoint to last/ every N steps (0 = epoch ends only)
  int keep_checkpoints = 3;        // keep the newest N epoch_<N>/ checkpoints (and last/); 0 = all
  bool validate = true;            // validation on the test set at each epoch end
  bool tensorboard = true;         // TensorBoard event files in <output_dir>/tb/ (host/io/tensorboard.hpp)
  double comm_timeout_s = 120;     // data-parallel runs: a collective waiting longer than this ends the job
  // What training minimises (engine/loss.hpp): "cd", the seed's contrastive divergence on the energy net
  // (model.outputs 1); "jem", JEM (Grathwohl et al. 2020): cross-entropy on the labelled batch plus contrastive
  // divergence on logsumexp of the K logits (model.outputs K > 1), weighted ce_weight and cd_weight.
  std::string objective = "cd";
  double cd_weight = 1.0;
  double ce_weight = 1.0;
  double ema_decay = 0;            // θ_ema ← d·θ_ema + (1−d)·θ after each step, in [0, 1); 0 = no EMA.
                                   // Sampling, scoring and model.safetensors use θ_ema (engine/backend.hpp)
  DivergenceConfig divergence;
  EvalConfig eval;
  bool operator==(const TrainConfig&) const = default;
};

// The most chains one generation runs (generate.n, and ebm_sample's --n or --init images): the sample
// grid holds every chain, and 4096 tiles of 64x64 pixels is already a ~4200x4200 picture (50 MB of RGB).
constexpr int kMaxGenerateN = 4096;

struct GenerateConfig {
  int n = 16;
  int steps = 500;
  double step_size = 20.0;
  double noise = 0.005;
  bool operator==(const GenerateConfig&) const = default;
};

struct CudaConfig {
  bool tf32 = false;               // TF32 tensor-core math in cuDNN convolutions
  int device = 0;
  bool graphs = true;              // replay training steps from CUDA graphs (false: every kernel eagerly)
  bool deterministic = true;       // cuDNN algorithms by heuristics: every process picks the same ones, so a
                                   // resumed run is bit-exact; false: timed, the fastest in this process
  std::string langevin = "layers"; // layers | fused: Langevin chains per layer (cuDNN), or one fused kernel per chain
                                   // where the net fits its shared memory (kernels/langevin_chain.cuh)
  std::string chain = "auto";      // auto | resident | tiled | generic: which fused kernel, with langevin "fused"
                                   // (engine/langevin_chain_plan.hpp: auto takes the fastest that runs the net)
  std::string precision = "fp32";  // fp32 | tf32: TF32 tensor cores in the tiled chain (layers after the first) and
                                   // in cuDNN's convolutions (as tf32: true)
  bool operator==(const CudaConfig&) const = default;
};

struct Config {
  std::string backend = "auto";    // auto | cpu | cuda
  uint64_t seed = 42;
  std::string output_dir = "runs/mnist";
  DataConfig data;
  ModelConfig model;
  SamplerConfig sampler;
  BufferConfig buffer;
  TrainConfig train;
  GenerateConfig generate;
  CudaConfig cuda;
  bool operator==(const Config&) const = default;
};

// The defaults as JSON: also the schema (every key, and its type, is known from here).
nlohmann::json config_defaults_json();
nlohmann::json config_to_json(const Config& c);

// Merges `user` onto the defaults (unknown keys and wrong types are rejected with the key path),
// then validates ranges. `source` names the file in messages. Throws UserError.
Config config_from_json(const nlohmann::json& user, const std::string& source);

// True where dotted `key` is a config key holding text (output_dir, data.dir, backend, ...): --set takes its value
// as text whatever it looks like (output_dir=2024 is the folder "2024").
bool config_key_is_text(const std::string& key);

// Who gave the overrides, for messages: ebm_train's `--set k=v` flags, or the Python module's `overrides`.
enum class OverrideSource { kFlag, kPython };

// Applies one `dotted.key=value` override to a JSON config in place. The value is parsed as JSON
// where it parses (numbers, true/false, arrays), else taken as a string. Throws UserError naming
// the key on unknown keys or a type that differs from the schema ("--set k=v: ..." or "overrides: k=v: ...").
void apply_override(nlohmann::json& config, const std::string& assignment,
                    OverrideSource from = OverrideSource::kFlag);

// A tool flag that sets the value a config key holds (ebm_sample --steps is generate.steps, ebm_bench
// --batch is data.batch_size): `text` is read as `--set key=text` would read it and checked by the key's
// own rule, so a flag and its key never accept different values. Returns the defaults with that one key
// set; UserError naming the flag and the key, e.g. `option --grad-clip: "sampler.grad_clip" must be > 0, got 0`.
Config config_from_flag(const std::string& flag, const std::string& key, const std::string& text);

// Reads the file (UserError naming it on I/O or parse errors, a directory, a number beyond a double or a
// repeated key), applies overrides in order, validates.
Config load_config(const std::string& path, const std::vector<std::string>& overrides,
                   OverrideSource from = OverrideSource::kFlag);
// The same from the file's text; `source` names it in messages.
Config config_from_text(const std::string& text, const std::string& source,
                        const std::vector<std::string>& overrides = {}, OverrideSource from = OverrideSource::kFlag);

}  // namespace ebm
