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

Tensor buffer_start(const ReplayBufferImages& b, int n, const std::vector<int32_t>& classes, int K,
                    const std::string& where) {
  const int64_t held = b.images.shape.empty() ? 0 : b.images.shape[0];
  const int64_t img = held > 0 ? b.images.numel() / held : 0;
  std::vector<int64_t> shape = b.images.shape;
  shape[0] = n;
  Tensor x(shape);
  if (b.classes.empty()) {
    if (n > held) user_fail("--n ", n, " but the replay buffer of ", where, " holds ", held, " images");
    std::copy(b.images.data.end() - int64_t(n) * img, b.images.data.end(), x.data.begin());
    return x;
  }
  const std::vector<int32_t> y = classes.empty() ? conditional_classes(n, K) : classes;
  std::vector<std::vector<int64_t>> ring(static_cast<size_t>(K));  // each class's rows in the buffer, oldest first
  for (int64_t i = 0; i < held; ++i) ring[size_t(b.classes[size_t(i)])].push_back(i);
  std::vector<int64_t> used(size_t(K), 0), asked(size_t(K), 0);
  for (int32_t c : y) ++asked[size_t(c)];
  for (int k = 0; k < K; ++k)
    if (asked[size_t(k)] > int64_t(ring[size_t(k)].size()))
      user_fail("--n ", n, ": ", asked[size_t(k)], " chains of class ", k, " but its ring in the replay buffer of ",
                where, " holds ", ring[size_t(k)].size(), " images");
  for (int i = 0; i < n; ++i) {
    const std::vector<int64_t>& r = ring[size_t(y[size_t(i)])];
    const int64_t row = r[r.size() - 1 - size_t(used[size_t(y[size_t(i)])]++)];  // newest first
    std::copy_n(b.images.data.begin() + row * img, img, x.data.begin() + int64_t(i) * img);
  }
  return x;
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
