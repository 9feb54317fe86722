# The fuzz build (EBM_FUZZ=ON; the `fuzz` preset, build-fuzz/): libFuzzer targets for the file parsers,
# compiled by clang with -fsanitize=fuzzer,address,undefined, from the parsers' own sources only (no
# engine, no CUDA, no OpenMP). Defines fuzz_<name> for each tests/fuzz/fuzz_<name>.cpp; see tests/fuzz/README.md.
#
# Which sources: EBM_FUZZ_PARSER_SOURCES (the readers under test) plus every host/ or engine/ .cpp whose
# header they include, directly or through other headers, found by reading their #include lines. So a
# helper the parsers start to use (e.g. host/io/json_text.cpp) joins the build by being included; a library
# they start to link (beyond zlib and nlohmann/json) goes in EBM_FUZZ_LIBS.

set(EBM_FUZZ_PARSER_SOURCES host/io/idx.cpp host/io/npy.cpp host/io/safetensors.cpp host/io/config.cpp)
set(EBM_FUZZ_LIBS ZLIB::ZLIB nlohmann_json::nlohmann_json)

if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "EBM_FUZZ needs clang (libFuzzer), found ${CMAKE_CXX_COMPILER_ID}: use the fuzz preset "
                      "(clang++-14); scripts/setup.sh installs clang, libfuzzer-14-dev and libclang-rt-14-dev")
endif()
set(EBM_FUZZ_SANITIZE -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)

include(CheckCXXSourceCompiles)
set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer,address,undefined")
check_cxx_source_compiles([[
#include <cstddef>
#include <cstdint>
extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }
]] EBM_HAVE_LIBFUZZER)
unset(CMAKE_REQUIRED_FLAGS)
if(NOT EBM_HAVE_LIBFUZZER)
  message(FATAL_ERROR "clang cannot link -fsanitize=fuzzer: install libfuzzer-14-dev and libclang-rt-14-dev "
                      "(scripts/setup.sh does); see CMakeFiles/CMakeError.log")
endif()

find_package(ZLIB REQUIRED)  # the gzip IDX paths are fuzzed too
set_property(TARGET ZLIB::ZLIB APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS EBM_HAVE_ZLIB=1)
include(${CMAKE_CURRENT_LIST_DIR}/NlohmannJson.cmake)

# The transitive closure of "host/..." and "engine/..." includes, from the parser sources.
set(_todo ${EBM_FUZZ_PARSER_SOURCES})
set(_seen "")
set(EBM_FUZZ_SOURCES "")
while(_todo)
  list(POP_FRONT _todo _file)
  if(_file IN_LIST _seen)
    continue()
  endif()
  list(APPEND _seen ${_file})
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/${_file})
  if(_file MATCHES "\\.cpp$")
    list(APPEND EBM_FUZZ_SOURCES ${CMAKE_SOURCE_DIR}/${_file})
  endif()
  file(STRINGS ${CMAKE_SOURCE_DIR}/${_file} _includes REGEX "^[ \t]*#[ \t]*include[ \t]*\"(host|engine)/[^\"]+\\.hpp\"")
  foreach(_line ${_includes})
    string(REGEX REPLACE "^[^\"]*\"((host|engine)/[^\"]+)\\.hpp\".*$" "\\1" _base "${_line}")
    foreach(_next ${_base}.hpp ${_base}.cpp)
      if(EXISTS ${CMAKE_SOURCE_DIR}/${_next})
        list(APPEND _todo ${_next})
      endif()
    endforeach()
  endforeach()
endwhile()
string(REPLACE "${CMAKE_SOURCE_DIR}/" "" _shown "${EBM_FUZZ_SOURCES}")
message(STATUS "fuzz: parser sources: ${_shown}")

# The parsers, instrumented for coverage (fuzzer-no-link) and sanitized.
add_library(ebm_fuzz_parsers STATIC ${EBM_FUZZ_SOURCES})
target_include_directories(ebm_fuzz_parsers PUBLIC ${CMAKE_SOURCE_DIR})
target_compile_options(ebm_fuzz_parsers PRIVATE ${EBM_WARN_FLAGS}
                       PUBLIC -fsanitize=fuzzer-no-link ${EBM_FUZZ_SANITIZE})
target_link_libraries(ebm_fuzz_parsers PUBLIC ${EBM_FUZZ_LIBS})

file(GLOB EBM_FUZZ_TARGET_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_*.cpp)
foreach(src ${EBM_FUZZ_TARGET_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_compile_options(${name} PRIVATE ${EBM_WARN_FLAGS})
  target_link_libraries(${name} PRIVATE ebm_fuzz_parsers)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer ${EBM_FUZZ_SANITIZE})
  list(APPEND EBM_FUZZ_TARGETS ${name})
endforeach()
message(STATUS "fuzz: targets: ${EBM_FUZZ_TARGETS} (run: tests/fuzz/run.sh)")
