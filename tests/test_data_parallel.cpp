// Data-parallel training without a launcher: W ranks as W threads of this process (make_thread_group),
// checked against one rank with the same global batch. The maths says they compute the same step — the
// same rows, the same random numbers, gradients scaled by the global counts and summed — so what may differ
// is float summation order alone (tolerances below). tests/cli_mpi.sh runs the same checks with mpirun.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "engine/communicator.hpp"
#include "engine/cpu/cpu_backend.hpp"
#include "engine/rng.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/idx.hpp"
#include "host/io/png_image.hpp"
#include "host/io/safetensors.hpp"
#include "host/train/distributed.hpp"
#include "host/train/mpi_communicator.hpp"
#include "host/train/training_run.hpp"
#include "tests/test_support.hpp"

namespace fs = std::filesystem;
using namespace ebm;

namespace {

// Runs fn(rank, comm) on every rank of a thread group; rethrows the first rank's exception, if any.
void on_ranks(int n, const std::function<void(int, Communicator&)>& fn) {
  auto comms = make_thread_group(n);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        fn(r, *comms[size_t(r)]);
      } catch (...) {
        errors[size_t(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

Tensor random_images(int64_t n, uint64_t seed) {
  Tensor t({n, 1, 32, 32});
  Rng r(seed, RngStream::kInit);
  r.uniform(t.ptr(), t.numel(), -1.0f, 1.0f);
  return t;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) d = std::max(d, double(std::fabs(a[i] - b[i])));
  return d;
}

EngineOptions options(int batch) {
  EngineOptions o;
  o.net = NetSpec::make({16, 32, 64, 64}, 3, 2, 32);  // the seed's network
  o.batch_size = batch;
  o.sampler.steps = 3;
  o.buffer_capacity = 512;
  o.buffer_initial = 128;
  o.reinit_prob = 1.0;  // every fake row fresh: the W-rank and 1-rank buffer draws coincide
  return o;
}

struct StepResult {
  std::vector<float> params, m, v;
  std::vector<uint64_t> rng;
  std::vector<StepMetrics> metrics;
  Tensor buffer;
};

StepResult train(Backend& be, const Tensor& data, int steps) {
  be.set_train_data(data);
  for (int s = 0; s < steps; ++s) {
    const int64_t b = s % be.batches_per_epoch();
    if (b == 0) be.begin_epoch(s / be.batches_per_epoch());
    be.train_step(b);
  }
  return {be.params(), be.adam().m, be.adam().v, be.rng_state(), be.drain_metrics(), be.buffer()};
}

// Tolerances, with their reasons (what differs is only the order of float32 additions: rows split over
// ranks and threads, GEMM blocking that depends on the row count, then the all-reduce):
//  - gradients, absolute (read from Adam's first moment after one step, m = (1 − β1)·g): each component is a
//    sum over the 256 rows of terms df_i·∂f_i/∂θ with |df_i| ≈ 1/128, whose absolute values add up to O(1);
//    regrouping such a float32 sum moves it by ~√256·2⁻²⁴·O(1) ≈ 1e-6 however much the terms cancel (the
//    dense bias's gradient cancels down to ~3e-6, and moves by 3e-7 here): 2e-6.
//  - parameters after k steps, absolute: Adam's update lr·m̂/(√v̂ + ε) moves by ulps when g does, except for
//    components with |g| ≲ ε, where it can move by up to lr = 1e-4; no such component in these seeded runs
//    (observed ≤ 2e-8): 1e-6.
//  - metrics: double sums of the same energies regrouped, the energies themselves ulps apart: 1e-6.
constexpr double kGradTol = 2e-6, kParamTol = 1e-6, kMetricTol = 1e-6;

// Largest |g_a − g_b| of the gradients behind two first moments (one Adam step from zero moments).
double grad_diff(const std::vector<float>& m_a, const std::vector<float>& m_b, double beta1 = 0.9) {
  return max_abs_diff(m_a, m_b) / (1.0 - beta1);
}

}  // namespace

TEST(DataParallel, SharesSplitEveryBatchWithoutOverlap) {
  for (int64_t total : {0, 1, 5, 128, 129, 255}) {
    for (int size : {1, 2, 3, 8}) {
      int64_t next = 0;
      for (int r = 0; r < size; ++r) {
        const Share s = share_of(total, r, size);
        EXPECT_EQ(s.first, next) << total << " over " << size;
        EXPECT_GE(s.count, total / size);
        EXPECT_LE(s.count, total / size + 1);
        next += s.count;
      }
      EXPECT_EQ(next, total);
    }
  }
  EXPECT_EQ(share_of(256, 1, 2).first, 128) << "a full global batch: rank r takes rows [rB, (r+1)B)";
}

TEST(DataParallel, ThreadGroupCollectives) {
  on_ranks(3, [](int r, Communicator& c) {
    std::vector<float> x = {float(r), 1.0f};
    c.allreduce(x.data(), 2, ReduceOp::kSum);
    EXPECT_EQ(x, (std::vector<float>{3.0f, 3.0f}));
    double m[2] = {double(r), -double(r)};
    c.allreduce(m, 2, ReduceOp::kMax);
    EXPECT_EQ(m[0], 2.0);
    EXPECT_EQ(m[1], 0.0);
    std::string s = r == 1 ? "from one" : "";
    broadcast_string(c, s, 1);
    EXPECT_EQ(s, "from one");
    const auto all = c.gather("rank" + std::to_string(r), 0);
    if (r == 0) EXPECT_EQ(all, (std::vector<std::string>{"rank0", "rank1", "rank2"}));
    else EXPECT_TRUE(all.empty());
    const std::vector<std::string> parts = r == 2 ? std::vector<std::string>{"a", "bb", "ccc"} : std::vector<std::string>{};
    EXPECT_EQ(c.scatter(parts, 2), std::string(size_t(r + 1), char('a' + r)));
    EXPECT_TRUE(any_rank(c, r == 2));
    EXPECT_FALSE(any_rank(c, false));
  });
}

TEST(DataParallel, AgreeReportsOneRanksErrorOnEveryRank) {
  std::atomic<int> shared{0};
  on_ranks(2, [&](int r, Communicator& c) {
    try {
      agree(c, [&] {
        if (r == 1) user_fail("no data on this node");
      });
      ADD_FAILURE() << "rank " << r << ": expected SharedUserError";
    } catch (const SharedUserError& e) {
      EXPECT_STREQ(e.what(), "rank 1 of 2: no data on this node");
      ++shared;
    }
  });
  EXPECT_EQ(shared.load(), 2);
}

// The check: 2 ranks × 64 images give the gradient of 1 rank × 128 on the same data.
TEST(DataParallel, TwoRanksOf64GiveTheGradientOfOneRankOf128) {
  const Tensor data = random_images(128, 7);
  for (float noise : {0.0f, 0.005f}) {  // sampler noise off, then on (each rank draws its slice of the stream)
    EngineOptions one = options(128);
    one.sampler.noise = noise;
    CpuBackend single(one);
    const StepResult a = train(single, data, 1);

    std::vector<StepResult> ranks(2);
    on_ranks(2, [&](int r, Communicator& c) {
      EngineOptions o = options(64);
      o.sampler.noise = noise;
      o.comm = &c;
      CpuBackend be(o);
      ranks[size_t(r)] = train(be, data, 1);
    });
    for (int r = 0; r < 2; ++r) {
      SCOPED_TRACE("noise " + std::to_string(noise) + ", rank " + std::to_string(r));
      EXPECT_LT(grad_diff(a.m, ranks[size_t(r)].m), kGradTol) << "gradient";
      EXPECT_EQ(ranks[size_t(r)].params, ranks[0].params) << "every rank holds the same parameters";
      EXPECT_LT(max_abs_diff(a.params, ranks[size_t(r)].params), kParamTol);
      EXPECT_EQ(a.rng, ranks[size_t(r)].rng) << "every rank advanced every stream past the global draw";
      ASSERT_EQ(ranks[size_t(r)].metrics.size(), 1u);
      const StepMetrics& m = ranks[size_t(r)].metrics[0];
      EXPECT_NEAR(m.loss, a.metrics[0].loss, kMetricTol);
      EXPECT_NEAR(m.real, a.metrics[0].real, kMetricTol);
      EXPECT_NEAR(m.fake, a.metrics[0].fake, kMetricTol);
      EXPECT_NEAR(m.max_abs_f, a.metrics[0].max_abs_f, kMetricTol);
    }
    // The shards are the 1-rank buffer's rows: initial 64 + 64 each, rank r's the r-th of each group.
    const int64_t img = 1024;
    for (int r = 0; r < 2; ++r) {
      const Tensor& shard = ranks[size_t(r)].buffer;
      ASSERT_EQ(shard.dim(0), 128);
      for (int64_t i = 0; i < 128; ++i) {
        const int64_t global = (i < 64 ? 0 : 128) + r * 64 + (i % 64);
        for (int64_t j = 0; j < img; j += 97)
          ASSERT_NEAR(shard.data[size_t(i * img + j)], a.buffer.data[size_t(global * img + j)], 1e-5)
              << "shard " << r << " row " << i;
      }
    }
  }
}

// JEM with shifted real rows: two ranks of 64 give the gradient, the cross-entropy and the accuracy of one rank of
// 128 (the labels follow the permutation's rows to their rank; the shifts are drawn per global row).
TEST(DataParallel, JemWithShiftsOnTwoRanksMatchesOneRank) {
  const Tensor data = random_images(128, 7);
  std::vector<int32_t> labels(128);
  for (int i = 0; i < 128; ++i) labels[size_t(i)] = (i * 7) % 10;
  auto jem = [](int batch) {
    EngineOptions o = options(batch);
    o.net = NetSpec::make({16, 32, 64, 64}, 3, 2, 32, 1, 10);
    o.objective = Objective::kJem;
    o.shift = 2;
    return o;
  };
  CpuBackend single(jem(128));
  single.set_train_data(data);
  single.set_train_labels(labels);
  const StepResult a = train(single, data, 1);
  std::vector<StepResult> ranks(2);
  on_ranks(2, [&](int r, Communicator& c) {
    EngineOptions o = jem(64);
    o.comm = &c;
    CpuBackend be(o);
    be.set_train_data(data);
    be.set_train_labels(labels);
    ranks[size_t(r)] = train(be, data, 1);
  });
  ASSERT_GT(a.metrics.at(0).ce, 0.0);
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE("rank " + std::to_string(r));
    EXPECT_LT(grad_diff(a.m, ranks[size_t(r)].m), kGradTol) << "gradient";
    const StepMetrics& m = ranks[size_t(r)].metrics.at(0);
    EXPECT_NEAR(m.loss, a.metrics[0].loss, kMetricTol);
    EXPECT_NEAR(m.ce, a.metrics[0].ce, kMetricTol);
    EXPECT_EQ(m.accuracy, a.metrics[0].accuracy);
  }
}

// A partial last batch split unevenly (129 rows, global batch 128: the second batch has one real row, on rank
// 1, the others have none), across an epoch boundary, on 2 and 4 ranks.
TEST(DataParallel, PartialBatchesAndEpochsMatchOneRank) {
  const Tensor data = random_images(129, 11);
  for (int world : {2, 4}) {
    SCOPED_TRACE(std::to_string(world) + " ranks");
    CpuBackend single(options(128));
    const StepResult a = train(single, data, 4);
    std::vector<StepResult> ranks(static_cast<size_t>(world));
    on_ranks(world, [&](int r, Communicator& c) {
      EngineOptions o = options(128 / world);
      o.comm = &c;
      CpuBackend be(o);
      ranks[size_t(r)] = train(be, data, 4);
      EXPECT_EQ(be.batches_per_epoch(), 2);
    });
    for (int r = 0; r < world; ++r) {
      EXPECT_LT(max_abs_diff(a.params, ranks[size_t(r)].params), kParamTol) << "rank " << r;
      EXPECT_EQ(a.rng, ranks[size_t(r)].rng) << "rank " << r;
      ASSERT_EQ(ranks[size_t(r)].metrics.size(), 4u);
      for (size_t s = 0; s < 4; ++s) EXPECT_NEAR(ranks[size_t(r)].metrics[s].loss, a.metrics[s].loss, kMetricTol);
    }
  }
}

TEST(DataParallel, ValidationMatchesOneRank) {
  const Tensor train_set = random_images(64, 3), test = random_images(100, 5);  // 100 = 64 + a partial 36
  CpuBackend single(options(64));
  const ValidationMetrics a = single.validate(test, 2);
  on_ranks(2, [&](int, Communicator& c) {
    EngineOptions o = options(32);
    o.comm = &c;
    CpuBackend be(o);
    const ValidationMetrics v = be.validate(test, 2);
    EXPECT_NEAR(v.real, a.real, kMetricTol);
    EXPECT_NEAR(v.fake, a.fake, kMetricTol);
    EXPECT_NEAR(v.cdiv, a.cdiv, kMetricTol);
    EXPECT_NEAR(v.max_abs_f, a.max_abs_f, kMetricTol);
    EXPECT_GT(v.max_abs_f, 0.0);
  });
}

TEST(DataParallel, TooSmallBufferForTheRanksIsAUserError) {
  on_ranks(2, [&](int, Communicator& c) {
    EngineOptions o = options(8);
    o.comm = &c;
    o.buffer_initial = 1;
    try {
      CpuBackend be(o);
      ADD_FAILURE() << "expected a UserError";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("buffer.initial (1) is smaller than the number of ranks (2)"),
                std::string::npos) << e.what();
    }
  });
}

TEST(DataParallel, TrainStatePacksAndUnpacks) {
  TrainState s;
  s.params = {1, 2, 3};
  s.adam = {{4, 5, 6}, {7, 8, 9}, 3};
  s.buffer = random_images(2, 1);
  s.buffer_classes = {3, 1};  // the divergence rollback keeps a state packed: the rings' classes with it
  s.rng = {42, 1, 2, 3, 4};
  s.rng_backend = "cpu";
  s.step = 9;
  s.epoch = 1;
  s.batch = 2;
  s.epoch_sums = {1, 2, 3, 4, 5, 6};
  s.lr = 1e-4;
  s.seed = 42;
  s.rollbacks = 1;
  s.rank_buffers = {random_images(1, 2), random_images(3, 3)};
  s.rank_rngs = {{1, 2}, {3, 4}};
  s.epoch_reg = {0.25};  // the drift guard's history travels with the state
  const TrainState t = unpack_train_state(pack_train_state(s));
  EXPECT_EQ(t.params, s.params);
  EXPECT_EQ(t.adam.v, s.adam.v);
  EXPECT_EQ(t.adam.t, 3);
  EXPECT_EQ(t.buffer.shape, s.buffer.shape);
  EXPECT_EQ(t.buffer.data, s.buffer.data);
  EXPECT_EQ(t.buffer_classes, s.buffer_classes);
  EXPECT_EQ(t.rng, s.rng);
  EXPECT_EQ(t.rng_backend, "cpu");
  EXPECT_EQ(t.step, 9);
  EXPECT_EQ(t.epoch_sums, s.epoch_sums);
  EXPECT_EQ(t.epoch_reg, s.epoch_reg);
  EXPECT_EQ(t.world_size(), 2);
  EXPECT_EQ(t.rank_buffers[1].data, s.rank_buffers[1].data);
  EXPECT_EQ(t.rank_rngs[1], s.rank_rngs[1]);
  EXPECT_THROW(unpack_train_state(pack_train_state(s).substr(0, 40)), Error);
}

TEST(DataParallel, LaunchEnvironmentNamesRankSizeAndLocalRank) {
  const char* keys[] = {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                        "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_LOCALID", "PMI_SIZE", "PMI_RANK"};
  std::vector<std::pair<std::string, std::string>> saved;
  for (const char* k : keys) {
    if (const char* v = std::getenv(k)) saved.emplace_back(k, v);
    unsetenv(k);
  }
  EXPECT_EQ(launch_env().size, 1);
  setenv("SLURM_STEP_NUM_TASKS", "8", 1);
  setenv("SLURM_PROCID", "5", 1);
  setenv("SLURM_LOCALID", "1", 1);
  LaunchEnv e = launch_env();
  EXPECT_EQ(e.size, 8);
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.local_rank, 1);
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);  // mpirun's variables win over an enclosing Slurm step's
  setenv("OMPI_COMM_WORLD_RANK", "1", 1);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0", 1);
  e = launch_env();
  EXPECT_EQ(e.size, 2);
  EXPECT_EQ(e.rank, 1);
  EXPECT_EQ(e.local_rank, 0);
  for (const char* k : keys) unsetenv(k);
  for (const auto& [k, v] : saved) setenv(k.c_str(), v.c_str(), 1);
}

// --- the training run (checkpoints, resume, stop) with ranks as threads ---

namespace {

using test::slurp;

class DataParallelRun : public ::testing::Test {
 protected:

  // Global batch 16 over 40 images: 16, 16 and a partial 8 per epoch.
  Config config(const std::string& out, int ranks) const {
    Config c;
    c.output_dir = (root_ / out).string();
    c.data.dir = (root_ / "data").string();
    c.data.batch_size = 16 / ranks;
    c.model.channels = {4, 8};
    c.sampler.steps = 3;
    c.buffer.capacity = 64;
    c.buffer.initial = 16;
    c.buffer.reinit_prob = 1.0;
    c.train.epochs = 3;
    c.train.log_every = 1;
    c.generate.n = 4;
    c.generate.steps = 3;
    c.backend = "cpu";
    return c;
  }

  // Every rank runs run_training with the same config; returns rank 0's result.
  int run(int ranks, const Config& c, const std::string& resume = "", int stop_rank = -1) {
    std::vector<int> rc(static_cast<size_t>(ranks), -1);
    std::vector<std::atomic<int>> stop(static_cast<size_t>(ranks));
    for (int r = 0; r < ranks; ++r) stop[size_t(r)] = r == stop_rank;
    on_ranks(ranks, [&](int r, Communicator& comm) {
      TrainRunOptions o;
      o.config = c;
      if (!resume.empty()) o.resume = resume;
      o.comm = &comm;
      o.stop = &stop[size_t(r)];
      rc[size_t(r)] = run_training(o);
    });
    for (int r = 1; r < ranks; ++r) EXPECT_EQ(rc[size_t(r)], rc[0]) << "every rank ends the same way";
    return rc[0];
  }

  test::TinyDataRoot tmp_;
  const fs::path& root_ = tmp_.path;
};

}  // namespace

TEST_F(DataParallelRun, CheckpointMatchesOneRankAndResumesExactly) {
  Config one = config("one", 1);
  one.train.max_steps = 5;  // across the partial batch and the epoch boundary
  ASSERT_EQ(run(1, one), 0);
  Config two = config("two", 2);
  two.train.max_steps = 5;
  ASSERT_EQ(run(2, two), 0);

  const NetSpec net = net_spec_for(one);
  const TrainState a = load_train_state((root_ / "one/last").string(), net);
  const TrainState b = load_train_state((root_ / "two/last").string(), net, 2);
  EXPECT_LT(max_abs_diff(a.params, b.params), kParamTol);
  EXPECT_LT(max_abs_diff(a.adam.m, b.adam.m), kGradTol) << "first moments (scaled gradients)";
  EXPECT_EQ(a.adam.t, b.adam.t);
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.batch, b.batch);
  ASSERT_EQ(b.world_size(), 2);
  EXPECT_EQ(b.rank_rngs[0], a.rng);
  EXPECT_EQ(b.rank_rngs[1], a.rng);
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(a.epoch_sums[size_t(i)], b.epoch_sums[size_t(i)], kMetricTol);
  EXPECT_EQ(b.rank_buffers[0].dim(0), 32) << "each rank's shard: capacity 64 / 2";

  // The same 2-rank run stopped at step 2 and resumed on 2 ranks: bit for bit.
  Config part = config("part", 2);
  part.train.max_steps = 2;
  ASSERT_EQ(run(2, part), 0);
  part.train.max_steps = 5;
  ASSERT_EQ(run(2, part, (root_ / "part/last").string()), 0);
  EXPECT_EQ(slurp(root_ / "two/last/model.safetensors"), slurp(root_ / "part/last/model.safetensors"));
  EXPECT_EQ(slurp(root_ / "two/last/train_state.safetensors"), slurp(root_ / "part/last/train_state.safetensors"));
}

// The training recipe data-parallel: every rank normalises and averages the same all-reduced numbers, so the
// 2-rank run's θ, θ_ema and u are the 1-rank run's within the gradient's rounding, and resume is exact.
TEST_F(DataParallelRun, TheRecipeMatchesOneRankAndResumesExactly) {
  auto recipe = [&](const std::string& out, int ranks) {
    Config c = config(out, ranks);
    c.train.ema_decay = 0.7;
    c.model.spectral_norm = true;
    c.train.max_steps = 4;
    return c;
  };
  ASSERT_EQ(run(1, recipe("one", 1)), 0);
  ASSERT_EQ(run(2, recipe("two", 2)), 0);
  const NetSpec net = net_spec_for(recipe("one", 1));
  const TrainState a = load_train_state((root_ / "one/last").string(), net);
  const TrainState b = load_train_state((root_ / "two/last").string(), net, 2);
  ASSERT_FALSE(a.ema.empty());
  ASSERT_FALSE(a.sn_u.empty());
  EXPECT_LT(max_abs_diff(a.params, b.params), kParamTol);
  EXPECT_LT(max_abs_diff(a.ema, b.ema), kParamTol);
  EXPECT_LT(max_abs_diff(a.sn_u, b.sn_u), kParamTol) << "unit vectors from the same θ";

  Config part = recipe("part", 2);
  part.train.max_steps = 2;
  ASSERT_EQ(run(2, part), 0);
  part.train.max_steps = 4;
  ASSERT_EQ(run(2, part, (root_ / "part/last").string()), 0);
  EXPECT_EQ(slurp(root_ / "two/last/model.safetensors"), slurp(root_ / "part/last/model.safetensors"));
  EXPECT_EQ(slurp(root_ / "two/last/train_state.safetensors"), slurp(root_ / "part/last/train_state.safetensors"));
}

TEST_F(DataParallelRun, ResumeWithAnotherNumberOfRanksNamesBoth) {
  Config c = config("run", 2);
  c.train.max_steps = 1;
  ASSERT_EQ(run(2, c), 0);
  const std::string before = slurp(root_ / "run/last/train_state.safetensors");
  c.train.max_steps = 2;
  try {
    run(1, c, (root_ / "run/last").string());
    FAIL() << "expected a UserError";
  } catch (const UserError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("written by a run on 2 ranks"), std::string::npos) << m;
    EXPECT_NE(m.find("this run has 1 rank"), std::string::npos) << m;
    EXPECT_NE(m.find("mpirun -np 2"), std::string::npos) << m;
  }
  try {
    run(4, config("run", 4), (root_ / "run/last").string());
    FAIL() << "expected a SharedUserError";
  } catch (const SharedUserError& e) {
    EXPECT_NE(std::string(e.what()).find("this run has 4 ranks"), std::string::npos) << e.what();
  }
  EXPECT_EQ(slurp(root_ / "run/last/train_state.safetensors"), before);
}

TEST_F(DataParallelRun, StopOnOneRankStopsAllAfterTheSameStep) {
  Config c = config("run", 2);
  EXPECT_EQ(run(2, c, "", /*stop_rank=*/1), 0);
  const TrainState s = load_train_state((root_ / "run/last").string(), net_spec_for(c), 2);
  EXPECT_EQ(s.step, 0);
  EXPECT_NE(slurp(root_ / "run/metrics.jsonl").find("\"reason\":\"signal\""), std::string::npos);
}

TEST_F(DataParallelRun, EpochEndsValidateAndWriteSamplesOnce) {
  Config c = config("run", 2);
  c.train.epochs = 1;
  ASSERT_EQ(run(2, c), 0);
  EXPECT_TRUE(fs::exists(root_ / "run/epoch_1/model.safetensors"));
  EXPECT_EQ(fs::exists(root_ / "run/samples/epoch_1.png"), png_available());  // skipped without libpng
  const std::string log = slurp(root_ / "run/metrics.jsonl");
  size_t epochs = 0;
  for (size_t p = log.find("\"event\":\"epoch\""); p != std::string::npos; p = log.find("\"event\":\"epoch\"", p + 1))
    ++epochs;
  EXPECT_EQ(epochs, 1u) << "rank 0 alone writes metrics.jsonl";
  EXPECT_NE(log.find("val_cdiv"), std::string::npos);
}
