// The source layout DESIGN §2 asks for, enforced: kernels/ is a leaf (it includes no engine or host header),
// engine/ includes no host header, the two backends sit side by side (engine/cpu/, engine/cuda/) and neither
// includes the other, every kernel launch (`<<<`) is in kernels/, each .cu beside the header that declares its
// launchers; host/ is in folders by concern (io/, eval/, train/, tools/, python/), each including only the
// folders before it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const fs::path kRoot = EBM_SOURCE_DIR;

bool is_source(const fs::path& p) {
  const std::string e = p.extension().string();
  return e == ".cpp" || e == ".hpp" || e == ".cu" || e == ".cuh";
}

std::string read(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The project headers a file includes: lines `#include "dir/name.ext"` (spaces allowed around '#').
std::vector<std::string> project_includes(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    size_t i = line.find_first_not_of(" \t");
    if (i == std::string::npos || line[i] != '#') continue;
    i = line.find_first_not_of(" \t", i + 1);
    if (i == std::string::npos || line.compare(i, 7, "include") != 0) continue;
    const size_t a = line.find('"', i + 7), b = a == std::string::npos ? a : line.find('"', a + 1);
    if (b != std::string::npos) out.push_back(line.substr(a + 1, b - a - 1));
  }
  return out;
}

// Every "file: includes X" where X starts with one of `forbidden`, over the sources under `dir`.
std::vector<std::string> violations(const fs::path& dir, const std::vector<std::string>& forbidden) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file() || !is_source(e.path())) continue;
    for (const std::string& inc : project_includes(read(e.path())))
      for (const std::string& f : forbidden)
        if (inc.rfind(f, 0) == 0) out.push_back(fs::relative(e.path(), kRoot).string() + ": includes " + inc);
  }
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "\n  " + x;
  return s;
}

}  // namespace

TEST(Layout, IncludeScannerSeesIncludes) {  // the checks below rest on this
  const auto v = project_includes("#include <cstdint>\n  #  include \"engine/net.hpp\"\n// \"host/x.hpp\"\n"
                                  "#include \"kernels/philox.hpp\"  // why\n");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0], "engine/net.hpp");
  EXPECT_EQ(v[1], "kernels/philox.hpp");
}

TEST(Layout, KernelsAreALeaf) {
  const auto v = violations(kRoot / "kernels", {"engine/", "host/", "tests/", "bench/"});
  EXPECT_TRUE(v.empty()) << "kernels/ must include only kernels/ and system headers:" << joined(v);
}

TEST(Layout, EngineIncludesNoHostHeader) {
  const auto v = violations(kRoot / "engine", {"host/", "tests/", "bench/"});
  EXPECT_TRUE(v.empty()) << joined(v);
}

TEST(Layout, BackendsSideBySideNeitherIncludesTheOther) {
  for (const char* f : {"engine/cpu/cpu_backend.hpp", "engine/cpu/cpu_net.hpp", "engine/cpu/replay_buffer.hpp",
                        "engine/cuda/cuda_backend.hpp", "engine/cuda/cuda_net.cuh",
                        "engine/cuda/device_replay_buffer.cuh"})
    EXPECT_TRUE(fs::exists(kRoot / f)) << f;
  auto v = violations(kRoot / "engine" / "cpu", {"engine/cuda/"});
  auto w = violations(kRoot / "engine" / "cuda", {"engine/cpu/"});
  v.insert(v.end(), w.begin(), w.end());
  EXPECT_TRUE(v.empty()) << joined(v);
}

// The one standalone exception: bench/gpu_sweep.cu, the kernel sweep built by nvcc alone for a GPU window (llm.c's
// dev/cuda files are the model), which launches the chain's variants and the ceilings' probes itself. It is no part of
// the library and no target builds it; it includes only kernels/ headers (checked below).
const char* kStandaloneSweep = "bench/gpu_sweep.cu";

TEST(Layout, KernelLaunchesOnlyInKernels) {
  std::vector<std::string> outside, unpaired;
  for (const char* dir : {"engine", "host", "bench"})
    for (const auto& e : fs::recursive_directory_iterator(kRoot / dir))
      if (e.is_regular_file() && is_source(e.path()) && read(e.path()).find("<<<") != std::string::npos &&
          fs::relative(e.path(), kRoot).string() != kStandaloneSweep)
        outside.push_back(fs::relative(e.path(), kRoot).string());
  for (const std::string& inc : project_includes(read(kRoot / kStandaloneSweep)))
    EXPECT_EQ(inc.rfind("kernels/", 0), 0u) << kStandaloneSweep << " must stand alone: it includes " << inc;
  int kernels = 0;
  for (const auto& e : fs::directory_iterator(kRoot / "kernels")) {
    if (e.path().extension() != ".cu") continue;
    ++kernels;
    fs::path h = e.path();
    h.replace_extension(".cuh");
    if (!fs::exists(h)) unpaired.push_back(fs::relative(e.path(), kRoot).string());
  }
  EXPECT_TRUE(outside.empty()) << "kernel launches belong in kernels/*.cu, behind a launcher:" << joined(outside);
  EXPECT_TRUE(unpaired.empty()) << "each kernels/*.cu needs the .cuh declaring its launchers:" << joined(unpaired);
  EXPECT_GE(kernels, 8) << "kernels/ holds the backend's kernels";
}

// host/ by concern (README "Layout"): io/ (files in and out: config, data sets, checkpoints, formats, pictures),
// eval/ (a model put to use: backends from a config, sampling, scoring, the classifier and sample quality),
// train/ (the training run and its collaborators), tools/ (the command-line programs and their flag parser)
// and python/ (the module's bindings). Each layer includes only those before it: io ← eval ← train ← tools,
// python. No source sits in host/ itself.
TEST(Layout, HostIsInFoldersByConcern) {
  std::vector<std::string> loose;
  for (const auto& e : fs::directory_iterator(kRoot / "host")) {
    if (e.is_regular_file()) {
      loose.push_back(fs::relative(e.path(), kRoot).string());
    } else if (e.is_directory()) {
      EXPECT_TRUE(std::set<std::string>({"io", "eval", "train", "tools", "python"}).count(e.path().filename().string()))
          << "host/" << e.path().filename().string() << "/ is not one of the layout's folders";
    }
  }
  EXPECT_TRUE(loose.empty()) << "host/ holds folders only:" << joined(loose);
  for (const char* f : {"host/io/config.hpp", "host/io/checkpoint.hpp", "host/io/png_image.hpp", "host/io/charts.hpp",
                        "host/eval/scoring.hpp", "host/eval/eval_quality.hpp", "host/train/training_run.hpp",
                        "host/tools/cli.hpp", "host/python/module.cpp"})
    EXPECT_TRUE(fs::exists(kRoot / f)) << f;
}

TEST(Layout, HostLayersIncludeOnlyTheLayersBeforeThem) {
  auto v = violations(kRoot / "host" / "io", {"host/eval/", "host/train/", "host/tools/", "host/python/"});
  auto w = violations(kRoot / "host" / "eval", {"host/train/", "host/tools/", "host/python/"});
  auto x = violations(kRoot / "host" / "train", {"host/tools/", "host/python/"});
  auto y = violations(kRoot / "host" / "python", {"host/tools/"});
  for (auto* more : {&w, &x, &y}) v.insert(v.end(), more->begin(), more->end());
  EXPECT_TRUE(v.empty()) << "io/ <- eval/ <- train/ <- tools/, python/:" << joined(v);
}

// The PNG encoder knows nothing of what is drawn: charts, grids and the font are host/io/charts.*.
TEST(Layout, PngEncoderApartFromCharts) {
  const std::string png = read(kRoot / "host/io/png_image.cpp") + read(kRoot / "host/io/png_image.hpp");
  for (const char* drawing : {"kFont", "image_grid", "line_plot", "histogram_png", "draw_text"})
    EXPECT_EQ(png.find(drawing), std::string::npos) << "host/io/png_image.* draws (" << drawing << "): that is charts.*";
}

// The tools and the Python module reach the training run through the headers meant for them: training_run.hpp
// (run_training, Training), the ranks' helpers, the MPI communicator and the memory plan. The run's collaborators
// (run_folder, resume, run_log, divergence_guard, checkpoint_keeper, epoch_reports) are the loop's own.
TEST(Layout, ToolsReachTheTrainingRunThroughItsPublicHeaders) {
  const std::set<std::string> meant = {"host/train/training_run.hpp", "host/train/distributed.hpp",
                                       "host/train/mpi_communicator.hpp", "host/train/memory_plan.hpp"};
  std::vector<std::string> v = violations(kRoot / "host" / "tools", {"host/train/"});
  auto w = violations(kRoot / "host" / "python", {"host/train/"});
  auto b = violations(kRoot / "bench", {"host/train/"});
  v.insert(v.end(), w.begin(), w.end());
  v.insert(v.end(), b.begin(), b.end());
  std::erase_if(v, [&](const std::string& s) { return meant.count(s.substr(s.find(": includes ") + 11)) > 0; });
  EXPECT_TRUE(v.empty()) << "a collaborator of the training run included from outside it:" << joined(v);
  for (const std::string& h : meant) EXPECT_TRUE(fs::exists(kRoot / h)) << h;
}
