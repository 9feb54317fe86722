// Errors: library code throws ebm::Error carrying what failed and where; only main() turns it into
// a message and an exit code.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace ebm {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A user-facing failure (bad config, bad file, missing data): the message alone is the whole story,
// so tools print it without file/line noise.
struct UserError : Error {
  using Error::Error;
};

[[noreturn]] inline void fail_at(const char* expr, const char* file, int line, const std::string& msg) {
  std::ostringstream os;
  os << msg << " [" << expr << " failed at " << file << ":" << line << "]";
  throw Error(os.str());
}

template <class... Args>
[[noreturn]] void user_fail(Args&&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw UserError(os.str());
}

}  // namespace ebm

// Internal invariant: throws ebm::Error naming the expression, file and line.
#define EBM_CHECK(cond, msg)                                        \
  do {                                                              \
    if (!(cond)) ::ebm::fail_at(#cond, __FILE__, __LINE__, (msg));  \
  } while (0)
