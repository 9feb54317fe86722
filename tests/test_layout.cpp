// The source layout DESIGN §2 asks for, enforced: kernels/ is a leaf (it includes no engine or host header),
// engine/ includes no host header, the two backends sit side by side (engine/cpu/, engine/cuda/) and neither
// includes the other, and every kernel launch (`<<<`) is in kernels/, each .cu beside the header that
// declares its launchers.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
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
