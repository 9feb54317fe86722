// The epoch reports' curves alone (host/train/epoch_reports.hpp): curves.png drawn from a planted metrics.jsonl,
// with train.eval's charts below when it holds eval records.
#include <gtest/gtest.h>

#include "host/io/png_image.hpp"
#include "host/train/epoch_reports.hpp"
#include "tests/test_support.hpp"

namespace ebm {
namespace {

TEST(EpochReports, CurvesComeFromMetricsJsonl) {
  if (!png_available()) GTEST_SKIP() << "built without libpng: no curves.png";
  test::TempDir tmp("ebm_curves");
  const auto metrics = tmp.path / "metrics.jsonl", png = tmp.path / "curves.png";
  std::string steps;
  for (int s = 10; s <= 40; s += 10)
    steps += "{\"event\":\"step\",\"step\":" + std::to_string(s) + ",\"loss\":-0.1,\"cdiv\":-0.2,\"real\":0.3,\"fake\":0.1}\n";
  test::spit(metrics, "{\"event\":\"step\",\"step\":10,\"loss\":-0.1,\"cdiv\":-0.2,\"real\":0.3,\"fake\":0.1}\n");
  EXPECT_FALSE(write_curves(metrics, png)) << "one point is no curve";
  EXPECT_FALSE(std::filesystem::exists(png));
  test::spit(metrics, steps + "{\"event\":\"resume\",\"step\":40}\n{\"event\":\"step\",\"st");  // a torn line is skipped
  ASSERT_TRUE(write_curves(metrics, png));
  const Image one = read_png(png.string());
  EXPECT_EQ(one.width, 640);
  EXPECT_EQ(one.height, 400);
  test::spit(metrics, steps + "{\"event\":\"eval\",\"step\":20,\"is\":5.1,\"fid\":300}\n"
                              "{\"event\":\"eval\",\"step\":40,\"is\":7.9,\"fid\":250}\n");
  ASSERT_TRUE(write_curves(metrics, png));
  EXPECT_EQ(read_png(png.string()).height, 1200) << "training, IS and FID: three charts stacked";
}

}  // namespace
}  // namespace ebm
