// Entry points of the CUDA backend for host code. Includes no CUDA header: host code may include it.
#pragma once
#include <memory>
#include <string>

#include "engine/backend.hpp"

namespace ebm {

// Number of usable CUDA devices; 0 with the reason in *why when none (no driver, no device, ...).
int cuda_device_count(std::string* why);
std::unique_ptr<Backend> make_cuda_backend(const EngineOptions& opt);

}  // namespace ebm
