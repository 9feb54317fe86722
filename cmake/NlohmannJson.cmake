# nlohmann_json::nlohmann_json: the system package (nlohmann-json3-dev), else the header copy in
# EBM_THIRD_PARTY. Shared by the main build (cmake/Dependencies.cmake) and the fuzz build (cmake/Fuzz.cmake).
set(EBM_THIRD_PARTY "${CMAKE_SOURCE_DIR}/third_party" CACHE PATH "Fallback copies of header-only deps")

find_package(nlohmann_json 3.10 QUIET)
if(NOT nlohmann_json_FOUND)
  if(EXISTS "${EBM_THIRD_PARTY}/nlohmann/json.hpp")
    add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
    target_include_directories(nlohmann_json::nlohmann_json INTERFACE "${EBM_THIRD_PARTY}")
    set(nlohmann_json_FOUND TRUE)
  else()
    message(FATAL_ERROR "nlohmann/json not found: run scripts/setup.sh (apt package nlohmann-json3-dev)")
  endif()
endif()
