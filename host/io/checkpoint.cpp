#include "host/io/checkpoint.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <sstream>

#include "engine/error.hpp"
#include "engine/spectral_norm.hpp"
#include "host/io/safetensors.hpp"

namespace fs = std::filesystem;

namespace ebm {

NetSpec net_spec_for(const Config& c) {
  return NetSpec::make(c.model.channels, c.model.kernel_size, c.model.stride, c.data.pad_to, 1, c.model.outputs);
}

EngineOptions engine_options_for(const Config& c) {
  EngineOptions o;
  o.net = net_spec_for(c);
  o.seed = c.seed;
  o.batch_size = c.data.batch_size;
  o.sampler = {c.sampler.steps, float(c.sampler.step_size), float(c.sampler.noise), float(c.sampler.grad_clip)};
  o.buffer_capacity = c.buffer.capacity;
  o.buffer_initial = c.buffer.initial;
  o.reinit_prob = c.buffer.reinit_prob;
  o.buffer_per_class = c.buffer.per_class;
  o.lr = c.train.lr;
  o.beta1 = c.train.beta1;
  o.beta2 = c.train.beta2;
  o.eps = c.train.eps;
  o.alpha = c.train.alpha;
  o.real_noise = c.train.real_noise;
  o.shift = c.data.shift;
  o.objective = c.train.objective == "jem" ? Objective::kJem : Objective::kCd;
  o.cd_weight = c.train.cd_weight;
  o.ce_weight = c.train.ce_weight;
  o.tf32 = c.cuda.tf32 || c.cuda.precision == "tf32";  // cuda.precision tf32 includes cuDNN's TF32
  o.device = c.cuda.device;
  o.graphs = c.cuda.graphs;
  o.deterministic = c.cuda.deterministic;
  o.fused_langevin = c.cuda.langevin == "fused";
  o.chain_kernel = c.cuda.chain == "resident" ? ChainKernel::kResident
                   : c.cuda.chain == "tiled"  ? ChainKernel::kTiled
                   : c.cuda.chain == "generic" ? ChainKernel::kGeneric
                                              : ChainKernel::kAuto;
  o.chain_tf32 = c.cuda.precision == "tf32";
  o.ema_decay = c.train.ema_decay;
  o.spectral_norm = c.model.spectral_norm;
  return o;
}

namespace {

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p);
  f << text;
  f.close();
  if (!f) user_fail(p.string(), ": cannot write (", std::strerror(errno), ")");
}

// An empty temporary sibling of `target` (this process's own) to write into before swap_into_place.
fs::path fresh_tmp_dir(const fs::path& target, const char* what) {
  const fs::path tmp = target.string() + ".tmp." + std::to_string(getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) user_fail(tmp.string(), ": cannot create ", what, " (", ec.message(), ")");
  return tmp;
}

// Replaces `dir` by `tmp` in one step: renameat2(RENAME_EXCHANGE) swaps two directories atomically, so
// a reader (or a crash) sees either the old checkpoint or the new one, never a mix or nothing.
void swap_into_place(const fs::path& tmp, const fs::path& dir) {
  if (!fs::exists(dir)) {
    fs::rename(tmp, dir);
    return;
  }
  if (renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0) {
    // Filesystems without RENAME_EXCHANGE: move the old one aside first (a short window with no `dir`).
    const fs::path old = dir.string() + ".old";
    fs::remove_all(old);
    fs::rename(dir, old);
    fs::rename(tmp, dir);
    fs::remove_all(old);
    return;
  }
  fs::remove_all(tmp);  // now holds the previous checkpoint
}

}  // namespace

void save_checkpoint(const std::string& dir, const NetSpec& net, const TrainState& s, const Config& config) {
  const fs::path target(dir);
  const fs::path tmp = fresh_tmp_dir(target, "checkpoint directory");

  const bool recipe = !s.ema.empty() || !s.sn_u.empty();
  EBM_CHECK(!recipe || s.sampling.size() == s.params.size(), "checkpoint: the recipe's sampling weights are missing");
  SafeTensors model;
  model.metadata = {{"format", "pt"}, {"producer", "ebm_engine"}};
  if (recipe)
    model.metadata["weights"] = std::string(s.ema.empty() ? "" : "ema") + (s.ema.empty() || s.sn_u.empty() ? "" : "+") +
                                (s.sn_u.empty() ? "" : "spectral_norm");
  const std::vector<float>& weights = recipe ? s.sampling : s.params;
  for (const ParamTensor& t : net.tensors()) model.put_f32(t.name, t.shape, weights.data() + t.offset);
  model.save((tmp / "model.safetensors").string());

  SafeTensors st;
  const std::vector<int64_t> np{net.num_params};
  if (recipe) st.put_f32("params", np, s.params.data());
  if (!s.ema.empty()) {
    EBM_CHECK(int64_t(s.ema.size()) == net.num_params, "checkpoint: EMA weights of another size than the network's");
    st.put_f32("ema", np, s.ema.data());
  }
  if (!s.sn_u.empty()) {
    EBM_CHECK(int64_t(s.sn_u.size()) == sn_state_size(net), "checkpoint: spectral-norm state of another size");
    const std::vector<SnLayer> layers = sn_layers(net);
    for (size_t i = 0; i < layers.size(); ++i)
      st.put_f32("sn.u." + std::to_string(i), {layers[i].rows}, s.sn_u.data() + layers[i].u_off);
  }
  st.put_f32("adam.m", np, s.adam.m.data());
  st.put_f32("adam.v", np, s.adam.v.data());
  st.put_i64("adam.t", {1}, &s.adam.t);
  if (s.world_size() == 1) {
    st.put("buffer", s.buffer);
    if (!s.buffer_classes.empty()) {
      EBM_CHECK(int64_t(s.buffer_classes.size()) == (s.buffer.shape.empty() ? 0 : s.buffer.shape[0]),
                "checkpoint: one class per replay-buffer image");
      st.put_i32("buffer.classes", {int64_t(s.buffer_classes.size())}, s.buffer_classes.data());
    }
    st.put_u64("rng.state", {int64_t(s.rng.size())}, s.rng.data());
  } else {
    EBM_CHECK(s.rank_rngs.size() == s.rank_buffers.size(), "checkpoint: one RNG state per rank's buffer");
    const int64_t world = s.world_size();
    st.put_i64("world_size", {1}, &world);
    for (size_t r = 0; r < s.rank_buffers.size(); ++r) {
      st.put("buffer.rank" + std::to_string(r), s.rank_buffers[r]);
      st.put_u64("rng.state.rank" + std::to_string(r), {int64_t(s.rank_rngs[r].size())}, s.rank_rngs[r].data());
    }
  }
  const int64_t counters[4] = {s.step, s.epoch, s.batch, s.rollbacks};
  st.put_i64("counters", {4}, counters);  // step, epoch, batch, rollbacks
  const bool jem_sums = s.epoch_sums[kSumCe] != 0 || s.epoch_sums[kSumAccuracy] != 0;
  st.put_f64("epoch_sums", {jem_sums ? 8 : 6}, s.epoch_sums.data());
  st.put_f64("lr", {1}, &s.lr);
  st.put_u64("seed", {1}, &s.seed);
  if (!s.epoch_reg.empty()) st.put_f64("divergence.epoch_reg", {int64_t(s.epoch_reg.size())}, s.epoch_reg.data());
  if (s.data_images >= 0) {
    st.put_i64("data.images", {1}, &s.data_images);
    st.put_u64("data.fingerprint", {1}, &s.data_fingerprint);
  }
  st.metadata = {{"rng_backend", s.rng_backend}};
  st.save((tmp / "train_state.safetensors").string());

  write_text(tmp / "config.json", config_to_json(config).dump(2) + "\n");
  swap_into_place(tmp, target);
}

std::vector<float> load_params(const std::string& file, const NetSpec& net) {
  const SafeTensors st = SafeTensors::load(file);
  std::vector<float> params(size_t(net.num_params));
  for (const ParamTensor& t : net.tensors()) {
    if (!st.has(t.name)) user_fail(file, ": tensor '", t.name, "' is missing (the config's network needs it)");
    const Tensor v = st.get_f32(t.name);
    if (v.shape != t.shape)
      user_fail(file, ": tensor '", t.name, "' has shape ", shape_str(v.shape), " but the config's network expects ",
                shape_str(t.shape), " (model.channels / kernel_size / outputs / data.pad_to differ from the checkpoint's)");
    std::copy(v.data.begin(), v.data.end(), params.begin() + t.offset);
  }
  for (const std::string& name : st.names()) {
    bool known = false;
    for (const ParamTensor& t : net.tensors()) known |= t.name == name;
    if (!known) user_fail(file, ": unexpected tensor '", name, "' for this network");
  }
  return params;
}

namespace {

void check_checkpoint_dir(const std::string& dir) {
  std::error_code ec;
  const fs::path d(dir);
  const fs::path aside = d.string() + ".old";
  if (!fs::exists(d, ec) && fs::is_directory(aside, ec))
    user_fail(dir, ": not a checkpoint directory (it does not exist, but ", aside.string(),
              " does: a run killed while saving moved it aside; rename it back to ", dir, ")");
  if (!fs::exists(d, ec)) user_fail(dir, ": not a checkpoint directory (it does not exist)");
  if (!fs::is_directory(d, ec))
    user_fail(dir, ": not a checkpoint directory (it is a file; a checkpoint is a directory holding config.json, ",
              "model.safetensors and train_state.safetensors)");
  if (!fs::exists(d / "model.safetensors", ec) && fs::is_directory(d / "last", ec))
    user_fail(dir, ": a run folder, not a checkpoint; its newest checkpoint is ", (d / "last").string());
}

void absent_keys(const nlohmann::json& schema, const nlohmann::json& file, const std::string& prefix,
                 std::vector<std::string>& out) {
  for (const auto& [k, v] : schema.items()) {
    const std::string key = prefix.empty() ? k : prefix + "." + k;
    const bool has = file.is_object() && file.contains(k);
    if (v.is_object()) absent_keys(v, has ? file[k] : nlohmann::json(), key, out);
    else if (!has) out.push_back(key);
  }
}

}  // namespace

Config load_checkpoint_config(const std::string& dir, std::vector<std::string>* absent) {
  check_checkpoint_dir(dir);
  const fs::path cfg = fs::path(dir) / "config.json";
  std::error_code ec;
  if (!fs::is_regular_file(cfg, ec))
    user_fail(cfg.string(), fs::exists(cfg, ec) ? ": not a regular file" : ": missing",
              " (a checkpoint holds config.json, model.safetensors, train_state.safetensors)");
  std::ifstream f(cfg, std::ios::binary);
  std::stringstream text;
  text << f.rdbuf();
  if (!f) user_fail(cfg.string(), ": cannot read (", std::strerror(errno), ")");
  const Config c = config_from_text(text.str(), cfg.string());  // every problem with the text is reported here
  if (absent) absent_keys(config_defaults_json(), nlohmann::json::parse(text.str()), "", *absent);
  return c;
}

Model load_model(const std::string& dir) {
  Model m;
  m.config = load_checkpoint_config(dir);
  m.net = net_spec_for(m.config);
  m.params = load_params((fs::path(dir) / "model.safetensors").string(), m.net);
  return m;
}

TrainState load_train_state(const std::string& dir, const NetSpec& net, int world_size) {
  check_checkpoint_dir(dir);
  const fs::path d(dir);
  TrainState s;
  const std::string file = (d / "train_state.safetensors").string();
  const SafeTensors st = SafeTensors::load(file);
  auto expect_len = [&](const std::string& name, size_t got, size_t want) {
    if (got != want) user_fail(file, ": '", name, "' has ", got, " values, expected ", want);
  };
  // With the recipe on, model.safetensors holds the sampling weights and the raw θ is here.
  if (st.has("params")) {
    s.params = st.get_f32("params").data;
    expect_len("params", s.params.size(), size_t(net.num_params));
  } else {
    s.params = load_params((d / "model.safetensors").string(), net);
  }
  if (st.has("ema")) {
    s.ema = st.get_f32("ema").data;
    expect_len("ema", s.ema.size(), size_t(net.num_params));
  }
  if (st.has("sn.u.0")) {
    const std::vector<SnLayer> layers = sn_layers(net);
    for (size_t i = 0; i < layers.size(); ++i) {
      const std::string name = "sn.u." + std::to_string(i);
      if (!st.has(name)) user_fail(file, ": '", name, "' is missing (spectral norm keeps one u per layer, ", layers.size(), " here)");
      const std::vector<float> u = st.get_f32(name).data;
      expect_len(name, u.size(), size_t(layers[i].rows));
      s.sn_u.insert(s.sn_u.end(), u.begin(), u.end());
    }
    if (st.has("sn.u." + std::to_string(layers.size())))
      user_fail(file, ": more 'sn.u.*' tensors than the network's ", layers.size(), " layers");
  }
  s.adam.m = st.get_f32("adam.m").data;
  s.adam.v = st.get_f32("adam.v").data;
  expect_len("adam.m", s.adam.m.size(), size_t(net.num_params));
  expect_len("adam.v", s.adam.v.size(), size_t(net.num_params));
  const auto t = st.get_i64("adam.t");
  expect_len("adam.t", t.size(), 1);
  s.adam.t = t[0];
  int64_t saved_world = 1;
  if (st.has("world_size")) {
    const auto w = st.get_i64("world_size");
    expect_len("world_size", w.size(), 1);
    saved_world = w[0];
    if (saved_world < 2) user_fail(file, ": 'world_size' is ", saved_world, ", expected >= 2");
  }
  if (saved_world != world_size)
    user_fail(dir, ": this checkpoint was written by a run on ", saved_world, saved_world == 1 ? " rank" : " ranks",
              " (each holds its own replay-buffer shard and random streams), but this run has ", world_size,
              world_size == 1 ? " rank" : " ranks", "; resume it with the same number of ranks (",
              saved_world == 1 ? std::string("no mpirun, or mpirun -np 1") : "mpirun -np " + std::to_string(saved_world),
              ")");
  auto read_buffer = [&](const std::string& name) {
    Tensor b = st.get_f32(name);
    if (b.shape.size() != 4 || b.shape[1] != net.in_c || b.shape[2] != net.in_h || b.shape[3] != net.in_w)
      user_fail(file, ": replay buffer '", name, "' has shape ", shape_str(b.shape), ", expected [n,", net.in_c, ",",
                net.in_h, ",", net.in_w, "]");
    return b;
  };
  if (saved_world == 1) {
    s.buffer = read_buffer("buffer");
    if (st.has("buffer.classes")) {
      s.buffer_classes = st.get_i32("buffer.classes");
      expect_len("buffer.classes", s.buffer_classes.size(), size_t(s.buffer.shape[0]));
    }
    s.rng = st.get_u64("rng.state");
  } else {
    for (int64_t r = 0; r < saved_world; ++r) {
      s.rank_buffers.push_back(read_buffer("buffer.rank" + std::to_string(r)));
      s.rank_rngs.push_back(st.get_u64("rng.state.rank" + std::to_string(r)));
    }
    s.buffer = s.rank_buffers[0];
    s.rng = s.rank_rngs[0];
  }
  const auto c = st.get_i64("counters");
  expect_len("counters", c.size(), 4);
  s.step = c[0]; s.epoch = c[1]; s.batch = c[2]; s.rollbacks = c[3];
  const auto sums = st.get_f64("epoch_sums");
  if (sums.size() != 8) expect_len("epoch_sums", sums.size(), 6);
  s.epoch_sums = {};
  std::copy(sums.begin(), sums.end(), s.epoch_sums.begin());
  const auto lr = st.get_f64("lr");
  expect_len("lr", lr.size(), 1);
  s.lr = lr[0];
  const auto seed = st.get_u64("seed");
  expect_len("seed", seed.size(), 1);
  s.seed = seed[0];
  if (st.has("divergence.epoch_reg")) s.epoch_reg = st.get_f64("divergence.epoch_reg");
  if (st.has("data.images")) {
    const auto images = st.get_i64("data.images");
    const auto fingerprint = st.get_u64("data.fingerprint");
    expect_len("data.images", images.size(), 1);
    expect_len("data.fingerprint", fingerprint.size(), 1);
    s.data_images = images[0];
    s.data_fingerprint = fingerprint[0];
  }
  auto it = st.metadata.find("rng_backend");
  s.rng_backend = it == st.metadata.end() ? "" : it->second;
  if (s.step < 0 || s.epoch < 0 || s.batch < 0 || s.rollbacks < 0 || s.adam.t < 0)
    user_fail(file, ": negative counters (step ", s.step, ", epoch ", s.epoch, ", batch ", s.batch, ", rollbacks ",
              s.rollbacks, ", adam.t ", s.adam.t, ")");
  // 2^40 steps is 35 years at a millisecond a step: a larger count is a damaged file, as is an epoch or batch
  // count above the steps (every epoch and batch is at least one step).
  constexpr int64_t kMaxCount = int64_t{1} << 40;
  if (s.step > kMaxCount || s.adam.t > kMaxCount || s.rollbacks > kMaxCount || s.epoch > s.step || s.batch > s.step)
    user_fail(file, ": impossible counters (step ", s.step, ", epoch ", s.epoch, ", batch ", s.batch, ", rollbacks ",
              s.rollbacks, ", adam.t ", s.adam.t, "): the file is damaged; resume an earlier checkpoint");
  // A state that cannot train: the run would only diverge at its first step, and blame the learning rate.
  const auto finite = [&](const std::string& name, std::span<const float> v, bool non_negative,
                          const std::string& where) {
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]) || (non_negative && v[i] < 0))
        user_fail(where, ": element ", i, " of ", name, " is ", v[i], ", expected ",
                  non_negative ? "finite values >= 0" : "finite values",
                  ": the checkpoint cannot be trained on; resume an earlier one");
  };
  if (st.has("params")) {
    finite("'params'", s.params, false, file);
  } else {  // model.safetensors holds one tensor per layer: name the tensor and the element in it
    for (const ParamTensor& t : net.tensors())
      finite("'" + t.name + "'", std::span<const float>(s.params).subspan(size_t(t.offset), size_t(t.size)), false,
             (d / "model.safetensors").string());
  }
  finite("'ema'", s.ema, false, file);
  finite("'adam.m'", s.adam.m, false, file);
  finite("'adam.v'", s.adam.v, true, file);
  if (!s.sn_u.empty()) {  // sn.u.0, sn.u.1, ...: one vector per layer, held here end to end
    size_t at = 0;
    const std::vector<SnLayer> layers = sn_layers(net);
    for (size_t i = 0; i < layers.size(); at += size_t(layers[i].rows), ++i)
      finite("'sn.u." + std::to_string(i) + "'", std::span<const float>(s.sn_u).subspan(at, size_t(layers[i].rows)),
             false, file);
  }
  if (saved_world == 1) finite("'buffer'", s.buffer.data, false, file);
  for (size_t r = 0; r < s.rank_buffers.size(); ++r)
    finite("'buffer.rank" + std::to_string(r) + "'", s.rank_buffers[r].data, false, file);
  if (!std::isfinite(s.lr) || s.lr <= 0) user_fail(file, ": 'lr' is ", s.lr, ", expected a finite learning rate > 0");
  if (s.epoch_reg.size() > size_t(s.epoch))
    user_fail(file, ": 'divergence.epoch_reg' holds ", s.epoch_reg.size(), " epochs' regulariser, but the state is after ",
              s.epoch, " epochs");
  for (const double r : s.epoch_reg)
    if (!std::isfinite(r) || r < 0) user_fail(file, ": 'divergence.epoch_reg' holds ", r, ", expected finite values >= 0");
  return s;
}

namespace {

// Little-endian on every machine this runs on (x86-64, aarch64): values are copied as they lie in memory.
class Packer {
 public:
  template <class T>
  void pod(const T& v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); }
  template <class T>
  void vec(const std::vector<T>& v) {
    pod(uint64_t(v.size()));
    out.append(reinterpret_cast<const char*>(v.data()), sizeof(T) * v.size());
  }
  void str(const std::string& s) { vec(std::vector<char>(s.begin(), s.end())); }
  std::string out;
};

class Unpacker {
 public:
  explicit Unpacker(const std::string& in) : in_(in) {}
  template <class T>
  T pod() {
    T v;
    take(&v, sizeof v);
    return v;
  }
  template <class T>
  std::vector<T> vec() {
    const uint64_t n = pod<uint64_t>();
    EBM_CHECK(n <= (in_.size() - pos_) / sizeof(T), "packed train state: truncated");
    std::vector<T> v(static_cast<size_t>(n));
    take(v.data(), sizeof(T) * v.size());
    return v;
  }
  std::string str() {
    const std::vector<char> c = vec<char>();
    return std::string(c.begin(), c.end());
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  void take(void* dst, size_t n) {
    EBM_CHECK(n <= in_.size() - pos_, "packed train state: truncated");
    if (n > 0) std::memcpy(dst, in_.data() + pos_, n);
    pos_ += n;
  }
  const std::string& in_;
  size_t pos_ = 0;
};

}  // namespace

ReplayBufferImages read_replay_buffer(const std::string& dir, const NetSpec& net) {
  const std::string file = (fs::path(dir) / "train_state.safetensors").string();
  if (!fs::exists(file))
    user_fail(file, " does not exist: the checkpoint holds no replay buffer (only training checkpoints do)");
  const SafeTensors st = SafeTensors::load(file);
  ReplayBufferImages b;
  std::vector<std::string> names;
  if (st.has("buffer")) {
    names.push_back("buffer");
  } else {
    for (int r = 0; st.has("buffer.rank" + std::to_string(r)); ++r) names.push_back("buffer.rank" + std::to_string(r));
    if (names.empty()) user_fail(file, ": no replay buffer ('buffer' or 'buffer.rank0') in it");
  }
  for (const std::string& name : names) {
    const Tensor t = st.get_f32(name);
    if (t.shape.size() != 4 || t.shape[1] != net.in_c || t.shape[2] != net.in_h || t.shape[3] != net.in_w)
      user_fail(file, ": replay buffer '", name, "' has shape ", shape_str(t.shape), ", expected [n,", net.in_c, ",",
                net.in_h, ",", net.in_w, "]");
    if (b.images.shape.empty()) b.images = t;
    else {
      b.images.shape[0] += t.shape[0];
      b.images.data.insert(b.images.data.end(), t.data.begin(), t.data.end());
    }
  }
  if (st.has("buffer.classes")) {
    b.classes = st.get_i32("buffer.classes");
    if (int64_t(b.classes.size()) != b.images.shape[0])
      user_fail(file, ": 'buffer.classes' holds ", b.classes.size(), " classes for ", b.images.shape[0], " images");
    for (int32_t y : b.classes)
      if (y < 0 || y >= net.outputs)
        user_fail(file, ": 'buffer.classes' holds class ", y, ", outside the network's 0 to ", net.outputs - 1);
  }
  return b;
}

std::string pack_train_state(const TrainState& s) {
  Packer p;
  p.vec(s.params);
  p.vec(s.adam.m);
  p.vec(s.adam.v);
  p.pod(s.adam.t);
  p.vec(s.buffer.shape);
  p.vec(s.buffer.data);
  p.vec(s.buffer_classes);
  p.vec(s.rng);
  p.str(s.rng_backend);
  p.pod(s.step);
  p.pod(s.epoch);
  p.pod(s.batch);
  p.pod(s.epoch_sums);
  p.pod(s.lr);
  p.pod(s.seed);
  p.pod(s.rollbacks);
  p.pod(s.data_images);
  p.pod(s.data_fingerprint);
  p.pod(uint64_t(s.rank_buffers.size()));
  for (size_t r = 0; r < s.rank_buffers.size(); ++r) {
    p.vec(s.rank_buffers[r].shape);
    p.vec(s.rank_buffers[r].data);
    p.vec(s.rank_rngs[r]);
  }
  p.vec(s.ema);
  p.vec(s.sn_u);
  p.vec(s.sampling);
  p.vec(s.epoch_reg);
  return std::move(p.out);
}

TrainState unpack_train_state(const std::string& bytes) {
  Unpacker u(bytes);
  TrainState s;
  s.params = u.vec<float>();
  s.adam.m = u.vec<float>();
  s.adam.v = u.vec<float>();
  s.adam.t = u.pod<int64_t>();
  auto tensor = [&u] {
    Tensor t;
    t.shape = u.vec<int64_t>();
    t.data = u.vec<float>();
    EBM_CHECK(t.shape.empty() ? t.data.empty() : int64_t(t.data.size()) == Tensor::numel_of(t.shape),
              "packed train state: tensor shape and data differ");
    return t;
  };
  s.buffer = tensor();
  s.buffer_classes = u.vec<int32_t>();
  s.rng = u.vec<uint64_t>();
  s.rng_backend = u.str();
  s.step = u.pod<int64_t>();
  s.epoch = u.pod<int64_t>();
  s.batch = u.pod<int64_t>();
  s.epoch_sums = u.pod<EpochSums>();
  s.lr = u.pod<double>();
  s.seed = u.pod<uint64_t>();
  s.rollbacks = u.pod<int64_t>();
  s.data_images = u.pod<int64_t>();
  s.data_fingerprint = u.pod<uint64_t>();
  const uint64_t ranks = u.pod<uint64_t>();
  for (uint64_t r = 0; r < ranks; ++r) {
    s.rank_buffers.push_back(tensor());
    s.rank_rngs.push_back(u.vec<uint64_t>());
  }
  s.ema = u.vec<float>();
  s.sn_u = u.vec<float>();
  s.sampling = u.vec<float>();
  s.epoch_reg = u.vec<double>();
  EBM_CHECK(u.done(), "packed train state: trailing bytes");
  return s;
}

}  // namespace ebm

namespace ebm {

void save_model(const std::string& dir, const NetSpec& net, const std::vector<float>& params, const Config& config,
                const std::string& extra_name, const std::string& extra_text) {
  const fs::path target(dir);
  const fs::path tmp = fresh_tmp_dir(target, "directory");
  SafeTensors model;
  model.metadata = {{"format", "pt"}, {"producer", "ebm_engine"}};
  for (const ParamTensor& t : net.tensors()) model.put_f32(t.name, t.shape, params.data() + t.offset);
  model.save((tmp / "model.safetensors").string());
  write_text(tmp / "config.json", config_to_json(config).dump(2) + "\n");
  if (!extra_name.empty()) write_text(tmp / extra_name, extra_text);
  swap_into_place(tmp, target);
}

}  // namespace ebm
