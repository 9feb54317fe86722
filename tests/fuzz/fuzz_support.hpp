// What the fuzz targets share: the parsers' contract, checked on every input.
//
// Bad input must end as an ebm::UserError with a one-line message that names the source; anything
// else (another exception type, a crash, UB, a leak, a hang, an allocation past -malloc_limit_mb) is
// a bug. So parse() catches UserError only: any other exception is printed with its type and the
// process aborts, which libFuzzer reports as a crash and saves the input under -artifact_prefix.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cxxabi.h>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <typeinfo>
#include <unistd.h>
#include <vector>

#include "engine/error.hpp"

namespace ebm::fuzz {

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "\n==ebm-fuzz== %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// An invariant of a successful parse (or of a UserError's message) that does not hold.
#define FUZZ_CHECK(cond, detail)                                                                     \
  do {                                                                                               \
    if (!(cond)) ::ebm::fuzz::die(std::string("invariant failed: " #cond " at " __FILE__ ":") +      \
                                  std::to_string(__LINE__) + ": " + std::string(detail));            \
  } while (0)

// Triage only (CI never sets it): EBM_FUZZ_IGNORE="one-line,names-source,out_of_range" lets a run go
// past findings already known, to look for others. Each comma-separated word skips the message check
// of that name, or lets an escaping exception whose type contains the word pass.
inline bool ignored(const std::string& what) {
  static const std::string list = [] {
    const char* v = std::getenv("EBM_FUZZ_IGNORE");
    return "," + std::string(v ? v : "") + ",";
  }();
  for (size_t a = 1, b; (b = list.find(',', a)) != std::string::npos; a = b + 1)
    if (b > a && what.find(list.substr(a, b - a)) != std::string::npos) return true;
  return false;
}

inline std::string current_exception_type() {
  const std::type_info* t = abi::__cxa_current_exception_type();
  if (!t) return "unknown";
  int status = 0;
  char* name = abi::__cxa_demangle(t->name(), nullptr, nullptr, &status);
  std::string out = status == 0 && name ? name : t->name();
  std::free(name);
  return out;
}

// The message of a UserError: one line, naming one of `sources` (file names, "--set"; none: no check).
inline void check_user_message(const std::string& call, const std::string& msg,
                               const std::vector<std::string>& sources) {
  FUZZ_CHECK(!msg.empty(), call + " threw a UserError with an empty message");
  if (!ignored("one-line"))
    FUZZ_CHECK(msg.find_first_of("\r\n") == std::string::npos,
               call + " threw a UserError whose message is not one line: " + msg);
  bool named = sources.empty() || ignored("names-source");
  for (const auto& s : sources) named = named || msg.find(s) != std::string::npos;
  FUZZ_CHECK(named, call + " threw a UserError that does not name " + (sources.empty() ? "" : sources[0]) + ": " + msg);
}

// Runs `fn` (one parser call); true when it returned, false when it threw a well-formed UserError
// whose message names one of `sources`.
template <class Fn>
bool parse(const std::string& call, const std::vector<std::string>& sources, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const UserError& e) {
    check_user_message(call, e.what(), sources);
    return false;
  } catch (const std::exception& e) {
    const std::string type = current_exception_type();
    if (ignored(type)) return false;
    die(call + " let " + type + " escape (bad input must end as ebm::UserError): " + e.what());
  } catch (...) {
    die(call + " let a non-std exception escape: " + current_exception_type());
  }
}

// `fn` must not throw at all (a round trip of something that parsed). False only where EBM_FUZZ_IGNORE
// lets the exception pass: the caller then skips what depends on `fn`.
template <class Fn>
[[nodiscard]] bool must_succeed(const std::string& call, Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const std::exception& e) {
    const std::string type = current_exception_type();
    if (ignored(type)) return false;
    die(call + " threw " + type + " on input that had parsed: " + e.what());
  }
}

// A folder of this process's own (under $TMPDIR; the runner points it into the build folder) for
// targets that go through the file-reading entry points or write and re-read what parsed.
class Scratch {
 public:
  Scratch() {
    dir_ = std::filesystem::temp_directory_path() / ("ebm_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const uint8_t* data, size_t size) const {
    const std::string p = path(name);
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    f.close();
    if (!f) die("cannot write scratch file " + p);
    return p;
  }
  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) const {
    return write(name, bytes.data(), bytes.size());
  }

 private:
  std::filesystem::path dir_;
};

inline const Scratch& scratch() {
  static const Scratch s;
  return s;
}

}  // namespace ebm::fuzz
