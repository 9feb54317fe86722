// ebm_sample's pieces: chains from --init with noise 0 reproduce the unit-tested Langevin update and do
// not depend on the seed; the trajectory's snapshots and step numbers; settings taken from a checkpoint's
// config; and the pictures decode (libpng) at the sizes their layout promises.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "engine/cpu/cpu_backend.hpp"
#include "engine/rng.hpp"
#include "host/eval/sampling.hpp"
#include "host/io/charts.hpp"
#include "kernels/ebm_math.hpp"
#include "tests/test_support.hpp"

using namespace ebm;
namespace fs = std::filesystem;

namespace {

using test::random_images;

EngineOptions sample_tool_options(int hw = 8) {
  EngineOptions o;
  o.net = NetSpec::make({4, 8}, 3, 2, hw);
  o.seed = 11;
  o.batch_size = 4;
  o.buffer_capacity = 8;
  o.buffer_initial = 4;
  return o;
}


}  // namespace

TEST(SampleTool, NoiseZeroFromInitIsTheUnitTestedUpdate) {
  CpuBackend be(sample_tool_options());
  const Tensor init = random_images(5, 8, 1);  // 5 rows: more than one batch of 4
  std::vector<float> f;
  Tensor dfdx;
  be.input_grad(init, f, dfdx);
  Tensor expect = init;
  for (int64_t i = 0; i < init.numel(); ++i) expect.data[i] = langevin_descend(init.data[i], dfdx.data[i], 10.0f, 0.03f);

  const SampleRun r = run_sample(be, init, {1, 10.0f, 0.0f, 0.03f}, 99);
  ASSERT_EQ(r.x.shape, init.shape);
  // 1e-6: the compiler may fuse x − step·g into one FMA in the vectorised loop and not in this one.
  for (int64_t i = 0; i < init.numel(); ++i) ASSERT_NEAR(r.x.data[i], expect.data[i], 1e-6);
  // The energies reported are E = −f of the final samples.
  const std::vector<float> f_after = be.energy(r.x);
  ASSERT_EQ(r.energy.size(), 5u);
  for (size_t i = 0; i < f_after.size(); ++i) EXPECT_EQ(r.energy[i], -f_after[i]);
  EXPECT_TRUE(r.trajectory.empty());
}

TEST(SampleTool, NoiseZeroFromInitIsDeterministicWhateverTheSeed) {
  CpuBackend be(sample_tool_options());
  const Tensor init = random_images(3, 8, 2);
  const SamplerParams p{6, 10.0f, 0.0f, 0.03f};
  const SampleRun a = run_sample(be, init, p, 1), b = run_sample(be, init, p, 12345);
  EXPECT_EQ(a.x.data, b.x.data);
  EXPECT_NE(a.x.data, init.data);  // the chains moved
  // With noise the seed matters.
  const SamplerParams q{6, 10.0f, 0.05f, 0.03f};
  EXPECT_NE(run_sample(be, init, q, 1).x.data, run_sample(be, init, q, 2).x.data);
}

TEST(SampleTool, TrajectorySnapshotsEveryKStepsAndTheLastIsTheResult) {
  CpuBackend be(sample_tool_options());
  const Tensor init = random_images(3, 8, 3);
  const SamplerParams p{5, 10.0f, 0.0f, 0.03f};
  const SampleRun r = run_sample(be, init, p, 7, 2);
  EXPECT_EQ(r.snapshot_steps, (std::vector<int>{0, 2, 4, 5}));
  ASSERT_EQ(r.trajectory.size(), 4u);
  ASSERT_EQ(r.snapshot_mean_energy.size(), 4u);
  EXPECT_EQ(r.trajectory.front().data, init.data);
  EXPECT_EQ(r.trajectory.back().data, r.x.data);
  // Chunked sampling is the same chain as one call.
  EXPECT_EQ(run_sample(be, init, p, 7).x.data, r.x.data);
  // Snapshot energies are the chains' mean E at that step.
  const std::vector<float> f0 = be.energy(init);
  double m0 = 0;
  for (float v : f0) m0 -= v;
  EXPECT_NEAR(r.snapshot_mean_energy[0], m0 / 3, 1e-6);
}

TEST(SampleTool, SettingsComeFromTheCheckpointConfig) {
  Model m;
  m.config.generate = {9, 123, 4.5, 0.25};
  m.config.sampler.grad_clip = 0.07;
  m.config.data.batch_size = 32;
  m.config.seed = 77;
  m.net = NetSpec::make({4, 8}, 3, 2, 32);
  const SamplerParams p = generate_params(m.config);
  EXPECT_EQ(p.steps, 123);
  EXPECT_FLOAT_EQ(p.step_size, 4.5f);
  EXPECT_FLOAT_EQ(p.noise, 0.25f);
  EXPECT_FLOAT_EQ(p.grad_clip, 0.07f);
  const EngineOptions o = tool_engine_options(m);
  EXPECT_EQ(o.batch_size, 32);
  EXPECT_EQ(o.seed, 77u);
  EXPECT_EQ(o.net.num_params, m.net.num_params);
}

TEST(SampleTool, UniformStartIsSeededNoiseInRange) {
  const NetSpec net = NetSpec::make({4, 8}, 3, 2, 8);
  const Tensor a = uniform_start(4, net, 5), b = uniform_start(4, net, 5), c = uniform_start(4, net, 6);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{4, 1, 8, 8}));
  EXPECT_EQ(a.data, b.data);
  EXPECT_NE(a.data, c.data);
  const auto [lo, hi] = std::minmax_element(a.data.begin(), a.data.end());
  EXPECT_GE(*lo, -1.0f);
  EXPECT_LE(*hi, 1.0f);
  EXPECT_LT(*lo, -0.8f);  // spread over the range, not a constant
  EXPECT_GT(*hi, 0.8f);
}

class SamplePictures : public ::testing::Test {
 protected:
  void SetUp() override {
#if !EBM_HAVE_PNG
    GTEST_SKIP() << "built without libpng: PNG tests skipped";
#endif
    dir_ = fs::temp_directory_path() / ("ebm_test_sample_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(SamplePictures, GridDecodesAtTheLayoutSize) {
  const Tensor x = random_images(6, 32, 4);
  const Image grid = sample_grid(x, {-0.5f, 0.25f, 1e-3f, -12.f, 3.f, 0.f});
  write_png(path("grid.png"), grid);
  const Image back = read_png(path("grid.png"));
  // 6 images → 3 columns x 2 rows of 64-pixel tiles; the widest label "E=0.001" (41 px at font 1) is too
  // wide for font 2 on a 64-pixel tile, so each row has a strip of text_height(1) + 6 under it.
  EXPECT_EQ(back.width, 3 * 64 + 4 * kGridSep);
  EXPECT_EQ(back.height, 2 * (64 + text_height(1) + 6) + 3 * kGridSep);
  EXPECT_EQ(back.pixels, grid.pixels);
}

TEST_F(SamplePictures, TrajectoryDecodesAtTheLayoutSizeWithTilesInPlace) {
  CpuBackend be(sample_tool_options(32));
  const Tensor init = random_images(10, 32, 5);
  const SampleRun r = run_sample(be, init, {7, 10.0f, 0.005f, 0.03f}, 3, 3);
  ASSERT_EQ(r.snapshot_steps, (std::vector<int>{0, 3, 6, 7}));
  const Image img = trajectory_image(r.trajectory, r.snapshot_steps);
  write_png(path("traj.png"), img);
  const Image back = read_png(path("traj.png"));
  ASSERT_EQ(back.pixels, img.pixels);
  // 8 chains of 10 (rows) x 4 snapshots (columns), 64-pixel tiles, a header of step numbers at font 2.
  const int header = text_height(2) + 8;
  EXPECT_EQ(back.width, 4 * 64 + 5 * kGridSep);
  EXPECT_EQ(back.height, header + 8 * 64 + 9 * kGridSep);
  // Chain 2's snapshot 1, pixel (5, 9) of the image, upscaled 2x.
  auto gray = [](float v) { return uint8_t(std::lround(std::clamp((v + 1.f) * 127.5f, 0.f, 255.f))); };
  const float v = r.trajectory[1].data[2 * 32 * 32 + 9 * 32 + 5];
  const int px = kGridSep + 1 * (64 + kGridSep) + 5 * 2, py = header + kGridSep + 2 * (64 + kGridSep) + 9 * 2;
  EXPECT_EQ(back.get(px, py).r, gray(v));
  EXPECT_EQ(back.get(px + 1, py + 1).g, gray(v));
  // The header is not blank: the step numbers were drawn.
  int lit = 0;
  for (int y = 0; y < header; ++y)
    for (int x = 0; x < back.width; ++x) lit += back.get(x, y).r > 128;
  EXPECT_GT(lit, 10);
}

// A run with the training recipe samples (its epoch grids) on its sampling weights; a tool given those weights
// (model.safetensors) and neither feature (tool_engine_options) draws the very same chains and energies.
TEST(SampleTool, ToolOnTheSamplingWeightsSamplesAsTheRecipeRunDoes) {
  EngineOptions o = sample_tool_options(32);
  o.ema_decay = 0.6;
  o.spectral_norm = true;
  CpuBackend run(o);
  const Tensor data = random_images(8, 32, 3);
  run.set_train_data(data);
  for (int b = 0; b < 2; ++b) run.train_step(b);
  CpuBackend tool(sample_tool_options(32));
  tool.set_params(run.sampling_params());
  const Tensor init = random_images(3, 32, 4);
  const SamplerParams p{3, 10.0f, 0.005f, 0.03f};
  const SampleRun a = run_sample(run, init, p, 7), b = run_sample(tool, init, p, 7);
  EXPECT_EQ(a.x.data, b.x.data);
  EXPECT_EQ(a.energy, b.energy);
  CpuBackend raw(sample_tool_options(32));
  raw.set_params(run.params());
  EXPECT_NE(run_sample(raw, init, p, 7).energy, a.energy) << "the raw θ is not what the run samples with";
}
