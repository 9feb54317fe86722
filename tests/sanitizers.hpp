// Whether this test binary is built with AddressSanitizer (scripts/test.sh's asan stage, GCC or clang). Under it the
// slowest tests run a smaller case: every code path still runs instrumented, and the release stage checks the numbers
// at full size. 2-50x slower code otherwise makes those few tests most of that stage's time.
#pragma once

namespace ebm::test {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

}  // namespace ebm::test
