// The evaluator end to end on a labelled data set made here (test::write_glyph_dataset): its classifier is
// trained and cached once, real images score near the top and uniform noise near the bottom, and the
// sampling protocol is what README "Measuring sample quality" says.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "engine/cpu/cpu_backend.hpp"
#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "host/eval/classifier.hpp"
#include "host/eval/eval_quality.hpp"
#include "host/eval/sampling.hpp"
#include "host/io/checkpoint.hpp"
#include "host/io/dataset.hpp"
#include "tests/test_support.hpp"

namespace fs = std::filesystem;
using namespace ebm;

namespace {

// Small enough for the sanitizer build: a 3-layer classifier seeing 4,800 images (~1 s).
ClassifierRecipe tiny_recipe() {
  ClassifierRecipe r;
  r.channels = {8, 16, 16};  // 256 features: FID's eigensolves stay small
  r.images = 4800;
  r.batch = 32;
  r.lr = 3e-3;
  r.shift = 1;
  return r;
}

class EvalQualityTest : public ::testing::Test {
 protected:
  void SetUp() override { test::write_glyph_dataset(tmp_.path / "glyphs", 400, 200, 7); }
  DataConfig data() const {
    DataConfig d;
    d.dir = (tmp_.path / "glyphs").string();
    return d;
  }
  test::TempDir tmp_{"ebm_eval"};
};

}  // namespace

TEST_F(EvalQualityTest, TheClassifierLearnsTheClassesAndIsTrainedOnce) {
  std::ostringstream log;
  const Classifier first = load_or_train_classifier(data(), "cpu", log, tiny_recipe());
  EXPECT_TRUE(first.info.trained_now);
  EXPECT_GE(first.info.test_accuracy, 0.95) << log.str();
  EXPECT_EQ(first.info.n_test, 200);
  EXPECT_EQ(first.info.n_train, 400);
  EXPECT_EQ(first.model.net.outputs, 10);
  // Beside the data; a recipe other than the default carries its hash, so it never replaces the default's cache.
  EXPECT_EQ(fs::path(first.info.dir).parent_path(), tmp_.path / "glyphs");
  EXPECT_EQ(fs::path(first.info.dir).filename().string().rfind("classifier-32-", 0), 0u) << first.info.dir;
  EXPECT_EQ(fs::path(classifier_dir(data(), 0)).filename(), "classifier-32");
  EXPECT_TRUE(fs::exists(fs::path(first.info.dir) / "classifier.json"));
  EXPECT_NE(log.str().find("test accuracy"), std::string::npos) << log.str();

  std::ostringstream again;
  const Classifier cached = load_or_train_classifier(data(), "cpu", again, tiny_recipe());
  EXPECT_FALSE(cached.info.trained_now);
  EXPECT_EQ(cached.model.params, first.model.params);
  EXPECT_DOUBLE_EQ(cached.info.test_accuracy, first.info.test_accuracy);
  EXPECT_EQ(again.str(), "");  // nothing to say: loaded

  // A damaged cache is said and trained anew (the same weights: training is deterministic).
  test::spit(fs::path(first.info.dir) / "model.safetensors", "not a safetensors file");
  std::ostringstream damaged;
  const Classifier again2 = load_or_train_classifier(data(), "cpu", damaged, tiny_recipe());
  EXPECT_TRUE(again2.info.trained_now);
  EXPECT_NE(damaged.str().find("is unreadable"), std::string::npos) << damaged.str();
  EXPECT_EQ(again2.model.params, first.model.params);

  ClassifierRecipe other = tiny_recipe();
  other.images = 3200;  // another recipe: its cache is not this one's
  std::ostringstream retrain;
  EXPECT_TRUE(load_or_train_classifier(data(), "cpu", retrain, other).info.trained_now);
}

TEST_F(EvalQualityTest, RealImagesScoreNearTheTopAndNoiseNearTheBottom) {
  std::ostringstream log;
  QualityMeter meter(data(), "cpu", log, tiny_recipe());
  const Dataset ds = load_dataset(data());
  const QualityReport real = meter.score(ds.train);  // other images of the same classes: balanced, confident
  EXPECT_GT(real.is, 8.5);
  EXPECT_GT(real.mean_max_prob, 0.9);
  for (int64_t c : real.class_hist) EXPECT_NEAR(double(c), 40.0, 6.0);
  const QualityReport noise = meter.score(test::random_images(400, 32, 3));
  EXPECT_LT(noise.is, 3.0);
  EXPECT_GT(noise.fid, 20 * real.fid) << "real " << real.fid << " noise " << noise.fid;
  EXPECT_EQ(noise.n, 400);
  // The test split against its own statistics: FID 0 (up to rounding).
  EXPECT_NEAR(meter.score(ds.test).fid, 0.0, 1e-6 * noise.fid);
  test::expect_user_error([&] { (void)meter.score(test::random_images(3, 28, 1)); }, {"[3,1,28,28]", "[n,1,32,32]"});
}

TEST_F(EvalQualityTest, SamplesAreDrawnInChunksWithTheirOwnSeeds) {
  Config c;
  c.model.channels = {4, 8};
  c.data.batch_size = 8;
  c.buffer.capacity = c.buffer.initial = 8;
  EngineOptions o = engine_options_for(c);
  CpuBackend be(o);
  be.set_params(init_params(o.net, 5));
  const SamplerParams p{3, 10.0f, 0.01f, 0.03f};
  const int n = kEvalChunk + 20;  // two chunks
  const Tensor x = draw_eval_samples(be, n, p, 9);
  Tensor start = uniform_start(n, o.net, 9);
  const int64_t img = o.net.image_size();
  Tensor a({kEvalChunk, 1, 32, 32}), b({20, 1, 32, 32});
  std::copy_n(start.ptr(), a.numel(), a.ptr());
  std::copy_n(start.ptr() + kEvalChunk * img, b.numel(), b.ptr());
  be.sample(a, p, 9);
  be.sample(b, p, 10);
  EXPECT_TRUE(std::equal(a.data.begin(), a.data.end(), x.data.begin()));
  EXPECT_TRUE(std::equal(b.data.begin(), b.data.end(), x.data.begin() + a.numel()));
  // No steps: the uniform start itself.
  EXPECT_EQ(draw_eval_samples(be, 5, {0, 10.0f, 0.01f, 0.03f}, 9).data, uniform_start(5, o.net, 9).data);
}

TEST_F(EvalQualityTest, DataWithoutLabelsIsSaidPlainly) {
  fs::remove(tmp_.path / "glyphs" / "train-labels-idx1-ubyte.gz");
  std::ostringstream log;
  test::expect_user_error([&] { (void)load_or_train_classifier(data(), "cpu", log, tiny_recipe()); },
                          {"glyphs", "train-labels-idx1-ubyte", "label"});
}
