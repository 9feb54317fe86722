// The sanitizer build's instruments themselves (the asan preset, scripts/test.sh's asan stage): each kind of fault that
// stage is there to find stops a process with the sanitizer's report. A null dereference among them: the preset leaves
// UBSan's own null check out (EBM_SANITIZE_SKIP in CMakePresets.json), and ASan's SEGV report stops it instead. Each
// test skips, saying why, in a build without the sanitizer it needs (the release stage's).
#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <string>

#include "tests/sanitizers.hpp"  // kSanitized

namespace {

// Whether this build checks `check`, given as the -fsanitize= group that holds it (CMakeLists.txt passes the build's
// EBM_SANITIZE and EBM_SANITIZE_SKIP lists to the tests, e.g. "address,undefined,float-cast-overflow" and
// "null,alignment,..."): the group on, the check not left out.
bool has_check(const std::string& group, const std::string& check) {
  const auto in = [](const std::string& list, const std::string& name) {
    return ("," + list + ",").find("," + name + ",") != std::string::npos;
  };
  return in(EBM_SANITIZE_CHECKS, group) && !in(EBM_SANITIZE_SKIPPED, check);
}

// volatile: each fault happens at run time, whatever the optimiser knows.
int read_one_past_the_end(int n) {
  const std::unique_ptr<int[]> a(new int[size_t(n)]());
  const volatile int* p = a.get();
  return p[n];
}

}  // namespace

TEST(SanitizerDeathTest, AHeapReadPastTheEndIsReported) {
  if (!ebm::test::kSanitized) GTEST_SKIP() << "not an AddressSanitizer build (the asan preset is)";
  EXPECT_DEATH(read_one_past_the_end(4), "AddressSanitizer: heap-buffer-overflow");
}

TEST(SanitizerDeathTest, ANullDereferenceIsReported) {
  if (!ebm::test::kSanitized) GTEST_SKIP() << "not an AddressSanitizer build (the asan preset is)";
  const volatile int* p = nullptr;
  // ASan's report where UBSan's null check is left out (the asan preset), UBSan's where it is on
  EXPECT_DEATH({ [[maybe_unused]] const int v = *p; }, "AddressSanitizer: SEGV on unknown address|null pointer");
}

TEST(SanitizerDeathTest, ASignedOverflowIsReported) {
  if (!has_check("undefined", "signed-integer-overflow"))
    GTEST_SKIP() << "not built with -fsanitize=undefined (the asan preset is)";
  volatile int big = std::numeric_limits<int>::max();
  EXPECT_DEATH({ [[maybe_unused]] const int v = big + 1; }, "signed integer overflow");
}

TEST(SanitizerDeathTest, AFloatToIntOverflowIsReported) {
  if (!has_check("float-cast-overflow", "float-cast-overflow"))
    GTEST_SKIP() << "not built with -fsanitize=float-cast-overflow (the asan preset is)";
  volatile float f = 1e20f;
  EXPECT_DEATH({ [[maybe_unused]] const int v = static_cast<int>(f); }, "is outside the range of representable values");
}
