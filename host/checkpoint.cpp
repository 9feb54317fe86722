#include "host/checkpoint.hpp"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/error.hpp"
#include "host/safetensors.hpp"

namespace fs = std::filesystem;

namespace ebm {

NetSpec net_spec_for(const Config& c) {
  return NetSpec::make(c.model.channels, c.model.kernel_size, c.model.stride, c.data.pad_to);
}

namespace {

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p);
  f << text;
  f.close();
  if (!f) user_fail(p.string(), ": cannot write (", std::strerror(errno), ")");
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
  const fs::path tmp = target.string() + ".tmp." + std::to_string(getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) user_fail(tmp.string(), ": cannot create checkpoint directory (", ec.message(), ")");

  SafeTensors model;
  model.metadata = {{"format", "pt"}, {"producer", "ebm_engine"}};
  for (const ParamTensor& t : net.tensors()) model.put_f32(t.name, t.shape, s.params.data() + t.offset);
  model.save((tmp / "model.safetensors").string());

  SafeTensors st;
  const std::vector<int64_t> np{net.num_params};
  st.put_f32("adam.m", np, s.adam.m.data());
  st.put_f32("adam.v", np, s.adam.v.data());
  st.put_i64("adam.t", {1}, &s.adam.t);
  st.put("buffer", s.buffer);
  st.put_u64("rng.state", {int64_t(s.rng.size())}, s.rng.data());
  const int64_t counters[4] = {s.step, s.epoch, s.batch, s.rollbacks};
  st.put_i64("counters", {4}, counters);  // step, epoch, batch, rollbacks
  st.put_f64("epoch_sums", {6}, s.epoch_sums.data());
  st.put_f64("lr", {1}, &s.lr);
  st.put_u64("seed", {1}, &s.seed);
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
                shape_str(t.shape), " (model.channels / kernel_size / data.pad_to differ from the checkpoint's)");
    std::copy(v.data.begin(), v.data.end(), params.begin() + t.offset);
  }
  for (const std::string& name : st.names()) {
    bool known = false;
    for (const ParamTensor& t : net.tensors()) known |= t.name == name;
    if (!known) user_fail(file, ": unexpected tensor '", name, "' for this network");
  }
  return params;
}

Model load_model(const std::string& dir) {
  const fs::path d(dir);
  if (!fs::is_directory(d)) user_fail(dir, ": not a checkpoint directory (it does not exist)");
  const fs::path cfg = d / "config.json";
  std::ifstream f(cfg);
  if (!f) user_fail(cfg.string(), ": missing (a checkpoint holds config.json, model.safetensors, train_state.safetensors)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception& e) {
    user_fail(cfg.string(), ": invalid JSON");
  }
  Model m;
  m.config = config_from_json(j, cfg.string());
  m.net = net_spec_for(m.config);
  m.params = load_params((d / "model.safetensors").string(), m.net);
  return m;
}

TrainState load_train_state(const std::string& dir, const NetSpec& net) {
  const fs::path d(dir);
  if (!fs::is_directory(d)) user_fail(dir, ": not a checkpoint directory (it does not exist)");
  TrainState s;
  s.params = load_params((d / "model.safetensors").string(), net);
  const std::string file = (d / "train_state.safetensors").string();
  const SafeTensors st = SafeTensors::load(file);
  auto expect_len = [&](const char* name, size_t got, size_t want) {
    if (got != want) user_fail(file, ": '", name, "' has ", got, " values, expected ", want);
  };
  s.adam.m = st.get_f32("adam.m").data;
  s.adam.v = st.get_f32("adam.v").data;
  expect_len("adam.m", s.adam.m.size(), size_t(net.num_params));
  expect_len("adam.v", s.adam.v.size(), size_t(net.num_params));
  const auto t = st.get_i64("adam.t");
  expect_len("adam.t", t.size(), 1);
  s.adam.t = t[0];
  s.buffer = st.get_f32("buffer");
  if (s.buffer.shape.size() != 4 || s.buffer.shape[1] != net.in_c || s.buffer.shape[2] != net.in_h ||
      s.buffer.shape[3] != net.in_w)
    user_fail(file, ": replay buffer has shape ", shape_str(s.buffer.shape), ", expected [n,", net.in_c, ",",
              net.in_h, ",", net.in_w, "]");
  s.rng = st.get_u64("rng.state");
  const auto c = st.get_i64("counters");
  expect_len("counters", c.size(), 4);
  s.step = c[0]; s.epoch = c[1]; s.batch = c[2]; s.rollbacks = c[3];
  const auto sums = st.get_f64("epoch_sums");
  expect_len("epoch_sums", sums.size(), 6);
  std::copy(sums.begin(), sums.end(), s.epoch_sums.begin());
  const auto lr = st.get_f64("lr");
  expect_len("lr", lr.size(), 1);
  s.lr = lr[0];
  const auto seed = st.get_u64("seed");
  expect_len("seed", seed.size(), 1);
  s.seed = seed[0];
  auto it = st.metadata.find("rng_backend");
  s.rng_backend = it == st.metadata.end() ? "" : it->second;
  if (s.step < 0 || s.epoch < 0 || s.batch < 0) user_fail(file, ": negative step counters");
  return s;
}

}  // namespace ebm
