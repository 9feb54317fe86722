// The run log alone (host/train/run_log.hpp): records in metrics.jsonl and to the caller, history cut back on
// resume and rollback, the progress line and epoch summary as people read them, and the clock that leaves
// what is not training out — on a scripted clock.
#include <gtest/gtest.h>

#include <sstream>

#include "host/train/run_log.hpp"
#include "tests/test_support.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace ebm {
namespace {

TEST(RunLog, NumbersAndDurationsAsPeopleReadThem) {
  EXPECT_EQ(duration_str(0), "0s");
  EXPECT_EQ(duration_str(59.4), "59s");
  EXPECT_EQ(duration_str(59.6), "1m00s");
  EXPECT_EQ(duration_str(187), "3m07s");
  EXPECT_EQ(duration_str(7500), "2h05m");
  EXPECT_EQ(duration_str(-1), "?");
  EXPECT_EQ(duration_str(NAN), "?");
  EXPECT_EQ(metrics_text({}), "loss 0.0000 reg 0.0000 cdiv 0.0000 real 0.0000 fake 0.0000");
  // Sums over 4 steps: means loss −0.25, reg 0.01, cdiv −0.26, real 0.5, fake 0.76.
  EXPECT_EQ(metrics_text({-1.0, 0.04, -1.04, 2.0, 3.04, 4}), "loss -0.2500 reg 0.0100 cdiv -0.2600 real 0.5000 fake 0.7600");
}

TEST(RunLog, TheClockLeavesOutWhatIsNotTraining) {
  double t = 100;
  RunClock c([&] { return t; });
  c.start();
  t = 102;  // 2 s of training
  {
    const auto off = c.off();
    t = 105;  // 3 s of validation, with a nested section inside it that counts once
    {
      const auto inner = c.off();
      t = 106;
    }
    t = 107;
  }
  t = 110;  // 3 s more of training
  EXPECT_DOUBLE_EQ(c.training_seconds(), 5.0);
  EXPECT_DOUBLE_EQ(c.ms_per_step(10), 500.0);
  EXPECT_DOUBLE_EQ(c.ms_per_step(0), 0.0);
}

struct LogFixture {
  test::TempDir tmp{"ebm_run_log"};
  std::ostringstream out, err;
  std::vector<json> seen;
  RunLog log{tmp.path, true, out, err, [this](const json& j) { seen.push_back(j); }};
  std::vector<json> records() const {
    std::vector<json> r;
    std::istringstream in(test::slurp(tmp.path / "metrics.jsonl"));
    for (std::string line; std::getline(in, line);) r.push_back(json::parse(line));
    return r;
  }
};

TEST(RunLog, RecordsGoToMetricsJsonlAndToTheCaller) {
  LogFixture f;
  f.log.open_metrics(std::nullopt);
  f.log.record({{"event", "step"}, {"step", 10}, {"loss", -0.5}});
  f.log.record({{"event", "epoch"}, {"step", 20}});
  const auto r = f.records();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0]["loss"], -0.5);
  EXPECT_EQ(f.seen, r);
  // Another rank writes nothing and says nothing.
  std::ostringstream o, e;
  RunLog quiet(f.tmp.path, false, o, e);
  quiet.open_metrics(std::nullopt);
  quiet.record({{"event", "step"}, {"step", 30}});
  quiet.out() << "hidden";
  EXPECT_EQ(f.records().size(), 2u);
  EXPECT_EQ(o.str(), "");
}

TEST(RunLog, AResumeCutsHistoryAndARollbackKeepsTheEventsThatSayWhy) {
  LogFixture f;
  test::spit(f.tmp.path / "metrics.jsonl",
             "{\"event\":\"step\",\"step\":2}\n{\"event\":\"step\",\"step\":4}\n{\"event\":\"diverged\",\"step\":5}\n"
             "{\"event\":\"step\",\"step\":6}\n{\"event\":\"epoch\",\"step\":6}\n{\"event\":\"step\",\"st");  // torn
  f.log.open_metrics(4);  // resumed at step 4: everything after it goes, the torn line too
  EXPECT_EQ(test::slurp(f.tmp.path / "metrics.jsonl"), "{\"event\":\"step\",\"step\":2}\n{\"event\":\"step\",\"step\":4}\n");
  f.log.record({{"event", "step"}, {"step", 6}});
  f.log.record({{"event", "diverged"}, {"step", 7}});
  f.log.record({{"event", "epoch"}, {"step", 8}});
  f.log.rewind(4);  // a rollback to step 4: the steps and epochs past it go, the divergence stays
  f.log.record({{"event", "rollback"}, {"step", 4}});
  std::vector<std::pair<std::string, int>> got;
  for (const json& j : f.records()) got.emplace_back(j["event"], j["step"]);
  EXPECT_EQ(got, (std::vector<std::pair<std::string, int>>{{"step", 2}, {"step", 4}, {"diverged", 7}, {"rollback", 4}}));
}

TEST(RunLog, TheProgressLineAndTheEpochSummary) {
  LogFixture f;
  f.log.open_metrics(std::nullopt);
  f.log.start_clock();
  // 120 of 710 steps at 500 ms/step: 295 s left.
  f.log.progress({120, 710, 2, 10, 500.0, {-1.0, 0.04, -1.04, 2.0, 3.04, 4}}, /*force=*/true);
  f.log.progress({121, 710, 2, 10, 500.0, {}}, /*force=*/false);  // too soon after the last: not printed
  EXPECT_EQ(f.out.str(), "step 120/710  epoch 2/10  500.0 ms/step  ETA 4m55s  loss -0.2500 reg 0.0100 cdiv -0.2600 "
                         "real 0.5000 fake 0.7600\n");
  f.out.str("");
  EpochSummary e;
  e.epoch = 2, e.epochs = 10, e.step = 142, e.steps = 71, e.seconds = 35.5;
  e.sums = {-1.0, 0.04, -1.04, 2.0, 3.04, 4};
  e.validation = ValidationMetrics{1.0447, 0.0249, -1.0198, 3.5};
  f.log.epoch_summary(e);
  EXPECT_EQ(f.out.str(), "Epoch 2/10 - 35.5s 500ms/step - cdiv: -0.2600 - fake: 0.7600 - loss: -0.2500 - real: 0.5000 - "
                         "reg: 0.0100 - val_cdiv: 1.0447 - val_fake: -1.0198 - val_real: 0.0249\n");
  const auto r = f.records();
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0]["event"], "epoch");
  EXPECT_EQ(r[0]["step"], 142);
  EXPECT_DOUBLE_EQ(r[0]["cdiv"].get<double>(), -0.26);
  EXPECT_DOUBLE_EQ(r[0]["val_max_abs_f"].get<double>(), 3.5);
  // With train.eval's report, a second record; without validation, no val_ keys.
  f.out.str("");
  e.validation.reset();
  e.quality = QualityReport{};
  e.quality->is = 8.79, e.quality->fid = 244.0;
  f.log.epoch_summary(e);
  EXPECT_NE(f.out.str().find("- reg: 0.0100 - IS: 8.790 - FID: 244.00\n"), std::string::npos) << f.out.str();
  const auto r2 = f.records();
  ASSERT_EQ(r2.size(), 3u);
  EXPECT_FALSE(r2[1].contains("val_cdiv"));
  EXPECT_EQ(r2[2]["event"], "eval");
  EXPECT_EQ(r2[2]["epoch"], 2);
}

}  // namespace
}  // namespace ebm
