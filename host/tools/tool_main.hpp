// main() of a command-line tool: flags that do not parse exit 2, failures exit 1, each with one line
// "<tool>: <message>" on stderr; --help prints the usage and exits 0. Running out of memory is a
// failure like any other (one line), not a crash.
#pragma once
#include <cstdio>
#include <exception>
#include <iostream>
#include <new>
#include <string>
#include <utility>

#include "engine/address_space.hpp"

namespace ebm {

// What a tool says about a result that is not an error but easy to misread: one line on stderr,
// "<tool>: warning: <message>", after what it has printed on stdout so far.
inline void print_warning(const char* tool, const std::string& message) {
  std::fflush(stdout);
  std::cerr << tool << ": warning: " << message << "\n";
}

// parse(argc, argv, help) -> Flags (throws on bad flags); run(flags) -> exit code (throws on failure).
template <class Parse, class Run>
int tool_main(const char* name, const char* usage, int argc, char** argv, Parse parse, Run run) {
  constexpr const char* kOutOfMemory =
      "out of memory: this machine cannot hold what was asked for (fewer images, chains or a smaller batch need less)";
  decltype(parse(argc, argv, std::declval<bool&>())) flags;
  try {
    bool help = false;
    flags = parse(argc, argv, help);
    if (help) {
      std::cout << usage;
      return 0;
    }
  } catch (const std::bad_alloc&) {
    std::cerr << name << ": " << kOutOfMemory << address_space_hint() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 2;
  }
  try {
    return run(flags);
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    std::cerr << name << ": " << kOutOfMemory << address_space_hint() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::cerr << name << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace ebm
