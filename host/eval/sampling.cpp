#include "host/eval/sampling.hpp"

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "host/eval/jem_eval.hpp"  // conditional_classes
#include "host/eval/scoring.hpp"
#include "host/io/charts.hpp"

namespace ebm {

EngineOptions tool_engine_options(const Model& model) { return tool_engine_options(model.config, model.net); }

EngineOptions tool_engine_options(const Config& config, const NetSpec& net) {
  EngineOptions o = engine_options_for(config);
  o.net = net;
  // Tools never train: the smallest buffer the backends accept, not the run's 8192 images.
  o.buffer_capacity = config.data.batch_size;
  o.buffer_initial = config.data.batch_size;
  o.buffer_per_class = false;  // the run's per-class rings are read from its checkpoint (read_replay_buffer)
  // model.safetensors holds the sampling weights already (EMA'd and spectrally normalised where the run
  // had them on): the tool's backend runs them as they are.
  o.ema_decay = 0;
  o.spectral_norm = false;
  o.shift = 0;  // data.shift moves training's real images: nothing a tool does
  return o;
}

SamplerParams generate_params(const Config& c) {
  return {c.generate.steps, float(c.generate.step_size), float(c.generate.noise), float(c.sampler.grad_clip)};
}

Tensor uniform_start(int n, const NetSpec& net, uint64_t seed) {
  Tensor x({n, net.in_c, net.in_h, net.in_w});
  Rng rng(seed, RngStream::kInit);
  rng.offset = uint64_t(1) << 48;
  rng.uniform(x.ptr(), x.numel(), -1.0f, 1.0f);
  return x;
}

namespace {

// Rows of b for chains of classes y (per-class rings) or the newest n (one ring), newest first. `cycle`: a ring
// with fewer images than its chains is gone round again (else a UserError naming `where`).
Tensor buffer_rows(const ReplayBufferImages& b, int64_t n, const std::vector<int32_t>& y, int K, bool cycle,
                   const std::string& where) {
  const int64_t held = b.images.shape.empty() ? 0 : b.images.shape[0];
  EBM_CHECK(b.images.shape.size() == 4 && held > 0, "buffer rows: an empty replay buffer");
  const int64_t img = b.images.numel() / held;
  std::vector<int64_t> shape = b.images.shape;
  if (b.classes.empty()) {
    if (n > held && !cycle) user_fail("--n ", n, " but the replay buffer of ", where, " holds ", held, " images");
    shape[0] = std::min(n, held);
    Tensor x(shape);
    for (int64_t i = 0; i < shape[0]; ++i)  // newest first
      std::copy_n(b.images.data.begin() + (held - 1 - i) * img, img, x.data.begin() + i * img);
    return x;
  }
  EBM_CHECK(int64_t(b.classes.size()) == held && int64_t(y.size()) == n, "buffer rows: one class per row");
  std::vector<std::vector<int64_t>> ring(static_cast<size_t>(K));  // each class's rows in the buffer, oldest first
  for (int64_t i = 0; i < held; ++i) {
    EBM_CHECK(b.classes[size_t(i)] >= 0 && b.classes[size_t(i)] < K, "buffer rows: a class out of range");
    ring[size_t(b.classes[size_t(i)])].push_back(i);
  }
  std::vector<int64_t> used(size_t(K), 0), asked(size_t(K), 0);
  for (int32_t c : y) {
    EBM_CHECK(c >= 0 && c < K, "buffer rows: an asked class out of range");
    ++asked[size_t(c)];
  }
  for (int k = 0; k < K; ++k)
    if (asked[size_t(k)] > int64_t(ring[size_t(k)].size()) && (!cycle || ring[size_t(k)].empty()))
      user_fail("--n ", n, ": ", asked[size_t(k)], " chains of class ", k, " but its ring in the replay buffer of ",
                where, " holds ", ring[size_t(k)].size(), " images");
  shape[0] = n;
  Tensor x(shape);
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<int64_t>& r = ring[size_t(y[size_t(i)])];
    const int64_t j = used[size_t(y[size_t(i)])]++ % int64_t(r.size());
    std::copy_n(b.images.data.begin() + r[r.size() - 1 - size_t(j)] * img, img, x.data.begin() + i * img);  // newest first
  }
  return x;
}

}  // namespace

Tensor buffer_start(const ReplayBufferImages& b, int n, const std::vector<int32_t>& classes, int K,
                    const std::string& where) {
  if (b.classes.empty()) return buffer_rows(b, n, {}, K, false, where);
  return buffer_rows(b, n, classes.empty() ? conditional_classes(n, K) : classes, K, false, where);
}

Tensor newest_buffer_rows(const ReplayBufferImages& b, int64_t n, int K, std::vector<int32_t>& classes) {
  classes.clear();
  if (b.images.shape.empty() || b.images.shape[0] == 0) return Tensor();
  if (!b.classes.empty()) classes = conditional_classes(int(n), K);
  return buffer_rows(b, n, classes, K, true, "the run");
}

SampleRun run_sample(Backend& backend, Tensor start, const SamplerParams& p, uint64_t seed, int every,
                     const std::vector<int32_t>* classes) {
  const NetSpec& net = backend.options().net;
  EBM_CHECK(start.shape.size() == 4 && start.shape[1] == net.in_c && start.shape[2] == net.in_h &&
                start.shape[3] == net.in_w,
            "run_sample: start images " + shape_str(start.shape) + " do not fit the network");
  SampleRun r;
  r.x = std::move(start);
  if (every > 0) {
    backend.sample(r.x, p, seed, every, &r.trajectory, classes);
    for (size_t k = 0; k < r.trajectory.size(); ++k) {
      r.snapshot_steps.push_back(std::min(int(k) * every, p.steps));
      const std::vector<float> e = energies_from_f(backend.energy(r.trajectory[k]));
      r.snapshot_mean_energy.push_back(std::accumulate(e.begin(), e.end(), 0.0) / double(std::max<size_t>(e.size(), 1)));
    }
  } else {
    backend.sample(r.x, p, seed, 0, nullptr, classes);
  }
  r.energy = energies_from_f(backend.energy(r.x));
  return r;
}

Image sample_grid(const Tensor& x, const std::vector<float>& energy, int scale) {
  EBM_CHECK(x.shape.size() == 4 && size_t(x.shape[0]) == energy.size(), "sample_grid: one energy per image");
  std::vector<std::string> labels;
  for (float e : energy) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "E=%.3g", double(e));
    labels.push_back(buf);
  }
  return image_grid(x.ptr(), int(x.shape[0]), int(x.shape[2]), int(x.shape[3]), 0, labels, scale);
}

Image trajectory_image(const std::vector<Tensor>& snapshots, const std::vector<int>& steps, int chains, int scale) {
  EBM_CHECK(!snapshots.empty() && snapshots.size() == steps.size(), "trajectory_image: one step number per snapshot");
  const int cols = int(snapshots.size());
  const Tensor& first = snapshots[0];
  const int h = int(first.shape[2]), w = int(first.shape[3]);
  const int rows = int(std::min<int64_t>(chains, first.shape[0]));
  EBM_CHECK(rows > 0, "trajectory_image: no chains");

  // Tiles in reading order: chain r's snapshot c at (r, c).
  const int64_t img = int64_t(h) * w;
  std::vector<float> tiles(size_t(rows) * cols * img);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c)
      std::copy_n(snapshots[c].ptr() + r * img, img, tiles.data() + (int64_t(r) * cols + c) * img);
  const Image body = image_grid(tiles.data(), rows * cols, h, w, cols, {}, scale);

  // A header strip above the grid with each column's step number, in the largest font (1..2) that fits.
  const int cell_w = w * scale;
  int font = 2;
  for (int s : steps)
    if (text_width(std::to_string(s), font) + 4 > cell_w) font = 1;
  const int header = text_height(font) + 8;
  Image out(body.width, body.height + header, 3, Rgb{96, 96, 110});
  fill_rect(out, 0, 0, out.width, header, Rgb{16, 16, 24});
  for (int c = 0; c < cols; ++c) {
    const std::string label = std::to_string(steps[c]);
    const int cx = kGridSep + c * (cell_w + kGridSep) + cell_w / 2;
    draw_text(out, cx - text_width(label, font) / 2, 4, label, Rgb{255, 214, 92}, font);
  }
  for (int y = 0; y < body.height; ++y)
    std::copy_n(body.at(0, y), size_t(body.width) * body.channels, out.at(0, y + header));
  return out;
}

}  // namespace ebm
