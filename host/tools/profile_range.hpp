// `--profile-steps A:B`: the optimizer steps [A, B) to run inside cudaProfilerStart/Stop.
#pragma once
#include <cstdint>
#include <string>

namespace ebm {

struct StepRange {
  int64_t begin, end;
};

// "A:B" with 0 <= A < B; UserError naming the flag otherwise.
StepRange parse_step_range(const std::string& s);

}  // namespace ebm
